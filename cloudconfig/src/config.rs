//! The typed cloud-config and its decoding from the positioned YAML tree.
//!
//! Decoding follows coreos-cloudinit's apply-time reading: unknown keys are
//! ignored (the validator warns about them), string fields take a scalar's
//! text whatever YAML would resolve it to, booleans take YAML 1.1's forms,
//! and a value of the wrong type fails the whole decode (go-yaml's typed
//! unmarshal did the same, so nothing was applied). Every service section is
//! declared once, with its keys, variables and types in coreos-cloudinit's
//! emission order, by [`service_section!`]; the validator's schema and the
//! environment rendering read the same declaration.

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::schema::{Field, Ty};
use crate::yaml::{Node, NodeKind, Resolved};

/// One environment variable for a daemon, in the order coreos-cloudinit
/// writes them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvVar {
    pub name: String,
    pub value: String,
}

impl EnvVar {
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> EnvVar {
        EnvVar {
            name: name.into(),
            value: value.into(),
        }
    }
}

/// A field type of a service section: how it decodes and how it is written
/// into the environment.
pub(crate) trait FieldValue: Sized {
    /// The type as the validator names it.
    const TY: Ty;
    fn decode(node: &Node, key: &str) -> Result<Option<Self>, Error>;
    /// The environment value, or `None` when the field counts as unset
    /// (empty string, zero, false), which coreos-cloudinit omits.
    fn render(&self) -> Option<String>;
}

fn type_error(node: &Node, key: &str, want: &str) -> Error {
    let found = match &node.kind {
        NodeKind::Map(_) => "a mapping".to_string(),
        NodeKind::Seq(_) => "a list".to_string(),
        NodeKind::Scalar(s) => format!("{:?}", s.text),
    };
    Error::Type {
        line: node.line,
        key: key.to_string(),
        want: want.to_string(),
        found,
    }
}

impl FieldValue for String {
    const TY: Ty = Ty::Str;
    fn decode(node: &Node, key: &str) -> Result<Option<Self>, Error> {
        match &node.kind {
            NodeKind::Scalar(s) if s.resolve() == Resolved::Null => Ok(None),
            NodeKind::Scalar(s) => Ok(Some(s.text.clone())),
            _ => Err(type_error(node, key, "a string")),
        }
    }
    fn render(&self) -> Option<String> {
        (!self.is_empty()).then(|| self.clone())
    }
}

impl FieldValue for bool {
    const TY: Ty = Ty::Bool;
    fn decode(node: &Node, key: &str) -> Result<Option<Self>, Error> {
        match node.as_scalar().map(|s| s.resolve()) {
            Some(Resolved::Null) => Ok(None),
            Some(Resolved::Bool(b)) => Ok(Some(b)),
            _ => Err(type_error(
                node,
                key,
                "a boolean (true/false, yes/no, on/off)",
            )),
        }
    }
    fn render(&self) -> Option<String> {
        self.then(|| "true".to_string())
    }
}

impl FieldValue for i64 {
    const TY: Ty = Ty::Int;
    fn decode(node: &Node, key: &str) -> Result<Option<Self>, Error> {
        match node.as_scalar().map(|s| s.resolve()) {
            Some(Resolved::Null) => Ok(None),
            Some(Resolved::Int(i)) => Ok(Some(i)),
            _ => Err(type_error(node, key, "an unquoted integer")),
        }
    }
    fn render(&self) -> Option<String> {
        (*self != 0).then(|| self.to_string())
    }
}

impl FieldValue for f64 {
    const TY: Ty = Ty::Float;
    fn decode(node: &Node, key: &str) -> Result<Option<Self>, Error> {
        match node.as_scalar().map(|s| s.resolve()) {
            Some(Resolved::Null) => Ok(None),
            Some(Resolved::Float(f)) => Ok(Some(f)),
            Some(Resolved::Int(i)) => Ok(Some(i as f64)),
            _ => Err(type_error(node, key, "an unquoted number")),
        }
    }
    fn render(&self) -> Option<String> {
        // Rust's shortest round-trip form matches Go's %v for the values
        // these fields take (0.5, 2, 1.25).
        (*self != 0.0).then(|| self.to_string())
    }
}

