//! Unit names: the grammar, template/instance structure, and `systemd-escape`.
//!
//! A unit's name is also its identity everywhere else in the stack: fleet keys
//! its registry by it, `[X-Fleet] Conflicts=` globs match against it, and `%i`,
//! `%p`, `%f` are cut out of it. So the name is parsed once into a [`UnitName`]
//! that remembers where the `@` and the type suffix are, and every consumer
//! asks it instead of re-splitting strings. Escaping follows systemd's
//! `unit_name_escape`/`unit_name_path_escape` byte for byte, because mount
//! units must be named exactly after their mount point (`/var/lib/docker` ↔
//! `var-lib-docker.mount`).

use std::fmt;
use std::str::FromStr;

use thiserror::Error;

/// Longest unit name systemd accepts, suffix included (current
/// systemd.unit(5); fleet checked 256, so a name of exactly 256 bytes that
/// fleet took is rejected here).
pub const MAX_UNIT_NAME_LEN: usize = 255;

/// What went wrong with a unit name, an escaped string or a path to escape.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NameError {
    /// The name is the empty string.
    #[error("unit name is empty; give a name such as `foo.service`")]
    Empty,
    /// The name is longer than [`MAX_UNIT_NAME_LEN`].
    #[error("unit name is {len} bytes long; systemd accepts at most {max}, shorten it")]
    TooLong {
        /// Length of the offending name in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// No `.` separating a type suffix.
    #[error("unit name `{name}` has no type suffix; append one such as `.service`")]
    NoSuffix {
        /// The offending name.
        name: String,
    },
    /// The suffix after the last `.` is not a unit type.
    #[error(
        "unit name `{name}` has unknown type `.{suffix}`; use one of .service .socket .device \
         .mount .automount .swap .target .path .timer .slice .scope"
    )]
    UnknownType {
        /// The offending name.
        name: String,
        /// The text after the last `.`.
        suffix: String,
    },
    /// The part before the suffix is empty or starts with `@`.
    #[error("unit name `{name}` has an empty prefix; put a name before the `@` or `.`")]
    EmptyPrefix {
        /// The offending name.
        name: String,
    },
    /// A character outside `[A-Za-z0-9:_.@\-\\]` before the suffix.
    #[error(
        "unit name `{name}` contains `{ch}` at byte {offset}; only ASCII letters, digits and \
         `:-_.@\\` are allowed (escape other characters with systemd-escape)"
    )]
    InvalidChar {
        /// The offending name.
        name: String,
        /// The character that is not allowed.
        ch: char,
        /// Its byte offset in the name.
        offset: usize,
    },
    /// An `@` in a unit type that cannot be templated.
    #[error(
        "unit name `{name}`: .{unit_type} units cannot be templates or instances; only .service \
         .socket .target .timer .path units can carry `@`"
    )]
    NotTemplatable {
        /// The offending name.
        name: String,
        /// Its type.
        unit_type: UnitType,
    },
    /// An instance was requested from a name that is not a template.
    #[error("`{name}` is not a template (`prefix@.type`), so no instance can be made from it")]
    NotATemplate {
        /// The name that was used as a template.
        name: String,
    },
    /// An empty instance string was given to build an instance.
    #[error("instance string is empty; `{template}` itself is the template")]
    EmptyInstance {
        /// The template.
        template: String,
    },
    /// A `\` in an escaped string not followed by `x` and two hex digits.
    #[error(
        "`{input}` has an invalid escape at byte {offset}; systemd escapes are `\\xNN` with two \
         hex digits"
    )]
    InvalidEscape {
        /// The escaped string.
        input: String,
        /// Byte offset of the backslash.
        offset: usize,
    },
    /// Unescaping produced bytes that are not UTF-8.
    #[error("`{input}` unescapes to bytes that are not valid UTF-8")]
    InvalidUtf8 {
        /// The escaped string.
        input: String,
    },
    /// A path with a `..` component cannot name a unit.
    #[error("path `{path}` contains a `..` component; give the normalised path instead")]
    PathNotNormalized {
        /// The offending path.
        path: String,
    },
    /// An escaped path that unescapes to something with a leading or trailing
    /// `/`, an empty component or a `.`/`..` component.
    #[error(
        "`{input}` is not an escaped path: it unescapes to `{path}`, which is not a normalised \
         absolute path (use systemd-escape --path to produce one)"
    )]
    InvalidPathEscape {
        /// The escaped string.
        input: String,
        /// What it unescaped to.
        path: String,
    },
}

