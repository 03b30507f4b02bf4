//! QUIC Initial SNI on arbitrary datagrams: the input whole, and cut in two datagrams at the
//! position its first byte names (so two-datagram connections are reached too).
#![no_main]

use libfuzzer_sys::fuzz_target;
use xdp_audit::enrich::names::quic;

fuzz_target!(|data: &[u8]| {
    let _ = quic::initial_sni([data]);
    if let Some((&cut, rest)) = data.split_first() {
        let at = (usize::from(cut) * 8).min(rest.len());
        let (a, b) = rest.split_at(at);
        let _ = quic::initial_sni([b, a]);
    }
});
