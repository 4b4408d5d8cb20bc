//! Sequences of operations, made on the host from a seed: each op kind
//! drawn by weight among those that make sense in the model's state, its
//! arguments mostly from the model's interesting points
//! (`iobench_model::points`: window and area edges, a page off them,
//! misaligned by half a page, sizes around powers of two, registered
//! ranges), sometimes near them or anywhere.  The model predicts each op
//! as it is drawn, so a sequence knows its objects (buffers, IOAS, mock
//! domains, accesses), and an op the model says crashes the guest is kept
//! only now and then (it costs a reboot) and ends the sequence.
//!
//! At a few places a sequence probes where device accesses land: bytes
//! are written where a read will come from, the edu device (or a mock
//! access) reads an IOVA and writes another, and every buffer is checked
//! against what the [`Shadow`] says it holds.  Sequence N of seed S is
//! the same on every run ([`sequence`] draws from its own stream).

use iobench_model::dma::{Direction, Target as DmaTarget};
use iobench_model::mem::{BufferId, BufferRange};
use iobench_model::op::{AccessId, Arg, IoasId, MockId, Op, Step};
use iobench_model::outcome::Reply;
use iobench_model::points::{self, Points};
use iobench_model::world::{Backend, World};

use super::rng::Rng;
use super::shadow::Shadow;
use super::target::{Probe, Target};

/// One step of a sequence.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Item {
    /// An operation the model predicts.
    Op(Op),
    /// `mem.fill` of a byte (a probe's source bytes).
    Fill {
        /// The buffer.
        buffer: BufferId,
        /// First byte.
        offset: u64,
        /// Bytes.
        length: u64,
        /// The value.
        byte: u8,
    },
    /// `mem.check` of a byte (where a probe's bytes should be, or not).
    Check {
        /// The buffer.
        buffer: BufferId,
        /// First byte.
        offset: u64,
        /// Bytes.
        length: u64,
        /// The value.
        byte: u8,
    },
}

/// How many objects of each kind the items so far tried to make: the
/// n-th op that makes a buffer binds `bufN`, an IOAS `ioasN`, a mock
/// domain `mockN`, an access `accN`, whether or not it succeeds (a later
/// step naming a failed one refers to nothing, and the agent says so).
/// Ops name objects by these attempt numbers; [`Made`] says which model
/// object each attempt made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Attempts {
    /// Buffers.
    pub buffers: usize,
    /// IOAS.
    pub ioas: usize,
    /// Mock domains.
    pub mocks: usize,
    /// Accesses.
    pub accesses: usize,
}

impl Attempts {
    /// The name `op` binds its object to, if it makes one.
    pub fn bind(&self, op: &Op) -> Option<String> {
        match op {
            Op::MemAlloc { .. } => Some(BufferId(self.buffers).name()),
            Op::IoasAlloc => Some(IoasId(self.ioas).name()),
            Op::MockDomain { .. } => Some(MockId(self.mocks).name()),
            Op::MockAccessCreate { .. } => Some(AccessId(self.accesses).name()),
            _ => None,
        }
    }

    /// Counts `op`'s attempt.
    pub fn note(&mut self, op: &Op) {
        match op {
            Op::MemAlloc { .. } => self.buffers += 1,
            Op::IoasAlloc => self.ioas += 1,
            Op::MockDomain { .. } => self.mocks += 1,
            Op::MockAccessCreate { .. } => self.accesses += 1,
            _ => {}
        }
    }
}

/// Which model object each attempt made (`None`: the model says it
/// failed).  Buffers and IOAS always succeed in the model: their attempt
/// numbers are the model's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Made {
    mocks: Vec<Option<usize>>,
    accesses: Vec<Option<usize>>,
}

impl Made {
    /// `op` with the model's numbers for the objects it names, or `None`
    /// if it names one the model never made.
    pub fn to_model(&self, op: &Op) -> Option<Op> {
        let map = |v: &[Option<usize>], i: usize| v.get(i).copied().flatten();
        Some(match op {
            Op::MockDestroy { mock } => Op::MockDestroy {
                mock: MockId(map(&self.mocks, mock.0)?),
            },
            Op::MockAccessRw {
                access,
                iova,
                range,
                write,
            } => Op::MockAccessRw {
                access: AccessId(map(&self.accesses, access.0)?),
                iova: *iova,
                range: *range,
                write: *write,
            },
            other => other.clone(),
        })
    }

    /// Notes what a creation op's attempt made in world `before` (the
    /// state before it) given the model's outcome.
    pub fn note(&mut self, op: &Op, before: &World, ok: bool) {
        let (_, mocks, accesses) = match &before.backend {
            Backend::Iommufd(f) => f.counts(),
            _ => (0, 0, 0),
        };
        match op {
            Op::MockDomain { .. } => self.mocks.push(ok.then_some(mocks)),
            Op::MockAccessCreate { .. } => self.accesses.push(ok.then_some(accesses)),
            _ => {}
        }
    }

    /// The attempt that made model access `a`.
    fn access_attempt(&self, a: usize) -> Option<usize> {
        self.accesses.iter().position(|x| *x == Some(a))
    }

    /// The attempt that made model mock domain `m`.
    fn mock_attempt(&self, m: usize) -> Option<usize> {
        self.mocks.iter().position(|x| *x == Some(m))
    }
}

