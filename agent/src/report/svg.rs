//! The timeline of a report: flows started and flows blocked per time bucket over the
//! report's window, drawn as an inline SVG bar chart by this code (no script, no external
//! font or style), so the page renders the same offline and in a printed copy.

use std::fmt::Write as _;

use serde::Serialize;

use super::text::{count, esc, span};
use crate::record::rfc3339_s;

/// At most this many buckets: a bar stays wide enough to see on a printed page.
pub const MAX_BUCKETS: usize = 60;

/// Bucket widths to choose from, seconds: the smallest that keeps the window within
/// [`MAX_BUCKETS`] is taken, so bucket edges fall on round times.
/// Up to ten years a bucket, so any window of i64 nanoseconds (584 years) fits.
const STEPS_S: [i64; 20] = [
    1,
    5,
    10,
    30,
    60,
    300,
    600,
    900,
    1800,
    3600,
    7200,
    10_800,
    21_600,
    43_200,
    86_400,
    604_800,
    2_592_000,
    7_776_000,
    31_536_000,
    315_360_000,
];

const NS: i64 = 1_000_000_000;
const WIDTH: f64 = 900.0;
const HEIGHT: f64 = 280.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 28.0;
const BOTTOM: f64 = 56.0;
const FLOW_FILL: &str = "#4a78a8";
const DROP_FILL: &str = "#c0392b";

/// Flows and blocked flows per bucket of a window.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Timeline {
    /// Start of the first bucket, Unix ns (the window's start, rounded down to the bucket).
    pub start_ns: i64,
    /// Bucket width, seconds.
    pub bucket_s: i64,
    /// Flows active from each bucket on: a flow is counted in the bucket of its first packet,
    /// or of the window's start for a flow that began before it.
    pub flows: Vec<u64>,
    /// Of those, flows a list blocked (a packet dropped).
    pub blocked: Vec<u64>,
}

impl Timeline {
    /// An empty timeline over `[since_ns, until_ns)`.
    pub fn new(since_ns: i64, until_ns: i64) -> Self {
        // In i128: a window may span the whole i64 range of nanoseconds.
        let (since, until) = (
            i128::from(since_ns),
            i128::from(until_ns).max(i128::from(since_ns) + 1),
        );
        let ns = i128::from(NS);
        let window_s = (until - since + ns - 1) / ns;
        let bucket_s = STEPS_S
            .iter()
            .copied()
            .find(|&s| window_s / i128::from(s) < MAX_BUCKETS as i128)
            .unwrap_or(STEPS_S[STEPS_S.len() - 1]);
        let bucket_ns = i128::from(bucket_s) * ns;
        // Rounded down to a bucket edge, but not below the earliest i64 time.
        let start = (since.div_euclid(bucket_ns) * bucket_ns).max(i128::from(i64::MIN));
        let n = ((until - start + bucket_ns - 1) / bucket_ns).clamp(1, MAX_BUCKETS as i128 + 1);
        Self {
            start_ns: i64::try_from(start).unwrap_or(since_ns),
            bucket_s,
            flows: vec![0; n as usize],
            blocked: vec![0; n as usize],
        }
    }

    /// Counts a flow whose first packet was at `start_ns`.
    pub fn add(&mut self, start_ns: i64, blocked: bool) {
        let i = (i128::from(start_ns.max(self.start_ns)) - i128::from(self.start_ns))
            / (i128::from(self.bucket_s) * i128::from(NS));
        let i = usize::try_from(i)
            .map_or(usize::MAX, |i| i)
            .min(self.flows.len() - 1);
        self.flows[i] += 1;
        if blocked {
            self.blocked[i] += 1;
        }
    }

    /// The value axis: its top and the distance between ticks, both round numbers with the
    /// largest bucket at or under the top.
    pub fn value_axis(&self) -> (u64, u64) {
        value_axis(self.flows.iter().copied().max().unwrap_or(0))
    }

