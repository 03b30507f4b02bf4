//! DHCP packets seen on an audited interface -> bindings: for a server elsewhere (upstream or
//! behind a relay), whose ACKs arrive on an audited interface.
//!
//! DHCPv4 (UDP 67/68, decoded by `dhcproto`): an ACK binds `yiaddr` to the client's hardware
//! address for the lease time (option 51), with the host name from option 12, the client FQDN
//! (option 81), or the client's REQUEST seen before it; a RELEASE or DECLINE ends the client's
//! binding. Any LAN host can send a REQUEST naming another client, so a REQUEST is believed
//! only when its client sent it (Ethernet source = chaddr) or a relay did (giaddr set).
//!
//! DHCPv6 (UDP 546/547): a Reply binds each IA_NA address to the client DUID for its valid
//! lifetime, with the MAC from a DUID-LL/LLT, else the Reply's Ethernet destination (the
//! client, unless relayed), and the host name from the Client FQDN option (39); a Relay-Reply is
//! unwrapped; a client's Release ends its bindings.
//!
//! Anything else is counted and ignored. Bad payloads are counted by reason and never stop the
//! agent. `dhcproto` 0.15 panics on some option lengths (a Rapid Commit or Client FQDN of the
//! wrong size, a Status Code shorter than 2 bytes, a classless route prefix over 32: the fuzz
//! test below found them), so it is handed only the options read here, each checked for the
//! length it must have ([`keep_v4_options`], [`keep_v6_options`]); and it runs behind
//! `catch_unwind`, so a panic still hiding in it is a counted `decoder_panic`, not a dead
//! enrich stage.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use dhcproto::v4::{self, DhcpOption as V4Opt, MessageType as V4Type, OptionCode as V4Code};
use dhcproto::v6::{self, DhcpOption as V6Opt, MessageType as V6Type, OptionCode as V6Code};
use dhcproto::Decodable;

use crate::enrich::leases::bindings::{Bindings, Holder, Observation, Source};
use crate::enrich::leases::{clean_hostname, mac_from_duid};
use crate::enrich::Validity;
use crate::record::Mac;

const NS: i64 = 1_000_000_000;
/// The DHCPv4 magic cookie, at offset 236.
const MAGIC: [u8; 4] = [99, 130, 83, 99];
/// Fixed BOOTP header before the cookie.
const BOOTP_LEN: usize = 236;
/// DHCPv6 Client FQDN option (RFC 4704), which `dhcproto` leaves undecoded.
const V6_CLIENT_FQDN: u16 = 39;
/// DHCPv6 Relay Message option.
const V6_RELAY_MSG: u16 = 9;
/// Relay-Reply message type.
const V6_RELAY_REPL: u8 = 13;
/// Relay nesting followed at most (RFC 8415's HOP_COUNT_LIMIT).
const MAX_RELAY_DEPTH: usize = 32;
/// Clients whose REQUEST is remembered, waiting for their ACK, per table.
const MAX_PENDING: usize = 4096;
/// How long a REQUEST's host name waits for its ACK.
const PENDING_NS: i64 = 60 * NS;
/// How often a full table may let go of its expired entries: a scan of [`MAX_PENDING`]
/// entries on every REQUEST of a flood would cost far more than the REQUEST.
const PRUNE_EVERY_NS: u64 = 1_000_000_000;

/// What the last REQUEST of each client said, and when, until its ACK: at most
/// [`MAX_PENDING`] clients. A full table lets go of entries older than [`PENDING_NS`] at most
/// once every [`PRUNE_EVERY_NS`]; still full, it refuses new clients.
struct Waiting<V> {
    entries: HashMap<Mac, (V, i64)>,
    /// Packet time of the last prune.
    pruned_ns: i64,
}

impl<V> Default for Waiting<V> {
    fn default() -> Self {
        Waiting {
            entries: HashMap::new(),
            pruned_ns: i64::MIN,
        }
    }
}

impl<V> Waiting<V> {
    /// Notes that `mac` said `v` at `t_ns`; false if the table is full of live entries.
    fn insert(&mut self, mac: Mac, v: V, t_ns: i64) -> bool {
        if self.entries.len() >= MAX_PENDING && !self.entries.contains_key(&mac) {
            // Either way round: a clock stepped back must not stop pruning.
            if t_ns.abs_diff(self.pruned_ns) >= PRUNE_EVERY_NS {
                self.pruned_ns = t_ns;
                // An entry dated ahead of a clock stepped back goes too.
                self.entries
                    .retain(|_, (_, t)| t_ns.abs_diff(*t) < PENDING_NS.unsigned_abs());
            }
            if self.entries.len() >= MAX_PENDING {
                return false;
            }
        }
        self.entries.insert(mac, (v, t_ns));
        true
    }
}

