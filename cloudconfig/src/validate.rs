//! The validator: coreos-cloudinit's `--validate` report, entry for entry.
//!
//! coreos-cloudinit checked the raw text (before `$public_ipv4`
//! substitution) in stages: the header, the YAML syntax (one error at the
//! parser's line, then stop), then the structure against its Go structs
//! (unknown keys and type mismatches are warnings), then values outside
//! their allowed sets (errors), and a few special cases. Each finding is
//! printed as `line N: kind: message`, and `--validate` exits 1 if there is
//! any finding at all. Keelson adds checks for values the daemons would
//! reject anyway (`initial-cluster` syntax, URL lists), for key material
//! left world-readable, and for duplicate keys; each entry may carry a
//! column and a one-line hint, which are Keelson's and are printed apart
//! from the compatible line.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::render::{is_known_encoding, parse_permissions};
use crate::schema::{self, Field, Ty};
use crate::subst::{self, Metadata};
use crate::yaml::{self, Node, NodeKind, Resolved, YamlError};

/// The kind of a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Error,
    Warning,
    Info,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Error => "error",
            Kind::Warning => "warning",
            Kind::Info => "info",
        })
    }
}

/// One finding. Displays as coreos-cloudinit printed it:
/// `line 14: error: <message>`; serialises as its JSON form
/// `{"kind":"error","line":14,"message":"…"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub kind: Kind,
    pub line: usize,
    pub message: String,
    /// 1-based column, where known (Keelson).
    #[serde(skip)]
    pub column: Option<usize>,
    /// A one-line suggestion (Keelson).
    #[serde(skip)]
    pub hint: Option<String>,
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}: {}", self.line, self.kind, self.message)
    }
}

/// The findings, ordered by line.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Report {
    entries: Vec<Entry>,
}

impl Report {
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether any entry is an error (the configuration would not apply
    /// as written).
    pub fn has_errors(&self) -> bool {
        self.entries.iter().any(|e| e.kind == Kind::Error)
    }

    /// `coreos-cloudinit --validate`'s exit status: 1 if there is any
    /// entry, even a warning, else 0.
    pub fn exit_code(&self) -> u8 {
        u8::from(!self.entries.is_empty())
    }

    fn push(&mut self, kind: Kind, line: usize, message: impl Into<String>) -> &mut Entry {
        self.entries.push(Entry {
            kind,
            line: line.max(1),
            message: message.into(),
            column: None,
            hint: None,
        });
        let last = self.entries.len() - 1;
        &mut self.entries[last]
    }
}

impl fmt::Display for Report {
    /// One entry per line, each ending in a newline.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for e in &self.entries {
            writeln!(f, "{e}")?;
        }
        Ok(())
    }
}

/// Options beyond coreos-cloudinit's checks.
#[derive(Debug, Clone, Default)]
pub struct ValidateOptions {
    /// When given, `$public_ipv4`-style tokens without a value are errors
    /// (coreos-cloudinit would have substituted the empty string).
    pub metadata: Option<Metadata>,
}

/// Validate user data as `coreos-cloudinit --validate` does.
pub fn validate(text: &str) -> Report {
    validate_with(text, &ValidateOptions::default())
}

/// Validate raw user data bytes: gzip-compressed data is decompressed
/// first; bytes that are not UTF-8 are one error.
pub fn validate_bytes(data: &[u8]) -> Report {
    validate_bytes_with(data, &ValidateOptions::default())
}

pub fn validate_bytes_with(data: &[u8], options: &ValidateOptions) -> Report {
    let mut report = Report::default();
    let data = match crate::userdata::maybe_gunzip(data) {
        Ok(d) => d,
        Err(e) => {
            report.push(Kind::Error, 1, e.to_string());
            return report;
        }
    };
    match std::str::from_utf8(&data) {
        Ok(text) => validate_with(text, options),
        Err(_) => {
            report.push(Kind::Error, 1, "user data is not UTF-8 text");
            report
        }
    }
}

