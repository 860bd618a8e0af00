//! The shape of a cloud-config, as the validator checks it: coreos-cloudinit
//! compared the document with its Go structs by reflection; this is the same
//! structure written down, with the service sections taken from their
//! declarations in `config`.

use crate::config::{Etcd, Etcd2, Flannel, Fleet, Locksmith, Oem, Update};

/// A field type. The names are those coreos-cloudinit's validator prints.
#[derive(Debug, Clone, Copy)]
pub enum Ty {
    Str,
    Bool,
    Int,
    Float,
    Struct(&'static [Field]),
    List(&'static Ty),
}

#[derive(Debug, Clone, Copy)]
pub struct Field {
    /// Normalised key (`_`).
    pub key: &'static str,
    pub ty: Ty,
}

impl Ty {
    pub fn human(&self) -> String {
        match self {
            Ty::Str => "string".to_string(),
            Ty::Bool => "bool".to_string(),
            Ty::Int => "int".to_string(),
            Ty::Float => "float64".to_string(),
            Ty::Struct(_) => "struct".to_string(),
            Ty::List(t) => format!("[]{}", t.human()),
        }
    }
}

const fn f(key: &'static str, ty: Ty) -> Field {
    Field { key, ty }
}

const STRINGS: Ty = Ty::List(&Ty::Str);

pub const DROP_IN: &[Field] = &[f("name", Ty::Str), f("content", Ty::Str)];

pub const UNIT: &[Field] = &[
    f("name", Ty::Str),
    f("mask", Ty::Bool),
    f("enable", Ty::Bool),
    f("runtime", Ty::Bool),
    f("content", Ty::Str),
    f("command", Ty::Str),
    f("drop_ins", Ty::List(&Ty::Struct(DROP_IN))),
];

pub const WRITE_FILE: &[Field] = &[
    f("encoding", Ty::Str),
    f("content", Ty::Str),
    f("owner", Ty::Str),
    f("path", Ty::Str),
    f("permissions", Ty::Str),
];

pub const USER: &[Field] = &[
    f("name", Ty::Str),
    f("passwd", Ty::Str),
    f("ssh_authorized_keys", STRINGS),
    f("coreos_ssh_import_github", Ty::Str),
    f("coreos_ssh_import_github_users", STRINGS),
    f("coreos_ssh_import_url", Ty::Str),
    f("gecos", Ty::Str),
    f("homedir", Ty::Str),
    f("no_create_home", Ty::Bool),
    f("primary_group", Ty::Str),
    f("groups", STRINGS),
    f("no_user_group", Ty::Bool),
    f("system", Ty::Bool),
    f("no_log_init", Ty::Bool),
    f("shell", Ty::Str),
];

pub const COREOS: &[Field] = &[
    f("etcd", Ty::Struct(Etcd::SCHEMA)),
    f("etcd2", Ty::Struct(Etcd2::SCHEMA)),
    f("flannel", Ty::Struct(Flannel::SCHEMA)),
    f("fleet", Ty::Struct(Fleet::SCHEMA)),
    f("locksmith", Ty::Struct(Locksmith::SCHEMA)),
    f("oem", Ty::Struct(Oem::SCHEMA)),
    f("update", Ty::Struct(Update::SCHEMA)),
    f("units", Ty::List(&Ty::Struct(UNIT))),
];

pub const CLOUD_CONFIG: &[Field] = &[
    f("coreos", Ty::Struct(COREOS)),
    f("ssh_authorized_keys", STRINGS),
    f("hostname", Ty::Str),
    f("users", Ty::List(&Ty::Struct(USER))),
    f("manage_etc_hosts", Ty::Str),
    f("write_files", Ty::List(&Ty::Struct(WRITE_FILE))),
];

/// Keys of `coreos.etcd2` that mean nothing to the legacy `coreos.etcd`.
pub fn etcd2_only(key: &str) -> bool {
    Etcd2::KEYS.iter().any(|(k, _)| *k == key) && !Etcd::KEYS.iter().any(|(k, _)| *k == key)
}
