//! RFC 5424 messages and their RFC 6587 octet-counting frames.
//!
//! One frame is `LEN SP SYSLOG-MSG`, where the message is
//! `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [SD-ID PARAM="VALUE" ...] MSG`.
//! A record's structured data is one element `flow@32473` with a parameter per field of
//! [`crate::record::FIELDS`] (the same names and value texts as the JSON export); a field
//! that is absent (JSON `null`) is left out. Parameter values escape `"`, `\` and `]` with a
//! backslash (RFC 5424 §6.3.3).
//!
//! Everything is written into one reused buffer with the record module's byte writers: the
//! sender thread formats every message, and the benchmark's figure depends on it.

use crate::record::text::{each_field, push_u64, Field, FIELDS};
use crate::record::{rfc3339_ns_bytes, FlowRecord};

use super::{Message, Severity};

/// The APP-NAME of every message.
pub const APP_NAME: &str = "xdp-audit";

/// The private enterprise number in the SD-IDs: 32473 is the number RFC 5612 reserves for
/// documentation and examples. xdp-audit has no number of its own; a receiver keys on the
/// whole SD-ID, which changes (with a note in `docs/`) if the project is ever assigned one.
pub const ENTERPRISE: &str = "32473";

/// The SD-ID of a flow record's element.
pub const FLOW_SD_ID: &str = "flow@32473";

/// The MSGID of a flow record (pass or drop: the `verdict` parameter says which).
pub const FLOW_MSG_ID: &str = "flow";

/// The syslog facility of every message: 13, "log audit" (RFC 5424 table 1).
pub const FACILITY: u8 = 13;

/// The parts of the HEADER that stay the same for the agent's life.
#[derive(Clone, Debug)]
pub struct Header {
    /// HOSTNAME: printable ASCII without spaces, at most 255 bytes; `-` when unknown.
    hostname: String,
    /// PROCID: the agent's process id.
    procid: u32,
}

impl Header {
    /// The header of messages from `hostname` (cleaned to what RFC 5424 allows) and `procid`.
    pub fn new(hostname: &str, procid: u32) -> Self {
        let clean: String = hostname
            .chars()
            .filter(|c| c.is_ascii_graphic())
            .take(255)
            .collect();
        Self {
            hostname: if clean.is_empty() { "-".into() } else { clean },
            procid,
        }
    }
}

/// Writes RFC 5424 messages into frames; one per sender thread.
#[derive(Debug)]
pub struct Encoder {
    header: Header,
    /// The message being built, before its length is known.
    msg: Vec<u8>,
}

impl Encoder {
    /// An encoder for messages with `header`.
    pub fn new(header: Header) -> Self {
        Self {
            header,
            msg: Vec::with_capacity(1024),
        }
    }

    /// Appends the frame of `record`'s message to `out`: severity notice for a record with
    /// dropped packets, informational otherwise; timestamp the record's end.
    pub fn record(&mut self, record: &FlowRecord, out: &mut Vec<u8>) {
        let severity = if record.dropped > 0 {
            Severity::Notice
        } else {
            Severity::Informational
        };
        self.msg.clear();
        self.start(severity, record.time_end_ns, FLOW_MSG_ID);
        let m = &mut self.msg;
        m.push(b'[');
        m.extend_from_slice(FLOW_SD_ID.as_bytes());
        macro_rules! param {
            ($i:literal) => {
                push_field(m, FIELDS[$i].name, (FIELDS[$i].get)(record));
            };
        }
        each_field!(param);
        m.extend_from_slice(b"] ");
        push_summary(m, record);
        frame(&self.msg, out);
    }

    /// Appends the frame of `message` to `out`, timestamped `now_ns` (Unix ns). Its
    /// parameters form one element whose SD-ID is `<msg_id>@32473`.
    pub fn message(&mut self, message: &Message, now_ns: i64, out: &mut Vec<u8>) {
        self.msg.clear();
        self.start(message.severity, now_ns, message.msg_id);
        let m = &mut self.msg;
        if message.sd.is_empty() {
            m.push(b'-');
        } else {
            m.push(b'[');
            push_name(m, message.msg_id);
            m.push(b'@');
            m.extend_from_slice(ENTERPRISE.as_bytes());
            for (name, value) in &message.sd {
                m.push(b' ');
                push_name(m, name);
                m.extend_from_slice(b"=\"");
                push_escaped(m, value);
                m.push(b'"');
            }
            m.push(b']');
        }
        if !message.text.is_empty() {
            m.push(b' ');
            m.extend_from_slice(message.text.as_bytes());
        }
        frame(&self.msg, out);
    }

