use super::*;

use std::io::Read;
use std::process::Command;
use std::sync::mpsc;

#[test]
fn sets_print_as_capability_names() {
    let set = CapSet::BPF.with(CapSet::NET_ADMIN).with(CapSet::PERFMON);
    assert_eq!(set.to_string(), "CAP_NET_ADMIN CAP_PERFMON CAP_BPF");
    assert_eq!(CapSet::EMPTY.to_string(), "none");
    assert_eq!(CapSet::from_bits(1 << 50).to_string(), "cap50");
    assert_eq!(
        CapSet::SETUID.with(CapSet::SETGID).to_string(),
        "CAP_SETGID CAP_SETUID"
    );
}

const STATUS: &str = "Name:\txdp-audit-seale\nUmask:\t0022\nState:\tS (sleeping)\n\
Uid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\n\
CapInh:\t0000000000000000\nCapPrm:\t000000c000001000\nCapEff:\t000000c000001000\n\
CapBnd:\t000001ffffffffff\nCapAmb:\t0000000000000000\nNoNewPrivs:\t1\nSeccomp:\t0\n";

#[test]
fn thread_status_fields_are_read() {
    let t = ThreadCaps::parse(42, STATUS).expect("a complete status");
    let startup = CapSet::BPF.with(CapSet::NET_ADMIN).with(CapSet::PERFMON);
    assert_eq!(t.name, "xdp-audit-seale");
    assert_eq!((t.effective, t.permitted), (startup, startup));
    assert_eq!(t.bounding, CapSet::from_bits(0x1ff_ffff_ffff));
    assert!(t.no_new_privs && t.ambient.is_empty() && t.inheritable.is_empty());
    assert!(t.holds_only(startup, false));
    assert!(!t.holds_only(CapSet::NET_ADMIN, false), "CAP_BPF is held");
    assert!(!t.holds_only(startup, true), "the bounding set is wider");
    assert!(t.runs_as(0, 0) && !t.runs_as(65534, 0));
    let without_amb = STATUS.replace("CapAmb:\t0000000000000000\n", "");
    assert_eq!(ThreadCaps::parse(42, &without_amb), None);
    let switched = STATUS.replace("Uid:\t0\t0\t0\t0", "Uid:\t0\t65534\t65534\t65534");
    let half = ThreadCaps::parse(42, &switched).expect("a complete status");
    assert!(!half.runs_as(65534, 0), "the real uid is still root");
}

#[test]
fn runtime_needs_follow_the_kernel_and_the_features() {
    let plain = Needs::default();
    let nat = Needs { conntrack: true };
    assert_eq!(needed_after_attach(plain, (6, 18)), CapSet::EMPTY);
    assert_eq!(needed_after_attach(plain, (5, 19)), CapSet::EMPTY);
    assert_eq!(needed_after_attach(plain, (5, 15)), CapSet::BPF);
    assert_eq!(needed_after_attach(nat, (6, 1)), CapSet::NET_ADMIN);
    assert_eq!(
        needed_after_attach(plain, (0, 0)),
        CapSet::BPF,
        "unknown kernel"
    );
    let (major, _) = kernel_version();
    assert!(major >= 5, "uname: {:?}", kernel_version());
}

#[test]
fn unknown_users_and_readable_secrets_are_refused_by_name() {
    let root = RunAs::lookup("root").expect("root exists");
    assert_eq!((root.uid, root.gid), (0, 0));
    let err = root.not_root().expect_err("--user root");
    assert!(err.to_string().contains("uid 0"), "{err}");
    let nobody = RunAs::lookup("nobody").expect("the nobody user (Debian base-passwd)");
    assert_eq!(
        nobody.not_root().expect("nobody is not root").name,
        "nobody"
    );
    let err = RunAs::lookup("no-such-user-xa").expect_err("no such user");
    assert!(err.to_string().contains("no-such-user-xa"), "{err}");
    let path = std::env::temp_dir().join(format!("xa-secret-{}", std::process::id()));
    std::fs::write(&path, "k").expect("write the key file");
    let mode = |m| {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(m)).expect("chmod");
        check_secret_file(&path)
    };
    assert!(mode(0o600).is_ok());
    assert!(mode(0o400).is_ok());
    for m in [0o640, 0o604, 0o644] {
        let err = mode(m).expect_err("readable by others").to_string();
        let named = format!("{}: mode 0{m:o}", path.display());
        assert!(err.contains(&named) && err.contains("`chmod 600`"), "{err}");
    }
    let _ = std::fs::remove_file(&path);
}

