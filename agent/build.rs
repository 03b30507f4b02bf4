//! Builds the XDP objects (agent-ebpf) with aya-build so the agent can embed them.

use anyhow::{anyhow, Context as _};
use aya_build::{Package, Toolchain};

fn main() -> anyhow::Result<()> {
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").context("CARGO_MANIFEST_DIR not set")?;
    let root = std::path::Path::new(&manifest_dir)
        .parent()
        .ok_or_else(|| anyhow!("agent crate has no parent directory"))?
        .join("agent-ebpf");
    let root_dir = root
        .to_str()
        .ok_or_else(|| anyhow!("path {} is not UTF-8", root.display()))?;
    // Nightly is needed for -Z build-std=core; XDP_AUDIT_EBPF_TOOLCHAIN overrides it.
    println!("cargo:rerun-if-env-changed=XDP_AUDIT_EBPF_TOOLCHAIN");
    let toolchain = std::env::var("XDP_AUDIT_EBPF_TOOLCHAIN").ok();
    let toolchain = match toolchain.as_deref() {
        Some(t) => Toolchain::Custom(t),
        None => Toolchain::Nightly,
    };
    aya_build::build_ebpf(
        [Package {
            name: "agent-ebpf",
            root_dir,
            ..Default::default()
        }],
        toolchain,
    )
}