/// Validate with Keelson's extra options.
pub fn validate_with(text: &str, options: &ValidateOptions) -> Report {
    let mut report = Report::default();
    match crate::userdata::classify(text) {
        crate::userdata::Kind::Empty
        | crate::userdata::Kind::Script
        | crate::userdata::Kind::Ignition => return report,
        crate::userdata::Kind::Invalid => {
            let first = text.lines().next().unwrap_or("");
            let hint = if first.trim_end() == "cloud-config" {
                "the leading '#' is missing: the first line must be exactly #cloud-config"
            } else {
                "the first line must be exactly #cloud-config (or #! for a script)"
            };
            let e = report.push(
                Kind::Error,
                1,
                "must be \"#cloud-config\" or begin with \"#!\"",
            );
            e.column = Some(1);
            e.hint = Some(hint.to_string());
            return report;
        }
        crate::userdata::Kind::CloudConfig => {}
    }
    let doc = match yaml::parse(text) {
        Ok(Some(doc)) => doc,
        Ok(None) => return report,
        Err(err) => {
            let hint = yaml_hint(text, &err);
            let e = report.push(Kind::Error, err.line, err.message.clone());
            e.column = Some(err.column);
            e.hint = hint;
            return report;
        }
    };
    if doc.is_null() {
        return report;
    }
    if doc.as_map().is_none() {
        let e = report.push(
            Kind::Error,
            doc.line,
            "the document must be a mapping of keys (coreos, write_files, hostname, ...)",
        );
        e.column = Some(doc.column);
        return report;
    }
    let mut v = Validator {
        report: &mut report,
        tls_in_drop_in: false,
    };
    v.tls_in_drop_in = etcd_tls_in_write_files(&doc);
    v.check(&doc, "", "", Ty::Struct(schema::CLOUD_CONFIG), doc.line);
    v.special(&doc);
    if let Some(md) = &options.metadata {
        for (line, name) in subst::unresolved(text, md) {
            report
                .push(
                    Kind::Error,
                    line,
                    format!(
                        "${name} has no value on this machine (it would become the empty string)"
                    ),
                )
                .hint = Some(format!(
                "provide it through metadata or COREOS_{}",
                name.to_uppercase()
            ));
        }
    }
    report.entries.sort_by_key(|e| e.line);
    report
}

struct Validator<'r> {
    report: &'r mut Report,
    /// A `write_files` drop-in for etcd2 sets TLS variables (E8).
    tls_in_drop_in: bool,
}

fn display_value(node: &Node) -> String {
    match node.as_scalar() {
        Some(s) => s.text.clone(),
        None => String::new(),
    }
}

fn compatible(node: &Node, ty: &Ty) -> bool {
    match (&node.kind, ty) {
        (NodeKind::Scalar(_), Ty::Str) => true,
        (NodeKind::Scalar(s), Ty::Bool) => matches!(s.resolve(), Resolved::Bool(_)),
        (NodeKind::Scalar(s), Ty::Int) => matches!(s.resolve(), Resolved::Int(_)),
        (NodeKind::Scalar(s), Ty::Float) => {
            matches!(s.resolve(), Resolved::Float(_) | Resolved::Int(_))
        }
        (NodeKind::Map(_), Ty::Struct(_)) => true,
        (NodeKind::Seq(_), Ty::List(_)) => true,
        _ => false,
    }
}

const UNIT_COMMANDS: [&str; 7] = [
    "start",
    "stop",
    "restart",
    "reload",
    "try-restart",
    "reload-or-restart",
    "reload-or-try-restart",
];