    /// `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID ` into the message buffer.
    fn start(&mut self, severity: Severity, time_ns: i64, msg_id: &str) {
        let m = &mut self.msg;
        m.push(b'<');
        push_u64(m, u64::from(FACILITY) * 8 + severity as u64);
        m.extend_from_slice(b">1 ");
        push_timestamp(m, time_ns);
        m.push(b' ');
        m.extend_from_slice(self.header.hostname.as_bytes());
        m.push(b' ');
        m.extend_from_slice(APP_NAME.as_bytes());
        m.push(b' ');
        push_u64(m, u64::from(self.header.procid));
        m.push(b' ');
        push_name(m, msg_id);
        m.push(b' ');
    }
}

/// `LEN SP MSG` (RFC 6587 §3.4.1) appended to `out`.
fn frame(msg: &[u8], out: &mut Vec<u8>) {
    push_u64(out, msg.len() as u64);
    out.push(b' ');
    out.extend_from_slice(msg);
}

/// RFC 3339 UTC with microseconds: RFC 5424's TIME-SECFRAC allows at most six digits, so the
/// record's nine are cut (not rounded: a microsecond is shown as begun).
fn push_timestamp(out: &mut Vec<u8>, unix_ns: i64) {
    let full = rfc3339_ns_bytes(unix_ns);
    // `YYYY-MM-DDTHH:MM:SS.uuuuuu` then `Z`, leaving out the last three fraction digits.
    out.extend_from_slice(&full[..26]);
    out.push(b'Z');
}

/// A MSGID, SD-ID or PARAM-NAME: printable ASCII without `=`, space, `]` or `"`, at most 32
/// bytes; anything else is replaced by `_` (the names are the project's own constants, so
/// this only guards against a future one breaking the frame).
fn push_name(out: &mut Vec<u8>, name: &str) {
    for &b in name.as_bytes().iter().take(32) {
        let ok = b.is_ascii_graphic() && !matches!(b, b'=' | b']' | b'"');
        out.push(if ok { b } else { b'_' });
    }
}

/// A PARAM-VALUE's text with `"`, `\` and `]` escaped (RFC 5424 §6.3.3).
fn push_escaped(out: &mut Vec<u8>, value: &str) {
    for &b in value.as_bytes() {
        if matches!(b, b'"' | b'\\' | b']') {
            out.push(b'\\');
        }
        out.push(b);
    }
}

/// ` name="value"` for a field that has a value.
#[inline(always)]
fn push_field(out: &mut Vec<u8>, name: &str, field: Field<'_>) {
    let text = match field {
        Field::OptText(None) | Field::OptNum(None) | Field::OptIp(None) => return,
        Field::Text(t) | Field::OptText(Some(t)) => Some(t),
        _ => None,
    };
    out.push(b' ');
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"=\"");
    match text {
        Some(t) => push_escaped(out, t),
        // Times, numbers, addresses and names never contain a character to escape.
        None => field.push_text(out),
    }
    out.push(b'"');
}

/// The MSG: `drop tcp 10.0.0.2:51000 -> 192.0.2.1:443 (fin)` for a person reading the log;
/// the structured data is what a machine reads.
fn push_summary(out: &mut Vec<u8>, r: &FlowRecord) {
    out.extend_from_slice(if r.dropped > 0 { b"drop " } else { b"pass " });
    Field::Proto(r.proto).push_text(out);
    out.push(b' ');
    push_endpoint(out, r.src_ip, r.src_port);
    out.extend_from_slice(b" -> ");
    push_endpoint(out, r.dst_ip, r.dst_port);
    out.extend_from_slice(b" (");
    out.extend_from_slice(r.end_reason.as_str().as_bytes());
    out.push(b')');
}

