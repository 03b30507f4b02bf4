//! A client - gateway - internet lab in network namespaces, for the end-to-end tests and for
//! `cargo xtask lab`. Every lab has unique namespace names and removes them when dropped, so
//! two runs never collide and a failed test leaves nothing behind.

pub mod agent;
pub mod conntrack;
pub mod dhcp;
pub mod lab;
pub mod netns;
pub mod pcap;
pub mod pins;
pub mod rsyslog;
pub mod servers;
pub mod tmpfs;
pub mod traffic;
pub mod wait;
pub mod webhook;
