//! Fleet mode: go-systemd's `unit` lexer, as vendored in fleet v1.0.0.
//!
//! This is a lexer, not systemd, and its quirks decide what fleet stored and
//! hashed, so they are reproduced on purpose (reference `unitfile.md` §10.1):
//! a `[` opens a section anywhere before the first section, a section name
//! runs to the next `]` across line breaks, a value continues whenever its
//! last byte is `\` (the LF and the next line are kept raw), a comment ending
//! in `\` swallows the next line, a missing `=` is fatal, and empty
//! assignments are kept like any other. Each function below corresponds to
//! one lexer step of `deserialize.go`.
//!
//! One detail the reference text glosses over, taken from the code: lines are
//! read up to LF and only a CR right before end of file is removed, so on a
//! CRLF line the CR stays until the value is trimmed. A CRLF line ending in
//! `\` therefore does not continue, exactly as in fleet.

use super::{Line, Lines, Parsed};
use crate::error::{ParseError, ParseErrorKind, FLEET_LINE_MAX};
use crate::serialize::OptionFields;
use crate::unit::{LineKind, Mode};
use crate::UnitOption;

/// An option as the lexer finds it, borrowed from the source. go-systemd's
/// value is always a trimmed slice of the source, plus a LF when a blank
/// line ended a continuation (§10.1 rule 4), so no copy is needed until a
/// [`UnitOption`] is built.
pub(crate) struct RawOption<'a> {
    section: &'a str,
    name: &'a str,
    value: &'a str,
    trailing_lf: bool,
    line: usize,
    column: usize,
}

impl OptionFields for RawOption<'_> {
    fn section(&self) -> &str {
        self.section
    }
    fn name(&self) -> &str {
        self.name
    }
    fn value_parts(&self) -> (&str, &str) {
        (self.value, if self.trailing_lf { "\n" } else { "" })
    }
}

pub(crate) fn parse(text: &str) -> Result<Parsed, ParseError> {
    let (lines, raw) = lex(text)?;
    let options = raw
        .iter()
        .map(|o| {
            let mut value = String::with_capacity(o.value.len() + usize::from(o.trailing_lf));
            value.push_str(o.value);
            if o.trailing_lf {
                value.push('\n');
            }
            UnitOption {
                section: o.section.to_owned(),
                name: o.name.to_owned(),
                value,
                line: o.line,
                column: o.column,
            }
        })
        .collect();
    Ok(Parsed {
        options,
        lines,
        warnings: Vec::new(),
    })
}

/// Lexes `text` without copying anything out of it.
pub(crate) fn lex(text: &str) -> Result<(Vec<Line>, Vec<RawOption<'_>>), ParseError> {
    let mut lines: Vec<Line> = Vec::with_capacity(text.len() / 24 + 1);
    let mut too_long: Option<(usize, usize)> = None;
    for span in Lines::new(text, Mode::Fleet) {
        // Keelson's deterministic version of go-systemd's 2048-byte cap:
        // every physical line, wherever it sits in the file.
        let length = span.end - span.start;
        if length >= FLEET_LINE_MAX && too_long.is_none() {
            too_long = Some((lines.len(), length));
        }
        // Until the lexer says otherwise, a line is blank or skipped text.
        let t = &text[span.start..span.end];
        let blank = t
            .as_bytes()
            .first()
            .is_none_or(|&b| b.is_ascii_whitespace() || b == 0x0b || b >= 0x80)
            && t.trim().is_empty();
        let kind = if blank {
            LineKind::Blank
        } else {
            LineKind::Ignored
        };
        lines.push(Line { span, kind });
    }
    let mut lexer = Lexer {
        s: text,
        b: text.as_bytes(),
        pos: 0,
        cursor: 0,
        options: Vec::with_capacity(lines.len()),
        lines,
    };
    let lexed = lexer.run();
    if let Some((index, length)) = too_long {
        // Report whichever problem comes first in the file.
        let earlier = matches!(&lexed, Err(e) if e.line <= index);
        if !earlier {
            return Err(ParseError::new(
                ParseErrorKind::FleetLineTooLong { length },
                index + 1,
                1,
            ));
        }
    }
    lexed?;
    let Lexer { lines, options, .. } = lexer;
    Ok((lines, options))
}

