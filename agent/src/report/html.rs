//! The report as one self-contained HTML page: styles inline, the timeline an inline SVG, no
//! script and no external resource, so it opens offline and prints as it shows. The markup is
//! well-formed XML too (every element closed), and sections, facts and counts carry stable
//! `id`, `data-fact` and `data-count` attributes for tools that read the page.

use std::fmt::Write as _;

use super::text::esc;
use super::view::{self, Col, Fact, Grid};
use super::Report;

const STYLE: &str = "
body { font-family: 'DejaVu Sans', 'Liberation Sans', Arial, sans-serif; font-size: 13px; color: #1a1a1a; margin: 24px; }
h1 { font-size: 22px; margin: 0 0 12px 0; }
h2 { font-size: 16px; border-bottom: 1px solid #999999; padding-bottom: 3px; margin-top: 28px; }
table { border-collapse: collapse; margin: 8px 0; }
th, td { border: 1px solid #cccccc; padding: 3px 6px; vertical-align: top; text-align: left; overflow-wrap: anywhere; max-width: 480px; }
th { background: #f0f0f0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.time { white-space: nowrap; }
table.facts th { width: 260px; }
.mono { font-family: 'DejaVu Sans Mono', 'Liberation Mono', monospace; font-size: 11px; word-break: break-all; }
p.ok { color: #1e6b2f; font-weight: bold; }
p.broken { color: #b00020; font-weight: bold; }
p.unchecked { color: #a05a00; font-weight: bold; }
p.note { color: #555555; }
@page { size: A4 landscape; margin: 12mm; }
";

/// The report as an HTML page.
pub fn html(r: &Report) -> String {
    let mut s = String::with_capacity(64 * 1024 + r.records.shown.len() * 600);
    let title = esc(&view::heading(r));
    let _ = write!(
        s,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"/><title>{title}</title><style>{STYLE}</style></head>\n<body>\n"
    );
    let _ = write!(s, "<header id=\"title\"><h1>{title}</h1>");
    facts(&mut s, &view::title_facts(r));
    s.push_str("</header>\n");

    section(&mut s, "summary", "Summary");
    s.push_str("<table class=\"facts\"><tbody>");
    for c in view::summary_counts(r) {
        let _ = write!(
            s,
            "<tr data-count=\"{}\" data-value=\"{}\"><th>{}</th><td class=\"num\">{}</td></tr>",
            c.key,
            c.value,
            esc(c.label),
            esc(&c.text)
        );
    }
    s.push_str("</tbody></table>");
    note(&mut s, &view::records_span(r));
    s.push_str("</section>\n");

    section(&mut s, "timeline", "Timeline of flows and blocked flows");
    s.push_str(&r.timeline.svg());
    s.push_str("</section>\n");

    for (id, heading, table, by_client) in [
        (
            "blocked-by-rule",
            "Blocked destinations by rule",
            &r.blocked_by_rule,
            false,
        ),
        (
            "blocked-by-client",
            "Blocked destinations by client",
            &r.blocked_by_client,
            true,
        ),
    ] {
        section(&mut s, id, heading);
        if table.rows.is_empty() {
            note(&mut s, "No flow was blocked in this window.");
        } else {
            grid(&mut s, &view::blocked_grid(table, by_client));
        }
        if let Some(n) = view::more_note(table, r.records.attachment.is_some()) {
            note(&mut s, &n);
        }
        s.push_str("</section>\n");
    }

    let _ = write!(
        s,
        "<section id=\"records\" data-total=\"{}\" data-shown=\"{}\"><h2>Matching records</h2>",
        r.records.total,
        r.records.shown.len()
    );
    note(&mut s, &view::records_note(r));
    if let Some(a) = &r.records.attachment {
        let _ = write!(
            s,
            "<div id=\"attachment\" data-sha256=\"{}\" data-rows=\"{}\"><h3>Attachment</h3>",
            esc(&a.sha256),
            a.rows
        );
        facts(&mut s, &view::attachment_facts(r).unwrap_or_default());
        s.push_str("</div>");
    }
    if !r.records.shown.is_empty() {
        grid(&mut s, &view::records_grid(&r.records.shown));
    }
    s.push_str("</section>\n");

    section(&mut s, "chain", "Chain entries covering the window");
    if !r.chain.entries.is_empty() {
        grid(&mut s, &view::chain_grid(r));
    }
    note(&mut s, &view::chain_note(&r.chain));
    s.push_str("</section>\n");

    section(&mut s, "head", "Signed chain head");
    facts(&mut s, &view::head_facts(r));
    s.push_str("</section>\n");

    let _ = writeln!(
        s,
        "<section id=\"verify\" data-ok=\"{}\"><h2>Verification at report time</h2><p class=\"{}\">{}</p></section>",
        r.verify.ok,
        match (r.verify.ok, r.verify.unchecked) {
            (true, _) => "ok",
            (false, true) => "unchecked",
            (false, false) => "broken",
        },
        esc(&view::verify_text(r))
    );
    s.push_str("</body></html>\n");
    s
}

fn section(s: &mut String, id: &str, heading: &str) {
    let _ = write!(s, "<section id=\"{id}\"><h2>{}</h2>", esc(heading));
}

fn note(s: &mut String, text: &str) {
    let _ = write!(s, "<p class=\"note\">{}</p>", esc(text));
}

fn facts(s: &mut String, facts: &[Fact]) {
    s.push_str("<table class=\"facts\"><tbody>");
    for f in facts {
        let _ = write!(
            s,
            "<tr data-fact=\"{}\"><th>{}</th><td>{}</td></tr>",
            f.key,
            esc(f.label),
            esc(&f.value)
        );
    }
    s.push_str("</tbody></table>");
}

fn grid(s: &mut String, g: &Grid) {
    let _ = write!(s, "<table data-rows=\"{}\"><thead><tr>", g.rows.len());
    for h in &g.headers {
        let _ = write!(s, "<th>{}</th>", esc(h));
    }
    s.push_str("</tr></thead><tbody>");
    for row in &g.rows {
        s.push_str("<tr>");
        for (cell, col) in row.iter().zip(&g.cols) {
            let class = match col {
                Col::Text => "",
                Col::Num => " class=\"num\"",
                Col::Time => " class=\"time\"",
                Col::Code => " class=\"mono\"",
            };
            let _ = write!(s, "<td{class}>{}</td>", esc(cell));
        }
        s.push_str("</tr>");
    }
    s.push_str("</tbody></table>");
}
