//! List verdicts, in the documented order: allowlist (wins) -> exact blocklist (HASH) ->
//! prefix blocklist (LPM trie) -> port/protocol rules -> pass. The side matched is the remote
//! one: the destination on a `lan` interface, the source on a `wan` one. An IPv4 address
//! whose /24 is not in the cover ([`cover4`]) skips the exact and prefix tables. A flow
//! computes its verdict once per list generation and caches it in its entry.

use agent_common::{
    family, proto, role,
    rules::{cover4, empty, PortKey, RuleId},
    verdict, FlowKey, NO_RULE,
};
use core::ptr::read_volatile;

use aya_ebpf::{
    bindings::BPF_F_NO_PREALLOC,
    macros::map,
    maps::{lpm_trie::Key, Array, HashMap, LpmTrie, PerCpuArray},
};

/// Default capacity; the loader sets the real one from the lists (`--list-capacity`).
const CAP: u32 = 1 << 16;

#[map(name = "ALLOW_V4")]
static ALLOW_V4: HashMap<[u8; 4], RuleId> = HashMap::with_max_entries(CAP, BPF_F_NO_PREALLOC);
#[map(name = "BLOCK_V4")]
static BLOCK_V4: HashMap<[u8; 4], RuleId> = HashMap::with_max_entries(CAP, BPF_F_NO_PREALLOC);
#[map(name = "ALLOW_V6")]
static ALLOW_V6: HashMap<[u8; 16], RuleId> = HashMap::with_max_entries(CAP, BPF_F_NO_PREALLOC);
#[map(name = "BLOCK_V6")]
static BLOCK_V6: HashMap<[u8; 16], RuleId> = HashMap::with_max_entries(CAP, BPF_F_NO_PREALLOC);
#[map(name = "ALLOW_NET4")]
static ALLOW_NET4: LpmTrie<[u8; 4], RuleId> = LpmTrie::with_max_entries(CAP, 0);
#[map(name = "BLOCK_NET4")]
static BLOCK_NET4: LpmTrie<[u8; 4], RuleId> = LpmTrie::with_max_entries(CAP, 0);
#[map(name = "ALLOW_NET6")]
static ALLOW_NET6: LpmTrie<[u8; 16], RuleId> = LpmTrie::with_max_entries(CAP, 0);
#[map(name = "BLOCK_NET6")]
static BLOCK_NET6: LpmTrie<[u8; 16], RuleId> = LpmTrie::with_max_entries(CAP, 0);
#[map(name = "ALLOW_PORTS")]
static ALLOW_PORTS: HashMap<PortKey, RuleId> = HashMap::with_max_entries(CAP, BPF_F_NO_PREALLOC);
#[map(name = "BLOCK_PORTS")]
static BLOCK_PORTS: HashMap<PortKey, RuleId> = HashMap::with_max_entries(CAP, BPF_F_NO_PREALLOC);
/// The IPv4 /24s any address or prefix rule touches ([`cover4`]): a new flow to another
/// /24 skips the exact table and the trie.
#[map(name = "COVER4")]
static COVER4: Array<u64> = Array::with_max_entries(cover4::WORDS, 0);
#[map(name = "GENERATION")]
static GENERATION: Array<u64> = Array::with_max_entries(1, 0);
/// Interface roles by ifindex (see [`role::SLOTS`]); 0 is `lan`.
#[map(name = "IFACE_ROLES")]
static IFACE_ROLES: Array<u8> = Array::with_max_entries(role::SLOTS, 0);
/// Roles of interfaces past `IFACE_ROLES`'s end; absent is `lan`.
#[map(name = "IFACE_ROLES_FAR")]
static IFACE_ROLES_FAR: HashMap<u32, u8> = HashMap::with_max_entries(256, 0);
/// Per-CPU packet counts indexed by dense rule id, sized like the rule-id space (the loader
/// sets it from the lists). A drop of an already-dropped flow counts its rule on every
/// packet: a per-CPU slot is one inlined array access and a plain add, where a shared hash
/// entry cost a hash lookup and a locked add (31-36 ns of a drop). The agent sums the CPUs'
/// slots with batched reads (`enforce.rs`); the price is memory: 8 bytes per rule per CPU.
#[map(name = "RULE_HITS")]
static RULE_HITS: PerCpuArray<u64> = PerCpuArray::with_max_entries(CAP, 0);

/// The lists in force, both from one array read.
#[derive(Clone, Copy)]
pub struct InForce {
    /// The generation a flow caches its verdict under.
    pub generation: u32,
    /// The tables the agent marked empty ([`empty`]).
    pub empty: u32,
}

/// The lists in force now.
#[inline(always)]
pub fn in_force() -> InForce {
    let (generation, empty) = GENERATION.get(0).map_or((0, 0), |g| empty::unpack(*g));
    InForce { generation, empty }
}

/// Counts one packet for `rule`.
#[inline(always)]
pub fn hit(rule: RuleId) {
    // Counted under the id alone: the refusal bit is the list's setting, not the rule's.
    let rule = agent_common::rules::rule_id(rule);
    // An id past the array's end (which the list set refuses before it reaches the maps)
    // would lose the count, never the verdict.
    if let Some(c) = RULE_HITS.get_ptr_mut(rule) {
        // SAFETY: this CPU's own slot, 8-aligned, live for this run.
        unsafe { *c += 1 };
    }
}

