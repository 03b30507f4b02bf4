//! The ring buffer's fill, read from the positions the kernel keeps in the ring's first two
//! pages (consumer, then producer), mapped read-only: two loads, no system call, nothing
//! the reader notices.

use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::atomic::{AtomicU64, Ordering};

/// A read-only view of a `BPF_MAP_TYPE_RINGBUF`'s positions.
pub struct RingFill {
    base: *mut libc::c_void,
    page: usize,
    size: u64,
}

// SAFETY: the mapping is read-only shared memory read with atomic loads; it lives as long as
// the value.
unsafe impl Send for RingFill {}

impl RingFill {
    /// Maps the position pages of the ring buffer `fd` whose data area is `size` bytes.
    pub fn new(fd: BorrowedFd<'_>, size: u32) -> std::io::Result<Self> {
        // SAFETY: sysconf has no preconditions.
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) })
            .map_err(|_| std::io::Error::other("page size unknown"))?;
        // SAFETY: a fresh shared read-only mapping of the map's first two pages (the kernel
        // allows read-only mappings of the position pages); checked for failure below.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                2 * page,
                libc::PROT_READ,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Self {
            base,
            page,
            size: u64::from(size),
        })
    }

    fn position(&self, offset: usize) -> u64 {
        // SAFETY: `offset` is 0 or one page into a mapping of two pages; the kernel keeps an
        // aligned u64 there and updates it atomically.
        let p = unsafe { &*(self.base.cast::<u8>().add(offset).cast::<AtomicU64>()) };
        p.load(Ordering::Acquire)
    }

    /// Bytes written by the program and not yet consumed by the reader.
    pub fn used(&self) -> u64 {
        let consumer = self.position(0);
        let producer = self.position(self.page);
        producer.saturating_sub(consumer).min(self.size)
    }

    /// The data area's size.
    pub fn size(&self) -> u64 {
        self.size
    }
}

impl Drop for RingFill {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what `new` mapped, once.
        unsafe { libc::munmap(self.base, 2 * self.page) };
    }
}
