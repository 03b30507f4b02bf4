//! Userspace access to the kernel flow tables (IPv4 under a compact key, IPv6 under the full
//! one), always through the full [`FlowKey`]. aya 0.14 has no lookup-and-delete, and the
//! sweeper needs it: taking an entry must return its final counters atomically, so no packet
//! counted between a read and a delete is lost. Nor has it batch lookups, and a sweep reads
//! every entry every second: one `bpf(2)` call per few thousand entries instead of two per
//! entry is what lets the sweep keep up with a full table. Raw `bpf(2)` calls, on maps whose
//! type and key and value sizes [`FlowMaps::new`] checked against the kernel's map info: the
//! kernel writes a whole key and value into buffers sized for ours.

use std::io;
use std::mem::{size_of, MaybeUninit};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use agent_common::{family, names, FlowKey, FlowKey4, FlowValue};
use aya::maps::{MapData, MapError, MapType};

/// A map handed to [`FlowMaps::new`] that is not the flow table it should be.
#[derive(Debug, thiserror::Error)]
pub enum FlowTableError {
    /// The kernel would not describe the map.
    #[error("cannot read the map info of the {table} flow table: {cause}")]
    Info {
        /// Which table ([`names::FLOWS`] or [`names::FLOWS4`]).
        table: &'static str,
        /// The cause (in the message, so not named `source`: that would print it twice).
        cause: MapError,
    },
    /// A second descriptor for the map could not be made.
    #[error("cannot duplicate the descriptor of the {table} flow table: {cause}")]
    Dup {
        /// Which table.
        table: &'static str,
        /// The cause (in the message, so not named `source`: that would print it twice).
        cause: io::Error,
    },
    /// The map has another type or other key or value sizes.
    #[error(
        "the map given as the {table} flow table ({name:?}) is a {kind} map with {key}-byte keys \
         and {value}-byte values; it must be a hash with {want_key}-byte keys and \
         {want_value}-byte values (a map of another program or build?)"
    )]
    Shape {
        /// Which table.
        table: &'static str,
        /// The map's name in the kernel.
        name: String,
        /// Its type.
        kind: String,
        /// Its key size.
        key: u32,
        /// Its value size.
        value: u32,
        /// The key size the table needs.
        want_key: usize,
        /// The value size the table needs.
        want_value: usize,
    },
}

/// Checks that `map` is a hash of `K` to [`FlowValue`] (with `older`: to a value no longer
/// than a [`FlowValue`], a build's before it grew), as the raw calls below assume; returns
/// the value size.
fn check<K>(map: &MapData, table: &'static str, older: bool) -> Result<usize, FlowTableError> {
    let info = map
        .info()
        .map_err(|cause| FlowTableError::Info { table, cause })?;
    let kind = info.map_type();
    let hash = matches!(kind, Ok(MapType::LruHash | MapType::Hash));
    let value = info.value_size() as usize;
    let fits = if older {
        (OLDEST_VALUE..=size_of::<FlowValue>()).contains(&value)
    } else {
        value == size_of::<FlowValue>()
    };
    if hash && info.key_size() as usize == size_of::<K>() && fits {
        return Ok(value);
    }
    Err(FlowTableError::Shape {
        table,
        name: String::from_utf8_lossy(info.name()).into_owned(),
        kind: kind.map_or_else(|_| "unknown".into(), |k| format!("{k:?}")),
        key: info.key_size(),
        value: info.value_size(),
        want_key: size_of::<K>(),
        want_value: size_of::<FlowValue>(),
    })
}

/// The shortest value an older build's flow table may hold: the first [`FlowValue`] the
/// agent pinned (88 bytes). Fields are only ever added at the end of a [`FlowValue`]; a change
/// of the meaning of an existing one bumps [`agent_common::LAYOUT_VERSION`] instead.
const OLDEST_VALUE: usize = 88;