fn decode_list_of_strings(node: &Node, key: &str) -> Result<Vec<String>, Error> {
    match &node.kind {
        NodeKind::Scalar(s) if s.resolve() == Resolved::Null => Ok(Vec::new()),
        NodeKind::Seq(items) => items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| String::decode(item, &format!("{key}[{i}]")).transpose())
            .collect(),
        _ => Err(type_error(node, key, "a list of strings")),
    }
}

fn decode_list<T>(
    node: &Node,
    key: &str,
    each: impl Fn(&Node, &str) -> Result<T, Error>,
) -> Result<Vec<T>, Error> {
    match &node.kind {
        NodeKind::Scalar(s) if s.resolve() == Resolved::Null => Ok(Vec::new()),
        NodeKind::Seq(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| each(item, &format!("{key}[{i}]")))
            .collect(),
        _ => Err(type_error(node, key, "a list")),
    }
}

/// The mapping a struct decodes from; `None` for an absent or null value.
fn struct_node<'a>(node: &'a Node, key: &str) -> Result<Option<&'a Node>, Error> {
    match &node.kind {
        NodeKind::Map(_) => Ok(Some(node)),
        NodeKind::Scalar(s) if s.resolve() == Resolved::Null => Ok(None),
        _ => Err(type_error(node, key, "a mapping of keys to values")),
    }
}

fn field<T: FieldValue>(map: &Node, key: &str) -> Result<Option<T>, Error> {
    match map.get(key) {
        Some(n) => T::decode(n, key),
        None => Ok(None),
    }
}