struct Lexer<'a> {
    s: &'a str,
    b: &'a [u8],
    pos: usize,
    lines: Vec<Line>,
    /// Line index of the last position looked up; positions only grow.
    cursor: usize,
    options: Vec<RawOption<'a>>,
}

impl<'a> Lexer<'a> {
    /// The lexer's main loop: `lexNextSection` until a section is open, then
    /// `lexNextSectionOrOptionFunc`.
    fn run(&mut self) -> Result<(), ParseError> {
        let mut section: Option<&'a str> = None;
        loop {
            match section {
                None => {
                    // Before the first section every character is skipped,
                    // except `[` and the comment characters, wherever they are.
                    let rest = &self.b[self.pos..];
                    let Some(i) = rest.iter().position(|&c| matches!(c, b'[' | b'#' | b';')) else {
                        self.pos = self.b.len();
                        return Ok(());
                    };
                    let at = self.pos + i;
                    self.pos = at + 1;
                    if self.b[at] == b'[' {
                        section = Some(self.section(at)?);
                    } else {
                        self.comment(at);
                    }
                }
                Some(name) => {
                    let at = self.pos;
                    let c = match self.b.get(at) {
                        None => return Ok(()),
                        // ASCII fast path; `char::is_whitespace` agrees with
                        // Go's `unicode.IsSpace` on every character.
                        Some(&b) if b < 0x80 => char::from(b),
                        Some(_) => match self.s[at..].chars().next() {
                            Some(c) => c,
                            None => return Ok(()),
                        },
                    };
                    if c.is_whitespace() {
                        self.pos += c.len_utf8();
                    } else if c == '[' {
                        self.pos += 1;
                        section = Some(self.section(at)?);
                    } else if c == '#' || c == ';' {
                        self.pos += 1;
                        self.comment(at);
                    } else {
                        self.option(name)?;
                    }
                }
            }
        }
    }

    /// 0-based index of the physical line holding byte `pos`.
    fn line_index(&mut self, pos: usize) -> usize {
        let lines = &self.lines;
        if lines.get(self.cursor).is_some_and(|l| l.span.start <= pos) {
            while lines
                .get(self.cursor + 1)
                .is_some_and(|l| l.span.start <= pos)
            {
                self.cursor += 1;
            }
        } else {
            self.cursor = lines
                .partition_point(|l| l.span.start <= pos)
                .saturating_sub(1);
        }
        self.cursor
    }

    fn position(&mut self, pos: usize) -> (usize, usize) {
        let index = self.line_index(pos);
        let start = self.lines.get(index).map_or(0, |l| l.span.start);
        (index + 1, pos.saturating_sub(start) + 1)
    }

    fn mark(&mut self, pos: usize, kind: LineKind) {
        if pos >= self.b.len() {
            return;
        }
        let index = self.line_index(pos);
        if let Some(line) = self.lines.get_mut(index) {
            line.kind = kind;
        }
    }

    fn error(&mut self, kind: ParseErrorKind, pos: usize) -> ParseError {
        let (line, column) = self.position(pos);
        ParseError::new(kind, line, column)
    }

    /// `toEOL`: the rest of the line without its LF, and whether end of file
    /// was reached instead of a LF. Only at end of file is a trailing CR cut.
    fn read_line(&mut self) -> (&'a str, bool) {
        if self.pos >= self.b.len() {
            return ("", true);
        }
        // The line table already knows where this line's LF is.
        let index = self.line_index(self.pos);
        let next = self.lines.get(index).map_or(self.b.len(), |l| l.span.next);
        if next > self.pos && self.b[next - 1] == b'\n' {
            let line = &self.s[self.pos..next - 1];
            self.pos = next;
            (line, false)
        } else {
            let line = &self.s[self.pos..];
            self.pos = self.b.len();
            (line.strip_suffix('\r').unwrap_or(line), true)
        }
    }

