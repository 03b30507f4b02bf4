use super::*;

fn ok(text: &str) -> ParsedSubscribers {
    ParsedSubscribers::parse(text.as_bytes()).unwrap_or_else(|bad| {
        let shown: Vec<String> = bad.iter().map(ToString::to_string).collect();
        panic!("expected a good file, got {shown:?}")
    })
}

fn errors(text: impl AsRef<[u8]>) -> Vec<String> {
    match ParsedSubscribers::parse(text.as_ref()) {
        Ok(p) => panic!("expected errors, parsed {:?}", p.entries),
        Err(bad) => bad.iter().map(ToString::to_string).collect(),
    }
}

fn ns(rfc3339: &str) -> i64 {
    let ts: jiff::Timestamp = rfc3339.parse().expect("test time");
    ts.as_nanosecond() as i64
}

#[test]
fn every_match_kind_quoting_and_windows() {
    let p = ok("\u{feff}# exported from billing\r\n\
        Match , Account,name,valid_from,valid_to\r\n\
        192.0.2.10,ACME-1,\"Acme, Inc.\",2026-01-01T00:00:00Z,\r\n\
        \r\n\
        10.1.0.0/24,C-2,,,\r\n\
        10.2.0.5 - 10.2.0.20,C-3,\"Jane \"\"JD\"\" Doe\",,2027-01-01T01:00:00+01:00\r\n\
        2001:db8:100::/48,C-3,,,\r\n\
        2001:db8::1-2001:db8::ff,C-4,,,\r\n\
        AA:BB:CC:DD:EE:0F,C-5,Bob's phone,,\r\n\
        aa-bb-cc-dd-ee-10,C-6,,,\r\n");
    let m: Vec<String> = p.entries.iter().map(|e| e.matcher.to_string()).collect();
    assert_eq!(
        m,
        [
            "192.0.2.10",
            "10.1.0.0/24",
            "10.2.0.5-10.2.0.20",
            "2001:db8:100::/48",
            "2001:db8::1-2001:db8::ff",
            "aa:bb:cc:dd:ee:0f",
            "aa:bb:cc:dd:ee:10"
        ]
    );
    let first = &p.entries[0];
    assert_eq!(first.line, 3);
    assert_eq!(&*first.subscriber.account, "ACME-1");
    assert_eq!(first.subscriber.name.as_deref(), Some("Acme, Inc."));
    assert_eq!(first.valid.from, Some(ns("2026-01-01T00:00:00Z")));
    assert_eq!(first.valid.to, None);
    assert_eq!(
        p.entries[2].subscriber.name.as_deref(),
        Some("Jane \"JD\" Doe")
    );
    assert_eq!(p.entries[2].valid.to, Some(ns("2027-01-01T00:00:00Z")));
    assert_eq!(p.entries[1].subscriber.name, None);
    assert_eq!(
        p.stats,
        RowStats {
            lines: 10,
            rows: 7,
            comments: 1,
            blank: 1,
            v4: 3,
            v6: 2,
            macs: 2,
            windowed: 2,
            duplicates: 0,
        }
    );
}

#[test]
fn columns_in_any_order_and_only_the_required_ones() {
    let p = ok("account,match\nA,10.0.0.1\n");
    assert_eq!(
        p.entries[0].matcher,
        Match::V4 {
            lo: 0x0a00_0001,
            hi: 0x0a00_0001
        }
    );
    assert_eq!(ok("match,account\n").entries, []);
    assert_eq!(ok("").entries, []);
}

#[test]
fn every_bad_row_is_reported_with_its_column() {
    let shown = errors(
        "match,account,name,valid_from,valid_to\n\
         10.0.0.256,a,,,\n\
         10.0.0.1/8,a,,,\n\
         10.0.0.9-10.0.0.1,a,,,\n\
         example.com,a,,,\n\
         aa:bb:cc:dd:ee:gg,a,,,\n\
         01:00:5e:00:00:01,a,,,\n\
         10.0.0.1,,,,\n\
         10.0.0.2,a,,yesterday,\n\
         10.0.0.3,a,,2026-02-01T00:00:00Z,2026-01-01T00:00:00Z\n\
         10.0.0.4,a,\"unterminated,,\n\
         10.0.0.5,a\n\
         10.0.0.6,a,x\"y,,\n\
         10.0.0.7,\"a\"b,,,\n\
         10.0.0.8,a,\"tab\there\",,\n\
         fe80::1%eth0,a,,,\n\
         10.0.0.9,a,,2026-01-01 00:00:00,\n\
         aa:bb:cc:dd:ee,a,,,\n",
    );
    let expected = [
        "2: match: IPv4 address `10.0.0.256`: octet 4 (256) is over 255",
        "3: match: CIDR `10.0.0.1/8` has host bits set after the prefix; the network is `10.0.0.0/8`",
        "4: match: range `10.0.0.9-10.0.0.1`: start is after end",
        "5: match: `example.com` is not an IPv4 or IPv6 address, CIDR, range `A-B` or MAC",
        "6: match: `aa:bb:cc:dd:ee:gg` is not a MAC address (six hex pairs separated by `:` or `-`)",
        "7: match: `01:00:5e:00:00:01` is a group (multicast or broadcast) address; a client's MAC is unicast",
        "8: account: empty; every row needs one",
        "9: valid_from: `yesterday` is not an RFC 3339 time",
        "10: valid_to: ends at 2026-01-01T00:00:00Z, not after valid_from 2026-02-01T00:00:00Z",
        "11: quoted field has no closing `\"` on this line (a field cannot span lines)",
        "12: 2 fields, but the header has 5",
        "13: `\"` inside an unquoted field",
        "14: text after the closing `\"` of a quoted field",
        "15: name: holds control character '\\t'",
        "16: match: `fe80::1%eth0` is not an IPv4 or IPv6 address",
        "17: valid_from: `2026-01-01 00:00:00` is not an RFC 3339 time",
        "18: match: `aa:bb:cc:dd:ee` is not a MAC address (six hex pairs",
    ];
    assert_eq!(shown.len(), expected.len(), "{shown:#?}");
    for (s, e) in shown.iter().zip(expected) {
        assert!(s.starts_with(e), "got  {s}\nwant {e}...");
    }
}

