//! The two lexers and what they share: physical line splitting and UTF-8
//! checking.
//!
//! The dialects disagree on almost everything above the byte level (what a
//! continuation is, whether a missing `=` is fatal, where a section header
//! may start), so each has its own parser written to mirror its reference
//! implementation step by step: `gosystemd` follows go-systemd's
//! `deserialize.go` as vendored in fleet v1.0.0, `systemd` follows systemd's
//! `config_parse()`. Both record, for every physical line, what it was
//! ([`LineKind`]), which is all a lossless writer needs besides the text.

pub(crate) mod gosystemd;
pub(crate) mod systemd;

use crate::error::{ParseError, ParseErrorKind};
use crate::unit::{LineKind, Mode};

/// What a parser hands back to [`crate::Unit`].
pub(crate) struct Parsed {
    pub(crate) options: Vec<crate::UnitOption>,
    pub(crate) lines: Vec<Line>,
    pub(crate) warnings: Vec<crate::Warning>,
}

/// Checks that `bytes` is UTF-8, reporting the first bad byte's position.
pub(crate) fn check_utf8(bytes: &[u8]) -> Result<&str, ParseError> {
    std::str::from_utf8(bytes).map_err(|e| {
        let at = e.valid_up_to();
        let before = &bytes[..at];
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        let line_start = before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |p| p + 1);
        let byte = bytes.get(at).copied().unwrap_or(0);
        ParseError::new(
            ParseErrorKind::InvalidUtf8 { byte },
            line,
            at - line_start + 1,
        )
    })
}

/// A physical line and what the parser made of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Line {
    pub(crate) span: Span,
    pub(crate) kind: LineKind,
}

/// One physical line: `text` is `start..end`, the terminator `end..next`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Span {
    pub(crate) start: usize,
    pub(crate) end: usize,
    pub(crate) next: usize,
}

/// Iterator over the physical lines of `text` as `mode` sees them.
///
/// Fleet mode (go-systemd reads with `ReadBytes('\n')`): lines end at LF; a
/// CR before the LF, or a CR that is the very last byte, is shown as part of
/// the terminator. systemd mode (`read_line()`): a line ends at a NUL, or at
/// one LF and/or one CR in either order (`\r\n` and `\n\r` are one
/// terminator, `\r\r` is two).
pub(crate) struct Lines<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
    mode: Mode,
}

impl<'a> Lines<'a> {
    pub(crate) fn new(text: &'a str, mode: Mode) -> Self {
        Lines {
            text,
            bytes: text.as_bytes(),
            pos: 0,
            mode,
        }
    }
}

impl Iterator for Lines<'_> {
    type Item = Span;

    fn next(&mut self) -> Option<Span> {
        let b = self.bytes;
        let start = self.pos;
        if start >= b.len() {
            return None;
        }
        let span = match self.mode {
            // str::find(char) is memchr-based, much faster than a byte loop.
            Mode::Fleet => match self.text[start..].find('\n') {
                Some(i) => {
                    let nl = start + i;
                    let end = if nl > start && b[nl - 1] == b'\r' {
                        nl - 1
                    } else {
                        nl
                    };
                    Span {
                        start,
                        end,
                        next: nl + 1,
                    }
                }
                None => {
                    let end = if b[b.len() - 1] == b'\r' {
                        b.len() - 1
                    } else {
                        b.len()
                    };
                    Span {
                        start,
                        end,
                        next: b.len(),
                    }
                }
            },
            Mode::Systemd => {
                match b[start..]
                    .iter()
                    .position(|&c| c == b'\n' || c == b'\r' || c == 0)
                {
                    None => Span {
                        start,
                        end: b.len(),
                        next: b.len(),
                    },
                    Some(i) => {
                        let end = start + i;
                        let first = b[end];
                        let mut next = end + 1;
                        if first != 0 {
                            let other = if first == b'\n' { b'\r' } else { b'\n' };
                            if b.get(next) == Some(&other) {
                                next += 1;
                            }
                        }
                        Span { start, end, next }
                    }
                }
            }
        };
        self.pos = span.next;
        Some(span)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(text: &str, mode: Mode) -> Vec<(&str, &str)> {
        Lines::new(text, mode)
            .map(|s| (&text[s.start..s.end], &text[s.end..s.next]))
            .collect()
    }

    #[test]
    fn fleet_lines_end_at_lf_only() {
        assert_eq!(
            split("a\r\nb\rc\nd\r", Mode::Fleet),
            vec![("a", "\r\n"), ("b\rc", "\n"), ("d", "\r")]
        );
        assert_eq!(split("", Mode::Fleet), vec![]);
        assert_eq!(split("\n\n", Mode::Fleet), vec![("", "\n"), ("", "\n")]);
    }

    #[test]
    fn systemd_lines_follow_read_line() {
        assert_eq!(
            split("a\r\nb\n\rc\r\rd\0e", Mode::Systemd),
            vec![
                ("a", "\r\n"),
                ("b", "\n\r"),
                ("c", "\r"),
                ("", "\r"),
                ("d", "\0"),
                ("e", "")
            ]
        );
    }

    #[test]
    fn utf8_error_position() {
        let e = check_utf8(b"[A]\nK=v\xff\n").unwrap_err();
        assert_eq!((e.line(), e.column()), (2, 4));
        assert_eq!(e.kind(), &ParseErrorKind::InvalidUtf8 { byte: 0xff });
    }
}
