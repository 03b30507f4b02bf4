//! A pinned instance whose XDP attachment the kernel made through netlink, with no bpf_link to
//! pin (as on kernels without XDP links): the state says so and keeps the mode, a restart
//! adopts the attachment, an upgrade replaces the program on it naming the one it expects,
//! `detach` removes it. And a change of XDP mode on a linked attachment, which cannot be
//! hitless, is made and recorded. Needs root.

use std::path::Path;

use xdp_audit::loader::adopt::{self, Outcome, Spec, Target};
use xdp_audit::loader::netlink;
use xdp_audit::loader::pin::PinDir;
use xdp_audit::loader::{ifindex, AttachMode, LoadOptions};
use xdp_audit_lab::lab::{Lab, GW_LAN_IF};
use xdp_audit_lab::netns::run_in;
use xdp_audit_lab::pins::Bpffs;

fn spec(root: &Path, flow_table_size: u32, mode: AttachMode, netlink: bool) -> Spec {
    Spec {
        pins: PinDir::new(root, "nl").expect("instance name"),
        sizes: LoadOptions {
            flow_table_size,
            ringbuf_bytes: 1 << 16,
            ..LoadOptions::default()
        },
        interfaces: vec![Target {
            name: GW_LAN_IF.into(),
            ifindex: ifindex(GW_LAN_IF).expect("lan0 in the gateway namespace"),
            wan: false,
        }],
        mode,
        files: Vec::new(),
        state_dir: None,
        list_floor: 1024,
        config: "test".into(),
        netlink,
        lost_starts_read: None,
    }
}

/// The program id XDP runs on lan0, and its mode.
fn attached() -> (u32, Option<AttachMode>) {
    let ifindex = ifindex(GW_LAN_IF).expect("lan0");
    let a = netlink::query(ifindex)
        .expect("query lan0's XDP attachment")
        .expect("lan0 has an XDP program");
    (a.prog_id, a.mode)
}

#[test]
fn a_netlink_attachment_is_said_adopted_replaced_and_detached_without_a_link() {
    let lab = Lab::new("pnl").expect("build the netns lab");
    let pins = Bpffs::mount(&lab.id).expect("mount a bpffs for the pins");
    let root = pins.path().to_owned();
    run_in(&lab.gateway, move || {
        let s = spec(&root, 1024, AttachMode::Skb, true);
        let started = adopt::start(&s).expect("fresh start through netlink");
        assert_eq!(started.outcome, Outcome::Fresh);
        assert!(
            !started.interfaces[0].link,
            "no link: {:?}",
            started.interfaces
        );
        assert!(!s.pins.link(GW_LAN_IF).exists(), "no link pin");
        let state = s.pins.read_state().expect("state").expect("a state");
        assert_eq!(
            state.interfaces[0].mode,
            AttachMode::Skb,
            "the mode is kept"
        );
        assert!(!state.interfaces[0].link, "the state says there is no link");
        let (first, mode) = attached();
        assert_eq!(mode, Some(AttachMode::Skb));
        drop(started);
        assert_eq!(attached().0, first, "the attachment outlives the agent");

        let again = adopt::start(&s).expect("adopt the netlink attachment");
        assert_eq!(
            again.outcome,
            Outcome::Adopted {
                program_replaced: false
            }
        );
        assert_eq!(attached().0, first, "adopting detaches nothing");
        drop(again);

        let bigger = spec(&root, 2048, AttachMode::Skb, true);
        let up = adopt::start(&bigger).expect("upgrade through netlink");
        assert!(
            matches!(up.outcome, Outcome::Upgraded { .. }),
            "{:?}",
            up.outcome
        );
        let (second, mode) = attached();
        assert_ne!(second, first, "the program was replaced on the attachment");
        assert_eq!(mode, Some(AttachMode::Skb));
        drop(up);

        // No records stage ran to write the replaced layout's flows: its maps stay pinned,
        // named in the state, for the next start (or detach) to find.
        let state = bigger.pins.read_state().expect("state").expect("a state");
        assert_eq!(state.replaced.len(), 1, "{state:?}");
        let done = adopt::detach(&bigger.pins).expect("detach");
        assert_eq!(
            (done.netlink, done.links, done.map_dirs),
            (1, 0, 2),
            "{done:?}"
        );
        assert!(done.program);
        let ifindex = ifindex(GW_LAN_IF).expect("lan0");
        assert_eq!(
            netlink::query(ifindex).expect("query"),
            None,
            "detach removed the netlink attachment"
        );
        assert!(
            !bigger.pins.dir().exists(),
            "the instance directory is gone"
        );
        Ok(())
    })
    .expect("in the gateway namespace");
}

