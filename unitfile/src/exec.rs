//! Command lines (`ExecStart=` and friends), `Environment=` values and
//! `EnvironmentFile=` contents, as systemd splits and expands them.
//!
//! systemd is not a shell, and unit authors keep getting bitten by the
//! difference: quotes may open mid-word, C escapes work *inside single
//! quotes* (the book's `apachet-discovery@.service` depends on `\'` there), a
//! lone `;` word separates commands, `$FOO` as a whole word splits while
//! `${FOO}` never does, and `$?` reaches the program untouched. The splitter
//! here is a transcription of systemd's `extract_first_word` and
//! `config_parse_exec`, so a command line means the same thing to Keelson's
//! init backend as it did to systemd. Specifiers are expanded *before*
//! splitting ([`parse_exec_with`]); environment variables *after*, when the
//! command runs ([`ExecCommand::expand_env`]).

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::hash::BuildHasher;

use thiserror::Error;

use crate::specifier::{expand, SpecifierContext, SpecifierError};

/// systemd's `WHITESPACE`.
const WHITESPACE: &[u8] = b" \t\n\r";

fn is_ws(c: u8) -> bool {
    WHITESPACE.contains(&c)
}

/// Errors in quoting and escaping, shared by command lines and
/// `Environment=`. Offsets are bytes into the value.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SyntaxError {
    /// A `"` or `'` with no matching closing quote.
    #[error("unterminated {quote} quote opened at byte {offset}; close it or escape it with a backslash")]
    UnterminatedQuote {
        /// The quote character.
        quote: char,
        /// Byte offset of the opening quote.
        offset: usize,
    },
    /// A backslash as the last character of the value.
    #[error("backslash at byte {offset} ends the value; write `\\\\` for a literal backslash")]
    TrailingBackslash {
        /// Byte offset of the backslash.
        offset: usize,
    },
    /// An escape that systemd does not know (only fatal where systemd
    /// rejects it: `Environment=`; command lines keep it with a warning).
    #[error(
        "invalid escape `{sequence}` at byte {offset}; valid escapes are \\a \\b \\f \\n \\r \\t \
         \\v \\\\ \\\" \\' \\s \\xNN \\NNN \\uNNNN \\UNNNNNNNN (no NUL)"
    )]
    InvalidEscape {
        /// The backslash and the character after it.
        sequence: String,
        /// Byte offset of the backslash.
        offset: usize,
    },
    /// Byte escapes produced a word that is not UTF-8.
    #[error("word starting at byte {offset} is not valid UTF-8 after unescaping; use \\u escapes for non-ASCII characters")]
    InvalidUtf8 {
        /// Byte offset of the start of the word.
        offset: usize,
    },
}

/// Why an `Exec*=` value was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ExecError {
    /// Quoting or escaping is broken.
    #[error(transparent)]
    Syntax(#[from] SyntaxError),
    /// Specifier expansion failed ([`parse_exec_with`]).
    #[error(transparent)]
    Specifier(#[from] SpecifierError),
    /// Only prefixes, no executable (`ExecStart=-`).
    #[error("command at byte {offset} has prefixes but no executable; add the program's path")]
    EmptyPath {
        /// Byte offset of the command's first word.
        offset: usize,
    },
    /// `@` given but no argv\[0\] word follows the executable.
    #[error("command at byte {offset} uses the `@` prefix but gives no argv[0] after the executable; add one or drop the `@`")]
    MissingArgv0 {
        /// Byte offset of the command's first word.
        offset: usize,
    },
    /// A prefix repeated, or `+`, `!`, `!!` combined with each other.
    #[error("prefix `{prefix}` of command at byte {offset} is repeated or conflicts with an earlier one (`+`, `!` and `!!` exclude each other)")]
    BadPrefix {
        /// The offending prefix character.
        prefix: char,
        /// Byte offset of the command's first word.
        offset: usize,
    },
    /// The executable contains quotes, backslashes or control characters.
    #[error("executable `{path}` contains quotes, backslashes or control characters; rename it or wrap it in a script")]
    UnsafePath {
        /// The executable as parsed.
        path: String,
    },
    /// The executable ends in `/`.
    #[error("executable `{path}` names a directory; give the program's file name")]
    DirectoryPath {
        /// The executable as parsed.
        path: String,
    },
    /// A relative path with a `/` (bare names are looked up, absolute paths
    /// used as is).
    #[error("executable `{path}` is neither an absolute path nor a plain file name; write it as /full/path/to/program")]
    NotAbsolute {
        /// The executable as parsed.
        path: String,
    },
    /// `//`, `/./` or `/../` in the executable path.
    #[error(
        "executable path `{path}` is not normalised (no `//`, `.` or `..` components allowed)"
    )]
    NotNormalized {
        /// The executable as parsed.
        path: String,
    },
}

/// Something systemd accepts but warns about; kept so nothing is lost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecWarning {
    /// An unknown escape, kept literally (backslash included) as systemd does.
    UnknownEscape {
        /// The backslash and the character after it.
        sequence: String,
        /// Byte offset of the backslash.
        offset: usize,
    },
}

impl fmt::Display for ExecWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExecWarning::UnknownEscape { sequence, offset } => write!(
                f,
                "unknown escape `{sequence}` at byte {offset} kept literally; write `\\\\` for a \
                 literal backslash"
            ),
        }
    }
}

/// Privilege handling prefixes (mutually exclusive in systemd).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Privilege {
    /// No prefix: `User=`, capabilities and sandboxing apply.
    #[default]
    Default,
    /// `+`: run with full privileges.
    Full,
    /// `!`: apply credentials but not the other sandboxing restrictions.
    NoSetuid,
    /// `!!`: like `!`, only on systems without ambient capabilities.
    Ambient,
}

/// One command of an `Exec*=` line.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ExecCommand {
    /// The executable: an absolute path or a bare file name (which newer
    /// systemd looks up in its fixed search path).
    pub path: String,
    /// The arguments, argv\[0\] included. Without `@`, argv\[0\] is `path`.
    pub argv: Vec<String>,
    /// `-`: a failing exit status is recorded but ignored.
    pub ignore_failure: bool,
    /// `@`: argv\[0\] was given separately, as the second word.
    pub separate_argv0: bool,
    /// `:`: no environment variable expansion.
    pub no_env_expand: bool,
    /// `+`, `!` or `!!`.
    pub privilege: Privilege,
}