/// One UDP payload on a DHCP port, with what the packet's headers said.
#[derive(Clone, Copy, Debug)]
pub struct DhcpPacket<'a> {
    /// The UDP payload.
    pub payload: &'a [u8],
    /// UDP source port.
    pub src_port: u16,
    /// UDP destination port.
    pub dst_port: u16,
    /// The sender's IP address (checked against trusted servers).
    pub src_ip: IpAddr,
    /// The Ethernet destination of a packet to a link-local address (a DHCPv6 Reply's
    /// client on its link); `None` for one routed, whose frame goes to the gateway.
    pub eth_dst: Option<Mac>,
    /// When it was seen, Unix ns.
    pub t_ns: i64,
}

/// Why a payload taught nothing, counted per reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DhcpCounters {
    /// DHCPv4 ACKs learned from.
    pub v4_ack: u64,
    /// DHCPv4 REQUESTs whose host name was kept.
    pub v4_request: u64,
    /// DHCPv4 RELEASEs and DECLINEs applied.
    pub v4_release: u64,
    /// DHCPv6 Replies learned from (relayed ones included).
    pub v6_reply: u64,
    /// DHCPv6 Releases and Declines applied.
    pub v6_release: u64,
    /// Well-formed messages of other types (DISCOVER, OFFER, Solicit...).
    pub ignored: u64,
    /// Replies from a sender not among the trusted servers.
    pub untrusted: u64,
    /// Shorter than the message's fixed part, or an option running past the end.
    pub truncated: u64,
    /// Not DHCP: wrong magic cookie or BOOTP op, not on a DHCP port pair.
    pub not_dhcp: u64,
    /// The decoder refused it (bad option length, bad text, bad name).
    pub malformed: u64,
    /// No message type option.
    pub no_message_type: u64,
    /// An ACK without an address, a usable hardware address or a lease time.
    pub incomplete: u64,
    /// The decoder panicked on it (a bug in the decoder; the packet is dropped).
    pub decoder_panic: u64,
    /// REQUESTs, RELEASEs and DECLINEs not believed: not relayed (giaddr unset) and not sent
    /// from their chaddr, or from an unknown source. A LAN host naming another client.
    pub spoofed_requests: u64,
    /// Not a reason of its own (each also counts in `v4_request`): REQUESTs whose host name
    /// or address was not kept, its table full of live entries (a REQUEST flood).
    pub pending_full: u64,
}

/// Learns bindings from DHCP packets; keeps what a REQUEST said until its ACK.
#[derive(Default)]
pub struct DhcpLearner {
    counters: DhcpCounters,
    trusted: Option<Vec<IpAddr>>,
    pending: Waiting<Arc<str>>,
    /// The address each client last asked for in a REQUEST, and when: a lease file that
    /// states no start (dnsmasq's) is only read later, and its binding starts at the
    /// REQUEST instead of at the read (see [`DhcpLearner::requested_at`]).
    requested: Waiting<Ipv4Addr>,
}

enum Bad {
    Truncated,
    NotDhcp,
    Malformed,
    NoMessageType,
    Incomplete,
    Panic,
}

fn decode_error(e: &dhcproto::error::DecodeError) -> Bad {
    match e {
        dhcproto::error::DecodeError::NotEnoughBytes => Bad::Truncated,
        _ => Bad::Malformed,
    }
}

/// Runs a decoder, turning a panic into a counted reason.
fn guarded<T>(f: impl FnOnce() -> Result<T, dhcproto::error::DecodeError>) -> Result<T, Bad> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(decode_error(&e)),
        Err(_) => Err(Bad::Panic),
    }
}

impl DhcpLearner {
    /// A learner that takes replies from any sender.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes replies (ACKs, Replies) only from these senders: a client on the LAN can send
    /// an ACK too, and would otherwise claim any address.
    pub fn trusting(servers: Vec<IpAddr>) -> Self {
        DhcpLearner {
            trusted: Some(servers),
            ..Self::default()
        }
    }

    /// The counters.
    pub fn counters(&self) -> DhcpCounters {
        self.counters
    }

