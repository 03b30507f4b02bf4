//! How the report writes numbers, sizes, times and free text for people: thousands
//! separators, byte sizes with their unit, UTC times to the second, and HTML escaping.

use crate::record::{rfc3339_ns, rfc3339_s};

/// A count with thousands separators: `1,234,567`.
pub fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// A byte count with its binary unit and the exact figure: `1.5 MiB (1,572,864 bytes)`;
/// below 1 KiB the bytes alone.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if n < 1024 {
        return format!("{} bytes", count(n));
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {} ({} bytes)", UNITS[unit], count(n))
}

/// A time for people: `2026-05-03 14:00:00 UTC` (cut to the second, as clocks show it).
pub fn time(unix_ns: i64) -> String {
    let s = rfc3339_s(unix_ns);
    format!("{} {} UTC", &s[..10], &s[11..19])
}

/// A bound as given, RFC 3339 UTC: to the second when it falls on one, else with its
/// nanoseconds, so `query` given the printed bound finds the same records.
pub fn rfc3339_exact(unix_ns: i64) -> String {
    if unix_ns.rem_euclid(1_000_000_000) == 0 {
        rfc3339_s(unix_ns)
    } else {
        rfc3339_ns(unix_ns)
    }
}

/// [`time`] with the bound's fraction when it has one: `2026-05-03 14:00:00.250000000 UTC`.
pub fn time_exact(unix_ns: i64) -> String {
    let s = rfc3339_exact(unix_ns);
    format!("{} {} UTC", &s[..10], &s[11..s.len() - 1])
}

/// A span of seconds for people: `45 s`, `5 min`, `2 h 30 min`, `3 d 4 h`.
pub fn span(secs: i64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m, s) {
        (0, 0, 0, s) => format!("{s} s"),
        (0, 0, m, 0) => format!("{m} min"),
        (0, 0, m, s) => format!("{m} min {s} s"),
        (0, h, 0, _) => format!("{h} h"),
        (0, h, m, _) => format!("{h} h {m} min"),
        (d, 0, _, _) => format!("{d} d"),
        (d, h, _, _) => format!("{d} d {h} h"),
    }
}

/// Text made safe for HTML element content and attribute values: markup characters as
/// entities, invisible characters ([`crate::invisible`]: controls, text-direction and
/// zero-width characters...) as their escape (`\u{202e}`), shown, not obeyed.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in crate::invisible::shown_chars(s) {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The report's own prose in Markdown (its heading, the verification sentence: texts of the
/// agent, never a record's free text, which goes through [`md_code`]): the characters
/// Markdown would read as formatting, an entity or a table's cell boundary backslash-escaped,
/// invisible characters as their escape.
pub fn md_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in crate::invisible::shown_chars(s) {
        match ch {
            '|' | '\\' | '*' | '_' | '`' | '<' | '>' | '[' | ']' | '~' | '&' => {
                out.push('\\');
                out.push(ch);
            }
            c => out.push(c),
        }
    }
    out
}