/// A parsed `Exec*=` value: one command, or several separated by lone `;`
/// words. An empty value is systemd's reset assignment and parses to no
/// commands; the caller clears its list (unitfile.md §2.6).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExecLine {
    /// The commands, in order.
    pub commands: Vec<ExecCommand>,
    /// What systemd would have warned about.
    pub warnings: Vec<ExecWarning>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// `EXTRACT_UNQUOTE|EXTRACT_CUNESCAPE`, unknown escapes kept with a
    /// warning (`extract_first_word_and_warn`'s retry).
    CEscapesWarn,
    /// `EXTRACT_UNQUOTE|EXTRACT_CUNESCAPE`, unknown escapes are errors.
    CEscapesStrict,
    /// `EXTRACT_UNQUOTE|EXTRACT_RELAX`: backslash takes the next character
    /// literally; unterminated quotes and a trailing backslash are tolerated.
    Relaxed,
}

enum Unescaped {
    Byte(u8),
    Char(char),
}

/// systemd's `cunescape_one` with `accept_nul = false`: the escape after a
/// backslash, and how many bytes it used.
fn cunescape_one(rest: &[u8]) -> Option<(Unescaped, usize)> {
    let first = *rest.first()?;
    let hex = |n: usize| -> Option<u32> {
        let digits = rest.get(1..=n)?;
        digits.iter().try_fold(0u32, |acc, &d| {
            crate::name::hex_value(d).map(|v| acc << 4 | u32::from(v))
        })
    };
    let simple = |b: u8| Some((Unescaped::Byte(b), 1));
    match first {
        b'a' => simple(7),
        b'b' => simple(8),
        b'f' => simple(12),
        b'n' => simple(b'\n'),
        b'r' => simple(b'\r'),
        b't' => simple(b'\t'),
        b'v' => simple(11),
        b'\\' | b'"' | b'\'' => simple(first),
        b's' => simple(b' '),
        b'x' => {
            let v = hex(2)?;
            let b = u8::try_from(v).ok().filter(|&b| b != 0)?;
            Some((Unescaped::Byte(b), 3))
        }
        b'u' | b'U' => {
            let n = if first == b'u' { 4 } else { 8 };
            let c = char::from_u32(hex(n)?).filter(|&c| c != '\0')?;
            Some((Unescaped::Char(c), n + 1))
        }
        b'0'..=b'7' => {
            let digits = rest.get(..3)?;
            let v = digits.iter().try_fold(0u32, |acc, &d| match d {
                b'0'..=b'7' => Some(acc << 3 | u32::from(d - b'0')),
                _ => None,
            })?;
            let b = u8::try_from(v).ok().filter(|&b| b != 0)?;
            Some((Unescaped::Byte(b), 3))
        }
        _ => None,
    }
}

/// systemd's `extract_first_word` for the modes above. Returns `None` when
/// only whitespace is left. Leaves `pos` after the word and the whitespace
/// that follows it.
fn extract_word(
    s: &[u8],
    pos: &mut usize,
    mode: Mode,
    warnings: &mut Vec<ExecWarning>,
) -> Result<Option<Vec<u8>>, SyntaxError> {
    while s.get(*pos).is_some_and(|&c| is_ws(c)) {
        *pos += 1;
    }
    if *pos >= s.len() {
        return Ok(None);
    }
    let mut word = Vec::new();
    let mut quote: Option<(u8, usize)> = None;
    loop {
        let Some(&c) = s.get(*pos) else {
            if let Some((q, offset)) = quote {
                if mode != Mode::Relaxed {
                    return Err(SyntaxError::UnterminatedQuote {
                        quote: char::from(q),
                        offset,
                    });
                }
            }
            return Ok(Some(word));
        };
        if c == b'\\' {
            let at = *pos;
            let Some(&next) = s.get(at + 1) else {
                if mode == Mode::Relaxed {
                    *pos += 1;
                    return Ok(Some(word));
                }
                return Err(SyntaxError::TrailingBackslash { offset: at });
            };
            if mode == Mode::Relaxed {
                word.push(next);
                *pos += 2;
                continue;
            }
            match cunescape_one(&s[at + 1..]) {
                Some((Unescaped::Byte(b), used)) => {
                    word.push(b);
                    *pos += 1 + used;
                }
                Some((Unescaped::Char(ch), used)) => {
                    let mut buf = [0u8; 4];
                    word.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                    *pos += 1 + used;
                }
                None => {
                    let sequence = String::from_utf8_lossy(&s[at..(at + 2)]).into_owned();
                    if mode == Mode::CEscapesStrict {
                        return Err(SyntaxError::InvalidEscape {
                            sequence,
                            offset: at,
                        });
                    }
                    warnings.push(ExecWarning::UnknownEscape {
                        sequence,
                        offset: at,
                    });
                    word.push(b'\\');
                    word.push(next);
                    *pos += 2;
                }
            }
            continue;
        }
        match quote {
            Some((q, _)) => {
                if c != q {
                    word.push(c);
                } else {
                    quote = None;
                }
                *pos += 1;
            }
            None if c == b'"' || c == b'\'' => {
                quote = Some((c, *pos));
                *pos += 1;
            }
            None if is_ws(c) => {
                while s.get(*pos).is_some_and(|&c| is_ws(c)) {
                    *pos += 1;
                }
                return Ok(Some(word));
            }
            None => {
                word.push(c);
                *pos += 1;
            }
        }
    }
}

fn word_string(word: Vec<u8>, offset: usize) -> Result<String, SyntaxError> {
    String::from_utf8(word).map_err(|_| SyntaxError::InvalidUtf8 { offset })
}

fn skip_ws(s: &[u8], pos: &mut usize) {
    while s.get(*pos).is_some_and(|&c| is_ws(c)) {
        *pos += 1;
    }
}

