//! Output formats of query and export: a table for people, JSON Lines and CSV for tools.
//! JSON Lines uses the record's JSON encoding; CSV has the same columns in the same order.

use std::io::Write;

use crate::record::{proto_name, rfc3339_ns, tcp_flags_str, FlowRecord};

/// An output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns for a terminal (a subset of the fields).
    Table,
    /// One JSON object per line, every field.
    Jsonl,
    /// RFC 4180 CSV with a header line, every field.
    Csv,
}

/// CSV header, also the field order of JSON Lines.
pub const CSV_HEADER: &str = "time_start,time_end,iface,ifindex,vlan,vlan_inner,src_mac,dst_mac,proto,src_ip,src_port,dst_ip,dst_port,packets,bytes,resp_packets,resp_bytes,tcp_flags,dropped,rule,end_reason";

fn csv_field(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\"")).into()
    } else {
        s.into()
    }
}

fn opt(v: Option<u16>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

/// Writes records in one format; call [`RecordWriter::header`] once first.
pub struct RecordWriter<W: Write> {
    out: W,
    format: Format,
}

impl<W: Write> RecordWriter<W> {
    /// A writer of `format` to `out`.
    pub fn new(out: W, format: Format) -> Self {
        Self { out, format }
    }

    /// Writes the header line (CSV, table) or nothing (JSON Lines).
    pub fn header(&mut self) -> std::io::Result<()> {
        match self.format {
            Format::Csv => writeln!(self.out, "{CSV_HEADER}"),
            Format::Table => writeln!(
                self.out,
                "{:<30} {:<8} {:<6} {:>39} {:>5}  {:>39} {:>5} {:>9} {:>12} {:<8}",
                "time_start",
                "iface",
                "proto",
                "src_ip",
                "sport",
                "dst_ip",
                "dport",
                "packets",
                "bytes",
                "end"
            ),
            Format::Jsonl => Ok(()),
        }
    }

    /// Writes one record.
    pub fn write(&mut self, r: &FlowRecord) -> std::io::Result<()> {
        match self.format {
            Format::Jsonl => {
                serde_json::to_writer(&mut self.out, r).map_err(std::io::Error::other)?;
                self.out.write_all(b"\n")
            }
            Format::Csv => writeln!(
                self.out,
                "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
                rfc3339_ns(r.time_start_ns),
                rfc3339_ns(r.time_end_ns),
                csv_field(&r.iface),
                r.ifindex,
                opt(r.vlan),
                opt(r.vlan_inner),
                r.src_mac,
                r.dst_mac,
                proto_name(r.proto),
                r.src_ip,
                r.src_port,
                r.dst_ip,
                r.dst_port,
                r.packets,
                r.bytes,
                r.resp_packets,
                r.resp_bytes,
                tcp_flags_str(r.tcp_flags),
                r.dropped,
                csv_field(r.rule.as_deref().unwrap_or("")),
                r.end_reason
            ),
            Format::Table => writeln!(
                self.out,
                "{:<30} {:<8} {:<6} {:>39} {:>5}  {:>39} {:>5} {:>9} {:>12} {:<8}",
                rfc3339_ns(r.time_start_ns),
                r.iface,
                proto_name(r.proto).to_string(),
                r.src_ip.to_string(),
                r.src_port,
                r.dst_ip.to_string(),
                r.dst_port,
                r.packets,
                r.bytes,
                r.end_reason.as_str()
            ),
        }
    }

    /// Flushes and returns the inner writer.
    pub fn finish(mut self) -> std::io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}
