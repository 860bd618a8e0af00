//! systemd mode: `config_parse()` and `parse_line()` of current systemd
//! (systemd.syntax(7), reference `unitfile.md` §2).
//!
//! Comment lines are dropped before continuation handling, so they never
//! continue and never interrupt a continued line; a line continues when it
//! ends in an odd number of backslashes, the last of which becomes a space;
//! the next line is appended as is; a continuation still open at end of file
//! is parsed as if a blank line followed. What systemd would only warn about
//! (assignment outside a section, no `=`) is recorded as a [`Warning`] and
//! ignored; what makes systemd refuse the file is an error.
//!
//! Deliberate difference: systemd warns about and skips a line that is not
//! UTF-8; Keelson refuses the whole file (see [`ParseErrorKind::InvalidUtf8`]).

use super::{Line, Lines, Parsed};
use crate::error::{ParseError, ParseErrorKind, Warning, WarningKind, SYSTEMD_LINE_MAX};
use crate::unit::{LineKind, Mode};
use crate::UnitOption;

/// systemd's `WHITESPACE`: what `strstrip()` removes.
const WS: [char; 4] = [' ', '\t', '\n', '\r'];

struct Continuation {
    text: String,
    /// 0-based index of the first physical line.
    first: usize,
    /// Byte column (0-based) at which `text` starts on that line.
    column: usize,
}

struct State {
    section: Option<String>,
    options: Vec<UnitOption>,
    warnings: Vec<Warning>,
}

pub(crate) fn parse(text: &str) -> Result<Parsed, ParseError> {
    let mut lines: Vec<Line> = Vec::with_capacity(text.len() / 24 + 1);
    let mut state = State {
        section: None,
        options: Vec::new(),
        warnings: Vec::new(),
    };
    let mut continuation: Option<Continuation> = None;
    let mut bom_seen = false;

    for (index, span) in Lines::new(text, Mode::Systemd).enumerate() {
        let raw = &text[span.start..span.end];
        if raw.len() > SYSTEMD_LINE_MAX {
            return Err(ParseError::new(
                ParseErrorKind::LineTooLong { length: raw.len() },
                index + 1,
                1,
            ));
        }
        if raw.trim_start_matches(WS).starts_with(['#', ';']) {
            lines.push(Line {
                span,
                kind: LineKind::Comment,
            });
            continue;
        }
        let mut line = raw;
        if !bom_seen {
            line = line.strip_prefix('\u{feff}').unwrap_or(line);
            bom_seen = true;
        }
        let column = raw.len() - line.len();

        let joined_len = continuation.as_ref().map_or(0, |c| c.text.len()) + line.len();
        if joined_len > SYSTEMD_LINE_MAX {
            let (first, column) = continuation
                .as_ref()
                .map_or((index, 0), |c| (c.first, c.column));
            return Err(ParseError::new(
                ParseErrorKind::LineTooLong { length: joined_len },
                first + 1,
                column + 1,
            ));
        }

        let continues = ends_in_odd_backslashes(line);
        match &mut continuation {
            Some(c) => {
                let kind = if line.trim_matches(WS).is_empty() {
                    LineKind::Blank
                } else {
                    LineKind::Continuation
                };
                lines.push(Line { span, kind });
                c.text.push_str(line);
                if continues {
                    c.text.pop();
                    c.text.push(' ');
                    continue;
                }
                let c = continuation.take();
                if let Some(c) = c {
                    let kind = parse_line(&mut state, &c.text, c.first, c.column)?;
                    lines[c.first].kind = kind;
                }
            }
            None => {
                lines.push(Line {
                    span,
                    kind: LineKind::Blank,
                });
                if continues {
                    let mut text = String::with_capacity(line.len() * 2);
                    text.push_str(&line[..line.len() - 1]);
                    text.push(' ');
                    continuation = Some(Continuation {
                        text,
                        first: index,
                        column,
                    });
                    continue;
                }
                let kind = parse_line(&mut state, line, index, column)?;
                lines[index].kind = kind;
            }
        }
    }
    if let Some(c) = continuation {
        let kind = parse_line(&mut state, &c.text, c.first, c.column)?;
        lines[c.first].kind = kind;
    }
    Ok(Parsed {
        options: state.options,
        lines,
        warnings: state.warnings,
    })
}

fn ends_in_odd_backslashes(line: &str) -> bool {
    line.bytes().rev().take_while(|&b| b == b'\\').count() % 2 == 1
}

/// `parse_line()`: one logical line. `index` is the 0-based physical line it
/// starts on, `base` the byte column at which `logical` starts there.
fn parse_line(
    state: &mut State,
    logical: &str,
    index: usize,
    base: usize,
) -> Result<LineKind, ParseError> {
    let l = logical.trim_matches(WS);
    if l.is_empty() {
        return Ok(LineKind::Blank);
    }
    let column = base + (logical.len() - logical.trim_start_matches(WS).len()) + 1;
    if l.starts_with(['#', ';']) {
        return Ok(LineKind::Comment);
    }
    if l.starts_with('[') {
        if l.len() < 2 || !l.ends_with(']') {
            return Err(ParseError::new(
                ParseErrorKind::InvalidSectionHeader { header: l.into() },
                index + 1,
                column,
            ));
        }
        let name = &l[1..l.len() - 1];
        // string_is_safe(): no control characters, quotes, backslash or DEL.
        if name
            .bytes()
            .any(|b| b < b' ' || b == 0x7f || matches!(b, b'"' | b'\'' | b'\\'))
        {
            return Err(ParseError::new(
                ParseErrorKind::BadSectionName { header: l.into() },
                index + 1,
                column,
            ));
        }
        state.section = Some(name.to_owned());
        return Ok(LineKind::Section);
    }
    let warn = |state: &mut State, kind| {
        state.warnings.push(Warning {
            line: index + 1,
            column,
            kind,
        });
        Ok(LineKind::Ignored)
    };
    let Some(section) = &state.section else {
        return warn(state, WarningKind::AssignmentOutsideSection);
    };
    let Some(eq) = l.find('=') else {
        return warn(state, WarningKind::MissingEquals);
    };
    if eq == 0 {
        return warn(state, WarningKind::MissingKeyName);
    }
    let option = UnitOption {
        section: section.clone(),
        name: l[..eq].trim_matches(WS).to_owned(),
        value: l[eq + 1..].trim_matches(WS).to_owned(),
        line: index + 1,
        column,
    };
    state.options.push(option);
    Ok(LineKind::Assignment)
}
