//! Fuzzes the v2 API's request decoding: the query and form body parser,
//! the key parameters (`prevValue`, `prevIndex`, `ttl`, `wait`, ...) for
//! every method. Invariant: no panic, whatever the bytes; malformed input
//! is an error value (the endpoint's 400), never a crash.
#![no_main]

use keelson_kv::server::{Form, KeyParams};
use libfuzzer_sys::fuzz_target;

const METHODS: [&str; 5] = ["GET", "PUT", "POST", "DELETE", "HEAD"];

fuzz_target!(|data: &[u8]| {
    // First byte: method; then `query \0 body`.
    let Some((&m, rest)) = data.split_first() else {
        return;
    };
    let method = METHODS[m as usize % METHODS.len()];
    let (query, body) = match rest.iter().position(|b| *b == 0) {
        Some(i) => (&rest[..i], Some(&rest[i + 1..])),
        None => (rest, None),
    };
    let Ok(query) = std::str::from_utf8(query) else {
        return;
    };
    if let Ok(form) = Form::parse(query, body) {
        let _ = KeyParams::parse(&form, method);
    }
});