/// Predicts `op` (attempt-numbered) in `w` and applies it: `None` if it
/// names an object the model never made.
pub fn apply(
    w: &mut World,
    made: &mut Made,
    op: &Op,
) -> Option<Result<iobench_model::outcome::Outcome, iobench_model::error::ModelError>> {
    let model_op = made.to_model(op)?;
    let before = w.clone();
    let r = w.apply(&model_op);
    if let Ok(o) = &r {
        made.note(op, &before, matches!(o.reply, Reply::Value(_)));
    }
    Some(r)
}

impl Item {
    /// Its scenario step after the attempts `a` of the items before it.
    pub fn step(&self, a: &Attempts) -> Step {
        let bytes = |op: &'static str, buffer: &BufferId, offset: u64, length: u64, byte: u8| {
            Step::new(op)
                .arg("buffer", Arg::Ref(buffer.name()))
                .arg("offset", Arg::U64(offset))
                .arg("length", Arg::U64(length))
                .arg("pattern", Arg::Text(format!("byte:{byte:#04x}")))
        };
        match self {
            Item::Op(op) => op.step(a.bind(op)),
            Item::Fill {
                buffer,
                offset,
                length,
                byte,
            } => bytes("mem.fill", buffer, *offset, *length, *byte),
            Item::Check {
                buffer,
                offset,
                length,
                byte,
            } => bytes("mem.check", buffer, *offset, *length, *byte),
        }
    }

    /// Whether it is an op the model predicts, other than a device access
    /// of a probe (edu DMA): what the throughput counts.
    pub fn is_checked_op(&self) -> bool {
        matches!(self, Item::Op(op) if !matches!(op, Op::EduDma { .. }))
    }
}

/// A generated sequence: where it came from and its items.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Sequence {
    /// The run's seed.
    pub seed: u64,
    /// Its index in the run.
    pub index: u64,
    /// What it does.
    pub items: Vec<Item>,
}

/// How sequences are drawn.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Fewest ops after the warm-up.
    pub min_len: usize,
    /// Most ops after the warm-up.
    pub max_len: usize,
    /// Probes per sequence.
    pub probes: usize,
    /// An op the model says crashes the guest is kept once in this many
    /// draws (0: never).
    pub crash_one_in: u64,
    /// An op the model says disables DDW for the PE until the guest
    /// reboots is kept once in this many draws (0: never); the sequence
    /// then goes last in its batch.
    pub ddw_off_one_in: u64,
    /// One sequence in this many (sPAPR) may use big tables: the 1 GiB
    /// default window, windows of more than 2^13 TCEs.  The others remove
    /// the pending default window first: clearing a table costs one
    /// hypervisor call per TCE when the container is closed (a quarter
    /// of a second for the default window under TCG).
    pub big_tables_one_in: u64,
    /// Sequences that reached kernel code earlier ones had not (the
    /// corpus of a `--kcov` run, `super::corpus`), each with its weight.
    pub parents: std::sync::Arc<Vec<(Vec<Item>, u32)>>,
    /// With parents, one sequence in this many is a mutation of one
    /// (the others are drawn afresh).
    pub mutate_one_in: u64,
}

impl Default for Plan {
    fn default() -> Self {
        Plan {
            min_len: 30,
            max_len: 90,
            probes: 1,
            crash_one_in: 10,
            ddw_off_one_in: 12,
            big_tables_one_in: 10,
            parents: Default::default(),
            mutate_one_in: 2,
        }
    }
}

/// Sequence `index` of run `seed` on `target`: drawn afresh, or (with
/// `plan.parents`, one in `plan.mutate_one_in`) a mutation of a parent.
pub fn sequence(target: &Target, plan: &Plan, seed: u64, index: u64) -> Sequence {
    // Its own stream, so a run without parents draws what it always did.
    let mut pick = Rng::for_sequence(seed ^ 0x5851_f42d_4c95_7f2d, index);
    let weights: Vec<u32> = plan.parents.iter().map(|(_, w)| *w).collect();
    let parent = if plan.mutate_one_in != 0 && pick.chance(1, plan.mutate_one_in) {
        pick.weighted(&weights)
    } else {
        None
    };
    if let Some(k) = parent {
        let other = pick.weighted(&weights).unwrap_or(k);
        let (mine, theirs) = (&plan.parents[k].0, &plan.parents[other].0);
        let mut g = Gen::new(target, plan, seed, index);
        let acts = g.mutation(mine, theirs);
        g.play(&acts);
        // A mutation the model took nothing of, or its parent again, is
        // no new sequence: one is drawn afresh instead.
        if g.items.iter().any(Item::is_checked_op) && g.items != *mine {
            return Sequence {
                seed,
                index,
                items: g.items,
            };
        }
    }
    let mut g = Gen::new(target, plan, seed, index);
    g.warm_up();
    let span = plan.max_len.saturating_sub(plan.min_len) as u64 + 1;
    let len = plan.min_len + g.rng.below(span) as usize;
    g.play(&vec![Act::Draw; len]);
    Sequence {
        seed,
        index,
        items: g.items,
    }
}

/// A step of a sequence's making: a parent's op again, or a new one.
#[derive(Debug, Clone, PartialEq)]
enum Act {
    /// The op, if the model takes it where it now comes.
    Replay(Op),
    /// An op drawn as a fresh sequence draws one.
    Draw,
}

