//! Reliability tooling for Keelson: a linearizability checker for kv
//! histories, watch validators, and a fault-injection harness that runs a
//! `keelson kv` cluster in network namespaces while clients record what
//! they did.
//!
//! The checker and validators are pure functions of recorded histories, so
//! they are tested on their own with generated histories; the harness is the
//! thin, I/O-heavy part that produces those histories from a real cluster.
//!
//! ```
//! use keelson_reliability::history::{Input, Operation, Output};
//! use keelson_reliability::linearizability::{check, Verdict};
//!
//! let op = |call, ret, input, output| Operation { client: 0, key: "/k".into(), input, output, call, ret };
//! let history = vec![
//!     op(0, Some(10), Input::Set { value: "a".into() }, Output::Written { prev: None, index: 4 }),
//!     op(20, Some(30), Input::Get, Output::Read(Some(("a".into(), 4)))),
//! ];
//! assert_eq!(check(&history), Ok(Verdict::Linearizable));
//! ```

pub mod cluster;
pub mod faults;
pub mod history;
pub mod http;
pub mod linearizability;
pub mod net;
pub mod run;
pub mod watch;
pub mod workload;
