//! A pinned agent upgrades, swaps its program, is killed half-way through either, and
//! detaches, without the gateway ever being unguarded (the set-up is in `restart_common`). Needs
//! root.

mod restart_common;

use std::path::Path;
use std::time::Duration;

use restart_common::{
    assert_closed_transfer_counted_once, field, udp_from, Setup, BLOCKED, BLOCKED_LATER,
};
use xdp_audit_lab::agent::Agent;
use xdp_audit_lab::lab::{self, sh};
use xdp_audit_lab::netns::run_in;
use xdp_audit_lab::pins;
use xdp_audit_lab::traffic::Ping;
use xdp_audit_lab::wait::wait_until;

#[test]
fn an_upgrade_with_another_map_layout_swaps_the_program_on_its_link_with_no_reply_through() {
    let s = Setup::new("upg");
    assert!(
        s.reachable(BLOCKED),
        "{BLOCKED} answers before the agent runs"
    );
    let mut first = s.agent(&["--flow-table-size", "4096"]);
    let link = s.instance_dir().join(format!("link-{}", lab::GW_LAN_IF));
    let (link_id, old_prog) = pins::pinned_link(&link).expect("the link is pinned");
    let old_slow = s.slow_path().expect("the slow path is in SLOW_PATH");
    let transfer = s.transfer();
    let flood = Ping::start(&s.lab, &s.lab.client, BLOCKED, "0.002").expect("ping flood");
    wait_until(Duration::from_secs(10), "the transfer is under way", || {
        transfer.sent() > 50_000
    });
    assert_eq!(first.stop().expect("SIGTERM"), 0);

    // Another flow-table size is another map layout: new maps, a new program.
    let mut second = s.agent(&["--flow-table-size", "8192"]);
    let upgraded = second
        .logged("upgraded the pinned program")
        .expect("a changed layout is an upgrade")
        .to_owned();
    assert!(
        field(&upgraded, "migrated") >= Some(2),
        "the open transfer and the blocked ping's flow move into the new flow table: {upgraded}"
    );
    let (link_now, new_prog) = pins::pinned_link(&link).expect("the link is still pinned");
    assert_eq!(link_now, link_id, "the same link holds the new program");
    assert_ne!(new_prog, old_prog, "the program on the link was replaced");
    let new_slow = s
        .slow_path()
        .expect("the new program's slow path is in its SLOW_PATH");
    assert_ne!(
        new_slow, old_slow,
        "the new program has a slow path of its own"
    );
    let before = transfer.sent();
    wait_until(
        Duration::from_secs(10),
        "the transfer goes on under the new program",
        || transfer.sent() > before + 20_000,
    );
    let count = flood.finish().expect("flood statistics");
    // The flood spans the swap by construction (started before the first agent stopped,
    // finished after the new program carried the transfer on); its length is the machine's
    // speed, so the premise asks only for a real flood (0.2 s at one ping per 2 ms).
    assert!(
        count.transmitted >= 100 && count.received == 0,
        "not one reply from {BLOCKED} through the swap: {count:?}"
    );
    let payload = transfer.finish().expect("the transfer ends cleanly");
    // The transfer closed: it ends after the linger and is written.
    assert_closed_transfer_counted_once(&mut second, payload);
    assert!(
        !pins::pinned_map_ids(&s.instance_dir())
            .expect("maps")
            .is_empty(),
        "the new layout's maps are pinned"
    );
    assert_eq!(s.map_dirs().len(), 1, "the old layout's maps were unpinned");
    s.verify();
}

/// The pins of a build whose list maps differ (here, one of them missing, as when a later
/// build adds one) are upgraded from like any other layout: the start neither fails on
/// the old lists nor leaves the old program running unread, and the lists are in force.
#[test]
fn an_upgrade_from_pins_without_one_of_this_builds_list_maps_swaps_the_program_in() {
    let s = Setup::new("upgmap");
    let mut first = s.agent(&["--flow-table-size", "4096"]);
    assert_eq!(first.stop().expect("SIGTERM"), 0);
    let [maps] = &s.map_dirs()[..] else {
        panic!("one map directory: {:?}", s.map_dirs())
    };
    let cover = maps.join("COVER4");
    std::fs::remove_file(&cover).unwrap_or_else(|e| panic!("unpin {}: {e}", cover.display()));
    let mut second = s.agent(&["--flow-table-size", "8192"]);
    second
        .logged("upgraded the pinned program")
        .expect("pins lacking a list map are upgraded from");
    assert!(
        !s.reachable(BLOCKED),
        "{BLOCKED} is blocked by the new program's lists"
    );
    assert_eq!(s.map_dirs().len(), 1, "the old layout's maps were unpinned");
    assert_eq!(second.stop().expect("SIGTERM"), 0);
}

