//! `cargo xtask deb`: the Debian package, staged as a tree and packed by `dpkg-deb` (no
//! packaging crate), and its test: install with dpkg, `systemd-analyze verify` the unit,
//! purge, and check that nothing it installed is left.

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, ensure, Context as _};
use xdp_audit_lab::wait::poll_until;

/// The unit's `ExecStartPre` lines, run as root in the agent's mount namespace (`ip netns
/// exec` gives it a fresh /sys without bpffs), then the command in `"$@"`.
const EXEC_START_PRE: &str = "mount -t bpf -o mode=0700 bpf /sys/fs/bpf && \
     install -d -o xdp-audit -g xdp-audit -m 0700 /sys/fs/bpf/xdp-audit && \
     chmod o+x /sys/fs/bpf && exec \"$@\"";

const PACKAGE: &str = "xdp-audit";
const USER: &str = "xdp-audit";
const STORE: &str = "/var/lib/xdp-audit";
const UNIT: &str = "/lib/systemd/system/xdp-audit.service";
const CONFIG: &str = "/etc/xdp-audit/xdp-audit.toml";

/// Which build of the binary goes into the package.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// `cargo build --release`, stripped, xz-compressed: what `cargo xtask deb` ships.
    Release,
    /// The debug build the tests already made, gzip level 1: the package test's, to spare a
    /// release build in CI (same tree, scripts and unit; a bigger, slower binary).
    Debug,
}

fn root() -> PathBuf {
    let xtask = Path::new(env!("CARGO_MANIFEST_DIR"));
    xtask.parent().unwrap_or(xtask).to_owned()
}

/// Where cargo puts its builds: `CARGO_TARGET_DIR` if set, as cargo itself reads it.
pub(crate) fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root().join("target"), PathBuf::from)
}

