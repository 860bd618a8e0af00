//! A parsed unit file: its options, and every byte it was parsed from.
//!
//! A [`Unit`] keeps its source text next to the options, plus what each
//! physical line turned out to be, so that writing it back is exact
//! ([`Unit::to_lossless`]) while the normalised form fleet hashes
//! ([`Unit::normalized`]) is derived from the options alone. The empty
//! assignment is kept as written in [`Unit::options`]; the reset it means to
//! systemd is applied by [`Unit::effective_options`], [`Unit::values`] and
//! [`Unit::value`].

use std::fmt;
use std::str::FromStr;

use crate::error::{ParseError, Warning};
use crate::parse::{self, Line};
use crate::serialize::{self, UnitHash};
use crate::UnitOption;

/// Which reader's semantics to apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// What current systemd does with the file (systemd.syntax(7)): for
    /// running units, validation and drop-ins.
    Systemd,
    /// What fleet v1.0.0's vendored go-systemd `unit` package does: for the
    /// registry, `fleetctl cat` and the unit hash. Keelson's fleet mode
    /// rejects every physical line of 2048 bytes or more, where go-systemd's
    /// check depends on the line's position in the file, so a few files fleet
    /// accepted are refused.
    Fleet,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Systemd => "systemd",
            Mode::Fleet => "fleet",
        })
    }
}

/// `"systemd"` or `"fleet"` was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown parse mode {0:?}: expected `systemd` or `fleet`")]
pub struct UnknownMode(pub String);

impl FromStr for Mode {
    type Err = UnknownMode;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "systemd" => Ok(Mode::Systemd),
            "fleet" => Ok(Mode::Fleet),
            other => Err(UnknownMode(other.to_owned())),
        }
    }
}

/// What a physical line turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LineKind {
    /// Empty or whitespace only.
    Blank,
    /// A comment, or a line a comment swallowed (fleet mode).
    Comment,
    /// A section header (in fleet mode also every line a multi-line section
    /// name spans).
    Section,
    /// The first line of an assignment.
    Assignment,
    /// A line appended to the previous assignment by a backslash.
    Continuation,
    /// Text the parser skipped: before the first section in fleet mode, or
    /// a line systemd mode warned about.
    Ignored,
}

/// One physical line of the source, with its terminator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceLine<'a> {
    /// 1-based line number.
    pub number: usize,
    /// The line without its terminator.
    pub text: &'a str,
    /// `"\n"`, `"\r\n"`, … or `""` for a last line without one.
    pub terminator: &'a str,
    /// What the parser made of it.
    pub kind: LineKind,
}

/// A parsed unit file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unit {
    mode: Mode,
    file_name: Option<String>,
    source: String,
    lines: Vec<Line>,
    options: Vec<UnitOption>,
    warnings: Vec<Warning>,
}

impl Unit {
    /// Parses a unit file in `mode`. `file_name`, if given, is only used in
    /// error messages (`file:line:col: message`); nothing is read from disk.
    ///
    /// Never panics, whatever the input.
    pub fn parse(
        input: impl AsRef<[u8]>,
        mode: Mode,
        file_name: Option<&str>,
    ) -> Result<Unit, ParseError> {
        let text = parse::check_utf8(input.as_ref()).map_err(|e| e.with_file(file_name))?;
        let parsed = match mode {
            Mode::Fleet => parse::gosystemd::parse(text),
            Mode::Systemd => parse::systemd::parse(text),
        }
        .map_err(|e| e.with_file(file_name))?;
        Ok(Unit {
            mode,
            file_name: file_name.map(str::to_owned),
            source: text.to_owned(),
            lines: parsed.lines,
            options: parsed.options,
            warnings: parsed.warnings,
        })
    }

    /// The mode the unit was parsed in.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The file name given to [`Unit::parse`].
    pub fn file_name(&self) -> Option<&str> {
        self.file_name.as_deref()
    }