/// An upgrade from pins whose lists cannot be read moves the generation past the old
/// program's, so a flow it copied over is judged again by the new tables: a ping that
/// passed before is dropped once its address is in the list.
#[test]
fn an_upgrade_from_unreadable_lists_judges_the_copied_flows_again() {
    let s = Setup::new("upggen");
    let mut first = s.agent(&["--flow-table-size", "4096"]);
    let ping = Ping::start(&s.lab, &s.lab.client, BLOCKED_LATER, "0.05").expect("ping");
    assert_eq!(first.stop().expect("SIGTERM"), 0);
    // An adoption in between moves the old program's generation on, as a reload would.
    let mut again = s.agent(&["--flow-table-size", "4096"]);
    assert_eq!(again.stop().expect("SIGTERM"), 0);
    let [maps] = &s.map_dirs()[..] else {
        panic!("one map directory: {:?}", s.map_dirs())
    };
    std::fs::remove_file(maps.join("COVER4")).expect("unpin COVER4");
    std::fs::write(s.list(), format!("{BLOCKED}\n{BLOCKED_LATER}\n")).expect("edit the list");
    let mut third = s.agent(&["--flow-table-size", "8192"]);
    third
        .logged("upgraded the pinned program")
        .expect("pins lacking a list map are upgraded from");
    wait_until(
        Duration::from_secs(10),
        "the copied ping flow to the address added is dropped",
        || {
            third.status().is_ok_and(|st| {
                st["counters"]["dropped_by_list"]
                    .as_u64()
                    .is_some_and(|n| n > 0)
            })
        },
    );
    let count = ping.finish().expect("ping statistics");
    assert!(count.received < count.transmitted, "{count:?}");
    assert_eq!(third.stop().expect("SIGTERM"), 0);
}

/// Blocked packets the old program summarised past the drop-record budget while no agent
/// ran are written by the agent that upgrades it: the store's drops add up to what was sent.
#[test]
fn an_upgrade_writes_what_the_old_program_summarised_while_no_agent_ran() {
    const SENT: u16 = 30;
    let s = Setup::new("upgfld");
    let budget = ["--drop-records-per-rule", "1", "--drop-records-total", "1"];
    let mut first = s.agent(&[&["--flow-table-size", "4096"][..], &budget].concat());
    assert_eq!(first.stop().expect("SIGTERM"), 0);
    run_in(&s.lab.client, || {
        for sport in 41_000..41_000 + SENT {
            let sock = std::net::UdpSocket::bind((lab::CLIENT_V4, sport))?;
            sock.send_to(b"blocked", (BLOCKED, restart_common::UDP_PORT))?;
        }
        Ok(())
    })
    .expect("datagrams to the blocked address");
    let mut second = s.agent(&[&["--flow-table-size", "8192"][..], &budget].concat());
    second
        .logged("upgraded the pinned program")
        .expect("a changed layout is an upgrade");
    assert_eq!(second.stop().expect("SIGTERM"), 0);
    let records = second.records().expect("query the store");
    let blocked: Vec<_> = records
        .iter()
        .filter(|r| r["dst_ip"] == BLOCKED || r["end_reason"] == "summarised")
        .collect();
    let dropped: u64 = blocked
        .iter()
        .map(|r| r["dropped"].as_u64().unwrap_or(0))
        .sum();
    assert!(
        blocked.iter().any(|r| r["end_reason"] == "summarised"),
        "the budget of 1 summarises most of {SENT}: {blocked:?}"
    );
    assert_eq!(
        dropped,
        u64::from(SENT),
        "every blocked datagram recorded: {blocked:?}"
    );
    let summaries = blocked
        .iter()
        .filter(|r| r["end_reason"] == "summarised")
        .count();
    // One rule, one window (no agent moved it on): one summary, the CPUs merged.
    assert_eq!(summaries, 1, "{blocked:?}");
}

