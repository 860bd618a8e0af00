//! Test vectors V1–V20 of reference `unitfile.md` §10.3: fleet mode must give
//! the go-systemd column, systemd mode the systemd column.

use keelson_unitfile::{Mode, ParseErrorKind, Unit, WarningKind};

fn opts(text: &str, mode: Mode) -> Vec<(String, String, String)> {
    let unit = Unit::parse(text, mode, None).unwrap_or_else(|e| panic!("{mode}: {e}"));
    assert_eq!(unit.to_lossless(), text, "{mode}: lossless");
    unit.options()
        .iter()
        .map(|o| (o.section.clone(), o.name.clone(), o.value.clone()))
        .collect()
}

fn o(s: &str, n: &str, v: &str) -> (String, String, String) {
    (s.into(), n.into(), v.into())
}

fn err(text: &str, mode: Mode) -> keelson_unitfile::ParseError {
    match Unit::parse(text, mode, Some("v.service")) {
        Ok(u) => panic!("{mode}: expected an error, got {:?}", u.options()),
        Err(e) => e,
    }
}

const V1: &str = "[Section B]\nKeyTwo=value 2 \\\n       value 2 continued\n\n[Section C]\nKeyThree=value 3\\\n# this line is ignored\n; this line is ignored too\n       value 3 continued\n";

#[test]
fn v01_worked_example() {
    let e = err(V1, Mode::Fleet);
    assert!(
        matches!(e.kind(), ParseErrorKind::MissingEquals { name } if name == "value 3 continued")
    );
    assert_eq!(
        e.kind().go_systemd_message().as_deref(),
        Some("unexpected newline encountered while parsing option name")
    );
    assert_eq!((e.line(), e.column()), (9, 8));
    assert_eq!(
        opts(V1, Mode::Systemd),
        [
            o(
                "Section B",
                "KeyTwo",
                &format!("value 2{}value 2 continued", " ".repeat(9))
            ),
            o(
                "Section C",
                "KeyThree",
                &format!("value 3{}value 3 continued", " ".repeat(8))
            ),
        ]
    );
}

#[test]
fn v02_backslash_then_spaces_does_not_continue() {
    let t = "[S]\nK=foo \\  \nL=bar\n";
    let want = [o("S", "K", "foo \\"), o("S", "L", "bar")];
    assert_eq!(opts(t, Mode::Fleet), want);
    assert_eq!(opts(t, Mode::Systemd), want);
}

#[test]
fn v03_blank_line_ends_a_continuation() {
    let t = "[S]\nK=foo \\\n\nL=bar\n";
    assert_eq!(
        opts(t, Mode::Fleet),
        [o("S", "K", "foo \\\n"), o("S", "L", "bar")]
    );
    assert_eq!(
        opts(t, Mode::Systemd),
        [o("S", "K", "foo"), o("S", "L", "bar")]
    );
}

#[test]
fn v04_continuation_at_end_of_file() {
    let t = "[S]\nK=foo \\";
    assert_eq!(opts(t, Mode::Fleet), [o("S", "K", "foo \\")]);
    assert_eq!(opts(t, Mode::Systemd), [o("S", "K", "foo")]);
    // With the final LF, go-systemd appends the LF before finding the end.
    let t = "[S]\nK=foo \\\n";
    assert_eq!(opts(t, Mode::Fleet), [o("S", "K", "foo \\\n")]);
    assert_eq!(opts(t, Mode::Systemd), [o("S", "K", "foo")]);
}

#[test]
fn v05_assignment_before_first_section() {
    let t = "Foo=bar\n[S]\nK=v\n";
    assert_eq!(opts(t, Mode::Fleet), [o("S", "K", "v")]);
    let unit = Unit::parse(t, Mode::Systemd, None).unwrap();
    assert_eq!(unit.options().len(), 1);
    assert_eq!(unit.warnings().len(), 1);
    assert_eq!(
        unit.warnings()[0].kind,
        WarningKind::AssignmentOutsideSection
    );
    assert_eq!(unit.warnings()[0].line, 1);
}