/// Split a value into words with systemd's quoting and C escapes (§2.7),
/// rejecting unknown escapes. For settings documented as taking quoted
/// lists.
pub fn split_words(value: &str) -> Result<Vec<String>, SyntaxError> {
    let s = value.as_bytes();
    let mut pos = 0;
    let mut words = Vec::new();
    let mut warnings = Vec::new();
    loop {
        skip_ws(s, &mut pos);
        let start = pos;
        match extract_word(s, &mut pos, Mode::CEscapesStrict, &mut warnings)? {
            Some(w) => words.push(word_string(w, start)?),
            None => return Ok(words),
        }
    }
}

/// Parse an `Exec*=` value whose specifiers were already expanded.
///
/// ```
/// use keelson_unitfile::exec::parse_exec;
///
/// let line = parse_exec("-/usr/bin/docker kill hello").unwrap();
/// let cmd = &line.commands[0];
/// assert!(cmd.ignore_failure);
/// assert_eq!(cmd.path, "/usr/bin/docker");
/// assert_eq!(cmd.argv, ["/usr/bin/docker", "kill", "hello"]);
/// ```
pub fn parse_exec(value: &str) -> Result<ExecLine, ExecError> {
    let s = value.as_bytes();
    let mut pos = 0;
    let mut line = ExecLine::default();
    loop {
        skip_ws(s, &mut pos);
        let offset = pos;
        let Some(first) = extract_word(s, &mut pos, Mode::CEscapesWarn, &mut line.warnings)? else {
            return Ok(line);
        };
        let first = word_string(first, offset)?;
        let mut cmd = parse_prefixes(&first, offset)?;
        if !cmd.separate_argv0 {
            cmd.argv.push(cmd.path.clone());
        }
        let mut more = false;
        while let Some(rest) = s.get(pos..).filter(|r| !r.is_empty()) {
            let ends_word = |i: usize| rest.get(i).is_none_or(|&c| is_ws(c));
            if rest.starts_with(b"\\;") && ends_word(2) {
                pos += 2;
                skip_ws(s, &mut pos);
                cmd.argv.push(";".to_owned());
                continue;
            }
            if rest.starts_with(b";") && ends_word(1) {
                pos += 1;
                skip_ws(s, &mut pos);
                more = true;
                break;
            }
            let start = pos;
            match extract_word(s, &mut pos, Mode::CEscapesWarn, &mut line.warnings)? {
                Some(w) => cmd.argv.push(word_string(w, start)?),
                None => break,
            }
        }
        if cmd.argv.is_empty() {
            return Err(ExecError::MissingArgv0 { offset });
        }
        line.commands.push(cmd);
        if !more {
            return Ok(line);
        }
    }
}

/// Expand specifiers (§6), then [`parse_exec`], as systemd does when it
/// loads the unit.
pub fn parse_exec_with(value: &str, ctx: &SpecifierContext) -> Result<ExecLine, ExecError> {
    parse_exec(&expand(value, ctx)?)
}

/// The prefix state machine of systemd's `config_parse_exec`, then the
/// executable checks.
fn parse_prefixes(first: &str, offset: usize) -> Result<ExecCommand, ExecError> {
    let mut cmd = ExecCommand {
        path: String::new(),
        argv: Vec::new(),
        ignore_failure: false,
        separate_argv0: false,
        no_env_expand: false,
        privilege: Privilege::Default,
    };
    let mut used = 0;
    for c in first.bytes() {
        match c {
            b'-' if !cmd.ignore_failure => cmd.ignore_failure = true,
            b'@' if !cmd.separate_argv0 => cmd.separate_argv0 = true,
            b':' if !cmd.no_env_expand => cmd.no_env_expand = true,
            b'+' if cmd.privilege == Privilege::Default => cmd.privilege = Privilege::Full,
            b'!' if cmd.privilege == Privilege::Default => cmd.privilege = Privilege::NoSetuid,
            b'!' if cmd.privilege == Privilege::NoSetuid => cmd.privilege = Privilege::Ambient,
            _ => break,
        }
        used += 1;
    }
    let path = first.get(used..).unwrap_or("");
    if let Some(c) = path.chars().next().filter(|c| "-@:+!".contains(*c)) {
        return Err(ExecError::BadPrefix { prefix: c, offset });
    }
    if path.is_empty() {
        return Err(ExecError::EmptyPath { offset });
    }
    let owned = || path.to_owned();
    if path
        .chars()
        .any(|c| c < ' ' || c == '\x7f' || matches!(c, '"' | '\'' | '\\'))
    {
        return Err(ExecError::UnsafePath { path: owned() });
    }
    if path.ends_with('/') {
        return Err(ExecError::DirectoryPath { path: owned() });
    }
    if let Some(rel) = path.strip_prefix('/') {
        if rel
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..")
        {
            return Err(ExecError::NotNormalized { path: owned() });
        }
    } else if path.contains('/') || path == "." || path == ".." || path.len() > 255 {
        return Err(ExecError::NotAbsolute { path: owned() });
    }
    cmd.path = owned();
    Ok(cmd)
}

/// Quote one word so that systemd's splitter gives it back unchanged:
/// returned as is when it needs nothing, `\;` for a lone `;`, otherwise
/// double-quoted with C escapes. A NUL cannot be represented (systemd rejects
/// `\x00`); it is written as `\x00` and will not round-trip.
pub fn quote_word(word: &str) -> Cow<'_, str> {
    if word == ";" {
        return Cow::Borrowed("\\;");
    }
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| !(c.is_control() || c == ' ' || matches!(c, '"' | '\'' | '\\')));
    if plain {
        return Cow::Borrowed(word);
    }
    let mut out = String::with_capacity(word.len() + 2);
    out.push('"');
    for c in word.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if u32::from(c) < 0x20 || c == '\x7f' => {
                out.push_str(&format!("\\x{:02x}", u32::from(c)));
            }
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    Cow::Owned(out)
}

impl fmt::Display for ExecCommand {
    /// The command as an `Exec*=` value that [`parse_exec`] reads back to an
    /// equal command. Without `@`, argv\[0\] is not written (it is the path).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.ignore_failure {
            f.write_str("-")?;
        }
        if self.separate_argv0 {
            f.write_str("@")?;
        }
        if self.no_env_expand {
            f.write_str(":")?;
        }
        f.write_str(match self.privilege {
            Privilege::Default => "",
            Privilege::Full => "+",
            Privilege::NoSetuid => "!",
            Privilege::Ambient => "!!",
        })?;
        f.write_str(&quote_word(&self.path))?;
        let skip = usize::from(!self.separate_argv0);
        for arg in self.argv.iter().skip(skip) {
            write!(f, " {}", quote_word(arg))?;
        }
        Ok(())
    }
}