/// The environment variable that makes [`drop_child`] do its work.
const CHILD_ENV: &str = "XDP_AUDIT_DROP_CHILD";

/// Capabilities are per thread: the drop must reach threads that already exist, including
/// ones blocked in system calls, and threads created afterwards must inherit the result. Run
/// in a child process, since it takes the capabilities of every thread of its process.
#[test]
fn drop_reaches_every_thread() {
    in_child("drop_child");
}

/// Runs the ignored test `name` of this module in a child process and checks it passed.
fn in_child(name: &str) {
    let exe = std::env::current_exe().expect("test binary path");
    let out = Command::new(exe)
        .args([&format!("privilege::tests::{name}"), "--exact", "--ignored"])
        .arg("--nocapture")
        .env(CHILD_ENV, "1")
        .output()
        .expect("re-run the test binary");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && text.contains(&format!("{name}: ok")),
        "the child process failed:\n{text}"
    );
}

/// `run --user`: every thread, including one that existed before, switches user and keeps
/// exactly what loading needs; files made afterwards belong to the user; the later drop
/// after attach still narrows the bounding set.
#[test]
fn user_switch_reaches_every_thread() {
    in_child("switch_child");
}

#[test]
#[ignore = "run by user_switch_reaches_every_thread in a child process of its own"]
fn switch_child() {
    assert_eq!(
        std::env::var(CHILD_ENV).as_deref(),
        Ok("1"),
        "run only through user_switch_reaches_every_thread"
    );
    let nobody = RunAs::lookup("nobody").expect("the nobody user (Debian base-passwd)");
    let (release, wait) = mpsc::channel::<()>();
    let waiter = std::thread::spawn(move || wait.recv().is_ok());
    let dropped = become_user(&nobody).expect("switch to nobody");
    assert_eq!(dropped.kept, LOAD.with(CapSet::SETPCAP));
    for t in threads_of(std::process::id()).expect("threads") {
        assert!(t.runs_as(nobody.uid, nobody.gid), "{t}");
        assert!(t.holds_only(LOAD.with(CapSet::SETPCAP), true), "{t}");
        assert_eq!(t.effective, LOAD.with(CapSet::SETPCAP), "{t}");
    }
    // SAFETY: getgroups with a zero size only counts.
    assert_eq!(unsafe { libc::getgroups(0, std::ptr::null_mut()) }, 1);
    let dir = std::env::temp_dir();
    let path = dir.join(format!("xa-switch-{}", std::process::id()));
    match std::fs::write(&path, "x") {
        Ok(()) => {
            use std::os::unix::fs::MetadataExt as _;
            let meta = std::fs::metadata(&path).expect("stat the new file");
            let _ = std::fs::remove_file(&path);
            assert_eq!((meta.uid(), meta.gid()), (nobody.uid, nobody.gid));
        }
        Err(e) => panic!("nobody cannot create {}: {e}", path.display()),
    }
    let after = drop_to(CapSet::EMPTY, None).expect("drop after attach");
    assert!(after.bounding_cleared, "CAP_SETPCAP was kept for this");
    for t in threads_of(std::process::id()).expect("threads") {
        assert!(t.holds_only(CapSet::EMPTY, true), "{t}");
        assert!(t.runs_as(nobody.uid, nobody.gid), "{t}");
    }
    release.send(()).expect("release the waiter");
    assert!(waiter.join().expect("waiter"), "the waiter's recv failed");
    println!("switch_child: ok");
}

