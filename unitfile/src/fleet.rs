//! `[X-Fleet]`: fleet's scheduling requirements as a typed, validated view.
//!
//! systemd ignores sections starting with `X-`, so fleet hid its placement
//! rules in `[X-Fleet]` (scheduler.md §6). fleet itself parsed them lazily
//! and forgivingly: an unknown key was a warning, a malformed
//! `MachineMetadata` value was silently dropped, so a typo let a unit run
//! anywhere. This module parses the section once, from the parser's
//! [`UnitOption`]s, keeps every value's line and column, and reports every
//! problem at once in a [`Validation`] so a submission can be refused with
//! `file:line:col` messages. Matching ([`XFleet::metadata_matches`],
//! [`XFleet::conflicts_with`], [`glob_match`]) is pure, for the scheduler's
//! `AbleToRun` checks.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::hash::BuildHasher;

use thiserror::Error;

use crate::name::{NameError, UnitName};
use crate::option::UnitOption;
use crate::specifier::expand_fleet;

/// The section name fleet reads.
pub const SECTION: &str = "X-Fleet";

/// Every key fleet accepts in `[X-Fleet]`, with the deprecated spellings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FleetKey {
    /// `MachineID=`
    MachineId,
    /// `X-ConditionMachineID=` (deprecated spelling of `MachineID=`)
    XConditionMachineId,
    /// `X-ConditionMachineBootID=` (legacy, treated as a machine ID)
    XConditionMachineBootId,
    /// `MachineOf=`
    MachineOf,
    /// `X-ConditionMachineOf=` (deprecated spelling of `MachineOf=`)
    XConditionMachineOf,
    /// `MachineMetadata=`
    MachineMetadata,
    /// `X-ConditionMachineMetadata=` (deprecated spelling)
    XConditionMachineMetadata,
    /// `Conflicts=`
    Conflicts,
    /// `X-Conflicts=` (deprecated spelling of `Conflicts=`)
    XConflicts,
    /// `Global=`
    Global,
    /// `Replaces=`
    Replaces,
}

impl FleetKey {
    /// Every key.
    pub const ALL: [FleetKey; 11] = [
        FleetKey::MachineId,
        FleetKey::XConditionMachineId,
        FleetKey::XConditionMachineBootId,
        FleetKey::MachineOf,
        FleetKey::XConditionMachineOf,
        FleetKey::MachineMetadata,
        FleetKey::XConditionMachineMetadata,
        FleetKey::Conflicts,
        FleetKey::XConflicts,
        FleetKey::Global,
        FleetKey::Replaces,
    ];

    /// The key as written in unit files (case-sensitive).
    pub fn as_str(self) -> &'static str {
        match self {
            FleetKey::MachineId => "MachineID",
            FleetKey::XConditionMachineId => "X-ConditionMachineID",
            FleetKey::XConditionMachineBootId => "X-ConditionMachineBootID",
            FleetKey::MachineOf => "MachineOf",
            FleetKey::XConditionMachineOf => "X-ConditionMachineOf",
            FleetKey::MachineMetadata => "MachineMetadata",
            FleetKey::XConditionMachineMetadata => "X-ConditionMachineMetadata",
            FleetKey::Conflicts => "Conflicts",
            FleetKey::XConflicts => "X-Conflicts",
            FleetKey::Global => "Global",
            FleetKey::Replaces => "Replaces",
        }
    }

    /// The key for a name, exactly as fleet spells it.
    pub fn from_name(name: &str) -> Option<FleetKey> {
        FleetKey::ALL.into_iter().find(|k| k.as_str() == name)
    }

    /// The current spelling this key is a legacy form of (itself if current).
    pub fn canonical(self) -> FleetKey {
        match self {
            FleetKey::XConditionMachineId | FleetKey::XConditionMachineBootId => {
                FleetKey::MachineId
            }
            FleetKey::XConditionMachineOf => FleetKey::MachineOf,
            FleetKey::XConditionMachineMetadata => FleetKey::MachineMetadata,
            FleetKey::XConflicts => FleetKey::Conflicts,
            k => k,
        }
    }

    /// Deprecated since fleet 0.8.0, still accepted.
    pub fn is_legacy(self) -> bool {
        self.canonical() != self
    }
}

impl fmt::Display for FleetKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A value with the option it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located<T> {
    /// The parsed value.
    pub value: T,
    /// The key as spelled in the file.
    pub key: FleetKey,
    /// 1-based line of the option (0 for options built in code).
    pub line: usize,
    /// 1-based column of the option.
    pub column: usize,
}

/// A comparison in a `MachineMetadata=` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetadataOp {
    /// `=`: fleet's only operator; exact, case-sensitive string equality.
    Eq,
    /// `!=`: the exact negation of `=`.
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

impl MetadataOp {
    /// The operator as written.
    pub fn as_str(self) -> &'static str {
        match self {
            MetadataOp::Eq => "=",
            MetadataOp::Ne => "!=",
            MetadataOp::Lt => "<",
            MetadataOp::Le => "<=",
            MetadataOp::Gt => ">",
            MetadataOp::Ge => ">=",
        }
    }
}

/// One `key<op>value` requirement on machine metadata.
///
/// fleet knew only `key=value`, and split the text on `=`: a value that did
/// not split into exactly two non-empty parts was silently dropped. Keelson
/// rejects those instead (scheduler.md §6.5), and adds the comparison
/// operators `!=`, `<`, `<=`, `>`, `>=` of the never-merged coreos/fleet
/// PR #1296. The extension cannot change where a unit fleet could place goes:
/// fleet read `ram>=1024`, `ram<=1024` and `disk!=hdd` as `key=value` with
/// keys `ram>`, `ram<`, `disk!`, which no machine has, so such units were
/// unschedulable; `ram<1024` and `ram>1024` contain no `=`, so fleet dropped
/// them and Keelson without the extension would reject them. Only units that
/// could never run, or would be refused, get a new meaning.
///
/// Semantics: `=` and `!=` compare strings exactly (so `=` stays fleet's
/// rule). `<`, `<=`, `>`, `>=` compare numerically when both sides are
/// decimal numbers (`1024`, `-3`, `2.5`) and as byte strings otherwise. A
/// machine that lacks the key fails every requirement on it, `!=` included.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MetadataRequirement {
    /// Metadata key.
    pub key: String,
    /// Comparison.
    pub op: MetadataOp,
    /// Value to compare with.
    pub value: String,
}

