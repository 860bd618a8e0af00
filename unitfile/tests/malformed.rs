//! Bad input gets a clear error with a position, and never a panic.

use keelson_unitfile::{Mode, ParseErrorKind, Unit, WarningKind, SYSTEMD_LINE_MAX};

const MODES: [Mode; 2] = [Mode::Fleet, Mode::Systemd];

#[test]
fn unterminated_section() {
    let e = Unit::parse(
        "# head\n\n  [Unit\nDescription=x\n",
        Mode::Fleet,
        Some("u.service"),
    )
    .unwrap_err();
    assert_eq!(e.kind(), &ParseErrorKind::UnterminatedSection);
    assert_eq!((e.line(), e.column()), (3, 3));
    assert_eq!(
        e.to_string(),
        "u.service:3:3: unterminated section header: expected `]` to close the section name, found end of file"
    );
    assert_eq!(
        e.kind().go_systemd_message().as_deref(),
        Some("unable to find end of section")
    );

    let e = Unit::parse("# head\n\n  [Unit\nDescription=x\n", Mode::Systemd, None).unwrap_err();
    assert!(
        matches!(e.kind(), ParseErrorKind::InvalidSectionHeader { header } if header == "[Unit")
    );
    assert_eq!((e.line(), e.column()), (3, 3));
    assert!(e
        .to_string()
        .starts_with("3:3: invalid section header \"[Unit\""));
}

#[test]
fn missing_equals() {
    let e = Unit::parse(
        "[Service]\nExecStart=/bin/true\n  Restart always\n",
        Mode::Fleet,
        Some("x"),
    )
    .unwrap_err();
    assert!(matches!(e.kind(), ParseErrorKind::MissingEquals { name } if name == "Restart always"));
    assert_eq!((e.line(), e.column()), (3, 3));
    // At end of file, go-systemd says just "EOF".
    let e = Unit::parse("[Service]\nRestart", Mode::Fleet, None).unwrap_err();
    assert!(matches!(e.kind(), ParseErrorKind::UnexpectedEof { .. }));
    assert_eq!(e.kind().go_systemd_message().as_deref(), Some("EOF"));
    // systemd mode warns and goes on.
    let u = Unit::parse("[Service]\nRestart\n=x\nType=simple\n", Mode::Systemd, None).unwrap();
    let kinds: Vec<_> = u.warnings().iter().map(|w| w.kind.clone()).collect();
    assert_eq!(
        kinds,
        [WarningKind::MissingEquals, WarningKind::MissingKeyName]
    );
    assert_eq!(u.value("Service", "Type"), Some("simple"));
}

#[test]
fn option_outside_section() {
    // fleet skips anything before the first section, systemd warns.
    let f = Unit::parse("Description=x\n[Unit]\nAfter=a\n", Mode::Fleet, None).unwrap();
    assert_eq!(f.options().len(), 1);
    let s = Unit::parse("Description=x\n[Unit]\nAfter=a\n", Mode::Systemd, None).unwrap();
    assert_eq!(s.options().len(), 1);
    assert_eq!(s.warnings()[0].kind, WarningKind::AssignmentOutsideSection);
    assert_eq!(
        s.warnings()[0].to_string(),
        "1:1: Assignment outside of section. Ignoring."
    );
    // go-systemd opens a section at a `[` even mid-line before the first one.
    let f = Unit::parse("garbage [Unit]\nAfter=a\n", Mode::Fleet, None).unwrap();
    assert_eq!(f.options()[0].section, "Unit");
}

#[test]
fn invalid_utf8() {
    for mode in MODES {
        let e = Unit::parse(
            b"[Unit]\nDescription=caf\xe9\n".as_slice(),
            mode,
            Some("bad.service"),
        )
        .unwrap_err();
        assert_eq!(e.kind(), &ParseErrorKind::InvalidUtf8 { byte: 0xe9 });
        assert_eq!((e.line(), e.column()), (2, 16));
        assert_eq!(
            e.to_string(),
            "bad.service:2:16: invalid UTF-8: expected a UTF-8 text file, found the byte 0xe9"
        );
        assert_eq!(e.file(), Some("bad.service"));
    }
}

