//! Test-only helpers, compiled for unit tests and with the `testing` feature (which the
//! crate's integration tests and benchmarks enable through their dev-dependency on the crate
//! itself), never into the agent: generated traffic ([`TrafficGen`]), a clock tests set by
//! hand ([`FakeClock`]), and the brute-force segment row order ([`brute_force_order`]).
//!
//! Generated traffic is a mid-size gateway, so size and speed figures are measured on data
//! that looks like what the store will hold.
//!
//! The mix ([`TrafficGen`]): 250 LAN clients (fixed MAC each) behind one gateway MAC, on
//! `lan0` (90 %) and `wan0` (10 %); 10 % of records VLAN-tagged; 20 % IPv6. 70 % TCP
//! (destination 443: 70 %, 80: 15 %, the rest spread over 10 service ports), 25 % UDP (53: 60 %,
//! 443/QUIC: 30 %, 123: 10 %), 5 % ICMP echo. Remote addresses drawn from 20,000 hosts with a
//! skewed popularity (squared uniform), source ports uniform over the Linux ephemeral range.
//! Flows start at a Poisson rate (default 13 per second: 100 million records in 90 days) with
//! nanosecond timestamps; durations 1 ms to 300 s (log-uniform), packets 1 to ~10,000 (heavy
//! tail), bytes 60 to 1,500 per packet. End reasons: fin 60 %, idle 28 %, rst 7 %, active 5 %.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::record::{EndReason, FlowRecord, Mac};

/// A small, fast, deterministic PRNG (SplitMix64).
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        Self(seed ^ 0x9e37_79b9_7f4a_7c15)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
}

/// Generates a stream of [`FlowRecord`]s with the mix described in the module docs.
#[derive(Clone, Debug)]
pub struct TrafficGen {
    rng: Rng,
    now_ns: i64,
    mean_gap_ns: f64,
}

const CLIENTS: u64 = 250;
const REMOTES: u64 = 20_000;
const GATEWAY_MAC: Mac = Mac([0x02, 0x00, 0x5e, 0x10, 0x00, 0x01]);

impl TrafficGen {
    /// A generator starting at `start_ns` (Unix ns) at 13 flows per second.
    pub fn new(seed: u64, start_ns: i64) -> Self {
        Self::with_rate(seed, start_ns, 13.0)
    }

    /// A generator with `per_sec` flow starts per second on average.
    pub fn with_rate(seed: u64, start_ns: i64, per_sec: f64) -> Self {
        Self {
            rng: Rng::new(seed),
            now_ns: start_ns,
            mean_gap_ns: 1e9 / per_sec,
        }
    }

    /// Start time of the next record.
    pub fn now_ns(&self) -> i64 {
        self.now_ns
    }

    fn client(&mut self, v6: bool) -> (IpAddr, Mac) {
        let c = self.rng.below(CLIENTS);
        let ip = if v6 {
            IpAddr::V6(Ipv6Addr::new(
                0x2001,
                0xdb8,
                0,
                1,
                0,
                0,
                0,
                c as u16 + 0x100,
            ))
        } else {
            IpAddr::V4(Ipv4Addr::new(10, 0, (c / 200) as u8, (c % 200) as u8 + 20))
        };
        (ip, Mac([0x3c, 0x22, 0xfb, 0x00, (c >> 8) as u8, c as u8]))
    }

    fn remote(&mut self, v6: bool) -> IpAddr {
        let u = self.rng.unit();
        let h = ((u * u) * REMOTES as f64) as u64;
        let mixed = h.wrapping_mul(2_654_435_761) as u32;
        if v6 {
            IpAddr::V6(Ipv6Addr::new(
                0x2a00,
                (mixed >> 16) as u16 & 0x0fff,
                mixed as u16,
                0,
                0,
                0,
                0,
                (h % 97) as u16 + 1,
            ))
        } else {
            IpAddr::V4(Ipv4Addr::from(
                mixed % 0xdf00_0000 + 0x0100_0000, // stay within unicast space
            ))
        }
    }

