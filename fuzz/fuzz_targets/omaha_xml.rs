//! Fuzzes the Omaha protocol's XML decoding, both directions a server and
//! a client read. Invariants: no panic; whatever decodes encodes, and the
//! encoding decodes to the same value.
#![no_main]

use keelson_updater::omaha::{Request, Response};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(req) = Request::from_xml(text) {
        if let Ok(xml) = req.to_xml() {
            let again = Request::from_xml(&xml).expect("our own request XML decodes");
            assert_eq!(again, req);
        }
    }
    if let Ok(resp) = Response::from_xml(text) {
        if let Ok(xml) = resp.to_xml() {
            let again = Response::from_xml(&xml).expect("our own response XML decodes");
            assert_eq!(again, resp);
        }
    }
});
