//! The texts a node writes: service drop-ins, `options.env`, the
//! `update.conf` and `/etc/environment` merges, `/etc/oem-release`,
//! `/etc/hosts`, and `write_files` content decoding.

use std::io::Read;

use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::config::{CloudConfig, EnvVar, Oem, Update};
use crate::error::ContentError;

/// The environment one daemon gets from its `coreos.*` section, and where
/// coreos-cloudinit put it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceEnv {
    /// The section (`etcd2`, `etcd`, `fleet`, `flannel`, `locksmith`).
    pub section: String,
    /// The systemd unit the variables are for.
    pub unit: String,
    pub vars: Vec<EnvVar>,
}

impl ServiceEnv {
    /// The file coreos-cloudinit writes the variables to (node-absolute).
    pub fn path(&self) -> String {
        if self.section == "flannel" {
            FLANNEL_OPTIONS_ENV.to_string()
        } else {
            format!("/run/systemd/system/{}.d/20-cloudinit.conf", self.unit)
        }
    }

    /// That file's exact content.
    pub fn file_content(&self) -> String {
        if self.section == "flannel" {
            options_env(&self.vars)
        } else {
            drop_in(&self.vars)
        }
    }
}

pub const FLANNEL_OPTIONS_ENV: &str = "/run/flannel/options.env";
pub const UPDATE_CONF: &str = "/etc/coreos/update.conf";
pub const UPDATE_CONF_DEFAULT: &str = "/usr/share/coreos/update.conf";

impl CloudConfig {
    /// Every service section that sets something, with its variables, in
    /// coreos-cloudinit's order: etcd (legacy), etcd2, fleet, locksmith,
    /// then flannel. This is what `keelson node` hands to the daemons
    /// (`keelson kv` reads `ETCD_*`, `keelson fleet` `FLEET_*`, `keelson
    /// overlay` `FLANNELD_*`, locksmith `LOCKSMITHD_*`/`REBOOT_WINDOW_*`).
    pub fn services(&self) -> Vec<ServiceEnv> {
        let c = &self.coreos;
        [
            ("etcd", "etcd.service", c.etcd.env()),
            ("etcd2", "etcd2.service", c.etcd2.env()),
            ("fleet", "fleet.service", c.fleet.env()),
            ("locksmith", "locksmithd.service", c.locksmith.env()),
            ("flannel", "flanneld.service", c.flannel.env()),
        ]
        .into_iter()
        .filter(|(_, _, vars)| !vars.is_empty())
        .map(|(section, unit, vars)| ServiceEnv {
            section: section.to_string(),
            unit: unit.to_string(),
            vars,
        })
        .collect()
    }

    /// The variables of one section by name (`etcd2`, `fleet`, …); empty
    /// when the section sets nothing or does not exist.
    pub fn service_env(&self, section: &str) -> Vec<EnvVar> {
        self.services()
            .into_iter()
            .find(|s| s.section == section)
            .map(|s| s.vars)
            .unwrap_or_default()
    }
}