#[test]
fn header_problems() {
    assert_eq!(
        errors("10.0.0.1,acme\n"),
        ["1: the first line that is not a comment must be the header (`match,account,name,valid_from,valid_to`); found `10.0.0.1,acme`"]
    );
    assert_eq!(
        errors("# c\nmatch,account,valid_form\n"),
        ["2: unknown column `valid_form`; the columns are match, account, name, valid_from, valid_to"]
    );
    assert_eq!(
        errors("match,name\n"),
        ["1: the header has no `account` column (required: match, account)"]
    );
    assert_eq!(
        errors("match,account,Match\n"),
        ["1: column `match` appears twice in the header"]
    );
    assert_eq!(
        errors("match;account\n10.0.0.1;alice\n"),
        ["1: the header separates its columns with ';'; a subscribers file separates fields with commas (`match,account,...`)"]
    );
    assert_eq!(
        errors("Account\tMatch\n"),
        ["1: the header separates its columns with '\\t'; a subscribers file separates fields with commas (`match,account,...`)"]
    );
    assert_eq!(
        errors(b"match,account\n\xff\n10.0.0.1,a,b\n"),
        [
            "2: line is not valid UTF-8 (byte 0xff at column 1)",
            "3: 3 fields, but the header has 2"
        ]
    );
}

#[test]
fn limits_on_text_fields() {
    let long = "x".repeat(MAX_ACCOUNT_LEN + 1);
    assert_eq!(
        errors(format!("match,account\n10.0.0.1,{long}\n")),
        [format!(
            "2: account: {} bytes long, over {MAX_ACCOUNT_LEN}",
            MAX_ACCOUNT_LEN + 1
        )]
    );
    ok(&format!(
        "match,account\n10.0.0.1,{}\n",
        "x".repeat(MAX_ACCOUNT_LEN)
    ));
    assert_eq!(
        errors("match,account\n10.0.0.1,a\u{7}\n"),
        ["2: account: holds control character '\\u{7}'"]
    );
}

/// An account or name with a text-direction mark, a zero-width character or a filler reads as
/// another one in every report and table: the row is refused, the character named by its
/// escape (a filler printed as it is would be invisible in the message too).
#[test]
fn invisible_characters_in_accounts_and_names_are_refused() {
    let why = "(a text-direction, zero-width or other format character), which makes it read as another text; write it without";
    assert_eq!(
        errors(
            "match,account,name\n\
             10.0.0.1,admin\u{202e}gpj.exe,\n\
             10.0.0.2,c-1\u{200b}7,\n\
             10.0.0.3,c-18,Zo\u{3164}\n\
             10.0.0.4,tag\u{e0041},\n\
             10.0.0.5,\u{feff}c-19,\n"
        ),
        [
            format!("2: account: holds the invisible character '\\u{{202e}}' {why}"),
            format!("3: account: holds the invisible character '\\u{{200b}}' {why}"),
            format!("4: name: holds the invisible character '\\u{{3164}}' {why}"),
            format!("5: account: holds the invisible character '\\u{{e0041}}' {why}"),
            format!("6: account: holds the invisible character '\\u{{feff}}' {why}"),
        ]
    );
    // Visible text of any script stays; a formula-like account too (CSV output neutralises it).
    ok("match,account,name\n10.0.0.1,Zoë-网卡,\"=HYPERLINK(\"\"http://x\"\")\"\n");
    // Joiners and variation selectors are ordinary writing: Persian with its non-joiner,
    // Sinhala with its joiner, an emoji with its style selector.
    ok("match,account,name\n\
        10.0.0.1,\u{645}\u{62d}\u{645}\u{62f}\u{200c}\u{631}\u{636}\u{627},\n\
        10.0.0.2,c-20,\u{dc1}\u{dca}\u{200d}\u{dbb}\u{dd3} Perera\n\
        10.0.0.3,c-21,Anna \u{2764}\u{fe0f}\n");
    // After ASCII they only make one text look like another.
    assert_eq!(
        errors("match,account\n10.0.0.1,c-20\u{200d}\n"),
        [format!(
            "2: account: holds the invisible character '\\u{{200d}}' {why}"
        )]
    );
}

