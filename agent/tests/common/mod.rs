//! Crafted packets for program tests and benchmarks: a small builder that writes real
//! headers (with correct lengths) so each test states only what it varies. `wait` holds the
//! tests' one way of waiting for something: a condition polled until a deadline.
#![allow(dead_code)]

pub mod kill;
pub mod newflows;
pub mod prog;
pub mod sweep;
pub mod wait;

/// Client and server MACs used in crafted frames.
pub const MAC_A: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
/// See [`MAC_A`].
pub const MAC_B: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0b];

/// One IP endpoint pair.
#[derive(Clone, Copy, Debug)]
pub enum Addrs {
    /// IPv4 source and destination.
    V4([u8; 4], [u8; 4]),
    /// IPv6 source and destination.
    V6([u8; 16], [u8; 16]),
}

/// Transport header to write.
#[derive(Clone, Copy, Debug)]
pub enum L4 {
    /// TCP with ports and flags.
    Tcp { sport: u16, dport: u16, flags: u8 },
    /// UDP with ports.
    Udp { sport: u16, dport: u16 },
    /// ICMP or ICMPv6 with type and code.
    Icmp { ty: u8, code: u8 },
    /// Another protocol number, 8 bytes of zero payload.
    Other(u8),
}

/// TCP flag bits.
pub mod tcp {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    pub const URG: u8 = 0x20;
}

/// Everything a crafted frame can vary.
#[derive(Clone, Debug)]
pub struct Spec {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    /// VLAN tags, outermost first, as (TPID, VID).
    pub vlans: Vec<(u16, u16)>,
    pub addrs: Addrs,
    pub l4: L4,
    /// IPv4 option bytes (a multiple of 4).
    pub ipv4_options: Vec<u8>,
    /// IPv4 fragment offset in 8-byte units and the more-fragments flag.
    pub ipv4_frag: (u16, bool),
    /// IPv6 extension headers as (type, total length in bytes); fragment headers are 8 bytes
    /// and take their offset from `ipv6_frag_offset`.
    pub ipv6_ext: Vec<(u8, usize)>,
    /// IPv6 fragment offset in 8-byte units, for a fragment header in `ipv6_ext`.
    pub ipv6_frag_offset: u16,
    pub payload: Vec<u8>,
    /// TCP sequence number.
    pub seq: u32,
}

impl Spec {
    /// A TCP segment over IPv4.
    pub fn tcp4(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, flags: u8) -> Self {
        Self::new(
            Addrs::V4(src, dst),
            L4::Tcp {
                sport,
                dport,
                flags,
            },
        )
    }

    /// A UDP datagram over IPv4.
    pub fn udp4(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16) -> Self {
        Self::new(Addrs::V4(src, dst), L4::Udp { sport, dport })
    }

    /// Any transport over any addresses.
    pub fn new(addrs: Addrs, l4: L4) -> Self {
        Self {
            src_mac: MAC_A,
            dst_mac: MAC_B,
            vlans: Vec::new(),
            addrs,
            l4,
            ipv4_options: Vec::new(),
            ipv4_frag: (0, false),
            ipv6_ext: Vec::new(),
            ipv6_frag_offset: 0,
            payload: Vec::new(),
            seq: 1,
        }
    }

    /// With this payload.
    pub fn payload(mut self, n: usize) -> Self {
        self.payload = vec![0x5a; n];
        self
    }

    /// With these payload bytes.
    pub fn data(mut self, bytes: &[u8]) -> Self {
        self.payload = bytes.to_vec();
        self
    }

    /// With this TCP sequence number.
    pub fn seq(mut self, seq: u32) -> Self {
        self.seq = seq;
        self
    }