    /// Learns what `pkt` says into `bindings`, its Ethernet source unknown: a REQUEST is then
    /// believed only when relayed (see [`DhcpLearner::learn_sent`]).
    pub fn learn(&mut self, pkt: &DhcpPacket<'_>, bindings: &mut Bindings) {
        self.learn_from(pkt, None, bindings);
    }

    /// Learns what `pkt`, sent from Ethernet address `eth_src`, says into `bindings`: a
    /// REQUEST's host name and address are taken when `eth_src` is its chaddr (the client
    /// sent it) or a trusted relay sent it (its giaddr set, from the relay's own MAC).
    pub fn learn_sent(&mut self, pkt: &DhcpPacket<'_>, eth_src: Mac, bindings: &mut Bindings) {
        self.learn_from(pkt, Some(eth_src), bindings);
    }

    fn learn_from(&mut self, pkt: &DhcpPacket<'_>, eth_src: Option<Mac>, bindings: &mut Bindings) {
        let result = match (pkt.src_port, pkt.dst_port) {
            (67 | 68, 67 | 68) => self.learn_v4(pkt, eth_src, bindings),
            (546 | 547, 546 | 547) => self.learn_v6(pkt, bindings),
            _ => Err(Bad::NotDhcp),
        };
        let c = &mut self.counters;
        match result {
            Ok(()) => {}
            Err(Bad::Truncated) => c.truncated += 1,
            Err(Bad::NotDhcp) => c.not_dhcp += 1,
            Err(Bad::Malformed) => c.malformed += 1,
            Err(Bad::NoMessageType) => c.no_message_type += 1,
            Err(Bad::Incomplete) => c.incomplete += 1,
            Err(Bad::Panic) => c.decoder_panic += 1,
        }
    }

    fn trusted(&self, src: IpAddr) -> bool {
        self.trusted.as_ref().is_none_or(|t| t.contains(&src))
    }

    fn learn_v4(
        &mut self,
        pkt: &DhcpPacket<'_>,
        eth_src: Option<Mac>,
        bindings: &mut Bindings,
    ) -> Result<(), Bad> {
        let p = pkt.payload;
        if p.len() < BOOTP_LEN + MAGIC.len() {
            return Err(Bad::Truncated);
        }
        if p[BOOTP_LEN..BOOTP_LEN + 4] != MAGIC || !matches!(p[0], 1 | 2) {
            return Err(Bad::NotDhcp);
        }
        let kept = keep_v4_options(p)?;
        let msg = guarded(|| v4::Message::decode(&mut v4::Decoder::new(&kept)))?;
        // The hardware address straight from the header: dhcproto's `chaddr()` slices by the
        // untrusted `hlen` and would panic past 16.
        let mac = (p[1] == 1 && p[2] == 6)
            .then(|| <[u8; 6]>::try_from(&p[28..34]).ok().map(Mac))
            .flatten();
        let opts = msg.opts();
        let kind = opts.msg_type().ok_or(Bad::NoMessageType)?;
        let holder = |mac: Mac| Holder {
            mac: Some(mac),
            client_id: match opts.get(V4Code::ClientIdentifier) {
                Some(V4Opt::ClientIdentifier(id)) => Some(Arc::from(id.as_slice())),
                _ => None,
            },
        };
        match kind {
            V4Type::Ack => {
                if !self.trusted(pkt.src_ip) {
                    self.counters.untrusted += 1;
                    return Ok(());
                }
                let ip = msg.yiaddr();
                let lease = match opts.get(V4Code::AddressLeaseTime) {
                    Some(V4Opt::AddressLeaseTime(s)) => Some(*s),
                    _ => None,
                };
                let (Some(mac), Some(lease)) = (mac, lease) else {
                    return Err(Bad::Incomplete);
                };
                if ip == Ipv4Addr::UNSPECIFIED {
                    return Err(Bad::Incomplete); // an ACK to an INFORM: no lease
                }
                let hostname = v4_hostname(opts).or_else(|| self.take_pending(mac, pkt.t_ns));
                let to =
                    (lease != u32::MAX).then(|| pkt.t_ns.saturating_add(i64::from(lease) * NS));
                bindings.observe(
                    Observation {
                        ip: IpAddr::V4(ip),
                        holder: holder(mac),
                        hostname,
                        valid: Validity {
                            from: Some(pkt.t_ns),
                            to,
                        },
                        source: Source::Packet,
                    },
                    pkt.t_ns,
                );
                self.counters.v4_ack += 1;
            }
            V4Type::Request => {
                let Some(mac) = mac else {
                    self.counters.ignored += 1;
                    return Ok(());
                };
                // Option 50 while selecting or rebooting, the client's own address when
                // renewing or rebinding.
                let asked = match opts.get(V4Code::RequestedIpAddress) {
                    Some(V4Opt::RequestedIpAddress(a)) => *a,
                    _ => msg.ciaddr(),
                };
                let named = v4_hostname(opts);
                if asked == Ipv4Addr::UNSPECIFIED && named.is_none() {
                    self.counters.ignored += 1;
                    return Ok(());
                }
                if !self.believed_from_client(&msg, pkt, eth_src, mac) {
                    self.counters.spoofed_requests += 1;
                    return Ok(());
                }
                let mut full = false;
                if asked != Ipv4Addr::UNSPECIFIED {
                    full |= !self.requested.insert(mac, asked, pkt.t_ns);
                }
                if let Some(name) = named {
                    full |= !self.pending.insert(mac, name, pkt.t_ns);
                }
                self.counters.pending_full += u64::from(full);
                self.counters.v4_request += 1;
            }
            V4Type::Release | V4Type::Decline => {
                let ip = match (kind, opts.get(V4Code::RequestedIpAddress)) {
                    (V4Type::Decline, Some(V4Opt::RequestedIpAddress(a))) => *a,
                    _ => msg.ciaddr(),
                };
                let Some(mac) = mac.filter(|_| ip != Ipv4Addr::UNSPECIFIED) else {
                    return Err(Bad::Incomplete);
                };
                // Believed as a REQUEST is: any LAN host could otherwise end another's
                // binding (a server ignores a forged one, so nothing would bind it again
                // until its renewal).
                if !self.believed_from_client(&msg, pkt, eth_src, mac) {
                    self.counters.spoofed_requests += 1;
                    return Ok(());
                }
                bindings.end(IpAddr::V4(ip), &holder(mac), pkt.t_ns);
                self.counters.v4_release += 1;
            }
            _ => self.counters.ignored += 1,
        }
        Ok(())
    }

