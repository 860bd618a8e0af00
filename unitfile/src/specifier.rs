//! Specifiers: `%n`, `%i`, `%H` … expanded against an explicit context.
//!
//! systemd reads the machine ID, boot ID and host name from the running
//! system when it loads a unit. This library never touches `/etc` or `/proc`:
//! the caller (the init backend, a test, `keelctl` on another machine) puts
//! those facts in a [`SpecifierContext`], which keeps expansion pure and makes
//! the same unit expand the same way in a simulation as on a node. fleet's own
//! much smaller expansion for `[X-Fleet]` values is [`expand_fleet`].

use std::collections::BTreeMap;

use thiserror::Error;

use crate::name::{unescape, unescape_path, NameError, UnitName};

/// Why a value could not be expanded. `offset` is the byte offset of the `%`
/// in the value.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SpecifierError {
    /// `%x` where systemd has no specifier `x`.
    #[error(
        "unknown specifier `%{specifier}` at byte {offset}; write `%%` for a literal percent sign"
    )]
    Unknown {
        /// The character after `%`.
        specifier: char,
        /// Byte offset of the `%`.
        offset: usize,
    },
    /// A specifier systemd knows, but whose value the context does not carry.
    #[error(
        "specifier `%{specifier}` at byte {offset} needs the {what}, which the specifier context \
         does not provide; set it on the SpecifierContext"
    )]
    Unavailable {
        /// The character after `%`.
        specifier: char,
        /// Byte offset of the `%`.
        offset: usize,
        /// What the context lacks, e.g. "machine ID".
        what: &'static str,
    },
    /// `%I`, `%P`, `%J` or `%f` on a name whose escaping is invalid.
    #[error("specifier `%{specifier}` at byte {offset} cannot unescape the unit name: {source}")]
    Unescape {
        /// The character after `%`.
        specifier: char,
        /// Byte offset of the `%`.
        offset: usize,
        /// The unescaping failure.
        source: NameError,
    },
}

/// Specifiers systemd resolves from facts outside the unit name that this
/// crate does not model individually: values come from
/// [`SpecifierContext::extra`]. `%h %s` home and shell, `%g %G` group,
/// `%v` kernel release, `%a` architecture, `%o %w %W %B %M %A` os-release
/// fields, `%R` pretty host name.
pub const EXTERNAL_SPECIFIERS: &str = "aABgGhMoRsvwW";

/// Everything a specifier can expand to besides the unit name.
///
/// Construct with [`SpecifierContext::system`] (the system manager: user
/// `root`, UID 0, runtime directory `/run`) and fill in what the node knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecifierContext {
    /// The unit whose settings are expanded (`%n %N %p %P %i %I %f %j %J`).
    pub unit: UnitName,
    /// `%m`: 32 lowercase hex digits, as in `/etc/machine-id`.
    pub machine_id: Option<String>,
    /// `%b`: the boot ID; dashes (as in `/proc/sys/kernel/random/boot_id`)
    /// are removed on expansion.
    pub boot_id: Option<String>,
    /// `%H` (and `%l`, the part before the first `.`).
    pub host_name: Option<String>,
    /// `%u`: the service manager's user, `root` for the system manager.
    pub user_name: String,
    /// `%U`: the service manager's UID.
    pub uid: u32,
    /// `%t`: `/run` for the system manager, `$XDG_RUNTIME_DIR` for a user one.
    pub runtime_dir: String,
    /// Values for [`EXTERNAL_SPECIFIERS`], and overrides for the directory
    /// specifiers `%T %V %S %C %L %E` (whose system-manager defaults are
    /// `/tmp /var/tmp /var/lib /var/cache /var/log /etc`).
    pub extra: BTreeMap<char, String>,
}

impl SpecifierContext {
    /// A context for the system manager: `%u`=`root`, `%U`=`0`, `%t`=`/run`;
    /// machine ID, boot ID and host name unset.
    pub fn system(unit: UnitName) -> SpecifierContext {
        SpecifierContext {
            unit,
            machine_id: None,
            boot_id: None,
            host_name: None,
            user_name: "root".to_owned(),
            uid: 0,
            runtime_dir: "/run".to_owned(),
            extra: BTreeMap::new(),
        }
    }

    /// Set `%m`.
    pub fn with_machine_id(mut self, id: impl Into<String>) -> Self {
        self.machine_id = Some(id.into());
        self
    }

    /// Set `%b`.
    pub fn with_boot_id(mut self, id: impl Into<String>) -> Self {
        self.boot_id = Some(id.into());
        self
    }