    /// Serialises the frame.
    pub fn build(&self) -> Vec<u8> {
        let mut l4 = Vec::new();
        let proto = match self.l4 {
            L4::Tcp {
                sport,
                dport,
                flags,
            } => {
                l4.extend_from_slice(&sport.to_be_bytes());
                l4.extend_from_slice(&dport.to_be_bytes());
                l4.extend_from_slice(&self.seq.to_be_bytes());
                l4.extend_from_slice(&[0, 0, 0, 0, 0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
                6
            }
            L4::Udp { sport, dport } => {
                l4.extend_from_slice(&sport.to_be_bytes());
                l4.extend_from_slice(&dport.to_be_bytes());
                l4.extend_from_slice(&((8 + self.payload.len()) as u16).to_be_bytes());
                l4.extend_from_slice(&[0, 0]);
                17
            }
            L4::Icmp { ty, code } => {
                l4.extend_from_slice(&[ty, code, 0, 0, 0, 1, 0, 1]);
                if matches!(self.addrs, Addrs::V6(..)) {
                    58
                } else {
                    1
                }
            }
            L4::Other(p) => {
                l4.extend_from_slice(&[0; 8]);
                p
            }
        };
        l4.extend_from_slice(&self.payload);

        let mut f = Vec::new();
        f.extend_from_slice(&self.dst_mac);
        f.extend_from_slice(&self.src_mac);
        for &(tpid, vid) in &self.vlans {
            f.extend_from_slice(&tpid.to_be_bytes());
            f.extend_from_slice(&vid.to_be_bytes());
        }
        match self.addrs {
            Addrs::V4(src, dst) => {
                f.extend_from_slice(&0x0800u16.to_be_bytes());
                let ihl = 20 + self.ipv4_options.len();
                let total = (ihl + l4.len()) as u16;
                let frag = self.ipv4_frag.0 | if self.ipv4_frag.1 { 0x2000 } else { 0 };
                f.push(0x40 | (ihl / 4) as u8);
                f.push(0);
                f.extend_from_slice(&total.to_be_bytes());
                f.extend_from_slice(&[0, 1]);
                f.extend_from_slice(&frag.to_be_bytes());
                f.extend_from_slice(&[64, proto, 0, 0]);
                f.extend_from_slice(&src);
                f.extend_from_slice(&dst);
                f.extend_from_slice(&self.ipv4_options);
            }
            Addrs::V6(src, dst) => {
                f.extend_from_slice(&0x86ddu16.to_be_bytes());
                let ext_len: usize = self.ipv6_ext.iter().map(|e| e.1).sum();
                let first = self.ipv6_ext.first().map_or(proto, |e| e.0);
                f.extend_from_slice(&[0x60, 0, 0, 0]);
                f.extend_from_slice(&((ext_len + l4.len()) as u16).to_be_bytes());
                f.extend_from_slice(&[first, 64]);
                f.extend_from_slice(&src);
                f.extend_from_slice(&dst);
                for (i, &(ty, len)) in self.ipv6_ext.iter().enumerate() {
                    let next = self.ipv6_ext.get(i + 1).map_or(proto, |e| e.0);
                    let mut h = vec![0u8; len];
                    h[0] = next;
                    match ty {
                        44 => h[2..4].copy_from_slice(&(self.ipv6_frag_offset << 3).to_be_bytes()),
                        51 => h[1] = (len / 4 - 2) as u8,
                        _ => h[1] = (len / 8 - 1) as u8,
                    }
                    f.extend_from_slice(&h);
                }
            }
        }
        f.extend_from_slice(&l4);
        seal(&mut f);
        f
    }
}

/// Writes the IPv4 header checksum of an Ethernet frame (behind its VLAN tags), as a
/// sender's stack would: the program makes no flow of a packet the host drops for it. A
/// frame holding no whole IPv4 header is left as it is. The runners seal what they are
/// given, so a test may change a header's fields after `build`.
pub fn seal(frame: &mut [u8]) {
    let mut at = 12;
    while at + 2 <= frame.len() && matches!(frame[at..at + 2], [0x81, 0x00] | [0x88, 0xa8]) {
        at += 4;
    }
    let ip = at + 2;
    if frame.get(at..ip) != Some(&[0x08, 0x00][..]) || frame.len() < ip + 20 || frame[ip] >> 4 != 4
    {
        return;
    }
    let ihl = (usize::from(frame[ip] & 0x0f) * 4).clamp(20, frame.len() - ip);
    frame[ip + 10..ip + 12].fill(0);
    let sum = checksum(0, &frame[ip..ip + ihl]);
    frame[ip + 10..ip + 12].copy_from_slice(&sum.to_be_bytes());
}

/// The Internet checksum of `bytes` plus `seed` (a sum of 16-bit words): 0 over a message
/// whose checksum field is right.
pub fn checksum(seed: u32, bytes: &[u8]) -> u16 {
    let mut sum = seed;
    for pair in bytes.chunks(2) {
        sum += u32::from(pair[0]) << 8 | u32::from(pair.get(1).copied().unwrap_or(0));
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// `frame` with its IPv4 header checksum written (see [`seal`]).
pub fn sealed(frame: &[u8]) -> Vec<u8> {
    let mut f = frame.to_vec();
    seal(&mut f);
    f
}

/// An IPv4 address.
pub const fn v4(a: u8, b: u8, c: u8, d: u8) -> [u8; 4] {
    [a, b, c, d]
}

/// An IPv6 address in 2001:db8::/32 ending in `last`.
pub fn v6(last: u16) -> [u8; 16] {
    let mut a = [0u8; 16];
    a[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
    a[14..].copy_from_slice(&last.to_be_bytes());
    a
}

/// A DNS message asking one A question for `qname` (wire form, see [`wire`]).
pub fn dns_query_payload(qname: &[u8]) -> Vec<u8> {
    let mut payload = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    payload.extend_from_slice(qname);
    payload.extend_from_slice(&[0, 1, 0, 1]);
    payload
}

/// `name` in DNS wire form: length-prefixed labels, then the root's 0.
pub fn wire(name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for label in name.split('.') {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    out
}
