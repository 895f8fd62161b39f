//! tessera
fn main() {}
