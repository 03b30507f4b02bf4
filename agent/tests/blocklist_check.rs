//! `xdp-audit blocklist check` as a user runs it: the built binary on a good and a bad file.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("xdp-audit-it-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn check(files: &[&Path]) -> (Output, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_xdp-audit"))
        .args(["blocklist", "check"])
        .args(files)
        .output()
        .expect("run xdp-audit");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    (out, text)
}

#[test]
fn a_good_file_passes_with_a_summary() {
    let dir = TempDir::new("good");
    let good = dir.0.join("good.txt");
    std::fs::write(
        &good,
        "# gateway blocklist\r\n192.0.2.1\r\n198.51.100.0/24\r\n198.51.100.7\r\n\
         2001:db8::1\n2001:db8:1::/48\n10.0.0.1-10.0.0.6\nexample.com\nwww.example.com\n\
         ||ads.example.net^\n0.0.0.0 tracker.example t.example\n127.0.0.1 localhost\n\
         port tcp 25\nport udp 53-60\n\n",
    )
    .expect("write");
    let (out, text) = check(&[&good]);
    assert!(out.status.success(), "{text}");
    let p = good.display();
    assert_eq!(
        text,
        format!(
            "{p}: ok\n\
             \x20 lines 15: 12 rules, 1 comments, 1 blank, 1 hosts boilerplate\n\
             \x20 v4 exact 3, v4 prefixes 3, v6 exact 1, v6 prefixes 1, domains 4, port rules 2 (9 ports)\n\
             \x20 folded 2: 0 duplicates, 2 covered by a broader entry\n"
        )
    );
}

#[test]
fn a_bad_file_fails_naming_every_bad_line() {
    let dir = TempDir::new("bad");
    let good = dir.0.join("good.txt");
    let bad = dir.0.join("bad.txt");
    std::fs::write(&good, "192.0.2.1\n").expect("write");
    std::fs::write(
        &bad,
        b"192.0.2.1\n10.0.0.0/33\nexample.com\n10.0.0.1/8\nport icmp 8\nbad\xff.com\n".as_slice(),
    )
    .expect("write");
    let (out, text) = check(&[&good, &bad]);
    assert_eq!(out.status.code(), Some(1), "{text}");
    let b = bad.display();
    let want = [
        format!("{b}:2: CIDR `10.0.0.0/33`: prefix length 33 is over 32 for IPv4"),
        format!("{b}:4: CIDR `10.0.0.1/8` has host bits set after the prefix; the network is `10.0.0.0/8`"),
        format!("{b}:5: port rule: protocol `icmp` is not `tcp` or `udp`"),
        format!("{b}:6: line is not valid UTF-8 (byte 0xff at column 4)"),
        format!("{b}: 4 bad lines; the file would not be applied"),
    ];
    for w in &want {
        assert!(text.contains(w.as_str()), "missing `{w}` in:\n{text}");
    }
    assert!(
        text.starts_with(&format!("{}: ok\n", good.display())),
        "{text}"
    );
    let (out, text) = check(&[&dir.0.join("missing.txt")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text.contains("missing.txt: cannot read:"), "{text}");
}

/// `blocklist check --help` and `check --help` (one command for every file the agent reads)
/// both list the list formats.
#[test]
fn help_teaches_the_formats() {
    for command in [&["blocklist", "check", "--help"][..], &["check", "--help"]] {
        let out = Command::new(env!("CARGO_BIN_EXE_xdp-audit"))
            .args(command)
            .output()
            .expect("run xdp-audit");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success());
        for form in [
            "192.0.2.0/24",
            "10.0.0.5-10.0.0.20",
            "*.example.com",
            "||example.com^",
            "0.0.0.0 ads.example",
            "port udp 53-60",
        ] {
            assert!(text.contains(form), "{command:?} lacks `{form}`");
        }
    }
}
