//! The fleet API v1 over a real unix socket: shapes, status codes,
//! pagination tokens, metadata PATCH, and malformed input.

use std::sync::Arc;
use std::time::Duration;

use keelson_kv::client::KvClient;
use keelson_scheduler::api::{self, ApiClient, ApiState, LocalAgent};
use keelson_scheduler::memkv::MemKv;
use keelson_scheduler::{FleetClient, FleetConfig, Fleetd, InitSystem, Keys, MemInit};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn raw(sock: &std::path::Path, req: &str) -> String {
    let mut s = tokio::net::UnixStream::connect(sock).await.unwrap();
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test]
async fn fleet_api_v1_over_unix_socket() {
    let dir = tempfile::tempdir().unwrap();
    let kv: Arc<dyn KvClient> = Arc::new(MemKv::new());
    let init: Arc<dyn InitSystem> = Arc::new(MemInit::new());
    let machine = "1".repeat(32);
    let (tx, rx) = tokio::sync::watch::channel(false);
    let stop = move || {
        let mut rx = rx.clone();
        async move {
            let _ = rx.wait_for(|v| *v).await;
        }
    };
    let cfg = FleetConfig {
        machine_id: machine.clone(),
        public_ip: "10.0.0.1".into(),
        metadata: [("role".to_string(), "web".to_string())].into(),
        engine_reconcile_interval: Duration::from_millis(200),
        ..FleetConfig::default()
    };
    let fleetd = tokio::spawn(Fleetd::run(kv.clone(), init.clone(), cfg, stop()));
    let client = Arc::new(
        FleetClient::connect(kv.clone(), Keys::default())
            .await
            .unwrap(),
    );
    let app = api::router(
        ApiState::new(
            client,
            Some(LocalAgent {
                machine_id: machine.clone(),
                init,
            }),
        )
        .with_token_limit(1),
    );
    let sock = dir.path().join("var/run/fleet.sock");
    let s2 = sock.clone();
    let server = tokio::spawn(async move { api::serve_unix(&s2, app, stop()).await });
    for _ in 0..100 {
        if sock.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777,
        0o660
    );
    let c = ApiClient::new(&format!("unix://{}", sock.display())).unwrap();

    // Empty collections are `{}`.
    assert_eq!(
        c.call("GET", "/fleet/v1/units", None).await.unwrap(),
        (200, json!({}))
    );

    // Create, 201; the options with an empty value omit `value`.
    let opts = json!([
        {"section": "Service", "name": "ExecStart", "value": "/bin/sleep 1000"},
        {"section": "Service", "name": "ExecStop"}
    ]);
    for name in ["a.service", "b.service"] {
        let (code, _) = c
            .call(
                "PUT",
                &format!("/fleet/v1/units/{name}"),
                Some(json!({"desiredState": "launched", "options": opts})),
            )
            .await
            .unwrap();
        assert_eq!(code, 201);
    }
    let (_, u) = c
        .call("GET", "/fleet/v1/units/a.service", None)
        .await
        .unwrap();
    assert_eq!(u["name"], "a.service");
    assert_eq!(u["desiredState"], "launched");
    assert_eq!(
        u["options"][1],
        json!({"section": "Service", "name": "ExecStop"})
    );

    // Pagination with fleet's tokens (limit 1 here).
    let (_, p1) = c.call("GET", "/fleet/v1/units", None).await.unwrap();
    assert_eq!(p1["units"].as_array().unwrap().len(), 1);
    assert_eq!(p1["nextPageToken"], api::encode_token(1, 2));
    let (_, p2) = c
        .call(
            "GET",
            &format!("/fleet/v1/units?nextPageToken={}", api::encode_token(1, 2)),
            None,
        )
        .await
        .unwrap();
    assert_eq!(p2["units"][0]["name"], "b.service");
    assert!(p2.get("nextPageToken").is_none());
    let e = c
        .call(
            "GET",
            &format!(
                "/v1-alpha/units?nextPageToken={}",
                api::encode_token(100, 1)
            ),
            None,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(e, api::ApiError::Status { code: 400, ref message } if message == "token limit must be 1")
    );

    // State changes.
    let put = |name: &str, body: Value| {
        let c = c.clone();
        let path = format!("/fleet/v1/units/{name}");
        async move { c.request("PUT", &path, Some(body)).await.unwrap().0 }
    };
    assert_eq!(
        put("a.service", json!({"desiredState": "loaded"})).await,
        204
    );
    assert_eq!(put("a.service", json!({})).await, 409);
    assert_eq!(
        put("a.service", json!({"desiredState": "bogus"})).await,
        400
    );
    assert_eq!(
        put("nope.service", json!({"desiredState": "loaded"})).await,
        409
    );
    assert_eq!(
        put(
            "a.service",
            json!({"name": "b.service", "desiredState": "loaded"})
        )
        .await,
        400
    );
    assert_eq!(
        put(
            "t@.service",
            json!({"desiredState": "launched", "options": opts})
        )
        .await,
        400
    );
    assert_eq!(
        put(
            "x.service",
            json!({"desiredState": "inactive", "options": [
            {"section": "X-Fleet", "name": "FooBar", "value": "1"}]})
        )
        .await,
        400
    );
    // Malformed body and wrong content type.
    let (code, _) = c
        .request("PUT", "/fleet/v1/units/a.service", None)
        .await
        .unwrap();
    assert_eq!(code, 415);
    let ans = raw(
        &sock,
        "PUT /fleet/v1/units/a.service HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: 5\r\n\r\n{nope",
    )
    .await;
    assert!(ans.starts_with("HTTP/1.1 400"), "{ans}");
    assert!(
        ans.to_ascii_lowercase().contains("server: fleetd/"),
        "{ans}"
    );

    // Machines and state.
    let mut machines = Value::Null;
    for _ in 0..100 {
        machines = c.call("GET", "/fleet/v1/machines", None).await.unwrap().1;
        if machines.get("machines").is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        machines["machines"][0],
        json!({"id": machine, "primaryIP": "10.0.0.1", "metadata": {"role": "web"}})
    );
    let mut states = Value::Null;
    for _ in 0..100 {
        states = c
            .call("GET", "/fleet/v1/state?unitName=b.service", None)
            .await
            .unwrap()
            .1;
        if states["states"][0]["systemdActiveState"] == "active" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(states["states"][0]["machineID"], machine.as_str());
    assert_eq!(states["states"][0]["systemdSubState"], "running");

    // Metadata PATCH: validated first, then applied.
    let patch = |body: Value| {
        let c = c.clone();
        async move {
            c.request("PATCH", "/fleet/v1/machines", Some(body))
                .await
                .unwrap()
                .0
        }
    };
    let path = format!("/{machine}/metadata/zone");
    assert_eq!(
        patch(json!([{"op": "add", "path": path, "value": "a"}])).await,
        204
    );
    assert_eq!(
        patch(json!([{"op": "add", "path": path, "value": "b"}, {"op": "move", "path": path}]))
            .await,
        400
    );
    assert_eq!(
        patch(json!([{"op": "add", "path": "/x/meta/y", "value": "b"}])).await,
        400
    );
    assert_eq!(patch(json!([{"op": "replace", "path": path}])).await, 400);
    let (_, m) = c.call("GET", "/fleet/v1/machines", None).await.unwrap();
    assert_eq!(m["machines"][0]["metadata"]["zone"], "a");

    // Delete; discovery; 404 and 405.
    assert_eq!(
        c.request("DELETE", "/fleet/v1/units/a.service", None)
            .await
            .unwrap()
            .0,
        204
    );
    assert_eq!(
        c.request("DELETE", "/fleet/v1/units/a.service", None)
            .await
            .unwrap()
            .0,
        404
    );
    assert_eq!(
        c.request("GET", "/fleet/v1/units/a.service", None)
            .await
            .unwrap()
            .0,
        404
    );
    let (_, d) = c.call("GET", "/fleet/v1/discovery", None).await.unwrap();
    assert_eq!(d["id"], "fleet:v1");
    assert_eq!(
        c.request("GET", "/fleet/v1/nothing", None).await.unwrap().0,
        404
    );
    assert_eq!(c.request("GET", "/", None).await.unwrap().0, 405);
    assert_eq!(
        c.request("POST", "/fleet/v1/units/a.service", None)
            .await
            .unwrap()
            .0,
        405
    );

    let _ = tx.send(true);
    let _ = server.await;
    let _ = fleetd.await;
}

/// `/metrics` counts machines, units by desired state, reported states and
/// this machine's units; `/health` follows the kv's reachability.
#[tokio::test]
async fn metrics_and_health() {
    use keelson_scheduler::memkv::FaultyKv;
    let dir = tempfile::tempdir().unwrap();
    let faulty = Arc::new(FaultyKv::new(Arc::new(MemKv::new())));
    let kv: Arc<dyn KvClient> = faulty.clone();
    let init: Arc<dyn InitSystem> = Arc::new(MemInit::new());
    let machine = "2".repeat(32);
    let (tx, rx) = tokio::sync::watch::channel(false);
    let stop = move || {
        let mut rx = rx.clone();
        async move {
            let _ = rx.wait_for(|v| *v).await;
        }
    };
    let cfg = FleetConfig {
        machine_id: machine.clone(),
        public_ip: "10.0.0.2".into(),
        engine_reconcile_interval: Duration::from_millis(200),
        ..FleetConfig::default()
    };
    let fleetd = tokio::spawn(Fleetd::run(kv.clone(), init.clone(), cfg, stop()));
    let client = Arc::new(
        FleetClient::connect(kv.clone(), Keys::default())
            .await
            .unwrap(),
    );
    let app = api::router(ApiState::new(
        client,
        Some(LocalAgent {
            machine_id: machine.clone(),
            init,
        }),
    ));
    let sock = dir.path().join("fleet.sock");
    let s2 = sock.clone();
    let server = tokio::spawn(async move { api::serve_unix(&s2, app, stop()).await });
    for _ in 0..100 {
        if sock.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let c = ApiClient::new(&format!("unix://{}", sock.display())).unwrap();
    let body = json!({"desiredState": "launched", "options": [
        {"section": "Service", "name": "ExecStart", "value": "/bin/sleep 1000"}
    ]});
    let (code, _) = c
        .call("PUT", "/fleet/v1/units/m.service", Some(body))
        .await
        .unwrap();
    assert_eq!(code, 201);
    let get = "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let mut text = String::new();
    for _ in 0..200 {
        text = raw(&sock, get).await;
        if text.contains("keelson_fleet_local_units{active=\"active\"} 1\n") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("text/plain; version=0.0.4"), "{text}");
    for line in [
        "# TYPE keelson_fleet_machines gauge\nkeelson_fleet_machines 1\n",
        "keelson_fleet_units{desired=\"launched\"} 1\n",
        "keelson_fleet_units{desired=\"inactive\"} 0\n",
        "keelson_fleet_unit_states{active=\"active\"} 1\n",
        "keelson_fleet_local_units{active=\"active\"} 1\n",
        "keelson_fleet_engine_leader 1\n",
    ] {
        assert!(text.contains(line), "missing {line:?} in:\n{text}");
    }
    let health = "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let ok = raw(&sock, health).await;
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    assert!(ok.ends_with("{\"health\":\"true\"}"), "{ok}");
    faulty.set_down(true);
    let down = raw(&sock, health).await;
    assert!(down.starts_with("HTTP/1.1 503"), "{down}");
    assert!(down.contains("\"health\":\"false\""), "{down}");
    faulty.set_down(false);
    let post = raw(
        &sock,
        "POST /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
    )
    .await;
    assert!(post.starts_with("HTTP/1.1 405"), "{post}");
    let _ = tx.send(true);
    let _ = server.await;
    let _ = fleetd.await;
}
