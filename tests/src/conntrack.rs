//! The gateway's conntrack table as `conntrack -L -o extended` prints it: the oracle the NAT
//! attribution is checked against.

use std::net::{IpAddr, SocketAddr};

use anyhow::Context as _;

use crate::lab::{require, sh, Lab};

/// One conntrack entry: the original tuple, and the reply tuple's destination, which is where
/// the gateway's NAT put the inside source (the outside address and port).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// `tcp`, `udp`, `icmp`...
    pub proto: String,
    /// Original source (the inside client).
    pub src: SocketAddr,
    /// Original destination (the remote server).
    pub dst: SocketAddr,
    /// Reply destination: the outside address and port the NAT gave the flow (equal to `src`
    /// when the flow was not translated).
    pub outside: SocketAddr,
}

/// Every entry of the gateway's table, now.
pub fn list(lab: &Lab) -> anyhow::Result<Vec<Entry>> {
    require("conntrack", "conntrack")?;
    let out = sh(lab
        .cmd(&lab.gateway, "conntrack")
        .args(["-L", "-o", "extended"]))?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .filter_map(|l| parse(l).transpose())
        .collect()
}

/// Reads one line (`ipv4 2 tcp 6 TIMEOUT [STATE] src= dst= sport= dport= ... src= dst= sport=
/// dport= ...`): the first address and port keys are the original tuple, the second the reply
/// tuple. `None` for a protocol without ports (ICMP).
fn parse(line: &str) -> anyhow::Result<Option<Entry>> {
    let mut words = line.split_whitespace();
    let proto = words
        .nth(2)
        .with_context(|| format!("conntrack line without a protocol: {line:?}"))?
        .to_owned();
    let mut seen: Vec<(&str, &str)> = Vec::new();
    for w in words {
        if let Some(kv) = w.split_once('=') {
            seen.push(kv);
        }
    }
    let nth = |key: &str, n: usize| seen.iter().filter(|(k, _)| *k == key).nth(n).map(|kv| kv.1);
    let addr = |ip: &str, port: &str, n: usize| -> anyhow::Result<Option<SocketAddr>> {
        let (Some(ip), Some(port)) = (nth(ip, n), nth(port, n)) else {
            return Ok(None);
        };
        let ip: IpAddr = ip
            .parse()
            .with_context(|| format!("address {ip:?} in {line:?}"))?;
        let port: u16 = port
            .parse()
            .with_context(|| format!("port {port:?} in {line:?}"))?;
        Ok(Some(SocketAddr::new(ip, port)))
    };
    let (Some(src), Some(dst), Some(outside)) = (
        addr("src", "sport", 0)?,
        addr("dst", "dport", 0)?,
        addr("dst", "dport", 1)?,
    ) else {
        return Ok(None);
    };
    Ok(Some(Entry {
        proto,
        src,
        dst,
        outside,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_masqueraded_tcp_line_and_skips_icmp() {
        let tcp = "ipv4     2 tcp      6 117 TIME_WAIT src=198.51.100.101 dst=203.0.113.2 \
                   sport=41000 dport=443 packets=10 bytes=900 src=203.0.113.2 dst=203.0.113.1 \
                   sport=443 dport=1025 packets=8 bytes=3000 [ASSURED] mark=0 use=1";
        let e = parse(tcp).expect("parses").expect("has ports");
        assert_eq!(e.proto, "tcp");
        assert_eq!(e.src, "198.51.100.101:41000".parse().expect("literal"));
        assert_eq!(e.dst, "203.0.113.2:443".parse().expect("literal"));
        assert_eq!(e.outside, "203.0.113.1:1025".parse().expect("literal"));
        let icmp = "ipv4     2 icmp     1 29 src=198.51.100.2 dst=203.0.113.2 type=8 code=0 \
                    id=7 src=203.0.113.2 dst=203.0.113.1 type=0 code=0 id=7 mark=0 use=1";
        assert_eq!(parse(icmp).expect("parses"), None);
        assert!(parse("ipv4 2 tcp 6 1 src=1.2.3.4.5 dst=1.1.1.1 sport=1 dport=2").is_err());
    }
}
