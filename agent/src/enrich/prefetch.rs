//! A hint to the CPU to start loading a cache line the join will read shortly, so that the
//! misses of independent lookups (the DNS pair, a name's text) overlap instead of queueing one
//! behind the other. A hint only: it never faults, and on other architectures it does nothing.

/// Starts loading the cache line holding `p` (and nothing else); `p` need not be valid.
#[inline(always)]
pub fn line<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        // SAFETY: SSE is part of the x86_64 baseline, and a prefetch never faults, whatever
        // the address.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(p.cast::<i8>()) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Starts loading every cache line of `value` (at most the first four).
#[inline(always)]
pub fn lines_of<T>(value: &T) {
    let p = (value as *const T).cast::<u8>();
    let n = std::mem::size_of::<T>().div_ceil(64).min(4);
    for k in 0..n {
        line(p.wrapping_add(k * 64));
    }
}