/// Declares a `coreos.*` service section: the struct, its schema and its
/// environment rendering, from one table in emission order.
macro_rules! service_section {
    (
        $(#[$meta:meta])*
        $name:ident {
            $( $(#[$fmeta:meta])* $field:ident : $ty:ty = ($key:literal, $var:literal) ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
        #[serde(default)]
        pub struct $name {
            $(
                $(#[$fmeta])*
                #[serde(rename = $key, skip_serializing_if = "Option::is_none")]
                pub $field: Option<$ty>,
            )*
        }

        impl $name {
            /// The section's keys (normalised, `_`) with their variables, in
            /// emission order.
            pub const KEYS: &'static [(&'static str, &'static str)] = &[ $( ($key, $var) ),* ];

            pub(crate) const SCHEMA: &'static [Field] = &[
                $( Field { key: $key, ty: <$ty as FieldValue>::TY } ),*
            ];

            /// The environment variables of every set field, in
            /// coreos-cloudinit's order; unset, empty, zero and false fields
            /// are left out.
            pub fn env(&self) -> Vec<EnvVar> {
                let mut vars = Vec::new();
                $(
                    if let Some(v) = self.$field.as_ref().and_then(FieldValue::render) {
                        vars.push(EnvVar::new($var, v));
                    }
                )*
                vars
            }

            /// Whether no field is set (the section produces nothing).
            pub fn is_empty(&self) -> bool {
                self.env().is_empty()
            }

            pub(crate) fn decode(node: &Node, key: &str) -> Result<Self, Error> {
                let Some(map) = struct_node(node, key)? else {
                    return Ok(Self::default());
                };
                Ok(Self {
                    $( $field: field::<$ty>(map, $key)?, )*
                })
            }
        }
    };
}

service_section! {
    /// `coreos.etcd2`: environment of `etcd2.service` (`ETCD_*`).
    Etcd2 {
        advertise_client_urls: String = ("advertise_client_urls", "ETCD_ADVERTISE_CLIENT_URLS"),
        ca_file: String = ("ca_file", "ETCD_CA_FILE"),
        cert_file: String = ("cert_file", "ETCD_CERT_FILE"),
        client_cert_auth: bool = ("client_cert_auth", "ETCD_CLIENT_CERT_AUTH"),
        cors: String = ("cors", "ETCD_CORS"),
        data_dir: String = ("data_dir", "ETCD_DATA_DIR"),
        debug: bool = ("debug", "ETCD_DEBUG"),
        discovery: String = ("discovery", "ETCD_DISCOVERY"),
        discovery_fallback: String = ("discovery_fallback", "ETCD_DISCOVERY_FALLBACK"),
        discovery_srv: String = ("discovery_srv", "ETCD_DISCOVERY_SRV"),
        discovery_proxy: String = ("discovery_proxy", "ETCD_DISCOVERY_PROXY"),
        election_timeout: i64 = ("election_timeout", "ETCD_ELECTION_TIMEOUT"),
        force_new_cluster: bool = ("force_new_cluster", "ETCD_FORCE_NEW_CLUSTER"),
        heartbeat_interval: i64 = ("heartbeat_interval", "ETCD_HEARTBEAT_INTERVAL"),
        initial_advertise_peer_urls: String = ("initial_advertise_peer_urls", "ETCD_INITIAL_ADVERTISE_PEER_URLS"),
        initial_cluster: String = ("initial_cluster", "ETCD_INITIAL_CLUSTER"),
        initial_cluster_state: String = ("initial_cluster_state", "ETCD_INITIAL_CLUSTER_STATE"),
        initial_cluster_token: String = ("initial_cluster_token", "ETCD_INITIAL_CLUSTER_TOKEN"),
        key_file: String = ("key_file", "ETCD_KEY_FILE"),
        listen_client_urls: String = ("listen_client_urls", "ETCD_LISTEN_CLIENT_URLS"),
        listen_peer_urls: String = ("listen_peer_urls", "ETCD_LISTEN_PEER_URLS"),
        log_package_levels: String = ("log_package_levels", "ETCD_LOG_PACKAGE_LEVELS"),
        max_snapshots: i64 = ("max_snapshots", "ETCD_MAX_SNAPSHOTS"),
        max_wals: i64 = ("max_wals", "ETCD_MAX_WALS"),
        name: String = ("name", "ETCD_NAME"),
        peer_ca_file: String = ("peer_ca_file", "ETCD_PEER_CA_FILE"),
        peer_cert_file: String = ("peer_cert_file", "ETCD_PEER_CERT_FILE"),
        peer_key_file: String = ("peer_key_file", "ETCD_PEER_KEY_FILE"),
        peer_client_cert_auth: bool = ("peer_client_cert_auth", "ETCD_PEER_CLIENT_CERT_AUTH"),
        peer_trusted_ca_file: String = ("peer_trusted_ca_file", "ETCD_PEER_TRUSTED_CA_FILE"),
        proxy: String = ("proxy", "ETCD_PROXY"),
        proxy_dial_timeout: i64 = ("proxy_dial_timeout", "ETCD_PROXY_DIAL_TIMEOUT"),
        proxy_failure_wait: i64 = ("proxy_failure_wait", "ETCD_PROXY_FAILURE_WAIT"),
        proxy_read_timeout: i64 = ("proxy_read_timeout", "ETCD_PROXY_READ_TIMEOUT"),
        proxy_refresh_interval: i64 = ("proxy_refresh_interval", "ETCD_PROXY_REFRESH_INTERVAL"),
        proxy_write_timeout: i64 = ("proxy_write_timeout", "ETCD_PROXY_WRITE_TIMEOUT"),
        snapshot_count: i64 = ("snapshot_count", "ETCD_SNAPSHOT_COUNT"),
        trusted_ca_file: String = ("trusted_ca_file", "ETCD_TRUSTED_CA_FILE"),
        wal_dir: String = ("wal_dir", "ETCD_WAL_DIR"),
    }
}

service_section! {
    /// `coreos.etcd`: the legacy etcd 0.4 unit `etcd.service`. Only old
    /// files use it; it configures `etcd.service`, not `etcd2.service`.
    Etcd {
        addr: String = ("addr", "ETCD_ADDR"),
        bind_addr: String = ("bind_addr", "ETCD_BIND_ADDR"),
        ca_file: String = ("ca_file", "ETCD_CA_FILE"),
        cert_file: String = ("cert_file", "ETCD_CERT_FILE"),
        cluster_active_size: i64 = ("cluster_active_size", "ETCD_CLUSTER_ACTIVE_SIZE"),
        cluster_remove_delay: f64 = ("cluster_remove_delay", "ETCD_CLUSTER_REMOVE_DELAY"),
        cluster_sync_interval: f64 = ("cluster_sync_interval", "ETCD_CLUSTER_SYNC_INTERVAL"),
        cors: String = ("cors", "ETCD_CORS"),
        data_dir: String = ("data_dir", "ETCD_DATA_DIR"),
        discovery: String = ("discovery", "ETCD_DISCOVERY"),
        graphite_host: String = ("graphite_host", "ETCD_GRAPHITE_HOST"),
        http_read_timeout: f64 = ("http_read_timeout", "ETCD_HTTP_READ_TIMEOUT"),
        http_write_timeout: f64 = ("http_write_timeout", "ETCD_HTTP_WRITE_TIMEOUT"),
        key_file: String = ("key_file", "ETCD_KEY_FILE"),
        max_result_buffer: i64 = ("max_result_buffer", "ETCD_MAX_RESULT_BUFFER"),
        max_retry_attempts: i64 = ("max_retry_attempts", "ETCD_MAX_RETRY_ATTEMPTS"),
        name: String = ("name", "ETCD_NAME"),
        peer_addr: String = ("peer_addr", "ETCD_PEER_ADDR"),
        peer_bind_addr: String = ("peer_bind_addr", "ETCD_PEER_BIND_ADDR"),
        peer_ca_file: String = ("peer_ca_file", "ETCD_PEER_CA_FILE"),
        peer_cert_file: String = ("peer_cert_file", "ETCD_PEER_CERT_FILE"),
        peer_election_timeout: i64 = ("peer_election_timeout", "ETCD_PEER_ELECTION_TIMEOUT"),
        peer_heartbeat_interval: i64 = ("peer_heartbeat_interval", "ETCD_PEER_HEARTBEAT_INTERVAL"),
        peer_key_file: String = ("peer_key_file", "ETCD_PEER_KEY_FILE"),
        peers: String = ("peers", "ETCD_PEERS"),
        peers_file: String = ("peers_file", "ETCD_PEERS_FILE"),
        retry_interval: f64 = ("retry_interval", "ETCD_RETRY_INTERVAL"),
        snapshot: bool = ("snapshot", "ETCD_SNAPSHOT"),
        snapshot_count: i64 = ("snapshot_count", "ETCD_SNAPSHOTCOUNT"),
        trace: String = ("trace", "ETCD_TRACE"),
        verbose: bool = ("verbose", "ETCD_VERBOSE"),
        very_verbose: bool = ("very_verbose", "ETCD_VERY_VERBOSE"),
        very_very_verbose: bool = ("very_very_verbose", "ETCD_VERY_VERY_VERBOSE"),
    }
}

service_section! {
    /// `coreos.fleet`: environment of `fleet.service` (`FLEET_*`).
    Fleet {
        agent_ttl: String = ("agent_ttl", "FLEET_AGENT_TTL"),
        authorized_keys_file: String = ("authorized_keys_file", "FLEET_AUTHORIZED_KEYS_FILE"),
        disable_engine: bool = ("disable_engine", "FLEET_DISABLE_ENGINE"),
        engine_reconcile_interval: f64 = ("engine_reconcile_interval", "FLEET_ENGINE_RECONCILE_INTERVAL"),
        etcd_cafile: String = ("etcd_cafile", "FLEET_ETCD_CAFILE"),
        etcd_certfile: String = ("etcd_certfile", "FLEET_ETCD_CERTFILE"),
        etcd_keyfile: String = ("etcd_keyfile", "FLEET_ETCD_KEYFILE"),
        etcd_key_prefix: String = ("etcd_key_prefix", "FLEET_ETCD_KEY_PREFIX"),
        etcd_request_timeout: f64 = ("etcd_request_timeout", "FLEET_ETCD_REQUEST_TIMEOUT"),
        etcd_servers: String = ("etcd_servers", "FLEET_ETCD_SERVERS"),
        metadata: String = ("metadata", "FLEET_METADATA"),
        public_ip: String = ("public_ip", "FLEET_PUBLIC_IP"),
        token_limit: i64 = ("token_limit", "FLEET_TOKEN_LIMIT"),
        verbosity: i64 = ("verbosity", "FLEET_VERBOSITY"),
        verify_units: bool = ("verify_units", "FLEET_VERIFY_UNITS"),
        etcd_username: String = ("etcd_username", "FLEET_ETCD_USERNAME"),
        etcd_password: String = ("etcd_password", "FLEET_ETCD_PASSWORD"),
    }
}

service_section! {
    /// `coreos.flannel`: `/run/flannel/options.env` (`FLANNELD_*`).
    Flannel {
        etcd_endpoints: String = ("etcd_endpoints", "FLANNELD_ETCD_ENDPOINTS"),
        etcd_cafile: String = ("etcd_cafile", "FLANNELD_ETCD_CAFILE"),
        etcd_certfile: String = ("etcd_certfile", "FLANNELD_ETCD_CERTFILE"),
        etcd_keyfile: String = ("etcd_keyfile", "FLANNELD_ETCD_KEYFILE"),
        etcd_prefix: String = ("etcd_prefix", "FLANNELD_ETCD_PREFIX"),
        ip_masq: String = ("ip_masq", "FLANNELD_IP_MASQ"),
        subnet_file: String = ("subnet_file", "FLANNELD_SUBNET_FILE"),
        interface: String = ("interface", "FLANNELD_IFACE"),
        public_ip: String = ("public_ip", "FLANNELD_PUBLIC_IP"),
        etcd_username: String = ("etcd_username", "FLANNELD_ETCD_USERNAME"),
        etcd_password: String = ("etcd_password", "FLANNELD_ETCD_PASSWORD"),
    }
}

service_section! {
    /// `coreos.locksmith`: environment of `locksmithd.service`.
    Locksmith {
        endpoint: String = ("endpoint", "LOCKSMITHD_ENDPOINT"),
        etcd_cafile: String = ("etcd_cafile", "LOCKSMITHD_ETCD_CAFILE"),
        etcd_certfile: String = ("etcd_certfile", "LOCKSMITHD_ETCD_CERTFILE"),
        etcd_keyfile: String = ("etcd_keyfile", "LOCKSMITHD_ETCD_KEYFILE"),
        group: String = ("group", "LOCKSMITHD_GROUP"),
        window_start: String = ("window_start", "REBOOT_WINDOW_START"),
        window_length: String = ("window_length", "REBOOT_WINDOW_LENGTH"),
        etcd_username: String = ("etcd_username", "LOCKSMITHD_ETCD_USERNAME"),
        etcd_password: String = ("etcd_password", "LOCKSMITHD_ETCD_PASSWORD"),
    }
}

service_section! {
    /// `coreos.update`: lines of `/etc/coreos/update.conf`.
    Update {
        group: String = ("group", "GROUP"),
        reboot_strategy: String = ("reboot_strategy", "REBOOT_STRATEGY"),
        server: String = ("server", "SERVER"),
    }
}

service_section! {
    /// `coreos.oem`: `/etc/oem-release`, written only when `id` is set.
    Oem {
        id: String = ("id", "ID"),
        name: String = ("name", "NAME"),
        version_id: String = ("version_id", "VERSION_ID"),
        home_url: String = ("home_url", "HOME_URL"),
        bug_report_url: String = ("bug_report_url", "BUG_REPORT_URL"),
    }
}

/// One `coreos.units` entry.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Unit {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    pub enable: bool,
    pub runtime: bool,
    pub mask: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub drop_ins: Vec<DropIn>,
}

/// One drop-in of a `coreos.units` entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DropIn {
    pub name: String,
    pub content: String,
}

/// One `write_files` entry, as written in the file (content not yet
/// decoded: see [`WriteFile::decoded_content`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct WriteFile {
    pub path: String,
    pub content: String,
    /// The content was tagged `!!binary` (base64 text in the YAML).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub binary: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub permissions: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encoding: Option<String>,
}

/// One `users` entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct User {
    pub name: String,
    pub gecos: Option<String>,
    pub passwd: Option<String>,
    pub homedir: Option<String>,
    pub no_create_home: bool,
    pub primary_group: Option<String>,
    pub groups: Vec<String>,
    pub no_user_group: bool,
    pub ssh_authorized_keys: Vec<String>,
    pub coreos_ssh_import_github: Option<String>,
    pub coreos_ssh_import_github_users: Vec<String>,
    pub coreos_ssh_import_url: Option<String>,
    pub system: bool,
    pub no_log_init: bool,
    pub shell: Option<String>,
}

