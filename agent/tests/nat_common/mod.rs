//! The NAT tests' lab and helpers: a gateway that masquerades its internet side with
//! nftables, a listener feeding a shared table, `conntrack -L` parsed, and what each
//! namespace's counters said when an exchange failed.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use xdp_audit::enrich::nat::{ConntrackListener, ListenerConfig, NatTable, NatUpdate, TableConfig};
use xdp_audit_lab::lab::{self, sh, Lab};
use xdp_audit_lab::netns::run_in;

pub const TCP: u8 = 6;
pub const UDP: u8 = 17;
pub const ICMP: u8 = 1;
/// A second client address, so two clients can use the same source port and the gateway must
/// translate one of them (with one client, masquerade keeps most ports and a test could not
/// tell the inside port from the outside one).
pub const CLIENT2_V4: &str = "198.51.100.3";
pub const TCP_PORT: u16 = 8080;
pub const UDP_PORT: u16 = 5353;

pub fn v4(s: &str) -> IpAddr {
    s.parse().unwrap_or_else(|e| panic!("address {s}: {e}"))
}

/// The lab with masquerade on the gateway's internet side and a second client address.
pub fn nat_lab(tag: &str) -> Lab {
    let lab = Lab::new(tag).unwrap_or_else(|e| panic!("build the netns lab (root?): {e:#}"));
    // One statement per line: nft 1.0.6 rejects a closing brace after a statement on one line.
    let ruleset = format!(
        "table ip xanat {{\n chain post {{\n  type nat hook postrouting priority srcnat; policy accept;\n  \
         oifname \"{}\" masquerade\n }}\n}}\n",
        lab::GW_WAN_IF
    );
    let path = std::env::temp_dir().join(format!("{}.nft", lab.gateway));
    std::fs::write(&path, &ruleset).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    let loaded = sh(lab.cmd(&lab.gateway, "nft").arg("-f").arg(&path));
    let _ = std::fs::remove_file(&path);
    loaded.unwrap_or_else(|e| {
        panic!("nft masquerade in the gateway (apt-get install nftables): {e:#}")
    });
    sh(lab.cmd(&lab.client, "ip").args([
        "addr",
        "add",
        &format!("{CLIENT2_V4}/24"),
        "dev",
        "eth0",
    ]))
    .unwrap_or_else(|e| panic!("second client address: {e:#}"));
    lab
}

/// The table the listener feeds, with a condition variable to wait on.
pub struct Shared {
    pub table: Mutex<NatTable>,
    changed: Condvar,
    /// While set, the sink blocks on the first event after the start dump.
    hold: Mutex<bool>,
    released: Condvar,
    started: AtomicBool,
}

impl Shared {
    pub fn new(hold: bool) -> Arc<Self> {
        Arc::new(Self {
            table: Mutex::new(NatTable::new(TableConfig::default())),
            changed: Condvar::new(),
            hold: Mutex::new(hold),
            released: Condvar::new(),
            started: AtomicBool::new(false),
        })
    }

