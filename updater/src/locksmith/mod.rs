//! locksmith: cluster-wide reboot coordination through a semaphore in the kv.
//!
//! A machine whose update engine reports `UPDATE_STATUS_UPDATED_NEED_REBOOT`
//! waits for its reboot window, takes a slot in its group's semaphore, drains,
//! reboots, and after the reboot gives the slot back once it is healthy. The
//! semaphore is locksmith's own JSON under locksmith's keys ([`semaphore`]),
//! changed only by compare-and-swap ([`lock`]), so `locksmithctl` and Keelson
//! read and write each other's data. Unlike locksmith, a daemon's hold
//! expires if the machine dies holding it (a TTL'd lease beside the
//! semaphore, see [`lock`]).
//!
//! The decisions are a pure state machine ([`daemon`]); [`driver`] runs it
//! over a [`keelson_kv::client::KvClient`] and the [`host`] seams (status,
//! health, drain, reboot, clock). Windows are in [`window`].
//!
//! ```
//! use keelson_updater::locksmith::semaphore::{format_status, Semaphore};
//!
//! let mut sem = Semaphore::default(); // what locksmith creates
//! assert_eq!(sem.to_json(), r#"{"semaphore":1,"max":1,"holders":null}"#);
//! sem.lock("69d27b356a94476da859461d3a3bc6fd").unwrap();
//! assert_eq!(sem.lock("other").unwrap_err().to_string(), "semaphore is at 0");
//! assert_eq!(format_status(&sem),
//!            "Available: 0\nMax: 1\n\nMACHINE ID\n69d27b356a94476da859461d3a3bc6fd\n");
//! ```

pub mod daemon;
pub mod driver;
pub mod host;
pub mod lock;
pub mod semaphore;
pub mod window;

pub use daemon::{Action, Backoff, Daemon, DaemonConfig, Input};
pub use driver::{Driver, DriverConfig, DriverError, Host, Outcome};
pub use lock::{LockClient, LockError};
pub use semaphore::{format_set_max, format_status, semaphore_key, Semaphore, SemaphoreError};
pub use window::{Window, WindowError};