impl fmt::Display for ExecLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, cmd) in self.commands.iter().enumerate() {
            if i > 0 {
                f.write_str(" ; ")?;
            }
            write!(f, "{cmd}")?;
        }
        Ok(())
    }
}

impl ExecCommand {
    /// The argv the program receives, after environment expansion (systemd's
    /// `replace_env_argv`), unless the `:` prefix turned it off.
    ///
    /// - A word that starts with `$` not followed by `{` or `$` names a
    ///   variable with the rest of the word; it is replaced by the value split
    ///   on whitespace (quotes in the value group words), or by nothing when
    ///   the variable is unset. As in systemd, `$FOO/bar` therefore looks up
    ///   a variable called `FOO/bar`.
    /// - Elsewhere, `${NAME}` is replaced by the value as one piece (empty when
    ///   unset) and `$$` by `$`; any other `$` (`$?`, `$(…)`) is kept.
    pub fn expand_env<S: BuildHasher>(&self, env: &HashMap<String, String, S>) -> Vec<String> {
        if self.no_env_expand {
            return self.argv.clone();
        }
        let mut out = Vec::with_capacity(self.argv.len());
        for word in &self.argv {
            match word.strip_prefix('$') {
                Some(name) if !name.starts_with('{') && !name.starts_with('$') => {
                    if let Some(value) = env.get(name) {
                        out.extend(split_env_value(value));
                    }
                }
                _ => out.push(expand_braced(word, env)),
            }
        }
        out
    }
}

/// Split a variable's value for `$FOO` (`EXTRACT_RELAX|EXTRACT_UNQUOTE`).
fn split_env_value(value: &str) -> Vec<String> {
    let s = value.as_bytes();
    let mut pos = 0;
    let mut words = Vec::new();
    let mut warnings = Vec::new();
    while let Ok(Some(w)) = extract_word(s, &mut pos, Mode::Relaxed, &mut warnings) {
        words.push(String::from_utf8_lossy(&w).into_owned());
    }
    words
}

/// `${NAME}` and `$$` inside a word.
fn expand_braced<S: BuildHasher>(word: &str, env: &HashMap<String, String, S>) -> String {
    let mut out = String::with_capacity(word.len());
    let mut rest = word;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            match body.find('}') {
                Some(end) if is_valid_env_name(&body[..end]) => {
                    if let Some(v) = env.get(&body[..end]) {
                        out.push_str(v);
                    }
                    rest = &body[end + 1..];
                }
                _ => {
                    out.push_str("${");
                    rest = body;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// systemd's `env_name_is_valid`: `[A-Za-z_][A-Za-z0-9_]*`.
pub fn is_valid_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Why an `Environment=` value was rejected. systemd logs these and skips
/// the word (or, for syntax errors, the whole line); Keelson reports them so
/// that the unit author can fix them.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EnvironmentError {
    /// Broken quoting or escaping.
    #[error(transparent)]
    Syntax(#[from] SyntaxError),
    /// Specifier expansion failed.
    #[error(transparent)]
    Specifier(#[from] SpecifierError),
    /// A word without `=`.
    #[error("`{word}` is not an assignment; write NAME=value (quote the whole assignment if the value has spaces)")]
    MissingEquals {
        /// The word.
        word: String,
    },
    /// The name is not `[A-Za-z_][A-Za-z0-9_]*`.
    #[error("`{name}` is not a valid environment variable name; use letters, digits and `_`, not starting with a digit")]
    InvalidName {
        /// The name.
        name: String,
    },
}

/// Parse an `Environment=` value into its assignments, in order
/// (unitfile.md §10.3 V17: `"A=b c" D=e` is `A`=`b c`, `D`=`e`). An empty
/// value is the reset assignment and yields nothing.
pub fn parse_environment(value: &str) -> Result<Vec<(String, String)>, EnvironmentError> {
    split_words(value)?
        .into_iter()
        .map(|word| assignment(&word))
        .collect()
}

/// Like [`parse_environment`], expanding specifiers in each assignment after
/// splitting, as current systemd does.
pub fn parse_environment_with(
    value: &str,
    ctx: &SpecifierContext,
) -> Result<Vec<(String, String)>, EnvironmentError> {
    split_words(value)?
        .into_iter()
        .map(|word| assignment(&expand(&word, ctx)?))
        .collect()
}

fn assignment(word: &str) -> Result<(String, String), EnvironmentError> {
    let (name, value) = word
        .split_once('=')
        .ok_or_else(|| EnvironmentError::MissingEquals {
            word: word.to_owned(),
        })?;
    if !is_valid_env_name(name) {
        return Err(EnvironmentError::InvalidName {
            name: name.to_owned(),
        });
    }
    Ok((name.to_owned(), value.to_owned()))
}

/// A parsed `EnvironmentFile=`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EnvironmentFile {
    /// Assignments in file order; a later one of the same name wins.
    pub vars: Vec<(String, String)>,
    /// Lines systemd ignores, kept so that a caller can warn.
    pub skipped: Vec<SkippedLine>,
}

/// A line of an environment file that yields no variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedLine {
    /// 1-based line where the entry starts.
    pub line: usize,
    /// The key as read.
    pub key: String,
    /// Why it was skipped.
    pub reason: SkipReason,
}

/// Why an environment-file entry was skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    /// The line has no `=`.
    MissingEquals,
    /// The key is not a valid variable name.
    InvalidName,
}

impl fmt::Display for SkippedLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.reason {
            SkipReason::MissingEquals => write!(
                f,
                "line {}: `{}` has no `=`, ignored; write KEY=value",
                self.line, self.key
            ),
            SkipReason::InvalidName => write!(
                f,
                "line {}: `{}` is not a valid variable name, ignored; use letters, digits and `_`",
                self.line, self.key
            ),
        }
    }
}

impl EnvironmentFile {
    /// The variables as a map (last assignment wins).
    pub fn to_map(&self) -> HashMap<String, String> {
        self.vars.iter().cloned().collect()
    }
}