#[test]
fn v06_line_without_equals() {
    let t = "[S]\nJustAWord\nK=v\n";
    let e = err(t, Mode::Fleet);
    assert!(matches!(e.kind(), ParseErrorKind::MissingEquals { .. }));
    assert_eq!(e.to_string(), "v.service:2:1: missing `=` after option name \"JustAWord\": expected `Name=Value` on one line (go-systemd refuses the whole file)");
    let unit = Unit::parse(t, Mode::Systemd, None).unwrap();
    assert_eq!(unit.options().len(), 1);
    assert_eq!(unit.warnings()[0].kind, WarningKind::MissingEquals);
    assert_eq!(
        unit.warnings()[0].to_string(),
        "2:1: Missing '=', ignoring line."
    );
}

#[test]
fn v07_whitespace_around_key_and_value() {
    let t = "[S]\n  Key  =   value with  inner   spaces   \n";
    let want = [o("S", "Key", "value with  inner   spaces")];
    assert_eq!(opts(t, Mode::Fleet), want);
    assert_eq!(opts(t, Mode::Systemd), want);
    let unit = Unit::parse(t, Mode::Fleet, None).unwrap();
    assert_eq!((unit.options()[0].line, unit.options()[0].column), (2, 3));
}

#[test]
fn v08_text_after_section_header() {
    let e = err("[S] trailing\n", Mode::Fleet);
    assert!(
        matches!(e.kind(), ParseErrorKind::GarbageAfterSection { garbage } if garbage == "trailing")
    );
    assert_eq!(
        e.kind().go_systemd_message().as_deref(),
        Some("found garbage after section name : [116 114 97 105 108 105 110 103]")
    );
    assert_eq!((e.line(), e.column()), (1, 5));
    let e = err("[S] trailing\n", Mode::Systemd);
    assert!(matches!(
        e.kind(),
        ParseErrorKind::InvalidSectionHeader { .. }
    ));
}

#[test]
fn v09_section_name_across_lines() {
    let t = "[S\nK=v\n[T]\nL=w\n";
    assert_eq!(opts(t, Mode::Fleet), [o("S\nK=v\n[T", "L", "w")]);
    let unit = Unit::parse(t, Mode::Fleet, None).unwrap();
    assert_eq!(unit.normalized(), "[S\nK=v\n[T]\nL=w\n");
    let e = err(t, Mode::Systemd);
    assert!(matches!(e.kind(), ParseErrorKind::InvalidSectionHeader { header } if header == "[S"));
    assert_eq!((e.line(), e.column()), (1, 1));
}

#[test]
fn v10_comment_ending_in_backslash() {
    let t = "[Service]\n# comment ending in backslash \\\nExecStart=/bin/true\n";
    assert_eq!(opts(t, Mode::Fleet), []);
    assert_eq!(
        opts(t, Mode::Systemd),
        [o("Service", "ExecStart", "/bin/true")]
    );
}

#[test]
fn v11_crlf() {
    let t = "[Unit]\r\nDescription=a\r\n\r\n[Service]\r\nExecStart=/bin/true\r\n";
    let want = [
        o("Unit", "Description", "a"),
        o("Service", "ExecStart", "/bin/true"),
    ];
    assert_eq!(opts(t, Mode::Fleet), want);
    assert_eq!(opts(t, Mode::Systemd), want);
    let lf = Unit::parse(t.replace("\r\n", "\n"), Mode::Fleet, None).unwrap();
    assert_eq!(Unit::parse(t, Mode::Fleet, None).unwrap().hash(), lf.hash());
}

#[test]
fn v12_empty_assignment() {
    let t = "[Service]\nExecStart=\nExecStart=/bin/true\n";
    assert_eq!(
        opts(t, Mode::Fleet),
        [
            o("Service", "ExecStart", ""),
            o("Service", "ExecStart", "/bin/true")
        ]
    );
    let fleet = Unit::parse(t, Mode::Fleet, None).unwrap();
    assert_eq!(
        fleet.normalized(),
        "[Service]\nExecStart=\nExecStart=/bin/true\n"
    );
    let systemd = Unit::parse(t, Mode::Systemd, None).unwrap();
    assert_eq!(systemd.values("Service", "ExecStart"), ["/bin/true"]);
    assert_eq!(systemd.effective_options().len(), 1);
}

