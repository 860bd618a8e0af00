//! What applying a cloud-config does, as data.
//!
//! [`plan`] is a pure function from the configuration, the machine's
//! metadata and the files already on the node (through [`CurrentFiles`]) to
//! a [`Plan`]: host settings, files to write, and the ordered unit steps of
//! reference §5.3. A driver (`keelson node`) carries the plan out; because
//! the plan only contains writes that change something, re-applying the
//! same configuration writes nothing and reloads nothing.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::{CloudConfig, DropIn, Unit, User};
use crate::error::Error;
use crate::render::{self, ServiceEnv};
use crate::subst::Metadata;

/// A file to write on the node: `path` is node-absolute; a driver writes it
/// under its root with [`crate::write_file`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileWrite {
    pub path: PathBuf,
    pub content: Vec<u8>,
    pub mode: u32,
    /// `user`, `user:group`, `user:` or `:group`, as `chown` takes it.
    pub owner: Option<String>,
}

impl FileWrite {
    fn new(path: impl Into<PathBuf>, content: impl Into<Vec<u8>>) -> FileWrite {
        FileWrite {
            path: path.into(),
            content: content.into(),
            mode: 0o644,
            owner: None,
        }
    }

    /// The content as text (lossy), for display and tests.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.content).into_owned()
    }
}

/// A systemd job a unit entry asks for (`command:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UnitCommand {
    Start,
    Stop,
    Restart,
    Reload,
    TryRestart,
    ReloadOrRestart,
    ReloadOrTryRestart,
}

impl UnitCommand {
    pub const ALL: [UnitCommand; 7] = [
        UnitCommand::Start,
        UnitCommand::Stop,
        UnitCommand::Restart,
        UnitCommand::Reload,
        UnitCommand::TryRestart,
        UnitCommand::ReloadOrRestart,
        UnitCommand::ReloadOrTryRestart,
    ];

    /// The `systemctl` verb.
    pub fn as_str(self) -> &'static str {
        match self {
            UnitCommand::Start => "start",
            UnitCommand::Stop => "stop",
            UnitCommand::Restart => "restart",
            UnitCommand::Reload => "reload",
            UnitCommand::TryRestart => "try-restart",
            UnitCommand::ReloadOrRestart => "reload-or-restart",
            UnitCommand::ReloadOrTryRestart => "reload-or-try-restart",
        }
    }

    pub fn parse(s: &str) -> Option<UnitCommand> {
        UnitCommand::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

/// A symlink to create: `path` → `target`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    pub path: PathBuf,
    pub target: PathBuf,
}

/// One step of the unit processing, in the order to perform them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "kebab-case")]
pub enum Step {
    /// Write a unit file or drop-in (mode 0644, atomically).
    Write(FileWrite),
    /// Mask: remove `remove` if present (the persistent unit file), then
    /// link `link.path` → `/dev/null`.
    Mask {
        unit: String,
        runtime: bool,
        remove: Option<PathBuf>,
        link: Link,
    },
    /// Remove the `/dev/null` link at `path`.
    Unmask { unit: String, path: PathBuf },
    /// `systemctl enable [--runtime] unit`; `links` are the symlinks that
    /// amounts to, from the unit's `[Install]` section when its text is
    /// known (empty when it is not: a driver then asks systemd).
    Enable {
        unit: String,
        runtime: bool,
        links: Vec<Link>,
    },
    /// `systemctl daemon-reload`: something above was written.
    DaemonReload,
    /// `systemctl restart systemd-networkd.service`: a network unit changed.
    RestartNetworkd,
    /// `systemctl <command> <unit>` (job mode `replace`).
    Command { unit: String, command: UnitCommand },
}

/// The unit steps of §5.3.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnitsPlan {
    pub steps: Vec<Step>,
}

impl UnitsPlan {
    /// The commands, in order, as `(verb, unit)`.
    pub fn commands(&self) -> Vec<(&'static str, &str)> {
        self.steps
            .iter()
            .filter_map(|s| match s {
                Step::Command { unit, command } => Some((command.as_str(), unit.as_str())),
                _ => None,
            })
            .collect()
    }

    /// The files written, in order.
    pub fn writes(&self) -> Vec<&FileWrite> {
        self.steps
            .iter()
            .filter_map(|s| match s {
                Step::Write(w) => Some(w),
                _ => None,
            })
            .collect()
    }