#[test]
fn a_start_killed_between_swapping_its_program_in_and_pinning_it_leaves_the_next_start_able_to_run()
{
    let s = Setup::new("swapk");
    // Two interfaces: the start is aborted after the first swap, the second one still runs
    // the program it replaced.
    let wan = format!("{}:wan", lab::GW_WAN_IF);
    let two = ["--iface", wan.as_str()];
    let mut first = s.agent(&two);
    assert_eq!(first.stop().expect("SIGTERM"), 0);
    let first_prog = s.pinned();
    s.pretend_another_build();
    s.crash_at("swap", &two);
    let (orphan, pinned) = s.linked_and_pinned();
    assert!(
        orphan != first_prog && pinned == first_prog && s.linked(lab::GW_WAN_IF) == first_prog,
        "the aborted start swapped its program in on {} ({orphan}) and died before the \
         second interface and the pin (both still hold {first_prog}: {pinned}, {})",
        lab::GW_LAN_IF,
        s.linked(lab::GW_WAN_IF)
    );
    assert!(
        !s.reachable(BLOCKED),
        "the program it left on the link blocks {BLOCKED}"
    );

    let mut third = s.agent(&two);
    assert!(
        third.logged("taken as the running one").is_some(),
        "the next start takes the program on the link as the instance's"
    );
    let pinned = s.pinned();
    assert!(
        s.linked(lab::GW_LAN_IF) == pinned && s.linked(lab::GW_WAN_IF) == pinned,
        "both interfaces run the pinned program"
    );
    assert!(
        std::fs::read_dir(s.instance_dir())
            .expect("list the instance")
            .filter_map(|e| e.ok())
            .all(|e| !e.file_name().to_string_lossy().starts_with("prog-")),
        "no program pin is left but the instance's"
    );
    assert!(!s.reachable(BLOCKED), "{BLOCKED} is blocked");
    s.datagrams(44000..44003);
    wait_until(Duration::from_secs(20), "the datagrams are written", || {
        let records = third.records().unwrap_or_default();
        (44000..44003).all(|p| udp_from(&records, p) == 1)
    });
    assert_eq!(third.stop().expect("SIGTERM"), 0);
    // And the one after it finds a consistent instance: nothing to recover, nothing to swap.
    let mut fourth = s.agent(&two);
    let adopted = fourth
        .logged("adopted the pinned program")
        .expect("the next start adopts")
        .to_owned();
    assert!(
        adopted.contains("program_replaced=false") && fourth.logged("taken as").is_none(),
        "the same build keeps the running program: {adopted}"
    );
    assert_eq!(fourth.stop().expect("SIGTERM"), 0);
    assert_eq!(s.map_dirs().len(), 1, "one map directory");
    s.verify();
}

/// A start that adds an interface to the configuration, killed after attaching it and pinning
/// its link but before noting it beside the pins: a next start that no longer configures it
/// detaches it, and one that does takes the attachment over (it holds the instance's own
/// program) instead of finding the interface busy at every start until `detach`.
#[test]
fn a_start_killed_after_attaching_a_newly_configured_interface_leaves_the_next_start_able_to_run() {
    let s = Setup::new("addk");
    let mut first = s.agent(&[]);
    assert_eq!(first.stop().expect("SIGTERM"), 0);
    let prog = s.pinned();
    let wan = format!("{}:wan", lab::GW_WAN_IF);
    let two = ["--iface", wan.as_str()];
    let noted = |s: &Setup| {
        s.state()["interfaces"]
            .as_array()
            .expect("the state lists interfaces")
            .iter()
            .any(|i| i["name"] == lab::GW_WAN_IF)
    };
    let killed_after_attaching = || {
        s.crash_at("attached", &two);
        assert!(
            s.linked(lab::GW_WAN_IF) == prog && !noted(&s),
            "the killed start attached {} with the instance's program {prog} and died before \
             noting it: {}",
            lab::GW_WAN_IF,
            s.state()
        );
    };

    killed_after_attaching();
    let mut lan_only = s.agent(&[]);
    // The kernel lets go of a link a moment after its last pin is removed.
    wait_until(
        Duration::from_secs(5),
        "the unconfigured interface is detached",
        || !s.has_xdp_on(lab::GW_WAN_IF),
    );
    assert_eq!(s.linked(lab::GW_LAN_IF), prog, "the LAN keeps the program");
    assert_eq!(lan_only.stop().expect("SIGTERM"), 0);

    killed_after_attaching();
    let mut both = s.agent(&two);
    let pinned = s.pinned();
    assert!(
        pinned == prog && s.linked(lab::GW_LAN_IF) == prog && s.linked(lab::GW_WAN_IF) == prog,
        "both interfaces run the pinned program"
    );
    assert!(
        noted(&s),
        "the state notes the interface now: {}",
        s.state()
    );
    assert!(!s.reachable(BLOCKED), "{BLOCKED} is blocked");
    assert_eq!(both.stop().expect("SIGTERM"), 0);
    let out = s.detach();
    assert!(
        out.status.success(),
        "detach: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for iface in [lab::GW_LAN_IF, lab::GW_WAN_IF] {
        assert!(!s.has_xdp_on(iface), "{iface} has no XDP program");
    }
}

