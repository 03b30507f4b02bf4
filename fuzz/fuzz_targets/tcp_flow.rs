//! A TCP flow from arbitrary segments: the input is a list of (sequence offset u16, length
//! u8, bytes) records, pushed in order through reassembly and the TLS/HTTP readers.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xdp_audit::enrich::names::flow::FlowNames;
use xdp_audit::enrich::names::payload::Snippet;

fuzz_target!(|data: &[u8]| {
    let mut flow = FlowNames::tcp(Some(1_000));
    let mut rest = data;
    while let [a, b, len, tail @ ..] = rest {
        let n = usize::from(*len).min(tail.len());
        let seq = 1_000u32.wrapping_add(u32::from(u16::from_be_bytes([*a, *b]))).wrapping_sub(64);
        let _ = flow.push(Snippet { seq, data: &tail[..n] });
        rest = &tail[n..];
    }
    let _ = flow.finish();
});
