//! dnsmasq's leases file (`--dhcp-leasefile`), rewritten whole on every change:
//!
//! ```text
//! 1796015388 02:00:00:77:00:02 10.77.0.146 laptop-udhcpc 01:02:00:00:77:00:02
//! duid 00:01:00:01:32:9f:c1:21:02:00:00:77:00:01
//! 1796015393 7798786 fd77::1fd phone6 00:03:00:01:02:00:00:77:00:02
//! ```
//!
//! DHCPv4 lines: expiry (Unix seconds, 0 for an infinite lease), hardware address (with a
//! `TT-` hardware-type prefix when not Ethernet), address, host name or `*`, client id or `*`.
//! The `duid` line gives the server's DUID; the DHCPv6 lines after it hold expiry, IAID
//! (`T` before it for a temporary address), address, host name, client DUID. The file holds no
//! lease start: a lease's window starts when the agent first sees it.

use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Arc;

use crate::enrich::source::numbered_lines;
use crate::enrich::Validity;
use crate::record::Mac;

use super::{
    clean_hostname, mac_from_duid, parse_hex_colons, BadLease, Lease, LeaseFormat, LeaseLineError,
    LeaseState, ParsedLeases,
};

/// Parses a whole file; bad lines are skipped and listed.
pub fn parse(bytes: &[u8]) -> ParsedLeases {
    let mut out = ParsedLeases {
        format: Some(LeaseFormat::Dnsmasq),
        ..ParsedLeases::default()
    };
    for (line, text) in numbered_lines(bytes) {
        let Some(text) = out.text(line, text) else {
            continue;
        };
        let fields: Vec<&str> = text.split_ascii_whitespace().collect();
        if fields.is_empty() || fields[0] == "duid" {
            continue;
        }
        match parse_line(&fields, line) {
            Ok(lease) => out.leases.push(lease),
            Err(error) => out.bad.push(BadLease { line, error }),
        }
    }
    out
}

fn parse_line(fields: &[&str], line: u32) -> Result<Lease, LeaseLineError> {
    let &[expiry, hw_or_iaid, addr, host, client] = fields else {
        return Err(LeaseLineError::FieldCount {
            found: fields.len(),
        });
    };
    // An expiry that does not fit a time in nanoseconds (past the year 2262) is damage:
    // saturated, it made a lease that never ends.
    let expiry_ns: i64 = expiry
        .parse::<i64>()
        .ok()
        .filter(|&e| e >= 0)
        .and_then(|e| e.checked_mul(1_000_000_000))
        .ok_or_else(|| LeaseLineError::field("expiry", expiry, "a Unix time in seconds"))?;
    let ip = IpAddr::from_str(addr)
        .map_err(|_| LeaseLineError::field("address", addr, "an IP address"))?;
    let client_id = match client {
        "*" => None,
        c => Some(
            parse_hex_colons(c)
                .ok_or_else(|| LeaseLineError::field("client id", c, "colon-separated hex"))?,
        ),
    };
    let mac = match ip {
        IpAddr::V4(_) => hardware_mac(hw_or_iaid)?,
        IpAddr::V6(_) => {
            let iaid = hw_or_iaid.strip_prefix('T').unwrap_or(hw_or_iaid);
            if iaid.parse::<u32>().is_err() {
                return Err(LeaseLineError::field("IAID", hw_or_iaid, "a number"));
            }
            client_id.as_deref().and_then(mac_from_duid)
        }
    };
    Ok(Lease {
        ip,
        mac,
        client_id: client_id.map(Arc::from),
        hostname: (host != "*").then(|| clean_hostname(host)).flatten(),
        valid: Validity {
            from: None,
            to: (expiry_ns != 0).then_some(expiry_ns),
        },
        state: LeaseState::Bound,
        line,
    })
}

