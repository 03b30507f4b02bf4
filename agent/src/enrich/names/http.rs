//! The host of an HTTP/1.x request (RFC 9112 section 3.2): the authority of an absolute-form
//! or authority-form (CONNECT) target, else the Host header. Parsed with `httparse`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use httparse::{Request, Status, EMPTY_HEADER};

use super::{DomainName, ParseFailure};

/// Header lines read before Host must have appeared; browsers send about 15.
const MAX_HEADERS: usize = 64;

/// What a request says about its host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostOutcome {
    /// A host name.
    Name(DomainName),
    /// The host is an address literal: no name to record.
    Address(IpAddr),
    /// A complete request head without a host (HTTP/1.0 without Host, or an empty Host).
    NoHost,
    /// The bytes end before the host: offer more, or give up with
    /// [`ParseFailure::Truncated`].
    NeedMore,
}

/// Whether `first` can open an HTTP/1.x request: a method token (upper-case letters, as
/// every registered method is) and a space, or the start of one.
pub fn looks_like_http(first: &[u8]) -> bool {
    let method = first.iter().take_while(|b| b.is_ascii_uppercase()).count();
    (1..=16).contains(&method) && matches!(first.get(method), Some(b' ') | None)
}

/// The host of the HTTP/1.x request at the start of a client's stream. A request head cut
/// short still gives its host when the Host line is complete: clients send it early.
pub fn host(stream: &[u8]) -> Result<HostOutcome, ParseFailure> {
    let mut headers = [EMPTY_HEADER; MAX_HEADERS];
    let mut req = Request::new(&mut headers);
    match req.parse(stream) {
        Ok(Status::Complete(_)) => of_request(&req),
        Ok(Status::Partial) => partial(stream),
        Err(httparse::Error::TooManyHeaders) => Err(ParseFailure::HttpTooManyHeaders),
        Err(_) => Err(ParseFailure::HttpBadRequest),
    }
}

/// The host among the complete lines of a head that has not ended yet.
fn partial(stream: &[u8]) -> Result<HostOutcome, ParseFailure> {
    let Some(last_nl) = stream.iter().rposition(|&b| b == b'\n') else {
        return Ok(HostOutcome::NeedMore);
    };
    let mut head = Vec::with_capacity(last_nl + 3);
    head.extend_from_slice(&stream[..=last_nl]);
    head.extend_from_slice(b"\r\n");
    let mut headers = [EMPTY_HEADER; MAX_HEADERS];
    let mut req = Request::new(&mut headers);
    match req.parse(&head) {
        Ok(Status::Complete(_)) => match of_request(&req)? {
            HostOutcome::NoHost => Ok(HostOutcome::NeedMore),
            found => Ok(found),
        },
        // The cut fell inside a header whose continuation is needed, or the request line is
        // not complete yet.
        Ok(Status::Partial) => Ok(HostOutcome::NeedMore),
        Err(httparse::Error::TooManyHeaders) => Err(ParseFailure::HttpTooManyHeaders),
        Err(_) => Err(ParseFailure::HttpBadRequest),
    }
}

fn of_request(req: &Request<'_, '_>) -> Result<HostOutcome, ParseFailure> {
    let target = req.path.unwrap_or("");
    if req.method == Some("CONNECT") {
        return authority_host(target.as_bytes());
    }
    if let Some(authority) = absolute_authority(target) {
        return authority_host(authority.as_bytes());
    }
    let mut hosts = req
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("host"));
    let Some(first) = hosts.next() else {
        return Ok(HostOutcome::NoHost);
    };
    // RFC 9112 section 3.2: more than one Host is a bad request.
    if hosts.next().is_some() {
        return Err(ParseFailure::HttpBadRequest);
    }
    authority_host(first.value.trim_ascii())
}

/// The authority of an absolute-form target (`http://host:port/path`).
fn absolute_authority(target: &str) -> Option<&str> {
    let (scheme, rest) = target.split_once("://")?;
    if !(scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https")) {
        return None;
    }
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    Some(
        authority
            .rsplit_once('@')
            .map_or(authority, |(_, host)| host),
    )
}

