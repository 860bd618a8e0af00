//! The unit of exchange between the parser and every interpreter of a unit
//! file: one assignment, where it came from, and nothing else.

/// One `Name=Value` assignment as parsed, in file order.
///
/// `line` and `column` are 1-based and point at the first byte of the option
/// name, so that validators built on top of the parser (`[X-Fleet]`, exec
/// lines, unit verification) can report `file:line:col` without re-reading
/// the file.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UnitOption {
    /// Section name without brackets, e.g. `Service` or `X-Fleet`.
    pub section: String,
    /// Option name, trimmed.
    pub name: String,
    /// Value with continuation lines joined as the parse mode prescribes.
    pub value: String,
    /// 1-based line of the option name.
    pub line: usize,
    /// 1-based column (in bytes) of the option name.
    pub column: usize,
}

impl UnitOption {
    /// An option with no source position (line and column 0), for units built
    /// in code rather than parsed.
    pub fn new(
        section: impl Into<String>,
        name: impl Into<String>,
        value: impl Into<String>,
    ) -> Self {
        UnitOption {
            section: section.into(),
            name: name.into(),
            value: value.into(),
            line: 0,
            column: 0,
        }
    }
}
