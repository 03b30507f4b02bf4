//! The Prometheus text exposition format (version 0.0.4), written by one encoder: every
//! family is declared once (`# HELP`, `# TYPE`) and its samples follow it, label values and
//! help texts are escaped here and nowhere else, and every name gets the `xdp_audit_` prefix.
//!
//! Why not `prometheus-client`: its metrics own their values (a registry of live atomics),
//! while ours are figures the records thread already gathers into `status.json` every sweep;
//! and it writes OpenMetrics (`# EOF`, `info` and `unknown` types, `# UNIT`), which the
//! classic text parser of `promtool check metrics` (Debian's Prometheus 2.42) refuses or
//! reads as other families. The format below is small and fully tested.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use super::histogram::Timing;

/// Every metric's name starts with this.
pub const PREFIX: &str = "xdp_audit_";

/// A family's Prometheus type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up (resets when the agent restarts); its name ends in `_total`.
    Counter,
    /// A level now.
    Gauge,
    /// Observations in buckets (`_bucket`, `_sum`, `_count`).
    Histogram,
}

impl Kind {
    /// The word in `# TYPE` lines.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// A family as declared, for documentation and cardinality checks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Declared {
    /// Full name (with the prefix).
    pub name: String,
    /// Its type.
    pub kind: Kind,
    /// Its help text.
    pub help: String,
    /// The label names its samples used (besides `le`).
    pub labels: BTreeSet<String>,
    /// Samples written (a histogram counts one per label set).
    pub samples: usize,
}

/// Writes one exposition.
#[derive(Debug, Default)]
pub struct Encoder {
    out: String,
    declared: Vec<Declared>,
}

/// A sample's value: counts are written exactly, levels as decimals.
#[derive(Clone, Copy, Debug)]
pub enum Value {
    /// An integer.
    Int(u64),
    /// A signed integer.
    Signed(i64),
    /// A decimal.
    Float(f64),
}

impl From<u64> for Value {
    fn from(v: u64) -> Self {
        Value::Int(v)
    }
}

impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Int(u64::from(v))
    }
}

impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::Float(v)
    }
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Signed(v)
    }
}

fn write_value(out: &mut String, v: Value) {
    let _ = match v {
        Value::Int(n) => write!(out, "{n}"),
        Value::Signed(n) => write!(out, "{n}"),
        Value::Float(f) if f.is_nan() => write!(out, "NaN"),
        Value::Float(f) if f.is_infinite() => {
            write!(out, "{}", if f > 0.0 { "+Inf" } else { "-Inf" })
        }
        Value::Float(f) => write!(out, "{f}"),
    };
}

/// Label values: backslash, double quote and line feed escaped.
fn escape_label(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Help texts: backslash and line feed escaped.
fn escape_help(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Seconds from nanoseconds, as a `le` bound or a sum.
fn seconds(ns: u64) -> f64 {
    ns as f64 / 1e9
}

impl Encoder {
    /// An empty exposition.
    pub fn new() -> Self {
        Self::default()
    }

    /// The text.
    pub fn finish(self) -> String {
        self.out
    }

    /// The families declared so far.
    pub fn declared(&self) -> &[Declared] {
        &self.declared
    }

    /// Declares family `name` (without the prefix); its samples follow through the handle.
    /// A family is declared once per exposition: a second declaration of the same name is a
    /// programming error (the format forbids it), caught in debug builds.
    pub fn family(&mut self, name: &str, kind: Kind, help: &str) -> Family<'_> {
        let full = format!("{PREFIX}{name}");
        debug_assert!(
            !self.declared.iter().any(|d| d.name == full),
            "metric family {full} declared twice"
        );
        let _ = write!(self.out, "# HELP {full} ");
        escape_help(&mut self.out, help);
        let _ = writeln!(self.out, "\n# TYPE {full} {}", kind.name());
        self.declared.push(Declared {
            name: full,
            kind,
            help: help.to_owned(),
            labels: BTreeSet::new(),
            samples: 0,
        });
        Family { enc: self }
    }

    /// A counter without labels.
    pub fn counter(&mut self, name: &str, help: &str, v: u64) {
        self.family(name, Kind::Counter, help).sample(&[], v);
    }

    /// A gauge without labels.
    pub fn gauge(&mut self, name: &str, help: &str, v: impl Into<Value>) {
        self.family(name, Kind::Gauge, help).sample(&[], v);
    }

    /// A histogram of durations without labels (`le` in seconds).
    pub fn histogram(&mut self, name: &str, help: &str, t: &Timing) {
        self.family(name, Kind::Histogram, help).timing(&[], t);
    }
}

/// The family being written: its samples.
pub struct Family<'a> {
    enc: &'a mut Encoder,
}

