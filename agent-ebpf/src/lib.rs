//! Empty host-side library: lets the agent depend on this crate so cargo rebuilds the
//! agent when the XDP program changes. The program itself is the `xdp-audit-ebpf` binary.
#![no_std]