impl MetadataRequirement {
    /// Parse `key<op>value`; the error says what is wrong.
    pub fn parse(text: &str) -> Result<MetadataRequirement, &'static str> {
        let bytes = text.as_bytes();
        let mut found = None;
        for (i, &b) in bytes.iter().enumerate() {
            let next_eq = bytes.get(i + 1) == Some(&b'=');
            let op = match b {
                b'=' => Some((MetadataOp::Eq, 1)),
                b'!' if next_eq => Some((MetadataOp::Ne, 2)),
                b'<' if next_eq => Some((MetadataOp::Le, 2)),
                b'<' => Some((MetadataOp::Lt, 1)),
                b'>' if next_eq => Some((MetadataOp::Ge, 2)),
                b'>' => Some((MetadataOp::Gt, 1)),
                _ => None,
            };
            if let Some((op, len)) = op {
                found = Some((i, op, len));
                break;
            }
        }
        let (i, op, len) = found.ok_or("has no `=` (or comparison operator); write key=value")?;
        let key = &text[..i];
        let value = &text[i + len..];
        if key.is_empty() {
            return Err("has an empty key; write key=value");
        }
        if value.is_empty() {
            return Err("has an empty value; write key=value");
        }
        if value.contains('=') {
            return Err("has more than one `=`; write one key=value per requirement");
        }
        Ok(MetadataRequirement {
            key: key.to_owned(),
            op,
            value: value.to_owned(),
        })
    }

    /// Whether a machine whose value for [`key`](Self::key) is `machine`
    /// (`None`: the machine lacks the key) satisfies this requirement.
    pub fn matches(&self, machine: Option<&str>) -> bool {
        let Some(have) = machine else {
            return false;
        };
        let ordering = || match (as_number(have), as_number(&self.value)) {
            (Some(a), Some(b)) => a.partial_cmp(&b),
            _ => Some(have.cmp(self.value.as_str())),
        };
        use std::cmp::Ordering::{Greater, Less};
        match self.op {
            MetadataOp::Eq => have == self.value,
            MetadataOp::Ne => have != self.value,
            MetadataOp::Lt => ordering() == Some(Less),
            MetadataOp::Le => matches!(ordering(), Some(o) if o != Greater),
            MetadataOp::Gt => ordering() == Some(Greater),
            MetadataOp::Ge => matches!(ordering(), Some(o) if o != Less),
        }
    }
}

impl fmt::Display for MetadataRequirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}{}", self.key, self.op.as_str(), self.value)
    }
}

/// A decimal number: optional sign, digits, optional fraction.
fn as_number(s: &str) -> Option<f64> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let all_digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    if (int.is_empty() && frac.is_empty()) || !all_digits(int) || !all_digits(frac) {
        return None;
    }
    s.parse().ok()
}

/// One problem in an `[X-Fleet]` section, with where it is.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FleetError {
    /// A key fleet does not know (fleet's own wording).
    #[error(
        "unrecognized requirement in [X-Fleet] section: {key:?}; \
         valid keys are MachineID, MachineOf, MachineMetadata, Conflicts, Global, Replaces \
         (names are case-sensitive)"
    )]
    UnknownKey {
        /// The key as written.
        key: String,
        /// Line of the option.
        line: usize,
        /// Column of the option.
        column: usize,
    },
    /// A machine ID that is neither 8 nor 32 lowercase hex digits.
    #[error(
        "{key}={value:?} is not a machine ID; give the 32 lowercase \
         hex digits of /etc/machine-id or the 8-digit short ID from `fleetctl list-machines`"
    )]
    InvalidMachineId {
        /// The key as written.
        key: FleetKey,
        /// The value.
        value: String,
        /// Line of the option.
        line: usize,
        /// Column of the option.
        column: usize,
    },
    /// A `MachineMetadata` value that is not `key<op>value`.
    #[error("{key}={value:?} {reason} (fleet silently ignored such values)")]
    InvalidMetadata {
        /// The key as written.
        key: FleetKey,
        /// The value.
        value: String,
        /// What is wrong.
        reason: &'static str,
        /// Line of the option.
        line: usize,
        /// Column of the option.
        column: usize,
    },
    /// A malformed glob in `Conflicts` or `Replaces`.
    #[error(
        "{key}={pattern:?} is a malformed glob that matches nothing; \
         check `[...]` classes and trailing backslashes"
    )]
    BadPattern {
        /// The key as written.
        key: FleetKey,
        /// The pattern.
        pattern: String,
        /// Line of the option.
        line: usize,
        /// Column of the option.
        column: usize,
    },
    /// A `MachineOf` value that is not a valid unit name.
    #[error(
        "{key}={value:?} can never be satisfied: {source}; name \
         exactly one unit per value (quote several: \"a.service\" \"b.service\")"
    )]
    InvalidPeer {
        /// The key as written.
        key: FleetKey,
        /// The value.
        value: String,
        /// Why it is not a unit name.
        source: NameError,
        /// Line of the option.
        line: usize,
        /// Column of the option.
        column: usize,
    },
    /// Two options fleet refuses to combine.
    #[error("{first} cannot be used with {second}; remove one of them")]
    Incompatible {
        /// The option that excludes the other (canonical spelling).
        first: FleetKey,
        /// The option found with it (canonical spelling).
        second: FleetKey,
        /// Line of the `second` option.
        line: usize,
        /// Column of the `second` option.
        column: usize,
    },
    /// A `MachineOf` unit that the unit's own `Conflicts`/`Replaces` exclude.
    #[error(
        "unresolvable requirements: peer {peer:?} matches \
         {kind} pattern {pattern:?}; drop one of them"
    )]
    PeerExcluded {
        /// The `MachineOf` value.
        peer: String,
        /// `Conflicts` or `Replaces`.
        kind: FleetKey,
        /// The matching pattern.
        pattern: String,
        /// Line of the `MachineOf` option.
        line: usize,
        /// Column of the `MachineOf` option.
        column: usize,
    },
}

/// Every problem found in an `[X-Fleet]` section, in file order within each
/// kind of check.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{}", render(.errors))]
pub struct Validation {
    /// The problems; never empty when returned as an error.
    pub errors: Vec<FleetError>,
}

impl FleetError {
    /// 1-based line of the option at fault.
    pub fn line(&self) -> usize {
        self.position().0
    }

    /// 1-based column of the option at fault.
    pub fn column(&self) -> usize {
        self.position().1
    }

    fn position(&self) -> (usize, usize) {
        match self {
            FleetError::UnknownKey { line, column, .. }
            | FleetError::InvalidMachineId { line, column, .. }
            | FleetError::InvalidMetadata { line, column, .. }
            | FleetError::BadPattern { line, column, .. }
            | FleetError::InvalidPeer { line, column, .. }
            | FleetError::Incompatible { line, column, .. }
            | FleetError::PeerExcluded { line, column, .. } => (*line, *column),
        }
    }
}

fn render(errors: &[FleetError]) -> String {
    let lines: Vec<String> = errors
        .iter()
        .map(|e| format!("line {}, column {}: {e}", e.line(), e.column()))
        .collect();
    format!("invalid [X-Fleet] section: {}", lines.join("; "))
}

/// How to read the section.
#[derive(Debug, Clone, Copy, Default)]
pub struct ParseOptions<'a> {
    /// Expand fleet's specifiers (`%n %N %p %i`) with this name: the unit
    /// being scheduled, i.e. the instance name for instances.
    pub unit: Option<&'a UnitName>,
    /// Keep unknown keys as [`XFleet::unknown_keys`] instead of failing
    /// (`--allow-unknown-x-fleet`).
    pub allow_unknown_keys: bool,
}

/// An unknown key kept under [`ParseOptions::allow_unknown_keys`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownKey {
    /// The key as written.
    pub key: String,
    /// The value as written.
    pub value: String,
    /// Line of the option.
    pub line: usize,
    /// Column of the option.
    pub column: usize,
}