#[test]
fn a_change_of_xdp_mode_is_made_by_detach_and_attach_and_kept_in_the_state() {
    let lab = Lab::new("pmode").expect("build the netns lab");
    let pins = Bpffs::mount(&lab.id).expect("mount a bpffs for the pins");
    let root = pins.path().to_owned();
    run_in(&lab.gateway, move || {
        let s = spec(&root, 1024, AttachMode::Native, false);
        let started = adopt::start(&s).expect("fresh start with a link");
        assert!(started.interfaces[0].link, "veth takes a native link");
        assert!(s.pins.link(GW_LAN_IF).exists(), "the link is pinned");
        assert_eq!(attached().1, Some(AttachMode::Native));
        drop(started);

        let skb = spec(&root, 1024, AttachMode::Skb, false);
        let moved = adopt::start(&skb).expect("restart in SKB mode");
        assert_eq!(attached().1, Some(AttachMode::Skb), "now in SKB mode");
        assert_eq!(moved.interfaces[0].mode, AttachMode::Skb);
        let state = skb.pins.read_state().expect("state").expect("a state");
        assert_eq!(
            state.interfaces[0].mode,
            AttachMode::Skb,
            "the new mode is kept"
        );
        drop(moved);
        adopt::detach(&skb.pins).expect("detach");
        assert_eq!(
            netlink::query(ifindex(GW_LAN_IF).expect("lan0")).expect("query"),
            None
        );
        Ok(())
    })
    .expect("in the gateway namespace");
}

#[test]
fn a_pinned_map_of_another_shape_is_refused_naming_it_and_the_way_out() {
    let lab = Lab::new("pshape").expect("build the netns lab");
    let pins = Bpffs::mount(&lab.id).expect("mount a bpffs for the pins");
    let root = pins.path().to_owned();
    run_in(&lab.gateway, move || {
        let s = spec(&root, 1024, AttachMode::Skb, false);
        let state = {
            let started = adopt::start(&s).expect("fresh start");
            drop(started);
            s.pins.read_state().expect("state").expect("a state")
        };
        // Something else than xdp-audit replaces a pin with a map of another shape under the
        // same name: aya would reuse it without a look.
        let pin = s.pins.maps(&state.layout).join("STATS");
        std::fs::remove_file(&pin).expect("remove the STATS pin");
        let other = aya_obj::Map::new_from_params(2, 4, 16, 8, 0); // an ARRAY of 16-byte values
        let map = aya::maps::MapData::create(other, "STATS", None).expect("create a map");
        map.pin(&pin).expect("pin it as STATS");

        let err = match adopt::start(&s) {
            Ok(_) => panic!("a map of another shape must be refused"),
            Err(e) => format!("{e:#}"),
        };
        assert!(
            err.contains("STATS") && err.contains("xdp-audit detach"),
            "the error names the map and the way out: {err}"
        );
        assert_eq!(
            attached().0,
            pinned_prog(&s),
            "a refused start leaves the running program attached"
        );
        // The map's pin gone altogether: named as gone, with the way out (it was taken for
        // a build missing the map).
        std::fs::remove_file(&pin).expect("remove the STATS pin");
        let err = match adopt::start(&s) {
            Ok(_) => panic!("a start with a map pin gone must be refused"),
            Err(e) => format!("{e:#}"),
        };
        assert!(
            err.contains("STATS") && err.contains("is gone") && err.contains("xdp-audit detach"),
            "the error names the pin, that it is gone and the way out: {err}"
        );
        // The program's pin gone: the cause and the way out, not a bare `bpf_obj_get failed`.
        let prog = pinned_prog(&s);
        std::fs::remove_file(s.pins.program()).expect("remove the program's pin");
        let err = match adopt::start(&s) {
            Ok(_) => panic!("a start with the program's pin gone must be refused"),
            Err(e) => format!("{e:#}"),
        };
        assert!(
            err.contains("No such file") && err.contains("xdp-audit detach"),
            "the error names the cause and the way out: {err}"
        );
        assert_eq!(attached().0, prog, "still attached through its link");
        adopt::detach(&s.pins).expect("detach");
        Ok(())
    })
    .expect("in the gateway namespace");
}

/// The id of the instance's pinned program.
fn pinned_prog(s: &Spec) -> u32 {
    use aya::programs::Xdp;
    let p = Xdp::from_pin(
        s.pins.program(),
        aya_obj::programs::XdpAttachType::Interface,
    )
    .expect("the program is pinned");
    p.info().expect("program info").id()
}
