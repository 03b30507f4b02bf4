//! The live journal: the current hour's records in an append-only file of framed, checksummed
//! records, so a crash loses at most what was not yet fsynced and never corrupts what was.
//!
//! File layout (all integers little-endian):
//! ```text
//! header  : magic "XDPAJNL1" (8 bytes) | journal id u64 (creation time, Unix ns)
//! frame*  : payload length u32 | CRC-32 (IEEE) of the payload u32 | payload
//! ```
//! A payload is one [`FlowRecord`] in the compact binary form of [`encode_record`].
//! Reading stops at the first frame that is short, too long or fails its checksum: everything
//! before it is the valid prefix, everything from it on is a torn tail.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use super::columns::Columns;
use crate::record::{EndReason, FlowRecord, Mac};

/// Magic bytes opening every journal.
pub const MAGIC: &[u8; 8] = b"XDPAJNL1";
/// Header length: magic and journal id.
pub const HEADER_LEN: u64 = 16;
/// Frame header length: payload length and CRC.
pub const FRAME_HEADER_LEN: usize = 8;
/// Largest payload accepted; a record is about 60 bytes, so anything near this is corruption.
pub const MAX_PAYLOAD: usize = 4096;

/// Errors of the journal; each names the file and, where it applies, the offset.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// An I/O operation failed.
    #[error("journal {path}: {op}: {cause}")]
    Io {
        /// The journal file.
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// The cause (in the message, so not named `source`: that would print it twice).
        cause: std::io::Error,
    },
    /// The file does not start with the journal magic.
    #[error("journal {path}: not a journal (bad magic at offset 0)")]
    BadMagic {
        /// The journal file.
        path: PathBuf,
    },
}

/// A payload that does not decode; names the field and the byte offset inside the payload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("record payload: field {field} at byte {offset}: {reason}")]
pub struct DecodeError {
    /// The field being decoded.
    pub field: &'static str,
    /// Byte offset inside the payload.
    pub offset: usize,
    /// What was wrong.
    pub reason: &'static str,
}

const F_VLAN: u8 = 1;
const F_VLAN_INNER: u8 = 2;
const F_SRC_V6: u8 = 4;
const F_DST_V6: u8 = 8;
/// The record carries list-enforcement fields (dropped packets, rule).
const F_LISTS: u8 = 16;

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

fn end_reason_code(r: EndReason) -> u8 {
    match r {
        EndReason::Fin => 0,
        EndReason::Rst => 1,
        EndReason::Idle => 2,
        EndReason::Active => 3,
        EndReason::Shutdown => 4,
        EndReason::Evicted => 5,
        EndReason::Drop => 6,
    }
}

