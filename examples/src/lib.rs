//! Runnable examples for Keelson; each lives in `examples/examples/` and runs with
//! `cargo run -p keelson-examples --example NAME`.
