//! Lengths of time as operators write them: one grammar for every flag and config key that
//! takes one (`run`'s timeouts and sweep interval, the store's `--fsync-interval`, the spans
//! of `query --since 2h`).
//!
//! Accepted forms ([`FORMS`], also shown in `--help`):
//! - a number and a unit, or several: `30s`, `5m`, `1h30m`, `2h 30m`, `500ms`, `2d`, `1w`;
//!   units `ns`, `us`, `ms`, `s`, `m`, `h`, `d` (24 hours), `w` (7 days), and their long names
//!   (`90 seconds`, `2 hours`); the smallest unit may have a fraction (`1.5s`);
//! - ISO 8601: `PT30S`, `P2D`;
//! - a bare number of seconds: `60` (what a TOML config file's integer gives).
//!
//! Months and years are refused (they have no fixed length), and so are negative spans.
//! Parsing is jiff's friendly and ISO 8601 `Span` grammar, with days and weeks taken as 24 hours
//! and 7 days.

use std::time::Duration;

use jiff::{Span, SpanRelativeTo};

/// The accepted forms, for `--help` texts.
pub const FORMS: &str = "30s, 5m, 1h30m, 500ms, 2d, 1w, PT30S, or a number of seconds";

/// Why a text is not a length of time; each variant quotes the text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpanError {
    /// Nothing was given.
    #[error("an empty value is not a length of time (write e.g. 30s, 5m or 1h30m)")]
    Empty,
    /// Not in the grammar.
    #[error("{input:?} is not a length of time ({FORMS}): {reason}")]
    Syntax {
        /// The text as given.
        input: String,
        /// What the parser objected to.
        reason: String,
    },
    /// Below zero.
    #[error("{input:?} is negative; a length of time must be zero or more")]
    Negative {
        /// The text as given.
        input: String,
    },
    /// Zero where a length must be above it (a timeout, an interval).
    #[error("{input:?} is zero; this length of time must be above zero")]
    Zero {
        /// The text as given.
        input: String,
    },
    /// Months or years: they have no fixed length.
    #[error("{input:?} uses months or years, which have no fixed length; write days or weeks (30d, 52w)")]
    Calendar {
        /// The text as given.
        input: String,
    },
    /// More than the nanosecond counters hold (about 292 years).
    #[error("{input:?} is too long (at most about 292 years)")]
    TooLong {
        /// The text as given.
        input: String,
    },
}

/// The longest length of time accepted: what a signed count of nanoseconds holds (292 years
/// and a bit), so every stage can add it to a time or turn it into nanoseconds without
/// wrapping or panicking.
pub const MAX: Duration = Duration::from_nanos(i64::MAX as u64);

/// Parses a length of time in any of the [`FORMS`], at most [`MAX`].
pub fn parse(s: &str) -> Result<Duration, SpanError> {
    let d = parse_unbounded(s)?;
    if d > MAX {
        return Err(SpanError::TooLong { input: s.into() });
    }
    Ok(d)
}

fn parse_unbounded(s: &str) -> Result<Duration, SpanError> {
    let text = s.trim();
    if text.is_empty() {
        return Err(SpanError::Empty);
    }
    if text.bytes().all(|b| b.is_ascii_digit()) {
        return text
            .parse::<u64>()
            .map(Duration::from_secs)
            .map_err(|_| SpanError::TooLong { input: s.into() });
    }
    let span: Span = text.parse().map_err(|e: jiff::Error| SpanError::Syntax {
        input: s.into(),
        reason: e.to_string(),
    })?;
    if span.is_negative() {
        return Err(SpanError::Negative { input: s.into() });
    }
    if span.get_years() != 0 || span.get_months() != 0 {
        return Err(SpanError::Calendar { input: s.into() });
    }
    let d = span
        .to_duration(SpanRelativeTo::days_are_24_hours())
        .map_err(|_| SpanError::TooLong { input: s.into() })?;
    Duration::try_from(d).map_err(|_| SpanError::Negative { input: s.into() })
}

/// [`parse`], refusing zero: for timeouts and intervals, so a config file's `0s` is an error
/// at its key and line, like any other bad value.
pub fn parse_positive(s: &str) -> Result<Duration, SpanError> {
    match parse(s)? {
        d if d.is_zero() => Err(SpanError::Zero { input: s.into() }),
        d => Ok(d),
    }
}

