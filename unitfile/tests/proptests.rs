//! Property tests: lossless round trip, normalisation as a fixed point,
//! normalised text preserving the options, and systemd's comment/blank-line
//! invariances (reference `unitfile.md` §9).
//!
//! go-systemd's writer does not escape anything, so a value that ends in a
//! backslash (possible when the backslash is followed by trailing blanks, a
//! CR or end of file) continues onto the next line when the normalised text
//! is read back. That is fleet's behaviour too; the fixed-point properties
//! exclude such values with `prop_assume!`.

use keelson_unitfile::{fleet_hash, fleet_normalize, LineKind, Mode, Unit, UnitOption};
use proptest::prelude::*;
use sha1::Digest;

fn line() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[ \t]{0,2}\\[[A-Za-z-]{1,8}\\][ \t]{0,2}",
        8 => "[ \t]{0,2}[A-Za-z][A-Za-z0-9]{0,8}[ \t]{0,2}=[ \t]{0,2}[ -~]{0,24}",
        2 => "[ \t]{0,2}[#;][ -~]{0,20}",
        2 => "[ \t]{0,3}",
        2 => ("[A-Za-z]{1,6}=[ -~]{0,10} \\\\", "[ \t]{0,4}[ -~&&[^\\\\]]{1,16}")
            .prop_map(|(a, b)| format!("{a}\n{b}")),
    ]
}

fn unit_text() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(line(), 0..24),
        prop::bool::ANY,
        prop::bool::ANY,
    )
        .prop_map(|(lines, crlf, final_newline)| {
            let eol = if crlf { "\r\n" } else { "\n" };
            let mut text = lines.join("\n").replace('\n', eol);
            if final_newline && !text.is_empty() {
                text.push_str(eol);
            }
            text
        })
}

fn noise() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[\\[\\]=#; \t\r\n\\\\a-c\u{a0}\u{feff}\u{2003}\0]{0,120}",
        unit_text(),
    ]
}

fn triples(options: &[UnitOption]) -> Vec<(String, String, String)> {
    options
        .iter()
        .map(|o| (o.section.clone(), o.name.clone(), o.value.clone()))
        .collect()
}

fn grouped(unit: &Unit) -> Vec<(String, String, String)> {
    let order = unit.sections();
    let mut t = triples(unit.options());
    t.sort_by_key(|(s, _, _)| order.iter().position(|o| o == s));
    t
}

fn no_trailing_backslash(unit: &Unit) -> bool {
    unit.options().iter().all(|o| !o.value.ends_with('\\'))
}

const MODES: [Mode; 2] = [Mode::Fleet, Mode::Systemd];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn lossless_round_trip(text in noise()) {
        for mode in MODES {
            let parsed = Unit::parse(&text, mode, None);
            if mode == Mode::Fleet {
                prop_assert_eq!(parsed.is_ok(), fleet_hash(&text).is_ok());
            }
            if let Ok(unit) = parsed {
                prop_assert_eq!(unit.to_lossless(), text.clone());
                let rebuilt: String = unit.lines().map(|l| format!("{}{}", l.text, l.terminator)).collect();
                prop_assert_eq!(rebuilt, text.clone());
                let mut sha = sha1::Sha1::new();
                sha.update(unit.normalized().as_bytes());
                let want: [u8; 20] = sha.finalize().into();
                prop_assert_eq!(*unit.hash().as_bytes(), want);
                if mode == Mode::Fleet {
                    prop_assert_eq!(fleet_hash(&text), Ok(unit.hash()));
                    prop_assert_eq!(fleet_normalize(&text), Ok(unit.normalized()));
                }
            }
        }
    }

    #[test]
    fn normalisation_is_a_fixed_point(text in unit_text()) {
        for mode in MODES {
            let Ok(unit) = Unit::parse(&text, mode, None) else { continue };
            prop_assume!(no_trailing_backslash(&unit));
            let once = unit.normalized();
            let again = Unit::parse(&once, mode, None).expect("normalised text parses");
            prop_assert_eq!(again.normalized(), once.clone());
            prop_assert_eq!(again.hash(), unit.hash());
        }
    }

    #[test]
    fn normalised_text_preserves_options(text in unit_text()) {
        for mode in MODES {
            let Ok(unit) = Unit::parse(&text, mode, None) else { continue };
            prop_assume!(no_trailing_backslash(&unit));
            let again = Unit::parse(unit.normalized(), mode, None).expect("normalised text parses");
            prop_assert_eq!(triples(again.options()), grouped(&unit));
        }
    }

    #[test]
    fn systemd_ignores_inserted_comments_and_blank_lines(
        text in unit_text(),
        inserts in prop::collection::vec((0usize..64, prop_oneof!["#[ -~]{0,10}", ";[ -~]{0,10}"]), 0..6),
    ) {
        let Ok(unit) = Unit::parse(&text, Mode::Systemd, None) else { return Ok(()) };
        let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
        for (at, comment) in inserts {
            let at = at % (lines.len() + 1);
            // Comments may go anywhere, even inside a continuation.
            lines.insert(at, comment);
        }
        let changed = lines.join("\n");
        let other = Unit::parse(&changed, Mode::Systemd, None).expect("still parses");
        prop_assert_eq!(triples(other.options()), triples(unit.options()));
    }

    #[test]
    fn systemd_blank_lines_between_assignments_change_nothing(text in unit_text()) {
        let Ok(unit) = Unit::parse(&text, Mode::Systemd, None) else { return Ok(()) };
        // Blank lines are safe only where no continuation is open.
        let mut out = String::new();
        let mut open = false;
        for l in unit.lines() {
            out.push_str(l.text);
            out.push('\n');
            if l.kind != LineKind::Comment {
                open = l.text.bytes().rev().take_while(|&b| b == b'\\').count() % 2 == 1;
            }
            if !open {
                out.push('\n');
            }
        }
        let other = Unit::parse(&out, Mode::Systemd, None).expect("still parses");
        prop_assert_eq!(triples(other.options()), triples(unit.options()));
    }
}
