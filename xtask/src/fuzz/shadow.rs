//! What the fuzzer knows of the bytes in each buffer and in the edu
//! device's buffer: runs of one known byte value, or unknown.  Fresh
//! buffers are zero (anonymous memory); `mem.fill` writes a byte; a DMA
//! or an access moves bytes where the model's [`Segment`]s say (a read of
//! a faulting piece leaves unknown bytes in the edu, a write to one
//! changes nothing).  A `mem.check` of a byte then has an expected
//! answer: it passes if every byte of the range is known to be that
//! byte, fails if one is known to be another, and is not judged otherwise.
//!
//! The generator uses a shadow to pick the checks worth making, the
//! judge recomputes it from the model's replay (with the buffers' real
//! addresses), so a check written before the run is judged by what the
//! run should have done.

use iobench_model::dma::{Direction, Segment, Target};
use iobench_model::mem::{BufferId, BufferRange, Memory};
use iobench_model::op::Op;
use iobench_model::outcome::{Outcome, Reply};

/// A stretch of bytes: its length and its value, if known.
pub type Piece = (u64, Option<u8>);

/// Runs of one buffer: `(start, end, value)`, sorted, covering it.
type Runs = Vec<(u64, u64, Option<u8>)>;

/// The edu device's DMA buffer.
const EDU_BUFFER: u64 = 4096;

/// Known bytes of every buffer and of the edu device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shadow {
    bufs: Vec<Runs>,
    edu: Vec<Piece>,
}

impl Default for Shadow {
    fn default() -> Self {
        Shadow {
            bufs: Vec::new(),
            edu: vec![(EDU_BUFFER, None)],
        }
    }
}

/// `len` bytes of `pieces` from `from` on (unknown past their end).
fn slice(pieces: &[Piece], from: u64, len: u64) -> Vec<Piece> {
    let mut out = Vec::new();
    let (mut at, end) = (0u64, from.saturating_add(len));
    for &(l, v) in pieces {
        let (s, e) = (at.max(from), (at + l).min(end));
        if s < e {
            out.push((e - s, v));
        }
        at += l;
        if at >= end {
            break;
        }
    }
    let got: u64 = out.iter().map(|p| p.0).sum();
    if got < len {
        out.push((len - got, None));
    }
    out
}

impl Shadow {
    /// A new zeroed buffer of `size` bytes (the next [`BufferId`]).
    pub fn alloc(&mut self, size: u64) {
        self.bufs.push(if size == 0 {
            Vec::new()
        } else {
            vec![(0, size, Some(0))]
        });
    }

    /// How many buffers it knows.
    pub fn buffers(&self) -> usize {
        self.bufs.len()
    }