fn run(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd.output().with_context(|| format!("spawn {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Copies `from` to `stage/to` with `mode`, making the directories (0755) on the way.
fn put(stage: &Path, from: &Path, to: &str, mode: u32) -> anyhow::Result<()> {
    let dest = stage.join(to.trim_start_matches('/'));
    let dir = dest.parent().context("a staged file has a directory")?;
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    std::fs::copy(from, &dest)
        .with_context(|| format!("copy {} to {}", from.display(), dest.display()))?;
    std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {}", dest.display()))
}

fn control(version: &str, arch: &str, installed_kib: u64) -> String {
    format!(
        "Package: {PACKAGE}\n\
         Version: {version}\n\
         Architecture: {arch}\n\
         Maintainer: xdp-audit developers <xdp-audit@localhost>\n\
         Installed-Size: {installed_kib}\n\
         Depends: libc6 (>= 2.36), libgcc-s1, adduser\n\
         Section: net\n\
         Priority: optional\n\
         Description: XDP packet audit and blocking for Linux gateways\n \
         An XDP program parses every packet on the gateway's interfaces, keeps a flow\n \
         table in the kernel and enforces block and allow lists; the agent writes one\n \
         tamper-evident audit record per flow (hash-chained Parquet segments).\n"
    )
}

/// Builds the package with `profile` and returns its path (under `target/deb/`).
pub fn build(profile: Profile) -> anyhow::Result<PathBuf> {
    let (bin, compression) = match profile {
        Profile::Release => {
            crate::cargo(&[
                "build",
                "--release",
                "-p",
                "xdp-audit",
                "--bin",
                "xdp-audit",
            ])?;
            (target_dir().join("release/xdp-audit"), ["-Zxz", "-z6"])
        }
        Profile::Debug => {
            crate::cargo(&["build", "-p", "xdp-audit", "--bin", "xdp-audit"])?;
            (target_dir().join("debug/xdp-audit"), ["-Zgzip", "-z1"])
        }
    };
    let version = env!("CARGO_PKG_VERSION");
    let arch = run(Command::new("dpkg").arg("--print-architecture"))?;
    let arch = arch.trim();
    let out = target_dir().join("deb");
    let stage = out.join(format!("{PACKAGE}_{version}_{arch}"));
    if stage.exists() {
        std::fs::remove_dir_all(&stage).with_context(|| format!("clear {}", stage.display()))?;
    }
    let packaging = root().join("packaging");
    put(&stage, &bin, "/usr/bin/xdp-audit", 0o755)?;
    if profile == Profile::Release {
        run(Command::new("strip").arg(stage.join("usr/bin/xdp-audit")))?;
    }
    put(&stage, &packaging.join("xdp-audit.service"), UNIT, 0o644)?;
    put(&stage, &packaging.join("xdp-audit.toml"), CONFIG, 0o644)?;
    for list in ["block.list", "allow.list"] {
        put(
            &stage,
            &packaging.join(list),
            &format!("/etc/xdp-audit/{list}"),
            0o644,
        )?;
    }
    put(
        &stage,
        &root().join("README.md"),
        "/usr/share/doc/xdp-audit/README.md",
        0o644,
    )?;
    for script in ["postinst", "prerm", "postrm"] {
        put(
            &stage,
            &packaging.join("debian").join(script),
            &format!("/DEBIAN/{script}"),
            0o755,
        )?;
    }
    let conffiles = ["xdp-audit.toml", "block.list", "allow.list"]
        .map(|f| format!("/etc/xdp-audit/{f}\n"))
        .concat();
    std::fs::write(stage.join("DEBIAN/conffiles"), conffiles).context("write conffiles")?;
    let kib = run(Command::new("du")
        .args(["-sk", "--exclude=DEBIAN"])
        .arg(&stage))?;
    let kib = kib
        .split_whitespace()
        .next()
        .and_then(|k| k.parse().ok())
        .context("du -sk output")?;
    std::fs::write(stage.join("DEBIAN/control"), control(version, arch, kib))
        .context("write control")?;
    let deb = out.join(format!("{PACKAGE}_{version}_{arch}.deb"));
    run(Command::new("dpkg-deb")
        .args(["--root-owner-group", "--build"])
        .args(compression)
        .arg(&stage)
        .arg(&deb))?;
    std::fs::remove_dir_all(&stage).with_context(|| format!("clear {}", stage.display()))?;
    eprintln!("deb: {}", deb.display());
    Ok(deb)
}

fn installed() -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", PACKAGE])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
}

fn getent(db: &str, name: &str) -> bool {
    Command::new("getent")
        .args([db, name])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Purges the package when the test ends, also when it fails, and removes a store and user
/// a purge kept (the test refuses to start where the user existed before).
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        if installed() {
            let _ = Command::new("dpkg").args(["--purge", PACKAGE]).status();
        }
        if getent("passwd", USER) {
            let _ = std::fs::remove_dir_all(STORE);
            let _ = Command::new("userdel").arg(USER).status();
        }
        if getent("group", USER) {
            let _ = Command::new("groupdel").arg(USER).status();
        }
    }
}

/// Waits until the installed agent `child` says in its log `log` that it runs; its log is
/// the error if it exits first.
fn wait_running(child: &mut std::process::Child, log: &Path) -> anyhow::Result<()> {
    poll_until(
        std::time::Duration::from_secs(30),
        "the installed agent runs",
        || {
            let said = std::fs::read_to_string(log).unwrap_or_default();
            if let Some(status) = child.try_wait()? {
                bail!("the installed agent exited ({status}): {said}");
            }
            Ok(said.contains("xdp-audit running"))
        },
    )
}

/// SIGTERM to the agent `child` (the command it was started with execs in place), and its
/// exit status.
fn terminate(child: Option<std::process::Child>) -> anyhow::Result<std::process::ExitStatus> {
    let mut child = child.context("the agent was stopped already")?;
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    child.wait().context("wait for the agent")
}

/// The installed agent run the way its unit runs it (as `xdp-audit`, with the unit's three
/// capabilities as ambient ones) on `lo` of a namespace of its own, stopped once running.
/// Removes the namespace and the runtime directory, and kills the agent, when dropped.
struct UnitLikeRun {
    ns: String,
    child: Option<std::process::Child>,
    log: PathBuf,
}

const RUNTIME: &str = "/run/xdp-audit";

impl UnitLikeRun {
    fn start() -> anyhow::Result<Self> {
        let ns = format!("xa-deb-{}", std::process::id());
        let log = std::env::temp_dir().join(format!("{ns}.log"));
        let mut me = Self {
            ns,
            child: None,
            log,
        };
        run(Command::new("ip").args(["netns", "add", &me.ns]))?;
        run(Command::new("ip").args(["-n", &me.ns, "link", "set", "lo", "up"]))?;
        // systemd's RuntimeDirectory=.
        run(Command::new("install").args(["-d", "-o", USER, "-g", USER, "-m", "0750", RUNTIME]))?;
        let caps = "+bpf,+net_admin,+perfmon";
        let stderr = std::fs::File::create(&me.log)
            .with_context(|| format!("create {}", me.log.display()))?;
        me.child = Some(
            Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    &me.ns,
                    "sh",
                    "-c",
                    EXEC_START_PRE,
                    "sh",
                    "setpriv",
                ])
                .args([&format!("--reuid={USER}"), &format!("--regid={USER}")])
                .arg("--clear-groups")
                .args([
                    &format!("--inh-caps=-all,{caps}"),
                    &format!("--ambient-caps={caps}"),
                ])
                .arg(format!("--bounding-set=-all,{caps}"))
                .args([
                    "/usr/bin/xdp-audit",
                    "run",
                    "--config",
                    CONFIG,
                    "--iface",
                    "lo",
                ])
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(stderr)
                .spawn()
                .context("start the installed agent")?,
        );
        let child = me.child.as_mut().context("the agent was just started")?;
        wait_running(child, &me.log)?;
        Ok(me)
    }

    /// SIGTERM, and the agent's exit status.
    fn stop(&mut self) -> anyhow::Result<std::process::ExitStatus> {
        terminate(self.child.take())
    }
}

