//! DNS query names: the QNAME of a query to port 53 is walked label by label, each label
//! hashed as [`agent_common::domain`] defines, and every suffix of the name (`com`,
//! `example.com`, `www.example.com`) looked up in the allow and block domain tables. An
//! allowed suffix wins over a blocked one. Compressed or malformed names are passed and
//! counted, never guessed at.

use agent_common::{
    domain::{label_step, suffix_step, LabelRing, LABEL_INIT, MAX_LABEL_LEN, SUFFIX_ROOT},
    rules::RuleId,
    Counter,
};
use aya_ebpf::{
    bindings::BPF_F_NO_PREALLOC,
    cty::c_void,
    helpers::generated::{bpf_loop, bpf_xdp_load_bytes},
    macros::map,
    maps::{HashMap, PerCpuArray},
    programs::XdpContext,
};

use crate::{parse::Header, stats};

/// Wire-format names are at most 255 bytes, terminator included.
const MAX_NAME_WIRE: usize = 255;
const DNS_HEADER: usize = 12;

const WALKING: u32 = 0;
const DONE: u32 = 1;
const BAD: u32 = 2;

/// The name walk's state, per CPU: the name's bytes copied out of the packet, the label
/// hashes so far, and where the walk stands.
#[repr(C)]
pub struct Scratch {
    name: [u8; 256],
    ring: LabelRing,
    hash: u64,
    left: u32,
    status: u32,
}

#[map(name = "ALLOW_DOMAINS")]
static ALLOW_DOMAINS: HashMap<u64, RuleId> = HashMap::with_max_entries(1 << 16, BPF_F_NO_PREALLOC);
#[map(name = "BLOCK_DOMAINS")]
static BLOCK_DOMAINS: HashMap<u64, RuleId> = HashMap::with_max_entries(1 << 16, BPF_F_NO_PREALLOC);
#[map(name = "DNS_SCRATCH")]
static DNS_SCRATCH: PerCpuArray<Scratch> = PerCpuArray::with_max_entries(1, 0);

/// The block rule a DNS query at `off` (the DNS header) falls under, if any.
#[inline(always)]
pub fn blocked_query(ctx: &XdpContext, off: usize) -> Option<RuleId> {
    let hdr = Header::<DNS_HEADER>::at(ctx, off)?;
    let flags: u8 = hdr.get::<_, 2>();
    let qdcount = u16::from_be(hdr.get::<u16, 4>());
    if flags & 0x80 != 0 || qdcount == 0 {
        return None; // a response, or no question
    }
    let s = DNS_SCRATCH.get_ptr_mut(0)?;
    // SAFETY: this CPU's scratch slot, valid for this run.
    let s = unsafe { &mut *s };
    let name_off = off + DNS_HEADER;
    let avail = ctx.data_end().saturating_sub(ctx.data() + name_off);
    // Through black_box so the bounds check below stays next to the helper call, where the
    // verifier needs to see `len` in 1..=255.
    let len = core::hint::black_box(if avail < MAX_NAME_WIRE {
        avail
    } else {
        MAX_NAME_WIRE
    });
    if len == 0 || len > MAX_NAME_WIRE {
        stats::bump(Counter::DnsNameUnparsed);
        return None;
    }
    s.ring.count = 0;
    s.left = 0;
    s.hash = LABEL_INIT;
    s.status = WALKING;
    // SAFETY: copies `len` (1..=255) bytes the packet has into the 256-byte scratch buffer.
    let copied = unsafe {
        bpf_xdp_load_bytes(
            ctx.ctx,
            name_off as u32,
            s.name.as_mut_ptr().cast(),
            len as u32,
        )
    };
    if copied != 0 {
        stats::bump(Counter::DnsNameUnparsed);
        return None;
    }
    // bpf_loop: the verifier checks `walk_step` once, not once per byte and caller state.
    // SAFETY: a valid callback and no context.
    unsafe {
        bpf_loop(
            len as u32,
            walk_step as *const () as *mut c_void,
            core::ptr::null_mut(),
            0,
        )
    };
    if s.status != DONE {
        stats::bump(Counter::DnsNameUnparsed);
        return None;
    }
    match_suffixes(&s.ring)
}

/// One byte of the QNAME walk: a length byte starts a label (0 ends the name, anything over
/// 63 is a compression pointer or reserved type: not walked), other bytes are hashed.
/// Returns 1 to stop the loop.
extern "C" fn walk_step(i: u64, _ctx: *mut c_void) -> i64 {
    let Some(s) = DNS_SCRATCH.get_ptr_mut(0) else {
        return 1;
    };
    // SAFETY: this CPU's scratch slot.
    let s = unsafe { &mut *s };
    let b = s.name[(i & 0xff) as usize];
    if s.left == 0 {
        if i != 0 {
            s.ring.push(s.hash);
        }
        if b == 0 {
            s.status = DONE; // the root name (`.`) has no labels and matches nothing
            return 1;
        }
        if b as usize > MAX_LABEL_LEN {
            s.status = BAD;
            return 1;
        }
        s.left = u32::from(b);
        s.hash = LABEL_INIT;
    } else {
        s.hash = label_step(s.hash, b);
        s.left -= 1;
    }
    0
}

/// Walks the suffixes from the root; an allowed suffix wins over any blocked one.
#[inline(always)]
fn match_suffixes(ring: &LabelRing) -> Option<RuleId> {
    let n = ring.len();
    let mut h = SUFFIX_ROOT;
    let mut blocked = None;
    let mut i = 0;
    while i < agent_common::domain::MAX_DOMAIN_LABELS {
        if i >= n {
            break;
        }
        h = suffix_step(h, ring.from_root(i));
        // SAFETY: map values are read for this run only.
        if unsafe { ALLOW_DOMAINS.get(&h) }.is_some() {
            return None;
        }
        if blocked.is_none() {
            // SAFETY: as above.
            blocked = unsafe { BLOCK_DOMAINS.get(&h) }.copied();
        }
        i += 1;
    }
    blocked
}