    /// The steps as one-line descriptions (`daemon-reload`, `start
    /// etcd2.service`, `write /etc/...`), for logs and tests.
    pub fn describe(&self) -> Vec<String> {
        self.steps
            .iter()
            .map(|s| match s {
                Step::Write(w) => format!("write {}", w.path.display()),
                Step::Mask { unit, runtime, .. } => {
                    format!("mask{} {unit}", if *runtime { " --runtime" } else { "" })
                }
                Step::Unmask { unit, .. } => format!("unmask {unit}"),
                Step::Enable { unit, runtime, .. } => {
                    format!("enable{} {unit}", if *runtime { " --runtime" } else { "" })
                }
                Step::DaemonReload => "daemon-reload".to_string(),
                Step::RestartNetworkd => "restart systemd-networkd.service".to_string(),
                Step::Command { unit, command } => format!("{} {unit}", command.as_str()),
            })
            .collect()
    }
}

/// The whole translation of a cloud-config for one node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub hostname: Option<String>,
    pub users: Vec<User>,
    /// Keys for user `core`, installed under the key name
    /// `coreos-cloudinit`.
    pub ssh_authorized_keys: Vec<String>,
    /// In application order: `write_files`, `/etc/oem-release`,
    /// `/etc/coreos/update.conf`, `/etc/hosts`, `/run/flannel/options.env`,
    /// `/etc/environment`.
    pub files: Vec<FileWrite>,
    pub units: UnitsPlan,
    /// The programmatic form of the service sections.
    pub services: Vec<ServiceEnv>,
    /// Things worth telling the operator that are not errors.
    pub notes: Vec<String>,
}

impl Plan {
    /// The file written at a node path, if any (files and unit steps).
    pub fn file(&self, path: &str) -> Option<&FileWrite> {
        let p = Path::new(path);
        self.files
            .iter()
            .chain(self.units.writes())
            .find(|f| f.path == p)
    }
}

/// Read access to the node's current files (node-absolute paths).
pub trait CurrentFiles {
    fn read(&self, path: &Path) -> Option<Vec<u8>>;
    /// The target of a symlink at `path`, if it is one.
    fn link_target(&self, path: &Path) -> Option<PathBuf>;
}

/// A node with no files at all (first boot of an empty image).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoFiles;

impl CurrentFiles for NoFiles {
    fn read(&self, _: &Path) -> Option<Vec<u8>> {
        None
    }
    fn link_target(&self, _: &Path) -> Option<PathBuf> {
        None
    }
}

/// The files of a node rooted at a directory (`--root`).
#[derive(Debug, Clone)]
pub struct RootDir(pub PathBuf);

impl RootDir {
    fn host_path(&self, path: &Path) -> PathBuf {
        self.0.join(path.strip_prefix("/").unwrap_or(path))
    }
}

impl CurrentFiles for RootDir {
    fn read(&self, path: &Path) -> Option<Vec<u8>> {
        std::fs::read(self.host_path(path)).ok()
    }
    fn link_target(&self, path: &Path) -> Option<PathBuf> {
        std::fs::read_link(self.host_path(path)).ok()
    }
}

/// In-memory files, for tests and for drivers that keep state elsewhere.
impl CurrentFiles for std::collections::HashMap<PathBuf, Vec<u8>> {
    fn read(&self, path: &Path) -> Option<Vec<u8>> {
        self.get(path).cloned()
    }
    fn link_target(&self, _: &Path) -> Option<PathBuf> {
        None
    }
}

fn is_network_unit(name: &str) -> bool {
    name.ends_with(".network") || name.ends_with(".netdev") || name.ends_with(".link")
}

fn unit_dir(name: &str, runtime: bool) -> PathBuf {
    let base = if runtime { "/run" } else { "/etc" };
    let group = if is_network_unit(name) {
        "network"
    } else {
        "system"
    };
    PathBuf::from(format!("{base}/systemd/{group}"))
}

/// A file name that stays in its directory.
fn safe_file_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\0'])
}

const VENDOR_UNIT_DIRS: [&str; 4] = [
    "/etc/systemd/system",
    "/run/systemd/system",
    "/usr/lib/systemd/system",
    "/lib/systemd/system",
];

/// The links `systemctl enable` makes for a unit, from its `[Install]`.
fn install_links(name: &str, unit_path: &Path, text: &str, runtime: bool) -> Vec<Link> {
    let Ok(parsed) =
        keelson_unitfile::Unit::parse(text, keelson_unitfile::Mode::Systemd, Some(name))
    else {
        return Vec::new();
    };
    let dir = unit_dir(name, runtime);
    let mut links = Vec::new();
    for (key, suffix) in [("WantedBy", "wants"), ("RequiredBy", "requires")] {
        for value in parsed.values("Install", key) {
            for target in value.split_whitespace() {
                links.push(Link {
                    path: dir.join(format!("{target}.{suffix}")).join(name),
                    target: unit_path.to_path_buf(),
                });
            }
        }
    }
    for value in parsed.values("Install", "Alias") {
        for alias in value.split_whitespace().filter(|a| safe_file_name(a)) {
            links.push(Link {
                path: dir.join(alias),
                target: unit_path.to_path_buf(),
            });
        }
    }
    links
}

