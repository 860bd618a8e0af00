//! `update.conf` and the release file.
//!
//! update_engine and locksmithd both read `KEY=VALUE` files; Keelson uses one
//! parser for both. For each key the first file that has it wins, searched in
//! `/etc/coreos/update.conf`, `/usr/share/coreos/update.conf`, then
//! `/usr/share/coreos/release`, all relative to `--root` so several simulated
//! nodes can share a host. Command-line flags override whatever the files say.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::version::{Channel, Version, VersionError};

/// The default Omaha endpoint (CoreOS's public server).
pub const DEFAULT_SERVER: &str = "https://public.update.core-os.net/v1/update/";

/// Files searched for each key, first hit wins.
pub const CONFIG_FILES: [&str; 3] = [
    "/etc/coreos/update.conf",
    "/usr/share/coreos/update.conf",
    "/usr/share/coreos/release",
];

/// The release file.
pub const RELEASE_FILE: &str = "/usr/share/coreos/release";

/// Errors reading configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{file}: COREOS_RELEASE_VERSION is missing; the running version must be known")]
    MissingVersion { file: PathBuf },
    #[error("{file}: {source}")]
    BadVersion { file: PathBuf, source: VersionError },
    #[error("unknown REBOOT_STRATEGY {0:?}: expected reboot, etcd-lock, off or best-effort")]
    BadStrategy(String),
}

/// Resolves an absolute path against `root` (`/` means the real system).
pub fn rooted(root: &Path, path: &str) -> PathBuf {
    root.join(path.trim_start_matches('/'))
}

/// Parses `KEY=VALUE` lines: `#` comments and blank lines are skipped, lines
/// without `=` ignored, the line split at the first `=`, one pair of matching
/// surrounding quotes stripped, the last occurrence wins. Nothing is trimmed,
/// as in update_engine's `simple_key_value_store`.
pub fn parse_key_values(text: &str) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    for line in text.lines() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.trim_start().starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        if key.is_empty() {
            continue;
        }
        map.insert(key.to_string(), unquote(value).to_string());
    }
    map
}

fn unquote(v: &str) -> &str {
    for q in ['"', '\''] {
        if v.len() >= 2 && v.starts_with(q) && v.ends_with(q) {
            return &v[1..v.len() - 1];
        }
    }
    v
}

/// The merged key/value view of the configuration files.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyValues {
    values: BTreeMap<String, String>,
}

impl KeyValues {
    /// Merges files in priority order: a key is taken from the first file that has it.
    pub fn merge<'a>(texts: impl IntoIterator<Item = &'a str>) -> Self {
        let mut values = BTreeMap::new();
        for text in texts {
            for (k, v) in parse_key_values(text) {
                values.entry(k).or_insert(v);
            }
        }
        Self { values }
    }

    /// Reads [`CONFIG_FILES`] under `root`; missing files are skipped.
    pub fn load(root: &Path) -> Result<Self, ConfigError> {
        let mut texts = Vec::new();
        for f in CONFIG_FILES {
            if let Some(t) = read_optional(&rooted(root, f))? {
                texts.push(t);
            }
        }
        Ok(Self::merge(texts.iter().map(String::as_str)))
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }

    /// Every key, known or not (unknown keys are kept and ignored).
    pub fn all(&self) -> &BTreeMap<String, String> {
        &self.values
    }
}

fn read_optional(path: &Path) -> Result<Option<String>, ConfigError> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(ConfigError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// locksmithd's reboot strategy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RebootStrategy {
    Reboot,
    EtcdLock,
    Off,
    /// Before locksmith v0.6.0: etcd-lock if etcd is running, else reboot.
    BestEffort,
}

impl std::str::FromStr for RebootStrategy {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, ConfigError> {
        match s {
            "reboot" => Ok(Self::Reboot),
            "etcd-lock" => Ok(Self::EtcdLock),
            "off" => Ok(Self::Off),
            "best-effort" => Ok(Self::BestEffort),
            other => Err(ConfigError::BadStrategy(other.to_string())),
        }
    }
}

/// Flags that override the files (`--group`, `--server`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    pub group: Option<String>,
    pub server: Option<String>,
}