const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
/// `BPF_NOEXIST`: create only.
const BPF_NOEXIST: u64 = 1;
const BPF_MAP_GET_NEXT_KEY: libc::c_long = 4;
/// `BPF_MAP_LOOKUP_AND_DELETE_ELEM`.
pub(crate) const BPF_MAP_LOOKUP_AND_DELETE_ELEM: libc::c_long = 21;
const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;

/// Entries per batch call: far more than a hash bucket holds (a batch never splits a bucket,
/// and fails with ENOSPC if one does not fit), few enough to keep the buffers small.
const BATCH: usize = 4096;

/// The `batch` arm of `union bpf_attr`.
#[repr(C)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// Every entry of one map, read a batch at a time; `None` if the kernel has no batch
/// operations for it (before 5.6), so the caller walks key by key instead.
fn entries_of<K: Copy>(fd: BorrowedFd<'_>) -> io::Result<Option<Vec<(K, FlowValue)>>> {
    let mut out = Vec::new();
    let whole = lookup_batch(fd, size_of::<K>(), size_of::<FlowValue>(), |k, v| {
        // SAFETY: the kernel wrote a whole key and value of the map's sizes, which
        // `FlowMaps::new` checked are those of `K` and `FlowValue` (plain data).
        out.push(unsafe {
            (
                k.as_ptr().cast::<K>().read_unaligned(),
                v.as_ptr().cast::<FlowValue>().read_unaligned(),
            )
        });
    })?;
    Ok(whole.then_some(out))
}

/// Reads every entry of the map behind `fd` a batch at a time, handing each key and value
/// (as the kernel wrote them: for a per-CPU map, one 8-byte-rounded value per possible CPU)
/// to `each`. `key_size` and `value_size` must be the map's, as the kernel reports them.
/// `false` if the kernel has no batch operations for the map (before 5.6): nothing was read,
/// and the caller walks key by key instead.
pub(crate) fn lookup_batch(
    fd: BorrowedFd<'_>,
    key_size: usize,
    value_size: usize,
    each: impl FnMut(&[u8], &[u8]),
) -> io::Result<bool> {
    lookup_batch_first(fd, key_size, value_size, usize::MAX, each)
}

/// [`lookup_batch`] of the first `max` entries only: for an array, indices `0..max` (a
/// million-slot counter array of which a few slots are in use is read in one call, not a
/// few hundred).
pub(crate) fn lookup_batch_first(
    fd: BorrowedFd<'_>,
    key_size: usize,
    value_size: usize,
    max: usize,
    mut each: impl FnMut(&[u8], &[u8]),
) -> io::Result<bool> {
    let mut keys = vec![0u8; BATCH.min(max.max(1)) * key_size];
    let mut values = vec![0u8; BATCH.min(max.max(1)) * value_size];
    // The position token of hash and array maps is a u32 (bucket or index).
    let mut position: Option<u32> = None;
    let mut read = 0;
    loop {
        if read >= max {
            return Ok(true);
        }
        let mut next: u32 = 0;
        let mut attr = BatchAttr {
            in_batch: position.as_ref().map_or(0, |p| p as *const u32 as u64),
            out_batch: &mut next as *mut u32 as u64,
            keys: keys.as_mut_ptr() as u64,
            values: values.as_mut_ptr() as u64,
            count: BATCH.min(max - read) as u32,
            map_fd: fd.as_raw_fd() as u32,
            elem_flags: 0,
            flags: 0,
        };
        // SAFETY: the key and value buffers hold `BATCH.min(max)` elements of the map's key
        // and value sizes, at least the `count` asked for, the tokens are u32, all live for
        // the call.
        let err = unsafe { batch_call(BPF_MAP_LOOKUP_BATCH, &mut attr) }.err();
        let code = err.as_ref().and_then(io::Error::raw_os_error);
        if err.is_none() || code == Some(libc::ENOENT) {
            // The kernel writes back how many elements it filled, also on the final ENOENT.
            let n = (attr.count as usize).min(BATCH);
            read += n;
            let filled = keys
                .chunks_exact(key_size)
                .zip(values.chunks_exact(value_size));
            filled.take(n).for_each(|(k, v)| each(k, v));
        }
        match (err, code) {
            (None, _) => position = Some(next),
            (Some(_), Some(libc::ENOENT)) => return Ok(true),
            // EINVAL or ENOTSUPP (524): no batch operations for this map on this kernel.
            (Some(_), Some(libc::EINVAL | libc::EOPNOTSUPP | 524)) if position.is_none() => {
                return Ok(false)
            }
            (Some(e), _) => return Err(e),
        }
    }
}