impl Drop for UnitLikeRun {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
        let _ = std::fs::remove_dir_all(RUNTIME);
        let _ = std::fs::remove_file(&self.log);
    }
}

/// Second round: install, run the agent as its unit would, so the store fills; a purge then
/// keeps the store and its user, and says so.
fn run_then_purge_keeps_the_records(deb: &Path) -> anyhow::Result<()> {
    run(Command::new("dpkg").arg("-i").arg(deb))?;
    let mut agent = UnitLikeRun::start()?;
    let status = agent.stop()?;
    ensure!(status.success(), "the installed agent exited with {status}");
    let uid: u32 = run(Command::new("id").args(["-u", USER]))?.trim().parse()?;
    let mut files = 0;
    for entry in std::fs::read_dir(STORE).with_context(|| format!("read {STORE}"))? {
        let meta = entry?.metadata()?;
        let mode = meta.mode() & 0o7777;
        ensure!(
            meta.uid() == uid && (mode == 0o640 || (meta.is_dir() && mode == 0o750)),
            "a store file with uid {} mode {mode:o} (want {uid}, 0640 or a 0750 directory)",
            meta.uid()
        );
        files += 1;
    }
    ensure!(files > 0, "the agent wrote nothing to {STORE}");
    let out = Command::new("dpkg")
        .args(["--purge", PACKAGE])
        .output()
        .context("dpkg --purge")?;
    let said = String::from_utf8_lossy(&out.stderr);
    ensure!(
        out.status.success() && said.contains("kept the audit store"),
        "purge with records: {said}"
    );
    ensure!(
        Path::new(STORE).is_dir() && getent("passwd", USER),
        "purge must keep a store that holds records, and its user"
    );
    // The unit preserves its runtime directory across stops; the package takes it along.
    ensure!(
        !Path::new(RUNTIME).exists(),
        "purge left {RUNTIME} (the last agent's status and attribution state)"
    );
    Ok(())
}

/// An agent run as root on `lo` of a namespace of its own, pinned under the default pin
/// root (the host's bpffs, where the package's scripts look) as an instance of its own.
/// Dropped: the agent killed, the instance detached, the namespace and its files removed.
struct PinnedRun {
    ns: String,
    instance: String,
    dir: PathBuf,
    child: Option<std::process::Child>,
}

const PIN_ROOT: &str = "/sys/fs/bpf/xdp-audit";