/// A first start killed after attaching (nothing pinned before it): the program it left on
/// the link counts on into its maps, and the next start adopts them, so a transfer under
/// way through the downtime is counted once, whole. Before, the next start found pins
/// without a state and removed them with the maps and what they had counted.
#[test]
fn a_first_start_killed_after_attaching_loses_nothing_its_program_counted() {
    let s = Setup::new("frk");
    s.crash_at("attached", &["--flow-table-size", "4096"]);
    assert!(
        s.has_xdp_on(lab::GW_LAN_IF),
        "the killed start left its program attached"
    );
    let transfer = s.transfer();
    wait_until(Duration::from_secs(10), "the transfer is under way", || {
        transfer.sent() > 50_000
    });
    let mut next = s.agent(&["--flow-table-size", "4096"]);
    assert!(!s.reachable(BLOCKED), "{BLOCKED} is blocked");
    let payload = transfer.finish().expect("the transfer ends cleanly");
    assert_closed_transfer_counted_once(&mut next, payload);
    s.verify();
}

/// An interface renamed while the agent was down, and configured under its new name: the
/// next start takes its attachment over, the link pin following the name. Before, the start
/// failed as busy; then, for a while, it detached the interface (its pin was removed as that
/// of an interface no longer configured) and ran with it unguarded.
#[test]
fn a_renamed_interface_keeps_its_attachment_under_its_new_name() {
    let s = Setup::new("ren");
    let wan = format!("{}:wan", lab::GW_WAN_IF);
    let mut first = s.agent(&["--iface", wan.as_str()]);
    assert_eq!(first.stop().expect("SIGTERM"), 0);
    let prog = s.pinned();
    const NEW: &str = "uplink0";
    for args in [
        vec!["link", "set", lab::GW_WAN_IF, "down"],
        vec!["link", "set", lab::GW_WAN_IF, "name", NEW],
        vec!["link", "set", NEW, "up"],
    ] {
        sh(s.lab.cmd(&s.lab.gateway, "ip").args(&args)).expect("rename the wan interface");
    }
    let renamed = format!("{NEW}:wan");
    let mut second = s.agent(&["--iface", renamed.as_str()]);
    assert!(
        s.linked(NEW) == prog && s.linked(lab::GW_LAN_IF) == prog,
        "the renamed interface runs the instance's program on its link"
    );
    let names: Vec<String> = s.state()["interfaces"]
        .as_array()
        .expect("the state lists interfaces")
        .iter()
        .filter_map(|i| i["name"].as_str().map(str::to_owned))
        .collect();
    assert!(
        names.contains(&NEW.to_owned()) && !names.contains(&lab::GW_WAN_IF.to_owned()),
        "the state notes the new name only: {names:?}"
    );
    assert!(
        !s.instance_dir()
            .join(format!("link-{}", lab::GW_WAN_IF))
            .exists(),
        "no pin is left under the old name"
    );
    assert_eq!(second.stop().expect("SIGTERM"), 0);
    assert!(s.detach().status.success(), "detach");
    assert!(!s.has_xdp_on(NEW), "{NEW} has no XDP program after detach");
}