/// `^((?i:sun|mon|tue|wed|thu|fri|sat|sun) )?0*([0-9]|1[0-9]|2[0-3]):0*([0-9]|[1-5][0-9])$`
pub fn valid_window_start(s: &str) -> bool {
    let time = match s.split_once(' ') {
        Some((day, time)) => {
            let days = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
            if !days.contains(&day.to_ascii_lowercase().as_str()) {
                return false;
            }
            time
        }
        None => s,
    };
    let Some((h, m)) = time.split_once(':') else {
        return false;
    };
    let num = |t: &str, max: u32| {
        let t = t.trim_start_matches('0');
        let t = if t.is_empty() { "0" } else { t };
        t.len() <= 2
            && t.chars().all(|c| c.is_ascii_digit())
            && t.parse::<u32>().is_ok_and(|v| v <= max)
    };
    !h.is_empty() && !m.is_empty() && num(h, 23) && num(m, 59)
}

/// `^[-+]?([0-9]*(\.[0-9]*)?[a-z]+)+$` (a Go duration such as `1h30m`).
pub fn valid_window_length(s: &str) -> bool {
    let s = s.strip_prefix(['-', '+']).unwrap_or(s);
    let b = s.as_bytes();
    if b.is_empty() {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i < b.len() && b[i] == b'.' {
            i += 1;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
        }
        let unit_start = i;
        while i < b.len() && b[i].is_ascii_lowercase() {
            i += 1;
        }
        if i == unit_start {
            return false;
        }
    }
    true
}

