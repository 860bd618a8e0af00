//! Linearizability checking of a recorded kv history.
//!
//! The model is a key-value register per key with get, set,
//! compare-and-swap, delete and compare-and-delete, as the etcd v2 API
//! offers them. The search is Wing and Gong's, with Lowe's improvements as
//! Porcupine implements them: operations live in a doubly linked list of call
//! and return entries in time order; the search linearizes a call whenever
//! the model allows it, lifting the call and its return out of the list, and
//! backtracks when it meets a return whose call it could not place; every
//! (set of linearized operations, model state) pair it has already explored
//! is memoised so it is never explored twice. Keys are independent
//! (P-compositionality), so each key's sub-history is checked on its own,
//! which keeps the search small.
//!
//! An indeterminate operation (timed out, connection lost, a 5xx) returns
//! "never": it may be linearized anywhere after its call, or not at all. A
//! history is accepted once every determinate operation is linearized.
//!
//! Before the search, one global check that the per-key split cannot see:
//! every etcd index reported anywhere names one write only (one key, one
//! value), since the index is cluster-wide.

use std::collections::{HashMap, HashSet};
use std::fmt;

use crate::history::{Compare, Input, Operation, Output};

/// Why a history could not be checked at all.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HistoryError {
    /// An operation's output cannot answer its input (a read with a write's
    /// answer, ...): the recorder is wrong, not the store.
    #[error("operation {index} has an output that cannot answer its input: {op}")]
    Malformed { index: usize, op: String },
    /// Two writes used the same value; the prevIndex model needs unique
    /// values per write.
    #[error(
        "value {value:?} is written twice on key {key}; every write must store a unique value"
    )]
    DuplicateValue { key: String, value: String },
}

/// The checker's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Linearizable,
    /// Not linearizable: a human-readable witness.
    Violation(Box<Counterexample>),
    /// The search ran out of its step budget on `key`.
    Inconclusive {
        key: String,
        steps: u64,
    },
}

impl Verdict {
    pub fn is_linearizable(&self) -> bool {
        matches!(self, Verdict::Linearizable)
    }
}

/// A failing key's operations, cut to the shortest failing prefix, with
/// the longest linearization the search found and what it got stuck on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counterexample {
    pub key: String,
    /// What kind of violation: a failed search or an index reported twice.
    pub reason: String,
    /// All operations on the key in the shortest failing prefix, in call order.
    pub prefix: Vec<Operation>,
    /// How many operations the key had in the whole history.
    pub key_operations: usize,
    /// The tail of the longest linearization found, in linearization order.
    pub linearized_tail: Vec<Operation>,
    /// How many operations that linearization placed.
    pub linearized: usize,
    /// The register's value after it (`None`: absent).
    pub state: Option<String>,
    /// Operations of the prefix that could not be placed after it.
    pub stuck: Vec<Operation>,
}

impl fmt::Display for Counterexample {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "NOT LINEARIZABLE on key {}: {}", self.key, self.reason)?;
        if self.prefix.is_empty() {
            return Ok(());
        }
        writeln!(
            f,
            "shortest failing prefix: {} of the key's {} operations; the longest linearization placed {}",
            self.prefix.len(),
            self.key_operations,
            self.linearized
        )?;
        writeln!(f, "... last operations of that linearization, in order:")?;
        for op in &self.linearized_tail {
            writeln!(f, "    {op}")?;
        }
        match &self.state {
            Some(v) => writeln!(f, "... after which {} holds {v:?}", self.key)?,
            None => writeln!(f, "... after which {} is absent", self.key)?,
        }
        writeln!(
            f,
            "and none of these could be placed next (the last to return is the one that cannot be explained):"
        )?;
        for op in &self.stuck {
            writeln!(f, "    {op}")?;
        }
        Ok(())
    }
}

/// Default search budget per key: generous for histories of thousands of
/// operations with a few dozen indeterminate ones.
pub const DEFAULT_BUDGET: u64 = 50_000_000;

