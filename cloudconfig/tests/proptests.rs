//! Property tests: arbitrary input never panics; drop-in values survive
//! systemd's unquoting; substitution and YAML scalars round-trip.

use keelson_cloudconfig::{
    drop_in, plan, substitute, validate, validate_bytes, CloudConfig, EnvVar, Metadata, NoFiles,
    UserData,
};
use keelson_unitfile::exec::parse_environment_with;
use keelson_unitfile::{SpecifierContext, UnitName};
use proptest::prelude::*;

/// Text that looks like cloud-config: YAML punctuation, indentation,
/// known keys and tokens, so that the parser's deeper paths are reached.
fn yamlish() -> impl Strategy<Value = String> {
    let atoms = prop::sample::select(vec![
        "#cloud-config\n",
        "coreos:\n",
        "  etcd2:\n",
        "    name: x\n",
        "  units:\n",
        "    - name: a.service\n",
        "      command: start\n",
        "      enable: yes\n",
        "      content: |\n",
        "        [Unit]\n",
        "write_files:\n",
        "  - path: /etc/x\n",
        "    permissions: 0644\n",
        "    encoding: gzip+base64\n",
        "    content: H4sI\n",
        "  update:\n",
        "    reboot-strategy: off\n",
        "- ",
        ": ",
        "\t",
        " ",
        "\n",
        "&a ",
        "*a ",
        "!!binary ",
        "[",
        "]",
        "{",
        "}",
        "\"",
        "'",
        "$public_ipv4",
        "\\$private_ipv4",
        "#",
        ">",
        "|",
        "?",
        "%",
        "---\n",
        "...\n",
    ]);
    prop::collection::vec(atoms, 0..60).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn nothing_panics_on_yamlish_text(text in yamlish()) {
        let report = validate(&text);
        // Every finding has a line and the exit code follows the entries.
        prop_assert_eq!(report.exit_code(), u8::from(!report.is_empty()));
        for e in report.entries() {
            prop_assert!(e.line >= 1);
        }
        let md = Metadata::ipv4("10.0.0.1");
        if let Ok(cfg) = CloudConfig::parse_with(&text, &md) {
            let _ = plan(&cfg, &md, &NoFiles);
        }
        let _ = UserData::parse(text.as_bytes(), &Metadata::default());
    }

    #[test]
    fn nothing_panics_on_arbitrary_bytes(data in prop::collection::vec(any::<u8>(), 0..400)) {
        let _ = validate_bytes(&data);
        let _ = UserData::parse(&data, &Metadata::ipv4("10.0.0.1"));
        let mut with_header = b"#cloud-config\n".to_vec();
        with_header.extend_from_slice(&data);
        let _ = validate_bytes(&with_header);
        if let Ok(text) = std::str::from_utf8(&with_header) {
            let _ = CloudConfig::parse(text);
        }
    }

    #[test]
    fn nothing_panics_on_arbitrary_strings(text in "\\PC{0,200}") {
        let with_header = format!("#cloud-config\n{text}");
        let _ = validate(&with_header);
        let _ = CloudConfig::parse(&with_header);
        let _ = substitute(&with_header, &Metadata::default());
    }

    /// A drop-in line, unquoted the way systemd does (specifiers
    /// included), gives back exactly the value.
    #[test]
    fn drop_in_values_round_trip_through_systemd_unquoting(
        value in "[ -~\\n]{0,60}",
    ) {
        let line = drop_in(&[EnvVar::new("FLEET_METADATA", value.clone())]);
        let assignment = line
            .strip_prefix("[Service]\nEnvironment=")
            .and_then(|l| l.strip_suffix('\n'))
            .expect("one Environment= line");
        let ctx = SpecifierContext::system(UnitName::parse("fleet.service").unwrap());
        let parsed = parse_environment_with(assignment, &ctx).unwrap();
        prop_assert_eq!(parsed, vec![("FLEET_METADATA".to_string(), value)]);
    }

    /// A string field gets the scalar's text back, whatever YAML 1.1 would
    /// resolve it to, when written plain or quoted.
    #[test]
    fn string_fields_keep_scalar_text(value in "[A-Za-z0-9][A-Za-z0-9._=/-]{0,30}") {
        for form in [value.clone(), format!("'{value}'"), format!("\"{value}\"")] {
            let text = format!("#cloud-config\ncoreos:\n  fleet:\n    metadata: {form}\n");
            let cfg = CloudConfig::parse(&text).unwrap();
            prop_assert_eq!(cfg.coreos.fleet.metadata.as_deref(), Some(value.as_str()));
        }
    }

    /// Substitution puts the value wherever the token was, and an escaped
    /// token comes back literal.
    #[test]
    fn substitution_round_trip(prefix in "[a-z:/]{0,10}", suffix in "[a-z:/0-9]{0,10}", ip in "[0-9]{1,3}(\\.[0-9]{1,3}){3}") {
        let md = Metadata::ipv4(&ip);
        let text = format!("a: {prefix}$public_ipv4{suffix}\nb: \\$private_ipv4\n");
        let out = substitute(&text, &md).unwrap();
        prop_assert_eq!(out, format!("a: {prefix}{ip}{suffix}\nb: $private_ipv4\n"));
    }
}