    /// The next record; start times increase.
    pub fn next_record(&mut self) -> FlowRecord {
        let r = &mut self.rng;
        let gap = -self.mean_gap_ns * (1.0 - r.unit()).ln();
        self.now_ns += gap.max(1.0) as i64;
        let v6 = r.chance(0.2);
        let on_lan = r.chance(0.9);
        let pick = r.unit();
        let (proto, dst_port): (u8, u16) = if pick < 0.70 {
            let p = r.unit();
            let port = if p < 0.70 {
                443
            } else if p < 0.85 {
                80
            } else {
                [22, 25, 587, 993, 995, 8080, 8443, 5222, 3478, 853][r.below(10) as usize]
            };
            (6, port)
        } else if pick < 0.95 {
            let p = r.unit();
            (
                17,
                if p < 0.6 {
                    53
                } else if p < 0.9 {
                    443
                } else {
                    123
                },
            )
        } else {
            (if v6 { 58 } else { 1 }, 0)
        };
        let icmp = proto == 1 || proto == 58;
        let src_port = if icmp {
            if v6 {
                128
            } else {
                8
            }
        } else {
            32768 + self.rng.below(28232) as u16
        };
        let (client_ip, client_mac) = self.client(v6);
        let remote_ip = self.remote(v6);
        let r = &mut self.rng;
        let duration_ns = (1e6 * (3e5f64).powf(r.unit())) as i64;
        let packets = if dst_port == 53 || icmp {
            2
        } else {
            1 + (10_000f64.powf(r.unit() * r.unit())) as u64
        };
        let per_packet = 60 + r.below(1441);
        let bytes = packets * per_packet;
        let resp_packets = packets / 2 + r.below(packets / 2 + 1) / 2;
        let resp_bytes = resp_packets * (60 + r.below(1441));
        let tcp_flags = if proto == 6 {
            [0x1b, 0x1b, 0x1b, 0x12, 0x16, 0x1f, 0x02][r.below(7) as usize]
        } else {
            0
        };
        let e = r.unit();
        let end_reason = if proto != 6 {
            EndReason::Idle
        } else if e < 0.60 {
            EndReason::Fin
        } else if e < 0.88 {
            EndReason::Idle
        } else if e < 0.95 {
            EndReason::Rst
        } else {
            EndReason::Active
        };
        // About 1 % of flows were blocked by a list: a `drop` record naming the rule.
        let blocked = r.chance(0.01);
        let (end_reason, dropped, rule) = if blocked {
            let line = 1 + r.below(5000);
            (
                EndReason::Drop,
                packets,
                Some(format!("/etc/xdp-audit/block.list:{line}")),
            )
        } else {
            (end_reason, 0, None)
        };
        let vlan = r.chance(0.1).then_some(10);
        let (iface, ifindex) = if on_lan { ("lan0", 3) } else { ("wan0", 2) };
        let (src_ip, dst_ip) = (client_ip, remote_ip);
        FlowRecord {
            time_start_ns: self.now_ns,
            time_end_ns: self.now_ns + duration_ns,
            iface: iface.to_owned(),
            ifindex,
            vlan,
            vlan_inner: None,
            src_mac: client_mac,
            dst_mac: GATEWAY_MAC,
            proto,
            src_ip,
            src_port,
            dst_ip,
            dst_port,
            packets,
            bytes,
            resp_packets,
            resp_bytes,
            tcp_flags,
            dropped,
            rule,
            end_reason,
            attr: crate::record::Attribution::default(),
        }
    }
}

/// The segment row order computed the plain way, as the reference tests hold the sealer's
/// to: source address as a big-endian number, then start time, then input order.
pub fn brute_force_order(recs: &[FlowRecord]) -> Vec<FlowRecord> {
    let mut keyed: Vec<(u128, i64, usize)> = recs
        .iter()
        .enumerate()
        .map(|(i, r)| {
            (
                u128::from_be_bytes(crate::store::address::ip_to_column(r.src_ip)),
                r.time_start_ns,
                i,
            )
        })
        .collect();
    keyed.sort();
    keyed.into_iter().map(|(_, _, i)| recs[i].clone()).collect()
}

/// A clock tests set by hand; clones share the time.
#[derive(Clone, Debug, Default)]
pub struct FakeClock(std::sync::Arc<std::sync::atomic::AtomicI64>);

impl FakeClock {
    /// A clock showing `now_ns`.
    pub fn new(now_ns: i64) -> Self {
        Self(std::sync::Arc::new(std::sync::atomic::AtomicI64::new(
            now_ns,
        )))
    }

    /// Sets the time.
    pub fn set(&self, now_ns: i64) {
        self.0.store(now_ns, std::sync::atomic::Ordering::SeqCst);
    }

    /// Moves the time forward.
    pub fn advance(&self, ns: i64) {
        self.0.fetch_add(ns, std::sync::atomic::Ordering::SeqCst);
    }
}

impl super::StoreClock for FakeClock {
    fn now_ns(&self) -> i64 {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// A journal holding `recs` as the writer lays it out (header with id `id`, one frame per
/// record), and the offset of each frame.
pub fn journal_bytes(id: u64, recs: &[FlowRecord]) -> (Vec<u8>, Vec<usize>) {
    let mut buf = crate::store::journal::frame::header(id).to_vec();
    let mut starts = Vec::with_capacity(recs.len());
    for r in recs {
        starts.push(buf.len());
        crate::store::journal::encode_frame(r, &mut buf);
    }
    (buf, starts)
}

/// What a scan of damaged journal bytes must find, computed the plain way: `bad` is `good`
/// (frames at `starts`) after damage; a frame survives when its bytes are intact, and every
/// byte after the header outside a surviving frame is skipped. Returns the indexes of the
/// surviving frames and the skipped stretches as `(offset, length)`, in file order.
pub fn intact_frames(good: &[u8], bad: &[u8], starts: &[usize]) -> (Vec<usize>, Vec<(u64, u64)>) {
    let mut kept = Vec::new();
    let mut stretches = Vec::new();
    let mut gap_from = crate::store::journal::HEADER_LEN as usize;
    for (i, &s) in starts.iter().enumerate() {
        let e = starts.get(i + 1).copied().unwrap_or(good.len());
        if bad.get(s..e) == Some(&good[s..e]) {
            if gap_from < s {
                stretches.push((gap_from as u64, (s - gap_from) as u64));
            }
            kept.push(i);
            gap_from = e;
        }
    }
    if gap_from < bad.len() {
        stretches.push((gap_from as u64, (bad.len() - gap_from) as u64));
    }
    (kept, stretches)
}
