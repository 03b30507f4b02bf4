//! DNS messages on arbitrary bytes, over UDP and as a TCP stream of length-prefixed messages.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xdp_audit::enrich::names::dns;

fuzz_target!(|data: &[u8]| {
    let _ = dns::parse(data);
    for m in dns::tcp_messages(data) {
        let _ = dns::parse(m);
    }
});
