//! Who was behind an address at an instant: the subscriber (account and display name), the
//! host name and the device MAC, joined from the subscribers table and the DHCP bindings.
//!
//! Precedence, for a client address `ip` seen with the MAC `packet_mac` at `t`:
//! 1. The device: the MAC of the DHCP binding of `ip` at `t` (the server's word on who held
//!    it), else `packet_mac` (an address without a lease: static, or IPv6 by SLAAC); but an
//!    IPv4 frame from a card that held `ip` before, or that a MAC row names, names that card
//!    (an address kept after its release).
//! 2. The subscriber: a MAC row for that device valid at `t`; else the narrowest address row
//!    for `ip`; else, for an IPv6 address with no DHCPv6 binding, the address row of the IPv4
//!    address the same device leased at `t` (a dual-stack client's IPv6 traffic goes to the
//!    user of its IPv4 lease).
//! 3. The host name: from the binding of `ip`, else (IPv6 without DHCPv6) from the device's
//!    IPv4 lease.
//!
//! The caller picks the client side of a record (the source on a `lan` interface) and passes
//! the flow's start, never the time of the query. A MAC from a packet is only the client's when
//! the client is on the audited link: behind a router it is the router's, and the MAC rows of a
//! subscribers file must not name routers.

use std::net::IpAddr;

use crate::record::Mac;

use super::leases::bindings::{Bindings, Span};
use super::subscribers::{MatchedBy, Subscriber, SubscriberTable};

/// How the subscriber of an [`Identity`] was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    /// A MAC row for the device.
    Mac,
    /// An address row for the address itself.
    Address,
    /// An address row for the IPv4 address the device leased (IPv6 without DHCPv6).
    V4LeaseOfDevice,
}

/// What is known about the client behind an address at an instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Identity<'a> {
    /// The subscriber, and how it was found.
    pub subscriber: Option<(&'a Subscriber, Via)>,
    /// The host name from DHCP.
    pub hostname: Option<&'a str>,
    /// The device's MAC (from the DHCP binding, else the packet's; see the module docs).
    pub mac: Option<Mac>,
    /// When the address last changed hands (`i64::MIN`: never, as far as the leases tell):
    /// a DNS answer to it before then was another device's.
    pub names_since: i64,
}

/// The join of the attribution sources this module reads; borrowed for a batch of records.
#[derive(Clone, Copy)]
pub struct Attribution<'a> {
    /// The subscribers table (the current snapshot).
    pub subscribers: &'a SubscriberTable,
    /// The DHCP bindings.
    pub bindings: &'a Bindings,
}