/// Quote a value for `Environment="NAME=value"`: systemd unescapes `\\`,
/// `\"` and `\n` inside double quotes and expands `%` specifiers, so those
/// are escaped; values the book uses pass through unchanged.
pub fn systemd_quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '%' => out.push_str("%%"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// A `20-cloudinit.conf` drop-in: `[Service]` then one
/// `Environment="VAR=value"` line per variable.
pub fn drop_in(vars: &[EnvVar]) -> String {
    let mut out = String::from("[Service]\n");
    for v in vars {
        out.push_str(&format!(
            "Environment=\"{}={}\"\n",
            v.name,
            systemd_quote(&v.value)
        ));
    }
    out
}

/// `/run/flannel/options.env`: `VAR=value` lines joined by `\n`, no
/// trailing newline, no quoting (docker's `--env-file` format).
pub fn options_env(vars: &[EnvVar]) -> String {
    vars.iter()
        .map(|v| format!("{}={}", v.name, v.value))
        .collect::<Vec<_>>()
        .join("\n")
}

impl Update {
    /// The new `/etc/coreos/update.conf` given the current file (or, when
    /// there is none, the image's `/usr/share/coreos/update.conf`), or
    /// `None` when the section sets nothing. Lines for `GROUP`,
    /// `REBOOT_STRATEGY`, `SERVER` are replaced in place (first match), the
    /// rest kept; missing keys are appended in that order.
    pub fn update_conf(&self, current: &str) -> Option<String> {
        let vars = self.env();
        if vars.is_empty() {
            return None;
        }
        let mut lines: Vec<String> = current.lines().map(str::to_string).collect();
        let mut append = Vec::new();
        for v in &vars {
            let prefix = format!("{}=", v.name);
            match lines.iter_mut().find(|l| l.starts_with(&prefix)) {
                Some(l) => *l = format!("{}={}", v.name, v.value),
                None => append.push(format!("{}={}", v.name, v.value)),
            }
        }
        append.sort();
        lines.extend(append);
        let mut out = lines.join("\n");
        out.push('\n');
        Some(out)
    }
}

impl Oem {
    /// `/etc/oem-release`, or `None` without an `id`.
    pub fn release(&self) -> Option<String> {
        let id = self.id.as_deref().filter(|s| !s.is_empty())?;
        let s = |v: &Option<String>| v.clone().unwrap_or_default();
        Some(format!(
            "ID={id}\nVERSION_ID={}\nNAME=\"{}\"\nHOME_URL=\"{}\"\nBUG_REPORT_URL=\"{}\"\n",
            s(&self.version_id),
            s(&self.name),
            s(&self.home_url),
            s(&self.bug_report_url)
        ))
    }
}

/// `/etc/hosts` for `manage_etc_hosts: localhost`.
pub fn etc_hosts(hostname: &str) -> String {
    format!("127.0.0.1 {hostname}\n")
}

/// Merge variables into an `/etc/environment` text: existing lines kept,
/// matching keys replaced in place, new keys appended sorted. `None` when
/// nothing changes (the file is then not rewritten).
pub fn merge_environment(current: &str, vars: &[(String, String)]) -> Option<String> {
    if vars.is_empty() {
        return None;
    }
    let mut lines: Vec<String> = current.lines().map(str::to_string).collect();
    let mut append: Vec<String> = Vec::new();
    for (k, v) in vars {
        let prefix = format!("{k}=");
        let line = format!("{k}={v}");
        match lines.iter_mut().find(|l| l.starts_with(&prefix)) {
            Some(l) => *l = line,
            None => append.push(line),
        }
    }
    append.sort();
    lines.extend(append);
    let mut out = lines.join("\n");
    out.push('\n');
    (out != current).then_some(out)
}

fn b64(data: &[u8], encoding: &str) -> Result<Vec<u8>, ContentError> {
    // Go's StdEncoding skips '\r' and '\n'; block scalars end in a newline.
    let clean: Vec<u8> = data
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(&clean)
        .map_err(|e| ContentError::Decode {
            encoding: encoding.to_string(),
            reason: e.to_string(),
        })
}

/// Bound on decompressed content, so a small gzip bomb cannot exhaust memory.
const MAX_GUNZIP: u64 = 256 * 1024 * 1024;

pub(crate) fn gunzip(data: &[u8], encoding: &str) -> Result<Vec<u8>, ContentError> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(data)
        .take(MAX_GUNZIP + 1)
        .read_to_end(&mut out)
        .map_err(|e| ContentError::Decode {
            encoding: encoding.to_string(),
            reason: e.to_string(),
        })?;
    if out.len() as u64 > MAX_GUNZIP {
        return Err(ContentError::Decode {
            encoding: encoding.to_string(),
            reason: format!("more than {MAX_GUNZIP} bytes once decompressed"),
        });
    }
    Ok(out)
}

/// Whether `encoding` is one coreos-cloudinit accepts (empty = none).
pub fn is_known_encoding(encoding: &str) -> bool {
    matches!(
        encoding,
        "" | "b64" | "base64" | "gz" | "gzip" | "gz+base64" | "gzip+base64" | "gz+b64" | "gzip+b64"
    )
}

/// Decode `write_files` content: `!!binary` text is base64 first, then the
/// `encoding` applies (base64, gzip, or both).
pub fn decode_content(
    content: &str,
    binary: bool,
    encoding: Option<&str>,
) -> Result<Vec<u8>, ContentError> {
    let raw = if binary {
        b64(content.as_bytes(), "!!binary")?
    } else {
        content.as_bytes().to_vec()
    };
    let enc = encoding.unwrap_or("");
    match enc {
        "" => Ok(raw),
        "b64" | "base64" => b64(&raw, enc),
        "gz" | "gzip" => gunzip(&raw, enc),
        "gz+base64" | "gzip+base64" | "gz+b64" | "gzip+b64" => gunzip(&b64(&raw, enc)?, enc),
        other => Err(ContentError::UnknownEncoding(other.to_string())),
    }
}

