//! The audited interfaces, looked at once a sweep: is the agent's program still on each?
//!
//! The kernel takes a program off a device that is deleted, and a program can be detached
//! or replaced (`bpftool link detach`, a device deleted and created again under the same
//! index) while the agent runs. Where a restart would put the program back (the interface
//! exists again, or has no program now), the agent stops with an error naming it, and
//! systemd's `Restart=on-failure` starts it again. Where a restart cannot (the interface is
//! absent; another program holds it), the agent goes on auditing the others and says so:
//! `status`, the metrics and `XA-IFACE-UNAUDITED`, every sweep until it changes. A
//! configured interface absent at the start is watched the same way. At the start, each
//! present one is also looked at for source routes the host follows ([`warn_source_routing`]).

use std::time::Duration;
use tracing::warn;

use super::{DaemonError, Interface};
use crate::loader::{ifindex, netlink, AttachMode};
pub use crate::status::Unaudited;

/// One configured interface, and the device and program the agent attached there.
#[derive(Clone, Debug)]
struct Watched {
    name: String,
    /// `(ifindex, program id)`: the program's id as netlink showed it once attached
    /// (`None` if none was there or it could not be read: then only the device is watched).
    attached: Option<(u32, Option<u32>)>,
    /// Why the start could not attach the program here: reported until a restart, which
    /// an operator makes once it is mended (the watch cannot tell a driver's refusal gone).
    refused: Option<String>,
}

/// The configured interfaces, watched.
#[derive(Clone, Debug)]
pub struct Watch {
    ifaces: Vec<Watched>,
    /// The attach mode asked for, which the start would use on an interface that appears.
    mode: AttachMode,
}

/// What a look at one interface found.
#[derive(Debug, PartialEq, Eq)]
enum Look {
    Audited,
    /// Not audited, and a restart would not change it.
    Unaudited(String),
    /// Not audited, and a restart would attach the program: why.
    Restart(String),
}

/// The longest a look waits for netlink: it runs on the task that drains the ring buffer.
const ANSWER_WITHIN: Duration = Duration::from_millis(100);

impl Watch {
    /// The interfaces the program is attached to now (`audited`; their program read from
    /// netlink now), the configured ones that were absent at the start, and those the start
    /// could not attach the program to (`refused`, with why), attached in `mode` by a start.
    pub fn new(
        audited: &[Interface],
        absent: &[String],
        refused: &[(String, String)],
        mode: AttachMode,
    ) -> Self {
        let mut ifaces: Vec<Watched> = audited
            .iter()
            .map(|i| {
                let prog = netlink::query(i.ifindex).ok().flatten().map(|a| a.prog_id);
                Watched {
                    name: i.name.clone(),
                    attached: Some((i.ifindex, prog)),
                    refused: None,
                }
            })
            .collect();
        ifaces.extend(absent.iter().map(|name| Watched {
            name: name.clone(),
            attached: None,
            refused: None,
        }));
        ifaces.extend(refused.iter().map(|(name, why)| Watched {
            name: name.clone(),
            attached: None,
            refused: Some(why.clone()),
        }));
        Self { ifaces, mode }
    }

    /// The interfaces not audited now; an error (to stop the agent) when a restart would
    /// attach the program to one of them.
    pub fn look(&self) -> Result<Vec<Unaudited>, DaemonError> {
        let mut out = Vec::new();
        for w in &self.ifaces {
            match look(w, self.mode) {
                Look::Audited => {}
                Look::Unaudited(reason) => out.push(Unaudited {
                    name: w.name.clone(),
                    reason,
                }),
                Look::Restart(why) => {
                    return Err(DaemonError::Reattach {
                        name: w.name.clone(),
                        why,
                    })
                }
            }
        }
        Ok(out)
    }
}

fn look(w: &Watched, mode: AttachMode) -> Look {
    let name = &w.name;
    if let Some(why) = &w.refused {
        return Look::Unaudited(format!(
            "the start could not attach the program ({why}): nothing is audited or blocked \
             there; mend it and restart the agent"
        ));
    }
    let now = ifindex(name);
    let Some((index, prog)) = w.attached else {
        return match now {
            Some(i) => restart_if_usable(
                name,
                i,
                mode,
                format!("interface {name:?} exists now (index {i})"),
            ),
            None => Look::Unaudited(
                "absent at the agent's start: nothing is audited or blocked there; the agent \
                 stops when it appears, so that a restart attaches the program"
                    .into(),
            ),
        };
    };
    // The name now on another device: the audited one was renamed (it keeps the program
    // and is audited under its old name) and another took the name, which is not.
    if let Some(other) = now.filter(|&i| i != index) {
        return restart_if_usable(
            name,
            other,
            mode,
            format!(
                "interface {name:?} now names another device (index {other}; the one audited, \
                 index {index}, was renamed or deleted)"
            ),
        );
    }
    match netlink::query_within(index, Some(ANSWER_WITHIN)) {
        Ok(Some(a)) if prog.is_none_or(|p| p == a.prog_id) => Look::Audited,
        Ok(Some(a)) => Look::Unaudited(format!(
            "another XDP program (id {}) is attached in place of the agent's: nothing is \
             audited or blocked there; detach it and restart the agent",
            a.prog_id
        )),
        // No program was seen here at the start (a program run without attaching, as the
        // tests do): only the device is watched.
        Ok(None) if prog.is_none() => Look::Audited,
        Ok(None) => restart_if_usable(
            name,
            index,
            mode,
            format!(
                "interface {name:?} (index {index}) has no XDP program any more (detached, or \
                 deleted and created again under its index)"
            ),
        ),
        Err(e) if gone(&e) => Look::Unaudited(
            "gone while the agent ran (deleted, or moved to another network namespace, where \
             a pinned link keeps the program blocking unread until `xdp-audit detach`): \
             nothing is audited here; the agent stops when it is back, so that a restart \
             attaches the program"
                .into(),
        ),
        // Out of descriptors, no answer in time: no news either way.
        Err(_) => Look::Audited,
    }
}

