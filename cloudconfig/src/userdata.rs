//! What a piece of user data is (reference §2.1) and reading it.

use crate::config::CloudConfig;
use crate::error::Error;
use crate::subst::{substitute, Metadata};
use crate::yaml;

/// The kinds of user data, decided by the first line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Exactly `#cloud-config` (trailing whitespace ignored).
    CloudConfig,
    /// Starts with `#!`: a script.
    Script,
    /// A JSON Ignition config: cloudinit does nothing.
    Ignition,
    /// Nothing to do.
    Empty,
    /// Anything else: rejected as a whole.
    Invalid,
}

/// Classify user data text.
pub fn classify(text: &str) -> Kind {
    if text.is_empty() {
        return Kind::Empty;
    }
    let first = text.split('\n').next().unwrap_or("");
    if first.starts_with("#!") {
        Kind::Script
    } else if first.trim_end() == "#cloud-config" {
        Kind::CloudConfig
    } else if text.trim_start().starts_with('{') && text.contains("ignitionVersion") {
        Kind::Ignition
    } else {
        Kind::Invalid
    }
}

/// Decompress gzip-compressed user data; other data is returned unchanged.
pub fn maybe_gunzip(data: &[u8]) -> Result<std::borrow::Cow<'_, [u8]>, Error> {
    if data.starts_with(&[0x1f, 0x8b]) {
        crate::render::gunzip(data, "gzip")
            .map(std::borrow::Cow::Owned)
            .map_err(|e| Error::Gzip(e.to_string()))
    } else {
        Ok(std::borrow::Cow::Borrowed(data))
    }
}

/// Parsed user data.
#[derive(Debug, Clone, PartialEq)]
pub enum UserData {
    CloudConfig(Box<CloudConfig>),
    /// A script to run once (its full text).
    Script(String),
    Ignition,
    Empty,
}

impl UserData {
    /// Read user data bytes (gzip-compressed or not), substituting the
    /// machine's values into a cloud-config before parsing it.
    pub fn parse(data: &[u8], metadata: &Metadata) -> Result<UserData, Error> {
        let data = maybe_gunzip(data)?;
        let text = std::str::from_utf8(&data).map_err(|_| Error::NotUtf8)?;
        match classify(text) {
            Kind::Empty => Ok(UserData::Empty),
            Kind::Ignition => Ok(UserData::Ignition),
            Kind::Script => Ok(UserData::Script(text.to_string())),
            Kind::Invalid | Kind::CloudConfig => Ok(UserData::CloudConfig(Box::new(
                CloudConfig::parse_with(text, metadata)?,
            ))),
        }
    }
}

impl CloudConfig {
    /// Parse a cloud-config as written (no substitution: `$public_ipv4`
    /// stays literal). The first line must be `#cloud-config`.
    pub fn parse(text: &str) -> Result<CloudConfig, Error> {
        match classify(text) {
            Kind::CloudConfig => {}
            Kind::Empty => return Ok(CloudConfig::default()),
            _ => {
                return Err(Error::Header {
                    found: text.split('\n').next().unwrap_or("").to_string(),
                })
            }
        }
        let doc = yaml::parse(text).map_err(|e| Error::Yaml {
            line: e.line,
            column: e.column,
            message: e.message,
        })?;
        CloudConfig::decode(doc.as_ref())
    }

    /// Substitute the machine's values (§2.3), then parse. A token without
    /// a value inside a YAML value is an error naming it and its line.
    pub fn parse_with(text: &str, metadata: &Metadata) -> Result<CloudConfig, Error> {
        // Check the header and the syntax on the text as written, so that
        // errors point at what the user wrote.
        if classify(text) != Kind::CloudConfig {
            return CloudConfig::parse(text);
        }
        yaml::parse(text).map_err(|e| Error::Yaml {
            line: e.line,
            column: e.column,
            message: e.message,
        })?;
        CloudConfig::parse(&substitute(text, metadata)?)
    }
}