/// Appends the compact binary form of `r` to `out`.
///
/// Layout: flags u8 (1 = vlan, 2 = inner vlan, 4 = source IPv6, 8 = destination IPv6) |
/// time_start i64 | zigzag varint (time_end - time_start) | varint ifindex | varint name length,
/// name | vlan u16? | inner vlan u16? | source MAC 6 | destination MAC 6 | proto u8 |
/// source address 4/16 | destination address 4/16 | source port u16 | destination port u16 |
/// varint packets, bytes, responder packets, responder bytes | TCP flags u8 | end reason u8 |
/// with flag 16 only: varint dropped | varint rule length, rule.
pub fn encode_record(r: &FlowRecord, out: &mut Vec<u8>) {
    let mut flags = 0;
    if r.vlan.is_some() {
        flags |= F_VLAN;
    }
    if r.vlan_inner.is_some() {
        flags |= F_VLAN_INNER;
    }
    if r.src_ip.is_ipv6() {
        flags |= F_SRC_V6;
    }
    if r.dst_ip.is_ipv6() {
        flags |= F_DST_V6;
    }
    if r.dropped != 0 || r.rule.is_some() {
        flags |= F_LISTS;
    }
    out.push(flags);
    out.extend_from_slice(&r.time_start_ns.to_le_bytes());
    put_varint(out, zigzag(r.time_end_ns.wrapping_sub(r.time_start_ns)));
    put_varint(out, u64::from(r.ifindex));
    put_varint(out, r.iface.len() as u64);
    out.extend_from_slice(r.iface.as_bytes());
    if let Some(v) = r.vlan {
        out.extend_from_slice(&v.to_le_bytes());
    }
    if let Some(v) = r.vlan_inner {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(&r.src_mac.0);
    out.extend_from_slice(&r.dst_mac.0);
    out.push(r.proto);
    for ip in [r.src_ip, r.dst_ip] {
        match ip {
            IpAddr::V4(a) => out.extend_from_slice(&a.octets()),
            IpAddr::V6(a) => out.extend_from_slice(&a.octets()),
        }
    }
    out.extend_from_slice(&r.src_port.to_le_bytes());
    out.extend_from_slice(&r.dst_port.to_le_bytes());
    for v in [r.packets, r.bytes, r.resp_packets, r.resp_bytes] {
        put_varint(out, v);
    }
    out.push(r.tcp_flags);
    out.push(end_reason_code(r.end_reason));
    if flags & F_LISTS != 0 {
        put_varint(out, r.dropped);
        let rule = r.rule.as_deref().unwrap_or("");
        put_varint(out, rule.len() as u64);
        out.extend_from_slice(rule.as_bytes());
    }
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn err(&self, field: &'static str, reason: &'static str) -> DecodeError {
        DecodeError {
            field,
            offset: self.pos,
            reason,
        }
    }

    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], DecodeError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| self.err(field, "payload ends early"))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], DecodeError> {
        let s = self.take(N, field)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(field)?[0])
    }

    fn u16(&mut self, field: &'static str) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.array(field)?))
    }

    fn varint(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.u8(field)?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(self.err(field, "varint longer than 10 bytes"))
    }

    /// An address in the 16-byte column form (IPv4 mapped into `::ffff:0:0/96`).
    fn ip(&mut self, v6: bool, field: &'static str) -> Result<[u8; 16], DecodeError> {
        if v6 {
            self.array::<16>(field)
        } else {
            let v4 = self.array::<4>(field)?;
            let mut a = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 0, 0];
            a[12..].copy_from_slice(&v4);
            Ok(a)
        }
    }

    fn text(&mut self, len: u64, field: &'static str) -> Result<&'a str, DecodeError> {
        let len = usize::try_from(len).map_err(|_| self.err(field, "length exceeds memory"))?;
        let raw = self.take(len, field)?;
        std::str::from_utf8(raw).map_err(|_| self.err(field, "not UTF-8"))
    }
}

/// A decoded payload that borrows its strings from the journal bytes and holds addresses in
/// the 16-byte column form: sealing copies it straight into column buffers, so decoding a
/// journal for a seal allocates nothing per record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordView<'a> {
    /// See [`FlowRecord::time_start_ns`].
    pub time_start_ns: i64,
    /// See [`FlowRecord::time_end_ns`].
    pub time_end_ns: i64,
    /// See [`FlowRecord::iface`].
    pub iface: &'a str,
    /// See [`FlowRecord::ifindex`].
    pub ifindex: u32,
    /// See [`FlowRecord::vlan`].
    pub vlan: Option<u16>,
    /// See [`FlowRecord::vlan_inner`].
    pub vlan_inner: Option<u16>,
    /// See [`FlowRecord::src_mac`].
    pub src_mac: [u8; 6],
    /// See [`FlowRecord::dst_mac`].
    pub dst_mac: [u8; 6],
    /// See [`FlowRecord::proto`].
    pub proto: u8,
    /// [`FlowRecord::src_ip`] in the 16-byte column form.
    pub src_ip: [u8; 16],
    /// Whether `src_ip` is an IPv6 address (an IPv4-mapped IPv6 address stays IPv6).
    pub src_v6: bool,
    /// See [`FlowRecord::src_port`].
    pub src_port: u16,
    /// [`FlowRecord::dst_ip`] in the 16-byte column form.
    pub dst_ip: [u8; 16],
    /// Whether `dst_ip` is an IPv6 address.
    pub dst_v6: bool,
    /// See [`FlowRecord::dst_port`].
    pub dst_port: u16,
    /// See [`FlowRecord::packets`].
    pub packets: u64,
    /// See [`FlowRecord::bytes`].
    pub bytes: u64,
    /// See [`FlowRecord::resp_packets`].
    pub resp_packets: u64,
    /// See [`FlowRecord::resp_bytes`].
    pub resp_bytes: u64,
    /// See [`FlowRecord::tcp_flags`].
    pub tcp_flags: u8,
    /// See [`FlowRecord::dropped`].
    pub dropped: u64,
    /// See [`FlowRecord::rule`].
    pub rule: Option<&'a str>,
    /// See [`FlowRecord::end_reason`].
    pub end_reason: EndReason,
}