    /// The chart as an `<svg>` element.
    pub fn svg(&self) -> String {
        let (top, tick) = self.value_axis();
        let n = self.flows.len();
        let plot_w = WIDTH - LEFT - RIGHT;
        let plot_h = HEIGHT - TOP - BOTTOM;
        let slot = plot_w / n as f64;
        let y = |v: u64| TOP + plot_h - plot_h * v as f64 / top as f64;
        let mut s = String::with_capacity(4096 + n * 400);
        let _ = write!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" id="timeline-chart" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="Flows and blocked flows per {bucket}" data-buckets="{n}" data-bucket-seconds="{bs}" data-y-max="{top}" font-family="sans-serif" font-size="11">"#,
            bucket = span(self.bucket_s),
            bs = self.bucket_s,
        );
        // Grid lines and value labels.
        let mut v = 0;
        while v <= top {
            let _ = write!(
                s,
                r##"<line x1="{LEFT}" x2="{x2}" y1="{yy:.1}" y2="{yy:.1}" stroke="#dddddd"/><text x="{lx}" y="{ty:.1}" text-anchor="end" class="y-tick">{label}</text>"##,
                x2 = WIDTH - RIGHT,
                yy = y(v),
                lx = LEFT - 6.0,
                ty = y(v) + 4.0,
                label = count(v),
            );
            v += tick;
        }
        for i in 0..n {
            let x = LEFT + slot * i as f64;
            let at = self.bucket_start(i);
            let (f, b) = (self.flows[i], self.blocked[i]);
            let bar = (slot * 0.42).max(0.5);
            let _ = write!(
                s,
                r#"<g class="bucket" data-start="{start}" data-flows="{f}" data-blocked="{b}"><title>{label}: {fc} flows, {bc} blocked</title>"#,
                start = rfc3339_s(at),
                label = esc(&rfc3339_s(at)),
                fc = count(f),
                bc = count(b),
            );
            for (v, offset, fill) in [(f, 0.06, FLOW_FILL), (b, 0.52, DROP_FILL)] {
                if v > 0 {
                    let _ = write!(
                        s,
                        r#"<rect x="{x:.1}" y="{yy:.1}" width="{bar:.1}" height="{h:.1}" fill="{fill}"/>"#,
                        x = x + slot * offset,
                        yy = y(v),
                        h = TOP + plot_h - y(v),
                    );
                }
            }
            s.push_str("</g>");
        }
        // Time axis: the baseline and at most eight labelled ticks on bucket edges.
        let base = TOP + plot_h;
        let _ = write!(
            s,
            r##"<line x1="{LEFT}" x2="{x2}" y1="{base}" y2="{base}" stroke="#333333"/>"##,
            x2 = WIDTH - RIGHT
        );
        let every = n.div_ceil(8).max(1);
        for i in (0..=n).step_by(every) {
            let x = LEFT + slot * i as f64;
            // The last label ends at its tick: centred, it ran past the picture's edge.
            let anchor = if i == n { "end" } else { "middle" };
            let _ = write!(
                s,
                r##"<line x1="{x:.1}" x2="{x:.1}" y1="{base}" y2="{y2}" stroke="#333333"/><text x="{x:.1}" y="{ty}" text-anchor="{anchor}" class="x-tick">{label}</text>"##,
                y2 = base + 4.0,
                ty = base + 16.0,
                label = self.tick_label(self.bucket_start(i)),
            );
        }
        let _ = write!(
            s,
            r##"<text x="{cx}" y="{cy}" text-anchor="middle" fill="#555555">UTC, one bar pair per {bucket}</text>"##,
            cx = LEFT + plot_w / 2.0,
            cy = HEIGHT - 8.0,
            bucket = span(self.bucket_s),
        );
        // Legend.
        let _ = write!(
            s,
            r##"<rect x="{LEFT}" y="8" width="10" height="10" fill="{FLOW_FILL}"/><text x="{a}" y="17">flows</text><rect x="{b}" y="8" width="10" height="10" fill="{DROP_FILL}"/><text x="{c}" y="17">blocked flows</text>"##,
            a = LEFT + 14.0,
            b = LEFT + 64.0,
            c = LEFT + 78.0,
        );
        if self.flows.iter().all(|&f| f == 0) {
            let _ = write!(
                s,
                r##"<text x="{cx}" y="{cy}" text-anchor="middle" font-size="14" fill="#555555" class="empty">No flows in this window</text>"##,
                cx = LEFT + plot_w / 2.0,
                cy = TOP + plot_h / 2.0,
            );
        }
        s.push_str("</svg>");
        s
    }

    /// Start of bucket `i`, Unix ns.
    pub fn bucket_start(&self, i: usize) -> i64 {
        self.start_ns
            .saturating_add((i as i64).saturating_mul(self.bucket_s.saturating_mul(NS)))
    }

    /// A time-axis label: the time of day, with seconds for buckets under a minute and the
    /// date instead for buckets of a day or more.
    fn tick_label(&self, at_ns: i64) -> String {
        let t = rfc3339_s(at_ns);
        match self.bucket_s {
            s if s < 60 => t[11..19].to_owned(),
            s if s < 86_400 && self.flows.len() as i64 * s <= 86_400 => t[11..16].to_owned(),
            s if s < 86_400 => format!("{} {}", &t[5..10], &t[11..16]),
            _ => t[..10].to_owned(),
        }
    }
}