/// A URL as etcd and fleet take them: `scheme://host[:port][/path]`.
pub fn looks_like_url(u: &str) -> bool {
    let Some((scheme, rest)) = u.split_once("://") else {
        return false;
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    !scheme.is_empty()
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        && !host.is_empty()
        && !host.starts_with(':')
        && !host.contains(char::is_whitespace)
}

/// Comma-separated URL lists, by normalised path.
const URL_LISTS: [&str; 7] = [
    "coreos.etcd2.advertise_client_urls",
    "coreos.etcd2.initial_advertise_peer_urls",
    "coreos.etcd2.listen_client_urls",
    "coreos.etcd2.listen_peer_urls",
    "coreos.fleet.etcd_servers",
    "coreos.flannel.etcd_endpoints",
    "coreos.locksmith.endpoint",
];

const ETCD_TLS_VARS: [&str; 5] = [
    "ETCD_CERT_FILE",
    "ETCD_KEY_FILE",
    "ETCD_TRUSTED_CA_FILE",
    "ETCD_CLIENT_CERT_AUTH",
    "ETCD_CA_FILE",
];

fn etcd_tls_in_write_files(doc: &Node) -> bool {
    let Some(NodeKind::Seq(files)) = doc.get("write_files").map(|n| &n.kind) else {
        return false;
    };
    files.iter().any(|f| {
        let path = f.get("path").map(display_value).unwrap_or_default();
        let content = f.get("content").map(display_value).unwrap_or_default();
        path.contains("/systemd/system/etcd2.service.d/")
            && ETCD_TLS_VARS.iter().any(|v| content.contains(v))
    })
}

impl Validator<'_> {
    /// Check `node` (named `name` in messages, reported at `line`) against
    /// `ty`; `path` is the dotted normalised key path (list items keep
    /// their list's path).
    fn check(&mut self, node: &Node, name: &str, path: &str, ty: Ty, line: usize) {
        if node.is_null() && !path.is_empty() {
            // `key:` with nothing after it: unset, as go-yaml decodes it.
            return;
        }
        if !compatible(node, &ty) {
            self.report.push(
                Kind::Warning,
                line,
                format!("incorrect type for {name:?} (want {})", ty.human()),
            );
            return;
        }
        match (ty, &node.kind) {
            (Ty::Struct(fields), NodeKind::Map(entries)) => {
                self.check_struct(fields, entries, path);
            }
            (Ty::List(item_ty), NodeKind::Seq(items)) => {
                for (i, item) in items.iter().enumerate() {
                    self.check(item, &format!("{name}[{i}]"), path, *item_ty, item.line);
                }
            }
            _ => self.check_value(node, name, path, line),
        }
    }

    fn check_struct(&mut self, fields: &[Field], entries: &[yaml::Entry], path: &str) {
        let mut seen: Vec<&str> = Vec::new();
        for e in entries {
            if seen.contains(&e.key.as_str()) {
                let entry = self.report.push(
                    Kind::Warning,
                    e.key_line,
                    format!("duplicate key {:?} (the later value is used)", e.key),
                );
                entry.column = Some(e.key_column);
                entry.hint = Some(
                    "'-' and '_' are the same in keys: keep one spelling of the key".to_string(),
                );
            }
            seen.push(&e.key);
            let child_path = if path.is_empty() {
                e.key.clone()
            } else {
                format!("{path}.{}", e.key)
            };
            if path == "coreos.etcd" && schema::etcd2_only(&e.key) {
                self.report.push(
                    Kind::Warning,
                    e.key_line,
                    format!(
                        "deprecated key {:?} (etcd2 options no longer work for etcd)",
                        e.key
                    ),
                );
                continue;
            }
            match fields.iter().find(|f| f.key == e.key) {
                Some(field) => {
                    if let Some(reason) = deprecation(&child_path) {
                        self.report.push(
                            Kind::Warning,
                            e.key_line,
                            format!("deprecated key {:?} ({reason})", e.key),
                        );
                    }
                    self.check(&e.value, &e.key, &child_path, field.ty, e.key_line);
                }
                None => {
                    let entry = self.report.push(
                        Kind::Warning,
                        e.key_line,
                        format!("unrecognized key {:?}", e.key),
                    );
                    entry.column = Some(e.key_column);
                    entry.hint = suggest(&e.key, fields).map(|k| {
                        if e.raw_key.starts_with('-') {
                            format!("did you mean {k:?}? a '-' at the start of a key is part of the key, not a list marker")
                        } else {
                            format!("did you mean {k:?}?")
                        }
                    });
                    if path == "coreos" && e.key == "write_files" {
                        self.report.push(
                            Kind::Info,
                            e.key_line,
                            "write_files doesn't belong under coreos",
                        );
                    }
                }
            }
        }
    }

    fn invalid(&mut self, line: usize, value: &str) {
        self.report
            .push(Kind::Error, line, format!("invalid value {value}"));
    }

    fn check_value(&mut self, node: &Node, name: &str, path: &str, line: usize) {
        let value = display_value(node);
        let one_of = |allowed: &[&str]| allowed.contains(&value.as_str());
        // Values outside their allowed set: coreos-cloudinit's
        // `invalid value X` errors.
        let valid = match path {
            "coreos.update.reboot_strategy" => {
                one_of(&["best-effort", "etcd-lock", "reboot", "off"])
            }
            "coreos.etcd2.proxy" => one_of(&["on", "off", "readonly"]),
            "coreos.units.command" => one_of(&UNIT_COMMANDS),
            "coreos.units.name" | "coreos.units.drop_ins.name" => {
                !(value.contains('/') || value == "." || value == "..")
            }
            "write_files.permissions" => parse_permissions(&value).is_some(),
            "write_files.encoding" => is_known_encoding(&value),
            "coreos.locksmith.window_start" => valid_window_start(&value),
            "coreos.locksmith.window_length" => valid_window_length(&value),
            _ => true,
        };
        if !valid {
            self.invalid(line, &value);
            return;
        }
        match path {
            "write_files.path" if !value.starts_with('/') => {
                self.report
                    .push(Kind::Error, line, format!("path {value:?} is not absolute"));
            }
            "coreos.etcd2.initial_cluster" => self.check_initial_cluster(&value, line),
            "coreos.etcd2.discovery" | "coreos.etcd.discovery"
                if !(looks_like_url(&value) || value.starts_with('/')) =>
            {
                self.report
                    .push(Kind::Warning, line, "discovery URL is not valid");
            }
            p if URL_LISTS.contains(&p) => self.check_url_list(name, &value, line),
            _ => {}
        }
    }

    fn check_url_list(&mut self, name: &str, value: &str, line: usize) {
        for element in value.split(',') {
            let element = element.trim();
            if !looks_like_url(element) {
                self.report
                    .push(
                        Kind::Error,
                        line,
                        format!("{name:?} element {element:?} is not a URL"),
                    )
                    .hint = Some(
                    "write comma-separated URLs such as http://10.0.0.1:2379,http://10.0.0.1:4001"
                        .to_string(),
                );
            }
        }
        if self.tls_in_drop_in
            && name.ends_with("client_urls")
            && value.split(',').any(|u| u.trim().starts_with("http://"))
        {
            self.report
                .push(
                    Kind::Warning,
                    line,
                    format!("{name:?} uses http:// while etcd2 is given TLS certificates"),
                )
                .hint = Some("use https:// URLs when etcd serves TLS".to_string());
        }
    }

    fn check_initial_cluster(&mut self, value: &str, line: usize) {
        for (i, element) in value.split(',').enumerate() {
            let ok = element.split_once('=').is_some_and(|(n, u)| {
                !n.trim().is_empty() && !n.contains(' ') && looks_like_url(u)
            });
            if !ok {
                self.report
                    .push(
                        Kind::Error,
                        line,
                        format!(
                            "initial_cluster element {} ({:?}) is not name=URL",
                            i + 1,
                            element.trim()
                        ),
                    )
                    .hint = Some(
                    "write name=peerURL pairs separated by commas, e.g. m1=http://172.17.8.101:2380,m2=http://172.17.8.102:2380"
                        .to_string(),
                );
            }
        }
    }

    /// Checks that look at more than one node.
    fn special(&mut self, doc: &Node) {
        self.check_mount_names(doc);
        let Some(NodeKind::Seq(files)) = doc.get("write_files").map(|n| &n.kind) else {
            return;
        };
        for f in files {
            if f.as_map().is_none() {
                continue;
            }
            let path_node = f.get("path");
            let path = path_node.map(display_value).unwrap_or_default();
            if std::path::Path::new(&path).starts_with("/usr") {
                self.report.push(
                    Kind::Error,
                    path_node.map_or(f.line, |n| n.line),
                    "file cannot be written to a read-only filesystem",
                );
            }
            let content_node = f.get("content");
            let content = content_node.map(display_value).unwrap_or_default();
            let binary = content_node
                .and_then(Node::as_scalar)
                .is_some_and(|s| s.tag.as_deref() == Some("binary"));
            if let Some(enc_node) = f.get("encoding") {
                let enc = display_value(enc_node);
                if is_known_encoding(&enc)
                    && crate::render::decode_content(&content, binary, Some(&enc)).is_err()
                {
                    self.report.push(
                        Kind::Error,
                        content_node.map_or(f.line, |n| n.line),
                        format!("content cannot be decoded as {enc:?}"),
                    );
                }
            }
            // Keelson: private keys must not be readable by others.
            let perm_node = f.get("permissions");
            let mode = perm_node
                .map(display_value)
                .map_or(Some(0o644), |p| parse_permissions(&p));
            let is_key = path.ends_with(".key")
                || path.ends_with(".pem") && content.contains("PRIVATE KEY")
                || content.contains("PRIVATE KEY-----");
            if let Some(mode) = mode {
                if is_key && mode & 0o004 != 0 {
                    self.report
                        .push(
                            Kind::Warning,
                            perm_node.or(path_node).map_or(f.line, |n| n.line),
                            format!(
                                "{path:?} holds a private key but is readable by everyone (permissions {:04o})",
                                mode
                            ),
                        )
                        .hint = Some("use permissions: 0600 and an owner for key files".to_string());
                }
            }
        }
    }
}

