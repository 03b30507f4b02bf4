//! Plain-old-data wire types (`aya::Pod`: `#[repr(C)]`, explicit padding, valid for any bit
//! pattern) to and from bytes: the one place that reinterprets them.

/// The bytes of `v`.
pub fn bytes_of<T: aya::Pod>(v: &T) -> &[u8] {
    // SAFETY: T is plain old data with no uninitialised padding; the slice borrows `v`.
    unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), size_of::<T>()) }
}

/// The `T` at the start of `bytes`, if they are long enough.
pub fn read<T: aya::Pod>(bytes: &[u8]) -> Option<T> {
    // SAFETY: length checked; T is plain old data valid for any bit pattern.
    (bytes.len() >= size_of::<T>())
        .then(|| unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) })
}

/// A `T` of all zeros.
pub fn zeroed<T: aya::Pod>() -> T {
    // SAFETY: a Pod type is valid as all zeros.
    unsafe { std::mem::zeroed() }
}