#[test]
fn huge_lines() {
    // 1 MiB is fine in systemd mode, one byte more is not.
    let ok = format!("[S]\nK={}\n", "v".repeat(SYSTEMD_LINE_MAX - 2));
    assert_eq!(
        Unit::parse(&ok, Mode::Systemd, None).unwrap().options()[0]
            .value
            .len(),
        SYSTEMD_LINE_MAX - 2
    );
    let long = format!("[S]\nK={}\n", "v".repeat(SYSTEMD_LINE_MAX - 1));
    let e = Unit::parse(&long, Mode::Systemd, None).unwrap_err();
    assert!(matches!(e.kind(), ParseErrorKind::LineTooLong { .. }));
    assert_eq!(e.line(), 2);
    // Also when the length is reached by joining continuation lines.
    let half = "v".repeat(SYSTEMD_LINE_MAX / 2);
    let joined = format!("[S]\nK={half}\\\n{half}\\\n{half}\n");
    let e = Unit::parse(&joined, Mode::Systemd, None).unwrap_err();
    assert!(matches!(e.kind(), ParseErrorKind::LineTooLong { .. }));
    assert_eq!((e.line(), e.column()), (2, 1));
    // fleet mode: 2048 bytes or more, even in a comment.
    let e = Unit::parse(format!("[S]\n#{}\n", "c".repeat(3000)), Mode::Fleet, None).unwrap_err();
    assert!(matches!(
        e.kind(),
        ParseErrorKind::FleetLineTooLong { length: 3001 }
    ));
    // A syntax error before the long line is reported first.
    let e = Unit::parse(
        format!("[S]\nNoEquals\nK={}\n", "v".repeat(3000)),
        Mode::Fleet,
        None,
    )
    .unwrap_err();
    assert!(matches!(e.kind(), ParseErrorKind::MissingEquals { .. }));
}

#[test]
fn bad_section_names_in_systemd_mode() {
    for bad in ["[A\"B]", "[A\\B]", "[A\x01B]"] {
        let e = Unit::parse(format!("{bad}\nK=v\n"), Mode::Systemd, None).unwrap_err();
        assert!(
            matches!(e.kind(), ParseErrorKind::BadSectionName { .. }),
            "{bad}"
        );
    }
    assert!(Unit::parse("[\n", Mode::Systemd, None).is_err());
}

#[test]
fn byte_order_mark_is_skipped_and_kept() {
    let t = "\u{feff}[Unit]\nDescription=x\n";
    for mode in MODES {
        let u = Unit::parse(t, mode, None).unwrap();
        assert_eq!(u.options().len(), 1, "{mode}");
        assert_eq!(u.options()[0].section, "Unit");
        assert_eq!(u.to_lossless(), t);
    }
}

#[test]
fn odd_inputs_do_not_panic() {
    let cases: &[&[u8]] = &[
        b"",
        b"[",
        b"]",
        b"[]",
        b"\\",
        b"=",
        b"[S]\n=",
        b"[S]\n\\",
        b"[S]\nK=\\",
        b"[S]\nK=\\\n",
        b"[S]\nK=\\\r\n\\\r",
        b"\r",
        b"\r\r\n\n\r\0",
        b"[S]\0K=v\0",
        b"#\\\n#\\\n",
        b"[S]\n#\\",
        b";\\ \n[S]\n",
        b"[S]\xff",
        b"\xef\xbb",
        b"[S]\n\xc2\x85K=v\n",
        b"[S]\n K\xe2\x80\x83=\xe2\x80\x83v\xe2\x80\x83\n",
    ];
    for case in cases {
        for mode in MODES {
            if let Ok(u) = Unit::parse(case, mode, None) {
                assert_eq!(u.to_lossless().as_bytes(), *case);
                let _ = u.normalized();
                let _ = u.hash();
            }
        }
    }
}
