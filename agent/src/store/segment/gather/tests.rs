//! The direct decoding of chosen rows against the Parquet column reader (the slow, obviously
//! right path), over the encodings and page versions a segment may hold, and damaged pages.

use std::collections::{BTreeSet, VecDeque};

use parquet::basic::Encoding;
use parquet::column::page::{Page, PageMetadata, PageReader};
use parquet::file::metadata::RowGroupMetaData;
use parquet::file::properties::{WriterPropertiesBuilder, WriterVersion};
use parquet::file::reader::{FileReader, RowGroupReader};
use parquet::schema::types::ColumnPath;

use super::BY_READER;
use crate::record::{Attribution, FlowRecord};
use crate::store::columns::{Columns, SortedColumns};
use crate::store::segment::scan::Width;
use crate::store::segment::schema::{col, column_name, Layout};
use crate::store::segment::write::write_tweaked;
use crate::store::segment::SegmentReader;
use crate::store::testgen::{Rng, TrafficGen};

/// Pages of 1,024 rows, so a few thousand rows cross many page boundaries.
const SMALL_PAGES: Layout = Layout {
    row_group_rows: 1 << 20,
    page_rows: 1024,
    dst_page_rows: 1024,
};

/// Generated records with IPv4 and IPv6 addresses, rows with every optional column null and
/// rows with every one set, in segment row order.
fn records(n: usize) -> SortedColumns {
    let mut g = TrafficGen::new(23, 1_700_000_000_000_000_000);
    let mut recs: Vec<FlowRecord> = (0..n).map(|_| g.next_record()).collect();
    for (k, r) in recs.iter_mut().enumerate() {
        match k % 7 {
            0 => {
                r.vlan = None;
                r.vlan_inner = None;
                r.rule = None;
                r.attr = Attribution::default();
            }
            1 => {
                r.src_ip = format!("2001:db8::{:x}", k % 5000).parse().expect("ip");
                r.dst_ip = format!("2001:db8:1::{:x}", k % 300).parse().expect("ip");
            }
            2 => {
                r.vlan = Some(10);
                r.vlan_inner = Some((k % 4000) as u16);
                r.rule = Some(format!("rule-{}", k % 13));
                r.dropped = k as u64;
            }
            _ => {}
        }
    }
    recs.iter()
        .collect::<Columns>()
        .into_row_order()
        .expect("row order")
}

/// The writer variants: the segment writer's own choice, then what other writers (or
/// earlier formats) produce: PLAIN everywhere, data pages v2 with and without dictionaries
/// (delta-packed integers, DELTA_BYTE_ARRAY strings, which are read through the column
/// reader), dictionaries falling back to PLAIN within a chunk.
type Tweak = fn(WriterPropertiesBuilder) -> WriterPropertiesBuilder;
const VARIANTS: [(&str, Tweak); 5] = [
    ("segment", |b| b),
    ("plain", |b| {
        let mut b = b.set_dictionary_enabled(false);
        for c in [col::TIME_START, col::TIME_END, col::PACKETS, col::NAT_PORT] {
            b = b.set_column_encoding(ColumnPath::from(column_name(c)), Encoding::PLAIN);
        }
        b
    }),
    ("v2 dictionary", |b| {
        b.set_writer_version(WriterVersion::PARQUET_2_0)
    }),
    ("v2 delta", |b| {
        b.set_writer_version(WriterVersion::PARQUET_2_0)
            .set_dictionary_enabled(false)
    }),
    ("dictionary fallback", |b| {
        b.set_dictionary_page_size_limit(256)
    }),
];

/// Rows of `all` that `keep` marks.
fn chosen(all: &[FlowRecord], keep: &[bool]) -> Vec<FlowRecord> {
    all.iter()
        .zip(keep)
        .filter(|(_, &k)| k)
        .map(|(r, _)| r.clone())
        .collect()
}

/// `f` with every column read through the Parquet column reader.
fn by_reader<T>(f: impl FnOnce() -> T) -> T {
    BY_READER.set(true);
    let out = f();
    BY_READER.set(false);
    out
}

/// Page encodings of every column chunk of row group 0.
fn encodings(seg: &SegmentReader) -> BTreeSet<String> {
    let rg = seg.reader.metadata().row_group(0);
    rg.columns()
        .iter()
        .flat_map(|c| c.encodings().map(|e| format!("{e:?}")))
        .collect()
}