/// Checks a whole history: the global index check, then each key alone.
pub fn check(ops: &[Operation]) -> Result<Verdict, HistoryError> {
    check_with_budget(ops, DEFAULT_BUDGET)
}

/// As [`check`], with a search step budget per key.
pub fn check_with_budget(ops: &[Operation], budget: u64) -> Result<Verdict, HistoryError> {
    for (i, op) in ops.iter().enumerate() {
        if !well_formed(op) {
            return Err(HistoryError::Malformed {
                index: i,
                op: op.to_string(),
            });
        }
    }
    if let Some(c) = index_conflict(ops) {
        return Ok(Verdict::Violation(Box::new(c)));
    }
    let mut by_key: HashMap<&str, Vec<Operation>> = HashMap::new();
    for op in ops {
        by_key.entry(&op.key).or_default().push(op.clone());
    }
    let mut keys: Vec<&str> = by_key.keys().copied().collect();
    keys.sort_unstable();
    for key in keys {
        let key_ops = by_key.remove(key).unwrap_or_default();
        match check_key(key, &key_ops, budget)? {
            Verdict::Linearizable => {}
            other => return Ok(other),
        }
    }
    Ok(Verdict::Linearizable)
}

fn well_formed(op: &Operation) -> bool {
    if op.output.is_unknown() != op.ret.is_none() {
        return false;
    }
    if op.ret.is_some_and(|r| r < op.call) {
        return false;
    }
    matches!(
        (&op.input, &op.output),
        (_, Output::Unknown)
            | (Input::Get, Output::Read(_))
            | (Input::Set { .. }, Output::Written { .. })
            | (
                Input::Delete,
                Output::Written { prev: Some(_), .. } | Output::NotFound
            )
            | (
                Input::Cas { .. } | Input::Cad { .. },
                Output::Swapped { .. } | Output::CompareFailed | Output::NotFound,
            )
    )
}

/// What an index was reported to be: a write of a value, or a delete, on a key.
fn index_claims(op: &Operation) -> Vec<(u64, Option<&str>)> {
    let mut out = Vec::new();
    match (&op.input, &op.output) {
        (_, Output::Read(Some((v, i)))) => out.push((*i, Some(v.as_str()))),
        (Input::Set { value }, Output::Written { index, .. })
        | (Input::Cas { value, .. }, Output::Swapped { index }) => {
            out.push((*index, Some(value.as_str())))
        }
        (Input::Delete | Input::Cad { .. }, Output::Written { index, .. })
        | (Input::Delete | Input::Cad { .. }, Output::Swapped { index }) => {
            out.push((*index, None))
        }
        _ => {}
    }
    if let Input::Cas { compare, .. } | Input::Cad { compare } = &op.input {
        if let Compare::Index { index, seen } = compare {
            out.push((*index, Some(seen.as_str())));
        }
    }
    out
}

fn index_conflict(ops: &[Operation]) -> Option<Counterexample> {
    let mut seen: HashMap<u64, (&Operation, Option<&str>)> = HashMap::new();
    for op in ops {
        for (index, what) in index_claims(op) {
            match seen.get(&index) {
                None => {
                    seen.insert(index, (op, what));
                }
                Some((first, w)) if first.key != op.key || *w != what => {
                    return Some(Counterexample {
                        key: op.key.clone(),
                        reason: format!(
                            "etcd index {index} reported for two different writes:\n    {first}\n    {op}"
                        ),
                        prefix: Vec::new(),
                        key_operations: 0,
                        linearized_tail: Vec::new(),
                        linearized: 0,
                        state: None,
                        stuck: Vec::new(),
                    });
                }
                Some(_) => {}
            }
        }
    }
    None
}

/// The model, over interned values (0 = absent).
#[derive(Debug, Clone, Copy)]
enum In {
    Get,
    Set(u32),
    Cas(u32, u32),
    Delete,
    Cad(u32),
}

#[derive(Debug, Clone, Copy)]
enum Out {
    Read(u32),
    Written(u32),
    Swapped,
    CompareFailed,
    NotFound,
    Unknown,
}