/// The top of a value axis over values up to `max`, and its tick distance: a tick of 1, 2 or
/// 5 times a power of ten giving at most five ticks above zero, and the first multiple of it
/// at or over `max` (at least one tick).
pub fn value_axis(max: u64) -> (u64, u64) {
    let mut tick = 1u64;
    'search: loop {
        for m in [1, 2, 5] {
            let t = tick.saturating_mul(m);
            if t.saturating_mul(5) >= max {
                tick = t;
                break 'search;
            }
        }
        tick = tick.saturating_mul(10);
    }
    (max.div_ceil(tick).max(1) * tick, tick)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_764_500_400 * NS; // 2025-11-30T11:00:00Z

    #[test]
    fn the_value_axis_is_round_and_covers_the_largest_bucket() {
        assert_eq!(value_axis(0), (1, 1));
        assert_eq!(value_axis(1), (1, 1));
        assert_eq!(value_axis(5), (5, 1));
        assert_eq!(value_axis(7), (8, 2));
        assert_eq!(value_axis(10), (10, 2));
        assert_eq!(value_axis(11), (15, 5));
        assert_eq!(value_axis(100), (100, 20));
        assert_eq!(value_axis(1234), (1500, 500));
        for max in 0..5000 {
            let (top, tick) = value_axis(max);
            assert!(
                top >= max && top % tick == 0 && top / tick <= 5,
                "{max}: {top} {tick}"
            );
        }
    }

    #[test]
    fn the_time_axis_spans_the_window_in_round_buckets() {
        let t = Timeline::new(T0 + 7 * 60 * NS, T0 + 2 * 3600 * NS);
        assert_eq!(t.bucket_s, 300, "113 minutes in 5-minute buckets");
        assert_eq!(
            t.start_ns,
            T0 + 5 * 60 * NS,
            "rounded down to a bucket edge"
        );
        assert_eq!(t.flows.len(), 23);
        assert!(t.bucket_start(t.flows.len()) >= T0 + 2 * 3600 * NS);
        let svg = t.svg();
        assert!(svg.contains(r#"data-buckets="23""#), "{svg}");
        assert!(
            svg.contains(">11:05<"),
            "first tick at the first bucket: {svg}"
        );
        let week = Timeline::new(T0, T0 + 7 * 86_400 * NS);
        assert_eq!((week.bucket_s, week.flows.len()), (10_800, 57));
        assert!(
            week.svg().contains(">11-30 09:00<"),
            "a week's ticks carry the date"
        );
    }

    #[test]
    fn any_window_of_i64_times_fits_in_the_buckets() {
        let mut t = Timeline::new(i64::MIN + 1, i64::MAX);
        assert_eq!(t.bucket_s, 315_360_000, "ten-year buckets");
        assert!(t.flows.len() <= MAX_BUCKETS + 1);
        t.add(i64::MIN, true);
        t.add(i64::MAX, false);
        assert_eq!((t.flows[0], *t.flows.last().expect("a bucket")), (1, 1));
        assert!(t.svg().ends_with("</svg>"));
        let backwards = Timeline::new(T0, T0 - NS);
        assert_eq!(backwards.flows.len(), 1, "an empty window is one bucket");
    }

    #[test]
    fn an_empty_window_draws_axes_and_says_so() {
        let t = Timeline::new(T0, T0 + 3600 * NS);
        assert_eq!(t.value_axis(), (1, 1));
        let svg = t.svg();
        assert!(svg.contains("No flows in this window"));
        assert_eq!(
            svg.matches("<rect").count(),
            2,
            "the legend's, no bars: {svg}"
        );
        assert_eq!(svg.matches("class=\"bucket\"").count(), t.flows.len());
    }

    #[test]
    fn a_window_shorter_than_a_bucket_is_one_bucket_holding_every_flow() {
        let mut t = Timeline::new(T0, T0 + NS / 2);
        assert_eq!((t.bucket_s, t.flows.len()), (1, 1));
        t.add(T0 - 10 * NS, false); // began before the window
        t.add(T0 + 1, true);
        t.add(T0 + NS, false); // at the end: the last bucket
        assert_eq!((t.flows.clone(), t.blocked.clone()), (vec![3], vec![1]));
        let svg = t.svg();
        assert!(svg.contains(r#"data-flows="3" data-blocked="1""#), "{svg}");
        assert!(!svg.contains("No flows"));
        assert_eq!(
            svg.matches("<rect").count(),
            2 + 2,
            "two bars and the legend's two"
        );
    }
}
