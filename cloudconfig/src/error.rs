//! Errors: each says what is wrong, where, and what to do about it.

use std::path::PathBuf;

/// Reading, substituting or translating a cloud-config failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    #[error("line 1: user data must be \"#cloud-config\" or begin with \"#!\", found {found:?}{}; fix the first line", hint_header(found))]
    Header { found: String },

    #[error("line {line}, column {column}: YAML error: {message}; run `keelson node --validate FILE` for a hint")]
    Yaml {
        line: usize,
        column: usize,
        message: String,
    },

    #[error("line {line}: {key:?} must be {want}, found {found}; fix the value or remove the key")]
    Type {
        line: usize,
        key: String,
        want: String,
        found: String,
    },

    #[error("line {line}: ${name} has no value on this machine; provide it (metadata or the COREOS_{} environment variable) or remove it from the cloud-config", name.to_uppercase())]
    Unresolved { line: usize, name: String },

    #[error("user data looks gzip-compressed but does not decompress ({0}); supply the plain or a valid gzip file")]
    Gzip(String),

    #[error("user data is not UTF-8 text; save it as UTF-8")]
    NotUtf8,

    #[error("write_files entry {index} ({path:?}): {reason}")]
    WriteFile {
        index: usize,
        path: String,
        reason: String,
    },

    #[error("coreos.units entry {index} ({name:?}): {reason}")]
    Unit {
        index: usize,
        name: String,
        reason: String,
    },

    #[error("Invalid option to manage_etc_hosts: {0:?}; the only valid value is \"localhost\"")]
    ManageEtcHosts(String),
}

fn hint_header(found: &str) -> &'static str {
    if found.trim_end() == "cloud-config" {
        " (the leading '#' is missing)"
    } else {
        ""
    }
}

/// A `write_files` content does not decode as its `encoding` says.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContentError {
    #[error("content cannot be decoded as {encoding:?}: {reason}; check the encoding or re-encode the content")]
    Decode { encoding: String, reason: String },
    #[error("unknown encoding {0:?}; use b64, base64, gz, gzip, gz+base64, gzip+base64, gz+b64 or gzip+b64")]
    UnknownEncoding(String),
}

/// Writing a file under a root directory failed.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("{path}: path must be absolute; write it as /{path}")]
    RelativePath { path: String },
    #[error("{path}: path leaves the root directory (through '..' or a symlink); use a path inside the node's root")]
    OutsideRoot { path: String },
    #[error("{path}: file cannot be written to a read-only filesystem (/usr); write it under /etc, /opt or /var instead")]
    ReadOnly { path: String },
    #[error("{path}: invalid permissions {permissions:?}; use octal text such as 0644 or 0755")]
    Permissions { path: String, permissions: String },
    #[error("{path}: {source}")]
    Content {
        path: String,
        #[source]
        source: ContentError,
    },
    #[error("{}: {action} failed: {source}; check that the directory is writable", path.display())]
    Io {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: std::io::Error,
    },
}
