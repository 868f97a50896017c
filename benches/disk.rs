//! Placeholder until the disk bench is written.
fn main() {}
