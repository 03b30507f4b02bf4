//! Records that are no one client's pass the stage unattributed.

use super::*;

/// A flood summary's source is only the one seen most (spoofable), and it sums many sources.
#[test]
fn a_summarised_record_is_no_clients_whatever_its_top_source() {
    let t0 = now() - 3600 * S;
    let subs = subscribers("match,account\n02:00:00:00:00:01,laptop-owner\n");
    let (mut st, out) = stage(Inputs::fixed(subs, None, None));
    st.bindings_mut()
        .observe(lease("10.0.0.5", LAPTOP, "laptop", t0, t0 + 900 * S), t0);
    // A flood's summary whose most frequent (spoofable) source is the laptop's address.
    let mut summary = record("10.0.0.5", 0, ip("0.0.0.0"), 0, 0, t0 + 50 * S);
    (summary.end_reason, summary.src_mac) = (EndReason::Summarised, Mac::default());
    summary.dropped = summary.packets;
    let mut flow = record("10.0.0.5", 40000, SERVER, 80, proto::TCP, t0 + 50 * S);
    flow.src_mac = LAPTOP;
    st.write(&summary).expect("write");
    st.write(&flow).expect("write");
    let got: Vec<_> = (out.take().into_iter())
        .map(|r| (r.end_reason, r.attr.user))
        .collect();
    assert_eq!(
        got,
        [
            (EndReason::Summarised, None),
            (EndReason::Idle, Some("laptop-owner".into()))
        ]
    );
}
