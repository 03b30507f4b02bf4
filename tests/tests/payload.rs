//! End to end: real traffic through the lab gateway with the agent attached to its
//! client-facing veth; the program copies the payload of an HTTP request (TCP/80) and a DNS
//! query (UDP/53) and the agent counts each copy it received. Needs root.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::Duration;

use xdp_audit_lab::agent::Agent;
use xdp_audit_lab::lab::{self, Lab};
use xdp_audit_lab::netns::run_in;
use xdp_audit_lab::wait::wait_until;

const HTTP_PORT: u16 = 80;

fn counter(status: &serde_json::Value, name: &str) -> u64 {
    status["counters"][name].as_u64().unwrap_or(0)
}

#[test]
fn an_http_request_and_a_dns_query_through_the_gateway_are_copied_to_the_agent() {
    let lab = Lab::new("pl").expect("build the netns lab (root, iproute2, ethtool)");
    let ns = lab.internet.clone();
    std::thread::spawn(move || {
        let _ = run_in(&ns, || -> anyhow::Result<()> {
            let l = TcpListener::bind((lab::SERVER_V4, HTTP_PORT))?;
            for mut conn in l.incoming().map_while(Result::ok) {
                let mut req = [0u8; 1024];
                let _ = conn.read(&mut req)?;
                conn.write_all(b"HTTP/1.1 204 No Content\r\n\r\n")?;
            }
            Ok(())
        });
    });
    lab.wait_tcp(lab::SERVER_V4, HTTP_PORT, Duration::from_secs(10))
        .expect("server up");
    let tmp = lab.temp_dir("pl").expect("temp dir");
    let bin = xdp_audit_lab::agent::binary().expect("agent binary");
    let mut agent = Agent::start(
        &lab,
        &lab.gateway,
        &bin,
        &tmp.path().join("log"),
        &["--iface", lab::GW_LAN_IF, "--sweep-interval", "200ms"],
    )
    .expect("start the agent");
    let before = agent.status().map_or(0, |s| counter(&s, "payload_copied"));

    run_in(&lab.client, || -> anyhow::Result<()> {
        let sa = SocketAddr::new(lab::SERVER_V4.parse()?, HTTP_PORT);
        let mut s = TcpStream::connect_timeout(&sa, Duration::from_secs(5))?;
        s.write_all(b"GET / HTTP/1.1\r\nHost: audit.example\r\n\r\n")?;
        let mut back = [0u8; 64];
        let _ = s.read(&mut back)?;
        // No resolver listens: the query only has to cross the gateway's interface.
        let u = UdpSocket::bind((lab::CLIENT_V4, 0))?;
        u.send_to(
            b"\x12\x34\x01\x00\x00\x01\0\0\0\0\0\0\x05audit\x07example\0\0\x01\0\x01",
            (lab::SERVER_V4, 53),
        )?;
        Ok(())
    })
    .expect("client traffic");

    wait_until(
        Duration::from_secs(20),
        "the agent has received the request's and the query's copies",
        || {
            agent
                .status()
                .is_ok_and(|s| counter(&s, "payload_copied") >= before + 2)
        },
    );
    let status = agent.status().expect("status");
    assert_eq!(
        counter(&status, "lost_payload"),
        0,
        "nothing lost: {status}"
    );
    assert_eq!(
        status["pipeline"]["undecodable"].as_u64(),
        Some(0),
        "every payload record decoded: {status}"
    );
    assert_eq!(
        agent.stop().expect("stop agent"),
        0,
        "the agent exits 0 on SIGTERM"
    );
}