/// The `coreos` section.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Coreos {
    pub etcd: Etcd,
    pub etcd2: Etcd2,
    pub fleet: Fleet,
    pub flannel: Flannel,
    pub locksmith: Locksmith,
    pub update: Update,
    pub units: Vec<Unit>,
    pub oem: Oem,
}

/// A whole cloud-config.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CloudConfig {
    pub hostname: Option<String>,
    pub ssh_authorized_keys: Vec<String>,
    pub users: Vec<User>,
    pub write_files: Vec<WriteFile>,
    pub manage_etc_hosts: Option<String>,
    pub coreos: Coreos,
}

fn decode_bool(map: &Node, key: &str) -> Result<bool, Error> {
    Ok(field::<bool>(map, key)?.unwrap_or(false))
}

fn decode_strings(map: &Node, key: &str) -> Result<Vec<String>, Error> {
    match map.get(key) {
        Some(n) => decode_list_of_strings(n, key),
        None => Ok(Vec::new()),
    }
}

impl Unit {
    fn decode(node: &Node, key: &str) -> Result<Unit, Error> {
        let Some(map) = struct_node(node, key)? else {
            return Ok(Unit::default());
        };
        let drop_ins = match map.get("drop_ins") {
            Some(n) => decode_list(n, "drop_ins", |item, k| {
                let Some(m) = struct_node(item, k)? else {
                    return Ok(DropIn::default());
                };
                Ok(DropIn {
                    name: field::<String>(m, "name")?.unwrap_or_default(),
                    content: field::<String>(m, "content")?.unwrap_or_default(),
                })
            })?,
            None => Vec::new(),
        };
        Ok(Unit {
            name: field::<String>(map, "name")?.unwrap_or_default(),
            content: field::<String>(map, "content")?,
            command: field::<String>(map, "command")?,
            enable: decode_bool(map, "enable")?,
            runtime: decode_bool(map, "runtime")?,
            mask: decode_bool(map, "mask")?,
            drop_ins,
        })
    }
}