/// The `[X-Fleet]` requirements of one unit.
///
/// ```
/// use std::collections::HashMap;
/// use keelson_unitfile::fleet::XFleet;
/// use keelson_unitfile::name::UnitName;
/// use keelson_unitfile::UnitOption;
///
/// let opts = [
///     UnitOption::new("X-Fleet", "MachineMetadata", r#""region=us-east-1" "disk=ssd""#),
///     UnitOption::new("X-Fleet", "X-Conflicts", "%p@*.service"),
/// ];
/// let unit = UnitName::parse("hellocounter@2.service").unwrap();
/// let x = XFleet::for_unit(&opts, &unit).unwrap();
/// let machine = HashMap::from([("region".to_string(), "us-east-1".to_string()),
///                              ("disk".to_string(), "ssd".to_string())]);
/// assert!(x.metadata_matches(&machine));
/// assert!(x.conflicts_with("hellocounter@3.service"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct XFleet {
    machine_ids: Vec<Located<String>>,
    machine_of: Vec<Located<String>>,
    metadata: Vec<Located<MetadataRequirement>>,
    conflicts: Vec<Located<String>>,
    global: Option<Located<bool>>,
    replaces: Vec<Located<String>>,
    unknown: Vec<UnknownKey>,
}

/// fleet's `parseMultivalueLine`, applied when a value both starts and ends
/// with `"`: quotes toggle, a space outside quotes ends a value, no escapes.
/// Other values are one value, quotes included. Empty values are kept here
/// (the options ignore them).
pub fn split_values(value: &str) -> Vec<String> {
    if !(value.starts_with('"') && value.ends_with('"')) {
        return vec![value.to_owned()];
    }
    let mut values = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    for c in value.chars() {
        match c {
            '"' => quoted = !quoted,
            ' ' if !quoted => values.push(std::mem::take(&mut current)),
            c => current.push(c),
        }
    }
    values.push(current);
    values
}

fn located<T>(value: T, key: FleetKey, line: usize, column: usize) -> Located<T> {
    Located {
        value,
        key,
        line,
        column,
    }
}

/// fleet's `isTruthyValue`.
fn is_truthy(s: &str) -> bool {
    matches!(
        s.to_ascii_lowercase().as_str(),
        "true" | "yes" | "1" | "on" | "t"
    )
}

