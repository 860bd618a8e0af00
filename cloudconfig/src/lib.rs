//! keelson-cloudconfig: cloud-config as CoreOS nodes read it.
//!
//! ```
//! use keelson_cloudconfig::{plan, validate, CloudConfig, EnvVar, Metadata, NoFiles};
//!
//! let text = "#cloud-config
//! coreos:
//!   etcd2:
//!     name: core-01
//!     advertise-client-urls: http://$public_ipv4:2379
//!   fleet:
//!     public_ip: $public_ipv4
//!   units:
//!     - name: etcd2.service
//!       command: start
//! ";
//! // The validator prints nothing for a good file (coreos-cloudinit --validate).
//! assert!(validate(text).is_empty());
//!
//! // Substitute this machine's addresses, then parse.
//! let md = Metadata::ipv4("172.17.8.101");
//! let cfg = CloudConfig::parse_with(text, &md)?;
//!
//! // The environment Keelson's daemons read (`keelson kv` takes ETCD_*).
//! assert_eq!(
//!     cfg.service_env("etcd2"),
//!     vec![
//!         EnvVar::new("ETCD_ADVERTISE_CLIENT_URLS", "http://172.17.8.101:2379"),
//!         EnvVar::new("ETCD_NAME", "core-01"),
//!     ]
//! );
//!
//! // What a node writes and does, as data.
//! let plan = plan(&cfg, &md, &NoFiles)?;
//! assert_eq!(
//!     plan.file("/run/systemd/system/etcd2.service.d/20-cloudinit.conf").unwrap().text(),
//!     "[Service]\n\
//!      Environment=\"ETCD_ADVERTISE_CLIENT_URLS=http://172.17.8.101:2379\"\n\
//!      Environment=\"ETCD_NAME=core-01\"\n"
//! );
//! assert_eq!(
//!     plan.units.describe(),
//!     [
//!         "write /run/systemd/system/etcd2.service.d/20-cloudinit.conf",
//!         "write /run/systemd/system/fleet.service.d/20-cloudinit.conf",
//!         "daemon-reload",
//!         "start etcd2.service",
//!     ]
//! );
//!
//! // A YAML slip is reported at its line, in coreos-cloudinit's format.
//! let report = validate("#cloud-config\ncoreos:\n  units:\n    - name: a.service\n      command: start\n       enable: true\n");
//! assert_eq!(report.to_string(), "line 6: error: mapping values are not allowed in this context\n");
//! assert_eq!(report.exit_code(), 1);
//! # Ok::<(), keelson_cloudconfig::Error>(())
//! ```
//!
//! The crate follows coreos-cloudinit 1.8 (the CoreOS book's era) as the
//! reference `cloud-config.md` describes it: the header rule, YAML 1.1
//! scalars with string fields keeping their text (`proxy: on` is `on`),
//! `-`/`_` equivalence in keys, `$public_ipv4`-style substitution, the
//! `20-cloudinit.conf` drop-ins byte for byte, `/run/flannel/options.env`,
//! the `update.conf` merge, the unit processing order of §5.3, and the
//! validator's messages and exit status. Where Keelson deliberately differs
//! (an unknown `$public_ipv4` is an error rather than an empty string;
//! drop-in values are escaped for systemd; extra validation of values the
//! daemons would reject) the item's docs say so.
//!
//! Nothing here touches the host except [`write_file`] /
//! [`apply_write_files`], which write under a root directory the caller
//! names; the rest is pure, so `keelson node` (the driver) decides how to
//! carry a [`Plan`] out.

mod config;
mod error;
mod files;
mod plan;
mod render;
mod schema;
mod subst;
mod userdata;
mod validate;
mod yaml;

pub use config::{
    CloudConfig, Coreos, DropIn, EnvVar, Etcd, Etcd2, Flannel, Fleet, Locksmith, Oem, Unit, Update,
    User, WriteFile,
};
pub use error::{ApplyError, ContentError, Error};
pub use files::{apply_write_files, write_file, write_files, OwnerOutcome, Written};
pub use plan::{
    plan, plan_units, CurrentFiles, FileWrite, Link, NoFiles, Plan, RootDir, Step, UnitCommand,
    UnitsPlan,
};
pub use render::{
    decode_content, drop_in, etc_hosts, merge_environment, options_env, parse_permissions,
    systemd_quote, ServiceEnv, FLANNEL_OPTIONS_ENV, UPDATE_CONF, UPDATE_CONF_DEFAULT,
};
pub use subst::{substitute, unresolved, Metadata, VARIABLES};
pub use userdata::{classify, maybe_gunzip, Kind as UserDataKind, UserData};
pub use validate::{
    validate, validate_bytes, validate_bytes_with, validate_with, Entry, Kind, Report,
    ValidateOptions,
};

/// The README's example is compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
