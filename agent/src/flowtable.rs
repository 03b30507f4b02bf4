//! Userspace access to the kernel flow table. aya 0.14 has no lookup-and-delete, and the
//! sweeper needs it: taking an entry must return its final counters atomically, so no packet
//! counted between a read and a delete is lost. Raw `bpf(2)` calls, one per element.

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use agent_common::{FlowKey, FlowValue};

const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;
const BPF_MAP_GET_NEXT_KEY: libc::c_long = 4;
const BPF_MAP_LOOKUP_AND_DELETE_ELEM: libc::c_long = 21;

/// The `map_elem` arm of `union bpf_attr`.
#[repr(C)]
struct ElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

/// A borrowed handle on the flow table.
#[derive(Clone, Copy)]
pub struct FlowTable<'a> {
    fd: BorrowedFd<'a>,
}

impl<'a> FlowTable<'a> {
    /// Wraps the map's file descriptor.
    pub fn new(fd: &'a impl AsFd) -> Self {
        Self { fd: fd.as_fd() }
    }

    fn call(&self, cmd: libc::c_long, key: u64, value: u64) -> io::Result<()> {
        let attr = ElemAttr {
            map_fd: self.fd.as_raw_fd() as u32,
            _pad: 0,
            key,
            value,
            flags: 0,
        };
        // SAFETY: `attr` is a valid bpf_attr prefix; key/value point to buffers of the map's
        // key and value sizes, owned by the caller for the call's duration.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                cmd,
                &attr as *const ElemAttr,
                std::mem::size_of::<ElemAttr>(),
            )
        };
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    /// Every key present now. Flows created during the walk may be missed; the next sweep
    /// sees them.
    pub fn keys(&self) -> io::Result<Vec<FlowKey>> {
        let mut out = Vec::new();
        let mut prev: Option<FlowKey> = None;
        loop {
            let mut next = MaybeUninit::<FlowKey>::uninit();
            let key_ptr = prev.as_ref().map_or(0, |k| k as *const FlowKey as u64);
            match self.call(BPF_MAP_GET_NEXT_KEY, key_ptr, next.as_mut_ptr() as u64) {
                Ok(()) => {
                    // SAFETY: the kernel filled the whole key on success.
                    let k = unsafe { next.assume_init() };
                    out.push(k);
                    prev = Some(k);
                }
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(out),
                Err(e) => return Err(e),
            }
        }
    }

    fn elem(&self, cmd: libc::c_long, key: &FlowKey) -> io::Result<Option<FlowValue>> {
        let mut value = MaybeUninit::<FlowValue>::uninit();
        match self.call(cmd, key as *const FlowKey as u64, value.as_mut_ptr() as u64) {
            // SAFETY: the kernel filled the whole value on success.
            Ok(()) => Ok(Some(unsafe { value.assume_init() })),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The entry of `key`, if present.
    pub fn get(&self, key: &FlowKey) -> io::Result<Option<FlowValue>> {
        self.elem(BPF_MAP_LOOKUP_ELEM, key)
    }

    /// Removes the entry of `key` and returns its final state, atomically.
    pub fn take(&self, key: &FlowKey) -> io::Result<Option<FlowValue>> {
        self.elem(BPF_MAP_LOOKUP_AND_DELETE_ELEM, key)
    }
}
