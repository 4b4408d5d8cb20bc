//! How a caller can misuse the model: naming objects it never created,
//! buffer ranges outside their buffer, or operations the world it drives
//! does not have.  These are the caller's mistakes, never predictions (a
//! predicted failure is an [`crate::outcome::Outcome`] with an errno).

/// A request the model cannot answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    /// No buffer with this index was allocated.
    #[error("buffer {0} was never allocated")]
    UnknownBuffer(usize),
    /// The range leaves its buffer (the agent refuses such a step itself).
    #[error("range {offset:#x}+{length:#x} is outside buffer {buffer} of {size:#x} bytes")]
    RangeOutsideBuffer {
        /// The buffer's index.
        buffer: usize,
        /// The range's offset.
        offset: u64,
        /// The range's length.
        length: u64,
        /// The buffer's size.
        size: u64,
    },
    /// No IOAS with this index was allocated.
    #[error("IOAS {0} was never allocated")]
    UnknownIoas(usize),
    /// No mock domain with this index was created.
    #[error("mock domain {0} was never created")]
    UnknownMock(usize),
    /// No access with this index was created.
    #[error("access {0} was never created")]
    UnknownAccess(usize),
    /// The world has no such operation (e.g. an IOAS op on a sPAPR container).
    #[error("{op} is not an operation of the {world} world")]
    NotApplicable {
        /// The agent op's name.
        op: &'static str,
        /// The world's name.
        world: &'static str,
    },
    /// An edu transfer the agent refuses (0 bytes, or past its 4 KiB buffer).
    #[error("edu.dma of {0:#x} bytes: the device's buffer holds 1 to 4096")]
    EduCount(u64),
    /// The world has no DMA-capable device attached to anything.
    #[error("the {0} world has no device that can DMA")]
    NoDevice(&'static str),
}