#[test]
#[ignore = "run by drop_reaches_every_thread in a child process of its own"]
fn drop_child() {
    assert_eq!(
        std::env::var(CHILD_ENV).as_deref(),
        Ok("1"),
        "run only through drop_reaches_every_thread"
    );
    let (effective, _) = capget().expect("capget");
    assert!(
        CapSet::NET_ADMIN.with(CapSet::SETPCAP).is_subset(effective),
        "this test needs root (CAP_NET_ADMIN and CAP_SETPCAP), has {effective}"
    );
    // Threads blocked on a channel, in read(2) on a pipe, and one spinning.
    let (release, wait) = mpsc::channel::<()>();
    let waiter = std::thread::spawn(move || wait.recv().is_ok());
    let mut fds = [0; 2];
    // SAFETY: pipe(2) into a two-element array.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0, "pipe");
    // SAFETY: the read end is ours from here on.
    let mut reader: std::fs::File = unsafe { std::os::fd::FromRawFd::from_raw_fd(fds[0]) };
    let blocked = std::thread::spawn(move || {
        let mut b = [0u8; 1];
        reader.read(&mut b).is_ok()
    });
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let spin_stop = stop.clone();
    let spinner = std::thread::spawn(move || {
        let mut n = 0u64;
        while !spin_stop.load(Ordering::Relaxed) {
            n = n.wrapping_add(1);
        }
        n
    });

    let dropped = drop_to(CapSet::NET_ADMIN, None).expect("drop");
    assert_eq!(dropped.kept, CapSet::NET_ADMIN);
    assert!(dropped.bounding_cleared, "root may clear the bounding set");
    assert!(dropped.threads >= 4, "{dropped:?}");
    // A thread made now inherits the dropped sets, and cannot raise its priority
    // (CAP_SYS_NICE), which root could before.
    let late = std::thread::spawn(|| {
        // SAFETY: setpriority on the calling thread only.
        unsafe { libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, -5) }
    });
    assert_eq!(late.join().expect("late thread"), -1, "CAP_SYS_NICE kept");
    let threads = threads_of(std::process::id()).expect("threads");
    for t in &threads {
        assert!(t.holds_only(CapSet::NET_ADMIN, true), "{t}");
        assert_eq!(t.effective, CapSet::NET_ADMIN, "{t}");
    }
    release.send(()).expect("release the waiter");
    // SAFETY: writing one byte to the pipe's write end, then closing it.
    unsafe {
        libc::write(fds[1], b"x".as_ptr().cast(), 1);
        libc::close(fds[1]);
    }
    stop.store(true, Ordering::Relaxed);
    assert!(waiter.join().expect("waiter"), "the waiter's recv failed");
    assert!(blocked.join().expect("reader"), "read(2) was not restarted");
    spinner.join().expect("spinner");
    println!("drop_child: ok ({} threads)", threads.len());
}

/// Asks for a dump of the conntrack table over nfnetlink and returns the error the kernel
/// answers with (0: none, the dump started).
fn conntrack_dump_errno() -> i32 {
    // SAFETY: socket, send and recv on a descriptor this function owns and closes.
    unsafe {
        let fd = libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_NETFILTER,
        );
        assert!(
            fd >= 0,
            "netlink socket: {}",
            std::io::Error::last_os_error()
        );
        // nlmsghdr (16 bytes) + nfgenmsg (family AF_INET, version 0, res_id 0).
        // Type: NFNL_SUBSYS_CTNETLINK (1) << 8 | IPCTNL_MSG_CT_GET (1).
        let flags = (libc::NLM_F_REQUEST | libc::NLM_F_DUMP | libc::NLM_F_ACK) as u16;
        let mut msg = Vec::with_capacity(20);
        msg.extend_from_slice(&20u32.to_ne_bytes());
        msg.extend_from_slice(&0x0101u16.to_ne_bytes());
        msg.extend_from_slice(&flags.to_ne_bytes());
        msg.extend_from_slice(&1u32.to_ne_bytes());
        msg.extend_from_slice(&0u32.to_ne_bytes());
        msg.extend_from_slice(&[libc::AF_INET as u8, 0, 0, 0]);
        let sent = libc::send(fd, msg.as_ptr().cast(), msg.len(), 0);
        assert_eq!(sent, 20, "send: {}", std::io::Error::last_os_error());
        let mut buf = [0u8; 8192];
        let n = libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0);
        libc::close(fd);
        assert!(n >= 16, "recv: {}", std::io::Error::last_os_error());
        let kind = u16::from_ne_bytes([buf[4], buf[5]]);
        if kind == libc::NLMSG_ERROR as u16 {
            -i32::from_ne_bytes([buf[16], buf[17], buf[18], buf[19]])
        } else {
            0
        }
    }
}