/// The unit steps for a unit list (user entries then generated ones).
pub fn plan_units(units: &[Unit], current: &dyn CurrentFiles) -> Result<UnitsPlan, Error> {
    let mut steps = Vec::new();
    let mut wrote = false;
    let mut networkd = false;
    let mut commands = Vec::new();
    let unchanged = |path: &Path, content: &[u8]| current.read(path).is_some_and(|c| c == content);
    for (index, unit) in units.iter().enumerate() {
        let fail = |reason: String| Error::Unit {
            index,
            name: unit.name.clone(),
            reason,
        };
        if unit.name.is_empty() {
            // coreos-cloudinit skips entries without a name.
            continue;
        }
        if !safe_file_name(&unit.name) {
            return Err(fail(
                "a unit name is a file name: no '/' and not '.' or '..'".to_string(),
            ));
        }
        let command = match unit.command.as_deref() {
            None | Some("") => None,
            Some(c) => Some(UnitCommand::parse(c).ok_or_else(|| {
                fail(format!(
                    "unknown command {c:?}; use one of start, stop, restart, reload, try-restart, reload-or-restart, reload-or-try-restart"
                ))
            })?),
        };
        let dir = unit_dir(&unit.name, unit.runtime);
        let unit_path = dir.join(&unit.name);
        if let Some(content) = unit.content.as_deref() {
            if !unchanged(&unit_path, content.as_bytes()) {
                steps.push(Step::Write(FileWrite::new(&unit_path, content)));
                wrote = true;
            }
        }
        for DropIn { name, content } in &unit.drop_ins {
            if name.is_empty() || content.is_empty() {
                continue;
            }
            if !safe_file_name(name) {
                return Err(fail(format!(
                    "drop-in name {name:?} must be a file name: no '/' and not '.' or '..'"
                )));
            }
            let path = dir.join(format!("{}.d", unit.name)).join(name);
            if !unchanged(&path, content.as_bytes()) {
                steps.push(Step::Write(FileWrite::new(path, content.as_str())));
                wrote = true;
            }
        }
        if unit.mask {
            let link = Link {
                path: unit_path.clone(),
                target: PathBuf::from("/dev/null"),
            };
            if current.link_target(&link.path).as_deref() != Some(Path::new("/dev/null")) {
                let persistent = unit_dir(&unit.name, false).join(&unit.name);
                steps.push(Step::Mask {
                    unit: unit.name.clone(),
                    runtime: unit.runtime,
                    remove: (!unit.runtime).then_some(persistent),
                    link,
                });
            }
        } else if unit.runtime
            && current.link_target(&unit_path).as_deref() == Some(Path::new("/dev/null"))
        {
            steps.push(Step::Unmask {
                unit: unit.name.clone(),
                path: unit_path.clone(),
            });
        }
        if unit.enable && !is_network_unit(&unit.name) {
            let text = match unit.content.clone() {
                Some(t) => Some((unit_path.clone(), t)),
                None => VENDOR_UNIT_DIRS.iter().find_map(|d| {
                    let p = Path::new(d).join(&unit.name);
                    current
                        .read(&p)
                        .map(|b| (p, String::from_utf8_lossy(&b).into_owned()))
                }),
            };
            let links = text.map_or_else(Vec::new, |(p, t)| {
                install_links(&unit.name, &p, &t, unit.runtime)
            });
            let already = !links.is_empty()
                && links
                    .iter()
                    .all(|l| current.link_target(&l.path).as_deref() == Some(l.target.as_path()));
            if !already {
                steps.push(Step::Enable {
                    unit: unit.name.clone(),
                    runtime: unit.runtime,
                    links,
                });
            }
        }
        if is_network_unit(&unit.name) {
            networkd = true;
        } else if let Some(command) = command {
            commands.push(Step::Command {
                unit: unit.name.clone(),
                command,
            });
        }
    }
    if wrote {
        steps.push(Step::DaemonReload);
    }
    if networkd {
        steps.push(Step::RestartNetworkd);
    }
    steps.extend(commands);
    Ok(UnitsPlan { steps })
}

