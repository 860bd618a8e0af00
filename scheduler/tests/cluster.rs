//! Three or more fleetds (agent + engine) with real supervisor processes over
//! one in-memory kv, playing the book's fleet scenarios (scenarios.md F2–F8).

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use keelson_scheduler::{DesiredState, SubmitOptions};

const LONG: Duration = Duration::from_secs(40);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn global_metadata_machine_of_and_conflicts() {
    let c = Cluster::new(&[
        "compute=web,rack=rack1",
        "compute=web,rack=rack2",
        "compute=db,rack=rack3",
    ])
    .await;
    let o = SubmitOptions::default();
    // F2: a global unit on every machine.
    c.client
        .start(
            "helloglobal.service",
            Some(&sleeper("\n[X-Fleet]\nGlobal=true\n")),
            o,
        )
        .await
        .unwrap();
    eventually("global unit on all three machines", LONG, || async {
        c.where_running().get("helloglobal.service").map(Vec::len) == Some(3)
            && c.client
                .list_units()
                .iter()
                .filter(|u| u.name == "helloglobal.service" && u.active == "active")
                .count()
                == 3
    })
    .await;
    let files = c.client.list_unit_files();
    assert!(files[0].global && files[0].current.is_none() && files[0].target.is_none());

    // F3: metadata placement.
    c.client
        .start(
            "nginxweb.service",
            Some(&sleeper("\n[X-Fleet]\nMachineMetadata=compute=web\n")),
            o,
        )
        .await
        .unwrap();
    c.client
        .start(
            "nginxdb.service",
            Some(&sleeper("\n[X-Fleet]\nMachineMetadata=compute=db\n")),
            o,
        )
        .await
        .unwrap();
    c.client
        .start(
            "cache.service",
            Some(&sleeper("\n[X-Fleet]\nMachineMetadata=compute=cache\n")),
            o,
        )
        .await
        .unwrap();
    eventually("web and db units placed", LONG, || async {
        let w = c.where_running();
        w.get("nginxweb.service") == Some(&vec![machine_id(1)])
            && w.get("nginxdb.service") == Some(&vec![machine_id(3)])
    })
    .await;
    eventually("cache unit explains why it waits", LONG, || async {
        c.client
            .unit("cache.service")
            .and_then(|u| u.reason)
            .is_some_and(|r| r.contains("metadata insufficient"))
    })
    .await;
    let cache = c.client.unit("cache.service").unwrap();
    assert_eq!(
        (cache.desired, cache.current, cache.target),
        (
            Some(DesiredState::Launched),
            Some(DesiredState::Inactive),
            None
        )
    );

    // F4: MachineOf pairs from templates.
    c.client
        .submit(
            "mysql@.service",
            &sleeper("\n[X-Fleet]\nConflicts=mysql@*.service\n"),
            o,
        )
        .await
        .unwrap();
    c.client
        .submit(
            "wordpress@.service",
            &sleeper("\n[X-Fleet]\nMachineOf=mysql@%i.service\n"),
            o,
        )
        .await
        .unwrap();
    for i in 1..=3 {
        c.client
            .start(&format!("mysql@{i}.service"), None, o)
            .await
            .unwrap();
        c.client
            .start(&format!("wordpress@{i}.service"), None, o)
            .await
            .unwrap();
    }
    c.client
        .start("wordpress@4.service", None, o)
        .await
        .unwrap();
    // F5: Conflicts spreads instances; the fourth waits.
    for i in 1..=4 {
        c.client
            .start(
                &format!("hellocounter@{i}.service"),
                Some(&sleeper("\n[X-Fleet]\nX-Conflicts=%p@*.service\n")),
                o,
            )
            .await
            .unwrap();
    }
    eventually("pairs co-located, instances spread", LONG, || async {
        let w = c.where_running();
        let pairs = (1..=3).all(|i| {
            let m = w.get(&format!("mysql@{i}.service"));
            m.is_some_and(|m| m.len() == 1) && m == w.get(&format!("wordpress@{i}.service"))
        });
        let mysql: BTreeSet<_> = (1..=3)
            .filter_map(|i| w.get(&format!("mysql@{i}.service")).cloned())
            .collect();
        let hc: BTreeSet<_> = (1..=3)
            .filter_map(|i| w.get(&format!("hellocounter@{i}.service")).cloned())
            .collect();
        pairs && mysql.len() == 3 && hc.len() == 3
    })
    .await;
    let w = c.where_running();
    assert!(!w.contains_key("hellocounter@4.service") && !w.contains_key("wordpress@4.service"));
    let r = c
        .client
        .unit("hellocounter@4.service")
        .unwrap()
        .reason
        .unwrap();
    assert!(r.contains("conflict"), "{r}");
    let r = c
        .client
        .unit("wordpress@4.service")
        .unwrap()
        .reason
        .unwrap();
    assert!(r.contains("mysql@4.service"), "{r}");
    // Every non-global unit runs on exactly one machine.
    assert!(
        w.iter()
            .all(|(u, ms)| u == "helloglobal.service" || ms.len() == 1),
        "{w:?}"
    );
    let machines = c.client.list_machines();
    assert_eq!(machines.len(), 3);
    assert_eq!(
        machines[2].metadata.get("compute").map(String::as_str),
        Some("db")
    );

    // F9: stop, unload, destroy.
    c.client.stop("nginxweb.service").await.unwrap();
    eventually("stopped but loaded", LONG, || async {
        c.client
            .list_units()
            .iter()
            .any(|u| u.name == "nginxweb.service" && u.active == "inactive")
            && c.client.unit("nginxweb.service").and_then(|u| u.current)
                == Some(DesiredState::Loaded)
    })
    .await;
    c.client.unload("nginxweb.service").await.unwrap();
    let err = c.client.stop("nginxweb.service").await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "Unable to stop unit nginxweb.service in state inactive"
    );
    c.client.destroy("helloglobal.service").await.unwrap();
    eventually("global unit stopped everywhere", LONG, || async {
        !c.where_running().contains_key("helloglobal.service")
    })
    .await;
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_off_machine_stops_its_units_and_they_move_only_to_eligible_machines() {
    let c = Cluster::new(&["compute=web", "compute=web", "compute=db"]).await;
    let o = SubmitOptions::default();
    c.client
        .start(
            "nginxweb.service",
            Some(&sleeper("\n[X-Fleet]\nMachineMetadata=compute=web\n")),
            o,
        )
        .await
        .unwrap();
    eventually("web unit on core-01", LONG, || async {
        c.where_running().get("nginxweb.service") == Some(&vec![machine_id(1)])
    })
    .await;
    // core-01 loses the kv.
    c.nodes[0].link.set_down(true);
    let cut = tokio::time::Instant::now();
    let mut overlap = Duration::ZERO;
    let mut last = tokio::time::Instant::now();
    loop {
        let w = c.where_running();
        let on = w.get("nginxweb.service").cloned().unwrap_or_default();
        assert!(!on.contains(&machine_id(3)), "moved to the db machine");
        if on.len() > 1 {
            overlap += last.elapsed();
        }
        last = tokio::time::Instant::now();
        if on == vec![machine_id(2)] {
            break;
        }
        assert!(cut.elapsed() < LONG, "unit did not move: {w:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let moved_after = cut.elapsed();
    assert!(overlap <= TTL, "ran on two machines for {overlap:?}");
    eprintln!("failover after {moved_after:?} (agent_ttl {TTL:?})");
    eventually("core-01 gone from list-machines", LONG, || async {
        c.client
            .list_machines()
            .iter()
            .all(|m| m.id != machine_id(1))
    })
    .await;
    // core-01 comes back: it stays empty (units do not move back).
    c.nodes[0].link.set_down(false);
    eventually("core-01 back", LONG, || async {
        c.client.list_machines().len() == 3
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        c.where_running().get("nginxweb.service"),
        Some(&vec![machine_id(2)])
    );
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_machine_pairs_move_together() {
    let mut c = Cluster::new(&["", "", ""]).await;
    let o = SubmitOptions::default();
    c.client
        .submit(
            "mysql@.service",
            &sleeper("\n[X-Fleet]\nConflicts=mysql@*.service\n"),
            o,
        )
        .await
        .unwrap();
    c.client
        .submit(
            "wordpress@.service",
            &sleeper("\n[X-Fleet]\nMachineOf=mysql@%i.service\n"),
            o,
        )
        .await
        .unwrap();
    for i in 1..=2 {
        c.client
            .start(&format!("mysql@{i}.service"), None, o)
            .await
            .unwrap();
        c.client
            .start(&format!("wordpress@{i}.service"), None, o)
            .await
            .unwrap();
    }
    eventually("pairs running", LONG, || async {
        c.where_running().len() == 4
    })
    .await;
    let victim = c.where_running()["mysql@2.service"][0].clone();
    let idx = c.nodes.iter().position(|n| n.id == victim).unwrap();
    let started = tokio::time::Instant::now();
    c.nodes[idx].kill().await;
    eventually(
        "mysql@2 and wordpress@2 together elsewhere",
        LONG,
        || async {
            let w = c.where_running();
            let m = w.get("mysql@2.service");
            m.is_some_and(|m| m.len() == 1 && m[0] != victim) && m == w.get("wordpress@2.service")
        },
    )
    .await;
    eprintln!(
        "pair moved {:?} after the machine died (agent_ttl {TTL:?})",
        started.elapsed()
    );
    let w = c.where_running();
    assert_ne!(
        w["mysql@1.service"], w["mysql@2.service"],
        "Conflicts still hold"
    );
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_leader_killed_another_takes_over_without_duplicates() {
    let mut c = Cluster::with(&["", "", ""], true).await;
    // Engines run apart from the agents so killing one leaves agents alive.
    let mut engines = Vec::new();
    for i in 1..=3 {
        let registry = c.client.registry().clone();
        let engine = keelson_scheduler::Engine::new(
            std::sync::Arc::new(
                keelson_scheduler::Registry::open(
                    registry.kv().clone(),
                    keelson_scheduler::Keys::default(),
                )
                .await
                .unwrap(),
            ),
            keelson_scheduler::EngineConfig {
                machine_id: machine_id(i),
                reconcile_interval: Duration::from_millis(200),
            },
        );
        engines.push(tokio::spawn(engine.run(std::future::pending())));
    }
    let o = SubmitOptions::default();
    for i in 1..=6 {
        c.client
            .start(&format!("app{i}.service"), Some(&sleeper("")), o)
            .await
            .unwrap();
    }
    eventually("six units running", LONG, || async {
        c.where_running().len() == 6
    })
    .await;
    let before: Vec<_> = c.nodes.iter().map(|n| n.sup.main_pids()).collect();
    let leader = c
        .client
        .registry()
        .with(|s| s.lease.as_ref().map(|(l, _)| l.machine_id.clone()))
        .unwrap();
    let li: usize = leader[..1].parse().unwrap();
    engines[li - 1].abort();
    c.client
        .start("new.service", Some(&sleeper("")), o)
        .await
        .unwrap();
    eventually("new leader schedules new.service", LONG, || async {
        c.where_running().contains_key("new.service")
    })
    .await;
    let new_leader = c
        .client
        .registry()
        .with(|s| s.lease.as_ref().map(|(l, _)| l.machine_id.clone()))
        .unwrap();
    assert_ne!(new_leader, leader);
    let w = c.where_running();
    assert_eq!(w.len(), 7);
    assert!(w.values().all(|m| m.len() == 1), "duplicated: {w:?}");
    for (n, pids) in c.nodes.iter().zip(before) {
        let now = n.sup.main_pids();
        for (u, p) in pids {
            assert_eq!(now.get(&u), Some(&p), "{u} was restarted");
        }
    }
    for e in engines {
        e.abort();
    }
    // Graceful stop of one machine moves its units at once.
    let victim = w["app1.service"][0].clone();
    let idx = c.nodes.iter().position(|n| n.id == victim).unwrap();
    c.nodes[idx].stop().await;
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sidekick_follows_its_service_and_stops_with_it() {
    let c = Cluster::new(&["", "", ""]).await;
    let o = SubmitOptions::default();
    let reg = c.dir.path().join("registry");
    std::fs::create_dir_all(&reg).unwrap();
    c.client
        .submit(
            "apachet@.service",
            &sleeper("\n[X-Fleet]\nConflicts=apachet@*.service\n"),
            o,
        )
        .await
        .unwrap();
    let side = format!(
        "[Unit]\nBindsTo=apachet@%i.service\nAfter=apachet@%i.service\n\n[Service]\n\
         ExecStart=/bin/sh -c 'while true; do echo %H > {r}/%i; sleep 0.2; done'\n\
         ExecStop=/bin/rm -f {r}/%i\n\n[X-Fleet]\nX-ConditionMachineOf=apachet@%i.service\n",
        r = reg.display()
    );
    c.client
        .submit("apachet-discovery@.service", &side, o)
        .await
        .unwrap();
    for i in ["8081", "8082"] {
        c.client
            .start(&format!("apachet@{i}.service"), None, o)
            .await
            .unwrap();
        c.client
            .start(&format!("apachet-discovery@{i}.service"), None, o)
            .await
            .unwrap();
    }
    eventually("two registrations", LONG, || async {
        std::fs::read_dir(&reg).map(|d| d.count()).unwrap_or(0) == 2
    })
    .await;
    let w = c.where_running();
    assert_eq!(
        w["apachet@8082.service"],
        w["apachet-discovery@8082.service"]
    );
    // Kill the service's process on its machine.
    let m = &w["apachet@8082.service"][0];
    let node = c.nodes.iter().find(|n| &n.id == m).unwrap();
    let pid = node.sup.main_pids()["apachet@8082.service"];
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(pid).unwrap(),
        rustix::process::Signal::KILL,
    )
    .unwrap();
    eventually(
        "service failed, sidekick inactive, registration gone",
        LONG,
        || async {
            let units = c.client.list_units();
            let st = |n: &str| units.iter().find(|u| u.name == n).map(|u| u.active.clone());
            st("apachet@8082.service").as_deref() == Some("failed")
                && st("apachet-discovery@8082.service").as_deref() == Some("inactive")
                && !reg.join("8082").exists()
                && reg.join("8081").exists()
        },
    )
    .await;
    c.shutdown().await;
}