impl WriteFile {
    fn decode(node: &Node, key: &str) -> Result<WriteFile, Error> {
        let Some(map) = struct_node(node, key)? else {
            return Ok(WriteFile::default());
        };
        let binary = map
            .get("content")
            .and_then(Node::as_scalar)
            .is_some_and(|s| s.tag.as_deref() == Some("binary"));
        Ok(WriteFile {
            path: field::<String>(map, "path")?.unwrap_or_default(),
            content: field::<String>(map, "content")?.unwrap_or_default(),
            binary,
            permissions: field::<String>(map, "permissions")?,
            owner: field::<String>(map, "owner")?,
            encoding: field::<String>(map, "encoding")?,
        })
    }
}

impl User {
    fn decode(node: &Node, key: &str) -> Result<User, Error> {
        let Some(map) = struct_node(node, key)? else {
            return Ok(User::default());
        };
        Ok(User {
            name: field::<String>(map, "name")?.unwrap_or_default(),
            gecos: field(map, "gecos")?,
            passwd: field(map, "passwd")?,
            homedir: field(map, "homedir")?,
            no_create_home: decode_bool(map, "no_create_home")?,
            primary_group: field(map, "primary_group")?,
            groups: decode_strings(map, "groups")?,
            no_user_group: decode_bool(map, "no_user_group")?,
            ssh_authorized_keys: decode_strings(map, "ssh_authorized_keys")?,
            coreos_ssh_import_github: field(map, "coreos_ssh_import_github")?,
            coreos_ssh_import_github_users: decode_strings(map, "coreos_ssh_import_github_users")?,
            coreos_ssh_import_url: field(map, "coreos_ssh_import_url")?,
            system: decode_bool(map, "system")?,
            no_log_init: decode_bool(map, "no_log_init")?,
            shell: field(map, "shell")?,
        })
    }
}

