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
//!
//! The attribution (what the enrich stage adds; drawn from a random stream of its own, so
//! [`TrafficGen::without_attribution`] gives the same records without it): each client holds
//! an account for a lease of 6 to 48 hours at a time, drawn from 100,000 accounts (`C-000042`)
//! with a skewed popularity (squared uniform); 4 % of client leases have no account. 80 % of
//! clients send a host name (`laptop-2a`, fixed per client). Every IPv4 flow the gateway
//! passed is NATed (a dropped flow never reaches conntrack) to one of 4 public addresses
//! (`203.0.113.1-4`, fixed per client) as Linux MASQUERADE does it: the outside port is the
//! flow's own source port (ICMP: its echo id, random) unless that outside tuple (address,
//! protocol, port, remote address and port) is held by a flow still open, and then another
//! port of 1024-65535 at random (`nf_nat_used_tuple` then `nf_nat_l4proto_unique_tuple` in
//! the kernel; the lab's conntrack oracle in `tests/tests/attribution.rs` shows ports kept).
//! The clash rate follows from the mix (a few in a million: two clients of one address
//! would need the same ephemeral port toward the same remote service at the same time).
//! A client's next name is one of the 16 it reached last (70 %), or a fresh draw
//! from a pool of 50,000 sites with a Zipf-like popularity (rank k with probability ~1/k),
//! each with a main name and three service names: TLS 443 from the SNI (92 %, ECH 3 %,
//! DNS answer 3 %), HTTP 80 from the Host (90 %), QUIC from its SNI (90 %), other flows from
//! the client's DNS answers (50 %). DNS flows carry their question (same pool; A 55 %, AAAA
//! 35 %, HTTPS 8 %, TXT 2 %) and no domain. 0.2 % of records are NAT-only (`nat`): a
//! conntrack session of the gateway itself or of a client on an interface not audited.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::enrich::names::NameSource;
use crate::record::{Attribution, EndReason, FlowRecord, Mac};

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
    /// The attribution's own stream; `None`: records without attribution.
    attr: Option<Rng>,
    seed: u64,
    /// Per client: names reached so far (count) and the last 16 of them (name ids).
    recent: Vec<(usize, [u64; 16])>,
    /// NAT outside tuples of flows still open, with their end (see [`TrafficGen::outside_port`]).
    open: HashMap<OutsideTuple, i64>,
    /// Size of `open` at which the ended sessions are dropped from it.
    prune_at: usize,
}

/// A NAT session's outside tuple as conntrack keeps it unique: outside address (its last
/// byte), protocol, outside port, remote address, remote port.
type OutsideTuple = (u8, u8, u16, IpAddr, u16);

const CLIENTS: u64 = 250;
const REMOTES: u64 = 20_000;
const GATEWAY_MAC: Mac = Mac([0x02, 0x00, 0x5e, 0x10, 0x00, 0x01]);
/// Accounts a client's lease may belong to.
pub const ACCOUNTS: u64 = 100_000;
/// Sites of the domain pool.
pub const SITES: u64 = 50_000;
/// The NAT's public addresses: `203.0.113.1` to `203.0.113.NAT_ADDRESSES`.
pub const NAT_ADDRESSES: u8 = 4;
const SUBDOMAINS: [&str; 8] = ["api", "cdn", "static", "img", "m", "login", "edge", "mail"];
const SYLLABLES: [&str; 16] = [
    "ka", "lo", "mi", "ne", "ru", "sa", "to", "vi", "bel", "dor", "fin", "gal", "hox", "jun",
    "max", "pel",
];
const TLDS: [&str; 6] = ["com", "net", "org", "de", "io", "co.uk"];

/// The account `C-<6 digits>` of account number `n`.
pub fn account_name(n: u64) -> String {
    format!("C-{n:06}")
}

