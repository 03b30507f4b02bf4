//! The syslog delivery: each alert notice as one RFC 5424 message (MSGID `alert`) through the
//! syslog sink's queue, beside the flow records (`--syslog`).

use super::deliver::Delivery;
use super::{Alert, AlertState, DeliveryStats, Severity};
use crate::syslog::{self, Message};

/// Hands alert notices to the syslog sender; its queue is bounded, so a full one drops and
/// counts instead of waiting.
pub struct SyslogDelivery {
    handle: syslog::Handle,
    delivered: u64,
    dropped: u64,
}

impl SyslogDelivery {
    /// A delivery into the queue of the syslog sink behind `handle`.
    pub fn new(handle: syslog::Handle) -> Self {
        Self {
            handle,
            delivered: 0,
            dropped: 0,
        }
    }
}

/// The message of one notice: the alert's fields as SD-PARAMs, its text as the MSG.
pub fn message(a: &Alert) -> Message {
    let severity = match (a.state == AlertState::Resolved, a.severity) {
        (true, _) | (_, Severity::Info) => syslog::Severity::Notice,
        (_, Severity::Warning) => syslog::Severity::Warning,
        (_, Severity::Critical) => syslog::Severity::Critical,
    };
    let state = a.state.as_str();
    let mut sd = vec![
        ("id".to_owned(), a.id.as_str().to_owned()),
        ("severity".to_owned(), a.severity.as_str().to_owned()),
        ("state".to_owned(), state.to_owned()),
        ("count".to_owned(), a.count.to_string()),
        ("first".to_owned(), crate::record::rfc3339_ns(a.first_ns)),
        ("last".to_owned(), crate::record::rfc3339_ns(a.last_ns)),
    ];
    let s = &a.subject;
    let subject = [
        ("client", s.client.map(|c| c.to_string())),
        ("user", s.user.clone()),
        ("rule", s.rule.clone()),
        ("file", s.file.clone()),
        ("interface", s.interface.clone()),
    ];
    sd.extend(
        subject
            .into_iter()
            .filter_map(|(k, v)| Some((k.to_owned(), v?))),
    );
    Message {
        severity,
        msg_id: "alert",
        sd,
        text: a.text.clone(),
    }
}

impl Delivery for SyslogDelivery {
    fn deliver(&mut self, a: &Alert) {
        if self.handle.try_send(message(a)) {
            self.delivered += 1;
        } else {
            self.dropped += 1;
        }
    }

    fn stats(&self) -> DeliveryStats {
        DeliveryStats {
            name: "syslog".into(),
            delivered: self.delivered,
            dropped: self.dropped,
            ..DeliveryStats::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::{AlertId, Subject};

    fn alert(severity: Severity, state: AlertState) -> Alert {
        Alert {
            id: AlertId::BlockFirst,
            severity,
            state,
            text: "first blocked hit".into(),
            subject: Subject {
                client: Some("192.0.2.7".parse().expect("literal address")),
                rule: Some("/etc/xdp-audit/block.list:3".into()),
                ..Subject::default()
            },
            first_ns: 1_790_000_000_000_000_000,
            last_ns: 1_790_000_060_000_000_000,
            count: 4,
        }
    }

    #[test]
    fn a_notice_carries_its_id_subject_and_count_and_maps_its_severity() {
        let m = message(&alert(Severity::Critical, AlertState::Raised));
        assert_eq!(m.msg_id, "alert");
        assert!(matches!(m.severity, syslog::Severity::Critical));
        let get = |k: &str| m.sd.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("id"), Some(AlertId::BlockFirst.as_str()));
        assert_eq!(get("state"), Some("raised"));
        assert_eq!(get("count"), Some("4"));
        assert_eq!(get("client"), Some("192.0.2.7"));
        assert_eq!(get("rule"), Some("/etc/xdp-audit/block.list:3"));
        assert_eq!(get("user"), None, "absent subject fields are left out");
        assert_eq!(m.text, "first blocked hit");
        let resolved = message(&alert(Severity::Critical, AlertState::Resolved));
        assert!(matches!(resolved.severity, syslog::Severity::Notice));
    }
}
