//! ISC Kea's memfile lease files (`kea-leases4.csv`, `kea-leases6.csv`): CSV with a header,
//! appended to on every change and compacted now and then (LFC), so the last row for an
//! address is its state and the earlier rows are its history.
//!
//! Columns are read by name, so columns added by later Kea versions are ignored: `address`,
//! `valid_lifetime`, `expire` and `state` are required; `hwaddr`, `client_id` (DHCPv4),
//! `duid`, `lease_type` (DHCPv6) and `hostname` are used when present. A name Kea never wrote
//! within two edits of one of those that the header lacks (`hwadr`) is a damaged header, not a
//! new column: taken as new, the MACs or names would go unread without a word. A row with
//! `valid_lifetime` 0 records a lease removed (released); `state` 1 (declined) and 3
//! (released) also end the binding; 2 (expired-reclaimed) keeps the past window. Kea escapes
//! commas in text as `&#x2c`. The window is `[expire - valid_lifetime, expire)`: Kea's last
//! client transaction to the expiry.

use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Arc;

use crate::enrich::source::numbered_lines;
use crate::enrich::Validity;
use crate::record::Mac;

use super::{
    clean_hostname, mac_from_duid, parse_hex_colons, BadLease, Lease, LeaseFileError, LeaseFormat,
    LeaseLineError, LeaseState, ParsedLeases, FORMAT_WITHIN_LINES,
};

/// Kea's "infinite" valid lifetime.
const INFINITE: u64 = u32::MAX as u64;
/// `lease_type` of a delegated prefix (DHCPv6 IA_PD): a prefix, not an address.
const LEASE_TYPE_PD: &str = "2";

/// Every column a Kea memfile has had (DHCPv4 and DHCPv6, up to 2.6).
const KEA_COLUMNS: [&str; 19] = [
    "address",
    "hwaddr",
    "client_id",
    "valid_lifetime",
    "expire",
    "subnet_id",
    "fqdn_fwd",
    "fqdn_rev",
    "hostname",
    "state",
    "user_context",
    "pool_id",
    "duid",
    "pref_lifetime",
    "lease_type",
    "iaid",
    "prefix_len",
    "hwtype",
    "hwaddr_source",
];

/// The optional columns the parser reads in a DHCPv4 file.
const READ_OPTIONAL_V4: [&str; 3] = ["hwaddr", "client_id", "hostname"];
/// The optional columns the parser reads in a DHCPv6 file (one with `duid` or `iaid`).
const READ_OPTIONAL_V6: [&str; 4] = ["hwaddr", "duid", "lease_type", "hostname"];

struct Columns {
    address: usize,
    valid_lifetime: usize,
    expire: usize,
    hwaddr: Option<usize>,
    client_id: Option<usize>,
    duid: Option<usize>,
    lease_type: Option<usize>,
    hostname: Option<usize>,
    state: usize,
    count: usize,
}

impl Columns {
    fn from_header(header: &str) -> Result<Columns, LeaseFileError> {
        let names: Vec<&str> = header.split(',').map(str::trim).collect();
        let is_name = |n: &str| {
            !n.is_empty()
                && n.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        };
        // A header at all (the required columns) before its names are judged: another
        // format's first line is no damaged Kea header.
        let required = ["address", "valid_lifetime", "expire"];
        let find = |n: &str| names.iter().position(|&x| x == n);
        if required.iter().all(|r| names.contains(r)) {
            if let Some((i, name)) = names.iter().enumerate().find(|(_, n)| !is_name(n)) {
                return Err(LeaseFileError::BadColumnName {
                    column: i + 1,
                    name: (*name).to_owned(),
                });
            }
            // Only the family's own columns: a later column near one of the other family's
            // (`uuid`, two edits from DHCPv6's `duid`, in a DHCPv4 file) is no misspelling.
            let read = if names.iter().any(|n| *n == "duid" || *n == "iaid") {
                &READ_OPTIONAL_V6[..]
            } else {
                &READ_OPTIONAL_V4[..]
            };
            for (i, name) in names.iter().enumerate() {
                if KEA_COLUMNS.contains(name) {
                    continue;
                }
                let meant = read
                    .iter()
                    .copied()
                    .find(|c| find(c).is_none() && strsim::levenshtein(name, c) <= 2);
                if let Some(meant) = meant {
                    return Err(LeaseFileError::MisspeltColumn {
                        column: i + 1,
                        name: (*name).to_owned(),
                        meant,
                    });
                }
            }
        }
        let need = |n: &'static str| find(n).ok_or(LeaseFileError::MissingColumn(n));
        Ok(Columns {
            address: need("address")?,
            valid_lifetime: need("valid_lifetime")?,
            expire: need("expire")?,
            hwaddr: find("hwaddr"),
            client_id: find("client_id"),
            duid: find("duid"),
            lease_type: find("lease_type"),
            hostname: find("hostname"),
            // Every Kea since 1.0 writes it; a header without it is damaged (`stat`), and
            // its declined and released leases would read as bound.
            state: need("state")?,
            count: names.len(),
        })
    }
}