/// The state after applying `i` with answer `o` to `s`, if the model allows it.
fn step(s: u32, i: In, o: Out) -> Option<u32> {
    use Out::*;
    match (i, o) {
        (In::Get, Read(v)) => (v == s).then_some(s),
        (In::Set(n), Written(p)) => (p == s).then_some(n),
        (In::Set(n), Unknown) => Some(n),
        (In::Cas(e, n), Swapped | Unknown) => (s == e).then_some(n),
        (In::Cas(e, _) | In::Cad(e), CompareFailed) => (s != 0 && s != e).then_some(s),
        (In::Cas(..) | In::Cad(_) | In::Delete, NotFound) => (s == 0).then_some(s),
        (In::Delete, Written(p)) => (s != 0 && p == s).then_some(0),
        (In::Delete, Unknown) => (s != 0).then_some(0),
        (In::Cad(e), Swapped | Unknown) => (s == e).then_some(0),
        _ => None,
    }
}

struct Interner<'a> {
    ids: HashMap<&'a str, u32>,
    names: Vec<&'a str>,
}

impl<'a> Interner<'a> {
    fn id(&mut self, v: &'a str) -> u32 {
        if let Some(i) = self.ids.get(v) {
            return *i;
        }
        self.names.push(v);
        let id = self.names.len() as u32;
        self.ids.insert(v, id);
        id
    }
    fn opt(&mut self, v: Option<&'a str>) -> u32 {
        v.map_or(0, |v| self.id(v))
    }
    fn name(&self, id: u32) -> Option<String> {
        let i = usize::try_from(id).ok()?.checked_sub(1)?;
        self.names.get(i).map(|s| (*s).to_owned())
    }
}

fn prepare<'a>(
    ops: &'a [Operation],
    int: &mut Interner<'a>,
) -> Result<Vec<(In, Out)>, HistoryError> {
    let mut written: HashSet<&str> = HashSet::new();
    let mut out = Vec::with_capacity(ops.len());
    for op in ops {
        let i = match &op.input {
            Input::Get => In::Get,
            Input::Set { value } | Input::Cas { value, .. } if !written.insert(value.as_str()) => {
                return Err(HistoryError::DuplicateValue {
                    key: op.key.clone(),
                    value: value.clone(),
                });
            }
            Input::Set { value } => In::Set(int.id(value)),
            Input::Cas { compare, value } => In::Cas(int.id(compare.expected()), int.id(value)),
            Input::Delete => In::Delete,
            Input::Cad { compare } => In::Cad(int.id(compare.expected())),
        };
        let o = match &op.output {
            Output::Read(v) => Out::Read(int.opt(v.as_ref().map(|(v, _)| v.as_str()))),
            Output::Written { prev, .. } => Out::Written(int.opt(prev.as_deref())),
            Output::Swapped { .. } => Out::Swapped,
            Output::CompareFailed => Out::CompareFailed,
            Output::NotFound => Out::NotFound,
            Output::Unknown => Out::Unknown,
        };
        out.push((i, o));
    }
    Ok(out)
}

enum Search {
    Ok,
    Fail { best: Vec<usize>, state: u32 },
    Budget(u64),
}

const NIL: usize = usize::MAX;

