//! The ring buffer's fill: what the program wrote and the records stage has not released,
//! read from the positions the kernel keeps in the ring's first two pages (two loads, no
//! system call, nothing the reader notices).

use crate::reader::ring::Release;

/// A view of a ring buffer's positions.
pub struct RingFill(Release);

impl RingFill {
    /// The fill of the ring `release` gives space back to.
    pub fn new(release: Release) -> Self {
        Self(release)
    }

    /// Bytes written by the program and not yet released.
    pub fn used(&self) -> u64 {
        self.0.fill().0
    }

    /// The data area's size.
    pub fn size(&self) -> u64 {
        self.0.fill().1
    }
}