/// Parses a whole file; bad rows are skipped and listed. The header is the first line that
/// names the required columns, among the first [`FORMAT_WITHIN_LINES`] that are not blank;
/// lines before it are bad lines (a damaged start must not drop the leases after it).
pub fn parse(bytes: &[u8]) -> Result<ParsedLeases, LeaseFileError> {
    let mut out = ParsedLeases {
        format: Some(LeaseFormat::Kea),
        ..ParsedLeases::default()
    };
    let mut columns: Option<Columns> = None;
    let mut before_header: Vec<BadLease> = Vec::new();
    // Why the first text line looked at is no header: the file's error if none is found.
    let mut no_header: Option<LeaseFileError> = None;
    for (line, text) in numbered_lines(bytes) {
        let Some(cols) = &columns else {
            let error = match text {
                Ok(t) if t.trim().is_empty() => continue,
                Ok(t) => match Columns::from_header(t) {
                    Ok(c) => {
                        columns = Some(c);
                        out.bad.append(&mut before_header);
                        continue;
                    }
                    Err(e) => {
                        no_header.get_or_insert(e);
                        LeaseLineError::BeforeHeader
                    }
                },
                Err(e) => e.into(),
            };
            before_header.push(BadLease { line, error });
            if before_header.len() >= FORMAT_WITHIN_LINES {
                break;
            }
            continue;
        };
        let Some(text) = out.text(line, text) else {
            continue;
        };
        if text.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = text.split(',').collect();
        if fields.len() != cols.count {
            out.bad.push(BadLease {
                line,
                error: LeaseLineError::RowLength {
                    found: fields.len(),
                    expected: cols.count,
                },
            });
            continue;
        }
        let get = |i: Option<usize>| i.and_then(|i| fields.get(i).copied()).unwrap_or("");
        if cols.lease_type.is_some() && get(cols.lease_type) == LEASE_TYPE_PD {
            out.skipped_prefixes += 1;
            continue;
        }
        match parse_row(cols, &get, line) {
            Ok(lease) => out.leases.push(lease),
            Err(error) => out.bad.push(BadLease { line, error }),
        }
    }
    if columns.is_none() && !before_header.is_empty() {
        return Err(no_header.unwrap_or(LeaseFileError::NoHeader));
    }
    Ok(out)
}

fn parse_row<'a>(
    cols: &Columns,
    get: &impl Fn(Option<usize>) -> &'a str,
    line: u32,
) -> Result<Lease, LeaseLineError> {
    let addr = get(Some(cols.address));
    let ip = IpAddr::from_str(addr)
        .map_err(|_| LeaseLineError::field("address", addr, "an IP address"))?;
    let number = |field: &'static str, i: usize| {
        let t = get(Some(i));
        t.parse::<u64>()
            .map_err(|_| LeaseLineError::field(field, t, "a whole number"))
    };
    // A lifetime is Kea's 32-bit count of seconds: a larger one is damage, not a longer
    // lease (taken as infinite, it bound the address for ever).
    let lifetime = Some(number("valid_lifetime", cols.valid_lifetime)?)
        .filter(|&l| l <= INFINITE)
        .ok_or_else(|| {
            LeaseLineError::field(
                "valid_lifetime",
                get(Some(cols.valid_lifetime)),
                "seconds up to 4294967295 (infinite)",
            )
        })?;
    let expire = number("expire", cols.expire)?;
    let expire_ns = i64::try_from(expire)
        .ok()
        .and_then(|e| e.checked_mul(1_000_000_000))
        .ok_or_else(|| {
            LeaseLineError::field("expire", get(Some(cols.expire)), "a Unix time in seconds")
        })?;
    let state = match get(Some(cols.state)) {
        "" | "0" | "2" => LeaseState::Bound,
        "1" | "3" => LeaseState::Gone,
        s => return Err(LeaseLineError::field("state", s, "0, 1, 2 or 3")),
    };
    let state = if lifetime == 0 {
        LeaseState::Gone
    } else {
        state
    };
    let hex = |field: &'static str, i: Option<usize>| -> Result<Option<Vec<u8>>, LeaseLineError> {
        match get(i) {
            "" => Ok(None),
            t => parse_hex_colons(t)
                .map(Some)
                .ok_or_else(|| LeaseLineError::field(field, t, "colon-separated hex")),
        }
    };
    let hwaddr = hex("hwaddr", cols.hwaddr)?;
    let duid = hex("duid", cols.duid)?;
    let client_id = hex("client_id", cols.client_id)?.or(duid);
    let mac = hwaddr
        .and_then(|h| <[u8; 6]>::try_from(h.as_slice()).ok().map(Mac))
        .or_else(|| {
            client_id
                .as_deref()
                .filter(|_| ip.is_ipv6())
                .and_then(mac_from_duid)
        });
    let hostname = unescape(get(cols.hostname));
    let valid = if lifetime == INFINITE {
        Validity::ALWAYS
    } else {
        Validity {
            from: Some(expire_ns.saturating_sub((lifetime as i64).saturating_mul(1_000_000_000))),
            to: Some(expire_ns),
        }
    };
    Ok(Lease {
        ip,
        mac,
        client_id: client_id.map(Arc::from),
        hostname: clean_hostname(&hostname),
        valid,
        state,
        line,
    })
}