/// The Wing–Gong–Lowe search over one key's operations.
fn search(model: &[(In, Out)], ops: &[Operation], budget: u64) -> Search {
    let n = ops.len();
    // Nodes: 0 is the head; op i has call node 1+2i and return node 2+2i.
    let call_node = |i: usize| 1 + 2 * i;
    let mut events: Vec<(u64, u8, usize)> = Vec::with_capacity(2 * n);
    for (i, op) in ops.iter().enumerate() {
        events.push((op.call, 0, call_node(i)));
        events.push((op.ret_or_inf(), 1, call_node(i) + 1));
    }
    // At equal times calls come first: such operations count as concurrent.
    events.sort_unstable();
    let mut next = vec![NIL; 2 * n + 1];
    let mut prev = vec![NIL; 2 * n + 1];
    let mut last = 0;
    for &(_, _, node) in &events {
        next[last] = node;
        prev[node] = last;
        last = node;
    }
    let op_of = |node: usize| (node - 1) / 2;
    let is_call = |node: usize| node % 2 == 1;

    let mut determinate_left = ops.iter().filter(|o| o.ret.is_some()).count();
    let mut bits = vec![0u64; n.div_ceil(64)];
    let mut cache: HashSet<(Vec<u64>, u32)> = HashSet::new();
    let mut stack: Vec<(usize, u32)> = Vec::new();
    let mut best: Vec<usize> = Vec::new();
    let mut best_state = 0;
    let mut state = 0u32;
    let mut entry = next[0];
    let mut steps = 0u64;

    loop {
        if determinate_left == 0 {
            return Search::Ok;
        }
        steps += 1;
        if steps > budget {
            return Search::Budget(steps);
        }
        if entry != NIL && is_call(entry) {
            let i = op_of(entry);
            let (inp, out) = model[i];
            if let Some(ns) = step(state, inp, out) {
                bits[i / 64] |= 1 << (i % 64);
                if cache.insert((bits.clone(), ns)) {
                    stack.push((entry, state));
                    state = ns;
                    // Lift the call and its return out of the list.
                    let r = entry + 1;
                    for node in [entry, r] {
                        next[prev[node]] = next[node];
                        if next[node] != NIL {
                            prev[next[node]] = prev[node];
                        }
                    }
                    if ops[i].ret.is_some() {
                        determinate_left -= 1;
                    }
                    if stack.len() > best.len() {
                        best = stack.iter().map(|(c, _)| op_of(*c)).collect();
                        best_state = state;
                    }
                    entry = next[0];
                    continue;
                }
                bits[i / 64] &= !(1 << (i % 64));
            }
            entry = next[entry];
        } else {
            // A return whose call is not linearized: undo the last choice.
            let Some((c, s)) = stack.pop() else {
                return Search::Fail {
                    best,
                    state: best_state,
                };
            };
            let i = op_of(c);
            bits[i / 64] &= !(1 << (i % 64));
            state = s;
            for node in [c + 1, c] {
                next[prev[node]] = node;
                if next[node] != NIL {
                    prev[next[node]] = node;
                }
            }
            if ops[i].ret.is_some() {
                determinate_left += 1;
            }
            entry = next[c];
        }
    }
}

/// The history as it looked at time `t`: later calls dropped, operations
/// still running at `t` indeterminate (reads still running are dropped).
fn truncate(ops: &[Operation], t: u64) -> Vec<Operation> {
    ops.iter()
        .filter(|o| o.call <= t)
        .filter_map(|o| {
            if o.ret.is_some_and(|r| r <= t) {
                Some(o.clone())
            } else if o.input == Input::Get {
                None
            } else {
                let mut o = o.clone();
                o.ret = None;
                o.output = Output::Unknown;
                Some(o)
            }
        })
        .collect()
}

fn run_search(ops: &[Operation], budget: u64) -> Result<(Search, Interner<'_>), HistoryError> {
    let mut int = Interner {
        ids: HashMap::new(),
        names: Vec::new(),
    };
    let model = prepare(ops, &mut int)?;
    Ok((search(&model, ops, budget), int))
}