impl Family<'_> {
    fn line(&mut self, suffix: &str, labels: &[(&str, &str)], le: Option<&str>, v: Value) {
        let Encoder { out, declared } = &mut *self.enc;
        let Some(d) = declared.last_mut() else { return };
        out.push_str(&d.name);
        out.push_str(suffix);
        if !labels.is_empty() || le.is_some() {
            out.push('{');
            let le = le.map(|l| ("le", l));
            for (i, (k, v)) in labels.iter().copied().chain(le).enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(k);
                out.push_str("=\"");
                escape_label(out, v);
                out.push('"');
            }
            out.push('}');
        }
        out.push(' ');
        write_value(out, v);
        out.push('\n');
        for (k, _) in labels {
            if !d.labels.contains(*k) {
                d.labels.insert((*k).to_owned());
            }
        }
    }

    /// One sample with `labels` (names are fixed identifiers; values are escaped).
    pub fn sample(&mut self, labels: &[(&str, &str)], v: impl Into<Value>) -> &mut Self {
        self.line("", labels, None, v.into());
        if let Some(d) = self.enc.declared.last_mut() {
            d.samples += 1;
        }
        self
    }

    /// One histogram series with `labels`: cumulative buckets in seconds, sum and count.
    pub fn timing(&mut self, labels: &[(&str, &str)], t: &Timing) -> &mut Self {
        let mut le = String::new();
        for (bound, n) in t.cumulative() {
            le.clear();
            match bound {
                Some(ns) => write_value(&mut le, Value::Float(seconds(ns))),
                None => le.push_str("+Inf"),
            }
            self.line("_bucket", labels, Some(&le), Value::Int(n));
        }
        self.line("_sum", labels, None, Value::Float(seconds(t.sum_ns)));
        self.line("_count", labels, None, Value::Int(t.count()));
        if let Some(d) = self.enc.declared.last_mut() {
            d.samples += 1;
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::histogram::Histogram;

    #[test]
    fn a_family_is_help_type_then_its_samples() {
        let mut e = Encoder::new();
        e.counter("records_total", "Records written.", 7);
        e.family("hits_total", Kind::Counter, "Hits by rule.")
            .sample(&[("rule", "a.list:3"), ("kind", "block")], 2u64)
            .sample(&[("rule", "other"), ("kind", "block")], 5u64);
        e.gauge("offset_seconds", "Offset.", -1.5);
        e.gauge("level", "Level.", -3i64);
        assert_eq!(
            e.finish(),
            "# HELP xdp_audit_records_total Records written.\n\
             # TYPE xdp_audit_records_total counter\n\
             xdp_audit_records_total 7\n\
             # HELP xdp_audit_hits_total Hits by rule.\n\
             # TYPE xdp_audit_hits_total counter\n\
             xdp_audit_hits_total{rule=\"a.list:3\",kind=\"block\"} 2\n\
             xdp_audit_hits_total{rule=\"other\",kind=\"block\"} 5\n\
             # HELP xdp_audit_offset_seconds Offset.\n\
             # TYPE xdp_audit_offset_seconds gauge\n\
             xdp_audit_offset_seconds -1.5\n\
             # HELP xdp_audit_level Level.\n\
             # TYPE xdp_audit_level gauge\n\
             xdp_audit_level -3\n"
        );
    }

    #[test]
    fn label_values_and_help_are_escaped() {
        let mut e = Encoder::new();
        e.family("x", Kind::Gauge, "a \\ b\nc \"q\"")
            .sample(&[("file", "/etc/a \"b\"\\c\nd.list")], 1u64);
        assert_eq!(
            e.finish(),
            "# HELP xdp_audit_x a \\\\ b\\nc \"q\"\n\
             # TYPE xdp_audit_x gauge\n\
             xdp_audit_x{file=\"/etc/a \\\"b\\\"\\\\c\\nd.list\"} 1\n"
        );
    }

    #[test]
    fn special_floats_use_the_format_s_spelling() {
        let mut s = String::new();
        for v in [f64::INFINITY, f64::NEG_INFINITY, f64::NAN, 0.25, 1e-7] {
            write_value(&mut s, Value::Float(v));
            s.push(' ');
        }
        assert_eq!(s, "+Inf -Inf NaN 0.25 0.0000001 ");
    }

    #[test]
    fn a_histogram_has_cumulative_buckets_in_seconds_a_sum_and_a_count() {
        let h = Histogram::default();
        h.observe(std::time::Duration::from_micros(300));
        h.observe(std::time::Duration::from_millis(2));
        let mut e = Encoder::new();
        e.histogram("fsync_seconds", "Fsync.", &h.timing());
        let text = e.finish();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "# HELP xdp_audit_fsync_seconds Fsync.");
        assert_eq!(lines[1], "# TYPE xdp_audit_fsync_seconds histogram");
        assert_eq!(lines[2], "xdp_audit_fsync_seconds_bucket{le=\"0.0001\"} 0");
        assert_eq!(lines[4], "xdp_audit_fsync_seconds_bucket{le=\"0.0005\"} 1");
        assert_eq!(lines[6], "xdp_audit_fsync_seconds_bucket{le=\"0.0025\"} 2");
        assert!(text.contains("xdp_audit_fsync_seconds_bucket{le=\"300\"} 2\n"));
        assert!(text.contains("xdp_audit_fsync_seconds_bucket{le=\"+Inf\"} 2\n"));
        assert!(text.contains("xdp_audit_fsync_seconds_sum 0.0023\n"));
        assert!(text.ends_with("xdp_audit_fsync_seconds_count 2\n"));
    }

    #[test]
    fn declarations_record_labels_and_samples() {
        let mut e = Encoder::new();
        e.family("a_total", Kind::Counter, "A.")
            .sample(&[("x", "1")], 1u64)
            .sample(&[("x", "2"), ("y", "z")], 1u64);
        let d = &e.declared()[0];
        assert_eq!(d.name, "xdp_audit_a_total");
        assert_eq!(d.samples, 2);
        assert_eq!(
            d.labels.iter().map(String::as_str).collect::<Vec<_>>(),
            ["x", "y"]
        );
    }
}