/// The unit types systemd and fleet know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum UnitType {
    /// `.service`
    Service,
    /// `.socket`
    Socket,
    /// `.device`
    Device,
    /// `.mount`
    Mount,
    /// `.automount`
    Automount,
    /// `.swap`
    Swap,
    /// `.target`
    Target,
    /// `.path`
    Path,
    /// `.timer`
    Timer,
    /// `.slice`
    Slice,
    /// `.scope`
    Scope,
    /// `.snapshot`: removed from systemd in v228, still accepted by fleet.
    Snapshot,
    /// `.busname`: removed from systemd in v230, still accepted by fleet.
    Busname,
}

impl UnitType {
    /// Every type, current ones first.
    pub const ALL: [UnitType; 13] = [
        UnitType::Service,
        UnitType::Socket,
        UnitType::Device,
        UnitType::Mount,
        UnitType::Automount,
        UnitType::Swap,
        UnitType::Target,
        UnitType::Path,
        UnitType::Timer,
        UnitType::Slice,
        UnitType::Scope,
        UnitType::Snapshot,
        UnitType::Busname,
    ];

    /// The suffix without the dot, e.g. `service`.
    pub fn as_str(self) -> &'static str {
        match self {
            UnitType::Service => "service",
            UnitType::Socket => "socket",
            UnitType::Device => "device",
            UnitType::Mount => "mount",
            UnitType::Automount => "automount",
            UnitType::Swap => "swap",
            UnitType::Target => "target",
            UnitType::Path => "path",
            UnitType::Timer => "timer",
            UnitType::Slice => "slice",
            UnitType::Scope => "scope",
            UnitType::Snapshot => "snapshot",
            UnitType::Busname => "busname",
        }
    }

    /// The type for a suffix (without the dot); case-sensitive like systemd.
    pub fn from_suffix(suffix: &str) -> Option<UnitType> {
        UnitType::ALL.into_iter().find(|t| t.as_str() == suffix)
    }

    /// Whether names of this type may contain `@` (systemd's
    /// `unit_type_may_template`; fleet's list is the same).
    pub fn can_be_template(self) -> bool {
        matches!(
            self,
            UnitType::Service
                | UnitType::Socket
                | UnitType::Target
                | UnitType::Timer
                | UnitType::Path
        )
    }

    /// Types that current systemd no longer has but fleet accepted.
    pub fn is_legacy(self) -> bool {
        matches!(self, UnitType::Snapshot | UnitType::Busname)
    }
}

impl fmt::Display for UnitType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Characters systemd allows in a unit name before the type suffix, besides
/// `@` (systemd's `VALID_CHARS`).
fn is_valid_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, ':' | '-' | '_' | '.' | '\\')
}

/// A validated unit name: `prefix[@instance].type`.
///
/// ```
/// use keelson_unitfile::name::{UnitName, UnitType};
///
/// let n = UnitName::parse("nginx@8080.service").unwrap();
/// assert_eq!(n.prefix(), "nginx");
/// assert_eq!(n.instance(), Some("8080"));
/// assert_eq!(n.unit_type(), UnitType::Service);
/// assert_eq!(n.template().unwrap().as_str(), "nginx@.service");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UnitName {
    name: String,
    unit_type: UnitType,
    /// Byte index of the first `@`, if any.
    at: Option<usize>,
    /// Byte index of the last `.` (start of the suffix).
    dot: usize,
}