fn is_machine_id(s: &str) -> bool {
    (s.len() == 8 || s.len() == 32) && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

impl XFleet {
    /// Read the `[X-Fleet]` options among `options` (other sections are
    /// ignored) without specifier expansion; unknown keys are errors.
    pub fn from_options(options: &[UnitOption]) -> Result<XFleet, Validation> {
        XFleet::parse(options, &ParseOptions::default())
    }

    /// Like [`from_options`](Self::from_options), expanding fleet's
    /// specifiers with the name of the unit being scheduled.
    pub fn for_unit(options: &[UnitOption], unit: &UnitName) -> Result<XFleet, Validation> {
        XFleet::parse(
            options,
            &ParseOptions {
                unit: Some(unit),
                allow_unknown_keys: false,
            },
        )
    }

    /// Read and validate the section; every problem is reported at once.
    pub fn parse(options: &[UnitOption], how: &ParseOptions<'_>) -> Result<XFleet, Validation> {
        let mut x = XFleet::default();
        let mut errors = Vec::new();
        for opt in options.iter().filter(|o| o.section == SECTION) {
            let (line, column) = (opt.line, opt.column);
            let Some(key) = FleetKey::from_name(&opt.name) else {
                if how.allow_unknown_keys {
                    x.unknown.push(UnknownKey {
                        key: opt.name.clone(),
                        value: opt.value.clone(),
                        line,
                        column,
                    });
                } else {
                    errors.push(FleetError::UnknownKey {
                        key: opt.name.clone(),
                        line,
                        column,
                    });
                }
                continue;
            };
            for raw in split_values(&opt.value) {
                if raw.is_empty() {
                    continue;
                }
                let value = match how.unit {
                    Some(unit) => expand_fleet(&raw, unit),
                    None => raw,
                };
                match key.canonical() {
                    FleetKey::MachineId => {
                        if !is_machine_id(&value) {
                            errors.push(FleetError::InvalidMachineId {
                                key,
                                value: value.clone(),
                                line,
                                column,
                            });
                        }
                        x.machine_ids.push(located(value, key, line, column));
                    }
                    FleetKey::MachineOf => {
                        if !value.contains('%') {
                            if let Err(source) = UnitName::parse(&value) {
                                errors.push(FleetError::InvalidPeer {
                                    key,
                                    value: value.clone(),
                                    source,
                                    line,
                                    column,
                                });
                            }
                        }
                        x.machine_of.push(located(value, key, line, column));
                    }
                    FleetKey::MachineMetadata => match MetadataRequirement::parse(&value) {
                        Ok(req) => x.metadata.push(located(req, key, line, column)),
                        Err(reason) => errors.push(FleetError::InvalidMetadata {
                            key,
                            value,
                            reason,
                            line,
                            column,
                        }),
                    },
                    FleetKey::Conflicts | FleetKey::Replaces => {
                        // fleet 1.0 splits Conflicts further on whitespace;
                        // Replaces names one unit (pattern) per value.
                        let words: Vec<String> = if key.canonical() == FleetKey::Conflicts {
                            value.split_whitespace().map(str::to_owned).collect()
                        } else {
                            vec![value]
                        };
                        for pattern in words {
                            if !is_valid_glob(&pattern) {
                                errors.push(FleetError::BadPattern {
                                    key,
                                    pattern: pattern.clone(),
                                    line,
                                    column,
                                });
                            }
                            if key.canonical() == FleetKey::Conflicts {
                                x.conflicts.push(located(pattern, key, line, column));
                            } else {
                                x.replaces.push(located(pattern, key, line, column));
                            }
                        }
                    }
                    _ => x.global = Some(located(is_truthy(&value), key, line, column)),
                }
            }
        }
        x.check_combinations(&mut errors);
        if errors.is_empty() {
            Ok(x)
        } else {
            Err(Validation { errors })
        }
    }

    /// fleet's submission checks (scheduler.md §6.9, fleet 1.0 rules:
    /// `Global` may be combined with `Conflicts`).
    fn check_combinations(&self, errors: &mut Vec<FleetError>) {
        let first_pos = |v: &[Located<String>]| v.first().map(|l| (l.line, l.column));
        let machine_id = first_pos(&self.machine_ids);
        let machine_of = first_pos(&self.machine_of);
        let conflicts = first_pos(&self.conflicts);
        let replaces = first_pos(&self.replaces);
        let global = self
            .global
            .as_ref()
            .filter(|g| g.value)
            .map(|g| (g.line, g.column));
        let rules = [
            (
                FleetKey::MachineId,
                machine_id,
                FleetKey::MachineOf,
                machine_of,
            ),
            (
                FleetKey::MachineId,
                machine_id,
                FleetKey::Conflicts,
                conflicts,
            ),
            (FleetKey::MachineId, machine_id, FleetKey::Global, global),
            (
                FleetKey::MachineId,
                machine_id,
                FleetKey::Replaces,
                replaces,
            ),
            (FleetKey::Global, global, FleetKey::MachineOf, machine_of),
            (FleetKey::Global, global, FleetKey::Replaces, replaces),
            (FleetKey::Conflicts, conflicts, FleetKey::Replaces, replaces),
        ];
        for (first, a, second, b) in rules {
            if let (Some(_), Some((line, column))) = (a, b) {
                errors.push(FleetError::Incompatible {
                    first,
                    second,
                    line,
                    column,
                });
            }
        }
        for peer in &self.machine_of {
            let excluded = self
                .conflicts
                .iter()
                .map(|p| (FleetKey::Conflicts, p))
                .chain(self.replaces.iter().map(|p| (FleetKey::Replaces, p)))
                .find(|(_, p)| glob_match(&p.value, &peer.value).unwrap_or(false));
            if let Some((kind, pattern)) = excluded {
                errors.push(FleetError::PeerExcluded {
                    peer: peer.value.clone(),
                    kind,
                    pattern: pattern.value.clone(),
                    line: peer.line,
                    column: peer.column,
                });
            }
        }
    }

    /// Whether the section has any requirement at all.
    pub fn is_empty(&self) -> bool {
        self.machine_ids.is_empty()
            && self.machine_of.is_empty()
            && self.metadata.is_empty()
            && self.conflicts.is_empty()
            && self.global.is_none()
            && self.replaces.is_empty()
    }

    /// The machine the unit is pinned to: the first `MachineID=`, else the
    /// first `X-ConditionMachineID=`, else the first
    /// `X-ConditionMachineBootID=` (fleet's `RequiredTarget`).
    pub fn machine_id(&self) -> Option<&str> {
        [
            FleetKey::MachineId,
            FleetKey::XConditionMachineId,
            FleetKey::XConditionMachineBootId,
        ]
        .into_iter()
        .find_map(|k| self.machine_ids.iter().find(|l| l.key == k))
        .map(|l| l.value.as_str())
    }

    /// Whether a machine with this full ID satisfies `MachineID` (equal to
    /// the requirement, or its 8-character short ID is). True when unpinned.
    pub fn machine_id_matches(&self, machine_id: &str) -> bool {
        match self.machine_id() {
            None => true,
            Some(want) => machine_id == want || machine_id.get(..8) == Some(want),
        }
    }

    /// Every `MachineID`-family value with its position.
    pub fn machine_ids(&self) -> &[Located<String>] {
        &self.machine_ids
    }

    /// `MachineOf` / `X-ConditionMachineOf` unit names: all must run on the
    /// chosen machine.
    pub fn machine_of(&self) -> &[Located<String>] {
        &self.machine_of
    }

    /// The metadata requirements, both spellings, in file order.
    pub fn metadata(&self) -> &[Located<MetadataRequirement>] {
        &self.metadata
    }

    /// `Conflicts` / `X-Conflicts` glob patterns, one per word.
    pub fn conflicts(&self) -> &[Located<String>] {
        &self.conflicts
    }

    /// `Replaces` patterns.
    pub fn replaces(&self) -> &[Located<String>] {
        &self.replaces
    }

    /// `Global=`: the last value decides; absent is false.
    pub fn is_global(&self) -> bool {
        self.global.as_ref().is_some_and(|g| g.value)
    }

    /// Unknown keys kept under [`ParseOptions::allow_unknown_keys`].
    pub fn unknown_keys(&self) -> &[UnknownKey] {
        &self.unknown
    }

    /// Whether a machine with this metadata satisfies `MachineMetadata`.
    ///
    /// `=` requirements follow fleet: grouped by key, a machine must have
    /// every key and its value must be one of that key's values (AND across
    /// keys, OR within a key, however the pairs were spread over lines).
    /// Every other comparison is an additional AND clause, so
    /// `ram>=1024` + `ram<4096` is a range and `disk!=hdd` + `disk!=tape`
    /// excludes both.
    pub fn metadata_matches<S: BuildHasher>(&self, machine: &HashMap<String, String, S>) -> bool {
        let mut allowed: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for req in self.metadata.iter().map(|l| &l.value) {
            if req.op == MetadataOp::Eq {
                allowed.entry(&req.key).or_default().push(&req.value);
            } else if !req.matches(machine.get(&req.key).map(String::as_str)) {
                return false;
            }
        }
        allowed.iter().all(|(key, values)| {
            machine
                .get(*key)
                .is_some_and(|have| values.contains(&have.as_str()))
        })
    }

    /// Whether one of this unit's `Conflicts` patterns matches `other`
    /// (Go `path.Match` globbing; malformed patterns match nothing). The
    /// scheduler checks both directions and skips the unit itself; see
    /// [`units_conflict`].
    pub fn conflicts_with(&self, other: &str) -> bool {
        self.conflicts
            .iter()
            .any(|p| glob_match(&p.value, other).unwrap_or(false))
    }

    /// Whether one of this unit's `Replaces` patterns matches `other`.
    pub fn replaces_unit(&self, other: &str) -> bool {
        self.replaces
            .iter()
            .any(|p| glob_match(&p.value, other).unwrap_or(false))
    }
}

/// fleet's symmetric conflict check: two different units conflict when either
/// one's patterns match the other's name. A unit never conflicts with itself.
pub fn units_conflict(a: &str, a_fleet: &XFleet, b: &str, b_fleet: &XFleet) -> bool {
    a != b && (a_fleet.conflicts_with(b) || b_fleet.conflicts_with(a))
}

/// A glob pattern that Go's `path.Match` rejects (`ErrBadPattern`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error(
    "malformed glob pattern: check `[...]` classes (non-empty, closed) and trailing backslashes"
)]
pub struct BadPattern;

/// Go's `path.Match`, which fleet uses for `Conflicts` and `Replaces`: `*`
/// matches any run of characters except `/`, `?` one character except `/`,
/// `[abc]`, `[a-z]`, `[^a-z]` a class, `\` escapes the next character. A
/// malformed pattern is an error whatever the name (as in Go ≥ 1.16).
pub fn glob_match(pattern: &str, name: &str) -> Result<bool, BadPattern> {
    let pattern: Vec<char> = pattern.chars().collect();
    let name: Vec<char> = name.chars().collect();
    validate_glob(&pattern)?;
    go_match(&pattern, &name)
}

/// Whether [`glob_match`] accepts the pattern.
pub fn is_valid_glob(pattern: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    validate_glob(&pattern).is_ok()
}

fn validate_glob(mut pattern: &[char]) -> Result<(), BadPattern> {
    while !pattern.is_empty() {
        let (_, chunk, rest) = scan_chunk(pattern);
        match_chunk(chunk, &[])?;
        pattern = rest;
    }
    Ok(())
}

fn go_match(mut pattern: &[char], mut name: &[char]) -> Result<bool, BadPattern> {
    'chunks: while !pattern.is_empty() {
        let (star, chunk, rest) = scan_chunk(pattern);
        pattern = rest;
        if star && chunk.is_empty() {
            return Ok(!name.contains(&'/'));
        }
        if let Some(t) = match_chunk(chunk, name)? {
            if t.is_empty() || !pattern.is_empty() {
                name = t;
                continue;
            }
        }
        if star {
            let mut i = 0;
            while name.get(i).is_some_and(|&c| c != '/') {
                if let Some(t) = match_chunk(chunk, name.get(i + 1..).unwrap_or(&[]))? {
                    if pattern.is_empty() && !t.is_empty() {
                        i += 1;
                        continue;
                    }
                    name = t;
                    continue 'chunks;
                }
                i += 1;
            }
        }
        return Ok(false);
    }
    Ok(name.is_empty())
}