/// Free text for a cell of a Markdown table (GFM), as a code span: nothing in it is read as
/// Markdown, so no entity (`&#x202E;`), strikethrough (`~~`), emphasis, HTML or link
/// (`https://...` and `www....` are autolinked in plain text: a report would link to the
/// blocked sites it lists). The fence is one backtick longer than the longest run of
/// backticks inside, with a space inside each end when the text starts or ends with a
/// backtick or a space (CommonMark strips one such space from each end); `|` is written
/// `\|`, since a table splits its row at a `|` even inside a code span (and shows `|`);
/// invisible characters, line breaks included, as their escape. Empty text is an empty cell.
pub fn md_code(s: &str) -> String {
    let text = crate::invisible::printable(s);
    if text.is_empty() {
        return String::new();
    }
    let (mut longest, mut run) = (0, 0);
    for ch in text.chars() {
        run = if ch == '`' { run + 1 } else { 0 };
        longest = longest.max(run);
    }
    let fence = "`".repeat(longest + 1);
    // Padding is undone by the strip for any text that is not all spaces (which is kept
    // as it is, unstripped and unpadded).
    let edge = text.starts_with(['`', ' ']) || text.ends_with(['`', ' ']);
    let pad = if edge && !text.chars().all(|c| c == ' ') {
        " "
    } else {
        ""
    };
    let mut out = String::with_capacity(text.len() + 2 * fence.len() + 2);
    out.push_str(&fence);
    out.push_str(pad);
    for ch in text.chars() {
        if ch == '|' {
            out.push('\\');
        }
        out.push(ch);
    }
    out.push_str(pad);
    out.push_str(&fence);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_have_thousands_separators() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1000), "1,000");
        assert_eq!(count(1_234_567), "1,234,567");
        assert_eq!(count(u64::MAX), "18,446,744,073,709,551,615");
    }

    #[test]
    fn sizes_carry_their_unit_and_exact_figure() {
        assert_eq!(bytes(512), "512 bytes");
        assert_eq!(bytes(1536), "1.5 KiB (1,536 bytes)");
        assert_eq!(bytes(3 << 30), "3.0 GiB (3,221,225,472 bytes)");
    }

    #[test]
    fn times_and_spans_read_as_people_write_them() {
        assert_eq!(time(1_700_000_000_999_999_999), "2023-11-14 22:13:20 UTC");
        assert_eq!(span(45), "45 s");
        assert_eq!(span(300), "5 min");
        assert_eq!(span(330), "5 min 30 s");
        assert_eq!(span(9000), "2 h 30 min");
        assert_eq!(span(7200), "2 h");
        assert_eq!(span(3 * 86_400 + 4 * 3600), "3 d 4 h");
    }

    /// A window bound keeps its fraction (`--since 24h` has nanoseconds): cut to the second,
    /// the printed window selected other records than the report's.
    #[test]
    fn a_bound_is_printed_exactly() {
        assert_eq!(
            rfc3339_exact(1_700_000_000_000_000_000),
            "2023-11-14T22:13:20Z"
        );
        assert_eq!(
            rfc3339_exact(1_700_000_000_000_000_001),
            "2023-11-14T22:13:20.000000001Z"
        );
        assert_eq!(
            time_exact(1_700_000_000_250_000_000),
            "2023-11-14 22:13:20.250000000 UTC"
        );
        assert_eq!(
            time_exact(1_700_000_000_000_000_000),
            "2023-11-14 22:13:20 UTC"
        );
    }

    #[test]
    fn free_text_is_escaped_for_html_and_markdown() {
        assert_eq!(
            esc("<a href=\"x\">&'\u{1b}"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;\\u{1b}"
        );
        // The newline's escape is prose too: its backslash escaped, it renders as `\n`.
        assert_eq!(md_text("a|b_*c~~&amp;\n"), "a\\|b\\_\\*c\\~\\~\\&amp;\\\\n");
    }

    /// A direction override, a zero-width character or a filler in a name is shown as its
    /// escape in HTML: it cannot turn the text around or hide in it.
    #[test]
    fn html_shows_invisible_characters_escaped() {
        assert_eq!(
            esc("admin\u{202e}gpj.exe c-1\u{200b}7 pc\u{3164} \u{2028}"),
            "admin\\u{202e}gpj.exe c-1\\u{200b}7 pc\\u{3164} \\u{2028}"
        );
        assert_eq!(esc("Zoë 网卡"), "Zoë 网卡");
    }

    /// Free text in a Markdown cell is one code span: an entity, strikethrough, autolinks,
    /// backticks and pipes stay text, the cell stays one cell.
    #[test]
    fn a_markdown_cell_is_one_code_span() {
        assert_eq!(
            md_code("&#x202E; ~~x~~ https://evil.example www.example.com a``b|c"),
            "```&#x202E; ~~x~~ https://evil.example www.example.com a``b\\|c```"
        );
        assert_eq!(md_code("`x`"), "`` `x` ``");
        assert_eq!(md_code("a`"), "`` a` ``");
        assert_eq!(md_code(" a "), "`  a  `");
        assert_eq!(md_code("   "), "`   `");
        assert_eq!(md_code("C-000001"), "`C-000001`");
        assert_eq!(md_code(""), "");
        assert_eq!(
            md_code("a\nb\u{202e}c\\|"),
            "`a\\nb\\u{202e}c\\\\|`",
            "a line break cannot end the row; a backslash before a pipe stays"
        );
    }
}
