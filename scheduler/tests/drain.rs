//! Draining a machine through the fleet API before a reboot: three fleetds
//! with real supervisor processes over one in-memory kv, the API served on a
//! unix socket, and [`RemoteFleet::drain`] as locksmith calls it.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use keelson_scheduler::api::{self, ApiClient, ApiState, RemoteFleet};
use keelson_scheduler::drain::DrainOutcome;
use keelson_scheduler::{FleetClient, Keys, SubmitOptions};

const LONG: Duration = Duration::from_secs(40);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_moves_units_away_and_lifting_it_takes_work_again() {
    let c = Cluster::new(&["", "", ""]).await;
    let client = Arc::new(
        FleetClient::connect(c.kv.clone(), Keys::default())
            .await
            .unwrap(),
    );
    let sock = c.dir.path().join("fleet.sock");
    let app = api::router(ApiState::new(client, None));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let s2 = sock.clone();
    let server = tokio::spawn(async move {
        api::serve_unix(&s2, app, async move {
            let _ = stop_rx.await;
        })
        .await
    });
    eventually("the API socket", LONG, || async { sock.exists() }).await;
    let fleet = RemoteFleet::new(ApiClient::new(&format!("unix://{}", sock.display())).unwrap());

    let o = SubmitOptions::default();
    for name in ["a.service", "b.service", "c.service"] {
        c.client.start(name, Some(&sleeper("")), o).await.unwrap();
    }
    c.client
        .start(
            "pin.service",
            Some(&sleeper(&format!(
                "\n[X-Fleet]\nMachineID={}\n",
                machine_id(1)
            ))),
            o,
        )
        .await
        .unwrap();
    c.client
        .start("g.service", Some(&sleeper("\n[X-Fleet]\nGlobal=true\n")), o)
        .await
        .unwrap();
    eventually("every unit running", LONG, || async {
        let w = c.where_running();
        ["a.service", "b.service", "c.service", "pin.service"]
            .iter()
            .all(|u| w.get(*u).is_some_and(|m| m.len() == 1))
            && w.get("g.service").is_some_and(|m| m.len() == 3)
    })
    .await;
    let on_1: Vec<String> = c.nodes[0]
        .running()
        .into_iter()
        .filter(|u| u != "g.service")
        .collect();
    assert!(on_1.contains(&"pin.service".to_string()), "{on_1:?}");
    assert!(
        on_1.len() >= 2,
        "machine 1 runs a movable unit too: {on_1:?}"
    );

    assert!(!fleet.is_draining(&machine_id(1)).await.unwrap());
    let out = fleet
        .drain(&machine_id(1), LONG, Duration::from_millis(100))
        .await
        .unwrap();
    let DrainOutcome::Drained { moved } = out else {
        panic!("drain timed out: {out:?}");
    };
    assert_eq!(moved.iter().cloned().collect::<Vec<_>>(), {
        let mut v = on_1.clone();
        v.sort();
        v
    });
    assert!(fleet.is_draining(&machine_id(1)).await.unwrap());
    // Only the global unit is left on machine 1; the others run elsewhere,
    // once each; the pinned one waits with a reason.
    assert_eq!(c.nodes[0].running(), vec!["g.service".to_string()]);
    let w = c.where_running();
    for u in ["a.service", "b.service", "c.service"] {
        let m = &w[u];
        assert_eq!(m.len(), 1, "{u} on {m:?}");
        assert_ne!(m[0], machine_id(1));
    }
    assert!(!w.contains_key("pin.service"));
    let pin = c.client.unit("pin.service").unwrap();
    assert!(
        pin.reason
            .as_deref()
            .is_some_and(|r| r.contains("is draining")),
        "{pin:?}"
    );

    // Lifted: the pinned unit comes back, nothing else moves back, and the
    // machine takes new work.
    fleet.set_draining(&machine_id(1), false).await.unwrap();
    assert!(!fleet.is_draining(&machine_id(1)).await.unwrap());
    eventually("pin.service back on machine 1", LONG, || async {
        c.where_running().get("pin.service") == Some(&vec![machine_id(1)])
    })
    .await;
    c.client
        .start("d.service", Some(&sleeper("")), o)
        .await
        .unwrap();
    eventually("d.service on the empty machine", LONG, || async {
        c.where_running().get("d.service") == Some(&vec![machine_id(1)])
    })
    .await;
    assert_eq!(c.where_running()["a.service"], w["a.service"]);

    // Bad machine IDs are refused clearly.
    let e = fleet.set_draining("../x", true).await.unwrap_err();
    assert!(
        e.to_string().contains("invalid machine ID") || e.to_string().contains("not found"),
        "{e}"
    );
    let e = fleet.set_draining("bad-id", true).await.unwrap_err();
    assert!(e.to_string().contains("invalid machine ID"), "{e}");

    let _ = stop_tx.send(());
    let _ = server.await;
    c.shutdown().await;
}
