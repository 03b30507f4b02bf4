//! What the Debian package ships, checked against the code it configures: the default config
//! file goes through the real config parser and documents every `run` setting; the list
//! files are valid lists; the systemd unit README shows is the unit the package installs.
//! (`cargo xtask test` then builds the package, installs it, verifies the unit and purges.)

use std::path::{Path, PathBuf};
use std::process::Command;

use clap::Args as _;
use xdp_audit::cmd::run::RunArgs;

const BIN: &str = env!("CARGO_BIN_EXE_xdp-audit");

fn packaging(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../packaging")
        .join(name)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn run_command() -> clap::Command {
    RunArgs::augment_args(clap::Command::new("run"))
}

/// `# key = value` lines: the commented defaults of the config file.
fn commented_settings(text: &str) -> Vec<&str> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# "))
        .filter(|l| {
            l.split_once(" = ").is_some_and(|(k, _)| {
                !k.is_empty() && k.chars().all(|c| c.is_ascii_lowercase() || c == '-')
            })
        })
        .collect()
}

#[test]
fn default_config_parses_and_documents_every_setting() {
    let path = packaging("xdp-audit.toml");
    let text = read(&path);
    let run = run_command();
    // As shipped: only the interfaces are missing, everything set is valid.
    let shipped = xdp_audit::config::to_args(&path, &text, &run)
        .unwrap_or_else(|e| panic!("the shipped config: {e}"));
    let err = run
        .clone()
        .no_binary_name(true)
        .try_get_matches_from(&shipped)
        .expect_err("no interface is configured");
    assert!(err.to_string().contains("--iface"), "{err}");
    // With every commented setting turned on, the file is a complete, valid configuration.
    let all = commented_settings(&text);
    let enabled = format!("{text}\n{}\n", all.join("\n"));
    let args = xdp_audit::config::to_args(&path, &enabled, &run)
        .unwrap_or_else(|e| panic!("the config with its commented settings turned on: {e}"));
    run.clone()
        .no_binary_name(true)
        .try_get_matches_from(&args)
        .unwrap_or_else(|e| panic!("the settings the config file shows: {e}"));
    let keys: Vec<&str> = text
        .lines()
        .map(|l| l.trim_start_matches("# "))
        .filter_map(|l| l.split_once(" = ").map(|(k, _)| k))
        .collect();
    for arg in run.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        if ["config", "help", "version"].contains(&long) {
            continue;
        }
        assert!(
            keys.contains(&long),
            "run flag --{long} is not in {}: add it there (commented, with its default)",
            path.display()
        );
    }
}

#[test]
fn shipped_list_files_are_valid_lists() {
    let out = Command::new(BIN)
        .args(["blocklist", "check"])
        .arg(packaging("block.list"))
        .arg(packaging("allow.list"))
        .output()
        .expect("run xdp-audit blocklist check");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn readme_shows_the_unit_the_package_installs() {
    let unit = read(&packaging("xdp-audit.service"));
    let readme = read(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"));
    let start = "```ini\n# /lib/systemd/system/xdp-audit.service (packaging/xdp-audit.service)\n";
    let at = readme
        .find(start)
        .unwrap_or_else(|| panic!("README has no block starting {start:?}"));
    let body = &readme[at + start.len()..];
    let shown = &body[..body.find("```").expect("the unit block ends")];
    assert_eq!(
        shown, unit,
        "README's unit differs from packaging/xdp-audit.service: copy the file into README"
    );
}

/// The state directory the default config names outlives the agent under the unit: systemd
/// empties a `RuntimeDirectory=` at every stop (a restart after a crash included) unless it
/// is preserved, and with it went the crash evidence and what attribution carries over.
#[test]
fn the_units_state_directory_survives_a_restart() {
    let unit = read(&packaging("xdp-audit.service"));
    let config = read(&packaging("xdp-audit.toml"));
    let state_dir = config
        .lines()
        .find_map(|l| l.strip_prefix("state-dir = "))
        .map(|v| v.trim().trim_matches('"').to_owned())
        .expect("the config sets state-dir");
    let setting = |key: &str| {
        unit.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .map(str::trim)
    };
    if let Some(runtime) = setting("RuntimeDirectory") {
        if Path::new(&state_dir).starts_with(Path::new("/run").join(runtime)) {
            let preserve = setting("RuntimeDirectoryPreserve");
            assert!(
                matches!(preserve, Some("yes" | "restart")),
                "state-dir {state_dir} is the unit's RuntimeDirectory, which systemd removes \
                 at a stop: RuntimeDirectoryPreserve={preserve:?}"
            );
        }
    }
}
