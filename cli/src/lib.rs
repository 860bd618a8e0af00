//! Flag parsing, wiring and output formatting for Keelson's binaries. Logic
//! that another program could want lives in the library crates.
pub mod unit;