    /// The runs of buffer `b` that hold a known byte.
    pub fn known_runs(&self, b: BufferId) -> Vec<(u64, u64, u8)> {
        self.bufs
            .get(b.0)
            .map(|r| {
                r.iter()
                    .filter_map(|&(s, e, v)| v.map(|v| (s, e - s, v)))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The bytes of `[off, off + len)` of buffer `b`.
    pub fn read(&self, b: BufferId, off: u64, len: u64) -> Vec<Piece> {
        let Some(runs) = self.bufs.get(b.0) else {
            return vec![(len, None)];
        };
        let pieces: Vec<Piece> = runs.iter().map(|&(s, e, v)| (e - s, v)).collect();
        slice(&pieces, off, len)
    }

    /// Writes `pieces` at `off` of buffer `b` (what falls outside it is dropped).
    pub fn write(&mut self, b: BufferId, off: u64, pieces: &[Piece]) {
        let Some(runs) = self.bufs.get_mut(b.0) else {
            return;
        };
        let size = runs.last().map_or(0, |r| r.1);
        let mut at = off;
        for &(len, v) in pieces {
            let (s, e) = (at.min(size), at.saturating_add(len).min(size));
            at = at.saturating_add(len);
            if s >= e {
                continue;
            }
            let mut next: Runs = Vec::with_capacity(runs.len() + 2);
            for &(rs, re, rv) in runs.iter() {
                if re <= s || rs >= e {
                    next.push((rs, re, rv));
                    continue;
                }
                if rs < s {
                    next.push((rs, s, rv));
                }
                if re > e {
                    next.push((e, re, rv));
                }
            }
            next.push((s, e, v));
            next.sort_unstable_by_key(|r| r.0);
            // Merge neighbours of one value.
            let mut merged: Runs = Vec::with_capacity(next.len());
            for r in next {
                match merged.last_mut() {
                    Some(last) if last.1 == r.0 && last.2 == r.2 => last.1 = r.1,
                    _ => merged.push(r),
                }
            }
            *runs = merged;
        }
    }

    /// `mem.fill` of `byte`.
    pub fn fill(&mut self, b: BufferId, off: u64, len: u64, byte: u8) {
        self.write(b, off, &[(len, Some(byte))]);
    }

    /// What a `mem.check` of `byte` over the range should answer: pass
    /// (`Some(true)`), fail (`Some(false)`), or not known (`None`).
    pub fn expect_check(&self, b: BufferId, off: u64, len: u64, byte: u8) -> Option<bool> {
        let pieces = self.read(b, off, len);
        if pieces
            .iter()
            .any(|(l, v)| *l > 0 && v.is_some_and(|v| v != byte))
        {
            return Some(false);
        }
        if pieces.iter().all(|(l, v)| *l == 0 || *v == Some(byte)) {
            return Some(true);
        }
        None
    }

    /// The bytes of the pieces of an access (`segments` from the model),
    /// in IOVA order: buffer bytes, unknown elsewhere.
    fn gather(&self, start: u64, segments: &[Segment], len: u64) -> Vec<Piece> {
        let mut out = Vec::new();
        // Positions relative to `start` (an access may end at 2^64).
        let mut at = 0u64;
        for s in segments {
            let pos = s.iova.wrapping_sub(start);
            if pos > at {
                out.push((pos - at, None));
            }
            match s.target {
                Target::Buffer { buffer, offset } => out.extend(self.read(buffer, offset, s.len)),
                Target::Unknown | Target::Fault => out.push((s.len, None)),
            }
            at = pos.saturating_add(s.len);
        }
        slice(&out, 0, len)
    }

    /// Writes `bytes` (in IOVA order from `start`) where `segments` land.
    fn scatter(&mut self, start: u64, segments: &[Segment], bytes: &[Piece]) {
        for s in segments {
            if let Target::Buffer { buffer, offset } = s.target {
                let part = slice(bytes, s.iova.wrapping_sub(start), s.len);
                self.write(buffer, offset, &part);
            }
        }
    }

    /// Moves the bytes an op moved, as its predicted outcome `o` says:
    /// `mem.alloc` adds a zeroed buffer, an edu DMA fills the device's
    /// buffer or writes it out, an access copies between IOVAs and a
    /// buffer range.  Failed ops move nothing (but a failed access write
    /// may have written its first areas, which `o.dma` lists).
    pub fn apply(&mut self, mem: &Memory, op: &Op, o: &Outcome) {
        let ok = matches!(o.reply, Reply::Value(_));
        match op {
            Op::MemAlloc { size, .. } => self.alloc(*size),
            Op::EduDma {
                iova,
                count,
                direction,
            } if ok => match direction {
                Direction::Read => {
                    let got = self.gather(*iova, &o.dma, *count);
                    let rest = slice(&self.edu, *count, EDU_BUFFER - count.min(&EDU_BUFFER));
                    self.edu = got.into_iter().chain(rest).collect();
                }
                Direction::Write => {
                    let bytes = slice(&self.edu, 0, *count);
                    self.scatter(*iova, &o.dma, &bytes);
                }
            },
            Op::MockAccessRw {
                iova, range, write, ..
            } => {
                let Some((b, off, len)) = resolve(mem, range) else {
                    return;
                };
                if *write {
                    let bytes = self.read(b, off, len);
                    // A write into the very buffer range it reads from:
                    // the order of the kernel's copies decides; not judged.
                    let overlaps = o.dma.iter().any(|s| {
                        matches!(s.target, Target::Buffer { buffer, offset }
                            if buffer == b && offset < off + len && off < offset + s.len)
                    });
                    if overlaps {
                        for s in &o.dma {
                            if let Target::Buffer { buffer, offset } = s.target {
                                self.write(buffer, offset, &[(s.len, None)]);
                            }
                        }
                    } else {
                        self.scatter(*iova, &o.dma, &bytes);
                    }
                } else if ok {
                    let bytes = self.gather(*iova, &o.dma, len);
                    self.write(b, off, &bytes);
                }
            }
            _ => {}
        }
    }
}

/// A range's buffer, offset and length, as the agent takes it.
pub fn resolve(mem: &Memory, r: &BufferRange) -> Option<(BufferId, u64, u64)> {
    let (ua, len) = mem.resolve(r).ok()?;
    let base = mem.get(r.buffer).ok()?.addr;
    Some((r.buffer, ua - base, len))
}

#[cfg(test)]
mod tests {
    use super::Shadow;
    use iobench_model::dma::{Direction, Segment, Target};
    use iobench_model::mem::{BufferId, Memory};
    use iobench_model::op::Op;
    use iobench_model::outcome::{Outcome, Value};
    use iobench_model::rule::Rule;

    const A: BufferId = BufferId(0);
    const B: BufferId = BufferId(1);

    fn dma(iova: u64, count: u64, direction: Direction, segs: Vec<Segment>) -> (Op, Outcome) {
        let mut o = Outcome::value(Value::Object, Rule::SpaprDma);
        o.dma = segs;
        (
            Op::EduDma {
                iova,
                count,
                direction,
            },
            o,
        )
    }

    #[test]
    fn fills_checks_and_edu_round_trips() {
        let mem = Memory::new();
        let mut s = Shadow::default();
        s.alloc(0x2000);
        s.alloc(0x2000);
        assert_eq!(s.expect_check(A, 0, 0x2000, 0), Some(true));
        s.fill(A, 0x1000, 0x800, 0x5a);
        assert_eq!(s.expect_check(A, 0x1000, 0x800, 0x5a), Some(true));
        assert_eq!(s.expect_check(A, 0xf00, 0x200, 0x5a), Some(false));
        assert_eq!(s.known_runs(A).len(), 3);
        // Read 0x1000 bytes: half from A's filled run, half faulting.
        let (op, o) = dma(
            0x10000,
            0x1000,
            Direction::Read,
            vec![
                Segment {
                    iova: 0x10000,
                    len: 0x800,
                    target: Target::Buffer {
                        buffer: A,
                        offset: 0x1000,
                    },
                },
                Segment {
                    iova: 0x10800,
                    len: 0x800,
                    target: Target::Fault,
                },
            ],
        );
        s.apply(&mem, &op, &o);
        // Write it all to B at 0x100.
        let (op, o) = dma(
            0x20000,
            0x1000,
            Direction::Write,
            vec![Segment {
                iova: 0x20000,
                len: 0x1000,
                target: Target::Buffer {
                    buffer: B,
                    offset: 0x100,
                },
            }],
        );
        s.apply(&mem, &op, &o);
        assert_eq!(s.expect_check(B, 0x100, 0x800, 0x5a), Some(true));
        assert_eq!(s.expect_check(B, 0x900, 0x800, 0x5a), None);
        assert_eq!(s.expect_check(B, 0, 0x100, 0), Some(true));
        assert_eq!(s.expect_check(B, 0x1100, 0xf00, 0), Some(true));
    }
}
