//! A small tmpfs for the disk-full tests: mounted on a fresh directory, unmounted and removed
//! on drop (also when the test panics). Needs root.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The mounted tmpfs.
pub struct Tmpfs(PathBuf);

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed (this test needs root to mount tmpfs): {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (`256k`, `4m`) on a new directory.
    pub fn mount(size: &str) -> Self {
        let p = std::env::temp_dir().join(format!("xdp-audit-tmpfs-{}", crate::lab::unique_id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap_or_else(|e| panic!("create {}: {e}", p.display()));
        let fs = Self(p);
        run(Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&fs.0));
        fs
    }

    /// Grows or shrinks it to `size`.
    pub fn resize(&self, size: &str) {
        run(Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0));
    }

    /// Its mount point.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}