    /// Set `%H`.
    pub fn with_host_name(mut self, name: impl Into<String>) -> Self {
        self.host_name = Some(name.into());
        self
    }

    /// Set `%u` and `%U` (a user service manager).
    pub fn with_user(mut self, name: impl Into<String>, uid: u32) -> Self {
        self.user_name = name.into();
        self.uid = uid;
        self
    }

    /// Set `%t`.
    pub fn with_runtime_dir(mut self, dir: impl Into<String>) -> Self {
        self.runtime_dir = dir.into();
        self
    }

    /// Set the value of one of [`EXTERNAL_SPECIFIERS`] or a directory
    /// specifier.
    pub fn with_extra(mut self, specifier: char, value: impl Into<String>) -> Self {
        self.extra.insert(specifier, value.into());
        self
    }

    fn resolve(&self, spec: char, offset: usize) -> Result<String, SpecifierError> {
        let unit = &self.unit;
        let unavailable = |what| SpecifierError::Unavailable {
            specifier: spec,
            offset,
            what,
        };
        let unescaped = |r: Result<String, NameError>| {
            r.map_err(|source| SpecifierError::Unescape {
                specifier: spec,
                offset,
                source,
            })
        };
        let value = match spec {
            'n' => unit.as_str().to_owned(),
            'N' => unit.stem().to_owned(),
            'p' => unit.prefix().to_owned(),
            'P' => unescaped(unescape(unit.prefix()))?,
            'i' => unit.instance().unwrap_or("").to_owned(),
            'I' => unescaped(unescape(unit.instance().unwrap_or("")))?,
            'j' => last_dash_component(unit.prefix()).to_owned(),
            'J' => unescaped(unescape(last_dash_component(unit.prefix())))?,
            'f' => unescaped(match unit.instance() {
                Some(i) if !i.is_empty() => unescape_path(i),
                _ => unescape_path(unit.prefix()),
            })?,
            'm' => self
                .machine_id
                .clone()
                .ok_or_else(|| unavailable("machine ID"))?,
            'b' => self
                .boot_id
                .as_deref()
                .map(|b| b.replace('-', ""))
                .ok_or_else(|| unavailable("boot ID"))?,
            'H' => self
                .host_name
                .clone()
                .ok_or_else(|| unavailable("host name"))?,
            'l' => self
                .host_name
                .as_deref()
                .map(|h| h.split('.').next().unwrap_or(h).to_owned())
                .ok_or_else(|| unavailable("host name"))?,
            'u' => self.user_name.clone(),
            'U' => self.uid.to_string(),
            't' => self.runtime_dir.clone(),
            'T' | 'V' | 'S' | 'C' | 'L' | 'E' => match self.extra.get(&spec) {
                Some(v) => v.clone(),
                None => match spec {
                    'T' => "/tmp",
                    'V' => "/var/tmp",
                    'S' => "/var/lib",
                    'C' => "/var/cache",
                    'L' => "/var/log",
                    _ => "/etc",
                }
                .to_owned(),
            },
            c if EXTERNAL_SPECIFIERS.contains(c) => self
                .extra
                .get(&c)
                .cloned()
                .ok_or_else(|| unavailable(external_name(c)))?,
            _ => {
                return Err(SpecifierError::Unknown {
                    specifier: spec,
                    offset,
                })
            }
        };
        Ok(value)
    }
}

fn external_name(c: char) -> &'static str {
    match c {
        'a' => "architecture",
        'A' => "OS image version",
        'B' => "OS build ID",
        'g' => "group name",
        'G' => "GID",
        'h' => "home directory",
        'M' => "OS image ID",
        'o' => "OS ID",
        'R' => "pretty host name",
        's' => "shell",
        'v' => "kernel release",
        'w' => "OS version ID",
        'W' => "OS variant ID",
        _ => "value",
    }
}

/// `%j`: the last dash-separated component of the prefix, or all of it.
fn last_dash_component(prefix: &str) -> &str {
    match prefix.rfind('-') {
        Some(i) => &prefix[i + 1..],
        None => prefix,
    }
}

/// Expand systemd specifiers in `value` (current systemd semantics).
///
/// `%%` is a literal `%`; an unknown specifier is an error naming it and its
/// byte offset (older systemd left it verbatim); a `%` at the very end of the
/// value is kept literally, as systemd does.
///
/// ```
/// use keelson_unitfile::name::UnitName;
/// use keelson_unitfile::specifier::{expand, SpecifierContext};
///
/// let ctx = SpecifierContext::system(UnitName::parse("unitspec@1.service").unwrap());
/// assert_eq!(expand("set instance%i %i ; set prefix %p", &ctx).unwrap(),
///            "set instance1 1 ; set prefix unitspec");
/// ```
pub fn expand(value: &str, ctx: &SpecifierContext) -> Result<String, SpecifierError> {
    let mut out = String::with_capacity(value.len());
    let mut chars = value.char_indices();
    while let Some((offset, c)) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            None => out.push('%'),
            Some((_, '%')) => out.push('%'),
            Some((_, spec)) => out.push_str(&ctx.resolve(spec, offset)?),
        }
    }
    Ok(out)
}