/// The update settings update_engine and locksmithd act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateConfig {
    /// `GROUP`, sent as the Omaha track; default `stable`.
    pub group: Channel,
    /// `SERVER`, the Omaha endpoint.
    pub server: String,
    /// `REBOOT_STRATEGY`, if set.
    pub reboot_strategy: Option<RebootStrategy>,
    /// `LOCKSMITHD_REBOOT_WINDOW_START` (or `REBOOT_WINDOW_START`).
    pub reboot_window_start: Option<String>,
    /// `LOCKSMITHD_REBOOT_WINDOW_LENGTH` (or `REBOOT_WINDOW_LENGTH`).
    pub reboot_window_length: Option<String>,
    /// `MACHINE_ALIAS` (Flatcar).
    pub machine_alias: Option<String>,
    /// Everything read, unknown keys included.
    pub raw: KeyValues,
}

impl UpdateConfig {
    /// Reads the configuration under `root` and applies `overrides`.
    pub fn load(root: &Path, overrides: &Overrides) -> Result<Self, ConfigError> {
        Self::from_key_values(KeyValues::load(root)?, overrides)
    }

    /// Builds the configuration from merged key/values and flag overrides.
    pub fn from_key_values(raw: KeyValues, overrides: &Overrides) -> Result<Self, ConfigError> {
        let non_empty = |k: &str| raw.get(k).filter(|v| !v.is_empty()).map(str::to_string);
        let group = overrides
            .group
            .clone()
            .or_else(|| non_empty("GROUP"))
            .map(|g| Channel::from(g.as_str()))
            .unwrap_or_default();
        let server = overrides
            .server
            .clone()
            .or_else(|| non_empty("SERVER"))
            .unwrap_or_else(|| DEFAULT_SERVER.to_string());
        let reboot_strategy = non_empty("REBOOT_STRATEGY")
            .map(|s| s.parse())
            .transpose()?;
        Ok(Self {
            group,
            server,
            reboot_strategy,
            reboot_window_start: non_empty("LOCKSMITHD_REBOOT_WINDOW_START")
                .or_else(|| non_empty("REBOOT_WINDOW_START")),
            reboot_window_length: non_empty("LOCKSMITHD_REBOOT_WINDOW_LENGTH")
                .or_else(|| non_empty("REBOOT_WINDOW_LENGTH")),
            machine_alias: non_empty("MACHINE_ALIAS"),
            raw,
        })
    }
}

/// `/usr/share/coreos/release`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseInfo {
    /// `COREOS_RELEASE_VERSION`.
    pub version: Version,
    /// `COREOS_RELEASE_BOARD`, default `amd64-usr`.
    pub board: String,
    /// `COREOS_RELEASE_APPID`, default the CoreOS app id.
    pub app_id: String,
}

impl ReleaseInfo {
    /// Reads the release file under `root`; the version is required.
    pub fn load(root: &Path) -> Result<Self, ConfigError> {
        let path = rooted(root, RELEASE_FILE);
        let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
            path: path.clone(),
            source,
        })?;
        Self::parse(&text, &path)
    }

    /// Parses release-file text; `file` is used in errors.
    pub fn parse(text: &str, file: &Path) -> Result<Self, ConfigError> {
        let kv = parse_key_values(text);
        let v = kv
            .get("COREOS_RELEASE_VERSION")
            .ok_or_else(|| ConfigError::MissingVersion {
                file: file.to_path_buf(),
            })?;
        let version = v.parse().map_err(|source| ConfigError::BadVersion {
            file: file.to_path_buf(),
            source,
        })?;
        Ok(Self {
            version,
            board: kv
                .get("COREOS_RELEASE_BOARD")
                .cloned()
                .unwrap_or_else(|| "amd64-usr".into()),
            app_id: kv
                .get("COREOS_RELEASE_APPID")
                .cloned()
                .unwrap_or_else(|| format!("{{{}}}", crate::omaha::COREOS_APP_ID)),
        })
    }

    /// The release file text for `version` (used by tests and image builders).
    pub fn render(&self) -> String {
        format!(
            "COREOS_RELEASE_VERSION={}\nCOREOS_RELEASE_BOARD={}\nCOREOS_RELEASE_APPID={}\n",
            self.version, self.board, self.app_id
        )
    }
}