/// The ops of a parent a mutation starts from: its probes' device
/// accesses, fills and checks left out (a mutation probes afresh).
fn parent_ops(items: &[Item]) -> Vec<Act> {
    items
        .iter()
        .filter_map(|it| match it {
            Item::Op(op) if !matches!(op, Op::EduDma { .. }) => Some(Act::Replay(op.clone())),
            _ => None,
        })
        .collect()
}

/// Whether `items` are well formed: every object an op or a check
/// names was tried before it, every range is inside its buffer.  (The
/// model decides the rest when the sequence is judged: an object its
/// attempt failed to make is named by nothing.)  What a shortened
/// sequence must be to be worth running.
pub fn valid(items: &[Item]) -> bool {
    let mut a = Attempts::default();
    let mut sizes: Vec<u64> = Vec::new();
    let range_ok = |sizes: &[u64], r: &BufferRange| {
        sizes.get(r.buffer.0).is_some_and(|size| {
            let len = r.length.unwrap_or(size.saturating_sub(r.offset));
            r.offset.checked_add(len).is_some_and(|end| end <= *size)
        })
    };
    for it in items {
        let ok = match it {
            Item::Op(op) => {
                let ioas_ok = |i: &IoasId| i.0 < a.ioas;
                let fine = match op {
                    Op::Register(r) | Op::Unregister(r) => range_ok(&sizes, r),
                    Op::MapDma { range, .. } => range_ok(&sizes, range),
                    Op::IoasMap { ioas, range, .. } => ioas_ok(ioas) && range_ok(&sizes, range),
                    Op::IoasUnmap { ioas, .. }
                    | Op::IoasAllowIovas { ioas, .. }
                    | Op::IoasIovaRanges { ioas }
                    | Op::MockDomain { ioas }
                    | Op::MockAddReserved { ioas, .. }
                    | Op::MockAccessCreate { ioas, .. }
                    | Op::DeviceAttach { ioas } => ioas_ok(ioas),
                    Op::IoasCopy { src, dst, .. } => ioas_ok(src) && ioas_ok(dst),
                    Op::MockDestroy { mock } => mock.0 < a.mocks,
                    Op::MockAccessRw { access, range, .. } => {
                        access.0 < a.accesses && range_ok(&sizes, range)
                    }
                    _ => true,
                };
                if let Op::MemAlloc { size, .. } = op {
                    sizes.push(*size);
                }
                a.note(op);
                fine
            }
            Item::Fill {
                buffer,
                offset,
                length,
                ..
            }
            | Item::Check {
                buffer,
                offset,
                length,
                ..
            } => range_ok(&sizes, &BufferRange::part(*buffer, *offset, *length)),
        };
        if !ok {
            return false;
        }
    }
    true
}

struct Gen<'a> {
    rng: Rng,
    world: World,
    shadow: Shadow,
    items: Vec<Item>,
    plan: &'a Plan,
    probe: Probe,
    spapr: bool,
    device: bool,
    attempts: Attempts,
    made: Made,
    /// May use the default window and other big tables.
    big_tables: bool,
    next_byte: u8,
    next_addr: u64,
    /// IOVAs this sequence mapped (or tried to): probes like them.
    touched: Vec<u64>,
    /// IOVAs it unmapped: a probe there shows whether they really are.
    unmapped: Vec<u64>,
    ended: bool,
}

/// Whether the model's PE has DDW disabled until reboot.
pub fn ddw_disabled(w: &World) -> bool {
    matches!(&w.backend, Backend::Spapr(c) if c.ddw_disabled())
}

/// Sizes of new buffers, with their weights: the big ones (a huge
/// page's worth and more, what THP alignment and 2M windows need) less
/// often, as the agent touches every page of a new buffer.
fn buffer_sizes(page: u64) -> ([u64; 7], [u32; 7]) {
    (
        [
            page,
            2 * page,
            0x10000,
            0x10000 + page,
            16 * page,
            1 << 20,
            (2 << 20) + page,
        ],
        [4, 4, 4, 2, 2, 1, 1],
    )
}

