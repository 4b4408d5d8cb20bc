//! Where coverage feedback plugs into a fuzz run: after every batch a
//! [`Feedback`] sees the batch's sequences, their judgements and, from a
//! guest that traces its kernel (`--kcov`), the PCs each sequence was the
//! first to reach, and may change how the next sequences are drawn.  A
//! run without coverage has [`NoFeedback`]; `super::corpus::Guided` keeps
//! the sequences that reached new code and has the plan mutate them.

use anyhow::Result;

use super::generate::{Plan, Sequence};
use super::judge::{BatchCoverage, Judged};

/// Sees each batch; may adjust the plan.
pub trait Feedback {
    /// Sees a batch (`coverage` if the guest traced it); may adjust `plan`.
    fn batch(
        &mut self,
        seqs: &[Sequence],
        judged: &[Judged],
        coverage: Option<&BatchCoverage>,
        plan: &mut Plan,
    ) -> Result<()>;
}

/// No feedback: every sequence drawn alike.
pub struct NoFeedback;

impl Feedback for NoFeedback {
    fn batch(
        &mut self,
        _: &[Sequence],
        _: &[Judged],
        _: Option<&BatchCoverage>,
        _: &mut Plan,
    ) -> Result<()> {
        Ok(())
    }
}