impl PinnedRun {
    fn start() -> anyhow::Result<Self> {
        let name = format!("xa-deb-rm-{}", std::process::id());
        let mut me = Self {
            dir: std::env::temp_dir().join(&name),
            ns: name.clone(),
            instance: name,
            child: None,
        };
        std::fs::create_dir_all(&me.dir).with_context(|| format!("create {}", me.dir.display()))?;
        run(Command::new("ip").args(["netns", "add", &me.ns]))?;
        run(Command::new("ip").args(["-n", &me.ns, "link", "set", "lo", "up"]))?;
        let log = me.dir.join("agent.log");
        let stderr =
            std::fs::File::create(&log).with_context(|| format!("create {}", log.display()))?;
        let store = me.dir.join("store");
        me.child = Some(
            Command::new("nsenter")
                .arg(format!("--net=/run/netns/{}", me.ns))
                .args(["/usr/bin/xdp-audit", "run", "--iface", "lo", "--instance"])
                .arg(&me.instance)
                .arg("--log-dir")
                .arg(&store)
                .arg("--state-dir")
                .arg(&store)
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(stderr)
                .spawn()
                .context("start the installed agent")?,
        );
        let child = me.child.as_mut().context("the agent was just started")?;
        wait_running(child, &log)?;
        Ok(me)
    }

    fn pins(&self) -> PathBuf {
        Path::new(PIN_ROOT).join(&self.instance)
    }

    /// Whether `lo` of the namespace runs an XDP program.
    fn attached(&self) -> anyhow::Result<bool> {
        let link = run(Command::new("ip").args(["-n", &self.ns, "link", "show", "lo"]))?;
        Ok(link.contains("xdp"))
    }

    /// SIGTERM, and the agent's exit status.
    fn stop(&mut self) -> anyhow::Result<std::process::ExitStatus> {
        terminate(self.child.take())
    }
}

impl Drop for PinnedRun {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if self.pins().exists() {
            let _ = Command::new(target_dir().join("debug/xdp-audit"))
                .args([
                    "detach",
                    "--pin-root",
                    PIN_ROOT,
                    "--instance",
                    &self.instance,
                ])
                .status();
        }
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
        let _ = std::fs::remove_dir_all(&self.dir);
        // The pin root the agent made, if no other instance is in it.
        let _ = std::fs::remove_dir(PIN_ROOT);
    }
}

/// Third round: a stopped agent leaves its program attached and pinned for the next start
/// to adopt; removing the package (no next start) takes it off, so nothing goes on dropping
/// unrecorded.
fn remove_detaches_what_a_stopped_agent_left(deb: &Path) -> anyhow::Result<()> {
    run(Command::new("dpkg").arg("-i").arg(deb))?;
    let mut agent = PinnedRun::start()?;
    let status = agent.stop()?;
    ensure!(status.success(), "the installed agent exited with {status}");
    ensure!(
        agent.pins().is_dir() && agent.attached()?,
        "a stopped agent leaves its program attached and pinned in {}",
        agent.pins().display()
    );
    run(Command::new("dpkg").args(["--remove", PACKAGE]))?;
    ensure!(
        !agent.pins().exists() && !agent.attached()?,
        "removing the package left the program attached or its pins in {}",
        agent.pins().display()
    );
    run(Command::new("dpkg").args(["--purge", PACKAGE]))?;
    Ok(())
}

