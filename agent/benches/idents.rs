//! Attribution lookup figures (written below).
fn main() {}