impl UnitName {
    /// Validate `name` against systemd's grammar (§3.1).
    ///
    /// The instance part may itself contain `@` (systemd splits at the first
    /// one); templates and instances are only allowed for the types in
    /// [`UnitType::can_be_template`].
    pub fn parse(name: &str) -> Result<UnitName, NameError> {
        if name.is_empty() {
            return Err(NameError::Empty);
        }
        if name.len() > MAX_UNIT_NAME_LEN {
            return Err(NameError::TooLong {
                len: name.len(),
                max: MAX_UNIT_NAME_LEN,
            });
        }
        let dot = name.rfind('.').ok_or_else(|| NameError::NoSuffix {
            name: name.to_owned(),
        })?;
        let stem = &name[..dot];
        let suffix = &name[dot + 1..];
        let unit_type = UnitType::from_suffix(suffix).ok_or_else(|| {
            if suffix.is_empty() {
                NameError::NoSuffix {
                    name: name.to_owned(),
                }
            } else {
                NameError::UnknownType {
                    name: name.to_owned(),
                    suffix: suffix.to_owned(),
                }
            }
        })?;
        let mut at = None;
        for (offset, ch) in stem.char_indices() {
            if ch == '@' {
                if at.is_none() {
                    at = Some(offset);
                }
            } else if !is_valid_name_char(ch) {
                return Err(NameError::InvalidChar {
                    name: name.to_owned(),
                    ch,
                    offset,
                });
            }
        }
        if dot == 0 || at == Some(0) {
            return Err(NameError::EmptyPrefix {
                name: name.to_owned(),
            });
        }
        if at.is_some() && !unit_type.can_be_template() {
            return Err(NameError::NotTemplatable {
                name: name.to_owned(),
                unit_type,
            });
        }
        Ok(UnitName {
            name: name.to_owned(),
            unit_type,
            at,
            dot,
        })
    }

    /// Name a unit after a path, as systemd requires for mount, automount,
    /// device and swap units: `("/var/lib/docker", Mount)` →
    /// `var-lib-docker.mount`.
    pub fn from_path(path: &str, unit_type: UnitType) -> Result<UnitName, NameError> {
        let escaped = escape_path(path)?;
        UnitName::parse(&format!("{escaped}.{unit_type}"))
    }

    /// The whole name (`%n`).
    pub fn as_str(&self) -> &str {
        &self.name
    }

    /// The unit type.
    pub fn unit_type(&self) -> UnitType {
        self.unit_type
    }

    /// The name without `.type` (`%N`): `nginx@8080`.
    pub fn stem(&self) -> &str {
        &self.name[..self.dot]
    }

    /// The prefix (`%p`): the part before the `@` for templates and instances,
    /// otherwise the name without its suffix.
    pub fn prefix(&self) -> &str {
        match self.at {
            Some(at) => &self.name[..at],
            None => self.stem(),
        }
    }

    /// The instance string, still escaped (`%i`): `None` for a plain unit,
    /// `Some("")` for a template, `Some("8080")` for `nginx@8080.service`.
    pub fn instance(&self) -> Option<&str> {
        self.at.map(|at| &self.name[at + 1..self.dot])
    }

    /// `foo@.service`.
    pub fn is_template(&self) -> bool {
        self.instance() == Some("")
    }

    /// `foo@bar.service`.
    pub fn is_instance(&self) -> bool {
        matches!(self.instance(), Some(i) if !i.is_empty())
    }

    /// The template this name belongs to: `foo@bar.service` → `foo@.service`;
    /// a template returns itself; a plain unit has none.
    pub fn template(&self) -> Option<UnitName> {
        let at = self.at?;
        Some(UnitName {
            name: format!("{}@.{}", &self.name[..at], self.unit_type),
            unit_type: self.unit_type,
            at: Some(at),
            dot: at + 1,
        })
    }

