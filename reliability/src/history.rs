//! What the clients did: every invocation and completion against the kv,
//! with monotonic timestamps.
//!
//! A history is the checker's only input, so it records exactly what a
//! client could observe and nothing it could not: when it sent a request,
//! when (and whether) it got an answer, and what the answer said. An
//! operation whose answer never came, or came back as an error that does not
//! say whether the write happened (a timeout, a 5xx, a dropped connection),
//! is *indeterminate*: it may have taken effect at any point after its
//! invocation, or never.

use std::sync::Mutex;
use std::time::Instant;

use serde::{Deserialize, Serialize};

/// What a compare-and-swap or compare-and-delete compares against.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Compare {
    /// `prevValue=...`.
    Value(String),
    /// `prevIndex=...`; `seen` is the value the client read at that index.
    /// Every write in a run stores a unique value, so "the key's
    /// modifiedIndex is `index`" is the same as "the key holds `seen`"
    /// (the checker verifies that no index is reported with two values).
    Index { index: u64, seen: String },
}

impl Compare {
    /// The value this comparison succeeds on.
    pub fn expected(&self) -> &str {
        match self {
            Compare::Value(v) => v,
            Compare::Index { seen, .. } => seen,
        }
    }
}

/// A request, as the client sent it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Input {
    /// A linearizable read (`quorum=true`).
    Get,
    /// An unconditional set.
    Set { value: String },
    /// `PUT` with `prevValue` or `prevIndex`.
    Cas { compare: Compare, value: String },
    /// An unconditional delete.
    Delete,
    /// `DELETE` with `prevValue` or `prevIndex`.
    Cad { compare: Compare },
}

/// What the answer said.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Output {
    /// A read's answer: the value and its modifiedIndex, or no such key.
    Read(Option<(String, u64)>),
    /// A set or delete that succeeded, with the previous value the answer
    /// carried (`prevNode`) and the index it was applied at.
    Written { prev: Option<String>, index: u64 },
    /// A compare-and-swap or compare-and-delete that succeeded.
    Swapped { index: u64 },
    /// Error 101: the key exists and the comparison failed.
    CompareFailed,
    /// Error 100: no such key.
    NotFound,
    /// No answer, or one that does not tell whether the request took effect.
    Unknown,
}

impl Output {
    pub fn is_unknown(&self) -> bool {
        matches!(self, Output::Unknown)
    }
}

/// One operation: its invocation and completion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operation {
    /// The client (thread) that issued it.
    pub client: usize,
    pub key: String,
    pub input: Input,
    pub output: Output,
    /// Nanoseconds since the history's start when the request was sent.
    pub call: u64,
    /// When the answer arrived; `None` for an indeterminate operation (it
    /// may take effect at any time after `call`).
    pub ret: Option<u64>,
}

impl Operation {
    /// The return time, with indeterminate operations returning "never".
    pub fn ret_or_inf(&self) -> u64 {
        self.ret.unwrap_or(u64::MAX)
    }
}

impl std::fmt::Display for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = |ns: u64| ns as f64 / 1e6;
        let ret = match self.ret {
            Some(r) => format!("{:>10.3}ms", ms(r)),
            None => "         (never)".into(),
        };
        let input = match &self.input {
            Input::Get => "get".to_string(),
            Input::Set { value } => format!("set {value:?}"),
            Input::Cas { compare, value } => format!("cas {} -> {value:?}", show_compare(compare)),
            Input::Delete => "delete".to_string(),
            Input::Cad { compare } => format!("cad {}", show_compare(compare)),
        };
        let output = match &self.output {
            Output::Read(Some((v, i))) => format!("= {v:?} @{i}"),
            Output::Read(None) => "= <absent>".into(),
            Output::Written { prev, index } => match prev {
                Some(p) => format!("ok @{index}, prev {p:?}"),
                None => format!("ok @{index}, prev <absent>"),
            },
            Output::Swapped { index } => format!("ok @{index}"),
            Output::CompareFailed => "compare failed (101)".into(),
            Output::NotFound => "not found (100)".into(),
            Output::Unknown => "UNKNOWN (timeout/error)".into(),
        };
        write!(
            f,
            "[{:>10.3}ms .. {ret}] c{:<2} {} {input:<40} {output}",
            ms(self.call),
            self.client,
            self.key
        )
    }
}

fn show_compare(c: &Compare) -> String {
    match c {
        Compare::Value(v) => format!("prevValue={v:?}"),
        Compare::Index { index, seen } => format!("prevIndex={index} (={seen:?})"),
    }
}

/// A pending invocation, returned by [`Recorder::invoke`].
#[derive(Debug)]
pub struct Pending {
    client: usize,
    key: String,
    input: Input,
    call: u64,
}

/// Records operations from many threads against one monotonic clock.
#[derive(Debug)]
pub struct Recorder {
    start: Instant,
    ops: Mutex<Vec<Operation>>,
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

impl Recorder {
    pub fn new() -> Recorder {
        Recorder {
            start: Instant::now(),
            ops: Mutex::new(Vec::new()),
        }
    }

    /// Nanoseconds since the recorder started.
    pub fn now(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Notes an invocation, just before the request is sent.
    pub fn invoke(&self, client: usize, key: &str, input: Input) -> Pending {
        Pending {
            client,
            key: key.to_owned(),
            input,
            call: self.now(),
        }
    }

    /// Notes the completion, just after the answer was read (or given up on).
    pub fn complete(&self, p: Pending, output: Output) {
        let ret = (!output.is_unknown()).then(|| self.now());
        let op = Operation {
            client: p.client,
            key: p.key,
            input: p.input,
            output,
            call: p.call,
            ret,
        };
        self.ops.lock().unwrap_or_else(|e| e.into_inner()).push(op);
    }

    /// Everything recorded so far.
    pub fn operations(&self) -> Vec<Operation> {
        self.ops.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}
