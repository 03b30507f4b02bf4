//! Attribution end to end, in the netns lab with real parts: the gateway masquerades the
//! client side (nftables), dnsmasq on the gateway serves DHCP and DNS to the client, the client
//! takes its address with busybox `udhcpc` and reaches an `openssl s_server` and a
//! `python3 -m http.server` by name. The agent runs on the gateway's client-facing interface
//! with a subscribers file, dnsmasq's lease file and conntrack. Every record of the client's
//! flows must carry its user, MAC, host name, the NAT outside address and port conntrack
//! shows, and the domain it reached; and `query --nat OUTSIDE:PORT --at T` must name the
//! inside flow and user of each of 100 concurrent flows. Needs root and the packages
//! `cargo xtask setup` installs.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;
use xdp_audit_lab::agent::{binary, Agent};
use xdp_audit_lab::conntrack;
use xdp_audit_lab::dhcp::{self, GatewayDnsmasq};
use xdp_audit_lab::lab::{self, sh, Lab};
use xdp_audit_lab::netns::run_in;
use xdp_audit_lab::servers;

const HOSTNAME: &str = "lab-laptop";
const ACCOUNT: &str = "C-0042";
const TLS_NAME: &str = "tls.lab.example";
const WWW_NAME: &str = "www.lab.example";

/// The agent's attribution sources: the subscribers file, the DHCP server's lease file, and
/// conntrack for the NAT (on by default where conntrack runs).
fn sources(subscribers: &Path, leases: Option<&Path>) -> Vec<String> {
    let mut args = vec![
        "--iface".to_owned(),
        lab::GW_LAN_IF.to_owned(),
        "--close-linger".to_owned(),
        "1s".to_owned(),
        "--sweep-interval".to_owned(),
        "200ms".to_owned(),
        "--subscribers".to_owned(),
        subscribers.display().to_string(),
    ];
    if let Some(l) = leases {
        args.extend(["--dhcp-leases".to_owned(), l.display().to_string()]);
    }
    args
}

fn start_agent(lab: &Lab, log_dir: &Path, args: &[String]) -> Agent {
    let bin = binary().expect("agent binary");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Agent::start(lab, &lab.gateway, &bin, log_dir, &args)
        .unwrap_or_else(|e| panic!("start the agent in the gateway with {args:?}: {e:#}"))
}

fn text<'a>(r: &'a Value, field: &str) -> Option<&'a str> {
    r[field].as_str()
}

fn endpoint(r: &Value, ip: &str, port: &str) -> SocketAddr {
    let addr: IpAddr = text(r, ip)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("record without a readable {ip}: {r}"));
    let port = r[port]
        .as_u64()
        .and_then(|p| u16::try_from(p).ok())
        .unwrap_or_else(|| panic!("record without a readable {port}: {r}"));
    SocketAddr::new(addr, port)
}

/// The record's NAT outside tuple, if it has one.
fn outside(r: &Value) -> Option<SocketAddr> {
    match (&r["nat_ip"], &r["nat_port"]) {
        (Value::Null, Value::Null) => None,
        _ => Some(endpoint(r, "nat_ip", "nat_port")),
    }
}

