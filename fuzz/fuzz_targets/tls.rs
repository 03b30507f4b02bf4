//! ClientHello SNI on arbitrary bytes, framed (TLS records) and bare (a QUIC CRYPTO stream).
#![no_main]

use libfuzzer_sys::fuzz_target;
use xdp_audit::enrich::names::tls;

fuzz_target!(|data: &[u8]| {
    let _ = tls::client_hello_sni(data);
    let _ = tls::handshake_sni(data);
});