const BPF_MAP_UPDATE_BATCH: libc::c_long = 26;
const BPF_MAP_DELETE_BATCH: libc::c_long = 27;

/// Writes `keys[i]` -> `values[i]` into the map behind `fd` (any existing entry replaced), or
/// with no `values` deletes each key, [`BATCH`] elements per `bpf(2)` call instead of one
/// call each. A key the kernel refuses (a full map; for a delete, a key not there) is handed
/// to `failed` with its error, and the rest are still written. `Ok(false)` if the kernel has
/// no batch operations for the map (before 5.6): nothing was written, and the caller goes
/// key by key.
///
/// # Safety
///
/// `K` and `V` must be exactly the map's key and value sizes (plain data): the kernel reads
/// that many bytes per element.
pub(crate) unsafe fn write_batch<K: Copy, V: Copy>(
    fd: BorrowedFd<'_>,
    keys: &[K],
    values: Option<&[V]>,
    mut failed: impl FnMut(io::Error),
) -> io::Result<bool> {
    if let Some(v) = values {
        assert_eq!(v.len(), keys.len(), "a value per key");
    }
    let cmd = if values.is_some() {
        BPF_MAP_UPDATE_BATCH
    } else {
        BPF_MAP_DELETE_BATCH
    };
    let mut start = 0;
    while start < keys.len() {
        let count = (keys.len() - start).min(BATCH);
        let mut attr = BatchAttr {
            in_batch: 0,
            out_batch: 0,
            keys: keys[start..].as_ptr() as u64,
            values: values.map_or(0, |v| v[start..].as_ptr() as u64),
            count: count as u32,
            map_fd: fd.as_raw_fd() as u32,
            elem_flags: 0,
            flags: 0,
        };
        // SAFETY: the kernel reads `count` keys (and values) of the map's sizes, which the
        // caller vouches are those of `K` (and `V`), from slices that hold at least that
        // many and live for the call.
        let Err(e) = (unsafe { batch_call(cmd, &mut attr) }) else {
            start += count;
            continue;
        };
        // The kernel writes back how many elements it did before the one that failed; a
        // kernel or map without batch operations leaves the count as it was.
        let done = (attr.count as usize).min(count);
        let unsupported = matches!(
            e.raw_os_error(),
            Some(libc::EINVAL | libc::EOPNOTSUPP | 524)
        );
        if start == 0 && unsupported && (done == 0 || done == count) {
            return Ok(false);
        }
        if done == count {
            return Err(e); // not an element's failure (EFAULT writing the count back)
        }
        failed(e);
        start += done + 1;
    }
    Ok(true)
}

