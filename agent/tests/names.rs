//! Name sources on real lab captures (`tests/fixtures/names`, made by its `capture.sh`): TLS
//! SNI over IPv4 and IPv6 and in two segments, HTTP Host in origin and absolute form, QUIC
//! Initial SNI, DNS answers over UDP and TCP into the per-client cache. The parsers'
//! robustness on cut, mutated and random input is `tests/parsers_random.rs`.

use std::net::IpAddr;

use xdp_audit::enrich::names::cache::{DnsCache, DnsCacheConfig};
use xdp_audit::enrich::names::dns_tcp::DnsTcpStream;
use xdp_audit::enrich::names::flow::{FlowNames, Progress};
use xdp_audit::enrich::names::payload::Snippet;
use xdp_audit::enrich::names::{dns, quic, tls, DomainName, FlowName, NameSource, ParseFailure};

mod names_capture;
use names_capture::{capture, Packet};

/// The client's packets to `port` (the client is the side that sent the first packet).
fn to_server(packets: &[Packet], port: u16) -> Vec<Packet> {
    packets
        .iter()
        .filter(|p| p.dst.1 == port)
        .cloned()
        .collect()
}

fn name(s: &str) -> DomainName {
    DomainName::from_wire(s.as_bytes()).unwrap_or_else(|e| panic!("{s}: {e}"))
}

/// Runs a TCP flow's client segments (`order` permutes the data segments) through
/// [`FlowNames`], as the agent will: start from the SYN, stop at the first answer.
fn tcp_flow(client: &[Packet], order: impl Fn(Vec<Packet>) -> Vec<Packet>) -> Progress {
    let syn = client
        .iter()
        .find_map(|p| p.tcp.filter(|t| t.syn))
        .expect("the capture has the client's SYN");
    let mut f = FlowNames::tcp(Some(syn.seq.wrapping_add(1)));
    let data: Vec<Packet> = client
        .iter()
        .filter(|p| !p.payload.is_empty())
        .cloned()
        .collect();
    for p in order(data) {
        let seq = p.tcp.expect("a TCP segment").seq;
        let progress = f.push(Snippet {
            seq,
            data: &p.payload,
        });
        if progress != Progress::NeedMore {
            return progress;
        }
    }
    f.finish()
}

fn sni(host: &str, source: NameSource) -> Progress {
    Progress::Done(FlowName::Name {
        name: name(host),
        source,
    })
}

#[test]
fn tls_sni_from_openssl_and_curl_over_ipv4_and_ipv6() {
    let ok = |file: &str, host: &str| {
        let client = to_server(&capture(file), 443);
        assert_eq!(
            tcp_flow(&client, |d| d),
            sni(host, NameSource::Sni),
            "{file}"
        );
    };
    ok("tls-openssl-sni.pcap", "tls.lab.example");
    ok("tls-curl-v6.pcap", "curl.lab.example");
    let nosni = to_server(&capture("tls-openssl-nosni.pcap"), 443);
    assert_eq!(tcp_flow(&nosni, |d| d), Progress::Done(FlowName::NoName));
}

#[test]
fn a_hello_in_two_segments_in_any_order_and_retransmitted() {
    let client = to_server(&capture("tls-openssl-mss200.pcap"), 443);
    let hello_segments = client.iter().filter(|p| !p.payload.is_empty()).count();
    assert!(
        hello_segments >= 2,
        "the capture must split the hello, found {hello_segments} data segments"
    );
    let want = sni("segments.lab.example", NameSource::Sni);
    assert_eq!(tcp_flow(&client, |d| d), want);
    assert_eq!(
        tcp_flow(&client, |mut d| {
            d.reverse();
            d
        }),
        want,
        "reversed"
    );
    assert_eq!(
        tcp_flow(&client, |d| d
            .iter()
            .flat_map(|p| [p.clone(), p.clone()])
            .collect()),
        want,
        "every segment twice"
    );
    // Only the first segment: the hello is cut short.
    assert_eq!(
        tcp_flow(&client, |d| d.into_iter().take(1).collect()),
        Progress::Failed(ParseFailure::Truncated)
    );
}

#[test]
fn http_host_in_origin_and_absolute_form() {
    let host = to_server(&capture("http-curl-host.pcap"), 80);
    assert_eq!(
        tcp_flow(&host, |d| d),
        sni("http.lab.example", NameSource::HttpHost)
    );
    let proxy = to_server(&capture("http-curl-proxy.pcap"), 80);
    assert_eq!(
        tcp_flow(&proxy, |d| d),
        sni("proxied.lab.example", NameSource::HttpHost)
    );
}

#[test]
fn quic_initial_sni_from_aioquic() {
    let client = to_server(&capture("quic-aioquic.pcap"), 443);
    assert!(!client.is_empty(), "the capture has client datagrams");
    let mut f = FlowNames::quic();
    let first = f.push(Snippet {
        seq: 0,
        data: &client[0].payload,
    });
    assert_eq!(first, sni("quic.lab.example", NameSource::QuicSni));
    assert_eq!(
        quic::initial_sni(client.iter().take(1).map(|p| &p.payload[..])),
        Ok(tls::SniOutcome::Name(name("quic.lab.example")))
    );
}

