//! The segment schema: its Parquet message type (column order is part of the format), the
//! column indexes and names, how a segment is cut into row groups and pages, and the file
//! metadata keys. The reference, with units, is `docs/store-format.md`.

/// The Parquet schema of a segment. Column order is part of the format.
pub const SCHEMA: &str = "message xdp_audit_flow {
  required int64 time_start (TIMESTAMP(NANOS,true));
  required int64 time_end (TIMESTAMP(NANOS,true));
  required binary iface (STRING);
  required int32 ifindex (INTEGER(32,false));
  optional int32 vlan (INTEGER(16,false));
  optional int32 vlan_inner (INTEGER(16,false));
  required fixed_len_byte_array(6) src_mac;
  required fixed_len_byte_array(6) dst_mac;
  required int32 proto (INTEGER(8,false));
  required int32 ip_version (INTEGER(8,false));
  required fixed_len_byte_array(16) src_ip;
  required int32 src_port (INTEGER(16,false));
  required fixed_len_byte_array(16) dst_ip;
  required int32 dst_port (INTEGER(16,false));
  required int64 packets (INTEGER(64,false));
  required int64 bytes (INTEGER(64,false));
  required int64 resp_packets (INTEGER(64,false));
  required int64 resp_bytes (INTEGER(64,false));
  required int32 tcp_flags (INTEGER(8,false));
  required binary end_reason (STRING);
  required int64 dropped (INTEGER(64,false));
  optional binary rule (STRING);
  optional binary user (STRING);
  optional binary hostname (STRING);
  optional fixed_len_byte_array(16) nat_ip;
  optional int32 nat_ip_version (INTEGER(8,false));
  optional int32 nat_port (INTEGER(16,false));
  optional binary domain (STRING);
  optional binary domain_source (STRING);
  optional binary dns_qname (STRING);
  optional int32 dns_qtype (INTEGER(16,false));
}";

/// The value of the `xdp-audit.format` metadata key this code writes.
pub const FORMAT: &str = "6";
/// The file metadata key that holds [`FORMAT`].
pub const FORMAT_KEY: &str = "xdp-audit.format";

/// Column counts of every schema this code reads, newest first. Each schema is the first
/// columns of the next: 31 (format 5, with the attribution), 22 (formats 3 and 4, with the
/// list columns), 20 (format 1). Older ones are read, never written.
pub const COLUMN_COUNTS: [usize; 3] = [col::COUNT, col::COUNT_V4, col::COUNT_V1];

/// The schema of the first `columns` columns of [`SCHEMA`] (a schema of an earlier format).
pub(super) fn schema_prefix(columns: usize) -> String {
    let mut lines: Vec<&str> = SCHEMA.lines().collect();
    let last = lines.pop().unwrap_or("}");
    lines.truncate(columns + 1);
    lines.push(last);
    lines.join("\n")
}

/// Column indexes in [`SCHEMA`].
pub mod col {
    /// `time_start`.
    pub const TIME_START: usize = 0;
    /// `time_end`.
    pub const TIME_END: usize = 1;
    /// `iface`.
    pub const IFACE: usize = 2;
    /// `ifindex`.
    pub const IFINDEX: usize = 3;
    /// `vlan`.
    pub const VLAN: usize = 4;
    /// `vlan_inner`.
    pub const VLAN_INNER: usize = 5;
    /// `src_mac`.
    pub const SRC_MAC: usize = 6;
    /// `dst_mac`.
    pub const DST_MAC: usize = 7;
    /// `proto`.
    pub const PROTO: usize = 8;
    /// `ip_version`.
    pub const IP_VERSION: usize = 9;
    /// `src_ip`.
    pub const SRC_IP: usize = 10;
    /// `src_port`.
    pub const SRC_PORT: usize = 11;
    /// `dst_ip`.
    pub const DST_IP: usize = 12;
    /// `dst_port`.
    pub const DST_PORT: usize = 13;
    /// `packets`.
    pub const PACKETS: usize = 14;
    /// `bytes`.
    pub const BYTES: usize = 15;
    /// `resp_packets`.
    pub const RESP_PACKETS: usize = 16;
    /// `resp_bytes`.
    pub const RESP_BYTES: usize = 17;
    /// `tcp_flags`.
    pub const TCP_FLAGS: usize = 18;
    /// `end_reason`.
    pub const END_REASON: usize = 19;
    /// `dropped`.
    pub const DROPPED: usize = 20;
    /// `rule`.
    pub const RULE: usize = 21;
    /// `user`.
    pub const USER: usize = 22;
    /// `hostname`.
    pub const HOSTNAME: usize = 23;
    /// `nat_ip`.
    pub const NAT_IP: usize = 24;
    /// `nat_ip_version`.
    pub const NAT_IP_VERSION: usize = 25;
    /// `nat_port`.
    pub const NAT_PORT: usize = 26;
    /// `domain`.
    pub const DOMAIN: usize = 27;
    /// `domain_source`.
    pub const DOMAIN_SOURCE: usize = 28;
    /// `dns_qname`.
    pub const DNS_QNAME: usize = 29;
    /// `dns_qtype`.
    pub const DNS_QTYPE: usize = 30;
    /// Number of columns.
    pub const COUNT: usize = 31;
    /// Number of columns of formats 3 and 4 (before the attribution columns).
    pub const COUNT_V4: usize = 22;
    /// Number of columns of the first schema (before `dropped` and `rule`).
    pub const COUNT_V1: usize = 20;
}