fn check_key(key: &str, ops: &[Operation], budget: u64) -> Result<Verdict, HistoryError> {
    // Reads without an answer say nothing.
    let mut ops: Vec<Operation> = ops
        .iter()
        .filter(|o| !(o.input == Input::Get && o.output.is_unknown()))
        .cloned()
        .collect();
    ops.sort_by_key(|o| (o.call, o.ret_or_inf()));
    match run_search(&ops, budget)?.0 {
        Search::Ok => return Ok(Verdict::Linearizable),
        Search::Budget(steps) => {
            return Ok(Verdict::Inconclusive {
                key: key.to_owned(),
                steps,
            })
        }
        Search::Fail { .. } => {}
    }
    // The shortest failing prefix, by binary search over return times: a
    // prefix of a linearizable history is linearizable.
    let mut times: Vec<u64> = ops.iter().filter_map(|o| o.ret).collect();
    times.sort_unstable();
    times.dedup();
    let (mut lo, mut hi) = (0usize, times.len().saturating_sub(1));
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let cut = truncate(&ops, times[mid]);
        if matches!(run_search(&cut, budget)?.0, Search::Fail { .. }) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    let prefix = times
        .get(lo)
        .map_or_else(|| ops.clone(), |t| truncate(&ops, *t));
    let (result, int) = run_search(&prefix, budget)?;
    let (best, state) = match result {
        Search::Fail { best, state } => (best, state),
        // Cannot happen for the prefix found above unless the budget ran
        // out on it; fall back to the whole key.
        _ => (Vec::new(), 0),
    };
    let placed: HashSet<usize> = best.iter().copied().collect();
    let tail_from = best.len().saturating_sub(8);
    Ok(Verdict::Violation(Box::new(Counterexample {
        key: key.to_owned(),
        reason: "no order of the operations agrees with a single register".into(),
        key_operations: ops.len(),
        linearized_tail: best[tail_from..]
            .iter()
            .map(|i| prefix[*i].clone())
            .collect(),
        linearized: best.len(),
        state: int.name(state),
        stuck: prefix
            .iter()
            .enumerate()
            .filter(|(i, _)| !placed.contains(i))
            .map(|(_, o)| o.clone())
            .collect(),
        prefix,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(call: u64, ret: Option<u64>, input: Input, output: Output) -> Operation {
        Operation {
            client: 0,
            key: "k".into(),
            input,
            output,
            call,
            ret,
        }
    }
    fn set(v: &str) -> Input {
        Input::Set { value: v.into() }
    }
    fn read(v: Option<(&str, u64)>) -> Output {
        Output::Read(v.map(|(v, i)| (v.into(), i)))
    }
    fn written(prev: Option<&str>, index: u64) -> Output {
        Output::Written {
            prev: prev.map(Into::into),
            index,
        }
    }

    #[test]
    fn sequential_history_is_linearizable() {
        let h = vec![
            op(0, Some(1), set("a"), written(None, 1)),
            op(2, Some(3), Input::Get, read(Some(("a", 1)))),
            op(
                4,
                Some(5),
                Input::Cas {
                    compare: Compare::Value("a".into()),
                    value: "b".into(),
                },
                Output::Swapped { index: 2 },
            ),
            op(6, Some(7), Input::Delete, written(Some("b"), 3)),
            op(8, Some(9), Input::Get, read(None)),
        ];
        assert_eq!(check(&h), Ok(Verdict::Linearizable));
    }

    #[test]
    fn stale_read_is_rejected_and_explained() {
        let h = vec![
            op(0, Some(1), set("a"), written(None, 1)),
            op(2, Some(3), set("b"), written(Some("a"), 2)),
            op(4, Some(5), Input::Get, read(Some(("a", 1)))),
        ];
        let Ok(Verdict::Violation(c)) = check(&h) else {
            panic!("accepted a stale read");
        };
        let text = c.to_string();
        assert!(text.contains("NOT LINEARIZABLE on key k"), "{text}");
        assert_eq!(c.stuck.len(), 1, "{text}");
        assert_eq!(c.stuck[0].input, Input::Get, "{text}");
    }

    #[test]
    fn concurrent_read_may_see_either_value() {
        let h = vec![
            op(0, Some(1), set("a"), written(None, 1)),
            op(2, Some(10), set("b"), written(Some("a"), 2)),
            op(3, Some(4), Input::Get, read(Some(("b", 2)))),
            op(5, Some(6), Input::Get, read(Some(("b", 2)))),
        ];
        assert_eq!(check(&h), Ok(Verdict::Linearizable));
        // ... but not go back once it has seen the new one.
        let mut h2 = h.clone();
        h2.push(op(7, Some(8), Input::Get, read(Some(("a", 1)))));
        assert!(matches!(check(&h2), Ok(Verdict::Violation(_))));
    }

    #[test]
    fn indeterminate_write_may_apply_late_or_never() {
        let h = vec![
            op(0, Some(1), set("a"), written(None, 1)),
            op(2, None, set("x"), Output::Unknown),
            op(3, Some(4), Input::Get, read(Some(("a", 1)))),
            op(5, Some(6), Input::Get, read(Some(("x", 2)))),
        ];
        assert_eq!(check(&h), Ok(Verdict::Linearizable));
        let never = vec![
            op(0, Some(1), set("a"), written(None, 1)),
            op(2, None, set("x"), Output::Unknown),
            op(3, Some(4), Input::Get, read(Some(("a", 1)))),
        ];
        assert_eq!(check(&never), Ok(Verdict::Linearizable));
        // Not before its invocation, though.
        let early = vec![
            op(0, Some(1), Input::Get, read(Some(("x", 2)))),
            op(2, None, set("x"), Output::Unknown),
        ];
        assert!(matches!(check(&early), Ok(Verdict::Violation(_))));
    }

    #[test]
    fn lost_acknowledged_write_is_rejected() {
        let h = vec![
            op(0, Some(1), set("a"), written(None, 1)),
            op(2, Some(3), set("b"), written(Some("a"), 2)),
            // A later set that reports "a" as the previous value lost "b".
            op(4, Some(5), set("c"), written(Some("a"), 3)),
        ];
        assert!(matches!(check(&h), Ok(Verdict::Violation(_))));
    }

    #[test]
    fn compare_failures_need_a_different_present_value() {
        let cas = |e: &str, v: &str| Input::Cas {
            compare: Compare::Value(e.into()),
            value: v.into(),
        };
        let ok = vec![
            op(0, Some(1), cas("a", "z"), Output::NotFound),
            op(2, Some(3), set("a"), written(None, 1)),
            op(4, Some(5), cas("q", "y"), Output::CompareFailed),
            op(
                6,
                Some(7),
                Input::Cad {
                    compare: Compare::Value("a".into()),
                },
                Output::Swapped { index: 2 },
            ),
            op(8, Some(9), Input::Delete, Output::NotFound),
        ];
        assert_eq!(check(&ok), Ok(Verdict::Linearizable));
        let bad = vec![
            op(0, Some(1), set("a"), written(None, 1)),
            op(2, Some(3), cas("a", "z"), Output::CompareFailed),
        ];
        assert!(matches!(check(&bad), Ok(Verdict::Violation(_))));
    }

    #[test]
    fn one_index_for_two_writes_is_rejected() {
        let mut h = vec![op(0, Some(1), set("a"), written(None, 5))];
        let mut other = op(2, Some(3), set("b"), written(None, 5));
        other.key = "j".into();
        h.push(other);
        let Ok(Verdict::Violation(c)) = check(&h) else {
            panic!("accepted one index for two writes");
        };
        assert!(c.reason.contains("index 5"), "{c}");
    }

    #[test]
    fn malformed_and_duplicate_histories_are_refused() {
        let h = vec![op(0, Some(1), Input::Get, written(None, 1))];
        assert!(matches!(check(&h), Err(HistoryError::Malformed { .. })));
        let h = vec![
            op(0, Some(1), set("a"), written(None, 1)),
            op(2, Some(3), set("a"), written(Some("a"), 2)),
        ];
        assert!(matches!(
            check(&h),
            Err(HistoryError::DuplicateValue { .. })
        ));
    }

    #[test]
    fn budget_exhaustion_is_inconclusive_not_a_pass() {
        let h: Vec<Operation> = (0..40)
            .map(|i| op(i, None, set(&format!("v{i}")), Output::Unknown))
            .chain([op(100, Some(101), Input::Get, read(Some(("nope", 1))))])
            .collect();
        assert!(matches!(
            check_with_budget(&h, 1000),
            Ok(Verdict::Inconclusive { .. })
        ));
    }
}