/// `ip:port`, or `[ip]:port` for IPv6.
fn push_endpoint(out: &mut Vec<u8>, ip: std::net::IpAddr, port: u16) {
    let v6 = ip.is_ipv6();
    if v6 {
        out.push(b'[');
    }
    Field::Ip(ip).push_text(out);
    if v6 {
        out.push(b']');
    }
    out.push(b':');
    push_u64(out, port.into());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Attribution, EndReason, Mac};

    fn record() -> FlowRecord {
        FlowRecord {
            time_start_ns: 1_700_000_000_000_001_234,
            time_end_ns: 1_700_000_000_123_456_789,
            iface: "eth0".into(),
            ifindex: 7,
            vlan: None,
            vlan_inner: None,
            src_mac: Mac([2, 0, 0, 0, 0, 1]),
            dst_mac: Mac([2, 0, 0, 0, 0, 2]),
            proto: 6,
            src_ip: "10.0.0.2".parse().unwrap(),
            src_port: 51000,
            dst_ip: "2001:db8::1".parse().unwrap(),
            dst_port: 443,
            packets: 3,
            bytes: 180,
            resp_packets: 0,
            resp_bytes: 0,
            tcp_flags: 0x02,
            dropped: 3,
            rule: Some("/etc/x]\"y\\.list:3".into()),
            end_reason: EndReason::Drop,
            attr: Attribution {
                user: Some("alice".into()),
                ..Attribution::default()
            },
        }
    }

    /// Splits one octet-counted frame into its message, checking the count.
    fn unframe(frame: &[u8]) -> &str {
        let text = std::str::from_utf8(frame).expect("frames are UTF-8");
        let (len, msg) = text.split_once(' ').expect("LEN SP MSG");
        assert_eq!(len.parse::<usize>().expect("LEN is decimal"), msg.len());
        msg
    }

    #[test]
    fn a_drop_record_is_one_framed_rfc5424_message() {
        let mut enc = Encoder::new(Header::new("gw 1", 42));
        let mut out = Vec::new();
        enc.record(&record(), &mut out);
        let msg = unframe(&out);
        // PRI 13*8+5 (log audit, notice); microseconds, cut; the host name without its space.
        assert!(
            msg.starts_with("<109>1 2023-11-14T22:13:20.123456Z gw1 xdp-audit 42 flow [flow@32473 time_start=\"2023-11-14T22:13:20.000001234Z\""),
            "{msg}"
        );
        assert!(msg.contains(r#" rule="/etc/x\]\"y\\.list:3""#), "{msg}");
        assert!(msg.contains(r#" user="alice"]"#), "{msg}");
        assert!(msg.contains(r#" verdict="drop" dropped="3""#), "{msg}");
        // Absent fields are left out, not written empty.
        assert!(!msg.contains("vlan="), "{msg}");
        assert!(!msg.contains("hostname="), "{msg}");
        assert!(
            msg.ends_with(r#"] drop tcp 10.0.0.2:51000 -> [2001:db8::1]:443 (drop)"#),
            "{msg}"
        );
    }

    #[test]
    fn a_pass_record_is_informational_and_frames_concatenate() {
        let mut r = record();
        r.dropped = 0;
        r.end_reason = EndReason::Fin;
        let mut enc = Encoder::new(Header::new("", 1));
        let mut out = Vec::new();
        enc.record(&r, &mut out);
        let first = out.len();
        enc.record(&r, &mut out);
        assert_eq!(
            out[..first],
            out[first..],
            "the encoder keeps no state between messages"
        );
        let msg = unframe(&out[..first]);
        assert!(msg.starts_with("<110>1 "), "{msg}");
        assert!(
            msg.contains(" - xdp-audit 1 flow "),
            "an empty host name is NILVALUE: {msg}"
        );
        assert!(msg.contains(r#" verdict="pass" "#), "{msg}");
    }

    #[test]
    fn an_alert_message_has_its_own_element() {
        let mut enc = Encoder::new(Header::new("gw", 9));
        let mut out = Vec::new();
        let m = Message {
            severity: Severity::Warning,
            msg_id: "alert",
            sd: vec![("rule".into(), "a]b".into()), ("count".into(), "5".into())],
            text: "blocked traffic burst".into(),
        };
        enc.message(&m, 0, &mut out);
        assert_eq!(
            unframe(&out),
            r#"<108>1 1970-01-01T00:00:00.000000Z gw xdp-audit 9 alert [alert@32473 rule="a\]b" count="5"] blocked traffic burst"#
        );
        out.clear();
        let bare = Message {
            sd: Vec::new(),
            text: String::new(),
            ..m
        };
        enc.message(&bare, 0, &mut out);
        assert!(
            unframe(&out).ends_with(" alert -"),
            "NILVALUE structured data"
        );
    }
}
