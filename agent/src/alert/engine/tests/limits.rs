//! The limit per rule: a spoofed flood to one blocked address raised an XA-BLOCK-FIRST per
//! source, each a line of `alerts.jsonl` in the store (46 MB in 77 s with a 10 s window).

use super::*;

/// Past `--alert-max-per-rule` first-hit alerts of one rule, its new clients are counted in
/// the rule's alert with no client; another rule's clients are alerted as before; a window
/// later the rule's alerts resolve and free their places.
#[test]
fn one_rule_raises_at_most_its_limit_of_first_hit_alerts() {
    let cfg = AlertConfig {
        alert_max_per_rule: 3,
        alert_window: Duration::from_secs(60),
        ..AlertConfig::default()
    };
    let mut e = Engine::new(&cfg, 0);
    let mut out = Vec::new();
    for i in 0..40 {
        let client = format!("10.9.{}.{}", i / 256, i % 256);
        e.hit(hit(&client, "flood.list:1"), 1, 0, &mut out);
    }
    e.hit(hit("192.168.1.7", "malware.list:9"), 1, S, &mut out);
    let raised = |out: &[Alert], rule: &str, client: bool| {
        (out.iter())
            .filter(|a| a.state == AlertState::Raised && a.subject.rule.as_deref() == Some(rule))
            .filter(|a| a.subject.client.is_some() == client)
            .count()
    };
    assert_eq!(raised(&out, "flood.list:1", true), 3, "{out:#?}");
    assert_eq!(
        raised(&out, "flood.list:1", false),
        1,
        "one counting the rest"
    );
    assert_eq!(
        raised(&out, "malware.list:9", true),
        1,
        "another rule's client"
    );
    let st = e.status();
    let rest = (st.active.iter())
        .find(|a| a.subject.client.is_none())
        .expect("the rule's alert with no client");
    assert_eq!(rest.count, 37);
    assert!(rest.text.contains("--alert-max-per-rule"), "{}", rest.text);
    out.clear();
    e.tick(120 * S, &mut out);
    assert_eq!(e.status().active_total, 0);
    out.clear();
    e.hit(hit("10.9.9.9", "flood.list:1"), 1, 121 * S, &mut out);
    assert_eq!(
        raised(&out, "flood.list:1", true),
        1,
        "a place again: {out:#?}"
    );
}
