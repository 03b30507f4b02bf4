//! The ring buffer's pages, mapped as the kernel lays them out, and a consumer of our own.
//!
//! aya's `RingBuf` gives a record's space back to the program (moves the kernel's consumer
//! position) as soon as the record is read. A record read is then in this process only until
//! the records stage has settled it (its records in the journal file, its flow in the file of
//! open flows), and a kill lost it: up to about 6,000 new flows in a flood that evicted their
//! table entries before the next agent started. Here reading and giving back are apart: the
//! reader reads ahead from a position of its own, and the records stage [`Release`]s what it
//! has settled. A kill loses nothing read: the pinned ring still holds it for the next agent,
//! which reads from the kernel's consumer position.
//!
//! The price: what the records stage has not settled (at most the queue's batches, about
//! 6,000 events; everything read while the store's disk refuses records) still takes ring
//! space. Wake-ups are unchanged: the program asks for one itself when the backlog (producer
//! minus consumer position) crosses a quarter of the ring, and the reader drains on a tick
//! besides.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

// The kernel keeps the positions as `unsigned long`, read here as 64 bits.
const _: () = assert!(size_of::<usize>() == 8, "a 64-bit target");

/// A record's header: its length, and these two flags (`BPF_RINGBUF_*_BIT`).
const HEADER: u64 = 8;
const BUSY: u32 = 1 << 31;
const DISCARD: u32 = 1 << 30;

/// A shared mapping of part of a map's pages, unmapped on drop.
struct Mapping {
    base: *mut libc::c_void,
    len: usize,
}

// SAFETY: shared memory the kernel writes too; every access goes through atomics or copies of
// committed records, which the kernel does not change until they are released.
unsafe impl Send for Mapping {}
// SAFETY: as above.
unsafe impl Sync for Mapping {}

impl Mapping {
    fn new(fd: BorrowedFd<'_>, offset: usize, len: usize, write: bool) -> std::io::Result<Self> {
        let prot = libc::PROT_READ | if write { libc::PROT_WRITE } else { 0 };
        let offset = libc::off_t::try_from(offset).map_err(std::io::Error::other)?;
        // SAFETY: a fresh shared mapping of the map's own pages; checked for failure below.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                prot,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                offset,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Self { base, len })
    }

    /// The aligned 64-bit position the kernel keeps at `offset`.
    fn position(&self, offset: usize) -> &AtomicU64 {
        debug_assert!(offset + 8 <= self.len && offset.is_multiple_of(8));
        // SAFETY: in bounds and aligned (0 or a page in, within the mapping); the kernel
        // accesses it atomically.
        unsafe { &*(self.base.cast::<u8>().add(offset).cast::<AtomicU64>()) }
    }

    /// The `len` bytes at `offset`, if inside the mapping. The kernel must not write them
    /// while the slice lives: a committed record's, until it is released.
    fn bytes(&self, offset: usize, len: usize) -> Option<&[u8]> {
        let end = offset.checked_add(len)?;
        // SAFETY: inside the mapping (checked), readable for its life; see above for writes.
        (end <= self.len)
            .then(|| unsafe { std::slice::from_raw_parts(self.base.cast::<u8>().add(offset), len) })
    }

    /// The header the kernel keeps at `offset`, 8-byte aligned, inside the mapping.
    fn header(&self, offset: usize) -> &AtomicU32 {
        debug_assert!(offset + 4 <= self.len && offset.is_multiple_of(8));
        // SAFETY: in bounds and aligned (every record starts 8-byte aligned in the data
        // pages, mapped twice after the producer page); the kernel accesses it atomically.
        unsafe { &*(self.base.cast::<u8>().add(offset).cast::<AtomicU32>()) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what `new` mapped, once.
        unsafe { libc::munmap(self.base, self.len) };
    }
}

/// The two positions and the data pages, shared by the reader and the records stage (which
/// releases, and shows the fill in the status).
struct Pages {
    /// The consumer page, the only one user space may write.
    consumer: Mapping,
    /// The producer page, then the data pages twice (a record that wraps reads as one).
    producer: Mapping,
    page: usize,
    size: u64,
}

impl Pages {
    fn consumer(&self) -> &AtomicU64 {
        self.consumer.position(0)
    }

