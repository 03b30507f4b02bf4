//! The server of `--syslog`: `tcp://HOST:PORT` or `tls://HOST:PORT`.

use std::fmt;

use super::SyslogError;

/// Default port of syslog over TCP (RFC 6587's `syslog-conn`, IANA 601).
pub const TCP_PORT: u16 = 601;
/// Default port of syslog over TLS (RFC 5425).
pub const TLS_PORT: u16 = 6514;

/// A syslog server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// Whether the connection is TLS.
    pub tls: bool,
    /// Host name or address (without IPv6 brackets): what is resolved, and for TLS the name
    /// the server's certificate must carry.
    pub host: String,
    /// The port.
    pub port: u16,
}

impl Target {
    /// Parses `tcp://HOST[:PORT]` or `tls://HOST[:PORT]` (IPv6 as `[ADDR]`); the port defaults
    /// to 601 for TCP and 6514 for TLS.
    pub fn parse(url: &str) -> Result<Self, SyslogError> {
        let err = |reason: &str| SyslogError::Url {
            url: url.to_owned(),
            reason: reason.to_owned(),
        };
        let (scheme, rest) = url.split_once("://").ok_or_else(|| err("no scheme"))?;
        let tls = match scheme.to_ascii_lowercase().as_str() {
            "tcp" => false,
            "tls" => true,
            _ => return Err(err("the scheme is neither tcp nor tls")),
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let (host, after) = v6
                .split_once(']')
                .ok_or_else(|| err("an IPv6 address without its closing ]"))?;
            match after {
                "" => (host, None),
                p => (
                    host,
                    Some(p.strip_prefix(':').ok_or_else(|| err("junk after ]"))?),
                ),
            }
        } else {
            match rest.rsplit_once(':') {
                // `tcp://::1` would be host `:` port 1: which colon ends an address without
                // brackets cannot be told.
                Some((h, p)) if h.contains(':') => {
                    return Err(err(&unbracketed(scheme, rest, h, p, tls)));
                }
                Some((h, p)) => (h, Some(p)),
                None => (rest, None),
            }
        };
        if host.is_empty() || host.contains(['/', '@', '?', '#', ' ']) {
            return Err(err("no host name or address"));
        }

        let port = match port {
            None => {
                if tls {
                    TLS_PORT
                } else {
                    TCP_PORT
                }
            }
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|&p| p != 0)
                .ok_or_else(|| err("the port is not a number from 1 to 65535"))?,
        };
        Ok(Self {
            tls,
            host: host.to_owned(),
            port,
        })
    }
}

/// The reason for an IPv6 address given without brackets (`rest` after the scheme, split at
/// its last colon into `host` and `port`), with the form to write: the whole of `rest` as the
/// address when it is one, and the default port.
fn unbracketed(scheme: &str, rest: &str, host: &str, port: &str, tls: bool) -> String {
    let scheme = scheme.to_ascii_lowercase();
    let default = if tls { TLS_PORT } else { TCP_PORT };
    let (addr, port) = match (rest.parse::<std::net::Ipv6Addr>(), port.parse::<u16>()) {
        (Ok(_), _) => (rest, default),
        (Err(_), Ok(p)) => (host, p),
        (Err(_), Err(_)) => (rest, default),
    };
    format!("an IPv6 address goes in brackets, the port after them: {scheme}://[{addr}]:{port}")
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "tls" } else { "tcp" };
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_servers() {
        for (url, tls, host, port, shown) in [
            (
                "tcp://127.0.0.1:5140",
                false,
                "127.0.0.1",
                5140,
                "tcp://127.0.0.1:5140",
            ),
            (
                "tls://logs.example:6514",
                true,
                "logs.example",
                6514,
                "tls://logs.example:6514",
            ),
            (
                "TLS://logs.example",
                true,
                "logs.example",
                6514,
                "tls://logs.example:6514",
            ),
            ("tcp://[::1]:514/", false, "::1", 514, "tcp://[::1]:514"),
            ("tcp://[::1]", false, "::1", 601, "tcp://[::1]:601"),
        ] {
            let t = Target::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"));
            assert_eq!((t.tls, t.host.as_str(), t.port), (tls, host, port), "{url}");
            assert_eq!(t.to_string(), shown);
        }
    }

    #[test]
    fn refuses_what_is_no_server() {
        for (url, reason) in [
            ("127.0.0.1:514", "no scheme"),
            ("udp://h:514", "neither tcp nor tls"),
            ("tcp://:514", "no host"),
            ("tcp://h:0", "port"),
            ("tcp://h:http", "port"),
            ("tcp://[::1", "closing ]"),
            ("tcp://user@h:1", "no host"),
            // Read as host `:` port 1, and host `2001:db8:` port 5.
            (
                "tcp://::1",
                "in brackets, the port after them: tcp://[::1]:601",
            ),
            (
                "tls://2001:db8::5",
                "in brackets, the port after them: tls://[2001:db8::5]:6514",
            ),
            (
                "tcp://fe80::1%eth0:514",
                "in brackets, the port after them: tcp://[fe80::1%eth0]:514",
            ),
        ] {
            let e = Target::parse(url).expect_err(url).to_string();
            assert!(e.contains(reason) && e.contains(url), "{url}: {e}");
        }
    }
}