#[test]
fn a_swap_whose_recovery_is_killed_too_is_finished_and_detach_after_a_killed_swap_leaves_nothing() {
    let s = Setup::new("swap2");
    let wan = format!("{}:wan", lab::GW_WAN_IF);
    let two = ["--iface", wan.as_str()];
    let mut first = s.agent(&two);
    assert_eq!(first.stop().expect("SIGTERM"), 0);
    s.pretend_another_build();
    s.crash_at("swap", &two);
    // The next start dies in its recovery, between keeping the replaced program and
    // pinning the new one as the instance's.
    s.crash_at("promote", &two);
    let mut third = s.agent(&two);
    assert!(
        third.logged("taken as the running one").is_some(),
        "the start after two killed ones finishes the swap"
    );
    let pinned = s.pinned();
    assert!(
        s.linked(lab::GW_LAN_IF) == pinned && s.linked(lab::GW_WAN_IF) == pinned,
        "both interfaces run the pinned program"
    );
    assert!(!s.reachable(BLOCKED), "{BLOCKED} is blocked");
    assert_eq!(third.stop().expect("SIGTERM"), 0);

    // Killed mid-swap again, then detached: no program is left on either interface.
    s.pretend_another_build();
    s.crash_at("swap", &two);
    let out = s.detach();
    assert!(
        out.status.success(),
        "detach: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!s.instance_dir().exists(), "the instance directory is gone");
    for iface in [lab::GW_LAN_IF, lab::GW_WAN_IF] {
        assert!(!s.has_xdp_on(iface), "{iface} has no XDP program");
    }
    assert!(s.reachable(BLOCKED), "{BLOCKED} answers once detached");
}

#[test]
fn an_upgrade_killed_after_its_swap_is_finished_by_the_next_start_with_each_flow_counted_once() {
    let s = Setup::new("upgk");
    let transfer = s.transfer_past_a_stop();
    // Ended while no agent runs: the flow, and its close, are in the old tables only, and
    // the copy and the swap see no packet of it between them.
    let payload = transfer.finish().expect("the transfer ends cleanly");

    s.crash_at("swap", &["--flow-table-size", "8192"]);
    let (orphan, pinned) = s.linked_and_pinned();
    assert!(
        orphan != pinned && s.map_dirs().len() == 2,
        "the aborted upgrade swapped its program in and left both layouts' maps: the link \
         holds {orphan}, the pin {pinned}, the maps {:?}",
        s.map_dirs()
    );

    let mut third = s.agent(&["--flow-table-size", "8192"]);
    assert!(
        third.logged("taken as the running one").is_some()
            && third.logged("their flows are written out").is_some(),
        "the next start finishes the upgrade: the program on the link is taken, the old \
         layout's flows written out"
    );
    let (linked, pinned) = s.linked_and_pinned();
    assert_eq!(linked, pinned, "the program on the link is the pinned one");
    wait_until(
        Duration::from_secs(10),
        "the old layout's maps are unpinned once their flows are written",
        || s.map_dirs().len() == 1,
    );
    assert!(!s.reachable(BLOCKED), "{BLOCKED} is blocked");
    assert_closed_transfer_counted_once(&mut third, payload);
    s.verify();
}

#[test]
fn an_upgrade_without_room_killed_at_its_swap_counts_a_flow_that_goes_on_once() {
    let s = Setup::new("upgn");
    let transfer = s.transfer_past_a_stop();
    // More flows than the new table takes over (it needs room for twice as many): none is
    // moved, and the transfer goes on as a new entry of the new program's table.
    let ports = 46000..46040;
    s.datagrams(ports.clone());
    s.crash_at("swap", &["--flow-table-size", "64"]);
    let sent = transfer.sent();
    wait_until(
        Duration::from_secs(10),
        "the transfer goes on under the program the aborted upgrade swapped in",
        || transfer.sent() > sent + 20_000,
    );

    let mut third = s.agent(&["--flow-table-size", "64"]);
    assert!(
        third.logged("taken as the running one").is_some()
            && third.logged("their flows are written out").is_some(),
        "the next start finishes the upgrade and writes the old tables' flows out"
    );
    let payload = transfer.finish().expect("the transfer ends cleanly");
    assert_closed_transfer_counted_once(&mut third, payload);
    let records = third.records().expect("query");
    assert!(
        ports.clone().all(|p| udp_from(&records, p) == 1),
        "each datagram of the old table once: {records:#?}"
    );
    s.verify();
}

#[test]
fn an_upgrade_killed_before_it_wrote_the_old_tables_flows_leaves_them_to_the_next_start() {
    let s = Setup::new("upgr");
    let mut first = s.agent(&["--flow-table-size", "4096"]);
    assert_eq!(first.stop().expect("SIGTERM"), 0);
    // Counted while no agent runs, so in the old flow table only; too many for the new
    // table (it takes flows over only with room for twice as many), so written out.
    let ports = 45000..45040;
    s.datagrams(ports.clone());
    s.crash_at("retired", &["--flow-table-size", "64"]);
    assert_eq!(
        s.map_dirs().len(),
        2,
        "the upgrade that died before writing the old tables' flows left their maps pinned"
    );
    assert!(
        s.state()["replaced"][0]["layout_version"].as_u64() > Some(0),
        "with the version they are read by: {}",
        s.state()
    );

    let mut third = s.agent(&["--flow-table-size", "64"]);
    assert!(
        third.logged("their flows are written out").is_some(),
        "the next start writes them out"
    );
    wait_until(
        Duration::from_secs(20),
        "each datagram counted while no agent ran is written, once",
        || {
            let records = third.records().unwrap_or_default();
            ports.clone().all(|p| udp_from(&records, p) == 1)
        },
    );
    wait_until(
        Duration::from_secs(10),
        "the old layout's maps are unpinned",
        || s.map_dirs().len() == 1,
    );
    assert_eq!(third.stop().expect("SIGTERM"), 0);
    let records = third.records().expect("query");
    assert!(
        ports.clone().all(|p| udp_from(&records, p) == 1),
        "each datagram once: {records:#?}"
    );
    s.verify();
}

#[test]
fn detach_leaves_no_pin_link_program_or_map_of_the_instance() {
    let s = Setup::new("det");
    let mut agent = s.agent(&[]);
    let out = s.detach();
    assert!(
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("in use"),
        "detach is refused while the agent runs: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(agent.stop().expect("SIGTERM"), 0);
    assert!(s.has_xdp(), "the pinned program outlives the agent");

    let dir = s.instance_dir();
    let prog = pins::pinned_prog_id(&dir.join("prog")).expect("the program is pinned");
    let (link, _) = pins::pinned_link(&dir.join(format!("link-{}", lab::GW_LAN_IF)))
        .expect("the link is pinned");
    let maps = pins::pinned_map_ids(&dir).expect("the maps are pinned");
    let slow = s.slow_path().expect("the slow path is in SLOW_PATH");
    assert!(maps.len() >= 10, "every map is pinned: {maps:?}");

    let out = s.detach();
    assert!(
        out.status.success(),
        "detach: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!dir.exists(), "the instance directory is gone");
    assert!(!s.has_xdp(), "the interface has no XDP program");
    // The kernel frees the objects once their last reference goes (after an RCU grace
    // period): wait for it.
    wait_until(
        Duration::from_secs(10),
        "bpftool lists none of the instance's program, link and maps",
        || {
            let gone = |kind: &str, ids: &[u64]| {
                pins::kernel_ids(kind).is_ok_and(|now| ids.iter().all(|i| !now.contains(i)))
            };
            gone("prog", &[prog, slow]) && gone("link", &[link]) && gone("map", &maps)
        },
    );
    let again = s.detach();
    assert!(
        again.status.success() && String::from_utf8_lossy(&again.stdout).contains("nothing"),
        "a second detach finds nothing and succeeds: {}",
        String::from_utf8_lossy(&again.stdout)
    );
    assert!(!Path::new(&dir).exists());
}

#[test]
fn bpffs_is_mounted_where_it_is_absent_and_a_private_mount_namespace_is_said() {
    let s = Setup::new("bpffs");
    // `ip netns exec` gives the agent a fresh /sys without bpffs: it mounts one, and warns
    // that pins in its private mount namespace cannot outlive it.
    let list = s.list();
    let mut agent = Agent::start(
        &s.lab,
        &s.lab.gateway,
        &s.bin,
        &s.log(),
        &[
            "--iface",
            lab::GW_LAN_IF,
            "--blocklist",
            list.to_str().expect("UTF-8 path"),
        ],
    )
    .expect("start the agent with the default pin root");
    assert!(
        agent.logged("mounted bpffs at /sys/fs/bpf").is_some(),
        "the agent mounted bpffs"
    );
    assert!(
        agent.logged("mount namespace of its own").is_some(),
        "the agent said its pins cannot outlive it"
    );
    assert!(
        !s.reachable(BLOCKED),
        "and it enforces the list all the same"
    );
    assert_eq!(agent.stop().expect("SIGTERM"), 0);
    // The stop says the program goes with it, not that it stays attached.
    let said = agent
        .wait_for(
            "the program goes as this agent exits",
            Duration::from_secs(5),
        )
        .expect("the stop says the program ends with the namespace");
    assert!(said.contains("not audited"), "{said}");
    assert!(agent.logged("stays attached").is_none());
}