/// The host of `host[:port]`, `[v6]:port` or an empty authority.
fn authority_host(authority: &[u8]) -> Result<HostOutcome, ParseFailure> {
    if authority.is_empty() {
        return Ok(HostOutcome::NoHost);
    }
    if let Some(v6) = authority.strip_prefix(b"[") {
        let end = v6
            .iter()
            .position(|&b| b == b']')
            .ok_or(ParseFailure::BadName)?;
        let text = std::str::from_utf8(&v6[..end]).map_err(|_| ParseFailure::BadName)?;
        let addr: Ipv6Addr = text.parse().map_err(|_| ParseFailure::BadName)?;
        return Ok(HostOutcome::Address(addr.into()));
    }
    let host = match authority.iter().rposition(|&b| b == b':') {
        Some(i) if authority[i + 1..].iter().all(u8::is_ascii_digit) => &authority[..i],
        _ => authority,
    };
    if let Some(v4) = std::str::from_utf8(host)
        .ok()
        .and_then(|t| t.parse::<Ipv4Addr>().ok())
    {
        return Ok(HostOutcome::Address(v4.into()));
    }
    DomainName::from_wire(host).map(HostOutcome::Name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> Result<HostOutcome, ParseFailure> {
        Ok(HostOutcome::Name(
            DomainName::from_wire(s.as_bytes()).expect("valid test name"),
        ))
    }

    #[test]
    fn host_header_normalised() {
        let req = b"GET /x HTTP/1.1\r\nUser-Agent: t\r\nHOST: WWW.Example.COM.:8080 \r\nAccept: */*\r\n\r\n";
        assert_eq!(host(req), name("www.example.com"));
        assert_eq!(
            host(b"GET / HTTP/1.1\nHost: a.example\n\n"),
            name("a.example")
        );
    }

    #[test]
    fn absolute_and_authority_forms_win_over_host() {
        let req = b"GET http://user@Proxy.Example:3128/p?q HTTP/1.1\r\nHost: other.example\r\n\r\n";
        assert_eq!(host(req), name("proxy.example"));
        assert_eq!(
            host(b"CONNECT tunnel.example:443 HTTP/1.1\r\nHost: tunnel.example:443\r\n\r\n"),
            name("tunnel.example")
        );
        assert_eq!(
            host(b"GET HTTPS://s.example HTTP/1.1\r\n\r\n"),
            name("s.example")
        );
    }

    #[test]
    fn literals_missing_and_duplicate_hosts() {
        assert_eq!(
            host(b"GET / HTTP/1.1\r\nHost: 192.0.2.7:80\r\n\r\n"),
            Ok(HostOutcome::Address("192.0.2.7".parse().expect("literal")))
        );
        assert_eq!(
            host(b"GET / HTTP/1.1\r\nHost: [2001:db8::1]:8080\r\n\r\n"),
            Ok(HostOutcome::Address(
                "2001:db8::1".parse().expect("literal")
            ))
        );
        assert_eq!(host(b"GET / HTTP/1.0\r\n\r\n"), Ok(HostOutcome::NoHost));
        assert_eq!(
            host(b"GET / HTTP/1.1\r\nHost:\r\n\r\n"),
            Ok(HostOutcome::NoHost)
        );
        assert_eq!(
            host(b"GET / HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n"),
            Err(ParseFailure::HttpBadRequest)
        );
        assert_eq!(
            host(b"GET / HTTP/1.1\r\nHost: [::1\r\n\r\n"),
            Err(ParseFailure::BadName)
        );
        assert_eq!(
            host(b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n"),
            Err(ParseFailure::BadName)
        );
    }

    #[test]
    fn a_head_cut_short_gives_its_host_once_the_line_is_whole() {
        let req = b"GET / HTTP/1.1\r\nHost: cut.example\r\nCookie: aaaaaaaa";
        assert_eq!(host(req), name("cut.example"));
        for cut in [0, 3, 10, 16, 20, 34] {
            assert_eq!(host(&req[..cut]), Ok(HostOutcome::NeedMore), "cut at {cut}");
        }
        assert_eq!(host(&req[..35]), name("cut.example"));
        assert_eq!(
            host(b"GET / HTTP/1.1\r\nAccept: */*\r\nCookie: a"),
            Ok(HostOutcome::NeedMore)
        );
    }

    #[test]
    fn bad_requests_fail_by_reason() {
        assert_eq!(
            host(b"GET / HTTP/2.0\r\n\r\n"),
            Err(ParseFailure::HttpBadRequest)
        );
        assert_eq!(
            host(b"GET / HTTP/1.1\r\nBad Header\r\n\r\n"),
            Err(ParseFailure::HttpBadRequest)
        );
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            many.extend_from_slice(format!("X-{i}: y\r\n").as_bytes());
        }
        assert_eq!(host(&many), Err(ParseFailure::HttpTooManyHeaders));
        many.extend_from_slice(b"\r\n");
        assert_eq!(host(&many), Err(ParseFailure::HttpTooManyHeaders));
    }

    #[test]
    fn http_detection() {
        assert!(looks_like_http(b"GET / HTTP/1.1"));
        assert!(looks_like_http(b"OPTIONS * HTTP/1.1"));
        assert!(looks_like_http(b"PO"));
        assert!(!looks_like_http(b"get / HTTP/1.1"));
        assert!(!looks_like_http(&[0x16, 3, 1]));
        assert!(!looks_like_http(b""));
        assert!(!looks_like_http(b"SSH-2.0-OpenSSH"));
    }
}
