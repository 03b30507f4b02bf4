//! Memory helpers the BPF backend needs spelled out.

/// An all-zero `T`, written as volatile `u64` stores. A plain zero initialiser is merged by
/// LLVM into a `memset` that the BPF backend emits as an out-of-line byte loop: two of those
/// cost more than the rest of the parser.
#[inline(always)]
pub fn zeroed<T: Copy>() -> T {
    let mut v = core::mem::MaybeUninit::<T>::uninit();
    // SAFETY: `v` is a valid, 8-aligned place for a `T`.
    unsafe { clear(v.as_mut_ptr()) };
    // SAFETY: every byte was written; T is plain old data, valid all-zero.
    unsafe { v.assume_init() }
}

/// Writes an all-zero `T` in place (a map value, such as a per-CPU scratch slot), as
/// [`zeroed`] does.
///
/// # Safety
/// `dst` is valid for writes of a `T` and 8-aligned.
#[inline(always)]
pub unsafe fn clear<T: Copy>(dst: *mut T) {
    const { assert!(core::mem::size_of::<T>().is_multiple_of(8) && core::mem::align_of::<T>() == 8) };
    let words = dst as *mut u64;
    let mut i = 0;
    while i < core::mem::size_of::<T>() / 8 {
        // SAFETY: in bounds of `*dst`, upheld by the caller.
        unsafe { words.add(i).write_volatile(0) };
        i += 1;
    }
}
