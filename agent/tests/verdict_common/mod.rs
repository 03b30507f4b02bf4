//! The verdict tests' lab, shared by `verdict.rs` (addresses, prefixes, ports) and
//! `verdict_dns.rs` (DNS names): the program loaded with list files of its own, run through
//! BPF_PROG_TEST_RUN, and the frames and checks both use. A test file declares `mod common;`
//! (the crafted packets) beside this module.
#![allow(dead_code)]

use std::path::PathBuf;

use agent_common::{Counter, FlowKey};
use aya::programs::{TestRun, TestRunOptions};
use xdp_audit::blocklist::{Capacity, CompiledLists, ListKind, ListSet};
use xdp_audit::loader::{LoadOptions, Loaded};
use xdp_audit::reader::Event;

use crate::common::{tcp, v4, Spec};

pub const PASS: u32 = 2;
pub const DROP: u32 = 1;
/// BPF_PROG_TEST_RUN runs the program as if on `lo`.
pub const LO: u32 = 1;

pub struct Lab {
    pub dir: PathBuf,
    pub lists: ListSet,
    pub loaded: Loaded,
}

impl Lab {
    /// The program loaded with a key of its own (the loader draws it), read back from its map
    /// for the list set, as an agent adopting a running program would; tables of 1,024
    /// entries.
    pub fn new(tag: &str, block: &str, allow: &str) -> Self {
        Self::sized(tag, block, allow, &[])
    }

    /// [`Lab::new`] with some maps' sizes set (`(name, entries)`).
    pub fn sized(tag: &str, block: &str, allow: &str, sizes: &[(&'static str, u32)]) -> Self {
        let dir =
            std::env::temp_dir().join(format!("xdp-audit-verdict-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        std::fs::write(dir.join("block.list"), block).expect("write");
        std::fs::write(dir.join("allow.list"), allow).expect("write");
        let capacity = Capacity::for_lists(&CompiledLists::default(), 1024);
        let mut loaded = Loaded::load(LoadOptions {
            flow_table_size: 1024,
            ringbuf_bytes: 1 << 16,
            list_capacity: [capacity.map_sizes(), sizes.to_vec()].concat(),
            domain_key: None,
            ..Default::default()
        })
        .unwrap_or_else(|e| panic!("load the XDP program (root?): {e}"));
        let key = loaded.lists.domain_key().expect("read the program's key");
        let mut lists = ListSet::new(
            [
                (dir.join("block.list"), ListKind::Block),
                (dir.join("allow.list"), ListKind::Allow),
            ],
            key,
        );
        lists.set_capacity(capacity);
        let (delta, problems) = lists.reload_all();
        assert!(problems.is_empty(), "{problems:?}");
        loaded.lists.apply(&delta).expect("apply lists");
        Self { dir, lists, loaded }
    }

    pub fn run(&mut self, frame: &[u8]) -> u32 {
        let frame = crate::common::sealed(frame);
        let prog = self.loaded.program_mut().expect("program");
        prog.test_run(TestRunOptions {
            data_in: Some(&frame),
            ..Default::default()
        })
        .expect("BPF_PROG_TEST_RUN")
        .return_value
    }

    pub fn rewrite(&mut self, file: &str, text: &str) {
        let path = self.dir.join(file);
        std::fs::write(&path, text).expect("write");
        let delta = self.lists.reload(&path).expect("the edit is valid");
        self.loaded.lists.apply(&delta).expect("apply");
    }

    pub fn counter(&self, c: Counter) -> u64 {
        xdp_audit::stats::read(&self.loaded.stats)
            .expect("stats")
            .into_iter()
            .find(|(k, _)| *k == c)
            .map_or(0, |(_, n)| n)
    }

    pub fn drops(&mut self) -> Vec<(FlowKey, u32)> {
        (self.events().into_iter())
            .filter_map(|e| match e {
                Event::FlowDrop(k, _, rule) => Some((k, rule)),
                _ => None,
            })
            .collect()
    }

    /// Every ring event, drained, in the order the program wrote them.
    pub fn events(&mut self) -> Vec<Event> {
        crate::common::prog::drain_ring(&self.loaded.events)
    }

    pub fn rule_line(&self, id: u32) -> u32 {
        self.lists.origin(id).map_or(0, |o| o.line)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn to(dst: [u8; 4], dport: u16) -> Vec<u8> {
    Spec::tcp4(v4(198, 51, 100, 2), 40000, dst, dport, tcp::SYN).build()
}

/// Runs `frame`, which its flow's verdict drops, once, then 5 x `repeat` times while a
/// thread copies the flow's entry; no copy may hold more packets than drops, and the entry
/// ends with every run counted once, as a packet and as a drop.
pub fn copies_while_it_counts(lab: &mut Lab, frame: &[u8], repeat: u32) {
    assert_eq!(lab.run(frame), DROP);
    let [(key, _)] = lab.drops()[..] else {
        panic!("one first drop")
    };
    let maps = lab.loaded.flow_maps().try_clone().expect("second handles");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reading = stop.clone();
    let reader = std::thread::spawn(move || {
        let (mut copies, mut torn) = (0u64, 0u64);
        while !reading.load(std::sync::atomic::Ordering::Relaxed) {
            let v = maps.table().get(&key).expect("lookup").expect("the flow");
            copies += 1;
            torn += u64::from(v.packets[0] > v.drops);
        }
        (copies, torn)
    });
    let frame = crate::common::sealed(frame);
    let prog = lab.loaded.program_mut().expect("program");
    for _ in 0..5 {
        prog.test_run(TestRunOptions {
            data_in: Some(&frame),
            repeat,
            ..Default::default()
        })
        .expect("BPF_PROG_TEST_RUN");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (copies, torn) = reader.join().expect("reader");
    assert!(
        copies > 10_000,
        "premise: copies made while it ran: {copies}"
    );
    assert_eq!(
        torn, 0,
        "copies with a packet and not its drop, of {copies}"
    );
    let v = lab
        .loaded
        .flow_table()
        .get(&key)
        .expect("lookup")
        .expect("the flow");
    let runs = 1 + 5 * u64::from(repeat);
    assert_eq!((v.packets[0], v.drops), (runs, runs), "packets and drops");
}

/// The first IPv4 fragment of `spec`'s untagged datagram, holding `l4_bytes` of it past the
/// IP header (a multiple of 8; the rest would follow in later fragments).
pub fn first_fragment(spec: &Spec, l4_bytes: usize) -> Vec<u8> {
    let mut s = spec.clone();
    s.ipv4_frag = (0, true);
    let mut f = s.build();
    f.truncate(14 + 20 + l4_bytes);
    f[16..18].copy_from_slice(&(20 + l4_bytes as u16).to_be_bytes());
    f
}

/// The first IPv6 fragment of `spec` with the extension headers `ext` (one a Fragment
/// header, its M set), holding `l4_bytes` of the transport header and data.
pub fn first_fragment_v6(spec: &Spec, ext: &[(u8, usize)], l4_bytes: usize) -> Vec<u8> {
    let mut s = spec.clone();
    s.ipv6_ext = ext.to_vec();
    let mut f = s.build();
    let mut at = 14 + 40;
    for &(ty, len) in ext {
        if ty == 44 {
            f[at + 3] |= 1;
        }
        at += len;
    }
    f.truncate(at + l4_bytes);
    let payload = (at - 14 - 40 + l4_bytes) as u16;
    f[18..20].copy_from_slice(&payload.to_be_bytes());
    f
}