    fn producer(&self) -> u64 {
        self.producer.position(0).load(Ordering::Acquire)
    }
}

/// The ring buffer `fd` (a `BPF_MAP_TYPE_RINGBUF` of `size` data bytes), read from a position
/// of its own.
pub struct Ring {
    pages: Arc<Pages>,
    fd: OwnedFd,
    /// The next record to read.
    read: u64,
    /// The producer position last loaded.
    produced: u64,
    /// A record's length was past what was reserved (said once).
    stuck: bool,
}

impl Ring {
    /// Maps the ring; reading starts at the kernel's consumer position.
    pub fn new(fd: BorrowedFd<'_>, size: u32) -> std::io::Result<Self> {
        if !size.is_power_of_two() {
            return Err(std::io::Error::other(format!(
                "a ring buffer of {size} bytes (not a power of two)"
            )));
        }
        // SAFETY: sysconf has no preconditions.
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) })
            .map_err(|_| std::io::Error::other("page size unknown"))?;
        let bytes = size as usize;
        let pages = Pages {
            consumer: Mapping::new(fd, 0, page, true)?,
            producer: Mapping::new(fd, page, page + 2 * bytes, false)?,
            page,
            size: u64::from(size),
        };
        let read = pages.consumer().load(Ordering::Acquire);
        Ok(Self {
            fd: fd.try_clone_to_owned()?,
            produced: pages.producer(),
            pages: Arc::new(pages),
            read,
            stuck: false,
        })
    }

    /// The next committed record's bytes, or `None` when none is ready (the ring is empty, or
    /// the program has not committed the next one yet). Its space stays taken until
    /// [`Release::up_to`] a position past it.
    pub fn next_record(&mut self) -> Option<&[u8]> {
        let mask = self.pages.size - 1;
        loop {
            if self.read == self.produced {
                self.produced = self.pages.producer();
                if self.read == self.produced {
                    return None;
                }
            }
            let at = self.pages.page + (self.read & mask) as usize;
            // Paired with the kernel's xchg at commit: the record's bytes are visible.
            let len = self.pages.producer.header(at).load(Ordering::Acquire);
            if len & BUSY != 0 {
                return None;
            }
            let body = (len & !(BUSY | DISCARD)) as usize;
            let total = (HEADER + body as u64).next_multiple_of(8);
            if total > self.produced - self.read {
                // Past what the program reserved: no kernel writes such a length. Read as
                // not committed yet, rather than give back space the program holds; the
                // reader stops here, said once.
                if !self.stuck {
                    self.stuck = true;
                    tracing::error!(
                        position = self.read,
                        length = body,
                        "a ring-buffer record longer than the program reserved: reading stops there"
                    );
                }
                return None;
            }
            self.read += total;
            if len & DISCARD == 0 {
                // Inside the data pages mapped twice: a record that wraps reads as one.
                return Some(
                    (self.pages.producer)
                        .bytes(at + HEADER as usize, body)
                        .unwrap_or_default(),
                );
            }
        }
    }

    /// The position after the last record read.
    pub fn position(&self) -> u64 {
        self.read
    }

    /// What the records stage gives the space back with.
    pub fn release(&self) -> Release {
        Release(self.pages.clone())
    }
}

impl AsRawFd for Ring {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.fd.as_fd().as_raw_fd()
    }
}

/// Gives settled records' space back to the program.
#[derive(Clone)]
pub struct Release(Arc<Pages>);

impl Release {
    /// Moves the kernel's consumer position to `position` (a [`Ring::position`]), if that is
    /// further.
    pub fn up_to(&self, position: u64) {
        // Release: paired with the kernel's acquire load before it reuses the space.
        self.0.consumer().fetch_max(position, Ordering::Release);
    }

    /// Bytes written by the program and not yet released, and the data area's size.
    pub fn fill(&self) -> (u64, u64) {
        let consumer = self.0.consumer().load(Ordering::Acquire);
        let used = self.0.producer().saturating_sub(consumer).min(self.0.size);
        (used, self.0.size)
    }
}
