//! Property tests of the linearizability checker: histories produced by a
//! sequential register run, with each operation's call and return spread
//! randomly around its linearization point and some outcomes lost, are
//! always accepted; the same histories with a stale read or a lost write
//! appended are always rejected.

use std::collections::HashMap;

use keelson_reliability::history::{Compare, Input, Operation, Output};
use keelson_reliability::linearizability::{check, Verdict};
use proptest::prelude::*;

/// (kind, key, spread before, spread after, fate) per operation.
type Step = (u8, u8, u64, u64, u8);

struct Gen {
    ops: Vec<Operation>,
    state: HashMap<String, Option<(String, u64)>>,
    index: u64,
    seq: u64,
}

impl Gen {
    fn value(&mut self) -> String {
        self.seq += 1;
        format!("v{}", self.seq)
    }
    fn next_index(&mut self) -> u64 {
        self.index += 1;
        self.index
    }
}

fn generate(steps: &[Step]) -> Gen {
    let mut g = Gen {
        ops: Vec::new(),
        state: HashMap::new(),
        index: 0,
        seq: 0,
    };
    // Every value a key ever held, with its index, for stale compares.
    let mut held: HashMap<String, Vec<(String, u64)>> = HashMap::new();
    for (k, &(kind, key, before, after, fate)) in steps.iter().enumerate() {
        let t = 10_000 + 1000 * k as u64;
        let key = format!("/k{key}");
        let cur = g.state.get(&key).cloned().flatten();
        // An old (or the current) value to compare against.
        let old = held
            .get(&key)
            .and_then(|h| h.get(fate as usize % h.len().max(1)).cloned());
        let target = if fate % 2 == 0 { cur.clone() } else { old };
        let compare = target.map(|(v, i)| {
            if fate % 3 == 0 {
                Compare::Index { index: i, seen: v }
            } else {
                Compare::Value(v)
            }
        });
        let unknown = fate == 7 || fate == 8;
        let apply = fate != 8;
        let (input, output, new): (Input, Output, Option<Option<(String, u64)>>) =
            match (kind, compare) {
                (0, _) => (Input::Get, Output::Read(cur.clone()), None),
                (1, _) | (2, None) => {
                    let value = g.value();
                    let index = g.next_index();
                    (
                        Input::Set {
                            value: value.clone(),
                        },
                        Output::Written {
                            prev: cur.clone().map(|c| c.0),
                            index,
                        },
                        Some(Some((value, index))),
                    )
                }
                (2, Some(compare)) => {
                    let value = g.value();
                    let input = Input::Cas {
                        compare: compare.clone(),
                        value: value.clone(),
                    };
                    match &cur {
                        None => (input, Output::NotFound, None),
                        Some((c, _)) if c == compare.expected() => {
                            let index = g.next_index();
                            (input, Output::Swapped { index }, Some(Some((value, index))))
                        }
                        Some(_) => (input, Output::CompareFailed, None),
                    }
                }
                (3, _) | (4.., None) => match &cur {
                    None => (Input::Delete, Output::NotFound, None),
                    Some((c, _)) => {
                        let index = g.next_index();
                        (
                            Input::Delete,
                            Output::Written {
                                prev: Some(c.clone()),
                                index,
                            },
                            Some(None),
                        )
                    }
                },
                (_, Some(compare)) => {
                    let input = Input::Cad {
                        compare: compare.clone(),
                    };
                    match &cur {
                        None => (input, Output::NotFound, None),
                        Some((c, _)) if c == compare.expected() => {
                            let index = g.next_index();
                            (input, Output::Swapped { index }, Some(None))
                        }
                        Some(_) => (input, Output::CompareFailed, None),
                    }
                }
            };
        let is_write = input != Input::Get;
        let lost = unknown && is_write;
        if let Some(new) = new {
            if !lost || apply {
                if let Some(v) = &new {
                    held.entry(key.clone()).or_default().push(v.clone());
                }
                g.state.insert(key.clone(), new);
            }
        }
        g.ops.push(Operation {
            client: k % 5,
            key,
            input,
            output: if lost { Output::Unknown } else { output },
            call: t - before,
            ret: if lost { None } else { Some(t + after) },
        });
    }
    g
}

/// After everything returned: make `/k0` present with a plain set, if needed.
fn settle(g: &mut Gen, t: &mut u64) -> (String, u64) {
    if let Some(Some(cur)) = g.state.get("/k0").cloned() {
        return cur;
    }
    let value = g.value();
    let index = g.next_index();
    push(
        g,
        t,
        Input::Set {
            value: value.clone(),
        },
        Output::Written { prev: None, index },
    );
    (value, index)
}

fn push(g: &mut Gen, t: &mut u64, input: Input, output: Output) {
    g.ops.push(Operation {
        client: 9,
        key: "/k0".into(),
        input,
        output,
        call: *t,
        ret: Some(*t + 10),
    });
    *t += 20;
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    prop::collection::vec((0u8..6, 0u8..3, 0u64..2500, 0u64..2500, 0u8..10), 1..80)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn sequential_runs_with_concurrency_are_accepted(steps in steps()) {
        let g = generate(&steps);
        let v = check(&g.ops);
        prop_assert!(matches!(v, Ok(Verdict::Linearizable)), "{:?}\n{:#?}", v, g.ops);
    }

    #[test]
    fn a_stale_read_is_rejected(steps in steps()) {
        let mut g = generate(&steps);
        let mut t = 10_000 + 1000 * steps.len() as u64 + 5000;
        let (old, old_index) = settle(&mut g, &mut t);
        let value = g.value();
        let index = g.next_index();
        push(&mut g, &mut t, Input::Set { value }, Output::Written { prev: Some(old.clone()), index });
        push(&mut g, &mut t, Input::Get, Output::Read(Some((old, old_index))));
        let v = check(&g.ops);
        prop_assert!(matches!(v, Ok(Verdict::Violation(_))), "{:?}", v);
    }

    #[test]
    fn a_lost_write_is_rejected(steps in steps()) {
        let mut g = generate(&steps);
        let mut t = 10_000 + 1000 * steps.len() as u64 + 5000;
        let (old, _) = settle(&mut g, &mut t);
        let lost = g.value();
        let index = g.next_index();
        push(&mut g, &mut t, Input::Set { value: lost }, Output::Written { prev: Some(old.clone()), index });
        // The next write reports the value before the acknowledged one.
        let value = g.value();
        let index = g.next_index();
        push(&mut g, &mut t, Input::Set { value: value.clone() }, Output::Written { prev: Some(old), index });
        push(&mut g, &mut t, Input::Get, Output::Read(Some((value, index))));
        let v = check(&g.ops);
        prop_assert!(matches!(v, Ok(Verdict::Violation(_))), "{:?}", v);
    }
}