impl Coreos {
    fn decode(node: &Node, key: &str) -> Result<Coreos, Error> {
        let Some(map) = struct_node(node, key)? else {
            return Ok(Coreos::default());
        };
        let section = |k: &str| map.get(k);
        Ok(Coreos {
            etcd: section("etcd").map_or(Ok(Etcd::default()), |n| Etcd::decode(n, "etcd"))?,
            etcd2: section("etcd2").map_or(Ok(Etcd2::default()), |n| Etcd2::decode(n, "etcd2"))?,
            fleet: section("fleet").map_or(Ok(Fleet::default()), |n| Fleet::decode(n, "fleet"))?,
            flannel: section("flannel")
                .map_or(Ok(Flannel::default()), |n| Flannel::decode(n, "flannel"))?,
            locksmith: section("locksmith").map_or(Ok(Locksmith::default()), |n| {
                Locksmith::decode(n, "locksmith")
            })?,
            update: section("update")
                .map_or(Ok(Update::default()), |n| Update::decode(n, "update"))?,
            units: match section("units") {
                Some(n) => decode_list(n, "units", Unit::decode)?,
                None => Vec::new(),
            },
            oem: section("oem").map_or(Ok(Oem::default()), |n| Oem::decode(n, "oem"))?,
        })
    }
}

impl CloudConfig {
    /// Decode from the parsed document (a mapping, or `None` for a file
    /// with no document).
    pub(crate) fn decode(doc: Option<&Node>) -> Result<CloudConfig, Error> {
        let Some(doc) = doc else {
            return Ok(CloudConfig::default());
        };
        let Some(map) = struct_node(doc, "cloud-config")? else {
            return Ok(CloudConfig::default());
        };
        Ok(CloudConfig {
            hostname: field(map, "hostname")?,
            ssh_authorized_keys: decode_strings(map, "ssh_authorized_keys")?,
            users: match map.get("users") {
                Some(n) => decode_list(n, "users", User::decode)?,
                None => Vec::new(),
            },
            write_files: match map.get("write_files") {
                Some(n) => decode_list(n, "write_files", WriteFile::decode)?,
                None => Vec::new(),
            },
            manage_etc_hosts: field(map, "manage_etc_hosts")?,
            coreos: match map.get("coreos") {
                Some(n) => Coreos::decode(n, "coreos")?,
                None => Coreos::default(),
            },
        })
    }
}