/// The remote address (as network-order words) and port of a flow.
#[inline(always)]
fn remote(key: &FlowKey) -> (&[u32; 4], u16) {
    let role = match IFACE_ROLES.get(key.ifindex) {
        Some(r) => *r,
        // SAFETY: a map value read for this run only.
        None => unsafe { IFACE_ROLES_FAR.get(&key.ifindex) }.map_or(role::LAN, |r| *r),
    };
    let wan = role == role::WAN;
    if wan {
        (&key.addr_a, key.port_a)
    } else {
        (&key.addr_b, key.port_b)
    }
}

#[inline(always)]
fn v6_bytes(w: &[u32; 4]) -> [u8; 16] {
    // SAFETY: same size, plain integers; the words hold network-order bytes.
    unsafe { core::mem::transmute(*w) }
}

/// Whether an address or prefix rule may match the IPv4 address `addr` (a network-order
/// word): its /24's bit in [`COVER4`] (an unreadable word counts as set). The address is read
/// again after the lookup rather than kept across it, and its exact key written only after
/// this: each value kept across a helper call beyond the four callee-saved registers is a
/// stack slot, and `judge`'s frame must stay within 48 bytes (the program's is 464 of 512).
#[inline(always)]
fn covered(addr: &u32) -> bool {
    // SAFETY: a live reference; volatile, so the compiler reads it where it is written.
    let word = cover4::slot(unsafe { read_volatile(addr) }.to_ne_bytes()).0;
    let Some(w) = COVER4.get(word) else {
        return true;
    };
    // SAFETY: as above.
    let bit = cover4::slot(unsafe { read_volatile(addr) }.to_ne_bytes()).1;
    *w >> bit & 1 != 0
}

/// Looks up the address and port of one list; `allow` picks the maps.
#[inline(always)]
fn lookup(key: &FlowKey, addr: &[u32; 4], port: u16, allow: bool) -> Option<RuleId> {
    let hit = if key.family == family::V4 {
        let (exact, net) = if allow {
            (&ALLOW_V4, &ALLOW_NET4)
        } else {
            (&BLOCK_V4, &BLOCK_NET4)
        };
        if covered(&addr[0]) {
            // SAFETY: a live reference, read after the cover's lookup (see `covered`).
            let a = unsafe { read_volatile(&addr[0]) }.to_ne_bytes();
            // SAFETY: map values are read for this run only.
            unsafe { exact.get(&a) }
                .or_else(|| net.get(Key::new(32, a)))
                .copied()
        } else {
            None
        }
    } else {
        let a = v6_bytes(addr);
        let (exact, net) = if allow {
            (&ALLOW_V6, &ALLOW_NET6)
        } else {
            (&BLOCK_V6, &BLOCK_NET6)
        };
        // SAFETY: as above.
        unsafe { exact.get(&a) }
            .or_else(|| net.get(Key::new(128, a)))
            .copied()
    };
    if hit.is_some() {
        return hit;
    }
    if key.proto != proto::TCP && key.proto != proto::UDP {
        return None;
    }
    let pk = PortKey {
        port,
        proto: key.proto,
        _pad: 0,
    };
    let ports = if allow { &ALLOW_PORTS } else { &BLOCK_PORTS };
    // SAFETY: as above.
    unsafe { ports.get(&pk) }.copied()
}

/// The verdict and rule for a flow (`key` oriented as the flow: `a` is the originator) under
/// the lists `now` in force.
#[inline(always)]
pub fn of(key: &FlowKey, now: InForce) -> (u8, RuleId) {
    let v = judge(key, now.empty);
    ((v >> 32) as u8, v as RuleId)
}

/// A verdict and rule as [`judge`] returns them: the verdict in the high word.
#[inline(always)]
fn packed(verdict: u8, rule: RuleId) -> u64 {
    u64::from(verdict) << 32 | u64::from(rule)
}

/// The list chain, as a BPF subprogram: inlined in each of its callers, its branches
/// multiplied the verifier's walk of every caller's continuation (158,000 instructions more).
/// An allowlist marked [`empty::ALLOW`] is skipped: three lookups that would miss.
#[inline(never)]
fn judge(key: &FlowKey, empty: u32) -> u64 {
    let (addr, port) = remote(key);
    if empty & empty::ALLOW == 0 {
        if let Some(rule) = lookup(key, addr, port, true) {
            return packed(verdict::PASS, rule);
        }
    }
    match lookup(key, addr, port, false) {
        Some(rule) => packed(verdict::DROP, rule),
        // An IPv6 packet whose transport header lies past the walk could carry a blocked
        // port, or a DNS name no rule judged: while the blocklist holds either, it is
        // dropped (as a name the walk cannot read is); an allow rule passed it above.
        None if key.family == family::V6
            && crate::parse::is_ipv6_ext(key.proto)
            && empty & (empty::PORTS_BLOCKED | empty::DOMAINS_BLOCKED) != 0 =>
        {
            packed(verdict::DROP, NO_RULE)
        }
        None => packed(verdict::PASS, NO_RULE),
    }
}
