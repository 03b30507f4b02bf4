//! A reader for classic pcap files (as written by `tcpdump -w`) and an independent flow
//! aggregator: the oracle the audit log is compared with, packet by packet.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;

use anyhow::{bail, Context as _};

/// One captured frame.
pub struct Frame {
    /// Length on the wire.
    pub orig_len: u32,
    /// Captured bytes.
    pub data: Vec<u8>,
}

/// Reads every frame of a pcap file (microsecond or nanosecond, either byte order).
pub fn read(path: &Path) -> anyhow::Result<Vec<Frame>> {
    let bytes = std::fs::read(path).with_context(|| format!("read {}", path.display()))?;
    if bytes.len() < 24 {
        bail!("{}: shorter than a pcap header", path.display());
    }
    let magic = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    let le = match magic {
        0xa1b2c3d4 | 0xa1b23c4d => true,
        0xd4c3b2a1 | 0x4d3cb2a1 => false,
        m => bail!("{}: not a pcap file (magic {m:#x})", path.display()),
    };
    let u32_at = |off: usize| {
        let b = [bytes[off], bytes[off + 1], bytes[off + 2], bytes[off + 3]];
        if le {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        }
    };
    let mut frames = Vec::new();
    let mut off = 24;
    while off + 16 <= bytes.len() {
        let incl = u32_at(off + 8) as usize;
        let orig_len = u32_at(off + 12);
        let start = off + 16;
        if start + incl > bytes.len() {
            break; // a torn last record: tcpdump was stopped mid-write
        }
        frames.push(Frame {
            orig_len,
            data: bytes[start..start + incl].to_vec(),
        });
        off = start + incl;
    }
    Ok(frames)
}

/// A flow as the audit log names it: protocol and originator -> responder endpoints.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FlowId {
    /// IP protocol number.
    pub proto: u8,
    /// Originator.
    pub src: (IpAddr, u16),
    /// Responder.
    pub dst: (IpAddr, u16),
}

/// Packets and bytes of one flow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Count {
    /// Frames.
    pub packets: u64,
    /// Frame bytes on the wire.
    pub bytes: u64,
}

fn be16(d: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*d.get(off)?, *d.get(off + 1)?]))
}

/// The flow of one frame, or `None` if it is not an IP packet the audit keeps (ARP, ...).
pub fn flow_of(d: &[u8]) -> Option<FlowId> {
    parse(d).map(|(id, _)| id)
}

/// The flow of one frame, and its TCP flags and sequence number (a TCP segment's whose
/// header is there).
fn parse(d: &[u8]) -> Option<(FlowId, Option<(u8, u32)>)> {
    let mut off = 12;
    let mut ethertype = be16(d, off)?;
    while matches!(ethertype, 0x8100 | 0x88a8 | 0x9100) {
        off += 4;
        ethertype = be16(d, off)?;
    }
    off += 2;
    let (proto, src, dst, l4) = match ethertype {
        0x0800 => {
            let ihl = (*d.get(off)? & 0x0f) as usize * 4;
            let frag = be16(d, off + 6)? & 0x1fff;
            let a: [u8; 4] = d.get(off + 12..off + 16)?.try_into().ok()?;
            let b: [u8; 4] = d.get(off + 16..off + 20)?.try_into().ok()?;
            let l4 = if frag == 0 { Some(off + ihl) } else { None };
            (*d.get(off + 9)?, IpAddr::from(a), IpAddr::from(b), l4)
        }
        0x86dd => {
            let a: [u8; 16] = d.get(off + 8..off + 24)?.try_into().ok()?;
            let b: [u8; 16] = d.get(off + 24..off + 40)?.try_into().ok()?;
            // The lab's own traffic carries no extension headers.
            (
                *d.get(off + 6)?,
                IpAddr::from(a),
                IpAddr::from(b),
                Some(off + 40),
            )
        }
        _ => return None,
    };
    let (sp, dp) = match (proto, l4) {
        (6 | 17, Some(o)) => (be16(d, o)?, be16(d, o + 2)?),
        (1 | 58, Some(o)) => (u16::from(*d.get(o)?), u16::from(*d.get(o + 1)?)),
        _ => (0, 0),
    };
    let flags = l4.filter(|_| proto == 6).and_then(|o| {
        let seq = u32::from_be_bytes(d.get(o + 4..o + 8)?.try_into().ok()?);
        Some((*d.get(o + 13)?, seq))
    });
    let id = FlowId {
        proto,
        src: (src, sp),
        dst: (dst, dp),
    };
    Some((id, flags))
}

const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const ACK: u8 = 0x10;

/// Aggregates frames into flows, oriented by each flow's first frame (as the program does),
/// and each flow into its connections in order, as the program counts them: a TCP SYN, or
/// a SYN-ACK, in the flow's own orientation opens the next connection after a FIN or RST of
/// the flow (its ports used again), or when its sequence number is not the one that opened
/// the connection (a new attempt; on an interface that receives the server's side only,
/// whose flows begin with the server's SYN-ACK, a connection its client aborted).
pub fn flows(frames: &[Frame]) -> BTreeMap<FlowId, Vec<Count>> {
    /// A flow's connections, whether its last one closed, and the number that opened it.
    type Conns = (Vec<Count>, bool, Option<u32>);
    let mut out: BTreeMap<FlowId, Conns> = BTreeMap::new();
    for f in frames {
        let Some((id, tcp)) = parse(&f.data) else {
            continue;
        };
        let rev = FlowId {
            proto: id.proto,
            src: id.dst,
            dst: id.src,
        };
        let own = out.contains_key(&id) || !out.contains_key(&rev);
        let key = if own { id } else { rev };
        let (conns, closed, opened) = out.entry(key).or_default();
        let flags = tcp.map(|(t, _)| t & (SYN | ACK | FIN | RST));
        // The number a SYN or SYN-ACK of the flow's own side begins its connection with.
        let begins = tcp
            .filter(|_| own && matches!(flags, Some(t) if t == SYN || t == SYN | ACK))
            .map(|(_, seq)| seq);
        let other = begins.is_some_and(|seq| opened.is_some_and(|o| o != seq));
        if conns.is_empty() || (begins.is_some() && (*closed || other)) {
            conns.push(Count::default());
            *closed = false;
            *opened = begins;
        }
        *closed |= flags.is_some_and(|t| t & (FIN | RST) != 0);
        if let Some(c) = conns.last_mut() {
            c.packets += 1;
            c.bytes += u64::from(f.orig_len);
        }
    }
    out.into_iter().map(|(k, (c, ..))| (k, c)).collect()
}
