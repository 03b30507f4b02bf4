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
//! The price: while the records stage works, what it has not settled (at most the queue's
//! batches, about 6,000 events) still takes ring space; and the kernel wakes a consumer only
//! for a record at the consumer position, so the reader also drains after each release
//! ([`Release::released`]).

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

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
        // SAFETY: in bounds and aligned (0 or a page in, within the mapping); the kernel accesses it atomically.
        unsafe { &*(self.base.cast::<u8>().add(offset).cast::<AtomicU64>()) }
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: the whole mapping, readable for its life.
        unsafe { std::slice::from_raw_parts(self.base.cast::<u8>(), self.len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what `new` mapped, once.
        unsafe { libc::munmap(self.base, self.len) };
    }
}

/// The two positions and the data pages, shared by the reader, the records stage (which
/// releases) and the status (which shows the fill).
struct Pages {
    /// The consumer page, the only one user space may write.
    consumer: Mapping,
    /// The producer page, then the data pages twice (a record that wraps reads as one).
    producer: Mapping,
    page: usize,
    size: u64,
    released: Notify,
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
            released: Notify::new(),
        };
        let read = pages.consumer().load(Ordering::Acquire);
        Ok(Self {
            fd: fd.try_clone_to_owned()?,
            produced: pages.producer(),
            pages: Arc::new(pages),
            read,
        })
    }

    /// The next committed record's bytes, or `None` when none is ready (the ring is empty, or
    /// the program has not committed the next one yet). Its space stays the program's loss
    /// until [`Release::up_to`] a position past it.
    pub fn next_record(&mut self) -> Option<&[u8]> {
        let mask = self.pages.size - 1;
        loop {
            if self.read == self.produced {
                self.produced = self.pages.producer();
                if self.read == self.produced {
                    return None;
                }
            }
            let at = (self.read & mask) as usize;
            let data = &self.pages.producer.bytes()[self.pages.page..];
            // SAFETY: `at` < size, and the data pages are mapped twice (2 × size bytes); the
            // header is 8-byte aligned, as every record starts.
            let header = unsafe { &*(data.as_ptr().add(at).cast::<AtomicU32>()) };
            // Paired with the kernel's xchg at commit: the record's bytes are visible.
            let len = header.load(Ordering::Acquire);
            if len & BUSY != 0 {
                return None;
            }
            let body = (len & !(BUSY | DISCARD)) as usize;
            self.read += (HEADER + body as u64).next_multiple_of(8);
            if len & DISCARD == 0 {
                // A length past the mapping (no kernel writes one) reads as an empty record,
                // which does not decode and is counted.
                let start = at + HEADER as usize;
                return Some(data.get(start..start + body).unwrap_or_default());
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

    /// The fill, for the status.
    pub fn fill(&self) -> crate::metrics::ring::RingFill {
        crate::metrics::ring::RingFill::new(self.release())
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
    /// further, and tells the reader: the kernel did not wake it for records written while the
    /// position stood behind the reader's.
    pub fn up_to(&self, position: u64) {
        let consumer = self.0.consumer();
        if consumer.load(Ordering::Relaxed) >= position {
            return;
        }
        // Paired with the kernel's acquire load before it reuses the space.
        consumer.store(position, Ordering::Release);
        // Either the reader, woken after this, sees a record committed meanwhile, or its
        // producer sees the new position and wakes the reader (as libbpf and aya order it).
        fence(Ordering::SeqCst);
        self.0.released.notify_one();
    }

    /// Resolves after the next [`Release::up_to`] (at once if one came since the last wait).
    pub async fn released(&self) {
        self.0.released.notified().await;
    }

    /// Bytes written by the program and not yet released, and the data area's size.
    pub fn fill(&self) -> (u64, u64) {
        let consumer = self.0.consumer().load(Ordering::Acquire);
        let used = self.0.producer().saturating_sub(consumer).min(self.0.size);
        (used, self.0.size)
    }
}