/// Go's `scanChunk`: leading stars, then everything up to the next star
/// outside a class.
fn scan_chunk(mut pattern: &[char]) -> (bool, &[char], &[char]) {
    let mut star = false;
    while let Some(('*', rest)) = pattern.split_first() {
        pattern = rest;
        star = true;
    }
    let mut in_range = false;
    let mut i = 0;
    while let Some(&c) = pattern.get(i) {
        match c {
            '\\' if i + 1 < pattern.len() => i += 1,
            '[' => in_range = true,
            ']' => in_range = false,
            '*' if !in_range => break,
            _ => {}
        }
        i += 1;
    }
    let (chunk, rest) = pattern.split_at(i.min(pattern.len()));
    (star, chunk, rest)
}

/// Go's `matchChunk`: match `chunk` (no stars) at the start of `s`, returning
/// the rest of `s` on success.
fn match_chunk<'s>(
    mut chunk: &[char],
    mut s: &'s [char],
) -> Result<Option<&'s [char]>, BadPattern> {
    let mut failed = false;
    while let Some((&c, rest)) = chunk.split_first() {
        if !failed && s.is_empty() {
            failed = true;
        }
        match c {
            '[' => {
                let mut r = None;
                if !failed {
                    if let Some((&first, tail)) = s.split_first() {
                        r = Some(first);
                        s = tail;
                    }
                }
                chunk = rest;
                let negated = chunk.first() == Some(&'^');
                if negated {
                    chunk = chunk.get(1..).unwrap_or(&[]);
                }
                let mut matched = false;
                let mut ranges = 0;
                loop {
                    if chunk.first() == Some(&']') && ranges > 0 {
                        chunk = chunk.get(1..).unwrap_or(&[]);
                        break;
                    }
                    let (lo, after) = get_esc(chunk)?;
                    chunk = after;
                    let mut hi = lo;
                    if let Some(('-', after)) = chunk.split_first() {
                        let (h, after) = get_esc(after)?;
                        hi = h;
                        chunk = after;
                    }
                    if r.is_some_and(|r| lo <= r && r <= hi) {
                        matched = true;
                    }
                    ranges += 1;
                }
                if matched == negated {
                    failed = true;
                }
            }
            '?' => {
                if !failed {
                    if let Some((&first, tail)) = s.split_first() {
                        if first == '/' {
                            failed = true;
                        }
                        s = tail;
                    }
                }
                chunk = rest;
            }
            _ => {
                let (lit, after) = if c == '\\' {
                    rest.split_first().ok_or(BadPattern)?
                } else {
                    (&c, rest)
                };
                if !failed {
                    if let Some((&first, tail)) = s.split_first() {
                        if first != *lit {
                            failed = true;
                        }
                        s = tail;
                    }
                }
                chunk = after;
            }
        }
    }
    Ok(if failed { None } else { Some(s) })
}

