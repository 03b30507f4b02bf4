//! A `sql` answer as text: an aligned table for a terminal, RFC 4180 CSV with a header line
//! (quoted as `export` quotes), or JSON Lines (one object per row, every column, NULL as
//! `null`). Values print as the engine displays them: times as RFC 3339 in UTC, binary columns
//! (the raw address and MAC forms of `flows_raw`) as hex.

use std::io::Write;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::json::writer::{LineDelimited, WriterBuilder};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::arrow::util::pretty::{
    pretty_format_batches_with_options, pretty_format_batches_with_schema,
};

use super::SqlError;
use crate::store::export::{csv_field, Format};

/// Writes an answer batch by batch; a table waits for the last batch to align its columns.
pub struct Writer<'a> {
    out: &'a mut dyn Write,
    format: Format,
    schema: SchemaRef,
    /// The table's batches, until the end.
    held: Vec<RecordBatch>,
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
                    self.held.push(batch.clone());
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

    /// Writes what is left (a table, a CSV header of an empty answer) and flushes; the rows
    /// of the answer.
    pub fn finish(mut self) -> Result<u64, SqlError> {
        match self.format {
            Format::Table if self.held.is_empty() => {
                let t = pretty_format_batches_with_schema(self.schema.clone(), &[])
                    .map_err(arrow_err)?;
                writeln!(self.out, "{t}").map_err(SqlError::Output)?;
            }
            Format::Table => {
                let options = FormatOptions::new().with_null("NULL");
                let t =
                    pretty_format_batches_with_options(&self.held, &options).map_err(arrow_err)?;
                writeln!(self.out, "{t}").map_err(SqlError::Output)?;
            }
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
                csv_field(&mut line, &cell);
            }
            line.push(b'\n');
            self.out.write_all(&line).map_err(SqlError::Output)?;
        }
        Ok(())
    }
}