#[test]
fn dns_answers_from_dig_fill_the_client_cache() {
    let packets = capture("dns-dig-cname.pcap");
    let mut cache = DnsCache::new(DnsCacheConfig::default());
    let mut questions = Vec::new();
    for (i, p) in packets.iter().enumerate() {
        let m = dns::parse(&p.payload).unwrap_or_else(|e| panic!("packet {i}: {e}"));
        let q = m.question.clone().expect("dig asks one question");
        questions.push((m.is_response, q.name.as_str().to_owned(), q.qtype));
        if m.is_response {
            assert_eq!(
                p.src,
                ("192.0.2.2".parse().expect("literal"), 53),
                "packet {i}: from the server"
            );
            assert!(
                !m.answers.is_empty(),
                "packet {i}: the CNAME chain leads to an address"
            );
            assert!(
                m.answers.iter().all(|a| a.ttl == 300),
                "packet {i}: dnsmasq --local-ttl=300"
            );
            cache.insert_response(p.dst.0, &m, 1_000, i64::MIN);
        }
    }
    let www = "www.lab.example".to_owned();
    assert_eq!(
        questions,
        vec![
            (false, www.clone(), dns::TYPE_A),
            (true, www.clone(), dns::TYPE_A),
            (false, www.clone(), dns::TYPE_AAAA),
            (true, www, dns::TYPE_AAAA),
        ]
    );
    let client: IpAddr = "192.0.2.1".parse().expect("literal");
    for addr in ["192.0.2.80", "2001:db8::80"] {
        let addr: IpAddr = addr.parse().expect("literal");
        let (n, v) = cache
            .lookup(client, addr, i64::MIN, 2_000)
            .unwrap_or_else(|| panic!("{addr} cached"));
        assert_eq!(n.as_str(), "www.lab.example");
        assert_eq!(v.to, Some(1_000 + 300 * 1_000_000_000));
    }
    let other: IpAddr = "192.0.2.9".parse().expect("literal");
    assert!(cache
        .lookup(
            other,
            "192.0.2.80".parse().expect("literal"),
            i64::MIN,
            2_000
        )
        .is_none());
}

#[test]
fn dns_over_tcp_from_dig() {
    let packets = capture("dns-dig-tcp.pcap");
    let stream = |to_port: bool| -> Vec<u8> {
        let mut segs: Vec<&Packet> = packets
            .iter()
            .filter(|p| (p.dst.1 == 53) == to_port && !p.payload.is_empty())
            .collect();
        segs.sort_by_key(|p| p.tcp.expect("TCP").seq);
        segs.iter().flat_map(|p| p.payload.clone()).collect()
    };
    let queries: Vec<_> = dns::tcp_messages(&stream(true)).map(dns::parse).collect();
    let answers: Vec<_> = dns::tcp_messages(&stream(false)).map(dns::parse).collect();
    assert_eq!(queries.len(), 1);
    assert_eq!(answers.len(), 1);
    let a = answers[0].as_ref().expect("a valid response");
    assert_eq!(
        a.answers.first().map(|r| r.addr),
        Some("192.0.2.80".parse().expect("literal"))
    );
}

/// The dig exchange over TCP as the agent meets it: segment by segment, each direction in its
/// own [`DnsTcpStream`] (the client's from its SYN, the server's from its lowest sequence
/// number), the query cut into pieces that arrive last first; the answer fills the client's
/// cache.
#[test]
fn dns_over_tcp_from_dig_segment_by_segment_into_the_cache() {
    let packets = capture("dns-dig-tcp.pcap");
    let (client, client_syn) = packets
        .iter()
        .find_map(|p| {
            p.tcp
                .filter(|t| t.syn && p.dst.1 == 53)
                .map(|t| (p.src.0, t))
        })
        .expect("the capture has the client's SYN");
    let mut query = DnsTcpStream::new(Some(client_syn.seq.wrapping_add(1)));
    let mut answer = DnsTcpStream::new(None);
    let (mut questions, mut responses) = (Vec::new(), Vec::new());
    for p in packets.iter().filter(|p| !p.payload.is_empty()) {
        let seq = p.tcp.expect("TCP").seq;
        if p.dst.1 == 53 {
            // Three pieces, the last first: nothing is complete until the first arrives.
            let size = p.payload.len().div_ceil(3).max(1);
            let pieces: Vec<(u32, &[u8])> = p
                .payload
                .chunks(size)
                .enumerate()
                .map(|(i, c)| (seq.wrapping_add((size * i) as u32), c))
                .collect();
            for (s, c) in pieces.into_iter().rev() {
                query.push(s, c, |m| questions.push(m));
            }
        } else {
            answer.push(seq, &p.payload, |m| responses.push(m));
        }
    }
    assert_eq!(questions.len(), 1, "{questions:?}");
    let q = questions[0].as_ref().expect("a valid query");
    assert_eq!(
        q.question.as_ref().map(|q| q.name.as_str()),
        Some("www.lab.example")
    );
    assert_eq!(responses.len(), 1, "{responses:?}");
    let msg = responses[0].as_ref().expect("a valid response");
    let mut cache = DnsCache::new(DnsCacheConfig::default());
    cache.insert_response(client, msg, 1_000, i64::MIN);
    let edge = "192.0.2.80".parse().expect("literal");
    assert_eq!(
        cache
            .lookup(client, edge, i64::MIN, 2_000)
            .map(|(n, _)| n.as_str()),
        Some("www.lab.example"),
        "the TCP answer names the address for its client"
    );
}