    pub fn sink(self: &Arc<Self>) -> impl FnMut(NatUpdate) -> bool + Send + 'static {
        let me = self.clone();
        move |u| {
            if me.started.load(Ordering::Relaxed) {
                let mut held = me.hold.lock().unwrap_or_else(|p| p.into_inner());
                while *held {
                    held = me.released.wait(held).unwrap_or_else(|p| p.into_inner());
                }
            }
            if matches!(u, NatUpdate::DumpEnd { .. }) {
                me.started.store(true, Ordering::Relaxed);
            }
            me.table.lock().unwrap_or_else(|p| p.into_inner()).apply(u);
            me.changed.notify_all();
            true
        }
    }

    pub fn release(&self) {
        *self.hold.lock().unwrap_or_else(|p| p.into_inner()) = false;
        self.released.notify_all();
    }

    /// Waits until `pred` holds on the table, or panics naming `what`.
    pub fn wait_until(&self, what: &str, timeout: Duration, pred: impl Fn(&NatTable) -> bool) {
        let deadline = Instant::now() + timeout;
        let mut t = self.table.lock().unwrap_or_else(|p| p.into_inner());
        while !pred(&t) {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "timed out after {timeout:?} waiting for {what}"
            );
            t = self
                .changed
                .wait_timeout(t, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

pub fn listen(lab: &Lab, shared: &Arc<Shared>, config: ListenerConfig) -> ConntrackListener {
    let config = ListenerConfig {
        netns: Some(PathBuf::from(format!("/run/netns/{}", lab.gateway))),
        ..config
    };
    let l = ConntrackListener::spawn(config, shared.sink())
        .unwrap_or_else(|e| panic!("start the conntrack listener in the gateway namespace: {e}"));
    shared.wait_until("the start dump", Duration::from_secs(10), |_| {
        shared.started.load(Ordering::Relaxed)
    });
    l
}

/// One line of `conntrack -L -o id` (`NAME NUMBER TIMEOUT [STATE] key=value...`): the original and reply tuples and the entry id.
#[derive(Clone, Debug)]
pub struct CtLine {
    pub orig_src: IpAddr,
    pub orig_sport: u16,
    pub orig_dst: IpAddr,
    pub reply_dst: IpAddr,
    pub reply_dport: u16,
    pub id: u32,
}

pub fn conntrack_list(lab: &Lab, proto: &str) -> Vec<CtLine> {
    let out = sh(lab
        .cmd(&lab.gateway, "conntrack")
        .args(["-L", "-p", proto, "-o", "id"]))
    .unwrap_or_else(|e| panic!("conntrack -L in the gateway (apt-get install conntrack): {e:#}"));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| {
            parse_ct_line(line).unwrap_or_else(|| panic!("unreadable conntrack -L line {line:?}"))
        })
        .collect()
}

/// Reads a `conntrack -L -o id` line: the first src/dst/sport (or ICMP id) belong to the
/// original tuple, the second to the reply tuple; the last `id=` is the entry's id.
pub fn parse_ct_line(line: &str) -> Option<CtLine> {
    let mut fields: HashMap<&str, Vec<&str>> = HashMap::new();
    let mut words = line.split_whitespace();
    let _name = words.next()?;
    let proto: u8 = words.next()?.parse().ok()?;
    for w in words {
        if let Some((k, v)) = w.split_once('=') {
            fields.entry(k).or_default().push(v);
        }
    }
    let get = |k: &str, i: usize| fields.get(k).and_then(|v| v.get(i)).copied();
    let (port_key, id_at) = if proto == ICMP {
        ("id", 2)
    } else {
        ("sport", 0)
    };
    let dport = |i| {
        if proto == ICMP {
            get("id", i)
        } else {
            get("dport", i)
        }
    };
    Some(CtLine {
        orig_src: get("src", 0)?.parse().ok()?,
        orig_sport: get(port_key, 0)?.parse().ok()?,
        orig_dst: get("dst", 0)?.parse().ok()?,
        reply_dst: get("dst", 1)?.parse().ok()?,
        reply_dport: dport(1)?.parse().ok()?,
        id: get("id", id_at)?.parse().ok()?,
    })
}

pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .expect("clock after 1970")
}

/// A TCP connection from a chosen source address and port.
pub fn connect_from(src: SocketAddr, dst: SocketAddr) -> std::io::Result<TcpStream> {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    s.set_reuse_address(true)?;
    s.bind(&src.into())?;
    s.connect_timeout(&dst.into(), Duration::from_secs(5))?;
    Ok(s.into())
}

/// Prints what the namespaces' counters, conntrack and neighbours say, for a failure's log:
/// a lost datagram shows where it went.
pub fn dump_lab_state(lab: &Lab) {
    for ns in [&lab.client, &lab.gateway, &lab.internet] {
        for c in [
            &["nstat", "-az"][..],
            &["conntrack", "-S"],
            &["conntrack", "-L", "-p", "udp"],
            &["ip", "-s", "link"],
            &["ip", "neigh"],
        ] {
            if let Ok(o) = lab.cmd(ns, c[0]).args(&c[1..]).output() {
                eprintln!(
                    "{ns} {}:\n{}{}",
                    c.join(" "),
                    String::from_utf8_lossy(&o.stdout),
                    String::from_utf8_lossy(&o.stderr)
                );
            }
        }
    }
}

/// Runs `f` in namespace `ns` on a background thread.
pub fn in_ns_bg<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> std::thread::JoinHandle<anyhow::Result<T>> {
    let ns = ns.to_owned();
    std::thread::spawn(move || run_in(&ns, f))
}
