//! The book's validator cases (cloud-config.md §7.3) as test vectors: each
//! must produce exactly the documented line, in coreos-cloudinit's format.
//! The YAML error lines were checked against PyYAML (YAML 1.1, as the
//! reference did); the messages are libyaml's, which go-yaml reported.

use std::path::Path;

use keelson_cloudconfig::{validate, Kind};

fn data(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// (file, the exact report, a word the Keelson hint must contain)
const CASES: &[(&str, &str, &str)] = &[
    // N1: E1 as printed, `enable: true` one space too deep.
    (
        "n1-e1-as-printed.yaml",
        "line 38: error: mapping values are not allowed in this context\n",
        "indented 7 spaces but line 37 above it 6",
    ),
    // N2: E3 as printed, `discovery:` five spaces, the rest four.
    (
        "n2-e3-as-printed.yaml",
        "line 7: error: did not find expected key\n",
        "indented 4 spaces but line 5 above it 5",
    ),
    // N3: E4 master as printed, `fleet:` three spaces.
    (
        "n3-e4-master-as-printed.yaml",
        "line 10: error: did not find expected key\n",
        "indented 3 spaces but line 9 above it 4",
    ),
    // N4: E8 as printed, header without '#'.
    (
        "n4-e8-as-printed.yaml",
        "line 1: error: must be \"#cloud-config\" or begin with \"#!\"\n",
        "leading '#' is missing",
    ),
    // N5: chapter 10's toolbox snippet with `-write_files:`.
    (
        "n5-toolbox.yaml",
        "line 2: warning: unrecognized key \"_write_files\"\n",
        "did you mean \"write_files\"? a '-' at the start of a key is part of the key",
    ),
    // E2 node 3 as printed: one extra space before the first `-`.
    (
        "n6-e2-node3-as-printed.yaml",
        "line 18: error: did not find expected '-' indicator\n",
        "does not continue the list",
    ),
    // The hosted validator's case: "- is missing in line 14".
    (
        "missing-dash.yaml",
        "line 14: error: did not find expected '-' indicator\n",
        "start a new item with '- '",
    ),
    // "we have | missing in the content line".
    (
        "missing-pipe.yaml",
        "line 41: error: did not find expected key\n",
        "'|' missing after `content:` on line 39",
    ),
];

#[test]
fn book_cases_produce_exactly_the_documented_output() {
    for (file, expected, hint) in CASES {
        let report = validate(&data(file));
        assert_eq!(&report.to_string(), expected, "{file}");
        assert_eq!(report.exit_code(), 1, "{file}");
        if !hint.is_empty() {
            let got = report.entries()[0].hint.clone().unwrap_or_default();
            assert!(got.contains(hint), "{file}: hint {got:?} lacks {hint:?}");
        }
    }
}

#[test]
fn yaml_errors_carry_the_parsers_column() {
    // PyYAML: N1 at column 14, N2 at 5, N3 at 4.
    for (file, column) in [
        ("n1-e1-as-printed.yaml", 14),
        ("n2-e3-as-printed.yaml", 5),
        ("n3-e4-master-as-printed.yaml", 4),
    ] {
        assert_eq!(
            validate(&data(file)).entries()[0].column,
            Some(column),
            "{file}"
        );
    }
}

#[test]
fn the_corrected_files_are_valid() {
    for file in ["e1.yaml", "e2.yaml", "e3.yaml", "e4-master.yaml"] {
        let report = validate(&data(file));
        assert!(report.is_empty(), "{file}: {report}");
        assert_eq!(report.exit_code(), 0);
    }
}

#[test]
fn tabs_are_a_syntax_error_with_a_hint() {
    let report = validate("#cloud-config\ncoreos:\n\tetcd2:\n    name: x\n");
    let e = &report.entries()[0];
    assert_eq!(e.kind, Kind::Error);
    assert_eq!(e.line, 3);
    assert_eq!(e.message, "found character that cannot start any token");
    assert!(e.hint.as_deref().unwrap_or("").contains("tab"), "{e:?}");
}

#[test]
fn gzip_compressed_user_data_is_validated_after_decompression() {
    use std::io::Write;
    let mut gz = flate2_like::encoder();
    gz.write_all(data("n1-e1-as-printed.yaml").as_bytes())
        .unwrap();
    let bytes = gz.finish().unwrap();
    assert_eq!(
        keelson_cloudconfig::validate_bytes(&bytes).to_string(),
        "line 38: error: mapping values are not allowed in this context\n"
    );
    assert_eq!(
        keelson_cloudconfig::validate_bytes(&[0xff, 0xfe, 0x00]).to_string(),
        "line 1: error: user data is not UTF-8 text\n"
    );
}

/// gzip through the same crate the library uses, kept out of the public API.
mod flate2_like {
    pub fn encoder() -> flate2::write::GzEncoder<Vec<u8>> {
        flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default())
    }
}