/// The known key closest to an unknown one (edit distance at most 2,
/// ignoring leading and trailing `_`).
fn suggest(key: &str, fields: &[Field]) -> Option<&'static str> {
    let key = key.trim_matches('_');
    fields
        .iter()
        .map(|f| (distance(key, f.key), f.key))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Levenshtein distance over bytes (keys are ASCII).
fn distance(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

impl Validator<'_> {
    /// Keelson: systemd ignores a mount unit whose name is not its escaped
    /// `Where=` path (E11's `mnt-data.mount` for `/mnt/data`).
    fn check_mount_names(&mut self, doc: &Node) {
        let Some(NodeKind::Seq(units)) = doc
            .get("coreos")
            .and_then(|c| c.get("units"))
            .map(|n| &n.kind)
        else {
            return;
        };
        for u in units {
            let name = u.get("name").map(display_value).unwrap_or_default();
            let Some(suffix) = [".mount", ".automount"]
                .into_iter()
                .find(|s| name.ends_with(s))
            else {
                continue;
            };
            let Some(content) = u.get("content").map(display_value) else {
                continue;
            };
            let Ok(unit) = keelson_unitfile::Unit::parse(
                &content,
                keelson_unitfile::Mode::Systemd,
                Some(&name),
            ) else {
                continue;
            };
            let Some(place) = unit.value("Mount", "Where") else {
                continue;
            };
            let Ok(escaped) = keelson_unitfile::name::escape_path(place) else {
                continue;
            };
            let want = format!("{escaped}{suffix}");
            if want != name {
                self.report
                    .push(
                        Kind::Warning,
                        u.get("name").map_or(u.line, |n| n.line),
                        format!("unit {name:?} mounts {place:?}, so systemd expects it to be named {want:?}"),
                    )
                    .hint = Some(format!("rename the unit to {want}"));
            }
        }
    }
}