    /// Build an instance from this template. `instance` is used as written:
    /// pass arbitrary strings through [`escape`] (or [`escape_path`]) first,
    /// as `systemd-escape --template=foo@.service` does.
    pub fn with_instance(&self, instance: &str) -> Result<UnitName, NameError> {
        if !self.is_template() {
            return Err(NameError::NotATemplate {
                name: self.name.clone(),
            });
        }
        if instance.is_empty() {
            return Err(NameError::EmptyInstance {
                template: self.name.clone(),
            });
        }
        UnitName::parse(&format!(
            "{}@{}.{}",
            self.prefix(),
            instance,
            self.unit_type
        ))
    }

    /// The path a path-named unit stands for: `var-lib-docker.mount` →
    /// `/var/lib/docker`, `-.mount` → `/`. Uses the instance for instances.
    pub fn to_path(&self) -> Result<String, NameError> {
        match self.instance() {
            Some(i) if !i.is_empty() => unescape_path(i),
            _ => unescape_path(self.prefix()),
        }
    }
}

impl FromStr for UnitName {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        UnitName::parse(s)
    }
}

impl fmt::Display for UnitName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

impl AsRef<str> for UnitName {
    fn as_ref(&self) -> &str {
        &self.name
    }
}

fn push_hex_escape(out: &mut String, byte: u8) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push('\\');
    out.push('x');
    out.push(char::from(HEX[usize::from(byte >> 4)]));
    out.push(char::from(HEX[usize::from(byte & 0x0f)]));
}

/// `systemd-escape STRING`: `/` becomes `-`; every byte that is not an ASCII
/// letter, digit, `:`, `_` or `.` becomes `\xNN`; a leading `.` becomes
/// `\x2e` so that no unit name starts with a dot.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for (i, &b) in s.as_bytes().iter().enumerate() {
        match b {
            b'/' => out.push('-'),
            b'.' if i == 0 => push_hex_escape(&mut out, b),
            b if b.is_ascii_alphanumeric() || matches!(b, b':' | b'_' | b'.') => {
                out.push(char::from(b))
            }
            b => push_hex_escape(&mut out, b),
        }
    }
    out
}

/// `systemd-escape --path PATH`: drop `.` components, repeated and
/// leading/trailing slashes, then [`escape`]; the root path (or an empty one)
/// is `-`. A `..` component is an error, as in systemd.
pub fn escape_path(path: &str) -> Result<String, NameError> {
    let mut parts = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                return Err(NameError::PathNotNormalized {
                    path: path.to_owned(),
                })
            }
            p => parts.push(p),
        }
    }
    if parts.is_empty() {
        return Ok("-".to_owned());
    }
    Ok(escape(&parts.join("/")))
}

/// `systemd-escape --unescape STRING`: `-` becomes `/` and `\xNN` the byte
/// NN. Any other backslash is an error; the result must be UTF-8.
pub fn unescape(s: &str) -> Result<String, NameError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'-' => {
                out.push(b'/');
                i += 1;
            }
            b'\\' => {
                let hi = bytes.get(i + 2).and_then(|&c| hex_value(c));
                let lo = bytes.get(i + 3).and_then(|&c| hex_value(c));
                match (bytes.get(i + 1), hi, lo) {
                    (Some(b'x'), Some(hi), Some(lo)) => {
                        out.push(hi << 4 | lo);
                        i += 4;
                    }
                    _ => {
                        return Err(NameError::InvalidEscape {
                            input: s.to_owned(),
                            offset: i,
                        })
                    }
                }
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| NameError::InvalidUtf8 {
        input: s.to_owned(),
    })
}

/// `systemd-escape --unescape --path STRING`: `-` alone is `/`; otherwise
/// [`unescape`] and prepend `/`. The result must be a normalised absolute
/// path (no empty, `.` or `..` components, no trailing slash).
pub fn unescape_path(s: &str) -> Result<String, NameError> {
    if s == "-" {
        return Ok("/".to_owned());
    }
    let unescaped = unescape(s)?;
    let normalized = !unescaped.is_empty()
        && unescaped
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..");
    if !normalized {
        return Err(NameError::InvalidPathEscape {
            input: s.to_owned(),
            path: unescaped,
        });
    }
    Ok(format!("/{unescaped}"))
}