    /// Whether a client's message about `mac` (a REQUEST, RELEASE or DECLINE) is believed:
    /// sent from `mac` itself, or relayed by a sender trusted as replies are. Any host can set
    /// giaddr (and send from port 67, from its own address), so a relay is named with
    /// `--dhcp-server` (anyone counts when none is named and no lease file is read).
    fn believed_from_client(
        &self,
        msg: &v4::Message,
        pkt: &DhcpPacket<'_>,
        eth_src: Option<Mac>,
        mac: Mac,
    ) -> bool {
        let relayed = msg.giaddr() != Ipv4Addr::UNSPECIFIED && self.trusted(pkt.src_ip);
        relayed || eth_src == Some(mac)
    }

    /// When `mac` asked for `ip` in a REQUEST seen within the last minute before `now_ns`.
    pub fn requested_at(&self, mac: Mac, ip: IpAddr, now_ns: i64) -> Option<i64> {
        let (asked, t) = *self.requested.entries.get(&mac)?;
        (IpAddr::V4(asked) == ip && now_ns - t < PENDING_NS && t <= now_ns).then_some(t)
    }

    fn take_pending(&mut self, mac: Mac, t_ns: i64) -> Option<Arc<str>> {
        self.pending
            .entries
            .remove(&mac)
            .filter(|(_, t)| t_ns - *t < PENDING_NS)
            .map(|(n, _)| n)
    }