/// The package test: build (debug binary), install, check what is installed and that
/// `systemd-analyze verify` accepts the unit, purge, and check that every file, the store
/// directory and the user are gone; then install again, run the installed agent as its unit
/// would, and check that its store is the user's (0640) and that a purge keeps it.
pub fn check() -> anyhow::Result<()> {
    for (tool, package) in [
        ("dpkg-deb", "dpkg"),
        ("systemd-analyze", "systemd"),
        ("adduser", "adduser"),
    ] {
        ensure!(
            Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .output()
                .is_ok_and(|o| o.status.success()),
            "the package test needs {tool}: apt-get install {package}"
        );
    }
    ensure!(
        !installed() && !getent("passwd", USER),
        "{PACKAGE} is installed (or its user exists) on this machine: the package test would purge it; run it on a test machine"
    );
    let deb = build(Profile::Debug)?;
    let guard = Installed;
    run(Command::new("dpkg").arg("-i").arg(&deb))?;
    let files: Vec<PathBuf> = run(Command::new("dpkg").args(["-L", PACKAGE]))?
        .lines()
        .map(PathBuf::from)
        .filter(|p| p.is_file())
        .collect();
    ensure!(files.len() >= 6, "dpkg -L lists too few files: {files:?}");
    run(Command::new("/usr/bin/xdp-audit").arg("--version"))?;

    ensure!(getent("passwd", USER), "postinst made no user {USER}");
    let passwd = run(Command::new("getent").args(["passwd", USER]))?;
    ensure!(
        passwd.trim_end().ends_with("/usr/sbin/nologin"),
        "{USER} must not have a login shell: {passwd}"
    );
    let meta = std::fs::metadata(STORE).with_context(|| format!("{STORE} after install"))?;
    let uid: u32 = run(Command::new("id").args(["-u", USER]))?.trim().parse()?;
    ensure!(
        meta.uid() == uid && meta.mode() & 0o7777 == 0o750,
        "{STORE}: uid {} mode {:o}, want {uid} and 0750",
        meta.uid(),
        meta.mode() & 0o7777
    );
    let config = std::fs::metadata(CONFIG).with_context(|| format!("{CONFIG} after install"))?;
    let gid: u32 = run(Command::new("id").args(["-g", USER]))?.trim().parse()?;
    ensure!(
        (config.uid(), config.gid(), config.mode() & 0o7777) == (0, gid, 0o640),
        "{CONFIG}: uid {} gid {} mode {:o}, want root, {USER}'s group and 0640 (it may hold a webhook token)",
        config.uid(),
        config.gid(),
        config.mode() & 0o7777
    );
    let conffiles = run(Command::new("dpkg-query").args(["-W", "-f=${Conffiles}", PACKAGE]))?;
    for f in [
        CONFIG,
        "/etc/xdp-audit/block.list",
        "/etc/xdp-audit/allow.list",
    ] {
        ensure!(conffiles.contains(f), "{f} is not a conffile: {conffiles}");
    }
    let verify = Command::new("systemd-analyze")
        .args(["verify", UNIT])
        .output()
        .context("run systemd-analyze verify")?;
    let said = String::from_utf8_lossy(&verify.stderr).into_owned()
        + &String::from_utf8_lossy(&verify.stdout);
    ensure!(
        verify.status.success() && said.trim().is_empty(),
        "systemd-analyze verify {UNIT}: {said}"
    );
    // The installed config is complete but for the interfaces.
    let started = Command::new("/usr/bin/xdp-audit")
        .args(["run", "--config", CONFIG])
        .output()
        .context("run xdp-audit with the installed config")?;
    let err = String::from_utf8_lossy(&started.stderr);
    ensure!(
        !started.status.success() && err.contains("--iface") && !err.contains(CONFIG),
        "the installed config should be valid and lack only the interfaces: {err}"
    );

    run(Command::new("dpkg").args(["--purge", PACKAGE]))?;
    let left: Vec<&PathBuf> = files.iter().filter(|f| f.exists()).collect();
    ensure!(left.is_empty(), "purge left {left:?}");
    for dir in ["/etc/xdp-audit", STORE, "/usr/share/doc/xdp-audit"] {
        ensure!(!Path::new(dir).exists(), "purge left {dir}");
    }
    ensure!(!getent("passwd", USER), "purge left the user {USER}");
    ensure!(!getent("group", USER), "purge left the group {USER}");
    run_then_purge_keeps_the_records(&deb)?;
    remove_detaches_what_a_stopped_agent_left(&deb)?;
    drop(guard);
    ensure!(!getent("passwd", USER), "the test left the user {USER}");
    eprintln!(
        "deb: installed, unit verified, purged clean ({} files); run as the unit would, a purge kept the records and said so; a removal detached what a stopped agent left",
        files.len()
    );
    Ok(())
}