/// Undoes Kea's CSV escaping: `&#xHH` is the character with hex code `HH`.
fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("&#x") {
        out.push_str(&rest[..at]);
        let code = rest
            .get(at + 3..at + 5)
            .and_then(|h| u8::from_str_radix(h, 16).ok())
            .filter(u8::is_ascii);
        match code {
            Some(c) => {
                out.push(char::from(c));
                rest = &rest[at + 5..];
            }
            None => {
                out.push_str("&#x");
                rest = &rest[at + 3..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!(
            "{}/tests/fixtures/idents/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    #[test]
    fn the_real_lease4_file() {
        let p = parse(&fixture("kea-leases4.csv")).expect("header");
        assert_eq!(p.bad, []);
        assert_eq!(p.leases.len(), 4);
        let renewed = &p.leases[1];
        assert_eq!(renewed.ip, "10.77.0.160".parse::<IpAddr>().expect("ip"));
        assert_eq!(renewed.mac, Some(Mac([2, 0, 0, 0x77, 0, 2])));
        assert_eq!(renewed.hostname.as_deref(), Some("laptop-udhcpc"));
        let (from, to) = (
            renewed.valid.from.expect("from"),
            renewed.valid.to.expect("to"),
        );
        assert_eq!(to - from, 120_000_000_000, "valid_lifetime 120 s");
        assert_eq!(renewed.state, LeaseState::Bound);
        let released = &p.leases[3];
        assert_eq!(released.mac, Some(Mac([2, 0, 0, 0x77, 0, 3])));
        assert_eq!(
            released.state,
            LeaseState::Gone,
            "valid_lifetime 0: released"
        );
    }

    #[test]
    fn the_real_lease6_file() {
        let p = parse(&fixture("kea-leases6.csv")).expect("header");
        assert_eq!(p.bad, []);
        let l = &p.leases[0];
        assert_eq!(l.ip, "fd77::200".parse::<IpAddr>().expect("ip"));
        assert_eq!(l.mac, Some(Mac([2, 0, 0, 0x77, 0, 2])));
        assert_eq!(l.hostname.as_deref(), Some("phone6.lab.example"));
        assert_eq!(
            l.client_id.as_deref(),
            Some(&[0, 3, 0, 1, 2, 0, 0, 0x77, 0, 2][..])
        );
    }

    #[test]
    fn escapes_states_added_columns_and_bad_rows() {
        let p = parse(
            b"address,hwaddr,client_id,valid_lifetime,expire,subnet_id,fqdn_fwd,fqdn_rev,hostname,state,user_context,pool_id\n\
              10.0.0.1,aa:bb:cc:dd:ee:01,,3600,1800003600,1,0,0,a&#x2cb,0,{ \"x\": 1 },0\n\
              10.0.0.2,aa:bb:cc:dd:ee:02,,3600,1800003600,1,0,0,,1,,0\n\
              10.0.0.3,aa:bb:cc:dd:ee:03,,3600,1800003600,1,0,0,,2,,0\n\
              10.0.0.4,aa:bb:cc:dd:ee:04,,4294967295,1800003600,1,0,0,,0,,0\n\
              10.0.0.5,aa:bb:cc:dd:ee:05,,3600,1800003600,1,0,0,x,0,\n\
              10.0.0.6,aa:bb:cc:dd:ee:06,,soon,1800003600,1,0,0,x,0,,0\n\
              10.0.0.7,aa:bb:cc:dd:ee:07,,3600,1800003600,1,0,0,x,9,,0\n\
              10.0.0.8,aa:bb:cc:zz:ee:08,,3600,1800003600,1,0,0,x,0,,0\n",
        )
        .expect("header");
        assert_eq!(p.leases.len(), 4);
        assert_eq!(p.leases[0].hostname.as_deref(), Some("a,b"));
        assert_eq!(p.leases[1].state, LeaseState::Gone, "declined");
        assert_eq!(
            p.leases[2].state,
            LeaseState::Bound,
            "reclaimed keeps its past window"
        );
        assert_eq!(p.leases[3].valid, Validity::ALWAYS, "infinite lifetime");
        let shown: Vec<String> = p.bad.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "6: 11 fields, but the header has 12",
                "7: valid_lifetime: `soon` is not a whole number",
                "8: state: `9` is not 0, 1, 2 or 3",
                "9: hwaddr: `aa:bb:cc:zz:ee:08` is not colon-separated hex",
            ]
        );
        assert_eq!(
            parse(b"hwaddr,expire\n"),
            Err(LeaseFileError::MissingColumn("address"))
        );
        // A damaged column name (`state` unseen: a declined lease would read as bound).
        for damaged in ["stAte", "st\0ate", ""] {
            let text = format!(
                "address,hwaddr,client_id,valid_lifetime,expire,{damaged}\n\
                 10.0.0.2,aa:bb:cc:dd:ee:02,,3600,1800003600,1\n"
            );
            assert_eq!(
                parse(text.as_bytes()),
                Err(LeaseFileError::BadColumnName {
                    column: 6,
                    name: damaged.into()
                }),
                "{damaged:?}"
            );
        }
        // A misspelt optional column the parser reads is a damaged header, not a column a
        // later Kea added: its values would go unread. A new name far from them is read past.
        assert_eq!(
            parse(b"address,hwadr,valid_lifetime,expire,state\n10.0.0.2,aa:bb:cc:dd:ee:02,3600,1800003600,0\n"),
            Err(LeaseFileError::MisspeltColumn {
                column: 2,
                name: "hwadr".into(),
                meant: "hwaddr"
            })
        );
        assert_eq!(
            parse(b"address,hwaddr,valid_lifetime,expire,state,hostnme\n10.0.0.2,aa:bb:cc:dd:ee:02,3600,1800003600,0,a\n")
                .map_err(|e| e.to_string()),
            Err("Kea header column 6 is named \"hostnme\", a column no Kea version writes, and \
                 has no `hostname` column: a damaged header (its `hostname` values would go unread)"
                .into())
        );
        let later = parse(
            b"address,hwaddr,valid_lifetime,expire,state,vendor_class,uuid\n10.0.0.2,aa:bb:cc:dd:ee:02,3600,1800003600,0,x,y\n",
        )
        .expect("new columns are read past, one near the other family's `duid` too");
        assert_eq!(later.leases.len(), 1);
        assert!(
            matches!(
                parse(b"address,duid,valid_lifetime,expire,state,lease_typ\n"),
                Err(LeaseFileError::MisspeltColumn {
                    meant: "lease_type",
                    ..
                })
            ),
            "a DHCPv6 header's own columns are checked"
        );
        // A misspelt `state` (a damaged header) is no unknown column: it is required.
        assert_eq!(
            parse(b"address,hwaddr,valid_lifetime,expire,stat\n10.0.0.2,aa:bb:cc:dd:ee:02,3600,1800003600,1\n"),
            Err(LeaseFileError::MissingColumn("state"))
        );
        let pd = parse(
            b"address,duid,valid_lifetime,expire,lease_type,state\n2001:db8:1::,00:03:00:01:02:00:00:00:00:01,100,200,2,0\n",
        )
        .expect("header");
        assert_eq!((pd.leases.len(), pd.skipped_prefixes), (0, 1));
    }

    /// A damaged lifetime past Kea's infinite one bound its address for ever; a lifetime is
    /// a 32-bit count of seconds, and only its largest value means infinite.
    #[test]
    fn a_lifetime_past_the_infinite_one_is_a_bad_row() {
        let p = parse(
            b"address,hwaddr,client_id,valid_lifetime,expire,subnet_id,state\n\
              10.0.0.1,aa:bb:cc:dd:ee:01,,99999999999,1800003600,1,0\n\
              10.0.0.2,aa:bb:cc:dd:ee:02,,4294967296,1800003600,1,0\n\
              10.0.0.3,aa:bb:cc:dd:ee:03,,4294967295,1800003600,1,0\n",
        )
        .expect("header");
        let shown: Vec<String> = p.bad.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "2: valid_lifetime: `99999999999` is not seconds up to 4294967295 (infinite)",
                "3: valid_lifetime: `4294967296` is not seconds up to 4294967295 (infinite)",
            ]
        );
        assert_eq!(p.leases.len(), 1);
        assert_eq!(
            p.leases[0].valid,
            Validity::ALWAYS,
            "4294967295 is infinite"
        );
    }

    #[test]
    fn unescaping() {
        assert_eq!(unescape("a&#x2cb&#x2c"), "a,b,");
        assert_eq!(unescape("&#x"), "&#x");
        assert_eq!(unescape("&#xzz;"), "&#xzz;");
        assert_eq!(unescape("&#xff"), "&#xff", "only ASCII");
    }
}
