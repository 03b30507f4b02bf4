//! The store's one variable-length integer: unsigned LEB128 (7 bits per byte, low bits first,
//! the high bit set on every byte but the last), as the journal's records, the segment tail's
//! address index and page table, and Parquet's RLE run headers all write it.
//!
//! Generic over the width, so the journal's `u64` fields, the index's `u128` addresses and
//! Parquet's `u32` run headers share one encoder and one decoder; a value wider than the
//! width asked for is an error, never silently truncated.

use std::ops::{BitOr, Shl, Shr};

/// An unsigned integer a varint can hold.
pub trait Word:
    Copy + Ord + From<u8> + Shl<u32, Output = Self> + Shr<u32, Output = Self> + BitOr<Output = Self>
{
    /// Bits of the type.
    const BITS: u32;
    /// The low 8 bits.
    fn low_byte(self) -> u8;
}

macro_rules! word {
    ($($t:ty),*) => {$(
        impl Word for $t {
            const BITS: u32 = <$t>::BITS;
            #[inline]
            fn low_byte(self) -> u8 {
                self as u8
            }
        }
    )*};
}
word!(u32, u64, u128);

/// Why a varint does not decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VarintError {
    /// The bytes end before the last byte of the varint.
    #[error("cut short")]
    Cut,
    /// The value does not fit the width asked for.
    #[error("value wider than {0} bits")]
    Overflow(u32),
}

/// Appends `v` as a varint.
#[inline]
pub fn put<T: Word>(out: &mut Vec<u8>, mut v: T) {
    let high = T::from(0x80);
    while v >= high {
        out.push(v.low_byte() | 0x80);
        v = v >> 7;
    }
    out.push(v.low_byte());
}

/// Decodes a varint at the start of `buf`: the value and the bytes it took.
#[inline]
pub fn get<T: Word>(buf: &[u8]) -> Result<(T, usize), VarintError> {
    // Most values in a record fit one byte (lengths, ifindex, small counters).
    match buf.first() {
        Some(&b) if b < 0x80 => return Ok((T::from(b), 1)),
        None => return Err(VarintError::Cut),
        Some(_) => {}
    }
    let mut v = T::from(0);
    let mut shift = 0;
    for (i, &b) in buf.iter().enumerate() {
        let part = T::from(b & 0x7f);
        // Only the byte that reaches the top of `T` needs a check: its bits at or past
        // `T::BITS` must be zero (and there is no byte after it).
        if shift > T::BITS - 7 && (shift >= T::BITS || part >> (T::BITS - shift) != T::from(0)) {
            return Err(VarintError::Overflow(T::BITS));
        }
        v = v | part << shift;
        if b < 0x80 {
            return Ok((v, i + 1));
        }
        shift += 7;
    }
    Err(VarintError::Cut)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip<T: Word + std::fmt::Debug>(v: T) -> usize {
        let mut out = Vec::new();
        put(&mut out, v);
        out.push(0xaa); // bytes after the varint are not taken
        assert_eq!(get::<T>(&out), Ok((v, out.len() - 1)), "{v:?}");
        for cut in 0..out.len() - 1 {
            assert_eq!(
                get::<T>(&out[..cut]),
                Err(VarintError::Cut),
                "{v:?} cut at {cut}"
            );
        }
        out.len() - 1
    }

    #[test]
    fn values_round_trip_at_every_width_and_cuts_are_refused() {
        for shift in 0..64 {
            for v in [1u64 << shift, (1u64 << shift) - 1, (1u64 << shift) + 1] {
                round_trip(v);
                round_trip(u128::from(v));
            }
        }
        assert_eq!(round_trip(0u64), 1);
        assert_eq!(round_trip(127u64), 1);
        assert_eq!(round_trip(128u64), 2);
        assert_eq!(round_trip(u64::MAX), 10);
        assert_eq!(round_trip(u128::MAX), 19);
        round_trip(u32::MAX);
    }

    #[test]
    fn values_wider_than_the_type_are_refused() {
        let mut out = Vec::new();
        put(&mut out, u128::from(u64::MAX) + 1);
        assert_eq!(get::<u64>(&out), Err(VarintError::Overflow(64)));
        out.clear();
        put(&mut out, u64::from(u32::MAX) + 1);
        assert_eq!(get::<u32>(&out), Err(VarintError::Overflow(32)));
        // Eleven continuation bytes: longer than any u64.
        assert_eq!(get::<u64>(&[0x80; 11]), Err(VarintError::Overflow(64)));
        // A redundant zero group past the width is refused too, not read as the same value.
        assert!(
            get::<u64>(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x81, 0]).is_err()
        );
    }
}