/// One batch command on `attr` (the kernel writes `attr.count` back, also on failure).
///
/// # Safety
///
/// What `attr` points to (keys, values, position tokens) must be valid for what `cmd` reads
/// and writes on its map, and live for the call.
unsafe fn batch_call(cmd: libc::c_long, attr: &mut BatchAttr) -> io::Result<()> {
    // SAFETY: `attr` is a valid bpf_attr prefix; the caller vouches for its buffers.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut BatchAttr,
            std::mem::size_of::<BatchAttr>(),
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// The `map_elem` arm of `union bpf_attr`.
#[repr(C)]
struct ElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

/// One `bpf(2)` element command on the map behind `fd` (`key` and `value`: addresses of
/// buffers of the map's key and value sizes).
pub(crate) fn call(fd: BorrowedFd<'_>, cmd: libc::c_long, key: u64, value: u64) -> io::Result<()> {
    call_flags(fd, cmd, key, value, 0)
}

fn call_flags(
    fd: BorrowedFd<'_>,
    cmd: libc::c_long,
    key: u64,
    value: u64,
    flags: u64,
) -> io::Result<()> {
    let attr = ElemAttr {
        map_fd: fd.as_raw_fd() as u32,
        _pad: 0,
        key,
        value,
        flags,
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
pub(crate) fn keys_of<K: Copy>(fd: BorrowedFd<'_>) -> io::Result<Vec<K>> {
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
    // Zeroed: an older build's shorter value leaves the fields added since at zero.
    let mut value = MaybeUninit::<FlowValue>::zeroed();
    match call(fd, cmd, key as *const K as u64, value.as_mut_ptr() as u64) {
        // SAFETY: zeroed, then the kernel filled the map's value size on success.
        Ok(()) => Ok(Some(unsafe { value.assume_init() })),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The two flow tables, checked to be hashes of the key and value types the reads assume.
pub struct FlowMaps {
    v6: MapData,
    v4: MapData,
    /// Whether a value is shorter than a [`FlowValue`] (an older build's table).
    short: bool,
}

impl FlowMaps {
    /// The tables `FLOWS` (IPv6) and `FLOWS4` (IPv4), once the kernel confirms each is a hash
    /// with the key and value sizes the reads write into.
    pub fn new(v6: MapData, v4: MapData) -> Result<Self, FlowTableError> {
        check::<FlowKey>(&v6, names::FLOWS, false)?;
        check::<FlowKey4>(&v4, names::FLOWS4, false)?;
        Ok(Self {
            v6,
            v4,
            short: false,
        })
    }

    /// The tables of an older build whose [`FlowValue`] was shorter (fields are only ever
    /// added at its end, see [`OLDEST_VALUE`]): read as today's values with the fields added
    /// since at zero, for an upgrade to copy or write out. Only for reading and taking.
    pub fn older(v6: MapData, v4: MapData) -> Result<Self, FlowTableError> {
        let a = check::<FlowKey>(&v6, names::FLOWS, true)?;
        let b = check::<FlowKey4>(&v4, names::FLOWS4, true)?;
        let short = a < size_of::<FlowValue>() || b < size_of::<FlowValue>();
        Ok(Self { v6, v4, short })
    }

    /// The sizes (`max_entries`) of the IPv4 and the IPv6 table, as the kernel reports them
    /// (0 if it does not).
    pub fn capacities(&self) -> [u64; 2] {
        let size = |m: &MapData| m.info().map_or(0, |i| u64::from(i.max_entries()));
        [size(&self.v4), size(&self.v6)]
    }

    /// A handle for reading and taking entries.
    pub fn table(&self) -> FlowTable<'_> {
        FlowTable {
            v6: self.v6.fd().as_fd(),
            v4: self.v4.fd().as_fd(),
            short: self.short,
        }
    }

    /// Second handles on the same two maps (for reading the tables from another thread than
    /// the one holding these).
    pub fn try_clone(&self) -> Result<Self, FlowTableError> {
        let dup = |m: &MapData, table| {
            let fd = m
                .fd()
                .as_fd()
                .try_clone_to_owned()
                .map_err(|cause| FlowTableError::Dup { table, cause })?;
            MapData::from_fd(fd).map_err(|cause| FlowTableError::Info { table, cause })
        };
        let (v6, v4) = (dup(&self.v6, names::FLOWS)?, dup(&self.v4, names::FLOWS4)?);
        if self.short {
            Self::older(v6, v4)
        } else {
            Self::new(v6, v4)
        }
    }
}

/// `later`, a second read of an entry, with the packet counts of `first`, the read before
/// it, when both are of one incarnation (same `first_seen_ns`). The program counts a packet
/// after its drop and its bytes, with locked adds, so a copy read in field order never
/// holds a packet without its drop (which would record a blocked packet as passed). But the
/// kernel copies a value with `memcpy`, which on CPUs with fast string moves (`rep movsb`,
/// FSRM) reads in no set order: about 2 in a million copies of a flow counted on another CPU
/// held a packet alone. Whatever the program counted before a packet that `first` holds was
/// in the table before `first` was read, so `later`, read after it, holds it too. (A copy may
/// still hold a drop or bytes without their packet, which the sweeper carries to the next
/// record.)
fn settled(first: &FlowValue, mut later: FlowValue) -> FlowValue {
    if later.first_seen_ns == first.first_seen_ns {
        later.packets = first.packets;
    }
    later
}

/// A borrowed handle on the two flow tables (see [`FlowMaps::table`]).
#[derive(Clone, Copy)]
pub struct FlowTable<'a> {
    v6: BorrowedFd<'a>,
    v4: BorrowedFd<'a>,
    /// Values shorter than a [`FlowValue`]: batches (strided by the value size) are not
    /// used, each value is read into a zeroed one.
    short: bool,
}

impl FlowTable<'_> {
    /// Every key present now. Flows created during the walk may be missed; the next sweep
    /// sees them.
    pub fn keys(&self) -> io::Result<Vec<FlowKey>> {
        let mut out = self.v4_keys()?;
        out.extend(keys_of::<FlowKey>(self.v6)?);
        Ok(out)
    }

    /// Every entry present now, with its counters. Flows created during the read may be
    /// missed, and values are as of their batch; the next sweep sees what changed. Read
    /// twice, the packet counts taken from the first read ([`settled`]).
    pub fn entries(&self) -> io::Result<Vec<(FlowKey, FlowValue)>> {
        let first = self.entries_once()?;
        let mut later = self.entries_once()?;
        let packets: std::collections::HashMap<FlowKey, FlowValue, foldhash::fast::RandomState> =
            first.into_iter().collect();
        for (k, v) in &mut later {
            if let Some(f) = packets.get(k) {
                *v = settled(f, *v);
            }
        }
        Ok(later)
    }

    fn entries_once(&self) -> io::Result<Vec<(FlowKey, FlowValue)>> {
        if self.short {
            return self.walk(self.keys()?);
        }
        let mut out = match entries_of::<FlowKey4>(self.v4)? {
            Some(v4) => v4.iter().map(|(k, v)| (k.to_key(), *v)).collect(),
            None => self.walk(self.v4_keys()?)?,
        };
        match entries_of::<FlowKey>(self.v6)? {
            Some(v6) => out.extend(v6),
            None => out.extend(self.walk(keys_of::<FlowKey>(self.v6)?)?),
        }
        Ok(out)
    }

    fn v4_keys(&self) -> io::Result<Vec<FlowKey>> {
        Ok(keys_of::<FlowKey4>(self.v4)?
            .iter()
            .map(FlowKey4::to_key)
            .collect())
    }

    /// The entries of `keys` still present, one lookup each.
    fn walk(&self, keys: Vec<FlowKey>) -> io::Result<Vec<(FlowKey, FlowValue)>> {
        let mut out = Vec::with_capacity(keys.len());
        // One read each: `entries`, the only caller, reads twice and settles the two.
        for k in keys {
            if let Some(v) = self.elem(BPF_MAP_LOOKUP_ELEM, &k)? {
                out.push((k, v));
            }
        }
        Ok(out)
    }

    fn elem(&self, cmd: libc::c_long, key: &FlowKey) -> io::Result<Option<FlowValue>> {
        if key.family == family::V4 {
            elem(self.v4, cmd, &FlowKey4::from_key(key))
        } else {
            elem(self.v6, cmd, key)
        }
    }

    /// The entry of `key`, if present: read twice, the packet counts taken from the first
    /// read ([`settled`]).
    pub fn get(&self, key: &FlowKey) -> io::Result<Option<FlowValue>> {
        let Some(first) = self.elem(BPF_MAP_LOOKUP_ELEM, key)? else {
            return Ok(None);
        };
        Ok(Some(match self.elem(BPF_MAP_LOOKUP_ELEM, key)? {
            Some(later) => settled(&first, later),
            None => first,
        }))
    }

    /// Creates the entry of `key` (an upgrade migrating flows into a new table); an entry
    /// the program created meanwhile is left as it is (`Ok(false)`).
    pub fn insert(&self, key: &FlowKey, value: &FlowValue) -> io::Result<bool> {
        if self.short {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "an older build's flow table is only read, never written",
            ));
        }
        let value = value as *const FlowValue as u64;
        let r = if key.family == family::V4 {
            let k = FlowKey4::from_key(key);
            call_flags(
                self.v4,
                BPF_MAP_UPDATE_ELEM,
                &k as *const _ as u64,
                value,
                BPF_NOEXIST,
            )
        } else {
            call_flags(
                self.v6,
                BPF_MAP_UPDATE_ELEM,
                key as *const _ as u64,
                value,
                BPF_NOEXIST,
            )
        };
        match r {
            Ok(()) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Removes the entry of `key` and returns its final state, atomically.
    pub fn take(&self, key: &FlowKey) -> io::Result<Option<FlowValue>> {
        self.elem(BPF_MAP_LOOKUP_AND_DELETE_ELEM, key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pod::zeroed;

    /// `BPF_MAP_TYPE_LRU_HASH`.
    const LRU_HASH: u32 = 9;

    /// An all-zero wire type (keys and values are plain bytes).
    /// A new LRU hash map with `K` keys and `value` bytes of value.
    fn table<K>(name: &str, value: usize) -> MapData {
        let def =
            aya_obj::Map::new_from_params(LRU_HASH, size_of::<K>() as u32, value as u32, 16, 0);
        MapData::create(def, name, None).expect("create a map (needs root)")
    }

    fn raw_insert<K>(map: &MapData, key: &K, value: &[u8]) {
        call(
            map.fd().as_fd(),
            BPF_MAP_UPDATE_ELEM,
            key as *const K as u64,
            value.as_ptr() as u64,
        )
        .expect("insert");
    }

    #[test]
    fn an_older_builds_shorter_values_read_with_the_added_fields_at_zero() {
        let value = FlowValue {
            first_seen_ns: 11,
            last_seen_ns: 22,
            packets: [3, 4],
            bytes: [500, 600],
            ..zeroed()
        };
        let bytes = crate::pod::bytes_of(&value);
        let (v6, v4) = (
            table::<FlowKey>("OLD6", OLDEST_VALUE),
            table::<FlowKey4>("OLD4", OLDEST_VALUE),
        );
        let key = FlowKey {
            family: family::V4,
            ifindex: 7,
            ..zeroed()
        };
        // Filled past the old length, so a read of more than the map holds would show.
        let mut full = vec![0xa5u8; size_of::<FlowValue>()];
        full[..OLDEST_VALUE].copy_from_slice(&bytes[..OLDEST_VALUE]);
        raw_insert(&v4, &FlowKey4::from_key(&key), &full);
        if OLDEST_VALUE == size_of::<FlowValue>() {
            let e = FlowMaps::new(
                table::<FlowKey>("N6", OLDEST_VALUE),
                table::<FlowKey4>("N4", OLDEST_VALUE),
            );
            assert!(e.is_ok(), "today's size is also the oldest");
        }
        let old = FlowMaps::older(v6, v4).expect("an older table of the oldest size is read");
        let entries = old.table().entries().expect("entries");
        let mut want: FlowValue = zeroed();
        // SAFETY: as above; only the old prefix is copied, the rest stays zero.
        unsafe {
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                (&mut want as *mut FlowValue).cast::<u8>(),
                OLDEST_VALUE,
            )
        };
        assert_eq!(entries, vec![(key, want)]);
        assert!(
            old.table().insert(&key, &value).is_err() || OLDEST_VALUE == size_of::<FlowValue>(),
            "an older table is never written"
        );
        for bad in [OLDEST_VALUE - 8, size_of::<FlowValue>() + 8] {
            let e = FlowMaps::older(table::<FlowKey>("B6", bad), table::<FlowKey4>("B4", bad));
            assert!(
                matches!(e, Err(FlowTableError::Shape { value, .. }) if value as usize == bad),
                "a {bad}-byte value is no older FlowValue"
            );
        }
    }

    /// More keys than a batch call takes, into a hash map with room for all but two: the two
    /// are refused and said to be, every other is written; a batch delete goes past a key
    /// that is not there and removes the rest.
    #[test]
    fn batch_writes_go_past_refused_keys() {
        const ROOM: u32 = BATCH as u32 + 1000;
        let def = aya_obj::Map::new_from_params(1, 8, 8, ROOM, 0); // BPF_MAP_TYPE_HASH
        let map = MapData::create(def, "WB", None).expect("create a map (needs root)");
        let fd = map.fd().as_fd();
        let keys: Vec<u64> = (0..u64::from(ROOM) + 2).collect();
        let values: Vec<u64> = keys.iter().map(|k| k * 3).collect();
        let mut refused = Vec::new();
        // SAFETY: the map's keys and values are those of the slices' element types.
        let batched =
            unsafe { write_batch(fd, &keys, Some(&values), |e| refused.push(e.raw_os_error())) };
        assert!(
            batched.expect("batch update"),
            "batch operations (Linux 5.6+)"
        );
        assert_eq!(refused, [Some(libc::E2BIG); 2], "the two past the room");
        let mut got = Vec::new();
        lookup_batch(fd, 8, 8, |k, v| {
            let word = |b: &[u8]| u64::from_ne_bytes(b.try_into().expect("8 bytes"));
            got.push((word(k), word(v)));
        })
        .expect("read back");
        got.sort_unstable();
        let want: Vec<(u64, u64)> = (0..u64::from(ROOM)).map(|k| (k, k * 3)).collect();
        assert_eq!(got, want, "every key with room, with its value");

        let gone = [5u64, 6, u64::MAX, 7];
        let mut missing = Vec::new();
        // SAFETY: the map's keys and values are those of the slices' element types.
        let batched = unsafe { write_batch(fd, &gone, None::<&[u64]>, |e| missing.push(e.kind())) };
        assert!(batched.expect("batch delete"));
        assert_eq!(
            missing,
            [io::ErrorKind::NotFound],
            "the key that is not there"
        );
        for k in gone {
            let mut v = 0u64;
            let r = call(
                fd,
                BPF_MAP_LOOKUP_ELEM,
                &k as *const u64 as u64,
                &mut v as *mut u64 as u64,
            );
            assert_eq!(
                r.map_err(|e| e.kind()),
                Err(io::ErrorKind::NotFound),
                "key {k} removed"
            );
        }
    }

    /// A map with no batch operations (a ring buffer has none) is said to have none, with
    /// no key said to be refused, so the ledger goes key by key there.
    #[test]
    fn batch_writes_on_a_map_without_them_say_so() {
        // BPF_MAP_TYPE_RINGBUF of one page.
        let def = aya_obj::Map::new_from_params(27, 0, 0, 4096, 0);
        let map = MapData::create(def, "NB", None).expect("create a map (needs root)");
        let fd = map.fd().as_fd();
        let mut refused = 0;
        // SAFETY: (here and below) the map's keys and values are the slices' element types;
        // a ring buffer has no keys, and refuses the call before reading any.
        let batched = unsafe { write_batch(fd, &[1u64, 2], Some(&[1u64, 2]), |_| refused += 1) };
        assert!(!batched.expect("no error"), "no batch updates");
        // SAFETY: the map's keys and values are those of the slices' element types.
        let batched = unsafe { write_batch(fd, &[1u64, 2], None::<&[u64]>, |_| refused += 1) };
        assert!(!batched.expect("no error"), "no batch deletes");
        assert_eq!(refused, 0, "no key was said to be refused");
    }
}