/// The registrable name of site `rank` (0 is the most popular): syllables and a TLD, 6 to 20
/// bytes.
pub fn site_name(rank: u64) -> String {
    let mut name = String::new();
    let mut n = rank;
    loop {
        name.push_str(SYLLABLES[(n % 16) as usize]);
        n /= 16;
        if n == 0 {
            break;
        }
    }
    format!("{name}.{}", TLDS[(rank % 6) as usize])
}

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
            attr: Some(Rng::new(seed ^ 0x5a5a_a5a5_0f0f_f0f0)),
            seed,
            recent: vec![(0, [0; 16]); CLIENTS as usize],
            open: HashMap::new(),
            prune_at: 1 << 16,
        }
    }

    /// Stream `k` of the same traffic: the traffic and attribution draws re-seeded with `k`,
    /// the accounts' leases (a function of the seed, the client and the hour) kept. The bench
    /// store generates each day as its own stream (from the day's start), so days are
    /// generated in parallel; what a stream does not carry over from the day before (a
    /// client's recent names, the NAT tuples of flows open across midnight) starts afresh.
    pub fn stream(mut self, k: u64) -> Self {
        let mix = k.wrapping_add(1).wrapping_mul(0xd6e8_feb8_6659_fd93);
        self.rng = Rng::new(self.seed ^ mix);
        if self.attr.is_some() {
            self.attr = Some(Rng::new(self.seed ^ mix ^ 0x5a5a_a5a5_0f0f_f0f0));
        }
        self
    }

    /// The same records without attribution and without NAT-only records: the stream of the
    /// generator before the attribution existed (segments and journals of earlier formats).
    pub fn without_attribution(mut self) -> Self {
        self.attr = None;
        self
    }

    /// Start time of the next record.
    pub fn now_ns(&self) -> i64 {
        self.now_ns
    }

    fn client(&mut self, v6: bool) -> (IpAddr, Mac, u64) {
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
        (
            ip,
            Mac([0x3c, 0x22, 0xfb, 0x00, (c >> 8) as u8, c as u8]),
            c,
        )
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

    /// The next record; start times do not decrease.
    pub fn next_record(&mut self) -> FlowRecord {
        let Some(mut a) = self.attr.take() else {
            return self.base_record().0;
        };
        let out = if a.chance(0.002) {
            self.nat_only(&mut a)
        } else {
            let (mut r, client) = self.base_record();
            self.attribute(&mut a, &mut r, client);
            r
        };
        self.attr = Some(a);
        out
    }

    /// A record as the generator wrote it before the attribution, and its client's number.
    fn base_record(&mut self) -> (FlowRecord, u64) {
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
        let (client_ip, client_mac, client) = self.client(v6);
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
        let record = FlowRecord {
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
            attr: Attribution::default(),
        };
        (record, client)
    }

    /// The account client `c` holds at `t_ns`: leases of 6 to 48 hours, a fresh draw each.
    fn user_of(&self, c: u64, t_ns: i64) -> Option<String> {
        let hour = t_ns.div_euclid(3_600_000_000_000) as u64;
        let mut k = Rng::new(self.seed ^ c.wrapping_mul(0x9e37_79b9));
        let lease = 6 + k.below(43);
        let epoch = (hour + k.below(lease)) / lease;
        let mut k = Rng::new(self.seed ^ c.wrapping_mul(0x9e37_79b9) ^ epoch.rotate_left(32));
        if k.chance(0.04) {
            return None;
        }
        let u = k.unit();
        Some(account_name((u * u * ACCOUNTS as f64) as u64))
    }

    /// A name client `c` reaches: 70 % of the time one of the 16 it reached last (a page load
    /// opens many flows to a few names, and background apps keep calling the same ones), else
    /// a fresh draw from the pool: a Zipf-like site rank, its main name (60 %) or one of three
    /// service names (20, 12, 8 %).
    fn domain(&mut self, a: &mut Rng, c: u64) -> String {
        let (next, recent) = &mut self.recent[c as usize];
        let id = if a.chance(0.7) && *next > 0 {
            recent[a.below((*next).min(16) as u64) as usize]
        } else {
            let rank = ((SITES as f64).powf(a.unit()) as u64).clamp(1, SITES) - 1;
            let x = a.unit();
            let variant = if x < 0.6 {
                0
            } else if x < 0.8 {
                1
            } else if x < 0.92 {
                2
            } else {
                3
            };
            let id = rank * 4 + variant;
            recent[*next % 16] = id;
            *next += 1;
            id
        };
        let (rank, variant) = (id / 4, id % 4);
        let site = site_name(rank);
        match variant {
            0 if rank % 2 == 1 => site,
            0 => format!("www.{site}"),
            v => format!("{}.{site}", SUBDOMAINS[((rank + v) % 8) as usize]),
        }
    }

    fn attribute(&mut self, a: &mut Rng, r: &mut FlowRecord, c: u64) {
        let kinds = ["laptop", "android", "iphone", "desktop", "tv", "printer"];
        let mut at = Attribution {
            user: self.user_of(c, r.time_start_ns),
            hostname: (!c.is_multiple_of(5)).then(|| format!("{}-{c:x}", kinds[(c % 6) as usize])),
            ..Attribution::default()
        };
        if r.src_ip.is_ipv4() && r.end_reason != EndReason::Drop {
            let n = (c % u64::from(NAT_ADDRESSES)) as u8 + 1;
            at.nat_ip = Some(IpAddr::V4(Ipv4Addr::new(203, 0, 113, n)));
            at.nat_port = Some(self.outside_port(a, r, n));
        }
        let (source, p) = match (r.proto, r.dst_port) {
            (6, 443) => {
                let x = a.unit();
                let s = if x < 0.92 {
                    Some(NameSource::Sni)
                } else if x < 0.95 {
                    Some(NameSource::Ech)
                } else if x < 0.98 {
                    Some(NameSource::Dns)
                } else {
                    None
                };
                (s, 1.0)
            }
            (6, 80) => (Some(NameSource::HttpHost), 0.9),
            (17, 443) => (Some(NameSource::QuicSni), 0.9),
            (17, 53) => {
                at.dns_qname = Some(self.domain(a, c));
                let x = a.unit();
                at.dns_qtype = Some(if x < 0.55 {
                    1
                } else if x < 0.90 {
                    28
                } else if x < 0.98 {
                    65
                } else {
                    16
                });
                (None, 0.0)
            }
            _ => (Some(NameSource::Dns), 0.5),
        };
        if let Some(source) = source.filter(|_| a.chance(p)) {
            at.domain = Some(self.domain(a, c));
            at.domain_source = Some(source);
        }
        r.attr = at;
    }

    /// The outside port MASQUERADE gives flow `r` on outside address `203.0.113.n`: its own
    /// source port (ICMP: a random echo id) unless a flow still open holds that outside
    /// tuple, then a random other port (see the module doc).
    fn outside_port(&mut self, a: &mut Rng, r: &FlowRecord, n: u8) -> u16 {
        let icmp = r.proto == 1;
        let mut port = if icmp {
            a.below(65536) as u16
        } else {
            r.src_port
        };
        let tuple = |p| (n, r.proto, p, r.dst_ip, r.dst_port);
        while self
            .open
            .get(&tuple(port))
            .is_some_and(|&end| end > r.time_start_ns)
        {
            port = 1024 + a.below(65536 - 1024) as u16;
        }
        if self.open.len() >= self.prune_at {
            let now = r.time_start_ns;
            self.open.retain(|_, end| *end > now);
            self.prune_at = (2 * self.open.len()).max(1 << 16);
        }
        self.open.insert(tuple(port), r.time_end_ns);
        port
    }

    /// A NAT-only record: a conntrack session the program saw no flow of, from the gateway
    /// itself (no account) or from a client on an interface not audited.
    fn nat_only(&self, a: &mut Rng) -> FlowRecord {
        let c = a.below(CLIENTS);
        let own = a.chance(0.5);
        let (src_ip, user) = if own {
            (IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), None)
        } else {
            (
                IpAddr::V4(Ipv4Addr::new(10, 0, (c / 200) as u8, (c % 200) as u8 + 20)),
                self.user_of(c, self.now_ns),
            )
        };
        let udp = a.chance(0.6);
        let src_port = 32768 + a.below(28232) as u16;
        FlowRecord {
            time_start_ns: self.now_ns,
            time_end_ns: self.now_ns + (1e9 * (1.0 + 120.0 * a.unit())) as i64,
            iface: "wan0".to_owned(),
            ifindex: 2,
            vlan: None,
            vlan_inner: None,
            src_mac: Mac::default(),
            dst_mac: Mac::default(),
            proto: if udp { 17 } else { 6 },
            src_ip,
            src_port,
            dst_ip: IpAddr::V4(Ipv4Addr::from(
                a.next_u64() as u32 % 0xdf00_0000 + 0x0100_0000,
            )),
            dst_port: if udp { 123 } else { 443 },
            packets: 0,
            bytes: 0,
            resp_packets: 0,
            resp_bytes: 0,
            tcp_flags: 0,
            dropped: 0,
            rule: None,
            end_reason: EndReason::Nat,
            attr: Attribution {
                user,
                nat_ip: Some(IpAddr::V4(Ipv4Addr::new(
                    203,
                    0,
                    113,
                    (c % u64::from(NAT_ADDRESSES)) as u8 + 1,
                ))),
                // A session no flow was seen of keeps its source port like any other.
                nat_port: Some(src_port),
                ..Attribution::default()
            },
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
/// byte after the header outside a surviving frame is skipped (the header too when its magic
/// is damaged). Returns the indexes of the
/// surviving frames and the skipped stretches as `(offset, length)`, in file order.
pub fn intact_frames(good: &[u8], bad: &[u8], starts: &[usize]) -> (Vec<usize>, Vec<(u64, u64)>) {
    let mut kept = Vec::new();
    let mut stretches = Vec::new();
    use crate::store::journal::{HEADER_LEN, MAGIC};
    // A header whose magic is damaged is skipped with what follows it.
    let header = HEADER_LEN as usize;
    let magic_damaged = bad.len() >= header && bad[..MAGIC.len()] != good[..MAGIC.len()];
    let mut gap_from = if magic_damaged { 0 } else { header };
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