/// NAT attribution reads conntrack over netlink after attach: nfnetlink refuses every
/// request without CAP_NET_ADMIN, so that feature keeps it ([`Needs::conntrack`]).
#[test]
fn conntrack_needs_net_admin() {
    in_child("conntrack_child");
}

#[test]
#[ignore = "run by conntrack_needs_net_admin in a child process of its own"]
fn conntrack_child() {
    assert_eq!(std::env::var(CHILD_ENV).as_deref(), Ok("1"));
    let kept = needed_after_attach(Needs { conntrack: true }, kernel_version());
    drop_to(kept, None).expect("drop to what NAT attribution keeps");
    let with = conntrack_dump_errno();
    assert_ne!(with, libc::EPERM, "refused with CAP_NET_ADMIN");
    drop_to(CapSet::EMPTY, None).expect("drop everything");
    assert_eq!(
        conntrack_dump_errno(),
        libc::EPERM,
        "conntrack without CAP_NET_ADMIN"
    );
    println!("conntrack_child: ok (with CAP_NET_ADMIN: errno {with})");
}

/// The store's configuration is logged and printed in errors with `{:?}`; the signing key in
/// it must show only its public half.
#[test]
fn the_signing_key_never_prints_its_secret() {
    let seed = [0x5a_u8; 32];
    let config = crate::store::StoreConfig {
        signing_key: Some(ed25519_dalek::SigningKey::from_bytes(&seed)),
        ..crate::store::StoreConfig::new("/var/lib/xdp-audit")
    };
    let shown = format!("{config:?} {config:#?}");
    assert!(shown.contains("SigningKey"), "{shown}");
    for form in [
        crate::store::fsutil::hex(&seed),
        format!("{seed:?}"),
        "90, 90".into(),
    ] {
        assert!(
            !shown.contains(&form),
            "the secret shows as {form}: {shown}"
        );
    }
}

/// A directory made for `--user` with missing parents: every directory made is the user's,
/// so the user can reach the last (the parents were root's at 0750). Needs root (chown).
#[test]
fn a_new_directory_and_the_parents_made_for_it_belong_to_the_user() {
    use std::os::unix::fs::MetadataExt as _;
    let nobody = RunAs::lookup("nobody").expect("the nobody user (Debian base-passwd)");
    let top = std::env::temp_dir().join(format!("xa-own-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&top);
    std::fs::create_dir(&top).expect("create the test directory");
    let dir = top.join("a").join("b").join("log");
    let owned = nobody.own_new_dir(&dir);
    let owners: Vec<(u32, u32)> = [top.join("a"), top.join("a/b"), dir.clone()]
        .iter()
        .map(|p| {
            std::fs::metadata(p)
                .map(|m| (m.uid(), m.gid()))
                .unwrap_or((0, 0))
        })
        .collect();
    let top_owner = std::fs::metadata(&top).map(|m| m.uid()).unwrap_or(u32::MAX);
    let _ = std::fs::remove_dir_all(&top);
    owned.expect("make the directory");
    assert_eq!(owners, vec![(nobody.uid, nobody.gid); 3]);
    assert_eq!(top_owner, 0, "an existing parent is left as it is");
    // A relative path (its last ancestor is "", which never exists).
    let rel = std::path::PathBuf::from(format!("xa-own-rel-{}", std::process::id()));
    let made = nobody.own_new_dir(&rel.join("log"));
    let owner = std::fs::metadata(&rel).map(|m| m.uid());
    let _ = std::fs::remove_dir_all(&rel);
    made.expect("make a relative directory");
    assert_eq!(owner.ok(), Some(nobody.uid));
}

#[test]
fn ip_sockets_are_refused_only_when_both_families_are() {
    let e = |n| Some(std::io::Error::from_raw_os_error(n));
    assert!(sandboxed([e(libc::EAFNOSUPPORT), e(libc::EAFNOSUPPORT)]).is_some());
    assert!(sandboxed([e(libc::EPERM), e(libc::EAFNOSUPPORT)]).is_some());
    assert!(
        sandboxed([e(libc::EAFNOSUPPORT), None]).is_none(),
        "IPv6 only"
    );
    assert!(
        sandboxed([None, e(libc::EAFNOSUPPORT)]).is_none(),
        "IPv4 only"
    );
    assert!(
        sandboxed([e(libc::EMFILE), e(libc::EMFILE)]).is_none(),
        "no sandbox"
    );
}