impl CloudConfig {
    /// The unit list of §5.3: the user's `coreos.units`, then the
    /// generated `20-cloudinit.conf` drop-ins (etcd, etcd2, fleet,
    /// locksmithd) and the `coreos.update` actions.
    pub fn all_units(&self) -> Vec<Unit> {
        let mut units = self.coreos.units.clone();
        for svc in self.services() {
            if svc.section == "flannel" {
                continue;
            }
            units.push(Unit {
                name: svc.unit.clone(),
                runtime: true,
                drop_ins: vec![DropIn {
                    name: "20-cloudinit.conf".to_string(),
                    content: svc.file_content(),
                }],
                ..Unit::default()
            });
        }
        let update = &self.coreos.update;
        if let Some(strategy) = update.reboot_strategy.as_deref().filter(|s| !s.is_empty()) {
            let off = strategy == "off";
            units.push(Unit {
                name: "locksmithd.service".to_string(),
                command: Some(if off { "stop" } else { "restart" }.to_string()),
                runtime: true,
                mask: off,
                ..Unit::default()
            });
        }
        if update.group.as_deref().is_some_and(|s| !s.is_empty())
            || update.server.as_deref().is_some_and(|s| !s.is_empty())
        {
            units.push(Unit {
                name: "update-engine.service".to_string(),
                command: Some("restart".to_string()),
                ..Unit::default()
            });
        }
        units
    }
}

/// Translate a cloud-config (already substituted) for a node.
pub fn plan(
    cfg: &CloudConfig,
    metadata: &Metadata,
    current: &dyn CurrentFiles,
) -> Result<Plan, Error> {
    let mut files = Vec::new();
    let mut notes = Vec::new();
    for (index, wf) in cfg.write_files.iter().enumerate() {
        let fail = |reason: String| Error::WriteFile {
            index,
            path: wf.path.clone(),
            reason,
        };
        if !wf.path.starts_with('/') {
            return Err(fail("path must be absolute".to_string()));
        }
        if Path::new(&wf.path).starts_with("/usr") {
            return Err(fail(
                "file cannot be written to a read-only filesystem (/usr)".to_string(),
            ));
        }
        let mode = wf.mode().ok_or_else(|| {
            fail(format!(
                "invalid permissions {:?}; use octal text such as 0644",
                wf.permissions.as_deref().unwrap_or("")
            ))
        })?;
        let content = wf.decoded_content().map_err(|e| fail(e.to_string()))?;
        files.push(FileWrite {
            path: PathBuf::from(&wf.path),
            content,
            mode,
            owner: wf.owner.clone().filter(|o| !o.is_empty()),
        });
    }
    if let Some(release) = cfg.coreos.oem.release() {
        files.push(FileWrite::new("/etc/oem-release", release));
    }
    let current_update = current
        .read(Path::new(render::UPDATE_CONF))
        .or_else(|| current.read(Path::new(render::UPDATE_CONF_DEFAULT)))
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    if let Some(conf) = cfg.coreos.update.update_conf(&current_update) {
        files.push(FileWrite::new(render::UPDATE_CONF, conf));
    }
    if let Some(manage) = cfg.manage_etc_hosts.as_deref().filter(|s| !s.is_empty()) {
        if manage != "localhost" {
            return Err(Error::ManageEtcHosts(manage.to_string()));
        }
        let hostname = cfg.hostname.clone().unwrap_or_else(|| "localhost".into());
        files.push(FileWrite::new("/etc/hosts", render::etc_hosts(&hostname)));
    }
    let services = cfg.services();
    if let Some(flannel) = services.iter().find(|s| s.section == "flannel") {
        files.push(FileWrite::new(flannel.path(), flannel.file_content()));
    }
    let writes_environment = cfg.write_files.iter().any(|f| f.path == "/etc/environment");
    if !writes_environment {
        let existing = current
            .read(Path::new("/etc/environment"))
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        if let Some(env) = render::merge_environment(&existing, &metadata.environment()) {
            files.push(FileWrite::new("/etc/environment", env));
        }
    }
    if !cfg.coreos.etcd.is_empty() {
        notes.push(
            "coreos.etcd configures the legacy etcd 0.4 unit etcd.service; use coreos.etcd2 for etcd2.service"
                .to_string(),
        );
    }
    for (i, u) in cfg.users.iter().enumerate() {
        if u.name.is_empty() {
            notes.push(format!("users[{i}] has no name and is skipped"));
        }
    }
    let units = plan_units(&cfg.all_units(), current)?;
    Ok(Plan {
        hostname: cfg.hostname.clone().filter(|h| !h.is_empty()),
        users: cfg
            .users
            .iter()
            .filter(|u| !u.name.is_empty())
            .cloned()
            .collect(),
        ssh_authorized_keys: cfg.ssh_authorized_keys.clone(),
        files,
        units,
        services,
        notes,
    })
}
