//! `xdp-audit detach`: remove a pinned instance (its attachments, program, maps and state).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;

use crate::loader::adopt;
use crate::loader::pin::{PinDir, DEFAULT_INSTANCE, DEFAULT_PIN_ROOT};

/// The long help of `xdp-audit detach`.
pub const LONG_ABOUT: &str =
    "Removes what a pinned agent instance leaves in the kernel when it stops: the XDP program on
every interface (its links, or its netlink attachments), the program, its maps (flow tables,
lists, ring buffer, counters, the ledger of what was recorded) and the instance's directory
under the pin root. Flows still open in the flow table are not recorded: stop the agent first
(SIGTERM writes them), then detach.

Refused while an agent runs the instance. Detaching an instance that is not there succeeds
and changes nothing, so it can be repeated.

Examples:
  xdp-audit detach
  xdp-audit detach --instance gw-eth1";

/// Which pinned instance (`run` and `detach`).
#[derive(Args, Debug, Clone)]
pub struct PinArgs {
    /// The agent instance: its program, links and maps are pinned under PIN_ROOT/NAME. Two
    /// agents on different interfaces need different instances.
    #[arg(long, value_name = "NAME", default_value = DEFAULT_INSTANCE)]
    pub instance: String,
    /// Where instances are pinned (on a BPF filesystem; /sys/fs/bpf is mounted if needed).
    #[arg(long, value_name = "DIR", default_value = DEFAULT_PIN_ROOT)]
    pub pin_root: PathBuf,
}

impl PinArgs {
    /// The instance's pin directory.
    pub fn dir(&self) -> anyhow::Result<PinDir> {
        Ok(PinDir::new(&self.pin_root, &self.instance)?)
    }
}

/// Arguments of `xdp-audit detach`.
#[derive(Args, Debug)]
#[command(long_about = LONG_ABOUT)]
pub struct DetachArgs {
    /// The instance.
    #[command(flatten)]
    pub pins: PinArgs,
}

/// Runs `xdp-audit detach`.
pub fn main(args: DetachArgs) -> anyhow::Result<ExitCode> {
    let pins = args.pins.dir()?;
    let done = adopt::detach(&pins)
        .with_context(|| format!("detaching instance {:?}", args.pins.instance))?;
    if done == adopt::Detached::default() {
        outln!(
            "instance {:?}: nothing pinned at {}",
            args.pins.instance,
            pins.dir().display()
        )?;
    } else {
        outln!(
            "instance {:?}: detached ({} links, {} netlink attachments, {}program, {} map \
             directories removed)",
            args.pins.instance,
            done.links,
            done.netlink,
            if done.program { "" } else { "no " },
            done.map_dirs
        )?;
    }
    Ok(ExitCode::SUCCESS)
}
