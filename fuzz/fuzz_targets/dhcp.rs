//! The DHCP learner on arbitrary bytes: the first byte picks DHCPv4 (67/68) or DHCPv6
//! (546/547), the rest is the UDP payload. The learner turns a decoder panic into a counted
//! reason at run time; under libFuzzer the panic hook aborts first, so a deep run finds them.
#![no_main]

use std::net::{IpAddr, Ipv4Addr};

use libfuzzer_sys::fuzz_target;
use xdp_audit::enrich::dhcp::{DhcpLearner, DhcpPacket};
use xdp_audit::enrich::leases::bindings::Bindings;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, payload)) = data.split_first() else {
        return;
    };
    let (src_port, dst_port) = if pick & 1 == 0 { (67, 68) } else { (547, 546) };
    DhcpLearner::new().learn(
        &DhcpPacket {
            payload,
            src_port,
            dst_port,
            src_ip: IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1)),
            eth_dst: None,
            t_ns: 0,
        },
        &mut Bindings::default(),
    );
});