/// Rows per row group and per page: how a segment is cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// Rows per row group.
    pub row_group_rows: usize,
    /// Rows per data page (a divisor of `write::WRITE_CHUNK` and a multiple of the Parquet
    /// writer's 1,024-row batches).
    pub page_rows: usize,
    /// Rows per data page of `dst_ip`, which an address query decodes whole (its rows are in
    /// no order), so each page's fixed decompression set-up counts more than its size.
    pub dst_page_rows: usize,
}

impl Layout {
    /// A sealed journal: about an hour of a busy gateway per row group, so one hourly
    /// segment is usually one row group and the per-group dictionaries are paid once.
    pub const SEALED: Self = Self {
        row_group_rows: 1 << 20,
        page_rows: 8192,
        dst_page_rows: 8192,
    };
    /// A merged day (see `compact`): one row group (a day is at most
    /// `compact::DEFAULT_MAX_ROWS`), so its dictionaries (remote addresses, names) are paid
    /// once a day, and pages of 8,192 rows. Measured on a generated day at 13 flows/s against
    /// the earlier 128 Ki-row groups of 1,024-row pages: the single row group saves ~1.0 byte
    /// per record and the larger pages ~1.8 (page headers, page table entries, and zstd
    /// working on larger pages); a client's rows are one run of the group, read page by page.
    pub const COMPACTED: Self = Self {
        row_group_rows: 1 << 21,
        page_rows: 8192,
        dst_page_rows: 8192,
    };
}

/// File metadata key holding the CRC-32 of every column chunk (hex, `,` between columns,
/// `;` between row groups). Parquet pages carry no checksum as written by this library, and a
/// damaged zstd page can decode to plausible values, so every chunk is checked before use.
pub const CRC_KEY: &str = "xdp-audit.chunk-crc32";

/// The name of column `c`.
pub fn column_name(c: usize) -> &'static str {
    const NAMES: [&str; col::COUNT] = [
        "time_start",
        "time_end",
        "iface",
        "ifindex",
        "vlan",
        "vlan_inner",
        "src_mac",
        "dst_mac",
        "proto",
        "ip_version",
        "src_ip",
        "src_port",
        "dst_ip",
        "dst_port",
        "packets",
        "bytes",
        "resp_packets",
        "resp_bytes",
        "tcp_flags",
        "end_reason",
        "dropped",
        "rule",
        "user",
        "hostname",
        "nat_ip",
        "nat_ip_version",
        "nat_port",
        "domain",
        "domain_source",
        "dns_qname",
        "dns_qtype",
    ];
    NAMES.get(c).copied().unwrap_or("?")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn column_names_follow_the_schema_and_earlier_schemas_are_its_prefixes() {
        let schema = parquet::schema::parser::parse_message_type(SCHEMA).expect("schema parses");
        let fields = schema.get_fields();
        assert_eq!(fields.len(), col::COUNT);
        for (c, f) in fields.iter().enumerate() {
            assert_eq!(f.name(), column_name(c), "column {c}");
        }
        for n in COLUMN_COUNTS {
            let s = parquet::schema::parser::parse_message_type(&schema_prefix(n))
                .unwrap_or_else(|e| panic!("schema of {n} columns: {e}"));
            assert_eq!(s.get_fields().len(), n);
            assert_eq!(s.get_fields(), &fields[..n], "{n} columns");
        }
        // Format 1 ends before the list columns, format 4 before the attribution.
        assert!(!schema_prefix(col::COUNT_V1).contains(" dropped "));
        assert!(schema_prefix(col::COUNT_V4).ends_with("optional binary rule (STRING);\n}"));
    }
}