#[test]
fn chosen_rows_read_from_the_pages_equal_the_column_reader_in_every_encoding() {
    let tmp = crate::blocklist::tests::TempDir::new("gather");
    let dir = tmp.0.clone();
    let rows = records(12_000);
    let mut seen = BTreeSet::new();
    for (name, tweak) in VARIANTS {
        let path = dir.join(format!("{}.parquet", name.replace(' ', "-")));
        write_tweaked(&path, &rows, SMALL_PAGES, tweak).expect("write segment");
        let seg = SegmentReader::open(&path).expect("open");
        seen.extend(encodings(&seg));
        let truth: Vec<FlowRecord> = (0..rows.len()).filter_map(|k| rows.record(k)).collect();
        let all = by_reader(|| seg.read_rows(0, None)).expect("column reader");
        assert_eq!(all, truth, "{name}: the column reader's rows");
        assert_eq!(seg.read_rows(0, None).expect("all rows"), all, "{name}");
        let n = all.len();
        let mut masks: Vec<(&str, Vec<bool>)> =
            vec![("every row", vec![true; n]), ("no row", vec![false; n])];
        let mut m = vec![false; n];
        m[0] = true;
        m[n - 1] = true;
        masks.push(("first and last", m));
        let mut m = vec![false; n];
        (5..n).step_by(997).for_each(|k| m[k] = true);
        masks.push(("scattered", m));
        let mut m = vec![false; n];
        for b in (1024..n).step_by(1024) {
            m[b - 3..b + 3].fill(true);
        }
        m[2000..5100].fill(true);
        masks.push(("runs across pages", m));
        let nulls: Vec<bool> = all
            .iter()
            .map(|r| r.vlan.is_none() && r.attr == Attribution::default() && r.rule.is_none())
            .collect();
        assert!(
            nulls.iter().filter(|&&x| x).count() > n / 10,
            "{name}: null rows"
        );
        masks.push(("every optional null", nulls));
        let v6: Vec<bool> = all.iter().map(|r| r.src_ip.is_ipv6()).collect();
        assert!(
            v6.contains(&true) && v6.contains(&false),
            "{name}: both families"
        );
        masks.push(("IPv6", v6));
        let mut rng = Rng::new(7);
        for share in [0.01, 0.3] {
            masks.push(("random", (0..n).map(|_| rng.chance(share)).collect()));
        }
        for (what, keep) in &masks {
            let want = chosen(&all, keep);
            let slow = by_reader(|| seg.read_rows(0, Some(keep))).expect("column reader");
            assert_eq!(slow, want, "{name}, {what}: the column reader");
            let fast = seg.read_rows(0, Some(keep)).expect("direct");
            assert_eq!(fast, want, "{name}, {what}: from the pages");
            let ips = seg.read_ips(0).expect("addresses");
            assert_eq!(ips, by_reader(|| seg.read_ips(0)).expect("addresses"));
        }
        let window = seg
            .time_mask(0, Some(all[n / 3].time_start_ns), None, Some(&masks[4].1))
            .expect("time mask");
        let slow = by_reader(|| seg.time_mask(0, Some(all[n / 3].time_start_ns), None, None));
        let slow: Vec<bool> = slow
            .expect("time mask")
            .iter()
            .zip(&masks[4].1)
            .map(|(a, b)| *a && *b)
            .collect();
        assert_eq!(window, slow, "{name}: time mask");
    }
    // The variants exercised every encoding decoded here, and one that is not.
    for e in [
        "PLAIN",
        "RLE_DICTIONARY",
        "BYTE_STREAM_SPLIT",
        "DELTA_BINARY_PACKED",
        "DELTA_BYTE_ARRAY",
    ] {
        assert!(seen.contains(e), "no chunk of {e} among {seen:?}");
    }
}

/// Pages held in memory, served as a column chunk's page reader.
struct Pages(VecDeque<Page>);

impl Iterator for Pages {
    type Item = parquet::errors::Result<Page>;
    fn next(&mut self) -> Option<Self::Item> {
        self.0.pop_front().map(Ok)
    }
}

impl PageReader for Pages {
    fn get_next_page(&mut self) -> parquet::errors::Result<Option<Page>> {
        Ok(self.0.pop_front())
    }

    fn peek_next_page(&mut self) -> parquet::errors::Result<Option<PageMetadata>> {
        Ok(self.0.front().map(|p| {
            let rows = match p {
                Page::DataPage { num_values, .. } => Some(*num_values as usize),
                Page::DataPageV2 { num_rows, .. } => Some(*num_rows as usize),
                Page::DictionaryPage { .. } => None,
            };
            PageMetadata {
                num_rows: rows,
                num_levels: rows,
                is_dict: rows.is_none(),
            }
        }))
    }

    fn skip_next_page(&mut self) -> parquet::errors::Result<()> {
        self.0.pop_front();
        Ok(())
    }
}

/// A row group whose column `c` is the pages `pages` (the others absent).
struct Damaged<'a> {
    meta: &'a RowGroupMetaData,
    c: usize,
    pages: Vec<Page>,
}