/// [`parse`] in nanoseconds, for arithmetic on Unix-nanosecond times.
pub fn parse_ns(s: &str) -> Result<i64, SpanError> {
    let d = parse(s)?;
    i64::try_from(d.as_nanos()).map_err(|_| SpanError::TooLong { input: s.into() })
}

/// A length of time to whole seconds in the compact form [`parse`] reads back (`2d3h4m5s`,
/// `0s`), for people reading `status`.
pub fn format(d: Duration) -> String {
    let mut left = d.as_secs();
    let mut out = String::new();
    for (unit, secs) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
        if left >= secs {
            out.push_str(&format!("{}{unit}", left / secs));
            left %= secs;
        }
    }
    if out.is_empty() {
        out.push_str("0s");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_is_read_back_by_parse() {
        for secs in [0, 1, 59, 60, 61, 3_600, 3_661, 86_400, 93_784, 1_000_000] {
            let d = Duration::from_secs(secs);
            let text = format(d);
            assert_eq!(parse(&text).ok(), Some(d), "{secs} s formatted as {text:?}");
        }
        assert_eq!(format(Duration::from_secs(93_784)), "1d2h3m4s");
    }

    const S: u64 = 1_000_000_000;

    #[test]
    fn every_documented_form_parses() {
        let cases: [(&str, u64); 17] = [
            ("30s", 30 * S),
            ("5m", 300 * S),
            ("1h", 3_600 * S),
            ("1h30m", 5_400 * S),
            ("2h 30m", 9_000 * S),
            ("500ms", S / 2),
            ("250us", 250_000),
            ("10ns", 10),
            ("1.5s", 3 * S / 2),
            ("2d", 2 * 86_400 * S),
            ("1w", 7 * 86_400 * S),
            ("90 seconds", 90 * S),
            ("2 hours", 7_200 * S),
            ("PT30S", 30 * S),
            ("P2D", 2 * 86_400 * S),
            ("60", 60 * S),
            (" 0 ", 0),
        ];
        for (text, ns) in cases {
            assert_eq!(
                parse(text).map(|d| d.as_nanos() as u64),
                Ok(ns),
                "parsing {text:?}"
            );
        }
        assert_eq!(parse_ns("1h30m"), Ok(5_400_000_000_000));
    }

    #[test]
    fn bad_spans_are_refused_with_the_reason() {
        assert_eq!(parse(""), Err(SpanError::Empty));
        assert_eq!(parse("  "), Err(SpanError::Empty));
        assert!(
            matches!(parse("2 parsecs"), Err(SpanError::Syntax { ref input, .. }) if input == "2 parsecs")
        );
        assert!(matches!(parse("soon"), Err(SpanError::Syntax { .. })));
        assert!(matches!(parse("-5s"), Err(SpanError::Negative { .. })));
        assert!(matches!(parse("5s ago"), Err(SpanError::Negative { .. })));
        assert!(matches!(parse("1mo"), Err(SpanError::Calendar { .. })));
        assert!(matches!(parse("P1Y"), Err(SpanError::Calendar { .. })));
        assert!(matches!(
            parse("99999999999999999999"),
            Err(SpanError::TooLong { .. })
        ));
        // Past what nanoseconds in an i64 hold: `--sweep-interval` with it panicked at
        // `Instant::now() + period`, `--fsync-interval` wrapped to a negative interval.
        for long in ["18446744073709551615", "9223372037", "106752d", "15251w"] {
            assert!(
                matches!(parse(long), Err(SpanError::TooLong { .. })),
                "{long}: {:?}",
                parse(long)
            );
        }
        // The longest accepted, in either form, is usable as a period and as nanoseconds.
        for longest in ["9223372036", "106751d"] {
            let d = parse(longest).expect(longest);
            assert!(d <= MAX && i64::try_from(d.as_nanos()).is_ok(), "{longest}");
            let _ = std::time::Instant::now() + d;
        }
        let msg = parse("soon").unwrap_err().to_string();
        assert!(
            msg.contains("\"soon\"") && msg.contains("30s"),
            "the message quotes the value and shows the forms: {msg}"
        );
    }
}
