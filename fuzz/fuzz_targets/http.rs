//! HTTP/1.x Host on arbitrary bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xdp_audit::enrich::names::http;

fuzz_target!(|data: &[u8]| {
    let _ = http::host(data);
});
