//! Fuzzes cloud-config reading as a node does it: user data (gzip or not,
//! script, cloud-config with `$public_ipv4` substitution) and the
//! validator coreos-cloudinit's `--validate` mirrors. Invariants: no panic;
//! the validator reports errors for whatever the parser refuses.
#![no_main]

use keelson_cloudconfig::{validate_bytes, Metadata, UserData};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let md = Metadata {
        public_ipv4: Some("203.0.113.7".into()),
        private_ipv4: Some("10.0.0.7".into()),
        public_ipv6: None,
        private_ipv6: None,
    };
    let _ = UserData::parse(data, &md);
    let _ = UserData::parse(data, &Metadata::default());
    let report = validate_bytes(data);
    let _ = report.exit_code();
});
