//! Reads the lab captures of `tests/fixtures/names` into TCP segments and UDP datagrams, with
//! the lab crate's pcap reader; shared by `tests/names.rs` and `benches/names.rs`.
#![allow(dead_code)] // each user takes what it needs

use std::net::IpAddr;
use std::path::PathBuf;

use xdp_audit_lab::pcap;

/// One TCP segment or UDP datagram of a capture.
#[derive(Clone, Debug)]
pub struct Packet {
    /// Sender address and port.
    pub src: (IpAddr, u16),
    /// Receiver address and port.
    pub dst: (IpAddr, u16),
    /// TCP sequence number and SYN flag; `None` for UDP.
    pub tcp: Option<Tcp>,
    /// The L4 payload.
    pub payload: Vec<u8>,
}

#[derive(Clone, Copy, Debug)]
pub struct Tcp {
    /// Sequence number.
    pub seq: u32,
    /// SYN flag.
    pub syn: bool,
}

fn be16(d: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*d.get(at)?, *d.get(at + 1)?]))
}

/// Decodes an Ethernet frame of the lab (no VLAN, no IPv6 extension headers).
fn decode(d: &[u8]) -> Option<Packet> {
    let (proto, src, dst, l4, end) = match be16(d, 12)? {
        0x0800 => {
            let ihl = usize::from(d.get(14)? & 0x0f) * 4;
            let total = usize::from(be16(d, 16)?);
            let s: [u8; 4] = d.get(26..30)?.try_into().ok()?;
            let t: [u8; 4] = d.get(30..34)?.try_into().ok()?;
            (
                *d.get(23)?,
                IpAddr::from(s),
                IpAddr::from(t),
                14 + ihl,
                14 + total,
            )
        }
        0x86dd => {
            let s: [u8; 16] = d.get(22..38)?.try_into().ok()?;
            let t: [u8; 16] = d.get(38..54)?.try_into().ok()?;
            (
                *d.get(20)?,
                IpAddr::from(s),
                IpAddr::from(t),
                54,
                54 + usize::from(be16(d, 18)?),
            )
        }
        _ => return None,
    };
    let ports = (be16(d, l4)?, be16(d, l4 + 2)?);
    let (tcp, data_at) = match proto {
        6 => {
            let seq = u32::from_be_bytes(d.get(l4 + 4..l4 + 8)?.try_into().ok()?);
            let off = usize::from(d.get(l4 + 12)? >> 4) * 4;
            let syn = d.get(l4 + 13)? & 0x02 != 0;
            (Some(Tcp { seq, syn }), l4 + off)
        }
        17 => (None, l4 + 8),
        _ => return None,
    };
    Some(Packet {
        src: (src, ports.0),
        dst: (dst, ports.1),
        tcp,
        payload: d.get(data_at..end.min(d.len()))?.to_vec(),
    })
}

fn path(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/names")
        .join(file)
}

/// The TCP segments and UDP datagrams of a capture in `tests/fixtures/names`.
pub fn capture(file: &str) -> Vec<Packet> {
    let path = path(file);
    let frames = pcap::read(&path).unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
    frames.iter().filter_map(|f| decode(&f.data)).collect()
}

/// The bytes of a file in `tests/fixtures/names`.
pub fn fixture(file: &str) -> Vec<u8> {
    let path = path(file);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}