/// An address from its 16-byte column form and family.
pub fn ip_from_column(a: [u8; 16], v6: bool) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::from(a))
    } else {
        IpAddr::V4(Ipv4Addr::new(a[12], a[13], a[14], a[15]))
    }
}

impl RecordView<'_> {
    /// The owned record.
    pub fn to_record(&self) -> FlowRecord {
        FlowRecord {
            time_start_ns: self.time_start_ns,
            time_end_ns: self.time_end_ns,
            iface: self.iface.to_owned(),
            ifindex: self.ifindex,
            vlan: self.vlan,
            vlan_inner: self.vlan_inner,
            src_mac: Mac(self.src_mac),
            dst_mac: Mac(self.dst_mac),
            proto: self.proto,
            src_ip: ip_from_column(self.src_ip, self.src_v6),
            src_port: self.src_port,
            dst_ip: ip_from_column(self.dst_ip, self.dst_v6),
            dst_port: self.dst_port,
            packets: self.packets,
            bytes: self.bytes,
            resp_packets: self.resp_packets,
            resp_bytes: self.resp_bytes,
            tcp_flags: self.tcp_flags,
            dropped: self.dropped,
            rule: self.rule.map(str::to_owned),
            end_reason: self.end_reason,
        }
    }
}

/// Decodes a payload written by [`encode_record`] without copying its strings; the whole
/// payload must be consumed.
pub fn decode_view(buf: &[u8]) -> Result<RecordView<'_>, DecodeError> {
    let mut c = Cursor { buf, pos: 0 };
    let flags = c.u8("flags")?;
    if flags & !(F_VLAN | F_VLAN_INNER | F_SRC_V6 | F_DST_V6 | F_LISTS) != 0 {
        return Err(c.err("flags", "unknown flag bits"));
    }
    let time_start_ns = i64::from_le_bytes(c.array("time_start")?);
    let time_end_ns = time_start_ns.wrapping_add(unzigzag(c.varint("time_end")?));
    let ifindex =
        u32::try_from(c.varint("ifindex")?).map_err(|_| c.err("ifindex", "exceeds u32"))?;
    let name_len = c.varint("iface")?;
    let iface = c.text(name_len, "iface")?;
    let vlan = (flags & F_VLAN != 0).then(|| c.u16("vlan")).transpose()?;
    let vlan_inner = (flags & F_VLAN_INNER != 0)
        .then(|| c.u16("vlan_inner"))
        .transpose()?;
    let src_mac = c.array("src_mac")?;
    let dst_mac = c.array("dst_mac")?;
    let proto = c.u8("proto")?;
    let src_v6 = flags & F_SRC_V6 != 0;
    let dst_v6 = flags & F_DST_V6 != 0;
    let src_ip = c.ip(src_v6, "src_ip")?;
    let dst_ip = c.ip(dst_v6, "dst_ip")?;
    let src_port = c.u16("src_port")?;
    let dst_port = c.u16("dst_port")?;
    let packets = c.varint("packets")?;
    let bytes = c.varint("bytes")?;
    let resp_packets = c.varint("resp_packets")?;
    let resp_bytes = c.varint("resp_bytes")?;
    let tcp_flags = c.u8("tcp_flags")?;
    let code = c.u8("end_reason")?;
    let end_reason = *EndReason::ALL
        .get(usize::from(code))
        .ok_or_else(|| c.err("end_reason", "unknown code"))?;
    let (dropped, rule) = if flags & F_LISTS != 0 {
        let dropped = c.varint("dropped")?;
        let len = c.varint("rule")?;
        let rule = c.text(len, "rule")?;
        (dropped, (!rule.is_empty()).then_some(rule))
    } else {
        (0, None)
    };
    if c.pos != buf.len() {
        return Err(c.err("end", "trailing bytes after the record"));
    }
    Ok(RecordView {
        time_start_ns,
        time_end_ns,
        iface,
        ifindex,
        vlan,
        vlan_inner,
        src_mac,
        dst_mac,
        proto,
        src_ip,
        src_v6,
        src_port,
        dst_ip,
        dst_v6,
        dst_port,
        packets,
        bytes,
        resp_packets,
        resp_bytes,
        tcp_flags,
        dropped,
        rule,
        end_reason,
    })
}

