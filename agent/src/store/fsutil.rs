//! Crash-safe file replacement: write a temporary name, fsync, rename, fsync the directory.

use std::fs::File;
use std::io::Write;
use std::path::Path;

/// Prefix of temporary files; any left by a crash are removed when the store opens.
pub const TMP_PREFIX: &str = ".tmp-";

/// Fsyncs a directory, so renames and deletions inside it are durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Replaces `dir/name` with `bytes` atomically and durably.
pub fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    write_atomic_parts(dir, name, &[bytes])
}

/// Replaces `dir/name` with the concatenation of `parts` atomically and durably: a temporary
/// file, fsync, rename, directory fsync.
pub fn write_atomic_parts(dir: &Path, name: &str, parts: &[&[u8]]) -> std::io::Result<()> {
    let tmp = dir.join(format!("{TMP_PREFIX}{name}"));
    let result = (|| {
        let mut f = std::io::BufWriter::new(File::create(&tmp)?);
        for p in parts {
            f.write_all(p)?;
        }
        let f = f.into_inner().map_err(|e| e.into_error())?;
        f.sync_all()?;
        std::fs::rename(&tmp, dir.join(name))?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Where a file's bytes stop being UTF-8, so the report can point at the damage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("byte offset {offset} (line {line}) is not UTF-8")]
pub struct NotUtf8 {
    /// 1-based line of the first invalid byte.
    pub line: usize,
    /// Offset of the first invalid byte from the start of the file.
    pub offset: usize,
}

/// `bytes` as text, or the line and offset of the first byte that is not UTF-8 (what
/// `read_to_string` reports only as "stream did not contain valid UTF-8").
pub fn utf8_text(bytes: Vec<u8>) -> Result<String, NotUtf8> {
    String::from_utf8(bytes).map_err(|e| {
        let offset = e.utf8_error().valid_up_to();
        let line = 1 + e.as_bytes()[..offset]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        NotUtf8 { line, offset }
    })
}

/// Whether `e` says the disk (or the user's quota on it) is full: ENOSPC or EDQUOT. That is
/// the store's condition, not a fault of the file being written, and passes when space returns.
pub fn is_disk_full(e: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    matches!(e.kind(), ErrorKind::StorageFull | ErrorKind::QuotaExceeded)
        || matches!(e.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT))
}

/// [`is_disk_full`] for an I/O error anywhere in `e`'s chain of sources (the Parquet writer
/// wraps the file's error in its own).
pub fn disk_full_in(e: &(dyn std::error::Error + 'static)) -> bool {
    std::iter::successors(Some(e), |e| e.source())
        .any(|e| e.downcast_ref::<std::io::Error>().is_some_and(is_disk_full))
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

/// Parses exactly `N` bytes of hex.
pub fn unhex<const N: usize>(s: &str) -> Option<[u8; N]> {
    let s = s.as_bytes();
    if s.len() != 2 * N {
        return None;
    }
    let nib = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = nib(s[2 * i])? << 4 | nib(s[2 * i + 1])?;
    }
    Some(out)
}

/// SHA-256 of a file, as hex.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    use sha2::Digest;
    use std::io::Read;
    let mut f = File::open(path)?;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_or_quota_is_told_from_other_errors_also_inside_another_error() {
        for errno in [libc::ENOSPC, libc::EDQUOT] {
            let e = std::io::Error::from_raw_os_error(errno);
            assert!(is_disk_full(&e), "{e}");
            let wrapped = parquet::errors::ParquetError::from(e);
            assert!(disk_full_in(&wrapped), "{wrapped}");
        }
        let other = std::io::Error::from_raw_os_error(libc::EIO);
        assert!(!is_disk_full(&other));
        assert!(!disk_full_in(&parquet::errors::ParquetError::from(other)));
    }

    #[test]
    fn the_first_byte_not_utf8_is_found_by_line_and_offset() {
        assert_eq!(utf8_text(b"a\nb".to_vec()), Ok("a\nb".to_owned()));
        let mut bytes = b"{\"a\":1}\n{\"b\":\"x".to_vec();
        bytes.push(0xff);
        bytes.extend_from_slice(b"\"}\n");
        assert_eq!(
            utf8_text(bytes),
            Err(NotUtf8 {
                line: 2,
                offset: 15
            })
        );
        // A multi-byte sequence cut short points at its first byte.
        assert_eq!(
            utf8_text(vec![b'\n', b'\n', 0xc3]),
            Err(NotUtf8 { line: 3, offset: 2 })
        );
    }
}