/// Parse the contents of a file named by `EnvironmentFile=` (systemd's
/// `parse_env_file`): `KEY=VALUE` lines; `#` and `;` start comment lines;
/// whitespace around keys and before values is dropped, and trailing
/// whitespace of unquoted values; `'…'` is literal, `"…"` honours `\"`,
/// `\\`, `` \` ``, `\$` and backslash-newline (other escapes keep their
/// backslash); outside quotes a backslash takes the next character literally
/// and backslash-newline continues the line. Specifiers are not expanded
/// here, as in systemd.
pub fn parse_environment_file(text: &str) -> EnvironmentFile {
    #[derive(Clone, Copy, PartialEq, Eq)]
    enum St {
        PreKey,
        Key,
        PreValue,
        Value,
        ValueEscape,
        Single,
        Double,
        DoubleEscape,
        Comment,
    }
    let is_nl = |c: char| c == '\n' || c == '\r';
    let is_space = |c: char| matches!(c, ' ' | '\t' | '\n' | '\r');
    let mut out = EnvironmentFile::default();
    let mut st = St::PreKey;
    let mut key = String::new();
    let mut key_ws: Option<usize> = None;
    let mut value = String::new();
    let mut value_ws: Option<usize> = None;
    let mut line = 1;
    let mut key_line = 1;

    let push = |out: &mut EnvironmentFile,
                key: &mut String,
                key_ws: Option<usize>,
                value: &mut String,
                value_ws: Option<usize>,
                line: usize| {
        if let Some(w) = key_ws {
            key.truncate(w);
        }
        if let Some(w) = value_ws {
            value.truncate(w);
        }
        if is_valid_env_name(key) {
            out.vars.push((std::mem::take(key), std::mem::take(value)));
        } else {
            out.skipped.push(SkippedLine {
                line,
                key: std::mem::take(key),
                reason: SkipReason::InvalidName,
            });
            value.clear();
        }
    };

    for c in text.chars() {
        match st {
            St::PreKey => {
                if c == '#' || c == ';' {
                    st = St::Comment;
                } else if !is_space(c) {
                    st = St::Key;
                    key.clear();
                    key.push(c);
                    key_ws = None;
                    key_line = line;
                }
            }
            St::Key => {
                if is_nl(c) {
                    out.skipped.push(SkippedLine {
                        line: key_line,
                        key: std::mem::take(&mut key),
                        reason: SkipReason::MissingEquals,
                    });
                    st = St::PreKey;
                } else if c == '=' {
                    st = St::PreValue;
                    value.clear();
                    value_ws = None;
                } else {
                    if !is_space(c) {
                        key_ws = None;
                    } else if key_ws.is_none() {
                        key_ws = Some(key.len());
                    }
                    key.push(c);
                }
            }
            St::PreValue => {
                if is_nl(c) {
                    push(&mut out, &mut key, key_ws, &mut value, None, key_line);
                    st = St::PreKey;
                } else if c == '\'' {
                    st = St::Single;
                } else if c == '"' {
                    st = St::Double;
                } else if c == '\\' {
                    st = St::ValueEscape;
                } else if !is_space(c) {
                    st = St::Value;
                    value.push(c);
                }
            }
            St::Value => {
                if is_nl(c) {
                    push(&mut out, &mut key, key_ws, &mut value, value_ws, key_line);
                    st = St::PreKey;
                } else if c == '\\' {
                    st = St::ValueEscape;
                    value_ws = None;
                } else {
                    if !is_space(c) {
                        value_ws = None;
                    } else if value_ws.is_none() {
                        value_ws = Some(value.len());
                    }
                    value.push(c);
                }
            }
            St::ValueEscape => {
                st = St::Value;
                if !is_nl(c) {
                    value.push(c);
                }
            }
            St::Single => {
                if c == '\'' {
                    st = St::PreValue;
                } else {
                    value.push(c);
                }
            }
            St::Double => {
                if c == '"' {
                    st = St::PreValue;
                } else if c == '\\' {
                    st = St::DoubleEscape;
                } else {
                    value.push(c);
                }
            }
            St::DoubleEscape => {
                st = St::Double;
                if matches!(c, '"' | '\\' | '`' | '$') {
                    value.push(c);
                } else if c != '\n' {
                    value.push('\\');
                    value.push(c);
                }
            }
            St::Comment => {
                if is_nl(c) {
                    st = St::PreKey;
                }
            }
        }
        if c == '\n' {
            line += 1;
        }
    }
    match st {
        St::Value => push(&mut out, &mut key, key_ws, &mut value, value_ws, key_line),
        St::PreValue | St::ValueEscape | St::Single | St::Double | St::DoubleEscape => {
            push(&mut out, &mut key, key_ws, &mut value, None, key_line)
        }
        St::Key => out.skipped.push(SkippedLine {
            line: key_line,
            key,
            reason: SkipReason::MissingEquals,
        }),
        St::PreKey | St::Comment => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::name::UnitName;
    use proptest::prelude::*;

    fn one(value: &str) -> ExecCommand {
        let line = parse_exec(value).unwrap_or_else(|e| panic!("{value}: {e}"));
        assert_eq!(line.commands.len(), 1, "{value}");
        line.commands.into_iter().next().unwrap()
    }

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn helloglobal_commands() {
        let c = one("-/usr/bin/docker kill hello");
        assert!(c.ignore_failure && !c.separate_argv0);
        assert_eq!(c.argv, ["/usr/bin/docker", "kill", "hello"]);
        let c = one(
            "/usr/bin/docker run --name hello busybox /bin/sh -c \"while true; do echo Hello World; sleep 1; done\"",
        );
        assert!(!c.ignore_failure);
        assert_eq!(
            c.argv,
            [
                "/usr/bin/docker",
                "run",
                "--name",
                "hello",
                "busybox",
                "/bin/sh",
                "-c",
                "while true; do echo Hello World; sleep 1; done"
            ]
        );
    }

    #[test]
    fn flannel_json_argument() {
        let c = one(
            "/usr/bin/etcdctl set /coreos.com/network/config '{ \"Network\": \"10.1.0.0/16\" }'",
        );
        assert_eq!(c.argv[3], "{ \"Network\": \"10.1.0.0/16\" }");
    }

    #[test]
    fn unitspec_semicolons() {
        let unit = UnitName::parse("unitspec.service").unwrap();
        let ctx = SpecifierContext::system(unit)
            .with_host_name("core-01")
            .with_machine_id("2f8e1c4e9c7a4e6b9d0e5b1a3c7d9e11")
            .with_boot_id("0123456789abcdef0123456789abcdef");
        let line = parse_exec_with(
            "/usr/bin/etcdctl set hostname %H ; /usr/bin/etcdctl set machinename %m ; \
             /usr/bin/etcdctl set bootid %b ; /usr/bin/etcdctl set unitname %n ; \
             /usr/bin/etcdctl set username %u",
            &ctx,
        )
        .unwrap();
        let argvs: Vec<_> = line.commands.iter().map(|c| c.argv.join(" ")).collect();
        assert_eq!(
            argvs,
            [
                "/usr/bin/etcdctl set hostname core-01",
                "/usr/bin/etcdctl set machinename 2f8e1c4e9c7a4e6b9d0e5b1a3c7d9e11",
                "/usr/bin/etcdctl set bootid 0123456789abcdef0123456789abcdef",
                "/usr/bin/etcdctl set unitname unitspec.service",
                "/usr/bin/etcdctl set username root",
            ]
        );
        // Trailing ` ;` ends the list without an extra command.
        let line = parse_exec(
            "/usr/bin/etcdctl get hostname ; /usr/bin/etcdctl get machinename ; \
             /usr/bin/etcdctl get username ;",
        )
        .unwrap();
        assert_eq!(line.commands.len(), 3);
        assert_eq!(
            line.commands[2].argv,
            ["/usr/bin/etcdctl", "get", "username"]
        );
    }

    #[test]
    fn semicolon_forms() {
        let c = one("/bin/echo a \\; b");
        assert_eq!(c.argv, ["/bin/echo", "a", ";", "b"]);
        let c = one("/bin/echo a\\; \";\" ';'");
        assert_eq!(c.argv, ["/bin/echo", "a\\;", ";", ";"]);
        let c = one("/bin/echo a;b ;b");
        assert_eq!(c.argv, ["/bin/echo", "a;b", ";b"]);
        let line = parse_exec("/bin/a;/bin/b ; /bin/c\t;\t/bin/d").unwrap();
        assert_eq!(line.commands.len(), 3);
        assert_eq!(line.commands[0].path, "/bin/a;/bin/b");
        assert_eq!(line.commands[2].path, "/bin/d");
        // Warning for the unknown `\;` escape inside a word.
        let line = parse_exec("/bin/echo a\\;").unwrap();
        assert_eq!(line.warnings.len(), 1);
        assert!(line.warnings[0].to_string().contains("\\;"));
    }

    #[test]
    fn sidekick_single_quotes_with_escapes() {
        // C19 after continuation joining (backslash-newline becomes a space).
        let value = "/bin/bash -c ' while true; do curl -f 10.0.0.1:80; if [ $? -eq 0 ]; then \
                     etcdctl set /services/apachet/10.0.0.1 \\'{\"host\": \"core-01\", \
                     \"ipv4_addr\": 10.0.0.1, \"port\": 80}\\' --ttl 30; else etcdctl rm \
                     /services/apachet/10.0.0.1; fi; sleep 20; done'";
        let c = one(value);
        assert_eq!(c.argv.len(), 3);
        assert!(c.argv[2].contains(
            "etcdctl set /services/apachet/10.0.0.1 '{\"host\": \"core-01\", \"ipv4_addr\": \
             10.0.0.1, \"port\": 80}' --ttl 30;"
        ));
        assert!(c.argv[2].contains("$?"));
        // `$?` reaches bash untouched after env expansion too.
        let argv = c.expand_env(&env(&[]));
        assert!(argv[2].contains("[ $? -eq 0 ]"));
    }

    #[test]
    fn quotes_mid_word_and_escapes() {
        let c = one("/bin/x a\"b c\"d 'e f'g \"\" ''");
        assert_eq!(c.argv, ["/bin/x", "ab cd", "e fg", "", ""]);
        let c = one(r#"/bin/x \a\b\f\n\r\t\v\\\"\'\s \x41\101\u00e9\U0001F600"#);
        assert_eq!(c.argv[1], "\x07\x08\x0c\n\r\t\x0b\\\"' ");
        assert_eq!(c.argv[2], "AAé😀");
        // Byte escapes that form UTF-8.
        assert_eq!(one("/bin/x \\xc3\\xa9").argv[1], "é");
        // Unknown or NUL escapes are kept with a warning.
        let line = parse_exec("/bin/x \\q \\x00 \\x4").unwrap();
        assert_eq!(line.commands[0].argv[1..], ["\\q", "\\x00", "\\x4"]);
        assert_eq!(line.warnings.len(), 3);
        // Escaped whitespace does not split.
        assert_eq!(one("/bin/x a\\ b").argv[1..], ["a\\ b"]);
        assert_eq!(one("/bin/x a\\sb").argv[1..], ["a b"]);
    }

    #[test]
    fn prefixes() {
        let c = one("-@/bin/sh mysh -c true");
        assert!(c.ignore_failure && c.separate_argv0);
        assert_eq!(c.path, "/bin/sh");
        assert_eq!(c.argv, ["mysh", "-c", "true"]);
        let c = one("@-/bin/sh sh");
        assert!(c.ignore_failure && c.separate_argv0);
        let c = one("+/bin/true");
        assert_eq!(c.privilege, Privilege::Full);
        let c = one("!/bin/true");
        assert_eq!(c.privilege, Privilege::NoSetuid);
        let c = one("!!/bin/true");
        assert_eq!(c.privilege, Privilege::Ambient);
        let c = one("!-!:/bin/true");
        assert_eq!(c.privilege, Privilege::Ambient);
        assert!(c.ignore_failure && c.no_env_expand);
        let c = one("\"-/opt/my app/run\" x");
        assert!(c.ignore_failure);
        assert_eq!(c.path, "/opt/my app/run");
        for (bad, p) in [
            ("--/bin/x", '-'),
            ("+!/bin/x", '!'),
            ("!!!/bin/x", '!'),
            ("!+/bin/x", '+'),
            ("@@/bin/x", '@'),
        ] {
            assert!(
                matches!(parse_exec(bad), Err(ExecError::BadPrefix { prefix, .. }) if prefix == p),
                "{bad}"
            );
        }
    }

    #[test]
    fn executable_checks() {
        assert!(matches!(parse_exec("-"), Err(ExecError::EmptyPath { .. })));
        assert!(matches!(
            parse_exec("@/bin/sh"),
            Err(ExecError::MissingArgv0 { .. })
        ));
        assert!(matches!(
            parse_exec("@/bin/sh ; /bin/true"),
            Err(ExecError::MissingArgv0 { .. })
        ));
        assert!(matches!(
            parse_exec("bin/sh"),
            Err(ExecError::NotAbsolute { .. })
        ));
        assert!(matches!(
            parse_exec("/usr/bin/"),
            Err(ExecError::DirectoryPath { .. })
        ));
        assert!(matches!(
            parse_exec("/usr//bin/x"),
            Err(ExecError::NotNormalized { .. })
        ));
        assert!(matches!(
            parse_exec("/usr/../bin/x"),
            Err(ExecError::NotNormalized { .. })
        ));
        assert!(matches!(
            parse_exec("/bin/a\\\\b"),
            Err(ExecError::UnsafePath { .. })
        ));
        assert!(matches!(
            parse_exec("/bin/a\\nb"),
            Err(ExecError::UnsafePath { .. })
        ));
        assert!(matches!(
            parse_exec("/bin/x 'open"),
            Err(ExecError::Syntax(SyntaxError::UnterminatedQuote {
                quote: '\'',
                offset: 7
            }))
        ));
        assert!(matches!(
            parse_exec("/bin/x a\\"),
            Err(ExecError::Syntax(SyntaxError::TrailingBackslash {
                offset: 8
            }))
        ));
        assert!(matches!(
            parse_exec("/bin/x \\xff"),
            Err(ExecError::Syntax(SyntaxError::InvalidUtf8 { offset: 7 }))
        ));
        // Bare names are allowed (newer systemd's search path).
        assert_eq!(one("true").path, "true");
        // Empty value: reset, no commands.
        assert_eq!(parse_exec("").unwrap(), ExecLine::default());
        assert!(parse_exec("   ").unwrap().commands.is_empty());
        let e = parse_exec("bin/sh").unwrap_err().to_string();
        assert!(e.contains("/full/path"), "{e}");
    }

    #[test]
    fn specifier_errors_propagate() {
        let ctx = SpecifierContext::system(UnitName::parse("a.service").unwrap());
        assert!(matches!(
            parse_exec_with("/bin/echo %q", &ctx),
            Err(ExecError::Specifier(SpecifierError::Unknown {
                specifier: 'q',
                offset: 10
            }))
        ));
    }

    #[test]
    fn environment_expansion() {
        let e = env(&[
            ("COREOS_PUBLIC_IPV4", "172.17.8.101"),
            ("OPTS", "-a  -b \"c d\""),
            ("EMPTY", ""),
        ]);
        // C02: ${VAR} inside a word.
        let c = one("/usr/bin/docker run --name nginx -p ${COREOS_PUBLIC_IPV4}:8080:80 nginx");
        assert_eq!(c.expand_env(&e)[5], "172.17.8.101:8080:80");
        // $VAR as a word splits, honouring quotes in the value.
        let c = one("/bin/x $OPTS ${OPTS} $UNSET ${UNSET} $EMPTY x$$y $$OPTS $");
        assert_eq!(
            c.expand_env(&e),
            [
                "/bin/x",
                "-a",
                "-b",
                "c d",
                "-a  -b \"c d\"",
                "",
                "x$y",
                "$OPTS"
            ]
        );
        // `:` disables expansion entirely.
        let c = one(":/bin/x $OPTS $$");
        assert_eq!(c.expand_env(&e), ["/bin/x", "$OPTS", "$$"]);
        // Malformed braces stay literal.
        let c = one("/bin/x ${A ${a-b} $} ${");
        // `$}` is a whole-word `$NAME` lookup of `}`: unset, so it vanishes
        // (systemd does the same).
        assert_eq!(c.expand_env(&e)[1..], ["${A", "${a-b}", "${"]);
        // C40: ${ETCD_NAME}= inside a flag.
        let c = one("/usr/bin/etcd2 --initial-cluster=${ETCD_NAME}=http://${IP}:2380");
        let e = env(&[("ETCD_NAME", "core-01"), ("IP", "10.0.0.5")]);
        assert_eq!(
            c.expand_env(&e)[1],
            "--initial-cluster=core-01=http://10.0.0.5:2380"
        );
    }

    #[test]
    fn display_round_trips() {
        for v in [
            "-/usr/bin/docker kill hello",
            "@/bin/sh mysh -c \"echo hi\"",
            "/bin/x \\; \"\" \"a b\" \"\\n\"",
            "!!:/bin/x $FOO",
            "/bin/a ; -/bin/b",
        ] {
            let line = parse_exec(v).unwrap();
            let again = parse_exec(&line.to_string()).unwrap();
            assert_eq!(line.commands, again.commands, "{v} -> {line}");
        }
        assert_eq!(quote_word(";"), "\\;");
        assert_eq!(quote_word(""), "\"\"");
        assert_eq!(quote_word("plain"), "plain");
        assert_eq!(quote_word("it's"), "\"it's\"");
        assert_eq!(quote_word("a\u{1}"), "\"a\\x01\"");
    }

    #[test]
    fn environment_values() {
        assert_eq!(
            parse_environment("\"A=b c\" D=e").unwrap(),
            [("A".into(), "b c".into()), ("D".into(), "e".into())]
        );
        assert_eq!(
            parse_environment("\"ETCD_INITIAL_CLUSTER=etcdserver=http://172.17.8.101:2380\"")
                .unwrap(),
            [(
                "ETCD_INITIAL_CLUSTER".into(),
                "etcdserver=http://172.17.8.101:2380".into()
            )]
        );
        assert_eq!(
            parse_environment("\"FLEET_METADATA=role=services\"").unwrap(),
            [("FLEET_METADATA".into(), "role=services".into())]
        );
        assert_eq!(
            parse_environment("ETCD_NAME=core-01").unwrap(),
            [("ETCD_NAME".into(), "core-01".into())]
        );
        assert_eq!(
            parse_environment("A= B=x\\ty").unwrap(),
            [("A".into(), "".into()), ("B".into(), "x\ty".into())]
        );
        assert!(parse_environment("").unwrap().is_empty());
        assert!(matches!(
            parse_environment("A=b NOEQ"),
            Err(EnvironmentError::MissingEquals { .. })
        ));
        assert!(matches!(
            parse_environment("1A=b"),
            Err(EnvironmentError::InvalidName { .. })
        ));
        assert!(matches!(
            parse_environment("A=\"b"),
            Err(EnvironmentError::Syntax(
                SyntaxError::UnterminatedQuote { .. }
            ))
        ));
        assert!(matches!(
            parse_environment("A=\\q"),
            Err(EnvironmentError::Syntax(SyntaxError::InvalidEscape {
                offset: 2,
                ..
            }))
        ));
        let ctx = SpecifierContext::system(UnitName::parse("etcd2.service").unwrap())
            .with_machine_id("0123456789abcdef0123456789abcdef");
        assert_eq!(
            parse_environment_with("ETCD_NAME=%m \"UNIT=%n x\"", &ctx).unwrap(),
            [
                (
                    "ETCD_NAME".into(),
                    "0123456789abcdef0123456789abcdef".into()
                ),
                ("UNIT".into(), "etcd2.service x".into())
            ]
        );
    }

    #[test]
    fn environment_files() {
        let text =
            "# CoreOS\nCOREOS_PUBLIC_IPV4=172.17.8.101\n  COREOS_PRIVATE_IPV4 = 10.0.0.1  \n\
                    ; semicolon comment\nQ1='a \"b\" \\n'\nQ2=\"x \\\"y\\\" \\$z \\q\"\n\
                    CONT=a\\\nb\nNOEQ\n9BAD=x\nEMPTY=\nESC=a\\ \nMIX=\"a\" 'b'c d\r\nLAST=end";
        let f = parse_environment_file(text);
        let m = f.to_map();
        assert_eq!(m["COREOS_PUBLIC_IPV4"], "172.17.8.101");
        assert_eq!(m["COREOS_PRIVATE_IPV4"], "10.0.0.1");
        assert_eq!(m["Q1"], "a \"b\" \\n");
        assert_eq!(m["Q2"], "x \"y\" $z \\q");
        assert_eq!(m["CONT"], "ab");
        assert_eq!(m["EMPTY"], "");
        assert_eq!(m["ESC"], "a ");
        assert_eq!(m["MIX"], "abc d");
        assert_eq!(m["LAST"], "end");
        assert_eq!(f.vars.len(), 9);
        assert_eq!(
            f.skipped,
            [
                SkippedLine {
                    line: 9,
                    key: "NOEQ".into(),
                    reason: SkipReason::MissingEquals
                },
                SkippedLine {
                    line: 10,
                    key: "9BAD".into(),
                    reason: SkipReason::InvalidName
                },
            ]
        );
        assert!(f.skipped[0].to_string().contains("line 9"));
        // Unterminated quote at end of file keeps what was read.
        assert_eq!(parse_environment_file("A=\"abc").to_map()["A"], "abc");
        assert_eq!(parse_environment_file("A").skipped.len(), 1);
        assert_eq!(parse_environment_file("").vars.len(), 0);
        // Later assignment wins in the map.
        assert_eq!(parse_environment_file("A=1\nA=2\n").to_map()["A"], "2");
    }

    fn arb_command() -> impl Strategy<Value = ExecCommand> {
        (
            proptest::collection::vec("[a-z0-9 ._-]{1,6}", 1..4),
            proptest::collection::vec("[^\\x00]{0,12}", 0..5),
            any::<(bool, bool, bool)>(),
            0..4u8,
        )
            .prop_filter_map("path components", |(parts, args, (ig, at, noenv), p)| {
                if parts.iter().any(|c| c == "." || c == "..") {
                    return None;
                }
                let path = format!("/{}", parts.join("/"));
                let mut argv = args;
                if at {
                    argv.insert(0, "argv0".to_owned());
                } else {
                    argv.insert(0, path.clone());
                }
                Some(ExecCommand {
                    path,
                    argv,
                    ignore_failure: ig,
                    separate_argv0: at,
                    no_env_expand: noenv,
                    privilege: match p {
                        0 => Privilege::Default,
                        1 => Privilege::Full,
                        2 => Privilege::NoSetuid,
                        _ => Privilege::Ambient,
                    },
                })
            })
    }

    proptest! {
        #[test]
        fn exec_quoting_round_trip(cmds in proptest::collection::vec(arb_command(), 1..4)) {
            let line = ExecLine { commands: cmds, warnings: vec![] };
            let text = line.to_string();
            let parsed = parse_exec(&text).unwrap();
            prop_assert_eq!(parsed.commands, line.commands);
            prop_assert!(parsed.warnings.is_empty());
        }

        #[test]
        fn split_words_round_trip(words in proptest::collection::vec("[^\\x00]{0,12}", 0..6)) {
            // `\;` is only special to the command-line parser.
            let text: Vec<String> = words
                .iter()
                .map(|w| if w == ";" { "\";\"".to_owned() } else { quote_word(w).into_owned() })
                .collect();
            let text = text.join(" ");
            prop_assert_eq!(split_words(&text).unwrap(), words);
        }

        #[test]
        fn parsers_never_panic(s in "\\PC*") {
            let _ = parse_exec(&s);
            let _ = parse_environment(&s);
            let _ = parse_environment_file(&s);
            if let Ok(line) = parse_exec(&s) {
                for c in &line.commands {
                    let _ = c.expand_env(&env(&[("A", "x y")]));
                }
            }
        }

        #[test]
        fn env_file_round_trip(vars in proptest::collection::vec(("[A-Z_][A-Z0-9_]{0,6}", "[^\\x00]{0,12}"), 0..6)) {
            let mut text = String::new();
            for (k, v) in &vars {
                let q = v.replace('\'', "'\"'\"'");
                text.push_str(&format!("{k}='{q}'\n"));
            }
            let f = parse_environment_file(&text);
            prop_assert_eq!(f.vars, vars);
        }
    }
}