/// Appends one frame (`[len][crc][payload]`) holding `r` to `out`.
pub fn encode_frame(r: &FlowRecord, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0u8; FRAME_HEADER_LEN]);
    encode_record(r, out);
    let payload = &out[start + FRAME_HEADER_LEN..];
    let len = payload.len() as u32;
    let crc = crc32fast::hash(payload);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Why the scan of a journal stopped before the end of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    /// File offset of the first byte not part of the valid prefix.
    pub offset: u64,
    /// Bytes from there to the end of the file.
    pub len: u64,
    /// What was wrong with the frame at `offset`.
    pub reason: String,
}

/// The result of reading a journal.
#[derive(Debug)]
pub struct JournalScan {
    /// The journal id from the header (0 when the header itself was torn).
    pub id: u64,
    /// Every record of the valid prefix, in file order.
    pub records: Vec<FlowRecord>,
    /// Length of the valid prefix in bytes (header included).
    pub valid_len: u64,
    /// The torn tail, if the file did not end on a frame boundary.
    pub torn: Option<TornTail>,
}

/// The valid prefix of a journal as found by [`scan_frames`].
#[derive(Debug)]
pub struct Frames {
    /// The journal id from the header (0 when the header itself was torn).
    pub id: u64,
    /// Length of the valid prefix in bytes (header included).
    pub valid_len: u64,
    /// The torn tail, if the file did not end on a frame boundary.
    pub torn: Option<TornTail>,
}

/// The journal id from the header; `None` when the header itself is cut short.
fn header(buf: &[u8]) -> Result<Option<u64>, &'static str> {
    if buf.len() < HEADER_LEN as usize {
        return Ok(None);
    }
    if &buf[..8] != MAGIC {
        return Err("bad magic");
    }
    let mut id = [0u8; 8];
    id.copy_from_slice(&buf[8..16]);
    Ok(Some(u64::from_le_bytes(id)))
}

/// The scan of a journal whose header was cut short: nothing was ever acknowledged.
fn short_header(buf: &[u8]) -> Frames {
    Frames {
        id: 0,
        valid_len: 0,
        torn: (!buf.is_empty()).then(|| TornTail {
            offset: 0,
            len: buf.len() as u64,
            reason: "header shorter than 16 bytes".into(),
        }),
    }
}

/// Decodes the frames of `buf[start..end]`, handing each record to `each`; returns where
/// decoding stopped and, if that is before `end`, what was wrong with the frame there.
fn scan_range<'a>(
    buf: &'a [u8],
    start: usize,
    end: usize,
    each: &mut impl FnMut(RecordView<'a>),
) -> (usize, Option<String>) {
    let mut pos = start;
    while pos < end {
        match frame_at(&buf[pos..end]) {
            Ok((rec, used)) => {
                each(rec);
                pos += used;
            }
            Err(reason) => return (pos, Some(reason)),
        }
    }
    (pos, None)
}

/// The scan result once decoding stopped at `pos` of `buf` (`reason`: why, if early).
fn frames_until(id: u64, buf: &[u8], pos: usize, reason: Option<String>) -> Frames {
    Frames {
        id,
        valid_len: pos as u64,
        torn: reason.map(|reason| TornTail {
            offset: pos as u64,
            len: (buf.len() - pos) as u64,
            reason,
        }),
    }
}

