//! Sizes in bytes as operators write them: one grammar for every flag and config key that
//! takes one (`--ringbuf-bytes`, `--segment-max-bytes`, `--ship-multipart-bytes`,
//! `sql --memory-limit`).
//!
//! A number of bytes (`268435456`), or a number and a binary unit: `256MiB`, `1 GiB`, `64K`
//! (`K`, `M`, `G`, `T` are the same powers of 1,024 as `KiB`, `MiB`, `GiB`, `TiB`). Decimal
//! units (`MB`) are refused rather than guessed at: a segment or ring size off by 5% is not
//! what was asked.

/// The accepted forms, for `--help` texts.
pub const FORMS: &str =
    "a number of bytes, or with a unit: 64KiB, 256MiB, 1GiB (K, M, G, T: the same)";

/// Parses `s` ([`FORMS`]).
pub fn parse(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let digits = t.bytes().take_while(u8::is_ascii_digit).count();
    let (number, unit) = t.split_at(digits);
    if number.is_empty() {
        return Err(format!("{s:?} is not a size ({FORMS})"));
    }
    let shift = match unit.trim_start() {
        "" | "B" => 0,
        "K" | "KiB" => 10,
        "M" | "MiB" => 20,
        "G" | "GiB" => 30,
        "T" | "TiB" => 40,
        u @ ("kB" | "KB" | "MB" | "GB" | "TB") => {
            let binary = format!("{}iB", u[..1].to_ascii_uppercase());
            return Err(format!(
                "{s:?}: {u} is a decimal unit; write {binary} (powers of 1,024) or bytes"
            ));
        }
        _ => return Err(format!("{s:?} is not a size ({FORMS})")),
    };
    number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(1 << shift))
        .ok_or_else(|| format!("{s:?} is larger than a size can be"))
}

/// [`parse`] for a `u32` value.
pub fn parse_u32(s: &str) -> Result<u32, String> {
    u32::try_from(parse(s)?).map_err(|_| format!("{s:?} is larger than {} bytes", u32::MAX))
}

/// [`parse`] for a `usize` value.
pub fn parse_usize(s: &str) -> Result<usize, String> {
    usize::try_from(parse(s)?).map_err(|_| format!("{s:?} is larger than {} bytes", usize::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_binary_units_parse_and_the_rest_is_refused_by_name() {
        for (text, want) in [
            ("4096", 4096),
            (" 268435456 ", 256 << 20),
            ("256MiB", 256 << 20),
            ("256M", 256 << 20),
            ("1 GiB", 1 << 30),
            ("64K", 64 << 10),
            ("2T", 2 << 40),
            ("10B", 10),
        ] {
            assert_eq!(parse(text), Ok(want), "{text}");
        }
        for (text, says) in [
            ("", "not a size"),
            ("MiB", "not a size"),
            ("1.5GiB", "not a size"),
            ("-1", "not a size"),
            ("256MB", "decimal unit; write MiB"),
            ("1kB", "decimal unit; write KiB"),
            ("99999999999T", "larger than"),
            ("1 GiB extra", "not a size"),
        ] {
            let e = parse(text).expect_err(text);
            assert!(e.contains(says), "{text}: {e}");
        }
        assert!(parse_u32("4GiB").is_err());
        assert_eq!(parse_u32("1GiB"), Ok(1 << 30));
    }
}
