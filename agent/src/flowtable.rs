//! Userspace access to the kernel flow tables (IPv4 under a compact key, IPv6 under the full
//! one), always through the full [`FlowKey`]. aya 0.14 has no lookup-and-delete, and the
//! sweeper needs it: taking an entry must return its final counters atomically, so no packet
//! counted between a read and a delete is lost. Raw `bpf(2)` calls, one per element.

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use agent_common::{family, FlowKey, FlowKey4, FlowValue};

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

fn call(fd: BorrowedFd<'_>, cmd: libc::c_long, key: u64, value: u64) -> io::Result<()> {
    let attr = ElemAttr {
        map_fd: fd.as_raw_fd() as u32,
        _pad: 0,
        key,
        value,
        flags: 0,
    };
    // SAFETY: `attr` is a valid bpf_attr prefix; key/value point to buffers of the map's key
    // and value sizes, owned by the caller for the call's duration.
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

/// Every key of one map, as its own key type.
fn keys_of<K: Copy>(fd: BorrowedFd<'_>) -> io::Result<Vec<K>> {
    let mut out = Vec::new();
    let mut prev: Option<K> = None;
    loop {
        let mut next = MaybeUninit::<K>::uninit();
        let key_ptr = prev.as_ref().map_or(0, |k| k as *const K as u64);
        match call(fd, BPF_MAP_GET_NEXT_KEY, key_ptr, next.as_mut_ptr() as u64) {
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

fn elem<K>(fd: BorrowedFd<'_>, cmd: libc::c_long, key: &K) -> io::Result<Option<FlowValue>> {
    let mut value = MaybeUninit::<FlowValue>::uninit();
    match call(fd, cmd, key as *const K as u64, value.as_mut_ptr() as u64) {
        // SAFETY: the kernel filled the whole value on success.
        Ok(()) => Ok(Some(unsafe { value.assume_init() })),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

/// A borrowed handle on the two flow tables.
#[derive(Clone, Copy)]
pub struct FlowTable<'a> {
    v6: BorrowedFd<'a>,
    v4: BorrowedFd<'a>,
}

impl<'a> FlowTable<'a> {
    /// Wraps the maps' file descriptors: `FLOWS` (IPv6) and `FLOWS4` (IPv4).
    pub fn new(v6: &'a impl AsFd, v4: &'a impl AsFd) -> Self {
        Self {
            v6: v6.as_fd(),
            v4: v4.as_fd(),
        }
    }

    /// Every key present now. Flows created during the walk may be missed; the next sweep
    /// sees them.
    pub fn keys(&self) -> io::Result<Vec<FlowKey>> {
        let mut out: Vec<FlowKey> = keys_of::<FlowKey4>(self.v4)?
            .iter()
            .map(FlowKey4::to_key)
            .collect();
        out.extend(keys_of::<FlowKey>(self.v6)?);
        Ok(out)
    }

    fn elem(&self, cmd: libc::c_long, key: &FlowKey) -> io::Result<Option<FlowValue>> {
        if key.family == family::V4 {
            elem(self.v4, cmd, &FlowKey4::from_key(key))
        } else {
            elem(self.v6, cmd, key)
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
