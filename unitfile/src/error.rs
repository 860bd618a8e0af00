//! What can go wrong when reading a unit, and where.
//!
//! A parse error always knows its 1-based line and byte column, and the file
//! name when the caller gave one, so every tool can print the familiar
//! `file:line:col: message`. The messages are Keelson's own and say what was
//! expected; [`ParseErrorKind::go_systemd_message`] gives the exact text
//! go-systemd (and therefore fleet and `fleetctl`) printed for the same
//! problem, for tools that must reproduce it.

use std::fmt;
use std::path::PathBuf;

/// go-systemd's line cap: fleet mode rejects any physical line this long or
/// longer (terminator excluded).
pub const FLEET_LINE_MAX: usize = 2048;

/// systemd's `LONG_LINE_MAX`: systemd mode rejects a logical line (after
/// continuation lines are joined) longer than this.
pub const SYSTEMD_LINE_MAX: usize = 1024 * 1024;

/// A unit file could not be parsed.
///
/// `Display` prints `file:line:col: message` when the caller named the file,
/// `line:col: message` otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub(crate) file: Option<String>,
    pub(crate) line: usize,
    pub(crate) column: usize,
    pub(crate) kind: ParseErrorKind,
}

impl ParseError {
    pub(crate) fn new(kind: ParseErrorKind, line: usize, column: usize) -> Self {
        ParseError {
            file: None,
            line,
            column,
            kind,
        }
    }

    pub(crate) fn with_file(mut self, file: Option<&str>) -> Self {
        self.file = file.map(str::to_owned);
        self
    }

    /// The file name the caller passed to the parser, if any.
    pub fn file(&self) -> Option<&str> {
        self.file.as_deref()
    }

    /// 1-based line of the problem.
    pub fn line(&self) -> usize {
        self.line
    }

    /// 1-based column, in bytes, of the problem.
    pub fn column(&self) -> usize {
        self.column
    }

    /// What went wrong.
    pub fn kind(&self) -> &ParseErrorKind {
        &self.kind
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(file) = &self.file {
            write!(f, "{file}:")?;
        }
        write!(f, "{}:{}: {}", self.line, self.column, self.kind)
    }
}

impl std::error::Error for ParseError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.kind)
    }
}

/// The kinds of parse error. Which ones a mode can produce is noted on each.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseErrorKind {
    /// Both modes: the input is not UTF-8. The position is that of the first
    /// offending byte. (systemd only warns and skips such a line, go-systemd
    /// replaces bytes in option names by U+FFFD; Keelson refuses the file so
    /// that nothing is silently altered.)
    #[error("invalid UTF-8: expected a UTF-8 text file, found the byte 0x{byte:02x}")]
    InvalidUtf8 {
        /// The first byte that is not valid UTF-8.
        byte: u8,
    },

    /// Fleet mode: a `[` with no `]` anywhere after it.
    #[error(
        "unterminated section header: expected `]` to close the section name, found end of file"
    )]
    UnterminatedSection,

    /// Fleet mode: text after the `]` of a section header on the same line.
    #[error("unexpected text {garbage:?} after section header: expected only whitespace up to the end of the line")]
    GarbageAfterSection {
        /// The offending text, trimmed.
        garbage: String,
    },

    /// Fleet mode: an option name ended by a line break before any `=`.
    #[error("missing `=` after option name {name:?}: expected `Name=Value` on one line (go-systemd refuses the whole file)")]
    MissingEquals {
        /// What was read of the name.
        name: String,
    },

    /// Fleet mode: the file ended inside an option name, before any `=`.
    #[error("missing `=` after option name {name:?}: expected `Name=Value`, found end of file")]
    UnexpectedEof {
        /// What was read of the name.
        name: String,
    },

    /// Fleet mode: a physical line of [`FLEET_LINE_MAX`] bytes or more.
    ///
    /// Keelson applies go-systemd's 2048-byte cap deterministically to every
    /// line. go-systemd only checks when 2048 bytes happen to be buffered, so
    /// it accepts some long lines depending on their position in the file;
    /// Keelson rejects those too.
    #[error("line too long: {length} bytes, expected fewer than {FLEET_LINE_MAX} bytes per line (fleet's go-systemd limit)")]
    FleetLineTooLong {
        /// Length of the physical line, terminator excluded.
        length: usize,
    },

    /// systemd mode: a logical line (continuations joined) over
    /// [`SYSTEMD_LINE_MAX`] bytes.
    #[error("line too long: {length} bytes after joining continuation lines, expected at most {SYSTEMD_LINE_MAX} bytes (systemd's LONG_LINE_MAX)")]
    LineTooLong {
        /// Length of the logical line.
        length: usize,
    },

    /// systemd mode: a line starting with `[` that does not end with `]`.
    #[error("invalid section header {header:?}: expected `[Name]` alone on the line")]
    InvalidSectionHeader {
        /// The stripped line.
        header: String,
    },

    /// systemd mode: a section name with control characters, quotes or
    /// backslashes.
    #[error("bad characters in section header {header:?}: expected no quotes, backslashes or control characters")]
    BadSectionName {
        /// The stripped line.
        header: String,
    },
}