/// Parses journal bytes: header and then frames up to the first bad one, handing each
/// record of the valid prefix to `each` in file order. One scanner serves both decoders
/// ([`scan_bytes`] for records, [`scan_columns`] for a seal), so they agree on where the
/// valid prefix ends.
pub fn scan_frames<'a>(
    buf: &'a [u8],
    mut each: impl FnMut(RecordView<'a>),
) -> Result<Frames, &'static str> {
    let Some(id) = header(buf)? else {
        return Ok(short_header(buf));
    };
    let (pos, reason) = scan_range(buf, HEADER_LEN as usize, buf.len(), &mut each);
    Ok(frames_until(id, buf, pos, reason))
}

/// Parses journal bytes into records (see [`scan_frames`]).
pub fn scan_bytes(buf: &[u8]) -> Result<JournalScan, &'static str> {
    let mut records = Vec::new();
    let f = scan_frames(buf, |v| records.push(v.to_record()))?;
    Ok(JournalScan {
        id: f.id,
        records,
        valid_len: f.valid_len,
        torn: f.torn,
    })
}

/// A journal decoded for sealing: its records as column buffers, in file order.
#[derive(Debug)]
pub struct ColumnScan {
    /// Where the valid prefix ends.
    pub frames: Frames,
    /// Every record of the valid prefix, in file order.
    pub columns: Columns,
}

/// Frame length used to size column buffers before decoding: a little under the ~67 bytes
/// measured on the generated mix, so the buffers are allocated once and rarely grow.
const TYPICAL_FRAME_LEN: usize = 56;

/// Journals smaller than this are decoded on one thread (a second one would not pay).
const PARALLEL_MIN_BYTES: usize = 4 << 20;

/// Parses journal bytes straight into column buffers (see [`scan_frames`]): no record is
/// materialised, so decoding allocates nothing per record. A large journal is decoded in two
/// halves on two threads (decoding is the longest step of a seal that runs on one core); the
/// result, torn tail included, is the same as one scan's.
pub fn scan_columns(buf: &[u8]) -> Result<ColumnScan, &'static str> {
    let rows = buf.len() / TYPICAL_FRAME_LEN;
    let Some(id) = header(buf)? else {
        return Ok(ColumnScan {
            frames: short_header(buf),
            columns: Columns::default(),
        });
    };
    let sequential = || {
        let mut columns = Columns::with_capacity(rows);
        let (pos, reason) = scan_range(buf, HEADER_LEN as usize, buf.len(), &mut |v| {
            columns.push(&v)
        });
        ColumnScan {
            frames: frames_until(id, buf, pos, reason),
            columns,
        }
    };
    let Some(mid) = split_point(buf) else {
        return Ok(sequential());
    };
    let mut first = Columns::with_capacity(rows);
    let (first_end, second) = std::thread::scope(|s| {
        let second = std::thread::Builder::new()
            .name("xdp-audit-decode".into())
            .spawn_scoped(s, || {
                let mut c = Columns::with_capacity(rows / 2 + 1);
                let end = scan_range(buf, mid, buf.len(), &mut |v| c.push(&v));
                (c, end)
            });
        let first_end = scan_range(buf, HEADER_LEN as usize, mid, &mut |v| first.push(&v));
        (first_end, second.map(|h| h.join()))
    });
    // No second thread (the system refused one) or a panic in it: decode on this one.
    let Ok(Ok((second, (pos, reason)))) = second else {
        return Ok(sequential());
    };
    if let (at, Some(reason)) = first_end {
        // Everything after a bad frame in the first half is outside the valid prefix.
        return Ok(ColumnScan {
            frames: frames_until(id, buf, at, Some(reason)),
            columns: first,
        });
    }
    first.append(second);
    Ok(ColumnScan {
        frames: frames_until(id, buf, pos, reason),
        columns: first,
    })
}

/// A frame boundary at or after the middle of `buf`, found by walking the frames' length
/// fields alone; `None` when `buf` is too small to split, or when a length before the middle
/// is out of range or the walk ends at or past the end (one scan then finds the torn tail).
fn split_point(buf: &[u8]) -> Option<usize> {
    if buf.len() < PARALLEL_MIN_BYTES {
        return None;
    }
    let half = buf.len() / 2;
    let mut pos = HEADER_LEN as usize;
    while pos < half {
        let len = u32::from_le_bytes(buf.get(pos..pos + 4)?.try_into().ok()?) as usize;
        if len == 0 || len > MAX_PAYLOAD {
            return None;
        }
        pos += FRAME_HEADER_LEN + len;
    }
    (pos < buf.len()).then_some(pos)
}

