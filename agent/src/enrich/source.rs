//! What the attribution files (subscribers, DHCP leases) share: numbered lines of text, and a
//! problem that names the file and line at fault.

use std::fmt;
use std::path::PathBuf;

use crate::blocklist::error::clipped;
use crate::store::fsutil::without_bom;

/// A line that is not UTF-8: the first bad byte and its 1-based column.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line is not valid UTF-8 (byte {byte:#04x} at column {column})")]
pub struct NotUtf8 {
    /// The first offending byte.
    pub byte: u8,
    /// 1-based byte column.
    pub column: usize,
}

/// The lines of a file with their 1-based numbers: split on `\n` (no phantom line after a
/// final one), a UTF-8 byte-order mark dropped from the first, a trailing `\r` from each.
pub fn numbered_lines(bytes: &[u8]) -> impl Iterator<Item = (u32, Result<&str, NotUtf8>)> {
    let body = without_bom(bytes);
    let body = body.strip_suffix(b"\n").unwrap_or(body);
    let empty = body.is_empty() && !bytes.ends_with(b"\n");
    body.split(|&b| b == b'\n')
        .filter(move |_| !empty)
        .enumerate()
        .map(|(i, raw)| {
            let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
            let text = std::str::from_utf8(raw).map_err(|e| {
                let at = e.valid_up_to();
                NotUtf8 {
                    byte: raw.get(at).copied().unwrap_or(0),
                    column: at + 1,
                }
            });
            (u32::try_from(i + 1).unwrap_or(u32::MAX), text)
        })
}

/// Why a file, or one of its lines, was not taken: displayed `FILE:LINE: reason`, or
/// `FILE: reason` for the file as a whole.
#[derive(Debug)]
pub struct FileProblem<E> {
    /// The file.
    pub path: PathBuf,
    /// 1-based line, when the problem is one line.
    pub line: Option<u32>,
    /// What is wrong.
    pub error: E,
}

impl<E: fmt::Display> fmt::Display for FileProblem<E> {
    /// The reason with its middle left out when long: it quotes the field it refuses, which
    /// may be megabytes (a file that is no subscribers or lease file).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let reason = clipped(self.error.to_string());
        match self.line {
            Some(line) => write!(f, "{}:{}: {reason}", self.path.display(), line),
            None => write!(f, "{}: {reason}", self.path.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(b: &[u8]) -> Vec<(u32, String)> {
        numbered_lines(b)
            .map(|(n, l)| (n, l.map_or_else(|e| e.to_string(), str::to_owned)))
            .collect()
    }

    #[test]
    fn lines_count_like_editors() {
        assert_eq!(lines(b""), []);
        assert_eq!(lines(b"\n"), [(1, String::new())]);
        assert_eq!(lines(b"a\r\nb"), [(1, "a".into()), (2, "b".into())]);
        assert_eq!(lines(b"\xef\xbb\xbfa\n"), [(1, "a".into())]);
        assert_eq!(
            lines(b"ok\nb\xffd\n"),
            [
                (1, "ok".into()),
                (
                    2,
                    "line is not valid UTF-8 (byte 0xff at column 2)".to_string()
                )
            ]
        );
    }

    #[test]
    fn problems_name_file_and_line() {
        let p = FileProblem {
            path: "subs.csv".into(),
            line: Some(3),
            error: "bad",
        };
        assert_eq!(p.to_string(), "subs.csv:3: bad");
        let p = FileProblem {
            path: "subs.csv".into(),
            line: None,
            error: "gone",
        };
        assert_eq!(p.to_string(), "subs.csv: gone");
    }
}