/// fleet's expansion of `[X-Fleet]` values (scheduler.md §6.2): only `%n`,
/// `%N`, `%p` and `%i`, by plain text substitution. There is no `%%` escape
/// and any other `%x` is left as written. Never fails.
pub fn expand_fleet(value: &str, unit: &UnitName) -> String {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(i) = rest.find('%') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let replacement = match after.chars().next() {
            Some('n') => Some(unit.as_str()),
            Some('N') => Some(unit.stem()),
            Some('p') => Some(unit.prefix()),
            Some('i') => Some(unit.instance().unwrap_or("")),
            _ => None,
        };
        match replacement {
            Some(r) => {
                out.push_str(r);
                rest = &after[1..];
            }
            None => {
                out.push('%');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ctx(unit: &str) -> SpecifierContext {
        SpecifierContext::system(UnitName::parse(unit).unwrap())
            .with_machine_id("2f8e1c4e9c7a4e6b9d0e5b1a3c7d9e11")
            .with_boot_id("d2b4a8e1-2f3c-4b5d-8e6f-7a8b9c0d1e2f")
            .with_host_name("core-01.example.com")
    }

    #[test]
    fn reference_table_for_nginx_instance() {
        let c = ctx("nginx@8080.service");
        let e = |s| expand(s, &c).unwrap();
        assert_eq!(e("%n"), "nginx@8080.service");
        assert_eq!(e("%N"), "nginx@8080");
        assert_eq!(e("%p"), "nginx");
        assert_eq!(e("%P"), "nginx");
        assert_eq!(e("%i"), "8080");
        assert_eq!(e("%I"), "8080");
        assert_eq!(e("%f"), "/8080");
        assert_eq!(e("%m"), "2f8e1c4e9c7a4e6b9d0e5b1a3c7d9e11");
        assert_eq!(e("%b"), "d2b4a8e12f3c4b5d8e6f7a8b9c0d1e2f");
        assert_eq!(e("%H"), "core-01.example.com");
        assert_eq!(e("%l"), "core-01");
        assert_eq!(e("%u"), "root");
        assert_eq!(e("%U"), "0");
        assert_eq!(e("%t"), "/run");
        assert_eq!(e("%%"), "%");
        assert_eq!(e("100%% %%i"), "100% %i");
    }

    #[test]
    fn unescaped_forms() {
        let c = ctx("foo@a-b.service");
        assert_eq!(expand("%i %I %f", &c).unwrap(), "a-b a/b /a/b");
        let c = ctx("mnt-data.mount");
        assert_eq!(
            expand("%p|%P|%f|%i|%I", &c).unwrap(),
            "mnt-data|mnt/data|/mnt/data||"
        );
        let c = ctx("foo\\x2dbar-baz.service");
        assert_eq!(expand("%P %j %J", &c).unwrap(), "foo-bar/baz baz baz");
        let c = ctx("redis.service");
        assert_eq!(expand("%p %N %i", &c).unwrap(), "redis redis ");
        let c = ctx("-.mount");
        assert_eq!(expand("%f", &c).unwrap(), "/");
    }

    #[test]
    fn book_units() {
        // C09 unitspec.service
        let c = ctx("unitspec.service");
        assert_eq!(
            expand(
                "/usr/bin/etcdctl set hostname %H ; /usr/bin/etcdctl set machinename %m ; \
                 /usr/bin/etcdctl set unitname %n ; /usr/bin/etcdctl set username %u",
                &c
            )
            .unwrap(),
            "/usr/bin/etcdctl set hostname core-01.example.com ; /usr/bin/etcdctl set \
             machinename 2f8e1c4e9c7a4e6b9d0e5b1a3c7d9e11 ; /usr/bin/etcdctl set unitname \
             unitspec.service ; /usr/bin/etcdctl set username root"
        );
        // C30 hellocounter@.service: %p%i
        let c = ctx("hellocounter@2.service");
        assert_eq!(
            expand("/usr/bin/docker kill %p%i", &c).unwrap(),
            "/usr/bin/docker kill hellocounter2"
        );
        // C17 apacheupdateetcd@.service: %H:%i
        let c = SpecifierContext::system(UnitName::parse("apacheupdateetcd@80.service").unwrap())
            .with_host_name("core-02");
        assert_eq!(
            expand(
                "/usr/bin/etcdctl set /domains/example.com/%H:%i running",
                &c
            )
            .unwrap(),
            "/usr/bin/etcdctl set /domains/example.com/core-02:80 running"
        );
        // C18 Description with %i
        let c = ctx("apachet@8080.service");
        assert_eq!(
            expand("Apache web server service on port %i", &c).unwrap(),
            "Apache web server service on port 8080"
        );
    }

    #[test]
    fn errors() {
        let c = SpecifierContext::system(UnitName::parse("a.service").unwrap());
        assert_eq!(
            expand("abc %z", &c),
            Err(SpecifierError::Unknown {
                specifier: 'z',
                offset: 4
            })
        );
        let e = expand("x%m", &c).unwrap_err();
        assert_eq!(
            e,
            SpecifierError::Unavailable {
                specifier: 'm',
                offset: 1,
                what: "machine ID"
            }
        );
        assert!(e.to_string().contains("machine ID"));
        assert!(matches!(
            expand("%H", &c),
            Err(SpecifierError::Unavailable { specifier: 'H', .. })
        ));
        assert!(matches!(
            expand("%b", &c),
            Err(SpecifierError::Unavailable { specifier: 'b', .. })
        ));
        assert!(matches!(
            expand("%h", &c),
            Err(SpecifierError::Unavailable { specifier: 'h', .. })
        ));
        // Multi-byte specifier characters are reported, not sliced.
        assert!(matches!(
            expand("%é", &c),
            Err(SpecifierError::Unknown {
                specifier: 'é', ..
            })
        ));
        // A trailing lone `%` is literal.
        assert_eq!(expand("50%", &c).unwrap(), "50%");
        // %f on a name that is not a valid escaped path.
        let c = SpecifierContext::system(UnitName::parse("foo-.service").unwrap());
        assert!(matches!(
            expand("%f", &c),
            Err(SpecifierError::Unescape { specifier: 'f', .. })
        ));
        let c = SpecifierContext::system(UnitName::parse("a@\\xff.service").unwrap());
        assert!(matches!(
            expand("%I", &c),
            Err(SpecifierError::Unescape { specifier: 'I', .. })
        ));
    }

    #[test]
    fn extra_and_directories() {
        let c = SpecifierContext::system(UnitName::parse("a.service").unwrap())
            .with_extra('h', "/root")
            .with_extra('S', "/srv/state")
            .with_user("core", 500)
            .with_runtime_dir("/run/user/500");
        assert_eq!(
            expand("%h %S %C %T %V %L %E %u %U %t", &c).unwrap(),
            "/root /srv/state /var/cache /tmp /var/tmp /var/log /etc core 500 /run/user/500"
        );
    }

    #[test]
    fn fleet_expansion() {
        let u = UnitName::parse("hellocounter@2.service").unwrap();
        assert_eq!(expand_fleet("%p@*.service", &u), "hellocounter@*.service");
        let u = UnitName::parse("wordpress@2.service").unwrap();
        assert_eq!(expand_fleet("mysql@%i.service", &u), "mysql@2.service");
        let u = UnitName::parse("hello@1.service").unwrap();
        assert_eq!(
            expand_fleet("%n|%N|%p|%i", &u),
            "hello@1.service|hello@1|hello|1"
        );
        // No %% escape, unknown specifiers kept, trailing % kept.
        assert_eq!(
            expand_fleet("%%n %H %m 5%", &u),
            "%hello@1.service %H %m 5%"
        );
        let u = UnitName::parse("redis.service").unwrap();
        assert_eq!(expand_fleet("%p-%i-", &u), "redis--");
    }

    proptest! {
        #[test]
        fn expand_is_identity_without_percent(s in "[^%]*") {
            let c = SpecifierContext::system(UnitName::parse("a@b.service").unwrap());
            prop_assert_eq!(expand(&s, &c).unwrap(), s.clone());
            prop_assert_eq!(expand_fleet(&s, &c.unit), s);
        }

        #[test]
        fn doubled_percent_is_literal(s in "\\PC*") {
            let c = SpecifierContext::system(UnitName::parse("a@b.service").unwrap());
            let escaped = s.replace('%', "%%");
            prop_assert_eq!(expand(&escaped, &c).unwrap(), s);
        }

        #[test]
        fn never_panics(s in "\\PC*") {
            let c = SpecifierContext::system(UnitName::parse("a@b.service").unwrap());
            let _ = expand(&s, &c);
            let _ = expand_fleet(&s, &c.unit);
        }
    }
}
