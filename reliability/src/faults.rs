//! Fault schedules: which fault, when, for how long, all derived from a
//! seed so that a failing run can be replayed with `--seed`.
//!
//! Faults run one after another with quiet gaps between them, so the
//! cluster is exercised both while broken and while recovering. Targets that
//! depend on the cluster's state at the time ("the leader") are resolved
//! when the fault starts; everything else (which follower, which minority,
//! how much loss) is fixed by the seed.

use std::fmt;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// One kind of fault.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Fault {
    /// `kill -9` the current leader; restart it when the fault ends.
    KillLeader,
    /// `kill -9` a follower (the `n`th one after the leader).
    KillFollower(usize),
    /// `kill -9` this member, whatever its role.
    KillMember(usize),
    /// `kill -9` every member at once (a power cut), then restart them all.
    KillAll,
    /// Drop all traffic between the leader and every other member.
    IsolateLeader,
    /// Drop all traffic between these members and the rest.
    Split(Vec<usize>),
    /// Take this member's link down (it loses clients and peers).
    LinkDown(usize),
    /// Drop this percentage of peer packets at every member.
    Loss(u8),
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::KillLeader => write!(f, "kill -9 leader"),
            Fault::KillFollower(n) => write!(f, "kill -9 follower #{n}"),
            Fault::KillMember(i) => write!(f, "kill -9 member kr{i}"),
            Fault::KillAll => write!(f, "kill -9 all members"),
            Fault::IsolateLeader => write!(f, "partition: leader isolated"),
            Fault::Split(m) => {
                let names: Vec<String> = m.iter().map(|i| format!("kr{i}")).collect();
                write!(f, "partition: {{{}}} | rest", names.join(","))
            }
            Fault::LinkDown(i) => write!(f, "link down on kr{i}"),
            Fault::Loss(p) => write!(f, "{p}% peer packet loss everywhere"),
        }
    }
}

/// A fault with its start time and duration, in milliseconds from the
/// start of the workload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scheduled {
    pub at_ms: u64,
    pub hold_ms: u64,
    pub fault: Fault,
}

impl fmt::Display for Scheduled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "t={:>6.1}s for {:>4.1}s: {}",
            self.at_ms as f64 / 1000.0,
            self.hold_ms as f64 / 1000.0,
            self.fault
        )
    }
}

/// The schedule for `seed` on `members` members over `duration_ms`.
pub fn schedule(seed: u64, members: usize, duration_ms: u64) -> Vec<Scheduled> {
    let mut rng = StdRng::seed_from_u64(seed);
    let members = members.max(1);
    let mut out = Vec::new();
    let mut t = rng.gen_range(1_000..3_000);
    while t < duration_ms {
        let fault = match rng.gen_range(0..9) {
            0 => Fault::KillLeader,
            1 => Fault::KillFollower(rng.gen_range(1..members.max(2))),
            2 => Fault::KillMember(rng.gen_range(0..members)),
            3 => Fault::KillAll,
            4 => Fault::IsolateLeader,
            5 | 6 => {
                // A minority, so that the majority side can go on.
                let size = rng.gen_range(1..=(members - 1) / 2).max(1);
                let mut all: Vec<usize> = (0..members).collect();
                let mut minority = Vec::new();
                for _ in 0..size {
                    let i = rng.gen_range(0..all.len());
                    minority.push(all.swap_remove(i));
                }
                minority.sort_unstable();
                Fault::Split(minority)
            }
            7 => Fault::LinkDown(rng.gen_range(0..members)),
            _ => Fault::Loss(rng.gen_range(10..=40)),
        };
        let hold_ms = rng.gen_range(1_500..6_000);
        let hold_ms = hold_ms.min(duration_ms.saturating_sub(t).max(500));
        out.push(Scheduled {
            at_ms: t,
            hold_ms,
            fault,
        });
        t += hold_ms + rng.gen_range(1_000..4_000);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_always_gives_the_same_schedule() {
        assert_eq!(schedule(42, 3, 60_000), schedule(42, 3, 60_000));
        assert_ne!(schedule(42, 3, 60_000), schedule(43, 3, 60_000));
    }

    #[test]
    fn schedules_stay_in_range_and_do_not_overlap() {
        for seed in 0..200 {
            for members in [3, 5] {
                let s = schedule(seed, members, 45_000);
                assert!(!s.is_empty());
                for w in s.windows(2) {
                    assert!(w[0].at_ms + w[0].hold_ms < w[1].at_ms, "{seed}: {s:?}");
                }
                for f in &s {
                    match &f.fault {
                        Fault::KillFollower(n) => assert!(*n >= 1 && *n < members),
                        Fault::KillMember(i) | Fault::LinkDown(i) => assert!(*i < members),
                        Fault::Split(m) => {
                            assert!(!m.is_empty() && m.len() * 2 < members, "{m:?}");
                            assert!(m.iter().all(|i| *i < members));
                        }
                        Fault::Loss(p) => assert!((10..=40).contains(p)),
                        _ => {}
                    }
                }
            }
        }
    }
}