/// A restart for `why`, if the start could attach the program in `mode` to the device
/// `name` is now (index `index`): else stopping would start a loop of starts that fail on
/// it, leaving every interface unread. A device without Ethernet headers, a bond asked for
/// native mode, or one holding another XDP program is reported instead, with what to do.
fn restart_if_usable(name: &str, index: u32, mode: AttachMode, why: String) -> Look {
    let usable = crate::loader::usable_interface(name)
        .and_then(|_| crate::loader::features::attach_mode(name, mode));
    if let Err(e) = usable {
        return Look::Unaudited(format!(
            "{why}, but the program cannot be attached there ({e}): fix it or take it out of \
             the configuration"
        ));
    }
    match netlink::query_within(index, Some(ANSWER_WITHIN)) {
        Ok(Some(a)) => Look::Unaudited(format!(
            "{why}, but another XDP program (id {}) is attached to it: detach it and restart \
             the agent",
            a.prog_id
        )),
        _ => Look::Restart(why),
    }
}

/// Whether netlink's answer says the device is no more.
fn gone(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENODEV | libc::ENXIO))
}

/// Warns where this host follows source routes arriving on `iface`: IPv4 packets with a
/// LSRR or SSRR option (`accept_source_route`) or IPv6 packets with a segment routing header
/// (`seg6_enabled`), each on where both `all` and the interface say so. The program judges
/// a packet by the destination its IP header names, which is then the gateway's own; the
/// host forwards it on to the route's next address, which no list judged.
pub fn warn_source_routing(iface: &str) {
    let value = |family: &str, dev: &str, key: &str| {
        let path = format!("/proc/sys/net/{family}/conf/{dev}/{key}");
        let text = std::fs::read_to_string(path).unwrap_or_default();
        text.trim().parse::<i64>().unwrap_or(0)
    };
    let routes = [
        (
            "ipv4",
            "accept_source_route",
            "IPv4 source routes (LSRR/SSRR options)",
        ),
        ("ipv6", "seg6_enabled", "IPv6 segment routing headers"),
    ];
    for (family, key, what) in routes {
        if value(family, "all", key) > 0 && value(family, iface, key) > 0 {
            warn!(
                iface,
                sysctl = format!("net.{family}.conf.all.{key}"),
                "this host follows {what} arriving on {iface}: such a packet names the \
                 gateway as its destination, and the host sends it on to an address no list \
                 judged, a blocked one too; set net.{family}.conf.all.{key}=0"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_absent_interface_is_unaudited_until_it_exists() {
        let absent = Watched {
            name: "xa-no-such0".into(),
            attached: None,
            refused: None,
        };
        assert!(matches!(
            look(&absent, AttachMode::Auto),
            Look::Unaudited(_)
        ));
        let lo = Watched {
            name: "lo".into(),
            attached: None,
            refused: None,
        };
        assert!(
            matches!(look(&lo, AttachMode::Auto), Look::Restart(r) if r.contains("exists now")),
            "a restart attaches it"
        );
    }

    #[test]
    fn a_device_without_the_program_or_gone_is_no_longer_audited() {
        // The loopback device runs no XDP program here.
        let lo = Watched {
            name: "lo".into(),
            attached: Some((1, Some(7))),
            refused: None,
        };
        assert!(
            matches!(look(&lo, AttachMode::Auto), Look::Restart(r) if r.contains("no XDP program"))
        );
        let gone = Watched {
            name: "xa-no-such0".into(),
            attached: Some((0x7fff_0000, Some(7))),
            refused: None,
        };
        assert!(matches!(look(&gone, AttachMode::Auto), Look::Unaudited(r) if r.contains("gone")));
    }

    /// An interface the start could not attach to stays reported, whatever it looks like
    /// now: the watch cannot tell a driver's refusal mended, and a restart loop would leave
    /// every interface unread.
    #[test]
    fn an_interface_the_start_refused_is_reported_not_restarted_for() {
        let lo = Watched {
            name: "lo".into(),
            attached: None,
            refused: Some("the driver refused native mode".into()),
        };
        assert!(
            matches!(look(&lo, AttachMode::Auto), Look::Unaudited(r) if r.contains("refused native"))
        );
    }
}