/// Go's `getEsc`: one possibly escaped character of a class.
fn get_esc(chunk: &[char]) -> Result<(char, &[char]), BadPattern> {
    let chunk = match chunk.split_first() {
        None | Some(('-' | ']', _)) => return Err(BadPattern),
        Some(('\\', rest)) => rest,
        Some(_) => chunk,
    };
    let (&r, rest) = chunk.split_first().ok_or(BadPattern)?;
    if rest.is_empty() {
        return Err(BadPattern);
    }
    Ok((r, rest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn opt(name: &str, value: &str, line: usize) -> UnitOption {
        UnitOption {
            section: SECTION.to_owned(),
            name: name.to_owned(),
            value: value.to_owned(),
            line,
            column: 1,
        }
    }

    fn machine(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn parse(opts: &[UnitOption]) -> XFleet {
        XFleet::from_options(opts).unwrap_or_else(|e| panic!("{e}"))
    }

    fn errors(opts: &[UnitOption]) -> Vec<FleetError> {
        match XFleet::from_options(opts) {
            Ok(x) => panic!("expected errors, got {x:?}"),
            Err(v) => v.errors,
        }
    }

    #[test]
    fn multi_value_split() {
        assert_eq!(
            split_values(r#""region=us-east-1" "diskType=SSD""#),
            ["region=us-east-1", "diskType=SSD"]
        );
        assert_eq!(split_values(r#""role=a b""#), ["role=a b"]);
        assert_eq!(split_values(r#""a"  "b""#), ["a", "", "b"]);
        assert_eq!(
            split_values(r#"region=us-east-1 "diskType=SSD""#),
            [r#"region=us-east-1 "diskType=SSD""#]
        );
        assert_eq!(split_values("\""), [""]);
        assert_eq!(split_values(""), [""]);
    }

    #[test]
    fn book_units() {
        // C01 helloglobal.service
        let x = parse(&[opt("Global", "true", 12)]);
        assert!(x.is_global());
        // C02/C03 metadata
        let web = parse(&[opt("MachineMetadata", "compute=web", 17)]);
        let db = parse(&[opt("MachineMetadata", "compute=db", 17)]);
        let nodes = [
            machine(&[("compute", "web"), ("rack", "rack1")]),
            machine(&[("compute", "web"), ("rack", "rack2")]),
            machine(&[("compute", "db"), ("rack", "rack3")]),
        ];
        let fits = |x: &XFleet| {
            nodes
                .iter()
                .map(|m| x.metadata_matches(m))
                .collect::<Vec<_>>()
        };
        assert_eq!(fits(&web), [true, true, false]);
        assert_eq!(fits(&db), [false, false, true]);
        // C16 wordpress@.service
        let unit = UnitName::parse("wordpress@2.service").unwrap();
        let x = XFleet::for_unit(&[opt("MachineOf", "mysql@%i.service", 14)], &unit).unwrap();
        assert_eq!(x.machine_of()[0].value, "mysql@2.service");
        // The template itself parses without expansion.
        let x = parse(&[opt("MachineOf", "mysql@%i.service", 14)]);
        assert_eq!(x.machine_of()[0].value, "mysql@%i.service");
        // C17 apacheupdateetcd@.service: legacy X-Conflicts with two stars.
        let x = parse(&[opt("X-Conflicts", "apache*@*.service", 17)]);
        assert_eq!(x.conflicts()[0].key, FleetKey::XConflicts);
        assert!(x.conflicts_with("apache@1.service"));
        assert!(x.conflicts_with("apacheupdateetcd@2.service"));
        assert!(!x.conflicts_with("nginx@1.service"));
        // C19 X-ConditionMachineOf
        let unit = UnitName::parse("apachet-discovery@8080.service").unwrap();
        let x = XFleet::for_unit(
            &[opt("X-ConditionMachineOf", "apachet@%i.service", 30)],
            &unit,
        )
        .unwrap();
        assert_eq!(x.machine_of()[0].value, "apachet@8080.service");
        // C30 hellocounter@.service
        let unit = UnitName::parse("hellocounter@2.service").unwrap();
        let x = XFleet::for_unit(&[opt("X-Conflicts", "%p@*.service", 15)], &unit).unwrap();
        assert_eq!(x.conflicts()[0].value, "hellocounter@*.service");
        let other = XFleet::for_unit(
            &[opt("X-Conflicts", "%p@*.service", 15)],
            &UnitName::parse("hellocounter@3.service").unwrap(),
        )
        .unwrap();
        assert!(units_conflict(
            "hellocounter@2.service",
            &x,
            "hellocounter@3.service",
            &other
        ));
        assert!(!units_conflict(
            "hellocounter@2.service",
            &x,
            "hellocounter@2.service",
            &x
        ));
        // C31 redis.service conflicting with itself is harmless.
        let x = parse(&[opt("Conflicts", "redis.service", 15)]);
        assert!(!units_conflict("redis.service", &x, "redis.service", &x));
        assert!(!units_conflict(
            "redis.service",
            &x,
            "other.service",
            &XFleet::default()
        ));
        // C42 my_discovery.service
        let x = parse(&[opt("MachineOf", "my.service", 10)]);
        assert_eq!(x.machine_of().len(), 1);
    }

    #[test]
    fn other_sections_are_ignored() {
        let opts = [
            UnitOption::new("Unit", "Conflicts", "etcd.service"),
            UnitOption::new("Service", "Bogus", "x"),
            UnitOption::new("X-Fleet", "Conflicts", "a*"),
        ];
        let x = parse(&opts);
        assert_eq!(x.conflicts().len(), 1);
        assert!(parse(&opts[..2]).is_empty());
    }

    #[test]
    fn metadata_and_or_semantics() {
        // diskType=SSD AND (region=us-east-1 OR region=us-west-1)
        let x = parse(&[
            opt("MachineMetadata", r#""region=us-east-1" "diskType=SSD""#, 2),
            opt("MachineMetadata", "region=us-west-1", 3),
        ]);
        assert!(x.metadata_matches(&machine(&[("region", "us-west-1"), ("diskType", "SSD")])));
        assert!(x.metadata_matches(&machine(&[("region", "us-east-1"), ("diskType", "SSD")])));
        assert!(!x.metadata_matches(&machine(&[("region", "us-west-1"), ("diskType", "HDD")])));
        assert!(!x.metadata_matches(&machine(&[("region", "us-west-1")])));
        // (job=foo OR job=bar) AND (east OR west), not (east AND foo) OR (west AND bar)
        let x = parse(&[
            opt("MachineMetadata", r#""region=us-east-1" "job=foo""#, 2),
            opt(
                "X-ConditionMachineMetadata",
                r#""region=us-west-1" "job=bar""#,
                3,
            ),
        ]);
        assert!(x.metadata_matches(&machine(&[("region", "us-east-1"), ("job", "bar")])));
        assert!(!x.metadata_matches(&machine(&[("region", "eu"), ("job", "bar")])));
        // Exact, case-sensitive.
        let x = parse(&[opt("MachineMetadata", "compute=web", 2)]);
        assert!(!x.metadata_matches(&machine(&[("compute", "Web")])));
        assert!(!x.metadata_matches(&machine(&[("Compute", "web")])));
        // No requirements: any machine.
        assert!(XFleet::default().metadata_matches(&machine(&[])));
    }

    #[test]
    fn metadata_comparisons() {
        let x = parse(&[
            opt("MachineMetadata", "ram>=1024", 2),
            opt("MachineMetadata", "ram<4096", 3),
            opt("MachineMetadata", r#""disk!=hdd" "disk!=tape""#, 4),
        ]);
        let m = |ram, disk| machine(&[("ram", ram), ("disk", disk)]);
        assert!(x.metadata_matches(&m("1024", "ssd")));
        assert!(x.metadata_matches(&m("2048.5", "nvme")));
        assert!(!x.metadata_matches(&m("512", "ssd")));
        // Numeric, not lexicographic: "4096" < "512" as strings.
        assert!(!x.metadata_matches(&m("4096", "ssd")));
        assert!(!x.metadata_matches(&m("2048", "hdd")));
        assert!(!x.metadata_matches(&m("2048", "tape")));
        assert!(!x.metadata_matches(&machine(&[("ram", "2048")])));
        // String comparison when either side is not a number.
        let r = MetadataRequirement::parse("zone>b").unwrap();
        assert!(r.matches(Some("c")) && !r.matches(Some("a")) && !r.matches(None));
        let r = MetadataRequirement::parse("v<=10").unwrap();
        assert!(r.matches(Some("9")) && r.matches(Some("10")) && r.matches(Some("-1.5")));
        assert!(
            !r.matches(Some("10a")),
            "string comparison: \"10a\" > \"10\""
        );
        let r = MetadataRequirement::parse("v>1e3").unwrap();
        assert!(
            r.matches(Some("2")),
            "1e3 is not a decimal number, so strings compare"
        );
        // `=` stays exact string equality even for numbers.
        let r = MetadataRequirement::parse("ram=1024").unwrap();
        assert!(!r.matches(Some("1024.0")));
        assert_eq!(r.to_string(), "ram=1024");
        assert_eq!(
            MetadataRequirement::parse("a!b=c").unwrap(),
            MetadataRequirement {
                key: "a!b".into(),
                op: MetadataOp::Eq,
                value: "c".into()
            }
        );
        // Values may contain `<`/`>` after `=` (fleet matched them literally).
        assert_eq!(MetadataRequirement::parse("a=<5").unwrap().value, "<5");
    }

    #[test]
    fn metadata_errors() {
        for bad in ["a=b=c", "=x", "x=", "key", "a==b", "<5", "a>=", "a!=b=c"] {
            let e = errors(&[opt("MachineMetadata", bad, 7)]);
            assert!(
                matches!(
                    &e[..],
                    [FleetError::InvalidMetadata {
                        line: 7,
                        column: 1,
                        ..
                    }]
                ),
                "{bad}: {e:?}"
            );
        }
        // Empty values from double spaces are ignored, not errors.
        let x = parse(&[opt("MachineMetadata", r#""a=b"  "c=d""#, 1)]);
        assert_eq!(x.metadata().len(), 2);
        // The unquoted mixed form is one value with two `=`.
        let e = errors(&[opt(
            "MachineMetadata",
            r#"region=us-east-1 "diskType=SSD""#,
            1,
        )]);
        assert!(e[0].to_string().contains("more than one `=`"));
    }

    #[test]
    fn unknown_keys() {
        let e = errors(&[opt("MachineMetaData", "compute=web", 9)]);
        assert_eq!(
            e,
            [FleetError::UnknownKey {
                key: "MachineMetaData".into(),
                line: 9,
                column: 1
            }]
        );
        assert!(e[0]
            .to_string()
            .contains("unrecognized requirement in [X-Fleet] section: \"MachineMetaData\""));
        for bad in [
            "MachineId",
            "Conflict",
            "X-MachineOf",
            "X-ConditionConflicts",
            "X-Global",
        ] {
            assert!(XFleet::from_options(&[opt(bad, "x", 1)]).is_err(), "{bad}");
        }
        let x = XFleet::parse(
            &[opt("Foo", "bar", 4), opt("Global", "yes", 5)],
            &ParseOptions {
                unit: None,
                allow_unknown_keys: true,
            },
        )
        .unwrap();
        assert!(x.is_global());
        assert_eq!(x.unknown_keys()[0].key, "Foo");
        assert_eq!(x.unknown_keys()[0].line, 4);
    }

    #[test]
    fn every_spelling_is_accepted() {
        let id = "2f8e1c4e9c7a4e6b9d0e5b1a3c7d9e11";
        for key in FleetKey::ALL {
            let value = match key.canonical() {
                FleetKey::MachineId => id,
                FleetKey::MachineMetadata => "a=b",
                FleetKey::Global => "true",
                _ => "a.service",
            };
            assert!(
                XFleet::from_options(&[opt(key.as_str(), value, 1)]).is_ok(),
                "{key}"
            );
            assert_eq!(FleetKey::from_name(key.as_str()), Some(key));
        }
        assert!(FleetKey::XConflicts.is_legacy() && !FleetKey::Conflicts.is_legacy());
    }

    #[test]
    fn machine_id() {
        let full = "2f8e1c4e9c7a4e6b9d0e5b1a3c7d9e11";
        let x = parse(&[opt("MachineID", full, 1)]);
        assert_eq!(x.machine_id(), Some(full));
        assert!(x.machine_id_matches(full));
        assert!(!x.machine_id_matches("00000000000000000000000000000000"));
        let x = parse(&[opt("MachineID", "2f8e1c4e", 1)]);
        assert!(x.machine_id_matches(full));
        assert!(!x.machine_id_matches("2f8e1c4"));
        assert!(XFleet::default().machine_id_matches(full));
        // Current spelling before legacy ones, first value wins.
        let x = parse(&[
            opt("X-ConditionMachineBootID", "aaaaaaaa", 1),
            opt("X-ConditionMachineID", "bbbbbbbb", 2),
            opt("MachineID", "cccccccc", 3),
            opt("MachineID", "dddddddd", 4),
        ]);
        assert_eq!(x.machine_id(), Some("cccccccc"));
        let x = parse(&[
            opt("X-ConditionMachineBootID", "aaaaaaaa", 1),
            opt("X-ConditionMachineID", "bbbbbbbb", 2),
        ]);
        assert_eq!(x.machine_id(), Some("bbbbbbbb"));
        for bad in [
            "2f8e1c4",
            "2F8E1C4E",
            "2f8e1c4e9",
            "zzzzzzzz",
            "2f8e1c4e-9c7a",
        ] {
            let e = errors(&[opt("MachineID", bad, 3)]);
            assert!(
                matches!(&e[..], [FleetError::InvalidMachineId { line: 3, .. }]),
                "{bad}"
            );
            assert!(e[0].to_string().contains("/etc/machine-id"));
        }
    }

    #[test]
    fn global_truthiness_last_wins() {
        for (v, want) in [
            ("true", true),
            ("YES", true),
            ("1", true),
            ("On", true),
            ("t", true),
            ("false", false),
            ("no", false),
            ("y", false),
            ("2", false),
        ] {
            assert_eq!(parse(&[opt("Global", v, 1)]).is_global(), want, "{v}");
        }
        let x = parse(&[opt("Global", "true", 1), opt("Global", "false", 2)]);
        assert!(!x.is_global());
        let x = parse(&[opt("Global", "false", 1), opt("Global", "true", 2)]);
        assert!(x.is_global());
        assert!(!XFleet::default().is_global());
    }

    #[test]
    fn forbidden_combinations() {
        let id = "2f8e1c4e9c7a4e6b9d0e5b1a3c7d9e11";
        let pairs = |opts: &[UnitOption]| -> Vec<(FleetKey, FleetKey, usize)> {
            errors(opts)
                .into_iter()
                .filter_map(|e| match e {
                    FleetError::Incompatible {
                        first,
                        second,
                        line,
                        ..
                    } => Some((first, second, line)),
                    _ => None,
                })
                .collect()
        };
        assert_eq!(
            pairs(&[
                opt("MachineID", id, 1),
                opt("X-ConditionMachineOf", "a.service", 2)
            ]),
            [(FleetKey::MachineId, FleetKey::MachineOf, 2)]
        );
        assert_eq!(
            pairs(&[opt("MachineID", id, 1), opt("Conflicts", "a*", 2)]),
            [(FleetKey::MachineId, FleetKey::Conflicts, 2)]
        );
        assert_eq!(
            pairs(&[opt("X-ConditionMachineID", id, 1), opt("Global", "true", 2)]),
            [(FleetKey::MachineId, FleetKey::Global, 2)]
        );
        assert_eq!(
            pairs(&[opt("MachineID", id, 1), opt("Replaces", "a.service", 2)]),
            [(FleetKey::MachineId, FleetKey::Replaces, 2)]
        );
        assert_eq!(
            pairs(&[opt("Global", "true", 1), opt("MachineOf", "a.service", 2)]),
            [(FleetKey::Global, FleetKey::MachineOf, 2)]
        );
        assert_eq!(
            pairs(&[opt("Global", "true", 1), opt("Replaces", "a.service", 2)]),
            [(FleetKey::Global, FleetKey::Replaces, 2)]
        );
        assert_eq!(
            pairs(&[opt("Conflicts", "a*", 1), opt("Replaces", "b.service", 2)]),
            [(FleetKey::Conflicts, FleetKey::Replaces, 2)]
        );
        // fleet 1.0: Global with Conflicts and MachineMetadata is fine.
        let x = parse(&[
            opt("Global", "true", 1),
            opt("Conflicts", "a*", 2),
            opt("MachineMetadata", "role=x", 3),
        ]);
        assert!(x.is_global());
        // Global=false imposes nothing.
        assert!(XFleet::from_options(&[
            opt("Global", "false", 1),
            opt("MachineOf", "a.service", 2)
        ])
        .is_ok());
        let e = errors(&[opt("MachineID", id, 1), opt("MachineOf", "a.service", 2)]);
        assert!(e[0]
            .to_string()
            .contains("MachineID cannot be used with MachineOf"));
    }

    #[test]
    fn peer_excluded_and_invalid_peer() {
        let e = errors(&[
            opt("MachineOf", "web@1.service", 2),
            opt("Conflicts", "web@*.service", 3),
        ]);
        assert!(matches!(
            &e[..],
            [FleetError::PeerExcluded {
                kind: FleetKey::Conflicts,
                line: 2,
                ..
            }]
        ));
        assert!(e[0].to_string().contains("unresolvable requirements"));
        let e = errors(&[opt("MachineOf", "a.service b.service", 2)]);
        assert!(matches!(&e[..], [FleetError::InvalidPeer { .. }]));
        // Quoted list: two peers.
        let x = parse(&[opt("MachineOf", r#""a.service" "b.service""#, 2)]);
        assert_eq!(x.machine_of().len(), 2);
    }

    #[test]
    fn conflicts_split_on_whitespace_and_bad_patterns() {
        let x = parse(&[opt("Conflicts", "a* b*", 1)]);
        assert_eq!(x.conflicts().len(), 2);
        assert!(x.conflicts_with("a.service") && x.conflicts_with("b.service"));
        assert!(!x.conflicts_with("c.service"));
        let e = errors(&[opt("Conflicts", "web[.service", 4)]);
        assert!(matches!(&e[..], [FleetError::BadPattern { line: 4, .. }]));
        let x = parse(&[opt("Replaces", "old@*.service", 1)]);
        assert!(x.replaces_unit("old@1.service") && !x.replaces_unit("new@1.service"));
    }

    #[test]
    fn multiple_errors_reported_at_once() {
        let v = XFleet::from_options(&[
            opt("Bogus", "1", 1),
            opt("MachineID", "nope", 2),
            opt("MachineMetadata", "x", 3),
            opt("Conflicts", "[", 4),
        ])
        .unwrap_err();
        assert_eq!(v.errors.len(), 5, "{v}");
        let text = v.to_string();
        assert!(
            text.starts_with("invalid [X-Fleet] section: line 1, column 1"),
            "{text}"
        );
    }

    #[test]
    fn go_path_match_vectors() {
        // From Go's path/match_test.go.
        let cases: &[(&str, &str, Result<bool, BadPattern>)] = &[
            ("abc", "abc", Ok(true)),
            ("*", "abc", Ok(true)),
            ("*c", "abc", Ok(true)),
            ("a*", "a", Ok(true)),
            ("a*", "abc", Ok(true)),
            ("a*", "ab/c", Ok(false)),
            ("a*/b", "abc/b", Ok(true)),
            ("a*/b", "a/c/b", Ok(false)),
            ("a*b*c*d*e*/f", "axbxcxdxe/f", Ok(true)),
            ("a*b*c*d*e*/f", "axbxcxdxexxx/f", Ok(true)),
            ("a*b*c*d*e*/f", "axbxcxdxe/xxx/f", Ok(false)),
            ("a*b*c*d*e*/f", "axbxcxdxexxx/fff", Ok(false)),
            ("a*b?c*x", "abxbbxdbxebxczzx", Ok(true)),
            ("a*b?c*x", "abxbbxdbxebxczzy", Ok(false)),
            ("ab[c]", "abc", Ok(true)),
            ("ab[b-d]", "abc", Ok(true)),
            ("ab[e-g]", "abc", Ok(false)),
            ("ab[^c]", "abc", Ok(false)),
            ("ab[^b-d]", "abc", Ok(false)),
            ("ab[^e-g]", "abc", Ok(true)),
            ("a\\*b", "a*b", Ok(true)),
            ("a\\*b", "ab", Ok(false)),
            ("a?b", "a☺b", Ok(true)),
            ("a[^a]b", "a☺b", Ok(true)),
            ("a???b", "a☺b", Ok(false)),
            ("a[^a][^a][^a]b", "a☺b", Ok(false)),
            ("[a-ζ]*", "α", Ok(true)),
            ("*[a-ζ]", "A", Ok(false)),
            ("a?b", "a/b", Ok(false)),
            ("a*b", "a/b", Ok(false)),
            ("[\\]a]", "]", Ok(true)),
            ("[\\-]", "-", Ok(true)),
            ("[x\\-]", "x", Ok(true)),
            ("[x\\-]", "-", Ok(true)),
            ("[x\\-]", "z", Ok(false)),
            ("[\\-x]", "x", Ok(true)),
            ("[\\-x]", "-", Ok(true)),
            ("[\\-x]", "a", Ok(false)),
            ("[]a]", "]", Err(BadPattern)),
            ("[-]", "-", Err(BadPattern)),
            ("[x-]", "x", Err(BadPattern)),
            ("[x-]", "-", Err(BadPattern)),
            ("[x-]", "z", Err(BadPattern)),
            ("[-x]", "x", Err(BadPattern)),
            ("[-x]", "-", Err(BadPattern)),
            ("[-x]", "a", Err(BadPattern)),
            ("\\", "a", Err(BadPattern)),
            ("[a-b-c]", "a", Err(BadPattern)),
            ("[", "a", Err(BadPattern)),
            ("[^", "a", Err(BadPattern)),
            ("[^bc", "a", Err(BadPattern)),
            ("a[", "a", Err(BadPattern)),
            ("a[", "ab", Err(BadPattern)),
            ("a[", "x", Err(BadPattern)),
            ("a/b[", "x", Err(BadPattern)),
            ("*x", "xxx", Ok(true)),
        ];
        for (pattern, name, want) in cases {
            assert_eq!(glob_match(pattern, name), *want, "{pattern} vs {name}");
        }
    }

    proptest! {
        #[test]
        fn literal_patterns_match_only_themselves(a in "[a-z0-9@._-]{1,12}", b in "[a-z0-9@._-]{1,12}") {
            prop_assert!(glob_match(&a, &a).unwrap());
            prop_assert_eq!(glob_match(&a, &b).unwrap(), a == b);
        }

        #[test]
        fn escaped_names_match_literally(name in "[^/]{0,12}", other in "[^/]{0,12}") {
            let mut pattern = String::new();
            for c in name.chars() {
                if matches!(c, '*' | '?' | '[' | '\\') {
                    pattern.push('\\');
                }
                pattern.push(c);
            }
            prop_assert!(glob_match(&pattern, &name).unwrap());
            prop_assert_eq!(glob_match(&pattern, &other).unwrap(), name == other);
        }

        #[test]
        fn star_suffix_is_prefix_test(prefix in "[a-z@.]{0,8}", name in "[a-z@.]{0,12}") {
            let pattern = format!("{prefix}*");
            prop_assert_eq!(glob_match(&pattern, &name).unwrap(), name.starts_with(&prefix));
        }

        #[test]
        fn glob_never_panics(pattern in "\\PC{0,16}", name in "\\PC{0,16}") {
            let r = glob_match(&pattern, &name);
            prop_assert_eq!(r.is_ok(), is_valid_glob(&pattern));
        }

        #[test]
        fn parse_never_panics(key in "[A-Za-z-]{0,30}", value in "\\PC{0,40}") {
            let opts = [opt(&key, &value, 1)];
            let _ = XFleet::from_options(&opts);
            let unit = UnitName::parse("a@b.service").unwrap();
            let _ = XFleet::for_unit(&opts, &unit);
        }

        #[test]
        fn equality_metadata_is_set_membership(
            wanted in proptest::collection::vec(("[a-c]", "[x-z]"), 1..5),
            have in proptest::collection::btree_map("[a-c]", "[x-z]", 0..3),
        ) {
            let opts: Vec<UnitOption> = wanted
                .iter()
                .map(|(k, v)| opt("MachineMetadata", &format!("{k}={v}"), 1))
                .collect();
            let x = parse(&opts);
            let m: HashMap<String, String> = have.clone().into_iter().collect();
            let expected = wanted.iter().all(|(k, _)| {
                have.get(k).is_some_and(|hv| wanted.iter().any(|(k2, v2)| k2 == k && v2 == hv))
            });
            prop_assert_eq!(x.metadata_matches(&m), expected);
        }
    }
}
