//! The one bridge between subscriber matches and the project's strict address parser
//! ([`crate::blocklist::line`]: dotted quads without leading zeros, CIDRs without host bits,
//! ranges `A-B` or `A - B`). When the project's prefix type changes, only this file does.

use crate::blocklist::line::{parse_line, Entry as ListEntry, LineKind};
use crate::blocklist::LineError;
use crate::net::{range_to_prefixes, AddrBits, Net};

use super::Match;

/// Why an address field was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AddrError {
    /// The address parser's own reason (octets, prefix length, host bits, reversed range...).
    #[error(transparent)]
    Syntax(#[from] LineError),
    /// Not an address at all (a name, a URL, several tokens).
    #[error("`{0}` is not an IPv4 or IPv6 address, CIDR, range `A-B` or MAC")]
    NotAnAddress(String),
}

/// An address, CIDR or range as the interval it covers.
pub(super) fn parse_addresses(text: &str) -> Result<Match, AddrError> {
    let not = || AddrError::NotAnAddress(text.into());
    // The list parser also takes names, hosts lines and `port` rules: let through only what
    // can be an address, CIDR or range, with blanks only around a range's dash.
    let charset = text
        .bytes()
        .all(|b| b.is_ascii_hexdigit() || b":./- ".contains(&b));
    if !charset || text.split('-').any(|p| p.trim().contains(' ')) {
        return Err(not());
    }
    let mut out = Vec::new();
    if parse_line(text.as_bytes(), &mut out)? != LineKind::Rule {
        return Err(not());
    }
    // A range comes back as its prefixes in address order: the interval is first to last.
    match (out.first(), out.last()) {
        (Some(ListEntry::V4(a)), Some(ListEntry::V4(b))) => Ok(Match::V4 {
            lo: a.addr,
            hi: b.last(),
        }),
        (Some(ListEntry::V6(a)), Some(ListEntry::V6(b))) => Ok(Match::V6 {
            lo: a.addr,
            hi: b.last(),
        }),
        _ => Err(not()),
    }
}

/// Writes an interval the way a person would: an address, a CIDR, or a range.
pub(super) fn fmt_interval<A: AddrBits>(
    lo: A,
    hi: A,
    f: &mut std::fmt::Formatter<'_>,
) -> std::fmt::Result {
    let mut nets: [Option<Net<A>>; 2] = [None, None];
    let mut n = 0;
    range_to_prefixes(lo, hi, |net| {
        if let Some(slot) = nets.get_mut(n) {
            *slot = Some(net);
        }
        n += 1;
    });
    match nets {
        [Some(net), None] if net.is_host() => net.addr.fmt_addr(f),
        [Some(net), None] => write!(f, "{net}"),
        _ => {
            lo.fmt_addr(f)?;
            f.write_str("-")?;
            hi.fmt_addr(f)
        }
    }
}
