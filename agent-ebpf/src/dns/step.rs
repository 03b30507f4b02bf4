//! One step of the name walk, run by `bpf_loop` (see [`super::walk`]): the phases of a
//! message (its length, its header, each label of each question's name) over the bytes
//! copied into the scratch slot, and the suffix lookups that judge a name.

use agent_common::domain::{
    low_bytes, DomainKey, LabelHasher, LabelRing, SuffixHasher, MAX_DOMAIN_LABELS, MAX_LABEL_LEN,
};
use agent_common::rules::RuleId;
use aya_ebpf::cty::c_void;

use super::{
    Scratch, ALLOW_DOMAINS, BAD, BLOCKED, BLOCK_DOMAINS, BUF, DNS_HEADER, DNS_SCRATCH, END, HEADER,
    HOLD, NAME, NO_LEN, PREFIX,
};

/// The byte at `at` of the copied bytes (masked into the buffer).
#[inline(always)]
fn byte(buf: &[u8; BUF + HOLD], at: usize) -> u8 {
    buf[at & (BUF - 1)]
}

/// Eight bytes of the copied bytes from `at` (masked into the buffer), little-endian.
#[inline(always)]
fn word(buf: &[u8; BUF + HOLD], at: usize) -> u64 {
    // SAFETY: `at & (BUF - 1)` plus 8 bytes stays inside the buffer; the read is unaligned
    // on purpose.
    unsafe { core::ptr::read_unaligned(buf.as_ptr().add(at & (BUF - 1)).cast::<u64>()) }
}

/// The walk stopped at the end of the bytes read, in a message that ends at `msg_end`
/// (judged after the loop, [`cut_short`]: a branch here cost the verifier 170,000
/// instructions).
#[inline(always)]
fn ran_out(s: &mut Scratch, msg_end: usize) {
    s.phase = BAD;
    s.wanted = msg_end as u32;
}

/// Whether a walk that stopped `BAD` ran out of bytes where they are the whole segment and
/// the message goes on past them: cut short by the segment's end, not a message that claims
/// more than it holds, nor bytes past [`SPAN`].
#[inline(always)]
pub(super) fn cut_short(s: &Scratch) -> bool {
    s.phase == BAD && s.len == s.seg && s.wanted > s.len
}

/// The phase after a message: the next one's length (TCP), or the end (UDP: one message).
#[inline(always)]
fn after_message(s: &mut Scratch) {
    s.body = 0;
    s.phase = if s.tcp != 0 { PREFIX } else { END };
}

/// One step of the walk (see the phases). Returns 1 to stop.
pub(super) extern "C" fn step(_i: u64, _ctx: *mut c_void) -> i64 {
    let Some(s) = DNS_SCRATCH.get_ptr_mut(0) else {
        return 1;
    };
    // SAFETY: this CPU's scratch slot.
    let s = unsafe { &mut *s };
    let pos = s.pos as usize;
    match s.phase {
        PREFIX => {
            if pos >= s.seg as usize {
                s.phase = END; // between messages
                return 1;
            }
            s.msg_at = pos as u32;
            if pos + 2 > s.len as usize {
                ran_out(s, u32::MAX as usize); // a length cut short, or past the bytes read
                return 1;
            }
            s.body = u32::from(byte(&s.buf, pos)) << 8 | u32::from(byte(&s.buf, pos + 1));
            if pos == 0 {
                s.first_len = s.body;
                if s.expect_len != NO_LEN && s.body != s.expect_len {
                    s.phase = BAD; // other bytes where the last walk began (see `boundary`)
                    return 1;
                }
            }
            let end = pos as u32 + 2 + s.body;
            let other =
                pos as u32 == s.boundary && s.boundary_len != NO_LEN && s.body != s.boundary_len;
            let across = |b: u32| (pos as u32) < b && end > b;
            if other || across(s.boundary) || across(s.frontier_off) {
                s.phase = BAD; // another length, or a message across, where the last walk's last began
                return 1;
            }
            s.pos = (pos + 2) as u32;
            s.phase = HEADER;
            0
        }
        HEADER => {
            if pos >= s.seg as usize {
                s.phase = END; // a length sent alone: its message is next
                return 1;
            }
            let end = pos + s.body as usize;
            s.msg_end = end as u32;
            if (s.body as usize) < DNS_HEADER {
                if s.tcp == 0 {
                    s.phase = BAD; // a datagram too short for its header
                    return 1;
                }
                s.pos = end as u32; // no message a server answers: passed over
                after_message(s);
                return 0;
            }
            if pos + DNS_HEADER > s.len as usize {
                ran_out(s, end); // the header cut short
                return 1;
            }
            let flags = byte(&s.buf, pos + 2);
            let questions =
                u32::from(byte(&s.buf, pos + 4)) << 8 | u32::from(byte(&s.buf, pos + 5));
            if flags & 0x80 != 0 || questions == 0 {
                s.pos = end as u32; // a response, or no question
                after_message(s);
                return 0;
            }
            s.questions = questions;
            s.pos = (pos + DNS_HEADER) as u32;
            s.name_at = s.pos;
            s.ring.count = 0;
            s.phase = NAME;
            0
        }
        NAME => label(s),
        _ => 1,
    }
}

/// One label of a QNAME: its length byte (0 ends the name, which is then judged, then the
/// next question's name is walked, if any; over 63 is a compression pointer or a reserved
/// type: not walked), then its bytes, hashed 8 at a time. A label or terminator past the
/// message or the bytes read is cut short.
#[inline(always)]
fn label(s: &mut Scratch) -> i64 {
    let at = s.pos as usize;
    let limit = if s.msg_end < s.len { s.msg_end } else { s.len } as usize;
    if at >= limit {
        ran_out(s, s.msg_end as usize);
        return 1;
    }
    let len = byte(&s.buf, at) as usize;
    if len == 0 {
        // The root name (`.`) has no labels and matches nothing.
        s.name_len = (at as u32).wrapping_sub(s.name_at) + 1;
        if let Some(rule) = match_suffixes(&s.key, &s.ring) {
            s.rule = rule;
            s.phase = BLOCKED;
            return 1;
        }
        if s.questions > 1 {
            // Another question, after this one's type and class: every one is judged.
            s.questions -= 1;
            s.pos = (at + 1 + 4) as u32;
            s.name_at = s.pos;
            s.ring.count = 0;
            return 0;
        }
        s.pos = s.msg_end;
        after_message(s);
        return 0;
    }
    if len > MAX_LABEL_LEN {
        s.phase = BAD;
        return 1;
    }
    let next = at + 1 + len;
    if next >= limit {
        ran_out(s, s.msg_end as usize); // the label or the byte after it is not there
        return 1;
    }
    let mut h = LabelHasher::new(&s.key);
    let full = len / 8;
    let mut k = 0;
    while k < MAX_LABEL_LEN / 8 {
        if k >= full {
            break;
        }
        h.word(word(&s.buf, at + 1 + 8 * k));
        k += 1;
    }
    let rest = len % 8;
    let tail = word(&s.buf, at + 1 + 8 * full) & low_bytes(rest);
    s.ring.push(h.finish(len, tail));
    s.pos = next as u32;
    0
}

/// Walks the suffixes from the root; an allowed suffix wins over any blocked one.
#[inline(always)]
fn match_suffixes(key: &DomainKey, ring: &LabelRing) -> Option<RuleId> {
    let n = ring.len();
    let mut suffix = SuffixHasher::new(key);
    let mut blocked = None;
    let mut i = 0;
    while i < MAX_DOMAIN_LABELS {
        if i >= n {
            break;
        }
        let h = suffix.push(ring.from_root(i));
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