impl ParseErrorKind {
    /// The message go-systemd (as vendored in fleet v1.0.0) gives for this
    /// error, or `None` for errors go-systemd does not have.
    ///
    /// Keelson's own `Display` texts deliberately differ: they carry a
    /// position and say what was expected.
    pub fn go_systemd_message(&self) -> Option<String> {
        match self {
            ParseErrorKind::UnterminatedSection => Some("unable to find end of section".into()),
            ParseErrorKind::GarbageAfterSection { garbage } => {
                // fleet v1.0.0 formats the bytes with %v and never fills in
                // the section name.
                let bytes: Vec<String> = garbage.bytes().map(|b| b.to_string()).collect();
                Some(format!(
                    "found garbage after section name : [{}]",
                    bytes.join(" ")
                ))
            }
            ParseErrorKind::MissingEquals { .. } => {
                Some("unexpected newline encountered while parsing option name".into())
            }
            ParseErrorKind::UnexpectedEof { .. } => Some("EOF".into()),
            ParseErrorKind::FleetLineTooLong { .. } => {
                Some(format!("line too long (max {FLEET_LINE_MAX} bytes)"))
            }
            ParseErrorKind::InvalidUtf8 { .. }
            | ParseErrorKind::LineTooLong { .. }
            | ParseErrorKind::InvalidSectionHeader { .. }
            | ParseErrorKind::BadSectionName { .. } => None,
        }
    }
}

/// Something systemd would log and then ignore. Only systemd mode produces
/// warnings; fleet mode either accepts silently or fails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// 1-based line.
    pub line: usize,
    /// 1-based byte column of the first non-blank character.
    pub column: usize,
    /// What was ignored.
    pub kind: WarningKind,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.line, self.column, self.kind)
    }
}

/// The warnings of systemd mode, with systemd's own wording.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WarningKind {
    /// An assignment before the first section header.
    #[error("Assignment outside of section. Ignoring.")]
    AssignmentOutsideSection,
    /// A line with no `=`.
    #[error("Missing '=', ignoring line.")]
    MissingEquals,
    /// A line starting with `=`.
    #[error("Missing key name before '=', ignoring line.")]
    MissingKeyName,
}

/// Loading a unit and its drop-ins from directories failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// A file or directory could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The path that failed.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A unit or drop-in file did not parse; the error names the file.
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// No directory holds the unit (nor, for an instance, its template).
    #[error("unit {name} not found in any of the given unit directories")]
    NotFound {
        /// The unit name asked for.
        name: String,
    },
    /// The unit file is empty or a symlink to `/dev/null`.
    #[error("unit {name} is masked ({})", path.display())]
    Masked {
        /// The unit name asked for.
        name: String,
        /// The masking file.
        path: PathBuf,
    },
}