/// The hardware address field: an Ethernet MAC, or `TT-xx:...` for another hardware type
/// (no MAC then).
fn hardware_mac(text: &str) -> Result<Option<Mac>, LeaseLineError> {
    let bad = || LeaseLineError::field("hardware address", text, "a MAC address");
    let (ethernet, hex) = match text.split_once('-') {
        Some((t, rest)) if t.len() == 2 => (t == "01", rest),
        Some(_) => return Err(bad()),
        None => (true, text),
    };
    let bytes = parse_hex_colons(hex).ok_or_else(bad)?;
    Ok(match <[u8; 6]>::try_from(bytes.as_slice()) {
        Ok(m) if ethernet => Some(Mac(m)),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURE: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/idents/dnsmasq.leases"
    );

    #[test]
    fn the_real_file() {
        let bytes = std::fs::read(FIXTURE).expect("fixture");
        let p = parse(&bytes);
        assert_eq!(p.bad, []);
        assert_eq!(p.leases.len(), 2);
        let v4 = &p.leases[0];
        assert_eq!(v4.ip, "10.77.0.146".parse::<IpAddr>().expect("ip"));
        assert_eq!(v4.mac, Some(Mac([2, 0, 0, 0x77, 0, 2])));
        assert_eq!(v4.hostname.as_deref(), Some("laptop-udhcpc"));
        assert_eq!(v4.client_id.as_deref(), Some(&[1, 2, 0, 0, 0x77, 0, 2][..]));
        assert!(v4.valid.from.is_none());
        assert_eq!(v4.valid.to.map(|t| t % 1_000_000_000), Some(0));
        let v6 = &p.leases[1];
        assert_eq!(v6.ip, "fd77::1fd".parse::<IpAddr>().expect("ip"));
        assert_eq!(v6.mac, Some(Mac([2, 0, 0, 0x77, 0, 2])), "from the DUID-LL");
        assert_eq!(v6.hostname.as_deref(), Some("phone6"));
        assert_eq!(v6.line, 3);
    }

    #[test]
    fn infinite_other_hardware_and_bad_lines() {
        let p = parse(
            b"0 aa:bb:cc:dd:ee:01 10.0.0.1 * *\n\
              100 06-aa:bb:cc:dd:ee:02 10.0.0.2 host *\n\
              100 aa:bb:cc:dd:ee:03 10.0.0.300 host *\n\
              soon aa:bb:cc:dd:ee:04 10.0.0.4 host *\n\
              100 aa:bb:cc:dd:ee:05 10.0.0.5 host\n\
              100 T12 fd00::1 * 00:02:00:00:00:09:01\n\
              100 x12 fd00::2 * *\n\
              100 aa:bb:cc:dd:ee:zz 10.0.0.6 h *\n",
        );
        assert_eq!(p.leases.len(), 3);
        assert_eq!(p.leases[0].valid, Validity::ALWAYS, "expiry 0 is infinite");
        assert_eq!(p.leases[0].hostname, None);
        assert_eq!(p.leases[1].mac, None, "hardware type 6 is not Ethernet");
        assert_eq!(p.leases[2].mac, None, "enterprise DUID carries no MAC");
        let shown: Vec<String> = p.bad.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "3: address: `10.0.0.300` is not an IP address",
                "4: expiry: `soon` is not a Unix time in seconds",
                "5: 4 fields, expected 5 (expiry, MAC or IAID, address, host name, client id)",
                "7: IAID: `x12` is not a number",
                "8: hardware address: `aa:bb:cc:dd:ee:zz` is not a MAC address",
            ]
        );
    }

    /// An expiry past the year 2262 does not fit a time in nanoseconds: it was saturated to
    /// the last one, a lease that never ended.
    #[test]
    fn an_expiry_past_what_nanoseconds_hold_is_a_bad_line() {
        let p = parse(
            b"9223372037 aa:bb:cc:dd:ee:01 10.0.0.1 * *\n\
              99999999999999 aa:bb:cc:dd:ee:02 10.0.0.2 * *\n\
              9223372036 aa:bb:cc:dd:ee:03 10.0.0.3 * *\n",
        );
        let shown: Vec<String> = p.bad.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "1: expiry: `9223372037` is not a Unix time in seconds",
                "2: expiry: `99999999999999` is not a Unix time in seconds",
            ]
        );
        assert_eq!(p.leases.len(), 1);
        assert_eq!(p.leases[0].valid.to, Some(9_223_372_036_000_000_000));
    }
}
