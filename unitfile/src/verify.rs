//! Whole-file verification for people moving units from fleet: one pass that
//! reports every problem fleet or systemd would have with a file, each with
//! its position, so an editor or CI job can jump to it.
//!
//! The syntax is read in fleet mode, because a file fleet would refuse never
//! reached a machine; systemd's warnings (ignored lines) are reported on top.
//! The unit name comes from the file name (for a drop-in `NAME.d/x.conf`,
//! from its directory), and `[X-Fleet]` and exec lines are checked with the
//! same code the scheduler and the init backend use.

use std::fmt;
use std::path::Path;

use crate::exec::parse_exec;
use crate::fleet::XFleet;
use crate::name::UnitName;
use crate::unit::{Mode, Unit};

/// How serious a [`Diagnostic`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// systemd would ignore the line; the unit still loads.
    Warning,
    /// fleet or systemd refuses the unit, or a setting can never work.
    Error,
}

/// One problem found in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file name as given by the caller.
    pub file: String,
    /// 1-based line (0 when the problem concerns the file as a whole).
    pub line: usize,
    /// 1-based column (0 when the problem concerns the file as a whole).
    pub column: usize,
    /// Warning or error.
    pub severity: Severity,
    /// What is wrong and what to do.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Warning => "warning: ",
            Severity::Error => "",
        };
        write!(
            f,
            "{}:{}:{}: {sev}{}",
            self.file, self.line, self.column, self.message
        )
    }
}

/// The exec settings whose values are command lines.
const EXEC_KEYS: [&str; 8] = [
    "ExecStartPre",
    "ExecStart",
    "ExecStartPost",
    "ExecReload",
    "ExecStop",
    "ExecStopPost",
    "ExecCondition",
    "ExecCleanup",
];

/// Verifies a unit file's bytes; `file` is the path it was read from (used
/// for the unit name and in every diagnostic). Returns every problem found,
/// errors and warnings, in file order.
pub fn verify(file: &str, contents: &[u8]) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let diag = |line, column, severity, message: String| Diagnostic {
        file: file.to_owned(),
        line,
        column,
        severity,
        message,
    };

    let name = unit_name_for(file);
    let unit_name = match &name {
        NameSource::Unit(n) | NameSource::DropInOf(n) => match UnitName::parse(n) {
            Ok(u) => Some(u),
            Err(e) => {
                out.push(diag(
                    0,
                    0,
                    Severity::Error,
                    format!("invalid unit name {n:?}: {e}"),
                ));
                None
            }
        },
        NameSource::Network => None,
    };

    let unit = match Unit::parse(contents, Mode::Fleet, Some(file)) {
        Ok(u) => u,
        Err(e) => {
            out.push(diag(
                e.line(),
                e.column(),
                Severity::Error,
                e.kind().to_string(),
            ));
            return out;
        }
    };
    if let Ok(systemd) = Unit::parse(contents, Mode::Systemd, Some(file)) {
        for w in systemd.warnings() {
            out.push(diag(
                w.line,
                w.column,
                Severity::Warning,
                w.kind.to_string(),
            ));
        }
    }

    let x_fleet = match &unit_name {
        Some(n) if !matches!(name, NameSource::DropInOf(_)) => XFleet::for_unit(unit.options(), n),
        _ => XFleet::from_options(unit.options()),
    };
    if let Err(v) = x_fleet {
        for e in v.errors {
            out.push(diag(e.line(), e.column(), Severity::Error, e.to_string()));
        }
    }

    for opt in unit.options() {
        if opt.section == "Service" && EXEC_KEYS.contains(&opt.name.as_str()) {
            if let Err(e) = parse_exec(&opt.value) {
                out.push(diag(
                    opt.line,
                    opt.column,
                    Severity::Error,
                    format!("{}=: {e}", opt.name),
                ));
            }
        }
    }

    out.sort_by_key(|d| (d.line, d.column));
    out
}

enum NameSource {
    Unit(String),
    DropInOf(String),
    /// systemd-networkd files (`.network`, `.netdev`, `.link`) are not units.
    Network,
}

fn unit_name_for(file: &str) -> NameSource {
    let path = Path::new(file);
    let base = path
        .file_name()
        .map(|b| b.to_string_lossy().into_owned())
        .unwrap_or_default();
    if base.ends_with(".network") || base.ends_with(".netdev") || base.ends_with(".link") {
        return NameSource::Network;
    }
    if base.ends_with(".conf") {
        let dir = path
            .parent()
            .and_then(|p| p.file_name())
            .map(|d| d.to_string_lossy().into_owned())
            .unwrap_or_default();
        if let Some(unit) = dir.strip_suffix(".d") {
            return NameSource::DropInOf(unit.to_owned());
        }
    }
    NameSource::Unit(base)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_unit_has_no_diagnostics() {
        let d = verify(
            "units/hello.service",
            b"[Unit]\nDescription=x\n\n[Service]\nExecStart=/bin/echo hi\n\n[X-Fleet]\nGlobal=true\n",
        );
        assert!(d.is_empty(), "{d:?}");
    }

    #[test]
    fn reports_syntax_error_with_position() {
        let d = verify("a.service", b"[Service]\nExecStart=/bin/true\nJustAWord\n");
        assert_eq!(d.len(), 1);
        assert_eq!((d[0].line, d[0].column), (3, 1));
        assert!(d[0].to_string().starts_with("a.service:3:1: "), "{}", d[0]);
    }

    #[test]
    fn reports_bad_name_unknown_fleet_key_and_bad_exec() {
        let d = verify(
            "bad name.service",
            b"[Service]\nExecStart=/bin/echo \"unterminated\n\n[X-Fleet]\nMachineIDD=abc\n",
        );
        let errors: Vec<String> = d.iter().map(ToString::to_string).collect();
        assert_eq!(d.len(), 3, "{errors:?}");
        assert!(errors[0].starts_with("bad name.service:0:0: invalid unit name"));
        assert!(errors[1].starts_with("bad name.service:2:1: ExecStart=:"));
        assert!(errors[2].starts_with("bad name.service:5:1: unrecognized requirement"));
    }

    #[test]
    fn drop_in_takes_its_name_from_the_directory() {
        let d = verify(
            "etc/flanneld.service.d/50-network-config.conf",
            b"[Service]\nExecStartPre=/usr/bin/etcdctl set /coreos.com/network/config '{ \"Network\": \"10.1.0.0/16\" }'\n",
        );
        assert!(d.is_empty(), "{d:?}");
        let d = verify("x/bad name.service.d/a.conf", b"[Service]\nUser=a\n");
        assert_eq!(d.len(), 1, "{d:?}");
    }

    #[test]
    fn systemd_warnings_are_not_errors() {
        let d = verify("w.service", b"Foo=bar\n[Service]\nExecStart=/bin/true\n");
        assert!(d.iter().all(|d| d.severity == Severity::Warning), "{d:?}");
    }
}