pub(crate) fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn name(s: &str) -> UnitName {
        match UnitName::parse(s) {
            Ok(n) => n,
            Err(e) => panic!("{s}: {e}"),
        }
    }

    #[test]
    fn corpus_names_parse() {
        for s in [
            "helloglobal.service",
            "nginxweb.service",
            "docker-tcp.socket",
            "unitspec@.service",
            "unitspec@1.service",
            "nginx@8080.service",
            "apachet-discovery@2.service",
            "var-lib-docker.mount",
            "mnt-data.mount",
            "systemd-journal-gatewayd.socket",
            "multi-user.target",
            "update-engine-stub.timer",
            "dev-xvdf.device",
            "-.mount",
            "my_discovery.service",
            "foo\\x2dbar.service",
            "a:b.service",
            "foo@bar@baz.service",
            "foo.bar.service",
            "old.snapshot",
        ] {
            assert_eq!(name(s).as_str(), s);
        }
    }

    #[test]
    fn plain_template_instance_split() {
        let plain = name("redis.service");
        assert_eq!(plain.prefix(), "redis");
        assert_eq!(plain.stem(), "redis");
        assert_eq!(plain.instance(), None);
        assert!(!plain.is_template() && !plain.is_instance());
        assert_eq!(plain.template(), None);

        let tmpl = name("unitspec@.service");
        assert!(tmpl.is_template());
        assert_eq!(tmpl.prefix(), "unitspec");
        assert_eq!(tmpl.instance(), Some(""));
        assert_eq!(tmpl.template(), Some(tmpl.clone()));

        let inst = name("apachet-discovery@2.service");
        assert!(inst.is_instance());
        assert_eq!(inst.prefix(), "apachet-discovery");
        assert_eq!(inst.instance(), Some("2"));
        assert_eq!(inst.stem(), "apachet-discovery@2");
        let t = inst.template().unwrap();
        assert_eq!(t.as_str(), "apachet-discovery@.service");
        assert!(t.is_template());
        assert_eq!(t.prefix(), "apachet-discovery");
        assert_eq!(t, name("apachet-discovery@.service"));

        // systemd splits at the first `@`.
        let nested = name("foo@bar@baz.service");
        assert_eq!(nested.prefix(), "foo");
        assert_eq!(nested.instance(), Some("bar@baz"));
        // dots are allowed in the prefix.
        assert_eq!(name("foo.bar@x.socket").prefix(), "foo.bar");
    }

    #[test]
    fn instance_from_template() {
        let t = name("nginx@.service");
        assert_eq!(
            t.with_instance("8080").unwrap().as_str(),
            "nginx@8080.service"
        );
        assert_eq!(
            t.with_instance(&escape("a b")).unwrap().as_str(),
            "nginx@a\\x20b.service"
        );
        assert!(matches!(
            t.with_instance(""),
            Err(NameError::EmptyInstance { .. })
        ));
        assert!(matches!(
            t.with_instance("a b"),
            Err(NameError::InvalidChar { ch: ' ', .. })
        ));
        assert!(matches!(
            name("nginx@1.service").with_instance("2"),
            Err(NameError::NotATemplate { .. })
        ));
        assert!(matches!(
            name("nginx.service").with_instance("2"),
            Err(NameError::NotATemplate { .. })
        ));
    }

    #[test]
    fn invalid_names() {
        assert_eq!(UnitName::parse(""), Err(NameError::Empty));
        assert!(matches!(
            UnitName::parse("foo"),
            Err(NameError::NoSuffix { .. })
        ));
        assert!(matches!(
            UnitName::parse("foo."),
            Err(NameError::NoSuffix { .. })
        ));
        assert!(matches!(
            UnitName::parse("foo.servic"),
            Err(NameError::UnknownType { .. })
        ));
        assert!(matches!(
            UnitName::parse("foo.Service"),
            Err(NameError::UnknownType { .. })
        ));
        assert!(matches!(
            UnitName::parse(".service"),
            Err(NameError::EmptyPrefix { .. })
        ));
        assert!(matches!(
            UnitName::parse("@foo.service"),
            Err(NameError::EmptyPrefix { .. })
        ));
        assert!(matches!(
            UnitName::parse("foo bar.service"),
            Err(NameError::InvalidChar {
                ch: ' ',
                offset: 3,
                ..
            })
        ));
        assert!(matches!(
            UnitName::parse("hello/world.service"),
            Err(NameError::InvalidChar { ch: '/', .. })
        ));
        assert!(matches!(
            UnitName::parse("föo.service"),
            Err(NameError::InvalidChar { ch: 'ö', .. })
        ));
        assert!(matches!(
            UnitName::parse("data@x.mount"),
            Err(NameError::NotTemplatable {
                unit_type: UnitType::Mount,
                ..
            })
        ));
        for t in ["device", "swap", "scope", "slice", "automount"] {
            assert!(UnitName::parse(&format!("a@b.{t}")).is_err(), "{t}");
        }
        for t in ["service", "socket", "target", "timer", "path"] {
            assert!(UnitName::parse(&format!("a@b.{t}")).is_ok(), "{t}");
        }
    }

    #[test]
    fn length_limit() {
        let ok = format!("{}.service", "a".repeat(MAX_UNIT_NAME_LEN - 8));
        assert_eq!(ok.len(), 255);
        assert!(UnitName::parse(&ok).is_ok());
        let long = format!("{}.service", "a".repeat(MAX_UNIT_NAME_LEN - 7));
        assert_eq!(
            UnitName::parse(&long),
            Err(NameError::TooLong { len: 256, max: 255 })
        );
    }

    #[test]
    fn escape_matches_systemd_escape() {
        assert_eq!(
            escape("Hallöchen, Meister"),
            "Hall\\xc3\\xb6chen\\x2c\\x20Meister"
        );
        assert_eq!(escape("foo-bar"), "foo\\x2dbar");
        assert_eq!(escape("/var/lib"), "-var-lib");
        assert_eq!(escape(".hidden"), "\\x2ehidden");
        assert_eq!(escape("a.b"), "a.b");
        assert_eq!(escape("a\\b"), "a\\x5cb");
        assert_eq!(escape(""), "");
    }

    #[test]
    fn path_escape_and_mount_names() {
        assert_eq!(escape_path("/var/lib/docker").unwrap(), "var-lib-docker");
        assert_eq!(escape_path("/mnt/data").unwrap(), "mnt-data");
        assert_eq!(escape_path("/usr/share/oem").unwrap(), "usr-share-oem");
        assert_eq!(escape_path("/dev/xvdf").unwrap(), "dev-xvdf");
        assert_eq!(escape_path("/").unwrap(), "-");
        assert_eq!(escape_path("").unwrap(), "-");
        assert_eq!(escape_path("//foo//bar/./baz/").unwrap(), "foo-bar-baz");
        assert_eq!(escape_path("/.dotdir").unwrap(), "\\x2edotdir");
        assert_eq!(escape_path("/foo-bar").unwrap(), "foo\\x2dbar");
        assert!(matches!(
            escape_path("/foo/../bar"),
            Err(NameError::PathNotNormalized { .. })
        ));

        let m = UnitName::from_path("/var/lib/docker", UnitType::Mount).unwrap();
        assert_eq!(m.as_str(), "var-lib-docker.mount");
        assert_eq!(m.to_path().unwrap(), "/var/lib/docker");
        assert_eq!(
            UnitName::from_path("/dev/xvdf", UnitType::Device)
                .unwrap()
                .as_str(),
            "dev-xvdf.device"
        );
        assert_eq!(
            UnitName::from_path("/", UnitType::Mount).unwrap().as_str(),
            "-.mount"
        );
        assert_eq!(name("-.mount").to_path().unwrap(), "/");
        assert_eq!(name("mnt-data.mount").to_path().unwrap(), "/mnt/data");
    }

    #[test]
    fn unescape_cases() {
        assert_eq!(unescape("foo\\x2dbar").unwrap(), "foo-bar");
        assert_eq!(unescape("a-b").unwrap(), "a/b");
        assert_eq!(unescape("Hall\\xC3\\xB6chen").unwrap(), "Hallöchen");
        assert!(matches!(
            unescape("a\\x2"),
            Err(NameError::InvalidEscape { offset: 1, .. })
        ));
        assert!(matches!(
            unescape("a\\y20"),
            Err(NameError::InvalidEscape { .. })
        ));
        assert!(matches!(
            unescape("\\"),
            Err(NameError::InvalidEscape { .. })
        ));
        assert!(matches!(
            unescape("\\xff"),
            Err(NameError::InvalidUtf8 { .. })
        ));
        assert!(matches!(
            unescape_path("foo-"),
            Err(NameError::InvalidPathEscape { .. })
        ));
        assert!(matches!(
            unescape_path("-foo"),
            Err(NameError::InvalidPathEscape { .. })
        ));
        assert!(matches!(
            unescape_path("foo--bar"),
            Err(NameError::InvalidPathEscape { .. })
        ));
        assert!(matches!(
            unescape_path(""),
            Err(NameError::InvalidPathEscape { .. })
        ));
        assert_eq!(unescape_path("8080").unwrap(), "/8080");
    }

    #[test]
    fn error_messages_say_what_to_do() {
        let e = UnitName::parse("foo").unwrap_err().to_string();
        assert!(e.contains("append one such as `.service`"), "{e}");
        let e = UnitName::parse("a b.service").unwrap_err().to_string();
        assert!(e.contains("systemd-escape"), "{e}");
    }

    proptest! {
        #[test]
        fn escape_unescape_round_trip(s in "\\PC*") {
            let e = escape(&s);
            prop_assert!(e.bytes().all(|b| b.is_ascii_alphanumeric() || b":_.\\-".contains(&b)));
            prop_assert!(!e.starts_with('.'));
            // `/` and `-` are conflated by design (both unescape to `/`).
            prop_assert_eq!(unescape(&e).unwrap(), s);
        }

        #[test]
        fn path_escape_round_trip(parts in proptest::collection::vec("[^/\\x00]{1,8}", 0..5)) {
            let parts: Vec<String> = parts.into_iter().filter(|p| p != "." && p != "..").collect();
            let path = format!("/{}", parts.join("/"));
            let escaped = escape_path(&path).unwrap();
            prop_assert_eq!(unescape_path(&escaped).unwrap(), path.clone());
            if escaped.len() <= MAX_UNIT_NAME_LEN - 6 {
                let unit = UnitName::from_path(&path, UnitType::Mount).unwrap();
                prop_assert_eq!(unit.to_path().unwrap(), path);
            }
        }

        #[test]
        fn parse_never_panics_and_split_is_consistent(s in "[a-z@.\\-\\\\:_ %/]{0,40}") {
            if let Ok(n) = UnitName::parse(&s) {
                let rebuilt = match n.instance() {
                    Some(i) => format!("{}@{}.{}", n.prefix(), i, n.unit_type()),
                    None => format!("{}.{}", n.prefix(), n.unit_type()),
                };
                prop_assert_eq!(rebuilt, s);
            }
        }

        #[test]
        fn instance_round_trip(prefix in "[a-z][a-z0-9_-]{0,10}", inst in "\\PC{1,10}") {
            let t = UnitName::parse(&format!("{prefix}@.service")).unwrap();
            let escaped = escape(&inst);
            let i = t.with_instance(&escaped).unwrap();
            prop_assert_eq!(i.template(), Some(t));
            prop_assert_eq!(unescape(i.instance().unwrap()).unwrap(), inst);
        }
    }
}