/// `/etc/machine-id` under `root`, trimmed; `None` when absent or empty.
pub fn machine_id(root: &Path) -> Result<Option<String>, ConfigError> {
    Ok(read_optional(&rooted(root, "/etc/machine-id"))?
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_rules() {
        let kv = parse_key_values(
            "# comment\n\nGROUP=alpha\nnoequals\nREBOOT_STRATEGY=\"etcd-lock\"\nW='Thu 04:00'\nX=a=b\nGROUP=beta\nY=\"unbalanced\nZ= spaced \r\n",
        );
        assert_eq!(kv["GROUP"], "beta", "last occurrence wins");
        assert_eq!(kv["REBOOT_STRATEGY"], "etcd-lock");
        assert_eq!(kv["W"], "Thu 04:00");
        assert_eq!(kv["X"], "a=b");
        assert_eq!(kv["Y"], "\"unbalanced");
        assert_eq!(kv["Z"], " spaced ", "nothing trimmed");
        assert!(!kv.contains_key("noequals"));
    }

    #[test]
    fn first_file_wins_and_flags_override() {
        let root = tempfile::tempdir().unwrap();
        let write = |p: &str, t: &str| {
            let f = rooted(root.path(), p);
            std::fs::create_dir_all(f.parent().unwrap()).unwrap();
            std::fs::write(f, t).unwrap();
        };
        write(
            "/usr/share/coreos/update.conf",
            "GROUP=stable\nSERVER=http://img/\nFOO=1\n",
        );
        write(
            "/etc/coreos/update.conf",
            "GROUP=alpha\nREBOOT_STRATEGY=etcd-lock\n",
        );
        write(
            RELEASE_FILE,
            "COREOS_RELEASE_VERSION=723.3.0\nCOREOS_RELEASE_BOARD=amd64-usr\n",
        );
        let c = UpdateConfig::load(root.path(), &Overrides::default()).unwrap();
        assert_eq!(c.group, Channel::Alpha);
        assert_eq!(c.server, "http://img/");
        assert_eq!(c.reboot_strategy, Some(RebootStrategy::EtcdLock));
        assert_eq!(c.raw.get("FOO"), Some("1"));
        let c = UpdateConfig::load(
            root.path(),
            &Overrides {
                group: Some("beta".into()),
                server: Some("http://flag/".into()),
            },
        )
        .unwrap();
        assert_eq!(
            (c.group, c.server.as_str()),
            (Channel::Beta, "http://flag/")
        );
        let r = ReleaseInfo::load(root.path()).unwrap();
        assert_eq!(r.version, "723.3.0".parse::<Version>().unwrap());
        assert_eq!(ReleaseInfo::parse(&r.render(), Path::new("x")).unwrap(), r);
    }

    #[test]
    fn defaults_and_errors() {
        let root = tempfile::tempdir().unwrap();
        let c = UpdateConfig::load(root.path(), &Overrides::default()).unwrap();
        assert_eq!(c.group, Channel::Stable);
        assert_eq!(c.server, DEFAULT_SERVER);
        assert!(matches!(
            ReleaseInfo::load(root.path()),
            Err(ConfigError::Read { .. })
        ));
        assert!(matches!(
            ReleaseInfo::parse("COREOS_RELEASE_BOARD=x\n", Path::new("r")),
            Err(ConfigError::MissingVersion { .. })
        ));
        assert!(matches!(
            ReleaseInfo::parse("COREOS_RELEASE_VERSION=abc\n", Path::new("r")),
            Err(ConfigError::BadVersion { .. })
        ));
        let kv = KeyValues::merge(["REBOOT_STRATEGY=sometimes\n"]);
        assert!(matches!(
            UpdateConfig::from_key_values(kv, &Overrides::default()),
            Err(ConfigError::BadStrategy(_))
        ));
        let kv = KeyValues::merge(["REBOOT_WINDOW_START=Thu 04:00\nREBOOT_WINDOW_LENGTH=1h\n"]);
        let c = UpdateConfig::from_key_values(kv, &Overrides::default()).unwrap();
        assert_eq!(c.reboot_window_start.as_deref(), Some("Thu 04:00"));
        assert_eq!(machine_id(root.path()).unwrap(), None);
    }

    proptest::proptest! {
        #[test]
        fn parser_never_panics(s in "(?s).{0,300}") {
            let _ = parse_key_values(&s);
        }
    }
}