impl RowGroupReader for Damaged<'_> {
    fn metadata(&self) -> &RowGroupMetaData {
        self.meta
    }

    fn num_columns(&self) -> usize {
        self.meta.num_columns()
    }

    fn get_column_page_reader(&self, i: usize) -> parquet::errors::Result<Box<dyn PageReader>> {
        match i == self.c {
            true => Ok(Box::new(Pages(self.pages.clone().into()))),
            false => Err(parquet::errors::ParquetError::General(format!(
                "column {i}"
            ))),
        }
    }

    fn get_column_bloom_filter(&self, _: usize) -> Option<&parquet::bloom_filter::Sbbf> {
        None
    }

    fn get_row_iter(
        &self,
        projection: Option<parquet::schema::types::Type>,
    ) -> parquet::errors::Result<parquet::record::reader::RowIter<'_>> {
        parquet::record::reader::RowIter::from_row_group(projection, self)
    }
}

/// The decompressed pages of column `c` of row group 0.
fn pages_of(seg: &SegmentReader, c: usize) -> Vec<Page> {
    let rg = seg.load(0, &[c]).expect("load");
    let mut r = rg.get_column_page_reader(c).expect("pages");
    std::iter::from_fn(|| r.get_next_page().expect("page")).collect()
}

/// A copy of `page` whose buffer is `f` of the original.
fn with_buf(page: &Page, f: impl FnOnce(&[u8]) -> Vec<u8>) -> Page {
    let mut p = page.clone();
    let (Page::DataPage { buf, .. }
    | Page::DataPageV2 { buf, .. }
    | Page::DictionaryPage { buf, .. }) = &mut p;
    *buf = f(buf).into();
    p
}

/// Every row of column `c` through `pages`; the error's text when it fails.
fn gather_all(seg: &SegmentReader, c: usize, pages: Vec<Page>) -> Result<usize, String> {
    let meta = seg.reader.metadata().row_group(0);
    let rows = meta.num_rows() as usize;
    let rg = Damaged { meta, c, pages };
    let mut n = 0;
    seg.gather(&rg, c, &[(0, rows)], |_| {
        n += 1;
        Ok(())
    })
    .map(|()| n)
    .map_err(|e| e.to_string())
}

/// Damaged pages (values cut short, a dictionary too small for its indices, bytes flipped)
/// are errors naming the column, never a panic, in every encoding decoded here.
#[test]
fn damaged_pages_are_errors_naming_the_column() {
    let tmp = crate::blocklist::tests::TempDir::new("gather-bad");
    let dir = tmp.0.clone();
    let rows = records(5_000);
    let mut rng = Rng::new(11);
    for (name, tweak) in [VARIANTS[0], VARIANTS[1], VARIANTS[2]] {
        let path = dir.join("bad.parquet");
        write_tweaked(&path, &rows, SMALL_PAGES, tweak).expect("write segment");
        let seg = SegmentReader::open(&path).expect("open");
        for c in 0..col::COUNT {
            let pages = pages_of(&seg, c);
            let column = column_name(c);
            let whole = gather_all(&seg, c, pages.clone());
            assert_eq!(whole, Ok(rows.len()), "{name}: {column} undamaged");
            let named = |what: &str, r: Result<usize, String>| {
                let e = r.expect_err(&format!("{name}: {column}: {what} must fail"));
                assert!(
                    e.contains(column) && e.contains(&*path.to_string_lossy()),
                    "{e}"
                );
            };
            for (k, p) in pages.iter().enumerate() {
                if matches!(p, Page::DictionaryPage { .. }) {
                    // One entry where there were several: indices past it.
                    let Page::DictionaryPage { num_values, .. } = p else {
                        continue;
                    };
                    if *num_values < 2 {
                        continue;
                    }
                    let mut short = pages.clone();
                    let descr = seg.reader.metadata().row_group(0).column(c).column_descr();
                    let first_len = match Width::of(descr.physical_type(), descr.type_length()) {
                        Some(Width::Fixed(w)) => w,
                        _ => {
                            let len = p.buffer()[..4].try_into().expect("a length");
                            4 + u32::from_le_bytes(len) as usize
                        }
                    };
                    short[k] = with_buf(p, |b| b[..first_len].to_vec());
                    if let Page::DictionaryPage { num_values, .. } = &mut short[k] {
                        *num_values = 1;
                    }
                    named("a one-entry dictionary", gather_all(&seg, c, short));
                    continue;
                }
                for cut in [1, 3, p.buffer().len() / 2] {
                    let mut short = pages.clone();
                    short[k] = with_buf(p, |b| b[..b.len().saturating_sub(cut)].to_vec());
                    named(
                        &format!("page {k} cut by {cut}"),
                        gather_all(&seg, c, short),
                    );
                }
                for _ in 0..20 {
                    let mut flipped = pages.clone();
                    flipped[k] = with_buf(p, |b| {
                        let mut b = b.to_vec();
                        if !b.is_empty() {
                            let at = rng.below(b.len() as u64) as usize;
                            b[at] ^= 1 << rng.below(8);
                        }
                        b
                    });
                    // Either an error or values (possibly wrong: pages carry no checksum of
                    // their own here); never a panic.
                    let _ = gather_all(&seg, c, flipped);
                }
            }
        }
    }
}