    /// Every assignment in file order, empty ones included. In fleet mode this
    /// is exactly go-systemd's option list, what fleet stores and hashes.
    pub fn options(&self) -> &[UnitOption] {
        &self.options
    }

    /// The options with systemd's empty-assignment rule applied: `Name=`
    /// drops every earlier `Name=` of the same section and is itself dropped.
    /// Scalars are then "last one wins" ([`Unit::value`]), lists are all that
    /// is left ([`Unit::values`]).
    pub fn effective_options(&self) -> Vec<UnitOption> {
        effective_options(&self.options)
    }

    /// The effective values of `section`/`name` in order (see
    /// [`Unit::effective_options`]).
    pub fn values(&self, section: &str, name: &str) -> Vec<&str> {
        values(&self.options, section, name)
    }

    /// The effective value of a scalar setting: the last non-reset
    /// assignment.
    pub fn value(&self, section: &str, name: &str) -> Option<&str> {
        self.values(section, name).pop()
    }

    /// Section names in order of first appearance, as the normalised form
    /// lists them (sections without options are not included).
    pub fn sections(&self) -> Vec<&str> {
        serialize::section_order(&self.options)
    }

    /// What systemd would have logged and ignored (systemd mode only).
    pub fn warnings(&self) -> &[Warning] {
        &self.warnings
    }

    /// The source text exactly as parsed (a UTF-8 byte order mark included).
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Every physical line with its terminator and kind. Concatenating
    /// `text` and `terminator` of all lines gives back the source.
    pub fn lines(&self) -> impl Iterator<Item = SourceLine<'_>> + '_ {
        self.lines.iter().enumerate().map(|(i, line)| SourceLine {
            number: i + 1,
            text: &self.source[line.span.start..line.span.end],
            terminator: &self.source[line.span.end..line.span.next],
            kind: line.kind,
        })
    }

    /// The lossless serialisation: the input, byte for byte (comments, blank
    /// lines, spacing, CRLF and a missing final newline included).
    pub fn to_lossless(&self) -> String {
        self.lines()
            .fold(String::with_capacity(self.source.len()), |mut out, l| {
                out.push_str(l.text);
                out.push_str(l.terminator);
                out
            })
    }

    /// The normalised serialisation, byte for byte what go-systemd's
    /// `unit.Serialize` writes for [`Unit::options`] (see [`normalize`]).
    ///
    /// [`normalize`]: crate::normalize
    pub fn normalized(&self) -> String {
        serialize::normalize(&self.options)
    }

    /// fleet's unit hash: SHA-1 of [`Unit::normalized`].
    ///
    /// This is fleet's hash only for a unit parsed in [`Mode::Fleet`]; in
    /// systemd mode it hashes systemd's reading of the file, which differs
    /// for continuation lines.
    pub fn hash(&self) -> UnitHash {
        serialize::hash_options(&self.options)
    }
}

/// See [`Unit::effective_options`].
pub fn effective_options(options: &[UnitOption]) -> Vec<UnitOption> {
    use std::collections::HashMap;
    let mut last_reset: HashMap<(&str, &str), usize> = HashMap::new();
    for (i, o) in options.iter().enumerate() {
        if o.value.is_empty() {
            last_reset.insert((o.section.as_str(), o.name.as_str()), i);
        }
    }
    options
        .iter()
        .enumerate()
        .filter(|(i, o)| {
            !o.value.is_empty()
                && last_reset
                    .get(&(o.section.as_str(), o.name.as_str()))
                    .is_none_or(|&r| *i > r)
        })
        .map(|(_, o)| o.clone())
        .collect()
}

pub(crate) fn values<'a>(options: &'a [UnitOption], section: &str, name: &str) -> Vec<&'a str> {
    let mut out = Vec::new();
    for o in options {
        if o.section == section && o.name == name {
            if o.value.is_empty() {
                out.clear();
            } else {
                out.push(o.value.as_str());
            }
        }
    }
    out
}