/// Runs a client program in the client namespace; it must succeed. Returns its stdout.
fn client(lab: &Lab, program: &str, args: &[&str]) -> String {
    let out = sh(lab.cmd(&lab.client, program).args(args))
        .unwrap_or_else(|e| panic!("client: {program} {args:?}: {e:#}"));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `dig` in the client namespace: the A records of `name` from `server`, over UDP
/// (`+notcp`) or TCP (`+tcp`); the answer's addresses, one a line.
fn dig_a(lab: &Lab, server: &str, name: &str, transport: &str) -> String {
    client(
        lab,
        "dig",
        &[
            &format!("@{server}"),
            transport,
            "+short",
            "+time=2",
            name,
            "A",
        ],
    )
}

/// `curl` over IPv4 in the client namespace, names resolved through dnsmasq; the body.
fn curl(lab: &Lab, args: &[&str]) -> String {
    let mut all = vec!["-4", "-sS", "--max-time", "10"];
    all.extend_from_slice(args);
    client(lab, "curl", &all)
}

/// What one client session through the lab left: the records of the client's flows, the
/// gateway's conntrack table taken during the run, and who the client was.
struct Session {
    from_client: Vec<Value>,
    conntrack: Vec<conntrack::Entry>,
    mac: String,
}

impl Session {
    /// The lab, the DHCP lease, the agent with its sources, then the client: a DNS lookup with
    /// `dig`, HTTPS and HTTP by name with `curl` (names resolved by dnsmasq).
    fn run(tag: &str) -> Session {
        let mut lab = Lab::new(tag).expect("build the netns lab (root, iproute2, ethtool)");
        lab.masquerade().expect("masquerade on the gateway");
        let tmp = lab.temp_dir(tag).expect("temp dir");
        let dir = tmp.path();
        let dns = GatewayDnsmasq::start(
            &mut lab,
            dir,
            &[(TLS_NAME, lab::SERVER_V4), (WWW_NAME, lab::SERVER_V4)],
        )
        .expect("dnsmasq on the gateway");
        let www = dir.join("www");
        std::fs::create_dir_all(&www).expect("web root");
        std::fs::write(www.join("index.html"), "hello from the lab\n").expect("index.html");
        let cert = servers::https(&mut lab, dir, TLS_NAME).expect("openssl s_server");
        servers::http(&mut lab, &www).expect("python3 http.server");

        let mac = lab.mac(&lab.client, "eth0").expect("client MAC");
        let leased = dhcp::udhcpc(&lab, dir, HOSTNAME, &dns).expect("a DHCP lease for the client");
        let pool: (IpAddr, IpAddr) = (
            dhcp::POOL.0.parse().expect("literal"),
            dhcp::POOL.1.parse().expect("literal"),
        );
        assert!(
            pool.0 <= leased && leased <= pool.1,
            "{leased} is from dnsmasq's pool"
        );
        lab.set_resolver(&lab.client.clone(), lab::GW_LAN_V4)
            .expect("the client resolves through dnsmasq");
        // The user is bound to the MAC: the address came from DHCP.
        let subscribers = dir.join("subscribers.csv");
        std::fs::write(
            &subscribers,
            format!("match,account,name\n{mac},{ACCOUNT},Lab Laptop Owner\n"),
        )
        .expect("write subscribers");
        let mut agent = start_agent(
            &lab,
            &dir.join("log"),
            &sources(&subscribers, Some(&dns.leases)),
        );

        let answer = dig_a(&lab, lab::GW_LAN_V4, WWW_NAME, "+notcp");
        assert_eq!(answer.trim(), lab::SERVER_V4, "dnsmasq resolves {WWW_NAME}");
        let cert_s = cert.to_str().expect("UTF-8 path");
        let page = curl(&lab, &["--cacert", cert_s, &format!("https://{TLS_NAME}/")]);
        assert!(page.contains("s_server"), "s_server's status page: {page}");
        let page = curl(&lab, &[&format!("http://{WWW_NAME}/")]);
        assert_eq!(page, "hello from the lab\n");
        // Taken while the TCP entries linger in TIME_WAIT and the UDP ones have not timed out.
        let conntrack = conntrack::list(&lab).expect("conntrack -L in the gateway");
        assert_eq!(agent.stop().expect("stop the agent"), 0, "exit code");

        let records = agent.records().expect("query the store");
        let from_client: Vec<Value> = records
            .iter()
            .filter(|r| text(r, "src_ip") == Some(&leased.to_string()))
            .cloned()
            .collect();
        eprintln!(
            "{} records, {} from {leased}:",
            records.len(),
            from_client.len()
        );
        for r in &from_client {
            eprintln!("  {r}");
        }
        Session {
            from_client,
            conntrack,
            mac,
        }
    }

    /// The one record of the client's TCP flow to the server's `port`.
    fn tcp_to_server(&self, port: u16) -> &Value {
        let dst = SocketAddr::new(lab::SERVER_V4.parse().expect("literal"), port);
        let flows: Vec<&Value> = self
            .from_client
            .iter()
            .filter(|r| text(r, "proto") == Some("tcp") && endpoint(r, "dst_ip", "dst_port") == dst)
            .collect();
        assert_eq!(flows.len(), 1, "one record of the flow to {dst}: {flows:?}");
        flows[0]
    }

    /// The records of the client's DNS flows to the gateway's dnsmasq.
    fn dns_to_gateway(&self) -> Vec<&Value> {
        let dnsmasq = SocketAddr::new(lab::GW_LAN_V4.parse().expect("literal"), 53);
        self.from_client
            .iter()
            .filter(|r| {
                text(r, "proto") == Some("udp") && endpoint(r, "dst_ip", "dst_port") == dnsmasq
            })
            .collect()
    }
}

#[test]
fn a_dhcp_client_behind_masquerade_has_its_user_host_and_nat_tuple_on_every_record() {
    let s = Session::run("atu");
    assert!(!s.from_client.is_empty(), "the client's flows are recorded");
    for r in &s.from_client {
        assert_eq!(text(r, "user"), Some(ACCOUNT), "user: {r}");
        assert_eq!(text(r, "src_mac"), Some(&*s.mac), "MAC: {r}");
        assert_eq!(text(r, "hostname"), Some(HOSTNAME), "host name: {r}");
    }
    // TCP to the internet: masqueraded, the outside tuple as conntrack shows it.
    for port in [443, 80] {
        let r = s.tcp_to_server(port);
        let (src, dst) = (
            endpoint(r, "src_ip", "src_port"),
            endpoint(r, "dst_ip", "dst_port"),
        );
        let ct = s
            .conntrack
            .iter()
            .find(|e| e.proto == "tcp" && e.src == src && e.dst == dst)
            .unwrap_or_else(|| panic!("no conntrack entry for {src} -> {dst}: {:?}", s.conntrack));
        assert_eq!(
            ct.outside.ip().to_string(),
            lab::GW_WAN_V4,
            "the gateway masquerades: {ct:?}"
        );
        assert_eq!(outside(r), Some(ct.outside), "NAT outside tuple of {r}");
    }
    // DNS to the gateway itself is not translated.
    let dns = s.dns_to_gateway();
    assert!(!dns.is_empty(), "the client's DNS flows are recorded");
    for r in dns {
        assert_eq!(
            outside(r),
            None,
            "DNS to the gateway is not translated: {r}"
        );
    }
}

#[test]
fn a_dhcp_client_behind_masquerade_has_the_domain_and_dns_question_on_its_records() {
    let s = Session::run("atd");
    for (port, name, source) in [(443, TLS_NAME, "sni"), (80, WWW_NAME, "http")] {
        let r = s.tcp_to_server(port);
        assert_eq!(text(r, "domain"), Some(name), "domain of {r}");
        assert_eq!(
            text(r, "domain_source"),
            Some(source),
            "domain source of {r}"
        );
    }
    let dns = s.dns_to_gateway();
    let questions: BTreeSet<&str> = dns.iter().filter_map(|r| text(r, "dns_qname")).collect();
    for name in [WWW_NAME, TLS_NAME] {
        assert!(
            questions.contains(name),
            "a DNS flow asking {name}; questions seen: {questions:?}"
        );
    }
    for r in dns {
        assert_eq!(
            r["dns_qtype"].as_u64(),
            Some(1),
            "DNS question type A (dig and curl -4 ask A only): {r}"
        );
    }
}

/// Client addresses of the second test, one subscriber each. Four addresses binding the same
/// source ports make the masquerade translate at least three of every four flows, so an
/// outside port is not an inside port in disguise.
const NAT_CLIENTS: [&str; 4] = [
    "198.51.100.2",
    "198.51.100.3",
    "198.51.100.4",
    "198.51.100.5",
];
const NAT_FLOWS: usize = 100;
const NAT_SERVER_PORT: u16 = 9000;
const FIRST_PORT: u16 = 42000;

/// Accepts connections in the internet namespace; each sends its number on a line, and the
/// server reports (number, peer address and port as the server saw it: the outside tuple),
/// then holds the connection until the client closes it, and reports the number again when
/// the client's FIN has reached it (through the gateway).
fn start_numbered_server(
    lab: &Lab,
) -> (mpsc::Receiver<(usize, SocketAddr)>, mpsc::Receiver<usize>) {
    let (tx, rx) = mpsc::channel();
    let (closed_tx, closed_rx) = mpsc::channel();
    let (ready_tx, ready_rx) = mpsc::channel();
    let ns = lab.internet.clone();
    std::thread::spawn(move || {
        let _ = run_in(&ns, move || -> anyhow::Result<()> {
            let l = TcpListener::bind((lab::SERVER_V4, NAT_SERVER_PORT))?;
            let _ = ready_tx.send(());
            for conn in l.incoming() {
                let conn = conn?;
                let (tx, closed_tx) = (tx.clone(), closed_tx.clone());
                std::thread::spawn(move || {
                    let peer = conn.peer_addr();
                    let mut reader = BufReader::new(conn);
                    let mut line = String::new();
                    let mut number = None;
                    if let (Ok(peer), Ok(_)) = (peer, reader.read_line(&mut line)) {
                        if let Ok(n) = line.trim().parse() {
                            number = Some(n);
                            let _ = tx.send((n, peer));
                        }
                    }
                    let eof = reader.read_to_end(&mut Vec::new()).is_ok();
                    if let (Some(n), true) = (number, eof) {
                        let _ = closed_tx.send(n);
                    }
                });
            }
            Ok(())
        });
    });
    ready_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the numbered server listens in the internet namespace");
    (rx, closed_rx)
}

/// Flow `i`'s inside tuple: from `NAT_CLIENTS[i % 4]`, port `FIRST_PORT + i / 4`.
fn flows_inside(i: usize) -> SocketAddr {
    let addr: IpAddr = NAT_CLIENTS[i % NAT_CLIENTS.len()].parse().expect("literal");
    SocketAddr::new(addr, FIRST_PORT + (i / NAT_CLIENTS.len()) as u16)
}

/// Opens the flows from the client namespace, each from [`flows_inside`], and sends each its
/// number. Returns the open streams.
fn open_flows() -> anyhow::Result<Vec<TcpStream>> {
    let server = SocketAddr::new(lab::SERVER_V4.parse()?, NAT_SERVER_PORT);
    (0..NAT_FLOWS)
        .map(|i| {
            let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
            s.bind(&flows_inside(i).into())?;
            s.connect_timeout(&server.into(), Duration::from_secs(5))?;
            let mut stream = TcpStream::from(s);
            stream.write_all(format!("{i}\n").as_bytes())?;
            Ok(stream)
        })
        .collect()
}

#[test]
fn nat_at_a_time_names_the_inside_flow_and_user_of_each_of_100_concurrent_flows() {
    let lab = Lab::new("atn").expect("build the netns lab (root, iproute2, ethtool)");
    lab.masquerade().expect("masquerade on the gateway");
    for addr in &NAT_CLIENTS[1..] {
        sh(lab
            .cmd(&lab.client, "ip")
            .args(["addr", "add", &format!("{addr}/24"), "dev", "eth0"]))
        .unwrap_or_else(|e| panic!("client address {addr}: {e:#}"));
    }
    let tmp = lab.temp_dir("atn").expect("temp dir");
    let dir = tmp.path();
    let account = |addr: &str| format!("C-NAT-{}", addr.rsplit('.').next().unwrap_or(addr));
    let subscribers = dir.join("subscribers.csv");
    let rows: String = NAT_CLIENTS
        .iter()
        .map(|a| format!("{a},{}\n", account(a)))
        .collect();
    std::fs::write(&subscribers, format!("match,account\n{rows}")).expect("write subscribers");
    let (seen, closed) = start_numbered_server(&lab);
    let mut agent = start_agent(&lab, &dir.join("log"), &sources(&subscribers, None));

    let flows = run_in(&lab.client, open_flows).expect("open 100 flows from the client");
    let mut outside_of: BTreeMap<usize, SocketAddr> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while outside_of.len() < NAT_FLOWS {
        let left = deadline.saturating_duration_since(Instant::now());
        let (i, peer) = seen.recv_timeout(left).unwrap_or_else(|_| {
            panic!(
                "the server saw {} of {NAT_FLOWS} flows within 20 s",
                outside_of.len()
            )
        });
        outside_of.insert(i, peer);
    }
    // Every flow is open now, and stays open until after T.
    let at = jiff::Timestamp::now().to_string();
    let translated = outside_of
        .iter()
        .filter(|(i, o)| o.port() != flows_inside(**i).port())
        .count();
    assert!(
        translated >= NAT_FLOWS * 3 / 4,
        "the masquerade moved {translated} of {NAT_FLOWS} source ports; the test needs the \
         ports of 3 of 4 clients moved"
    );
    drop(flows);
    // The agent stops only once every FIN has crossed the gateway: a flow the program saw no
    // packet of after T would end (at shutdown) before T.
    let deadline = Instant::now() + Duration::from_secs(20);
    for k in 0..NAT_FLOWS {
        let left = deadline.saturating_duration_since(Instant::now());
        closed.recv_timeout(left).unwrap_or_else(|_| {
            panic!("the server saw {k} of {NAT_FLOWS} flows closed within 20 s")
        });
    }
    assert_eq!(agent.stop().expect("stop the agent"), 0, "exit code");

    for (i, outside) in &outside_of {
        assert_eq!(
            outside.ip().to_string(),
            lab::GW_WAN_V4,
            "flow {i} masqueraded"
        );
        let inside = flows_inside(*i);
        let user = account(&inside.ip().to_string());
        let nat = outside.to_string();
        let found = agent
            .query(&["--nat", &nat, "--at", &at])
            .unwrap_or_else(|e| panic!("query --nat {nat} --at {at}: {e:#}"));
        let inside_flows: Vec<&Value> = found
            .iter()
            .filter(|r| text(r, "end_reason") != Some("nat"))
            .collect();
        assert_eq!(
            inside_flows.len(),
            1,
            "query --nat {nat} --at {at} finds flow {i} ({inside}) once: {found:?}"
        );
        let r = inside_flows[0];
        assert_eq!(
            endpoint(r, "src_ip", "src_port"),
            inside,
            "inside tuple: {r}"
        );
        assert_eq!(text(r, "user"), Some(&*user), "user: {r}");
        assert_eq!(self::outside(r), Some(*outside), "outside tuple: {r}");
        for other in &found {
            assert_eq!(
                endpoint(other, "src_ip", "src_port"),
                inside,
                "every answer for {nat} is flow {i}: {other}"
            );
        }
    }

    // The lawful request's answer: one line of the table.
    let (i, outside) = outside_of
        .iter()
        .find(|(i, o)| o.port() != flows_inside(**i).port())
        .expect("a translated flow");
    let table = agent
        .query_table(&["--nat", &outside.to_string(), "--at", &at])
        .expect("query --nat as a table");
    let inside = flows_inside(*i);
    let lines: Vec<&str> = table
        .lines()
        .filter(|l| l.contains(&format!("{}:{}", inside.ip(), inside.port())))
        .collect();
    assert_eq!(lines.len(), 1, "one line names the inside flow:\n{table}");
    assert!(
        lines[0].contains(&account(&inside.ip().to_string())),
        "the line names the user:\n{table}"
    );
}

/// The name the resolver of the DNS-over-TCP test answers, and its address (an extra address
/// of the internet namespace, so the client's flow to it has no other name).
const TCP_NAME: &str = "tcp.lab.example";
const TCP_NAME_V4: &str = "203.0.113.9";

#[test]
fn a_dns_answer_over_tcp_names_the_clients_next_flow_to_that_address() {
    // No masquerade: the answer from the internet's resolver arrives on the gateway's
    // internet-facing interface addressed to the client, which is where an XDP agent can see
    // a resolver's answers (the gateway's own answers leave it, unseen).
    let mut lab = Lab::new("atq").expect("build the netns lab (root, iproute2, ethtool)");
    lab.add_internet_address(TCP_NAME_V4)
        .expect("add the named address");
    let tmp = lab.temp_dir("atq").expect("temp dir");
    let dir = tmp.path();
    servers::dns(&mut lab, dir, &[(TCP_NAME, TCP_NAME_V4)])
        .expect("dnsmasq answers in the internet namespace");
    let subscribers = dir.join("subscribers.csv");
    std::fs::write(
        &subscribers,
        format!("match,account\n{},{ACCOUNT}\n", lab::CLIENT_V4),
    )
    .expect("write subscribers");
    let mut args = sources(&subscribers, None);
    args.extend(["--iface".to_owned(), format!("{}:wan", lab::GW_WAN_IF)]);
    let mut agent = start_agent(&lab, &dir.join("log"), &args);

    let answer = dig_a(&lab, lab::SERVER_V4, TCP_NAME, "+tcp");
    assert_eq!(answer.trim(), TCP_NAME_V4, "dnsmasq answers over TCP");
    // A flow to the answered address that carries no name of its own (a closed port: the
    // SYN is answered with a reset).
    let to = SocketAddr::new(TCP_NAME_V4.parse().expect("literal"), 9);
    let refused = run_in(&lab.client, move || {
        Ok(TcpStream::connect_timeout(&to, Duration::from_secs(2)).is_err())
    })
    .expect("client thread");
    assert!(refused, "nothing listens on {to}");
    assert_eq!(agent.stop().expect("stop the agent"), 0, "exit code");

    let records = agent.records().expect("query the store");
    let from_client: Vec<&Value> = records
        .iter()
        .filter(|r| text(r, "src_ip") == Some(lab::CLIENT_V4))
        .collect();
    let named = from_client
        .iter()
        .find(|r| endpoint(r, "dst_ip", "dst_port") == to)
        .unwrap_or_else(|| panic!("a record of the client's flow to {to}: {from_client:?}"));
    assert_eq!(text(named, "domain"), Some(TCP_NAME), "domain of {named}");
    assert_eq!(text(named, "domain_source"), Some("dns"), "{named}");
    assert_eq!(text(named, "user"), Some(ACCOUNT), "{named}");
    let resolver = SocketAddr::new(lab::SERVER_V4.parse().expect("literal"), 53);
    let question = from_client
        .iter()
        .find(|r| text(r, "proto") == Some("tcp") && endpoint(r, "dst_ip", "dst_port") == resolver)
        .unwrap_or_else(|| panic!("a record of the client's DNS-over-TCP flow: {from_client:?}"));
    assert_eq!(text(question, "dns_qname"), Some(TCP_NAME), "{question}");
}

/// A subscribers file damaged while no agent ran: the next agent names the bad line and keeps
/// the version the last one applied in force (kept in its state directory), so the client's
/// records still carry its user. Until 2026-12-06 they carried none until the file was fixed.
#[test]
fn a_subscribers_file_damaged_while_no_agent_ran_keeps_the_last_version_in_force() {
    let lab = Lab::new("atk").expect("build the netns lab (root, iproute2, ethtool)");
    let tmp = lab.temp_dir("atk").expect("temp dir");
    let dir = tmp.path();
    let (log, subscribers) = (dir.join("log"), dir.join("subscribers.csv"));
    let good = format!("match,account\n{},{ACCOUNT}\n", lab::CLIENT_V4);
    std::fs::write(&subscribers, &good).expect("write subscribers");
    let args = sources(&subscribers, None);
    let mut agent = start_agent(&lab, &log, &args);
    let kept = log.join("state").join("subscribers-kept");
    xdp_audit_lab::wait::wait_until(Duration::from_secs(20), "the version kept", || {
        std::fs::read_dir(&kept).is_ok_and(|mut d| d.next().is_some())
    });
    assert_eq!(agent.stop().expect("stop the agent"), 0, "exit code");
    std::fs::write(&subscribers, format!("{good}10.0.0.300,x\n")).expect("damage the file");
    let mut agent = start_agent(&lab, &log, &args);
    let line = format!("{}:3", subscribers.display());
    if agent.logged(&line).is_none() {
        agent
            .wait_for(&line, Duration::from_secs(20))
            .expect("the bad line named");
    }
    sh(lab
        .cmd(&lab.client, "ping")
        .args(["-c", "3", "-i", "0.2", lab::SERVER_V4]))
    .expect("ping the server");
    assert_eq!(agent.stop().expect("stop the agent"), 0, "exit code");
    let pings: Vec<Value> = (agent.records().expect("query the store").into_iter())
        .filter(|r| text(r, "src_ip") == Some(lab::CLIENT_V4) && text(r, "proto") == Some("icmp"))
        .collect();
    assert!(!pings.is_empty(), "the client's pings are recorded");
    for r in &pings {
        assert_eq!(text(r, "user"), Some(ACCOUNT), "user: {r}");
    }
}