impl<'a> Gen<'a> {
    /// The maker of sequence `index` of run `seed`, from the target's
    /// fresh state.
    fn new(target: &Target, plan: &'a Plan, seed: u64, index: u64) -> Gen<'a> {
        Gen {
            rng: Rng::for_sequence(seed, index),
            world: target.world.clone(),
            shadow: Shadow::default(),
            items: Vec::new(),
            plan,
            probe: target.probe,
            spapr: target.is_spapr(),
            device: target.has_device(),
            attempts: Attempts::default(),
            made: Made::default(),
            big_tables: plan.big_tables_one_in != 0
                && Rng::for_sequence(seed.rotate_left(17), index).chance(1, plan.big_tables_one_in),
            next_byte: 0,
            next_addr: 0x7fff_8000_0000,
            touched: Vec::new(),
            unmapped: Vec::new(),
            ended: false,
        }
    }

    /// Predicts `op`, keeps it if the model can take it (a crash only
    /// now and then; it ends the sequence), and moves the model on.
    fn push(&mut self, op: Op) -> bool {
        if self.ended {
            return false;
        }
        let mut w = self.world.clone();
        let mut made = self.made.clone();
        let Some(Ok(o)) = apply(&mut w, &mut made, &op) else {
            return false;
        };
        if matches!(o.reply, Reply::Crash) {
            // An iommufd "crash" is the guest hanging (the model's
            // replace-foreign-domain-hang): it costs the reply deadline,
            // so it is kept five times less often.
            let one_in = self.plan.crash_one_in * if self.spapr { 1 } else { 5 };
            if one_in == 0 || !self.rng.chance(1, one_in) {
                return false;
            }
            self.ended = true;
        }
        if ddw_disabled(&w)
            && !ddw_disabled(&self.world)
            && (self.plan.ddw_off_one_in == 0 || !self.rng.chance(1, self.plan.ddw_off_one_in))
        {
            return false;
        }
        if let Op::MemAlloc { size, .. } = op {
            // Addresses as mmap hands them out, top down (the run's real
            // ones replace them when it is judged).
            let page = w.page_size();
            self.next_addr -= size.div_ceil(page) * page;
            let id = BufferId(w.mem.len() - 1);
            let _ = w.set_buffer_addr(id, self.next_addr);
        }
        self.shadow.apply(&w.mem, &op, &o);
        match &op {
            Op::MapDma { iova, .. }
            | Op::IoasMap {
                iova: Some(iova), ..
            } => self.touch(*iova),
            Op::IoasMap { iova: None, .. } | Op::IoasCopy { .. } => {
                if let Some(n) = o.number() {
                    self.touch(n);
                }
            }
            Op::UnmapDma { iova, .. } | Op::IoasUnmap { iova, .. } if self.unmapped.len() < 16 => {
                self.unmapped.push(*iova);
            }
            _ => {}
        }
        self.world = w;
        self.made = made;
        self.attempts.note(&op);
        self.items.push(Item::Op(op));
        true
    }

    fn touch(&mut self, iova: u64) {
        if self.touched.len() < 16 {
            self.touched.push(iova);
        }
    }

    fn byte(&mut self) -> u8 {
        self.next_byte = self.next_byte % 254 + 1;
        self.next_byte
    }

    fn page(&self) -> u64 {
        self.world.page_size()
    }

    fn size(&mut self) -> u64 {
        let (sizes, weights) = buffer_sizes(self.page());
        sizes[self.rng.weighted(&weights).expect("weights")]
    }

    fn alloc(&mut self) -> bool {
        let size = self.size();
        self.push(Op::MemAlloc {
            size,
            hugetlb: false,
        })
    }

    /// Plays `acts` (each op kept where the model takes it), with the
    /// plan's probes at random places among them.
    fn play(&mut self, acts: &[Act]) {
        let len = acts.len();
        let mut probe_at: Vec<usize> = (0..self.plan.probes)
            .map(|_| self.rng.below(len as u64 + 1) as usize)
            .collect();
        probe_at.sort_unstable();
        for (i, act) in acts.iter().map(Some).chain([None]).enumerate() {
            while probe_at.first() == Some(&i) && !self.ended {
                probe_at.remove(0);
                self.probe();
            }
            let Some(act) = act.filter(|_| !self.ended) else {
                break;
            };
            match act {
                Act::Replay(op) => {
                    // Only if what it names was tried before it here too.
                    self.items.push(Item::Op(op.clone()));
                    let named = valid(&self.items);
                    self.items.pop();
                    if named {
                        self.push(op.clone());
                    }
                }
                Act::Draw => self.random_op(),
            }
        }
    }

    /// What a mutation of `parent` plays (`other` is a second parent to
    /// splice in): a new tail after a prefix of its ops, a few new ops
    /// put in, a few taken out, or a prefix followed by the other's ops
    /// from somewhere on.  Ops that refer to objects a change removed are
    /// dropped when played (the model does not take them).  Empty if the
    /// parent has no ops.
    fn mutation(&mut self, parent: &[Item], other: &[Item]) -> Vec<Act> {
        let ops = parent_ops(parent);
        let n = ops.len();
        if n == 0 {
            return Vec::new();
        }
        let most = self.plan.max_len * 2;
        let mut acts: Vec<Act> = match self.rng.below(4) {
            0 => {
                let keep = 1 + self.rng.below(n as u64) as usize;
                let more = 1 + self.rng.below(self.plan.max_len.max(2) as u64 / 2) as usize;
                let mut a = ops[..keep].to_vec();
                a.extend(std::iter::repeat_n(Act::Draw, more));
                a
            }
            1 => {
                let at = self.rng.below(n as u64 + 1) as usize;
                let more = 1 + self.rng.below(3) as usize;
                let mut a = ops[..at].to_vec();
                a.extend(std::iter::repeat_n(Act::Draw, more));
                a.extend_from_slice(&ops[at..]);
                a
            }
            2 if n > 1 => {
                let at = self.rng.below(n as u64) as usize;
                let gone = (1 + self.rng.below(3) as usize).min(n - at);
                let mut a = ops[..at].to_vec();
                a.extend_from_slice(&ops[at + gone..]);
                a
            }
            _ => {
                let theirs = parent_ops(other);
                let keep = 1 + self.rng.below(n as u64) as usize;
                let from = self.rng.below(theirs.len() as u64 + 1) as usize;
                let mut a = ops[..keep].to_vec();
                a.extend_from_slice(&theirs[from..]);
                a
            }
        };
        acts.truncate(most);
        acts
    }

    fn warm_up(&mut self) {
        for _ in 0..1 + self.rng.below(3) {
            self.alloc();
        }
        if self.spapr {
            if !self.big_tables {
                self.push(Op::RemoveWindow { start_addr: 0 });
            }
            if self.rng.chance(4, 5) {
                self.push(Op::Register(BufferRange::whole(BufferId(0))));
            }
            return;
        }
        self.push(Op::IoasAlloc);
        if self.device {
            if self.rng.chance(3, 4) {
                self.push(Op::DeviceAttach { ioas: IoasId(0) });
            }
        } else if self.rng.chance(3, 4) {
            self.push(Op::MockDomain { ioas: IoasId(0) });
        }
    }

    fn random_op(&mut self) {
        for _ in 0..12 {
            let op = if self.spapr {
                self.spapr_op()
            } else {
                self.ioas_op()
            };
            if let Some(op) = op
                && self.push(op)
            {
                return;
            }
        }
    }

    // ---- arguments ----

    fn near(&mut self, v: u64, step: u64) -> u64 {
        match self.rng.below(4) {
            0 => v.wrapping_add(step),
            1 => v.wrapping_sub(step),
            _ => v,
        }
    }

    fn iova(&mut self, p: &Points) -> u64 {
        let page = self.page();
        match self.rng.below(20) {
            0..=13 => *self.rng.pick(&p.iovas).unwrap_or(&0),
            14..=15 if !self.touched.is_empty() => {
                let t = *self.rng.pick(&self.touched).expect("not empty");
                self.near(t, page)
            }
            16..=17 => {
                let v = *self.rng.pick(&p.iovas).unwrap_or(&0);
                let k = 1 + self.rng.below(16);
                self.near(v, k * page)
            }
            18 => self.rng.below(1 << 20) * page,
            _ => self.rng.next_u64() & !0xfff,
        }
    }

    fn length(&mut self, p: &Points) -> u64 {
        let page = self.page();
        match self.rng.below(10) {
            0..=6 => *self.rng.pick(&p.lengths).unwrap_or(&page),
            7..=8 => page * (1 + self.rng.below(32)),
            _ => self.rng.below(1 << 24),
        }
    }

    fn range(&mut self, p: &Points) -> Option<BufferRange> {
        let n = self.world.mem.len();
        if n == 0 {
            return None;
        }
        if self.rng.chance(4, 5)
            && let Some(r) = self.rng.pick(&points::ranges_of(p, n))
        {
            return Some(*r);
        }
        Some(BufferRange::whole(BufferId(
            self.rng.below(n as u64) as usize
        )))
    }

    fn rw(&mut self) -> (bool, bool) {
        match self.rng.below(12) {
            0 => (true, false),
            1 => (false, true),
            2 if self.rng.chance(1, 3) => (false, false),
            _ => (true, true),
        }
    }

    // ---- sPAPR ----

    fn spapr_op(&mut self) -> Option<Op> {
        let p = points::for_world(&self.world);
        let n = self.world.mem.len();
        let weights = [
            if n < 5 { 2 } else { 0 }, // alloc
            1,                         // info
            5,                         // register
            3,                         // unregister
            4,                         // create
            3,                         // remove
            12,                        // map
            8,                         // unmap
        ];
        Some(match self.rng.weighted(&weights)? {
            0 => Op::MemAlloc {
                size: self.size(),
                hugetlb: false,
            },
            1 => Op::TceInfo,
            2 => Op::Register(self.range(&p)?),
            3 => {
                // Mostly what is registered, exactly.
                let registered: Vec<BufferRange> = match &self.world.backend {
                    Backend::Spapr(c) => c
                        .registered()
                        .into_iter()
                        .filter_map(|(ua, len)| {
                            let (b, off) = self.world.mem.locate(ua)?;
                            Some(BufferRange::part(b, off, len))
                        })
                        .collect(),
                    _ => Vec::new(),
                };
                match self.rng.pick(&registered) {
                    Some(r) if self.rng.chance(3, 4) => Op::Unregister(*r),
                    _ => Op::Unregister(self.range(&p)?),
                }
            }
            4 => self.create(&p)?,
            5 => {
                let a = if self.rng.chance(5, 6) {
                    *self.rng.pick(&p.window_addrs)?
                } else {
                    self.iova(&p)
                };
                Op::RemoveWindow { start_addr: a }
            }
            6 => {
                let (read, write) = self.rw();
                Op::MapDma {
                    iova: self.iova(&p),
                    range: self.range(&p)?,
                    read,
                    write,
                }
            }
            _ => Op::UnmapDma {
                iova: self.iova(&p),
                length: self.length(&p),
            },
        })
    }

    fn create(&mut self, p: &Points) -> Option<Op> {
        let page_shift = if self.rng.chance(6, 7) {
            *self.rng.pick(&p.page_shifts)?
        } else {
            *self.rng.pick(&[0u32, 11, 12, 16, 21, 24, 63, 64])?
        };
        let window_size = if self.rng.chance(5, 6) {
            *self.rng.pick(&p.window_sizes)?
        } else {
            1u64 << (12 + self.rng.below(29))
        };
        let levels = if self.rng.chance(7, 8) {
            None
        } else {
            Some(*self.rng.pick(&[0u32, 1, 2, 3, 5])?)
        };
        // QEMU allocates a window's TCE table in full (8 bytes per TCE;
        // 2^32 and more wrap to 0 and fail first), and the guest its view:
        // keep both small.
        if page_shift < 64 {
            let tces = window_size >> page_shift;
            let most = if self.big_tables { 1 << 19 } else { 1 << 13 };
            if tces > most && tces < 1 << 32 {
                return None;
            }
        }
        Some(Op::CreateWindow {
            page_shift,
            window_size,
            levels,
        })
    }

    // ---- iommufd ----

    fn ioas_op(&mut self) -> Option<Op> {
        let Backend::Iommufd(f) = &self.world.backend else {
            return None;
        };
        let (n_ioas, n_mock, n_acc) = f.counts();
        let n = self.world.mem.len();
        let has = |c: bool, w: u32| if c { w } else { 0 };
        let weights = [
            has(n < 5, 2),                                     // alloc
            has(n_ioas < 3, if n_ioas == 0 { 20 } else { 1 }), // ioas
            has(n_ioas > 0 && n > 0, 12),                      // map
            has(n_ioas > 0, 8),                                // unmap
            has(n_ioas > 0, 3),                                // copy
            has(n_ioas > 0, 2),                                // allow
            has(n_ioas > 0, 2),                                // ranges
            has(n_ioas > 0 && n_mock < 3, 2),                  // mock domain
            has(n_mock > 0, 1),                                // destroy
            has(n_ioas > 0, 2),                                // reserve
            has(n_ioas > 0 && n_acc < 3, 1),                   // access
            has(n_acc > 0 && n > 0, 3),                        // access rw
            has(n_ioas > 0 && self.device, 2),                 // attach
            has(self.device, 1),                               // detach
        ];
        let which = self.rng.weighted(&weights)?;
        let ioas = IoasId(self.rng.below(n_ioas.max(1) as u64) as usize);
        let p = points::ioas(f, &self.world.mem, ioas);
        let areas = f.areas(ioas);
        Some(match which {
            0 => Op::MemAlloc {
                size: self.size(),
                hugetlb: false,
            },
            1 => Op::IoasAlloc,
            2 => {
                let (read, write) = self.rw();
                let iova = if self.rng.chance(2, 5) {
                    None
                } else {
                    Some(self.iova(&p))
                };
                Op::IoasMap {
                    ioas,
                    range: self.range(&p)?,
                    iova,
                    read,
                    write,
                }
            }
            3 => {
                let (iova, length) = match self.rng.below(10) {
                    0 => (0, u64::MAX),
                    1..=3 if !areas.is_empty() => *self.rng.pick(&areas)?,
                    _ => (self.iova(&p), self.length(&p)),
                };
                Op::IoasUnmap { ioas, iova, length }
            }
            4 => {
                let dst = IoasId(self.rng.below(n_ioas as u64) as usize);
                let (src_iova, length) = match self.rng.pick(&areas) {
                    Some(&(s, l)) if self.rng.chance(3, 4) => {
                        let page = self.page();
                        if l > page && self.rng.chance(1, 3) {
                            (s + page, l - page)
                        } else {
                            (s, l)
                        }
                    }
                    _ => (self.iova(&p), self.length(&p)),
                };
                let dst_p = match &self.world.backend {
                    Backend::Iommufd(f) => points::ioas(f, &self.world.mem, dst),
                    _ => Points::default(),
                };
                let dst_iova = if self.rng.chance(1, 2) {
                    None
                } else {
                    Some(self.iova(&dst_p))
                };
                let (read, write) = self.rw();
                Op::IoasCopy {
                    src: ioas,
                    dst,
                    src_iova,
                    length,
                    dst_iova,
                    read,
                    write,
                }
            }
            5 => {
                let k = self.rng.below(3);
                let mut ranges = Vec::new();
                for _ in 0..k {
                    let s = self.iova(&p);
                    let len = self.length(&p).max(1);
                    let last = if self.rng.chance(1, 10) {
                        s
                    } else {
                        s.saturating_add(len - 1)
                    };
                    ranges.push((s, last));
                }
                Op::IoasAllowIovas { ioas, ranges }
            }
            6 => Op::IoasIovaRanges { ioas },
            7 => Op::MockDomain { ioas },
            8 => Op::MockDestroy {
                mock: MockId(
                    self.made
                        .mock_attempt(self.rng.below(n_mock as u64) as usize)?,
                ),
            },
            9 => Op::MockAddReserved {
                ioas,
                start: self.iova(&p),
                length: self.length(&p),
            },
            10 => Op::MockAccessCreate {
                ioas,
                pin_pages: self.rng.chance(1, 3),
            },
            11 => {
                let access = AccessId(
                    self.made
                        .access_attempt(self.rng.below(n_acc as u64) as usize)?,
                );
                let page = self.page();
                let b = BufferId(self.rng.below(n as u64) as usize);
                let size = self.world.mem.get(b).ok()?.size;
                let len = (*self.rng.pick(&[64, 2048, page, 2 * page, 1 << 20])?).min(size);
                let off = (*self.rng.pick(&[0, 64, page])?).min(size - len);
                let iova = match self.rng.pick(&areas) {
                    Some(&(s, _)) if self.rng.chance(2, 3) => s + self.rng.below(4) * 1024,
                    _ => self.iova(&p),
                };
                Op::MockAccessRw {
                    access,
                    iova,
                    range: BufferRange::part(b, off, len),
                    write: self.rng.chance(1, 2),
                }
            }
            12 => Op::DeviceAttach { ioas },
            _ => Op::DeviceDetach,
        })
    }

    // ---- probes ----

    /// IOVAs a probe may try: those the sequence touched, then the points.
    fn probe_candidates(&mut self) -> Vec<u64> {
        let mut c = self.touched.clone();
        let p = points::for_world(&self.world);
        c.extend(p.iovas);
        c
    }

    /// An IOVA where an access of `len` bytes reaches a buffer (mostly),
    /// or any candidate.
    fn probe_iova(&mut self, candidates: &[u64], dir: Direction, len: u64) -> u64 {
        // A write now and then where the sequence unmapped: nothing should
        // land there.  (Reads fetch the bytes the write puts down, so they
        // go where the model sees a buffer, bytes it knows.)
        if dir == Direction::Write && !self.unmapped.is_empty() && self.rng.chance(1, 3) {
            return *self.rng.pick(&self.unmapped).expect("not empty");
        }
        let want_hit = dir == Direction::Read || self.rng.chance(4, 5);
        let mut last = 0;
        for _ in 0..12 {
            let Some(&v) = self.rng.pick(candidates) else {
                break;
            };
            let v = if self.rng.chance(1, 4) {
                v.wrapping_add(self.rng.below(4) * 1024)
            } else {
                v
            };
            last = v;
            let hit = self.world.translate(v, len, dir).is_ok_and(|s| {
                s.iter()
                    .any(|x| matches!(x.target, DmaTarget::Buffer { .. }))
            });
            if hit || !want_hit {
                return v;
            }
        }
        last
    }

    fn probe(&mut self) {
        match self.probe {
            Probe::Edu => self.probe_edu(),
            Probe::Access => self.probe_access(),
        }
        self.checks();
    }

    /// Fills the buffer pieces of `[iova, iova + len)` (as `dir` reaches
    /// them) with fresh bytes.
    fn fill_sources(&mut self, segs: &[iobench_model::dma::Segment]) {
        for s in segs {
            if let DmaTarget::Buffer { buffer, offset } = s.target {
                let byte = self.byte();
                self.shadow.fill(buffer, offset, s.len, byte);
                self.items.push(Item::Fill {
                    buffer,
                    offset,
                    length: s.len,
                    byte,
                });
            }
        }
    }

    fn probe_edu(&mut self) {
        let count = *self
            .rng
            .pick(&[4096u64, 4096, 2048, 256, 8])
            .expect("not empty");
        let candidates = self.probe_candidates();
        let from = self.probe_iova(&candidates, Direction::Read, count);
        let to = self.probe_iova(&candidates, Direction::Write, count);
        if let Ok(segs) = self.world.translate(from, count, Direction::Read) {
            self.fill_sources(&segs);
        }
        for (iova, direction) in [(from, Direction::Read), (to, Direction::Write)] {
            self.push(Op::EduDma {
                iova,
                count,
                direction,
            });
        }
    }

    fn probe_access(&mut self) {
        let Backend::Iommufd(f) = &self.world.backend else {
            return;
        };
        let (n_ioas, _, n_acc) = f.counts();
        let n = self.world.mem.len();
        if n_ioas == 0 || n == 0 {
            return;
        }
        // An IOAS with areas if there is one, and an access on it.
        let with_areas: Vec<usize> = (0..n_ioas)
            .filter(|i| !f.areas(IoasId(*i)).is_empty())
            .collect();
        let ioas = match self.rng.pick(&with_areas) {
            Some(i) => IoasId(*i),
            None => IoasId(self.rng.below(n_ioas as u64) as usize),
        };
        let existing = (0..n_acc)
            .filter(|a| f.access_ioas(AccessId(*a)) == Some(ioas))
            .find_map(|a| self.made.access_attempt(a));
        let access = match existing {
            Some(a) => AccessId(a),
            None => {
                let next = self.attempts.accesses;
                if !self.push(Op::MockAccessCreate {
                    ioas,
                    pin_pages: false,
                }) || self.made.accesses.get(next).copied().flatten().is_none()
                {
                    return;
                }
                AccessId(next)
            }
        };
        let Backend::Iommufd(f) = &self.world.backend else {
            return;
        };
        let mut candidates: Vec<u64> = f.areas(ioas).iter().map(|a| a.0).collect();
        candidates.extend(self.touched.iter().copied());
        candidates.extend(points::ioas(f, &self.world.mem, ioas).iovas);
        let page = self.page();
        let len = *self
            .rng
            .pick(&[page, 2048, 64, 2 * page])
            .expect("not empty");
        for write in [false, true] {
            let b = BufferId(self.rng.below(n as u64) as usize);
            let Ok(size) = self.world.mem.get(b).map(|x| x.size) else {
                return;
            };
            let len = len.min(size);
            let off = self.rng.below((size - len) / 64 + 1) * 64;
            let range = BufferRange::part(b, off, len);
            let iova = self.probe_iova(&candidates, Direction::Read, len);
            let op = Op::MockAccessRw {
                access,
                iova,
                range,
                write,
            };
            if write {
                let byte = self.byte();
                self.shadow.fill(b, off, len, byte);
                self.items.push(Item::Fill {
                    buffer: b,
                    offset: off,
                    length: len,
                    byte,
                });
            } else {
                // The bytes the read will fetch: where the model sends it.
                let mut w = self.world.clone();
                let mut made = self.made.clone();
                if let Some(Ok(o)) = apply(&mut w, &mut made, &op) {
                    self.fill_sources(&o.dma);
                }
            }
            self.push(op);
        }
    }

    /// Checks every known run of every buffer (bounded).
    fn checks(&mut self) {
        let mut budget: u64 = 8 << 20;
        let mut count = 0;
        for b in 0..self.shadow.buffers() {
            for (offset, length, byte) in self.shadow.known_runs(BufferId(b)) {
                if count >= 24 || length > budget {
                    return;
                }
                budget -= length;
                count += 1;
                self.items.push(Item::Check {
                    buffer: BufferId(b),
                    offset,
                    length,
                    byte,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Item, Plan, sequence, valid};
    use crate::fuzz::target::Target;
    use harness::linux::Linux;
    use iobench_model::op::Op;

    fn target(m: &str) -> Target {
        Target::new(m, Linux::V7_2, Default::default()).unwrap()
    }

    #[test]
    fn same_seed_same_sequences() {
        for m in ["pseries", "pseries-64k", "q35-mock", "q35"] {
            let t = target(m);
            let plan = Plan::default();
            let a: Vec<_> = (0..30).map(|i| sequence(&t, &plan, 7, i)).collect();
            let b: Vec<_> = (0..30).rev().map(|i| sequence(&t, &plan, 7, i)).collect();
            let b: Vec<_> = b.into_iter().rev().collect();
            assert_eq!(a, b, "{m}");
            let c: Vec<_> = (0..30).map(|i| sequence(&t, &plan, 8, i)).collect();
            assert_ne!(a, c, "{m}: another seed, other sequences");
            for s in &a {
                assert!(valid(&s.items), "{m}: sequence {} is not valid", s.index);
                assert!(s.items.len() >= plan.min_len, "{m}");
            }
        }
    }

    #[test]
    fn mutations_keep_much_of_their_parents_and_stay_valid() {
        for m in ["pseries", "q35-mock", "q35"] {
            let t = target(m);
            let fresh = Plan::default();
            let parents: Vec<(Vec<Item>, u32)> = (0..4)
                .map(|i| (sequence(&t, &fresh, 3, i).items, 1))
                .collect();
            let plan = Plan {
                parents: std::sync::Arc::new(parents.clone()),
                mutate_one_in: 1,
                ..Plan::default()
            };
            let ops = |items: &[Item]| -> Vec<Op> {
                items
                    .iter()
                    .filter_map(|i| match i {
                        Item::Op(op) if !matches!(op, Op::EduDma { .. }) => Some(op.clone()),
                        _ => None,
                    })
                    .collect()
            };
            let mut shared = 0;
            for i in 0..40 {
                let s = sequence(&t, &plan, 9, i);
                assert_eq!(
                    s,
                    sequence(&t, &plan, 9, i),
                    "{m}: the same parents, the same mutation"
                );
                assert!(valid(&s.items), "{m}: mutation {i} is not valid");
                assert!(!s.items.is_empty(), "{m}");
                // A mutation starts as a parent does (its first op is
                // kept unless deleted, and then the next one is).
                let mine = ops(&s.items);
                if parents
                    .iter()
                    .any(|(p, _)| ops(p).get(..2).is_some_and(|h| mine.starts_with(&h[..1])))
                {
                    shared += 1;
                }
                assert!(
                    parents.iter().all(|(p, _)| *p != s.items),
                    "{m}: mutation {i} is a parent unchanged"
                );
            }
            assert!(shared >= 30, "{m}: only {shared} of 40 start like a parent");
            // Without parents the plan draws what it always did.
            let plain = Plan {
                mutate_one_in: 1,
                ..Plan::default()
            };
            assert_eq!(sequence(&t, &plain, 3, 1), sequence(&t, &fresh, 3, 1));
        }
    }

    #[test]
    fn sequences_probe_and_vary() {
        let t = target("pseries");
        let plan = Plan::default();
        let seqs: Vec<_> = (0..50).map(|i| sequence(&t, &plan, 1, i)).collect();
        let all: Vec<&Item> = seqs.iter().flat_map(|s| &s.items).collect();
        let count = |f: &dyn Fn(&Op) -> bool| {
            all.iter()
                .filter(|i| matches!(i, Item::Op(op) if f(op)))
                .count()
        };
        assert!(count(&|o| matches!(o, Op::MapDma { .. })) > 100);
        assert!(count(&|o| matches!(o, Op::CreateWindow { .. })) > 20);
        assert!(count(&|o| matches!(o, Op::EduDma { .. })) >= 50);
        assert!(all.iter().any(|i| matches!(i, Item::Check { .. })));
        let q = target("q35-mock");
        let seqs: Vec<_> = (0..50).map(|i| sequence(&q, &plan, 1, i)).collect();
        let rw = seqs
            .iter()
            .flat_map(|s| &s.items)
            .filter(|i| matches!(i, Item::Op(Op::MockAccessRw { .. })))
            .count();
        assert!(rw >= 50, "{rw}");
    }
}