    fn learn_v6(&mut self, pkt: &DhcpPacket<'_>, bindings: &mut Bindings) -> Result<(), Bad> {
        let (payload, relayed) = unwrap_relay(pkt.payload)?;
        let kept = keep_v6_options(payload)?;
        let msg = guarded(|| v6::Message::decode(&mut v6::Decoder::new(&kept)))?;
        let opts = msg.opts();
        let duid = match opts.get(V6Code::ClientId) {
            Some(V6Opt::ClientId(d)) => Some(d.as_slice()),
            _ => None,
        };
        match msg.msg_type() {
            V6Type::Reply => {
                if !self.trusted(pkt.src_ip) {
                    self.counters.untrusted += 1;
                    return Ok(());
                }
                let duid = duid.ok_or(Bad::Incomplete)?;
                // The frame's destination is the client's own MAC on its link; a DUID-LLT
                // keeps the MAC it was made with (Windows reuses it across cards, a cloned
                // image across machines): it speaks only where the frame cannot (relayed).
                let link = pkt.eth_dst.filter(|m| !relayed && m.0[0] & 1 == 0);
                let mac = link.or_else(|| mac_from_duid(duid));
                let holder = Holder {
                    mac,
                    client_id: Some(Arc::from(duid)),
                };
                let hostname = v6_fqdn(opts);
                for (addr, valid_life) in ia_na_addresses(opts) {
                    let ip = IpAddr::V6(addr);
                    if valid_life == 0 {
                        bindings.end(ip, &holder, pkt.t_ns); // a Reply that withdraws it
                        continue;
                    }
                    let to = (valid_life != u32::MAX)
                        .then(|| pkt.t_ns.saturating_add(i64::from(valid_life) * NS));
                    bindings.observe(
                        Observation {
                            ip,
                            holder: holder.clone(),
                            hostname: hostname.clone(),
                            valid: Validity {
                                from: Some(pkt.t_ns),
                                to,
                            },
                            source: Source::Packet,
                        },
                        pkt.t_ns,
                    );
                }
                self.counters.v6_reply += 1;
            }
            V6Type::Release | V6Type::Decline => {
                let duid = duid.ok_or(Bad::Incomplete)?;
                let holder = Holder {
                    mac: mac_from_duid(duid),
                    client_id: Some(Arc::from(duid)),
                };
                for (addr, _) in ia_na_addresses(opts) {
                    bindings.end(IpAddr::V6(addr), &holder, pkt.t_ns);
                }
                self.counters.v6_release += 1;
            }
            _ => self.counters.ignored += 1,
        }
        Ok(())
    }
}

/// Host name from option 12, else the domain of the client FQDN (option 81).
fn v4_hostname(opts: &v4::DhcpOptions) -> Option<Arc<str>> {
    if let Some(V4Opt::Hostname(h)) = opts.get(V4Code::Hostname) {
        if let Some(h) = clean_hostname(h) {
            return Some(h);
        }
    }
    match opts.get(V4Code::ClientFQDN) {
        Some(V4Opt::ClientFQDN(f)) => clean_hostname(&f.domain().to_ascii()),
        _ => None,
    }
}

/// Every IA_NA address of a message and its valid lifetime.
fn ia_na_addresses(opts: &v6::DhcpOptions) -> Vec<(std::net::Ipv6Addr, u32)> {
    opts.iter()
        .filter_map(|o| match o {
            V6Opt::IANA(ia) => Some(ia),
            _ => None,
        })
        .flat_map(|ia| ia.opts.iter())
        .filter_map(|o| match o {
            V6Opt::IAAddr(a) => Some((a.addr, a.valid_life)),
            _ => None,
        })
        .collect()
}

/// The Client FQDN option (39): a flags byte, then a name in DNS wire form (possibly partial,
/// without the final empty label).
fn v6_fqdn(opts: &v6::DhcpOptions) -> Option<Arc<str>> {
    let data = opts.iter().find_map(|o| match o {
        V6Opt::Unknown(u) if u16::from(u.code()) == V6_CLIENT_FQDN => Some(u.data()),
        _ => None,
    })?;
    let mut wire = data.get(1..)?;
    let mut name = String::new();
    while let Some((&len, rest)) = wire.split_first() {
        if len == 0 {
            break;
        }
        let label = rest.get(..usize::from(len)).filter(|_| len <= 63)?;
        if !label.iter().all(|b| b.is_ascii_graphic()) {
            return None;
        }
        if !name.is_empty() {
            name.push('.');
        }
        name.extend(label.iter().map(|&b| char::from(b)));
        wire = &rest[usize::from(len)..];
    }
    clean_hostname(&name)
}