fn frame_at(rest: &[u8]) -> Result<(RecordView<'_>, usize), String> {
    if rest.len() < FRAME_HEADER_LEN {
        return Err(format!("frame header cut after {} of 8 bytes", rest.len()));
    }
    let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
    let crc = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
    if len == 0 || len > MAX_PAYLOAD {
        return Err(format!("frame length {len} out of range"));
    }
    let Some(payload) = rest.get(FRAME_HEADER_LEN..FRAME_HEADER_LEN + len) else {
        return Err(format!(
            "payload cut after {} of {len} bytes",
            rest.len() - FRAME_HEADER_LEN
        ));
    };
    if crc32fast::hash(payload) != crc {
        return Err("checksum mismatch".into());
    }
    let rec = decode_view(payload).map_err(|e| e.to_string())?;
    Ok((rec, FRAME_HEADER_LEN + len))
}

fn read_file(path: &Path) -> Result<Vec<u8>, JournalError> {
    let mut buf = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut buf))
        .map_err(|source| JournalError::Io {
            path: path.to_owned(),
            op: "read",
            cause: source,
        })?;
    Ok(buf)
}

/// Reads a journal file without changing it (queries read the live journal this way).
pub fn read(path: &Path) -> Result<JournalScan, JournalError> {
    scan_bytes(&read_file(path)?).map_err(|_| JournalError::BadMagic {
        path: path.to_owned(),
    })
}

/// Reads a journal file into column buffers without changing it (the seal reads it this
/// way; a torn tail is left out, as [`read`] leaves it out).
pub fn read_columns(path: &Path) -> Result<ColumnScan, JournalError> {
    scan_columns(&read_file(path)?).map_err(|_| JournalError::BadMagic {
        path: path.to_owned(),
    })
}

/// Reads a journal left by a previous run and cuts a torn tail off it, saying so: the valid
/// prefix is kept, the tail is reported with file and offset, never dropped silently.
pub fn recover(path: &Path) -> Result<JournalScan, JournalError> {
    let scan = read(path)?;
    if let Some(t) = &scan.torn {
        tracing::warn!(
            file = %path.display(),
            offset = t.offset,
            bytes = t.len,
            reason = %t.reason,
            kept_records = scan.records.len(),
            "journal has a torn tail (crash during a write); cutting it"
        );
        let f = OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(|source| JournalError::Io {
                path: path.to_owned(),
                op: "open for truncation",
                cause: source,
            })?;
        f.set_len(scan.valid_len)
            .and_then(|()| f.sync_all())
            .map_err(|source| JournalError::Io {
                path: path.to_owned(),
                op: "truncate torn tail",
                cause: source,
            })?;
    }
    Ok(scan)
}

/// Appends frames to a journal. Frames are encoded into a memory buffer and written with
/// [`JournalWriter::flush`]; [`JournalWriter::sync`] makes them durable. A failed write is cut
/// back to the last whole frame, so the file never holds a torn frame the writer knows of, and
/// the frames stay buffered for the next attempt.
pub struct JournalWriter {
    path: PathBuf,
    file: File,
    id: u64,
    /// Bytes in the file that hold whole frames (header included).
    written: u64,
    pending: Vec<u8>,
    pending_records: usize,
    written_records: u64,
    synced_records: u64,
}

