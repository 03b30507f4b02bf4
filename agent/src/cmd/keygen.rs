//! `xdp-audit keygen`: create an ed25519 key pair for signing the chain head.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

use crate::store::manifest::generate_keypair;

/// The long help of `xdp-audit keygen`, with examples.
pub const LONG_ABOUT: &str =
    "Creates an ed25519 key pair: FILE (secret, mode 0600) for `run --signing-key`,
and FILE.pub for `verify --public-key`. Existing files are never overwritten.

Formats (one line of text each):
  FILE      xdp-audit-ed25519-secret-v1 <64 hex digits: the 32-byte seed>
  FILE.pub  xdp-audit-ed25519-public-v1 <64 hex digits: the 32-byte public key>
Keep FILE on the gateway only; hand FILE.pub to whoever must verify the log.

Example:
  xdp-audit keygen --out /etc/xdp-audit/chain.key";

/// Arguments of `xdp-audit keygen`.
#[derive(clap::Args, Debug)]
#[command(long_about = LONG_ABOUT)]
pub struct KeygenArgs {
    /// Path of the secret key; the public key goes to the same path plus `.pub`.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

/// Runs `xdp-audit keygen`.
pub fn main(args: KeygenArgs) -> anyhow::Result<ExitCode> {
    let (secret, public) = generate_keypair().context("reading the kernel's random source")?;
    let mut pub_path = args.out.clone().into_os_string();
    pub_path.push(".pub");
    let pub_path = PathBuf::from(pub_path);
    // Both files or neither: a secret key whose public half could not be written is removed.
    write_new(&args.out, &secret, 0o600)?;
    if let Err(e) = write_new(&pub_path, &public, 0o644) {
        let _ = std::fs::remove_file(&args.out);
        return Err(e);
    }
    outln!("{}\n{}", args.out.display(), pub_path.display())?;
    Ok(ExitCode::SUCCESS)
}

/// Writes `text` to a new file (never an existing one) with `mode`, and syncs it; a file it
/// created but could not write is removed.
fn write_new(path: &Path, text: &str, mode: u32) -> anyhow::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| crate::cmd::export::create_error(path, "", e))?;
    let written = f.write_all(text.as_bytes()).and_then(|()| f.sync_all());
    if written.is_err() {
        let _ = std::fs::remove_file(path);
    }
    written.with_context(|| format!("writing {}", path.display()))
}
