use super::*;
use crate::config::NetworkConfig;
use keelson_kv::store::{Command, PutRequest, Store, Timestamp};
use proptest::prelude::*;

fn cfg(doc: &str) -> NetworkConfig {
    NetworkConfig::parse(doc).unwrap()
}

fn net(s: &str) -> Ipv4Net {
    s.parse().unwrap()
}

fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn attrs(ip: &str) -> LeaseAttrs {
    LeaseAttrs::new(ip.parse().unwrap())
}

fn lease(subnet: &str, ip: &str, exp: Option<DateTime<Utc>>, index: u64) -> Lease {
    let a = attrs(ip);
    Lease {
        subnet: net(subnet),
        value: a.to_json(),
        attrs: a,
        expiration: exp,
        modified_index: index,
    }
}

fn mgr(ip: &str, previous: Option<&str>) -> LeaseManager {
    LeaseManager::new(
        cfg(r#"{"Network":"10.1.0.0/16"}"#),
        attrs(ip),
        previous.map(net),
        ManagerOptions::default(),
        7,
    )
}

fn created(m: &LeaseManager, acts: &[Action], exp: Option<DateTime<Utc>>, index: u64) -> Lease {
    let Some(Action::Create { subnet, value, .. }) =
        acts.iter().find(|a| matches!(a, Action::Create { .. }))
    else {
        panic!("no create in {acts:?}");
    };
    let _ = m;
    Lease {
        subnet: *subnet,
        attrs: LeaseAttrs::from_json(value).unwrap(),
        value: value.clone(),
        expiration: exp,
        modified_index: index,
    }
}

#[test]
fn fresh_host_creates_a_random_free_subnet_atomically() {
    let mut m = mgr("10.88.0.11", None);
    assert_eq!(m.start(), vec![Action::List]);
    let taken = lease("10.1.1.0/24", "10.88.0.12", Some(t0()), 3);
    let acts = m.handle(
        t0(),
        Input::Listed {
            leases: vec![taken.clone()],
            index: 5,
        },
    );
    let [Action::Create { subnet, value, ttl }] = acts.as_slice() else {
        panic!("{acts:?}")
    };
    assert_eq!(*ttl, Some(86400));
    assert_eq!(value, r#"{"PublicIP":"10.88.0.11"}"#);
    assert!(m.config().is_compatible(subnet));
    assert_ne!(*subnet, taken.subnet);
    // Only the first 100 free subnets are candidates: 10.1.2.0 .. 10.1.101.0.
    assert!(subnet.addr() <= "10.1.101.0".parse::<Ipv4Addr>().unwrap());
    let exp = t0() + Duration::hours(24);
    let mine = created(&m, &acts, Some(exp), 6);
    let acts = m.handle(t0(), Input::Created(mine.clone()));
    assert_eq!(
        acts,
        vec![
            Action::Acquired(mine.clone()),
            Action::Reconcile(vec![taken]),
            Action::Watch { after_index: 5 }
        ]
    );
    assert_eq!(m.next_wakeup(), Some(exp - Duration::hours(1)));
}

#[test]
fn lost_races_retry_then_give_up_after_ten_rounds() {
    let mut m = mgr("10.88.0.11", None);
    m.start();
    for round in 1..=10 {
        let acts = m.handle(
            t0(),
            Input::Listed {
                leases: vec![],
                index: 1,
            },
        );
        assert!(matches!(acts[0], Action::Create { .. }));
        let acts = m.handle(t0(), Input::CreateConflict);
        if round < 10 {
            assert_eq!(acts, vec![Action::List]);
        } else {
            assert_eq!(acts, vec![Action::Fatal(LeaseError::MaxRetries(10))]);
            assert!(m.is_failed());
        }
    }
}

#[test]
fn restarted_host_gets_its_lease_back_by_public_ip() {
    let mut m = mgr("10.88.0.11", Some("10.1.77.0/24"));
    m.start();
    let old = lease(
        "10.1.42.0/24",
        "10.88.0.11",
        Some(t0() + Duration::hours(3)),
        9,
    );
    let acts = m.handle(
        t0(),
        Input::Listed {
            leases: vec![old.clone()],
            index: 10,
        },
    );
    assert_eq!(
        acts,
        vec![Action::Swap {
            subnet: old.subnet,
            value: old.value.clone(),
            prev_index: 9,
            ttl: Some(86400)
        }]
    );
    let renewed = Lease {
        modified_index: 11,
        expiration: Some(t0() + Duration::hours(24)),
        ..old
    };
    let acts = m.handle(t0(), Input::Swapped(renewed.clone()));
    assert_eq!(acts[0], Action::Acquired(renewed));
}

#[test]
fn previous_subnet_from_subnet_env_is_reused_when_free() {
    let mut m = mgr("10.88.0.11", Some("10.1.77.0/24"));
    m.start();
    let acts = m.handle(
        t0(),
        Input::Listed {
            leases: vec![],
            index: 1,
        },
    );
    assert!(matches!(&acts[0], Action::Create { subnet, .. } if *subnet == net("10.1.77.0/24")));
    // Held by someone else: allocate elsewhere.
    let mut m = mgr("10.88.0.11", Some("10.1.77.0/24"));
    m.start();
    let other = lease("10.1.77.0/24", "10.88.0.12", Some(t0()), 2);
    let acts = m.handle(
        t0(),
        Input::Listed {
            leases: vec![other],
            index: 3,
        },
    );
    assert!(matches!(&acts[0], Action::Create { subnet, .. } if *subnet != net("10.1.77.0/24")));
}

#[test]
fn reservations_are_honoured_and_never_renewed() {
    let mut m = mgr("10.88.0.13", None);
    m.start();
    let resv = lease("10.1.5.0/24", "10.88.0.13", None, 4);
    let acts = m.handle(
        t0(),
        Input::Listed {
            leases: vec![resv.clone()],
            index: 4,
        },
    );
    assert_eq!(acts[0], Action::Acquired(resv.clone()));
    assert_eq!(m.next_wakeup(), None);
    // A reservation with other attributes is rewritten without a TTL.
    let mut m = mgr("10.88.0.13", None);
    m.start();
    let mut r2 = resv.clone();
    r2.value = r#"{"PublicIP":"10.88.0.13","BackendType":"host-gw"}"#.into();
    let acts = m.handle(
        t0(),
        Input::Listed {
            leases: vec![r2],
            index: 4,
        },
    );
    assert!(matches!(
        &acts[0],
        Action::Swap {
            ttl: None,
            prev_index: 4,
            ..
        }
    ));
    // Another host's reservation is never allocated.
    let mut m = mgr("10.88.0.11", None);
    m.start();
    let acts = m.handle(
        t0(),
        Input::Listed {
            leases: vec![resv],
            index: 4,
        },
    );
    assert!(matches!(&acts[0], Action::Create { subnet, .. } if *subnet != net("10.1.5.0/24")));
}

#[test]
fn incompatible_old_lease_is_deleted() {
    let mut m = mgr("10.88.0.11", None);
    m.start();
    let old = lease("10.9.1.0/24", "10.88.0.11", Some(t0()), 4);
    let acts = m.handle(
        t0(),
        Input::Listed {
            leases: vec![old],
            index: 4,
        },
    );
    assert_eq!(
        acts[0],
        Action::Delete {
            subnet: net("10.9.1.0/24"),
            prev_index: 4
        }
    );
    assert!(matches!(acts[1], Action::Create { .. }));
}

fn held(m: &mut LeaseManager, subnet: &str, index: u64) -> Lease {
    m.start();
    let mine = lease(
        subnet,
        "10.88.0.11",
        Some(t0() + Duration::hours(24)),
        index,
    );
    m.handle(
        t0(),
        Input::Listed {
            leases: vec![mine.clone()],
            index,
        },
    );
    let acts = m.handle(t0(), Input::Swapped(mine.clone()));
    assert!(matches!(acts[0], Action::Acquired(_)));
    mine
}

#[test]
fn renewal_uses_compare_and_swap_ahead_of_expiry_and_retries_forever() {
    let mut m = mgr("10.88.0.11", None);
    let mine = held(&mut m, "10.1.9.0/24", 20);
    let due = t0() + Duration::hours(23);
    assert_eq!(m.next_wakeup(), Some(due));
    assert!(m.handle(due - Duration::seconds(1), Input::Tick).is_empty());
    let acts = m.handle(due, Input::Tick);
    assert_eq!(
        acts,
        vec![Action::Swap {
            subnet: mine.subnet,
            value: mine.value.clone(),
            prev_index: 20,
            ttl: Some(86400)
        }]
    );
    // The store is down: retry in a minute, for as long as it takes.
    for i in 0..100 {
        let now = due + Duration::minutes(i);
        assert!(m.handle(now, Input::KvFailed).is_empty());
        assert_eq!(m.next_wakeup(), Some(now + Duration::minutes(1)));
        assert!(matches!(
            m.handle(now + Duration::minutes(1), Input::Tick)[0],
            Action::Swap { .. }
        ));
    }
    let renewed = Lease {
        modified_index: 30,
        expiration: Some(due + Duration::hours(24)),
        ..mine
    };
    assert!(m.handle(due, Input::Swapped(renewed)).is_empty());
    assert_eq!(m.next_wakeup(), Some(due + Duration::hours(23)));
    assert!(!m.is_failed());
}

#[test]
fn lost_lease_is_recreated_with_the_same_subnet() {
    let mut m = mgr("10.88.0.11", None);
    let mine = held(&mut m, "10.1.9.0/24", 20);
    let acts = m.handle(t0(), Input::Event(LeaseEvent::Removed(mine.subnet)));
    assert!(
        matches!(&acts[0], Action::Create { subnet, ttl: Some(86400), .. } if *subnet == mine.subnet)
    );
    let again = Lease {
        modified_index: 40,
        ..mine.clone()
    };
    let acts = m.handle(t0(), Input::Created(again.clone()));
    assert_eq!(acts, vec![Action::Acquired(again)]);
    // Renewal finds it gone (compare failed): list, then re-create it.
    let due = m.next_wakeup().unwrap();
    m.handle(due, Input::Tick);
    assert_eq!(m.handle(due, Input::SwapConflict), vec![Action::List]);
    let acts = m.handle(
        due,
        Input::Listed {
            leases: vec![],
            index: 50,
        },
    );
    assert!(matches!(&acts[0], Action::Create { subnet, .. } if *subnet == mine.subnet));
}

#[test]
fn lost_lease_taken_by_another_host_stops_with_a_clear_message() {
    let mut m = mgr("10.88.0.11", None);
    let mine = held(&mut m, "10.1.9.0/24", 20);
    m.handle(t0(), Input::Event(LeaseEvent::Removed(mine.subnet)));
    assert_eq!(m.handle(t0(), Input::CreateConflict), vec![Action::List]);
    let thief = lease("10.1.9.0/24", "10.88.0.12", Some(t0()), 41);
    let acts = m.handle(
        t0(),
        Input::Listed {
            leases: vec![thief],
            index: 41,
        },
    );
    let [Action::Fatal(e)] = acts.as_slice() else {
        panic!("{acts:?}")
    };
    let msg = e.to_string();
    assert!(
        msg.contains("10.1.9.0/24") && msg.contains("10.88.0.12") && msg.contains("restart"),
        "{msg}"
    );
    // Seen directly on the watch, too.
    let mut m = mgr("10.88.0.11", None);
    held(&mut m, "10.1.9.0/24", 20);
    let acts = m.handle(
        t0(),
        Input::Event(LeaseEvent::Set(lease(
            "10.1.9.0/24",
            "10.88.0.12",
            None,
            60,
        ))),
    );
    assert!(matches!(
        acts[0],
        Action::Fatal(LeaseError::LeaseTaken { .. })
    ));
}

#[test]
fn subnet_outside_a_changed_network_stops_the_daemon() {
    let mut m = mgr("10.88.0.11", None);
    let mine = held(&mut m, "10.1.9.0/24", 20);
    let acts = m.handle(
        t0(),
        Input::ConfigChanged(cfg(r#"{"Network":"10.1.0.0/16","SubnetMin":"10.1.100.0"}"#)),
    );
    assert!(matches!(
        acts[0],
        Action::Fatal(LeaseError::NoLongerInNetwork { .. })
    ));
    // Once failed, nothing else happens.
    assert!(m
        .handle(t0(), Input::Event(LeaseEvent::Removed(mine.subnet)))
        .is_empty());
    assert!(m.is_failed());
}

#[test]
fn peers_are_followed_incrementally() {
    let mut m = mgr("10.88.0.11", None);
    held(&mut m, "10.1.9.0/24", 20);
    let b = lease("10.1.3.0/24", "10.88.0.12", Some(t0()), 21);
    assert_eq!(
        m.handle(t0(), Input::Event(LeaseEvent::Set(b.clone()))),
        vec![Action::PeerAdded(b.clone())]
    );
    // A renewal of the same lease changes nothing on the data path.
    let b2 = Lease {
        modified_index: 22,
        ..b.clone()
    };
    assert!(m
        .handle(t0(), Input::Event(LeaseEvent::Set(b2.clone())))
        .is_empty());
    // New attributes (a new VTEP MAC) are re-applied.
    let mut b3 = b2.clone();
    b3.attrs.backend_type = "vxlan".into();
    assert_eq!(
        m.handle(t0(), Input::Event(LeaseEvent::Set(b3.clone()))),
        vec![Action::PeerAdded(b3.clone())]
    );
    // Leases carrying our own address never become routes.
    let stale = lease("10.1.50.0/24", "10.88.0.11", Some(t0()), 23);
    assert!(m
        .handle(t0(), Input::Event(LeaseEvent::Set(stale)))
        .is_empty());
    assert_eq!(
        m.handle(t0(), Input::Event(LeaseEvent::Removed(b.subnet))),
        vec![Action::PeerRemoved(b3)]
    );
    assert!(m
        .handle(t0(), Input::Event(LeaseEvent::Removed(b.subnet)))
        .is_empty());
    // Resync diffs.
    let c = lease("10.1.4.0/24", "10.88.0.13", Some(t0()), 30);
    let own = m.lease().unwrap().clone();
    let acts = m.handle(
        t0(),
        Input::Resync {
            leases: vec![c.clone(), own],
        },
    );
    assert_eq!(acts, vec![Action::PeerAdded(c.clone())]);
    let acts = m.handle(t0(), Input::Resync { leases: vec![] });
    assert!(acts.contains(&Action::PeerRemoved(c)));
    assert!(
        acts.iter().any(|a| matches!(a, Action::Create { .. })),
        "own lease gone: re-create"
    );
}

#[test]
fn out_of_subnets_names_the_range() {
    let mut m = LeaseManager::new(
        cfg(r#"{"Network":"10.1.0.0/16","SubnetMin":"10.1.1.0","SubnetMax":"10.1.2.0"}"#),
        attrs("10.88.0.11"),
        None,
        ManagerOptions::default(),
        1,
    );
    m.start();
    let l = vec![
        lease("10.1.1.0/24", "1.1.1.1", None, 1),
        lease("10.1.2.0/24", "1.1.1.2", None, 2),
    ];
    let acts = m.handle(
        t0(),
        Input::Listed {
            leases: l,
            index: 2,
        },
    );
    let [Action::Fatal(e)] = acts.as_slice() else {
        panic!("{acts:?}")
    };
    assert!(
        e.to_string().contains("between 10.1.1.0 and 10.1.2.0"),
        "{e}"
    );
}

#[test]
fn overlapping_foreign_leases_are_skipped() {
    let mut m = mgr("10.88.0.11", None);
    m.start();
    // A /20 written by hand covers 10.1.16.0 .. 10.1.31.255; the first 100
    // free /24s are then 10.1.1.0-15.0 and 10.1.32.0-…
    let big = lease("10.1.16.0/20", "1.1.1.1", None, 1);
    for _ in 0..200 {
        let acts = m.handle(
            t0(),
            Input::Listed {
                leases: vec![big.clone()],
                index: 1,
            },
        );
        let Action::Create { subnet, .. } = &acts[0] else {
            panic!()
        };
        assert!(!big.subnet.overlaps(subnet), "{subnet}");
        m.handle(t0(), Input::CreateConflict);
        m = mgr("10.88.0.11", None);
        m.start();
    }
}

/// Drives `n` managers against one pure store, interleaving their kv
/// operations in an order chosen by `seed`; returns each host's lease.
pub(crate) fn simulate(n: usize, doc: &str, seed: u64) -> Vec<Option<Ipv4Net>> {
    use rand::{Rng, SeedableRng};
    let config = cfg(doc);
    let dir = "/coreos.com/network/subnets";
    let mut store = Store::new();
    let now = Timestamp::from_unix(1_767_225_600, 0);
    let t = t0();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut hosts: Vec<(LeaseManager, Vec<Action>)> = (0..n)
        .map(|i| {
            let ip = Ipv4Addr::from(0x0a58_0000u32 + i as u32 + 1);
            let mut m = LeaseManager::new(
                config.clone(),
                LeaseAttrs::new(ip),
                None,
                ManagerOptions::default(),
                seed ^ i as u64,
            );
            let a = m.start();
            (m, a)
        })
        .collect();
    loop {
        let pending: Vec<usize> = (0..n).filter(|&i| !hosts[i].1.is_empty()).collect();
        if pending.is_empty() {
            break;
        }
        let i = pending[rng.gen_range(0..pending.len())];
        let action = hosts[i].1.remove(0);
        let input = match action {
            Action::List => {
                let leases = match store.get(dir, true, true, now) {
                    Ok(ev) => Lease::from_listing(&ev.node).0,
                    Err(_) => vec![],
                };
                Some(Input::Listed {
                    leases,
                    index: store.index(),
                })
            }
            Action::Create { subnet, value, ttl } => {
                let cmd = Command::from_put(
                    format!("{dir}/{}", subnet.key_name()),
                    PutRequest {
                        value,
                        prev_exist: Some(false),
                        expiration: ttl.map(|s| now.plus_secs(s)),
                        ..PutRequest::default()
                    },
                );
                Some(match store.apply(cmd, now) {
                    Ok(a) => {
                        Input::Created(Lease::from_node(&a.into_event().unwrap().node).unwrap())
                    }
                    Err(_) => Input::CreateConflict,
                })
            }
            Action::Fatal(e) => panic!("host {i}: {e}"),
            _ => None,
        };
        if let Some(input) = input {
            let acts = hosts[i].0.handle(t, input);
            hosts[i].1.extend(
                acts.into_iter().filter(|a| {
                    matches!(a, Action::List | Action::Create { .. } | Action::Fatal(_))
                }),
            );
        }
    }
    hosts
        .iter()
        .map(|(m, _)| m.lease().map(|l| l.subnet))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]
    #[test]
    fn concurrent_hosts_always_get_distinct_subnets_in_range(n in 1usize..60, seed in any::<u64>()) {
        let doc = r#"{"Network":"10.1.0.0/16"}"#;
        let config = cfg(doc);
        let got = simulate(n, doc, seed);
        let mut seen = std::collections::BTreeSet::new();
        for s in got {
            let s = s.expect("every host holds a lease");
            prop_assert!(config.is_compatible(&s));
            prop_assert!(seen.insert(s), "duplicate {}", s);
        }
    }
}

#[test]
fn three_hundred_hosts_at_once_all_get_a_lease() {
    let got = simulate(300, r#"{"Network":"10.0.0.0/8"}"#, 42);
    let set: std::collections::BTreeSet<_> = got.iter().map(|s| s.unwrap()).collect();
    assert_eq!(set.len(), 300);
}