impl crate::config::WriteFile {
    /// The bytes to write.
    pub fn decoded_content(&self) -> Result<Vec<u8>, ContentError> {
        decode_content(&self.content, self.binary, self.encoding.as_deref())
    }

    /// The file mode from `permissions` (default 0644); `None` when the
    /// text is not 3–4 octal digits with an optional leading 0.
    pub fn mode(&self) -> Option<u32> {
        match self.permissions.as_deref() {
            None | Some("") => Some(0o644),
            Some(p) => parse_permissions(p),
        }
    }
}

/// `^0?[0-7]{3,4}$` as a mode.
pub fn parse_permissions(p: &str) -> Option<u32> {
    let digits = if p.len() > 3 {
        p.strip_prefix('0').unwrap_or(p)
    } else {
        p
    };
    let ok = (3..=4).contains(&digits.len()) && digits.chars().all(|c| ('0'..='7').contains(&c));
    // "0644" strips to "644"; "00644" would strip to "0644", also valid.
    if !ok {
        return None;
    }
    u32::from_str_radix(digits, 8).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_escapes_what_systemd_would_interpret() {
        assert_eq!(systemd_quote("role=master"), "role=master");
        assert_eq!(systemd_quote(r#"a"b\c%d"#), r#"a\"b\\c%%d"#);
    }

    #[test]
    fn update_conf_merges_in_place_and_appends_sorted() {
        let u = Update {
            reboot_strategy: Some("etcd-lock".into()),
            group: Some("stable".into()),
            server: None,
        };
        assert_eq!(
            u.update_conf("GROUP=alpha\n").unwrap(),
            "GROUP=stable\nREBOOT_STRATEGY=etcd-lock\n"
        );
        let only = Update {
            reboot_strategy: Some("etcd-lock".into()),
            ..Update::default()
        };
        assert_eq!(
            only.update_conf("# comment\nGROUP=alpha").unwrap(),
            "# comment\nGROUP=alpha\nREBOOT_STRATEGY=etcd-lock\n"
        );
        assert_eq!(Update::default().update_conf("GROUP=alpha\n"), None);
    }

    #[test]
    fn environment_merge_keeps_lines_and_reports_no_change() {
        let vars = vec![("COREOS_PUBLIC_IPV4".to_string(), "1.2.3.4".to_string())];
        let merged = merge_environment("FOO=bar\nCOREOS_PUBLIC_IPV4=9.9.9.9\n", &vars).unwrap();
        assert_eq!(merged, "FOO=bar\nCOREOS_PUBLIC_IPV4=1.2.3.4\n");
        assert_eq!(merge_environment(&merged, &vars), None);
    }

    #[test]
    fn permissions_follow_the_validator_pattern() {
        assert_eq!(parse_permissions("0644"), Some(0o644));
        assert_eq!(parse_permissions("755"), Some(0o755));
        assert_eq!(parse_permissions("01777"), Some(0o1777));
        assert_eq!(parse_permissions("1777"), Some(0o1777));
        assert_eq!(parse_permissions("0800"), None);
        assert_eq!(parse_permissions("64"), None);
        assert_eq!(parse_permissions("rw-r--r--"), None);
    }

    #[test]
    fn content_decodings() {
        assert_eq!(
            decode_content("aGVsbG8K\n", false, Some("b64")).unwrap(),
            b"hello\n"
        );
        let mut gz = Vec::new();
        {
            use std::io::Write;
            let mut e = flate2::write::GzEncoder::new(&mut gz, flate2::Compression::default());
            e.write_all(b"zipped\n").unwrap();
            e.finish().unwrap();
        }
        let text = base64::engine::general_purpose::STANDARD.encode(&gz);
        assert_eq!(
            decode_content(&text, false, Some("gzip+base64")).unwrap(),
            b"zipped\n"
        );
        assert_eq!(
            decode_content(&text, true, Some("gz")).unwrap(),
            b"zipped\n"
        );
        assert!(decode_content("not base64!", false, Some("b64")).is_err());
        assert!(decode_content("x", false, Some("rot13")).is_err());
    }
}