impl<'a> Attribution<'a> {
    /// The identity behind `ip` (seen with `packet_mac`) at `t_ns`, by the module's
    /// precedence.
    #[inline]
    pub fn identity(&self, ip: IpAddr, packet_mac: Option<Mac>, t_ns: i64) -> Identity<'a> {
        let (lease, names_since) = self.bindings.at_and_handed_over(ip, t_ns);
        let leased = lease.and_then(|s| s.holder.mac);
        // A DHCPv6 lease's MAC is the one inside its DUID when the server knew no other: the
        // MAC of whatever card the DUID was made on (Windows keeps it across cards, a cloned
        // image across machines). A frame from a device that holds an IPv4 lease of its own
        // then names that device, or a DUID made on another subscriber's card named that
        // subscriber for this one's flows. A frame from anything else (a relay or router, whose
        // clients' frames all carry its MAC) leaves the DUID's word.
        // Read only where it can matter (IPv6, a lease MAC and another frame MAC): this runs
        // for every record.
        let from_duid = || {
            lease
                .and_then(|s| s.holder.client_id.as_deref())
                .and_then(super::leases::mac_from_duid)
        };
        // An IPv4 lease names the card that asked for it. A frame from a card that held the
        // address before (kept after its release), or that a subscriber row names by its MAC,
        // is that device using an address it no longer holds, and names it, with the host
        // name of its own earlier binding (else of its IPv4 lease elsewhere): the holder did
        // not send it. A card that merely holds a lease of its own is no such evidence: a
        // relay, a MAC-rewriting extender or a second card of a host sends for others.
        let stranger_of = |l: Mac, p: Mac| {
            if !ip.is_ipv4() || l == p {
                return None;
            }
            let before = self.bindings.held_before(ip, p, t_ns);
            (before.is_some() || self.subscribers.by_mac(p, t_ns).is_some()).then_some(before)
        };
        let (mac, stranger) = match (leased, packet_mac) {
            (Some(l), Some(p))
                if ip.is_ipv6()
                    && l != p
                    && from_duid() == Some(l)
                    && self.bindings.v4_of_mac(p, t_ns).is_some() =>
            {
                (Some(p), None)
            }
            (Some(l), Some(p)) => match stranger_of(l, p) {
                Some(before) => (Some(p), Some(before)),
                None => (Some(l), None),
            },
            (l, p) => (l.or(p), None),
        };
        // An IPv6 client without a DHCPv6 lease: its device's IPv4 lease stands in; so does
        // the own lease of a device using an IPv4 address it no longer holds.
        let v4_lease = match (ip, lease, mac) {
            (IpAddr::V6(_), None, Some(m)) => self.bindings.v4_of_mac(m, t_ns),
            (IpAddr::V4(_), _, Some(m)) if stranger.is_some() => self.bindings.v4_of_mac(m, t_ns),
            _ => None,
        };
        // Its own earlier binding of the address, for its host name.
        let lease = match stranger {
            Some(before) => before,
            None => lease,
        };
        let stranger = stranger.is_some();
        let subscriber = match self.subscribers.account_at(ip, mac, t_ns) {
            Some((s, MatchedBy::Mac)) => Some((s, Via::Mac)),
            // Not the address's row for a device using another's address: its own lease's.
            Some((s, MatchedBy::Address)) if !stranger => Some((s, Via::Address)),
            _ => v4_lease.and_then(|(v4, _)| {
                self.subscribers
                    .by_addr(IpAddr::V4(v4), t_ns)
                    .map(|s| (s, Via::V4LeaseOfDevice))
            }),
        };
        let hostname = lease
            .or(v4_lease.map(|(_, s)| s))
            .and_then(|s: &Span| s.hostname.as_deref());
        Identity {
            subscriber,
            hostname,
            mac,
            names_since,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::enrich::leases::bindings::{Holder, Observation, Source};
    use crate::enrich::subscribers::ParsedSubscribers;
    use crate::enrich::Validity;

    const S: i64 = 1_000_000_000;
    const LAPTOP: Mac = Mac([2, 0, 0, 0, 0, 1]);
    const PHONE: Mac = Mac([2, 0, 0, 0, 0, 2]);
    const ROUTER: Mac = Mac([2, 0, 0, 0, 0, 0xfe]);

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    fn lease(b: &mut Bindings, addr: &str, mac: Mac, host: &str, from: i64, to: i64) {
        b.observe(
            Observation {
                ip: ip(addr),
                holder: Holder {
                    mac: Some(mac),
                    client_id: None,
                },
                hostname: Some(host.into()),
                valid: Validity {
                    from: Some(from),
                    to: Some(to),
                },
                source: Source::Packet,
            },
            from,
        );
    }

    fn world() -> (SubscriberTable, Bindings) {
        let subs = ParsedSubscribers::parse(
            b"match,account,name\n\
              10.0.0.0/24,pool,\n\
              10.0.0.50,static-50,\n\
              02:00:00:00:00:02,phone-owner,Pat\n",
        )
        .expect("subscribers");
        let mut b = Bindings::default();
        lease(&mut b, "10.0.0.7", LAPTOP, "laptop", 100 * S, 200 * S);
        lease(&mut b, "10.0.0.7", PHONE, "phone", 200 * S, 300 * S);
        lease(&mut b, "10.0.0.50", LAPTOP, "laptop", 300 * S, 400 * S);
        (SubscriberTable::build([&subs]), b)
    }

    fn who(
        a: &Attribution<'_>,
        addr: &str,
        mac: Option<Mac>,
        t: i64,
    ) -> (Option<String>, Option<Via>, Option<String>, Option<Mac>) {
        let id = a.identity(ip(addr), mac, t);
        (
            id.subscriber.map(|(s, _)| s.account.to_string()),
            id.subscriber.map(|(_, v)| v),
            id.hostname.map(str::to_owned),
            id.mac,
        )
    }

    #[test]
    fn the_binding_at_the_flow_start_decides() {
        let (subs, b) = world();
        let a = Attribution {
            subscribers: &subs,
            bindings: &b,
        };
        let s = |x: &str| Some(x.to_string());
        // The same address, two holders: each flow gets the one of its start, whatever the
        // packet's MAC (a router's, here).
        assert_eq!(
            who(&a, "10.0.0.7", Some(ROUTER), 150 * S),
            (s("pool"), Some(Via::Address), s("laptop"), Some(LAPTOP))
        );
        assert_eq!(
            who(&a, "10.0.0.7", Some(ROUTER), 250 * S),
            (s("phone-owner"), Some(Via::Mac), s("phone"), Some(PHONE))
        );
        // A MAC row beats an address row; the narrowest address row beats the pool.
        assert_eq!(who(&a, "10.0.0.50", None, 350 * S).0, s("static-50"));
        // No lease: the packet's MAC is the device.
        assert_eq!(
            who(&a, "10.0.0.9", Some(PHONE), 50 * S),
            (s("phone-owner"), Some(Via::Mac), None, Some(PHONE))
        );
        assert_eq!(who(&a, "192.0.2.1", None, 50 * S), (None, None, None, None));
        // The names the address was answered before it changed hands were the laptop's.
        let since = |t| a.identity(ip("10.0.0.7"), None, t).names_since;
        assert_eq!((since(150 * S), since(250 * S)), (i64::MIN, 200 * S));
        assert_eq!(
            a.identity(ip("10.0.0.9"), None, 50 * S).names_since,
            i64::MIN
        );
    }

    #[test]
    fn ipv6_without_dhcpv6_goes_through_the_devices_ipv4_lease() {
        let (subs, mut b) = world();
        let a = Attribution {
            subscribers: &subs,
            bindings: &b,
        };
        let s = |x: &str| Some(x.to_string());
        assert_eq!(
            who(&a, "2001:db8::1234", Some(LAPTOP), 150 * S),
            (
                s("pool"),
                Some(Via::V4LeaseOfDevice),
                s("laptop"),
                Some(LAPTOP)
            )
        );
        assert_eq!(
            who(&a, "2001:db8::1234", Some(LAPTOP), 350 * S),
            (
                s("static-50"),
                Some(Via::V4LeaseOfDevice),
                s("laptop"),
                Some(LAPTOP)
            )
        );
        assert_eq!(
            who(&a, "2001:db8::1234", Some(LAPTOP), 250 * S).0,
            None,
            "no IPv4 lease then"
        );
        // With DHCPv6, its binding decides.
        lease(&mut b, "2001:db8::1234", PHONE, "phone6", 100 * S, 400 * S);
        let a = Attribution {
            subscribers: &subs,
            bindings: &b,
        };
        assert_eq!(
            who(&a, "2001:db8::1234", Some(LAPTOP), 150 * S),
            (s("phone-owner"), Some(Via::Mac), s("phone6"), Some(PHONE))
        );
    }

    /// A DHCPv6 lease whose MAC is the one inside its DUID (a DUID-LLT made on the phone's
    /// card, carried by a cloned image to the laptop): the laptop's frames name the laptop,
    /// not the phone's owner. A lease whose DUID holds no MAC keeps its own.
    #[test]
    fn a_mac_taken_from_a_duid_gives_way_to_the_frames() {
        let (subs, mut b) = world();
        // DUID-LLT: type 1, hardware type 1, a time, the MAC.
        let mut duid = vec![0, 1, 0, 1, 0x2a, 0x2b, 0x2c, 0x2d];
        duid.extend_from_slice(&PHONE.0);
        b.observe(
            Observation {
                ip: ip("2001:db8::77"),
                holder: Holder {
                    mac: Some(PHONE),
                    client_id: Some(duid.into()),
                },
                hostname: Some("clone".into()),
                valid: Validity {
                    from: Some(100 * S),
                    to: Some(400 * S),
                },
                source: Source::Packet,
            },
            100 * S,
        );
        let a = Attribution {
            subscribers: &subs,
            bindings: &b,
        };
        let id = a.identity(ip("2001:db8::77"), Some(LAPTOP), 150 * S);
        assert_eq!(id.mac, Some(LAPTOP));
        assert_ne!(id.subscriber.map(|(s, _)| &*s.account), Some("phone-owner"));
        // No frame MAC (a record of the other direction): the lease's is all there is. A
        // frame from a router (no lease of its own: a relay's clients all carry its MAC)
        // leaves the DUID's word too.
        assert_eq!(
            a.identity(ip("2001:db8::77"), None, 150 * S).mac,
            Some(PHONE)
        );
        assert_eq!(
            a.identity(ip("2001:db8::77"), Some(ROUTER), 150 * S).mac,
            Some(PHONE)
        );
    }

    /// A card that held an IPv4 address before (kept after its release), or that a subscriber
    /// row names, sending from it while another card holds it: it names itself, its earlier
    /// binding's host name, not the holder's (its flows read as the new holder's). A card
    /// that merely holds a lease of its own elsewhere (a relay, a MAC-rewriting extender, a
    /// host's second card) and a router's frames leave the lease's word.
    #[test]
    fn a_card_using_an_ipv4_address_it_no_longer_holds_names_itself() {
        let (subs, mut b) = world();
        lease(&mut b, "10.0.0.8", LAPTOP, "laptop-8", 200 * S, 300 * S);
        let a = Attribution {
            subscribers: &subs,
            bindings: &b,
        };
        let s = |x: &str| Some(x.to_string());
        // 10.0.0.7: the laptop's until 200 s, then the phone's; the laptop goes on using it.
        assert_eq!(
            who(&a, "10.0.0.7", Some(LAPTOP), 250 * S),
            (
                s("pool"),
                Some(Via::V4LeaseOfDevice),
                s("laptop"),
                Some(LAPTOP)
            ),
            "the laptop, which held it before"
        );
        // The phone's owner has a row by MAC: named while the laptop holds 10.0.0.7.
        assert_eq!(
            who(&a, "10.0.0.7", Some(PHONE), 150 * S),
            (s("phone-owner"), Some(Via::Mac), None, Some(PHONE))
        );
        // 10.0.0.50 is the laptop's from 300 s; the extender (its own lease, 10.0.0.60) sends
        // for it, its MAC rewritten: the lease decides.
        lease(&mut b, "10.0.0.60", ROUTER, "extender", 0, 1_000 * S);
        let a = Attribution {
            subscribers: &subs,
            bindings: &b,
        };
        assert_eq!(
            who(&a, "10.0.0.50", Some(ROUTER), 350 * S),
            (
                s("static-50"),
                Some(Via::Address),
                s("laptop"),
                Some(LAPTOP)
            ),
            "a relay's frames"
        );
        assert_eq!(
            who(&a, "10.0.0.7", Some(ROUTER), 250 * S),
            (s("phone-owner"), Some(Via::Mac), s("phone"), Some(PHONE)),
            "a router's frames"
        );
    }
}