impl JournalWriter {
    /// Creates a new, empty journal at `path` with the given id and fsyncs it.
    pub fn create(path: &Path, id: u64) -> Result<Self, JournalError> {
        let io = |op, source| JournalError::Io {
            path: path.to_owned(),
            op,
            cause: source,
        };
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| io("create", e))?;
        let mut header = MAGIC.to_vec();
        header.extend_from_slice(&id.to_le_bytes());
        if let Err(e) = file.write_all(&header).and_then(|()| file.sync_all()) {
            let _ = std::fs::remove_file(path);
            return Err(io("write header", e));
        }
        Ok(Self {
            path: path.to_owned(),
            file,
            id,
            written: HEADER_LEN,
            pending: Vec::with_capacity(1 << 16),
            pending_records: 0,
            written_records: 0,
            synced_records: 0,
        })
    }

    /// Reopens a recovered journal (see [`recover`]) to append after its valid prefix.
    pub fn reopen(path: &Path, scan: &JournalScan) -> Result<Self, JournalError> {
        let io = |op, source| JournalError::Io {
            path: path.to_owned(),
            op,
            cause: source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| io("open", e))?;
        file.seek(SeekFrom::Start(scan.valid_len))
            .map_err(|e| io("seek", e))?;
        let n = scan.records.len() as u64;
        Ok(Self {
            path: path.to_owned(),
            file,
            id: scan.id,
            written: scan.valid_len,
            pending: Vec::with_capacity(1 << 16),
            pending_records: 0,
            written_records: n,
            synced_records: n,
        })
    }

    /// The journal file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The journal id (its creation time in Unix ns), recorded in the manifest when sealed.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Buffers one record.
    pub fn append(&mut self, r: &FlowRecord) {
        encode_frame(r, &mut self.pending);
        self.pending_records += 1;
    }

    /// Records buffered in memory, not yet written.
    pub fn pending_records(&self) -> usize {
        self.pending_records
    }

    /// Bytes buffered in memory, not yet written.
    pub fn pending_bytes(&self) -> usize {
        self.pending.len()
    }

    /// Size of the file plus what is buffered.
    pub fn size(&self) -> u64 {
        self.written + self.pending.len() as u64
    }

    /// Records in the journal, written or buffered.
    pub fn records(&self) -> u64 {
        self.written_records + self.pending_records as u64
    }

    /// Records made durable by the last successful [`JournalWriter::sync`].
    pub fn synced_records(&self) -> u64 {
        self.synced_records
    }

    /// Writes the buffered frames. On failure the file is cut back to its last whole frame and
    /// the frames stay buffered.
    pub fn flush(&mut self) -> Result<(), JournalError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        match self.file.write_all(&self.pending) {
            Ok(()) => {
                self.written += self.pending.len() as u64;
                self.written_records += self.pending_records as u64;
                self.pending.clear();
                self.pending_records = 0;
                Ok(())
            }
            Err(source) => {
                // Part of the buffer may have reached the file: cut it so no torn frame stays
                // behind, and position the next write at the cut.
                let _ = self.file.set_len(self.written);
                let _ = self.file.seek(SeekFrom::Start(self.written));
                Err(JournalError::Io {
                    path: self.path.clone(),
                    op: "append",
                    cause: source,
                })
            }
        }
    }

    /// Writes the buffered frames and fsyncs the file.
    pub fn sync(&mut self) -> Result<(), JournalError> {
        self.flush()?;
        if self.synced_records == self.written_records {
            return Ok(());
        }
        self.file.sync_data().map_err(|source| JournalError::Io {
            path: self.path.clone(),
            op: "fsync",
            cause: source,
        })?;
        self.synced_records = self.written_records;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testgen::TrafficGen;

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("xdp-audit-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("create temp dir");
        d
    }

    #[test]
    fn every_record_shape_round_trips_through_the_payload() {
        let mut g = TrafficGen::new(7, 1_700_000_000_000_000_000);
        let mut buf = Vec::new();
        for i in 0..20_000 {
            let mut r = g.next_record();
            if i % 7 == 0 {
                r.vlan = Some(4094);
                r.vlan_inner = Some(i as u16 % 4096);
            }
            if i % 11 == 0 {
                r.time_end_ns = r.time_start_ns - 5; // clocks can step back
                r.iface = "a-very-long-interface-name-ü".into();
                r.packets = u64::MAX;
            }
            buf.clear();
            encode_record(&r, &mut buf);
            let back = decode_view(&buf)
                .map(|v| v.to_record())
                .unwrap_or_else(|e| panic!("record {i}: {e}"));
            assert_eq!(back, r, "record {i} changed in the round trip");
        }
    }

    #[test]
    fn columns_decoded_on_two_threads_equal_one_scan_of_records() {
        // Over PARALLEL_MIN_BYTES, so the journal is decoded in two halves.
        let mut g = TrafficGen::with_rate(5, 1_700_000_000_000_000_000, 300.0);
        let mut buf = MAGIC.to_vec();
        buf.extend_from_slice(&77u64.to_le_bytes());
        let mut starts = Vec::new();
        for i in 0..150_000 {
            let mut r = g.next_record();
            if i % 3 == 0 {
                r.iface = format!("if{}", i % 5000); // names first seen in either half
            }
            starts.push(buf.len());
            encode_frame(&r, &mut buf);
        }
        assert!(buf.len() > 2 * PARALLEL_MIN_BYTES);
        let n = starts.len();
        let mid = split_point(&buf).expect("a large journal is split");
        let k = starts
            .iter()
            .position(|&s| s == mid)
            .expect("split on a frame");
        let mut cases = vec![("intact", buf.clone())];
        for (what, frame) in [
            ("first half", n / 4),
            ("last frame of the first half", k - 1),
            ("first frame of the second half", k),
            ("second half", 3 * n / 4),
        ] {
            let mut bad = buf.clone();
            bad[starts[frame] + FRAME_HEADER_LEN + 3] ^= 0x40;
            cases.push((what, bad));
        }
        // A length out of range before the middle: no split, one scan.
        let mut bad = buf.clone();
        bad[starts[n / 4]..starts[n / 4] + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        cases.push(("bad length in the first half", bad));
        cases.push(("cut last frame", buf[..buf.len() - 7].to_vec()));
        for (what, journal) in cases {
            let want = scan_bytes(&journal).expect("records");
            let got = scan_columns(&journal).expect("columns");
            assert_eq!(got.frames.id, 77, "{what}");
            assert_eq!(got.frames.valid_len, want.valid_len, "{what}");
            assert_eq!(got.frames.torn, want.torn, "{what}");
            assert_eq!(got.columns.len(), want.records.len(), "{what}");
            for (i, r) in want.records.iter().enumerate() {
                assert_eq!(
                    got.columns.record(i).as_ref(),
                    Some(r),
                    "{what}: record {i}"
                );
            }
        }
    }

    #[test]
    fn a_torn_last_record_at_every_byte_offset_keeps_the_valid_prefix() {
        let dir = tmpdir("torn");
        let path = dir.join("journal.wal");
        let mut g = TrafficGen::new(1, 1_700_000_000_000_000_000);
        let records: Vec<_> = (0..5).map(|_| g.next_record()).collect();
        let mut w = JournalWriter::create(&path, 42).expect("create journal");
        for r in &records {
            w.append(r);
        }
        w.sync().expect("sync journal");
        drop(w);
        let full = std::fs::read(&path).expect("read journal");
        let mut last = Vec::new();
        encode_frame(&records[4], &mut last);
        let last_start = full.len() - last.len();
        // Every cut strictly inside the last frame (a cut at its first byte is no torn write).
        for cut in last_start + 1..full.len() {
            std::fs::write(&path, &full[..cut]).expect("write torn journal");
            let scan = recover(&path).unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
            assert_eq!(scan.records, records[..4], "cut at {cut}: wrong prefix");
            let torn = scan
                .torn
                .unwrap_or_else(|| panic!("cut at {cut}: torn tail not reported"));
            assert_eq!(torn.offset, last_start as u64, "cut at {cut}");
            let len = std::fs::metadata(&path).expect("stat").len();
            assert_eq!(len, last_start as u64, "cut at {cut}: tail not cut");
            // Appending after recovery continues a valid journal.
            let scan = read(&path).expect("reread");
            let mut w = JournalWriter::reopen(&path, &scan).expect("reopen");
            w.append(&records[4]);
            w.sync().expect("sync");
            let again = read(&path).expect("read after append");
            assert_eq!(
                again.records, records,
                "cut at {cut}: append after recovery"
            );
            assert!(again.torn.is_none(), "cut at {cut}");
        }
        // A flipped bit in the last payload is caught by the checksum.
        let mut bad = full.clone();
        let n = bad.len();
        bad[n - 3] ^= 0x10;
        std::fs::write(&path, &bad).expect("write");
        let scan = recover(&path).expect("recover flipped");
        assert_eq!(scan.records, records[..4]);
        assert_eq!(
            scan.torn.map(|t| t.reason),
            Some("checksum mismatch".to_string())
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