#[test]
fn v13_interleaved_sections() {
    let t = "[Unit]\nDescription=a\n[Service]\nExecStart=/bin/true\n[Unit]\nAfter=b.service\n";
    let want = "[Unit]\nDescription=a\nAfter=b.service\n\n[Service]\nExecStart=/bin/true\n";
    for mode in [Mode::Fleet, Mode::Systemd] {
        let unit = Unit::parse(t, mode, None).unwrap();
        assert_eq!(unit.options()[2].name, "After", "{mode}: file order kept");
        assert_eq!(unit.normalized(), want, "{mode}");
    }
}

#[test]
fn v14_indented_header() {
    let t = " [Socket]\nListenStream=2375\n";
    for mode in [Mode::Fleet, Mode::Systemd] {
        assert_eq!(opts(t, mode), [o("Socket", "ListenStream", "2375")]);
    }
}

#[test]
fn v15_comments_only_at_line_start() {
    let t = "[S]\n; semicolon comment\nK=v # not a comment\n";
    for mode in [Mode::Fleet, Mode::Systemd] {
        assert_eq!(opts(t, mode), [o("S", "K", "v # not a comment")]);
    }
}

#[test]
fn v16_no_final_newline() {
    let t = "[S]\nK=v";
    for mode in [Mode::Fleet, Mode::Systemd] {
        assert_eq!(opts(t, mode), [o("S", "K", "v")]);
    }
}

#[test]
fn v17_quoted_environment_is_raw() {
    // The parser keeps the raw value in both modes; splitting it into `A`
    // and `D` is systemd's interpretation of Environment= (exec module).
    let t = "[Service]\nEnvironment=\"A=b c\" D=e\n";
    for mode in [Mode::Fleet, Mode::Systemd] {
        assert_eq!(
            opts(t, mode),
            [o("Service", "Environment", "\"A=b c\" D=e")]
        );
    }
}

#[test]
fn v18_empty_section_vanishes() {
    let t = "[Unit]\n[Install]\nWantedBy=multi-user.target\n";
    for mode in [Mode::Fleet, Mode::Systemd] {
        let unit = Unit::parse(t, mode, None).unwrap();
        assert_eq!(unit.normalized(), "[Install]\nWantedBy=multi-user.target\n");
    }
}

#[test]
fn v19_line_length() {
    // 2048-byte line (K= + 2046) as the first option: refused in fleet mode.
    let t = format!("[S]\nK={}\n", "x".repeat(2046));
    let e = err(&t, Mode::Fleet);
    assert!(matches!(
        e.kind(),
        ParseErrorKind::FleetLineTooLong { length: 2048 }
    ));
    assert_eq!(
        e.kind().go_systemd_message().as_deref(),
        Some("line too long (max 2048 bytes)")
    );
    assert_eq!((e.line(), e.column()), (2, 1));
    assert_eq!(opts(&t, Mode::Systemd).len(), 1);
    // 2047 bytes: accepted.
    let t = format!("[S]\nK={}\n", "x".repeat(2045));
    assert_eq!(opts(&t, Mode::Fleet)[0].2.len(), 2045);
    // A 3005-byte line after ~3 KB: go-systemd happened to accept it;
    // Keelson's deterministic rule refuses it (documented difference).
    let mut t = String::from("[S]\n");
    for i in 0..60 {
        t.push_str(&format!("A{i:02}={}\n", "y".repeat(46)));
    }
    t.push_str(&format!("K={}\n", "z".repeat(3003)));
    let e = err(&t, Mode::Fleet);
    assert!(matches!(
        e.kind(),
        ParseErrorKind::FleetLineTooLong { length: 3005 }
    ));
    assert_eq!(e.line(), 62);
    assert_eq!(opts(&t, Mode::Systemd).len(), 61);
}

#[test]
fn v20_two_trailing_backslashes() {
    let t = "[S]\nK=foo\\\\\nL=bar\n";
    assert_eq!(opts(t, Mode::Fleet), [o("S", "K", "foo\\\\\nL=bar")]);
    assert_eq!(
        opts(t, Mode::Systemd),
        [o("S", "K", "foo\\\\"), o("S", "L", "bar")]
    );
}
