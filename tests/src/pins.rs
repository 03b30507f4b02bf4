//! A BPF filesystem of a test's own, for agents that pin their program, links and maps, and
//! what `bpftool` says about the kernel objects pinned in it.
//!
//! The agent runs under `ip netns exec`, which gives it a mount namespace of its own with a
//! fresh `/sys`: a bpffs it mounted at `/sys/fs/bpf` there would vanish with the process, and
//! the pins with it. So each test mounts a bpffs in the host namespace under a unique
//! directory in /run (mounts there propagate into `ip netns exec`) and passes it as
//! `--pin-root`. Unmounting it releases every pin, so a failed test leaves nothing behind.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context as _};

use crate::lab::sh;

/// A bpffs mounted for one test; unmounted and removed on drop.
pub struct Bpffs(PathBuf);

impl Bpffs {
    /// Mounts a bpffs at `/run/xdp-audit-pins-<id>`.
    pub fn mount(id: &str) -> anyhow::Result<Self> {
        let dir = PathBuf::from(format!("/run/xdp-audit-pins-{id}"));
        std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        let guard = Self(dir);
        sh(Command::new("mount")
            .args(["-t", "bpf", "bpf"])
            .arg(&guard.0))?;
        Ok(guard)
    }

    /// The mount point: the agent's `--pin-root`.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// The mount point as the `--pin-root` argument.
    pub fn arg(&self) -> &str {
        self.0.to_str().unwrap_or_default()
    }
}

impl Drop for Bpffs {
    fn drop(&mut self) {
        // Lazily: an agent still exiting may hold a descriptor under it.
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// `bpftool ... -j` as JSON.
fn bpftool(args: &[&str]) -> anyhow::Result<serde_json::Value> {
    let out = Command::new("bpftool")
        .arg("-j")
        .args(args)
        .output()
        .context("run bpftool (Debian package bpftool)")?;
    if !out.status.success() {
        bail!(
            "bpftool {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    serde_json::from_slice(&out.stdout).with_context(|| format!("bpftool {args:?} output"))
}

/// The id of the program pinned at `path`.
pub fn pinned_prog_id(path: &Path) -> anyhow::Result<u64> {
    let v = bpftool(&["prog", "show", "pinned", path.to_str().context("path")?])?;
    v["id"].as_u64().with_context(|| format!("no id in {v}"))
}

/// The link pinned at `path`: its id and the id of the program it holds.
pub fn pinned_link(path: &Path) -> anyhow::Result<(u64, u64)> {
    let v = bpftool(&["link", "show", "pinned", path.to_str().context("path")?])?;
    match (v["id"].as_u64(), v["prog_id"].as_u64()) {
        (Some(id), Some(prog)) => Ok((id, prog)),
        _ => bail!("no link or program id in {v}"),
    }
}

/// The ids of every map pinned anywhere under `dir`.
pub fn pinned_map_ids(dir: &Path) -> anyhow::Result<Vec<u64>> {
    let mut ids = Vec::new();
    for e in std::fs::read_dir(dir).with_context(|| format!("list {}", dir.display()))? {
        let path = e?.path();
        if path.is_dir() {
            ids.extend(pinned_map_ids(&path)?);
        } else if let Ok(v) = bpftool(&["map", "show", "pinned", path.to_str().context("path")?]) {
            ids.extend(v["id"].as_u64());
        }
    }
    ids.sort_unstable();
    Ok(ids)
}

/// Ids of the programs, links and maps the kernel has now (`bpftool prog/link/map show`).
pub fn kernel_ids(kind: &str) -> anyhow::Result<Vec<u64>> {
    let v = bpftool(&[kind, "show"])?;
    Ok(v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|o| o["id"].as_u64())
        .collect())
}

/// A number bpftool printed: as JSON number, or as little-endian bytes `["0x2a", "0x00", ...]`.
fn number(v: &serde_json::Value) -> Option<u64> {
    if let Some(n) = v.as_u64() {
        return Some(n);
    }
    let bytes = v.as_array()?;
    let mut n = 0u64;
    for (i, b) in bytes.iter().enumerate().take(8) {
        let byte = u64::from_str_radix(b.as_str()?.trim_start_matches("0x"), 16).ok()?;
        n |= byte << (8 * i);
    }
    Some(n)
}

/// The id of the program in slot 0 of the program array pinned at `path` (the slow path in
/// `SLOW_PATH`), or `None` when the slot is empty.
pub fn prog_array_slot0(path: &Path) -> anyhow::Result<Option<u64>> {
    let v = bpftool(&["map", "dump", "pinned", path.to_str().context("path")?])?;
    for e in v.as_array().into_iter().flatten() {
        let (key, value) = match e.get("formatted") {
            Some(f) => (number(&f["key"]), number(&f["value"])),
            None => (number(&e["key"]), number(&e["value"])),
        };
        if key == Some(0) {
            return value
                .map(Some)
                .with_context(|| format!("no program id in {e}"));
        }
    }
    Ok(None)
}
