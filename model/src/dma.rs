//! What a device access to an IOVA range reaches: the pieces of the range
//! and, for each, the buffer and offset its bytes come from or go to, or a
//! fault.  Both models answer with these ([`crate::world::World::translate`],
//! and the `dma` of an `edu.dma` or `mock.access_rw` outcome), so a
//! generator knows which buffer bytes a DMA changes and can add the
//! `mem.check` steps that prove it.

use crate::mem::{BufferId, Memory};

/// Which way the bytes go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Direction {
    /// The device reads memory (edu `to_device`, an access read).
    Read,
    /// The device writes memory (edu `from_device`, an access write).
    Write,
}

impl Direction {
    /// The edu op's `direction` word for this direction.
    pub fn edu_word(self) -> &'static str {
        match self {
            Direction::Read => "to_device",
            Direction::Write => "from_device",
        }
    }
}

/// Where one piece of an access lands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target {
    /// Bytes of a buffer, from this offset on.
    Buffer {
        /// The buffer.
        buffer: BufferId,
        /// Offset of the piece's first byte in it.
        offset: u64,
    },
    /// Memory no buffer of the scenario owns (e.g. a page whose buffer
    /// the model does not know).
    Unknown,
    /// The IOMMU refuses it (no translation or no permission): a DMA
    /// fault; the device's transfer does not reach memory.
    Fault,
}

/// One contiguous piece of an access.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Segment {
    /// First IOVA of the piece.
    pub iova: u64,
    /// Its length in bytes.
    pub len: u64,
    /// Where it lands.
    pub target: Target,
}

/// Appends a piece, merging it with the last one when both are faults or
/// both continue the same buffer without a gap.
pub fn push_segment(out: &mut Vec<Segment>, seg: Segment) {
    if let Some(last) = out.last_mut()
        && last.iova + last.len == seg.iova
    {
        let joins = match (last.target, seg.target) {
            (Target::Fault, Target::Fault) | (Target::Unknown, Target::Unknown) => true,
            (
                Target::Buffer {
                    buffer: a,
                    offset: oa,
                },
                Target::Buffer {
                    buffer: b,
                    offset: ob,
                },
            ) => a == b && oa + last.len == ob,
            _ => false,
        };
        if joins {
            last.len += seg.len;
            return;
        }
    }
    out.push(seg);
}

/// Walks `[iova, iova + len)` piece by piece: `piece(pos)` gives where an
/// access at `pos` goes and where that piece ends (exclusive; it may pass
/// the end of the range).  The pieces, joined where they continue each
/// other ([`push_segment`]).
pub fn walk(iova: u64, len: u64, mut piece: impl FnMut(u64) -> (Target, u128)) -> Vec<Segment> {
    let mut out = Vec::new();
    let end = u128::from(iova) + u128::from(len);
    let mut pos = iova;
    while u128::from(pos) < end {
        let (target, piece_end) = piece(pos);
        let piece_end = piece_end.min(end);
        if piece_end <= u128::from(pos) {
            break;
        }
        push_segment(
            &mut out,
            Segment {
                iova: pos,
                len: (piece_end - u128::from(pos)) as u64,
                target,
            },
        );
        if piece_end > u128::from(u64::MAX) {
            break;
        }
        pos = piece_end as u64;
    }
    out
}

/// What an access to user address `ua` reaches: a fault without the
/// permission, else the buffer holding it (or memory no buffer owns).
pub fn target_at(mem: &Memory, ua: u64, allowed: bool) -> Target {
    if !allowed {
        return Target::Fault;
    }
    match mem.locate(ua) {
        Some((buffer, offset)) => Target::Buffer { buffer, offset },
        None => Target::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::{Segment, Target, push_segment};
    use crate::mem::BufferId;

    #[test]
    fn contiguous_pieces_merge() {
        let b = BufferId(0);
        let mut v = Vec::new();
        let at = |iova, len, offset| Segment {
            iova,
            len,
            target: Target::Buffer { buffer: b, offset },
        };
        push_segment(&mut v, at(0x1000, 0x1000, 0));
        push_segment(&mut v, at(0x2000, 0x1000, 0x1000));
        push_segment(&mut v, at(0x3000, 0x1000, 0x5000));
        push_segment(
            &mut v,
            Segment {
                iova: 0x4000,
                len: 0x10,
                target: Target::Fault,
            },
        );
        push_segment(
            &mut v,
            Segment {
                iova: 0x4010,
                len: 0x10,
                target: Target::Fault,
            },
        );
        assert_eq!(v.len(), 3);
        assert_eq!(v[0].len, 0x2000);
        assert_eq!(v[2].len, 0x20);
    }
}