/// The DHCPv4 message with only the options this module reads, each of a length `dhcproto`
/// decodes without panicking (see the module docs), host names last; an option running past
/// the end is `Truncated`, a used option of the wrong length `Malformed`.
fn keep_v4_options(p: &[u8]) -> Result<Vec<u8>, Bad> {
    let header = BOOTP_LEN + MAGIC.len();
    let mut out = p.get(..header).ok_or(Bad::Truncated)?.to_vec();
    let mut names = Vec::new();
    let mut opts = &p[header..];
    while let Some((&code, rest)) = opts.split_first() {
        match code {
            0 => {
                opts = rest;
                continue;
            }
            255 => break,
            _ => {}
        }
        let (&len, rest) = rest.split_first().ok_or(Bad::Truncated)?;
        let data = rest.get(..usize::from(len)).ok_or(Bad::Truncated)?;
        opts = &rest[usize::from(len)..];
        let fits = match code {
            53 => len == 1,           // message type
            50 | 51 | 54 => len == 4, // requested address, lease time, server id
            61 => len >= 1,           // client id
            12 | 81 => {
                // Host name, client FQDN (flags, two rcodes, name): client text, which may
                // not decode; `dhcproto` stops at the first option that does not, so these
                // go last, where one cannot hide the lease time.
                if code == 12 || len >= 3 {
                    names.extend([code, len]);
                    names.extend_from_slice(data);
                }
                continue;
            }
            _ => continue, // not read here: not handed on
        };
        if !fits {
            return Err(Bad::Malformed);
        }
        out.extend([code, len]);
        out.extend_from_slice(data);
    }
    out.extend(names);
    out.push(255);
    Ok(out)
}

/// Splits DHCPv6 options: `(code, data)` pairs, or `Truncated` when one runs past the end.
fn v6_options(mut opts: &[u8]) -> Result<Vec<(u16, &[u8])>, Bad> {
    let mut out = Vec::new();
    while !opts.is_empty() {
        let head = opts.get(..4).ok_or(Bad::Truncated)?;
        let code = u16::from_be_bytes([head[0], head[1]]);
        let len = usize::from(u16::from_be_bytes([head[2], head[3]]));
        out.push((code, opts.get(4..4 + len).ok_or(Bad::Truncated)?));
        opts = &opts[4 + len..];
    }
    Ok(out)
}

fn push_v6_option(out: &mut Vec<u8>, code: u16, data: &[u8]) -> Result<(), Bad> {
    out.extend(code.to_be_bytes());
    out.extend(
        u16::try_from(data.len())
            .map_err(|_| Bad::Malformed)?
            .to_be_bytes(),
    );
    out.extend_from_slice(data);
    Ok(())
}

/// The DHCPv6 message with only the options read here: Client Identifier, Client FQDN, and
/// IA_NA holding only its IA Addresses (without their sub-options).
fn keep_v6_options(p: &[u8]) -> Result<Vec<u8>, Bad> {
    const CLIENT_ID: u16 = 1;
    const IA_NA: u16 = 3;
    const IA_ADDR: u16 = 5;
    let mut out = p.get(..4).ok_or(Bad::Truncated)?.to_vec();
    for (code, data) in v6_options(&p[4..])? {
        match code {
            CLIENT_ID | V6_CLIENT_FQDN => push_v6_option(&mut out, code, data)?,
            IA_NA => {
                // IAID, T1, T2, then options.
                let mut ia = data.get(..12).ok_or(Bad::Malformed)?.to_vec();
                for (inner, addr) in v6_options(&data[12..])? {
                    if inner == IA_ADDR {
                        // Address, preferred and valid lifetimes.
                        push_v6_option(&mut ia, IA_ADDR, addr.get(..24).ok_or(Bad::Malformed)?)?;
                    }
                }
                push_v6_option(&mut out, IA_NA, &ia)?;
            }
            _ => {}
        }
    }
    Ok(out)
}

/// The client message inside Relay-Reply wrappers (`dhcproto` decodes the Relay Message option
/// as another relay message, so the wrappers are walked here), and whether there were any.
fn unwrap_relay(mut payload: &[u8]) -> Result<(&[u8], bool), Bad> {
    let mut relayed = false;
    for _ in 0..MAX_RELAY_DEPTH {
        match payload.first() {
            None => return Err(Bad::Truncated),
            Some(&V6_RELAY_REPL) => {}
            Some(_) => return Ok((payload, relayed)),
        }
        relayed = true;
        // msg-type, hop-count, link-address, peer-address, then options.
        let opts = v6_options(payload.get(34..).ok_or(Bad::Truncated)?)?;
        payload = opts
            .into_iter()
            .find_map(|(code, data)| (code == V6_RELAY_MSG).then_some(data))
            .ok_or(Bad::Incomplete)?;
    }
    Err(Bad::Malformed)
}

#[cfg(test)]
pub(crate) mod tests;