    /// `lexSectionName` + `lexSectionSuffixFunc`; `open` is the `[`.
    fn section(&mut self, open: usize) -> Result<&'a str, ParseError> {
        let start = self.pos;
        let Some(i) = self.b[start..].iter().position(|&c| c == b']') else {
            return Err(self.error(ParseErrorKind::UnterminatedSection, open));
        };
        let name = &self.s[start..start + i];
        self.pos = start + i + 1;
        let (first, last) = (self.line_index(open), self.line_index(start + i));
        for line in self.lines.iter_mut().take(last + 1).skip(first) {
            line.kind = LineKind::Section;
        }
        let rest_start = self.pos;
        let (rest, _) = self.read_line();
        let garbage = rest.trim();
        if !garbage.is_empty() {
            let offset = rest.len() - rest.trim_start().len();
            return Err(self.error(
                ParseErrorKind::GarbageAfterSection {
                    garbage: garbage.to_owned(),
                },
                rest_start + offset,
            ));
        }
        Ok(name)
    }

    /// `ignoreLineFunc`: a comment runs to the end of the line, and on to the
    /// next one while the line (less one trailing space) ends in `\`.
    fn comment(&mut self, at: usize) {
        self.mark(at, LineKind::Comment);
        loop {
            let (line, eof) = self.read_line();
            let line = line.strip_suffix(' ').unwrap_or(line);
            if eof || !line.ends_with('\\') {
                return;
            }
            self.mark(self.pos, LineKind::Comment);
        }
    }

    /// `lexOptionNameFunc` + `lexOptionValueFunc`.
    fn option(&mut self, section: &'a str) -> Result<(), ParseError> {
        let start = self.pos;
        let rest = &self.b[start..];
        let Some(i) = rest.iter().position(|&c| matches!(c, b'=' | b'\n' | b'\r')) else {
            let name = self.s[start..].trim().to_owned();
            return Err(self.error(ParseErrorKind::UnexpectedEof { name }, start));
        };
        if self.b[start + i] != b'=' {
            let name = self.s[start..start + i].trim().to_owned();
            return Err(self.error(ParseErrorKind::MissingEquals { name }, start));
        }
        let name = self.s[start..start + i].trim();
        self.pos = start + i + 1;
        let (line, column) = self.position(start);
        if let Some(l) = self.lines.get_mut(line - 1) {
            l.kind = LineKind::Assignment;
        }

        let value_start = self.pos;
        let (first, mut eof) = self.read_line();
        let trimmed = first.trim();
        let (value, trailing_lf) = if trimmed.is_empty() {
            ("", false)
        } else if !first.ends_with('\\') {
            (trimmed, false)
        } else {
            // Continuation: the LF and every following line are kept raw
            // until a line that does not end in `\` or is blank. The joined
            // value is the source text itself, so only its end is tracked.
            let mut value_end = value_start + first.len();
            let mut trailing_lf = false;
            loop {
                if !eof {
                    trailing_lf = true;
                }
                let line_start = self.pos;
                let (line, e) = self.read_line();
                eof = e;
                if line.trim().is_empty() {
                    break;
                }
                self.mark(line_start, LineKind::Continuation);
                value_end = line_start + line.len();
                trailing_lf = false;
                if !line.ends_with('\\') {
                    break;
                }
            }
            // When a blank line ended the value, go-systemd trims and then
            // puts the LF back.
            (self.s[value_start..value_end].trim(), trailing_lf)
        };
        self.options.push(RawOption {
            section,
            name,
            value,
            trailing_lf,
            line,
            column,
        });
        Ok(())
    }
}