fn deprecation(path: &str) -> Option<&'static str> {
    match path {
        "coreos.etcd2.ca_file" => Some("ca_file obsoleted by trusted_ca_file and client_cert_auth"),
        "coreos.etcd2.peer_ca_file" => {
            Some("peer_ca_file obsoleted peer_trusted_ca_file and peer_client_cert_auth")
        }
        "users.coreos_ssh_import_github"
        | "users.coreos_ssh_import_github_users"
        | "users.coreos_ssh_import_url" => {
            Some("trying to fetch from a remote endpoint introduces too many intermittent errors")
        }
        _ => None,
    }
}

fn indent_of(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

/// The nearest line above `line` (1-based) that holds YAML, skipping blank
/// and comment lines: (number, text).
fn previous_significant(lines: &[&str], line: usize) -> Option<(usize, String)> {
    (1..line).rev().find_map(|n| {
        let t = lines.get(n - 1)?;
        let trimmed = t.trim();
        (!trimmed.is_empty() && !trimmed.starts_with('#')).then(|| (n, t.to_string()))
    })
}

/// A one-line suggestion for the common mistakes behind a YAML error.
fn yaml_hint(text: &str, err: &YamlError) -> Option<String> {
    let lines: Vec<&str> = text.lines().collect();
    let here = lines.get(err.line.checked_sub(1)?)?;
    if here.starts_with('\t') || here.trim_start_matches(' ').starts_with('\t') {
        return Some(format!(
            "line {} is indented with a tab; YAML indentation must use spaces",
            err.line
        ));
    }
    let indent = indent_of(here);
    let prev = previous_significant(&lines, err.line);
    // A multi-line value whose `|` is missing: a `key:` with nothing after
    // it a few lines above, followed by unindented-looking text.
    for n in (err.line.saturating_sub(3).max(1)..err.line).rev() {
        let t = lines.get(n - 1).copied().unwrap_or("");
        let trimmed = t.trim();
        if trimmed.ends_with(':') && !trimmed.starts_with('#') && indent > indent_of(t) {
            let key = trimmed.trim_start_matches("- ").trim_end_matches(':');
            if err.message.contains("expected key") || err.message.contains("not allowed") {
                return Some(format!(
                    "is '|' missing after `{key}:` on line {n}? multi-line text needs a block scalar: `{key}: |`"
                ));
            }
        }
    }
    let (pn, ptext) = prev?;
    let pindent = indent_of(&ptext);
    let ptrim = ptext.trim_start();
    if err.message.contains("'-' indicator") {
        if ptrim.starts_with("- ")
            || lines
                .iter()
                .take(err.line)
                .any(|l| l.trim_start().starts_with("- "))
        {
            return Some(format!(
                "line {} does not continue the list above: start a new item with '- ' in the column of the other items, or line its key up with the keys after '- '",
                err.line
            ));
        }
        return None;
    }
    if indent > pindent && err.message.contains("not allowed") {
        return Some(format!(
            "line {} is indented {indent} spaces but line {pn} above it {pindent}; keys of one mapping must start in the same column",
            err.line
        ));
    }
    if indent != pindent && err.message.contains("expected key") {
        return Some(format!(
            "line {} is indented {indent} spaces but line {pn} above it {pindent}; keys of one mapping must start in the same column",
            err.line
        ));
    }
    if err.message.contains("expected key") && !ptrim.starts_with("- ") {
        return Some(format!(
            "is a '- ' missing at the start of line {}? list items start with '- '",
            err.line
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<String> {
        validate(text)
            .entries()
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn valid_file_has_no_entries() {
        assert!(lines("#cloud-config\nhostname: coreos1\n").is_empty());
        assert!(lines("").is_empty());
        assert!(lines("#!/bin/sh\necho hi\n").is_empty());
        assert!(lines("#cloud-config\n").is_empty());
    }

    #[test]
    fn header() {
        assert_eq!(
            lines("cloud-config\nhostname: x\n"),
            vec![r##"line 1: error: must be "#cloud-config" or begin with "#!""##]
        );
        // Trailing whitespace on the header line is ignored.
        assert!(lines("#cloud-config  \r\nhostname: x\n").is_empty());
    }

    #[test]
    fn types_values_and_unknown_keys() {
        let text = "#cloud-config\ncoreos:\n  etcd2:\n    heartbeat-interval: \"100\"\n    proxy: maybe\n    verbose: 1\n  units:\n    - name: a.service\n      enable: bad\n      command: begin\n  update:\n    reboot-strategy: false\nwrite_files:\n  - path: /usr/x\n    permissions: 999\n";
        assert_eq!(
            lines(text),
            vec![
                r#"line 4: warning: incorrect type for "heartbeat_interval" (want int)"#,
                "line 5: error: invalid value maybe",
                r#"line 6: warning: unrecognized key "verbose""#,
                r#"line 9: warning: incorrect type for "enable" (want bool)"#,
                "line 10: error: invalid value begin",
                "line 12: error: invalid value false",
                "line 14: error: file cannot be written to a read-only filesystem",
                "line 15: error: invalid value 999",
            ]
        );
    }

    #[test]
    fn yaml11_forms_are_accepted() {
        let text = "#cloud-config\ncoreos:\n  etcd2:\n    proxy: on\n  update:\n    reboot-strategy: off\n  units:\n    - name: a.socket\n      enable: yes\n      runtime: On\nwrite_files:\n  - path: /etc/x\n    permissions: 0644\n";
        assert!(lines(text).is_empty(), "{:?}", lines(text));
    }

    #[test]
    fn list_items_are_named_with_their_index() {
        assert_eq!(
            lines("#cloud-config\ncoreos:\n  units:\n    - etcd2.service\n"),
            vec![r#"line 4: warning: incorrect type for "units[0]" (want struct)"#]
        );
        assert_eq!(
            lines("#cloud-config\nssh_authorized_keys: ssh-rsa AAA\n"),
            vec![r#"line 2: warning: incorrect type for "ssh_authorized_keys" (want []string)"#]
        );
    }

    #[test]
    fn deprecations_and_legacy_etcd() {
        assert_eq!(
            lines("#cloud-config\ncoreos:\n  etcd:\n    proxy: on\n    name: x\n  etcd2:\n    ca-file: /a\n"),
            vec![
                r#"line 4: warning: deprecated key "proxy" (etcd2 options no longer work for etcd)"#,
                r#"line 7: warning: deprecated key "ca_file" (ca_file obsoleted by trusted_ca_file and client_cert_auth)"#,
            ]
        );
    }

    #[test]
    fn write_files_under_coreos() {
        assert_eq!(
            lines("#cloud-config\ncoreos:\n  write_files:\n    - path: /etc/x\n"),
            vec![
                r#"line 3: warning: unrecognized key "write_files""#,
                "line 3: info: write_files doesn't belong under coreos",
            ]
        );
    }

    #[test]
    fn encodings() {
        assert_eq!(
            lines("#cloud-config\nwrite_files:\n  - path: /etc/x\n    encoding: b64\n    content: \"!!!\"\n  - path: /etc/y\n    encoding: rot13\n"),
            vec![
                r#"line 5: error: content cannot be decoded as "b64""#,
                "line 7: error: invalid value rot13",
            ]
        );
    }

    #[test]
    fn locksmith_windows() {
        assert!(valid_window_start("Thu 04:00"));
        assert!(valid_window_start("23:30"));
        assert!(valid_window_start("sun 0:0"));
        assert!(!valid_window_start("24:00"));
        assert!(!valid_window_start("Funday 04:00"));
        assert!(valid_window_length("1h30m"));
        assert!(valid_window_length("-1.5h"));
        assert!(!valid_window_length("90"));
        assert!(!valid_window_length(""));
    }

    #[test]
    fn initial_cluster_points_at_the_bad_element() {
        let text = "#cloud-config\ncoreos:\n  etcd2:\n    initial-cluster: etcdserver=http://172.17.8.101:2380, http://172.17.8.102:2380\n";
        assert_eq!(
            lines(text),
            vec![
                r#"line 4: error: initial_cluster element 2 ("http://172.17.8.102:2380") is not name=URL"#
            ]
        );
    }

    #[test]
    fn duplicate_spellings_are_reported() {
        assert_eq!(
            lines("#cloud-config\nwrite-files: []\nwrite_files: []\n"),
            vec![r#"line 3: warning: duplicate key "write_files" (the later value is used)"#]
        );
    }

    #[test]
    fn unresolved_variables_with_metadata() {
        let opts = ValidateOptions {
            metadata: Some(Metadata::default()),
        };
        let r = validate_with(
            "#cloud-config\ncoreos:\n  fleet:\n    public-ip: $public_ipv4\n",
            &opts,
        );
        assert_eq!(
            r.to_string(),
            "line 4: error: $public_ipv4 has no value on this machine (it would become the empty string)\n"
        );
    }

    #[test]
    fn null_document_and_mount_names() {
        assert!(lines("#cloud-config\n~\n").is_empty());
        assert!(lines("#cloud-config\ncoreos:\n").is_empty());
        let unit = |name: &str| {
            format!("#cloud-config\ncoreos:\n  units:\n    - name: {name}\n      content: |\n        [Mount]\n        Where=/mnt/data\n")
        };
        assert!(lines(&unit("mnt-data.mount")).is_empty());
        assert_eq!(
            lines(&unit("data.mount")),
            vec![
                r#"line 4: warning: unit "data.mount" mounts "/mnt/data", so systemd expects it to be named "mnt-data.mount""#
            ]
        );
    }

    #[test]
    fn json_form() {
        let r = validate("cloud-config\n");
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r##"[{"kind":"error","line":1,"message":"must be \"#cloud-config\" or begin with \"#!\""}]"##
        );
    }
}
