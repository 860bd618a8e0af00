//! Fuzzes the write-ahead log's record scan, the function recovery trusts
//! to tell a torn tail from corruption. Invariants: no panic; records come
//! in increasing offsets inside the buffer; every record re-encodes to the
//! exact bytes it was read from (nothing is decoded that was not written);
//! a buffer of only valid records scans clean.
#![no_main]

use keelson_kv::wal::record::{scan, ScanEnd};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for is_last in [true, false] {
        let s = scan(data, is_last);
        let mut end = 0u64;
        for (off, rec) in &s.records {
            assert!(*off >= end, "offsets go backwards");
            let bytes = rec.encode();
            let start = *off as usize;
            assert_eq!(
                data.get(start..start + bytes.len()),
                Some(bytes.as_slice()),
                "record at {off} does not re-encode to its bytes"
            );
            end = *off + bytes.len() as u64;
        }
        if let ScanEnd::Torn { offset, .. } | ScanEnd::Corrupt { offset, .. } = &s.end {
            assert!(*offset <= data.len() as u64);
        }
        // Re-encoding the records alone must scan clean.
        let mut clean = Vec::new();
        for (_, rec) in &s.records {
            rec.encode_into(&mut clean);
        }
        let again = scan(&clean, is_last);
        assert!(matches!(again.end, ScanEnd::Clean), "{:?}", again.end);
        assert_eq!(again.records.len(), s.records.len());
    }
});