#[test]
fn conflicts_are_reported_and_duplicates_folded() {
    let shown = errors(
        "match,account,name,valid_from,valid_to\n\
         10.0.0.1,a,,,\n\
         10.0.0.1,b,,,\n\
         10.0.1.0/24,c,,,2026-01-01T00:00:00Z\n\
         10.0.1.0/24,d,,2026-01-01T00:00:00Z,\n\
         10.0.2.0-10.0.2.10,e,,,\n\
         10.0.2.5-10.0.2.20,f,,,\n\
         aa:bb:cc:dd:ee:01,g,,,\n\
         aa-bb-cc-dd-ee-01,h,,,\n",
    );
    assert_eq!(
        shown,
        [
            "3: match: `10.0.0.1` is also given to account `a` on line 2 in an overlapping validity window; keep one row, or give them windows that do not overlap",
            "7: match: `10.0.2.5-10.0.2.20` overlaps the range on line 6 without containing it or lying inside it, in an overlapping validity window; ranges must nest or be disjoint (the narrowest wins)",
            "9: match: `aa:bb:cc:dd:ee:01` is also given to account `g` on line 8 in an overlapping validity window; keep one row, or give them windows that do not overlap",
        ]
    );
    // Back-to-back windows (valid_to is exclusive), nested ranges, the same subscriber twice.
    let p = ok("match,account,name,valid_from,valid_to\n\
         10.0.1.0/24,c,,,2026-01-01T00:00:00Z\n\
         10.0.1.0/24,d,,2026-01-01T00:00:00Z,\n\
         10.0.0.0/8,wide,,,\n\
         10.0.0.0-10.0.0.255,mid,,,\n\
         10.0.0.7,a,,,\n\
         10.0.0.7,a,,,\n\
         10.0.0.7,a,,2020-01-01T00:00:00Z,\n\
         10.0.3.0-10.0.3.9,x,,,2026-01-01T00:00:00Z\n\
         10.0.3.5-10.0.3.20,y,,2026-01-01T00:00:00Z,\n");
    assert_eq!(p.stats.duplicates, 1);
    assert_eq!(p.entries.len(), 8);
    assert!(
        p.entries.iter().all(|e| e.line != 7),
        "the later duplicate is folded"
    );
}

/// An IPv6 address of a MAC's length, with separators where a MAC has them, is an address.
#[test]
fn an_ipv6_address_shaped_like_a_mac_is_an_address() {
    let p = ok("match,account\n10:20:30:40:50::1,C-1\n");
    assert_eq!(p.entries[0].matcher.to_string(), "10:20:30:40:50::1");
}

/// One match given to many accounts (a shared address listed per customer) is one report
/// per row, not one per pair of rows: 3,000 rows were 4.5 million reports.
#[test]
fn many_rows_of_one_match_are_one_report_each() {
    let mut text = String::from("match,account\n");
    for i in 0..3000 {
        text.push_str(&format!("203.0.113.1,C-{i}\n"));
    }
    let shown = errors(&text);
    assert_eq!(shown.len(), 2999, "{:?}", &shown[..3]);
    assert!(
        shown[0].starts_with("3: match: `203.0.113.1` is also given"),
        "{}",
        shown[0]
    );
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = crate::store::testgen::Rng::new(9);
    let seed = b"match,account,name,valid_from,valid_to\n10.0.0.1,\"a,b\",x,2026-01-01T00:00:00Z,\naa:bb:cc:dd:ee:ff,b,,,\n";
    for _ in 0..20_000 {
        let mut bytes = seed.to_vec();
        for _ in 0..1 + rng.below(6) {
            let at = rng.below(bytes.len() as u64 + 1) as usize;
            match rng.below(3) {
                0 if at < bytes.len() => bytes[at] = rng.below(256) as u8,
                1 => bytes.insert(at, b",\"-:/.\n 0aZ"[rng.below(11) as usize]),
                _ if at < bytes.len() => {
                    bytes.remove(at);
                }
                _ => {}
            }
        }
        // Good or bad, it must come back: every error names a line in the file.
        if let Err(bad) = ParsedSubscribers::parse(&bytes) {
            let lines = bytes.split(|&b| b == b'\n').count() as u32;
            assert!(
                bad.iter().all(|b| b.line >= 1 && b.line <= lines),
                "{bad:?}"
            );
        }
    }
}

/// The example in docs/attribution.md, and the summary the page shows for it.
#[test]
fn the_documented_example() {
    let doc = include_str!("../../../../../docs/attribution.md");
    let csv = doc
        .split("```csv\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("a csv block in docs/attribution.md");
    let p = ok(csv);
    let summary = format!("  {}", p.stats);
    assert!(doc.contains(&summary), "the page should show `{summary}`");
}
