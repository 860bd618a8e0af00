//! The update server's JSON admin API over HTTP (uploads, groups, promotion,
//! persistence) and its rollout policies as Omaha clients see them, in
//! simulated time.

use keelson_updater::admin::{AdminClient, AdminError, MANIFEST_HEADER};
use keelson_updater::omaha::COREOS_APP_ID;
use keelson_updater::payload::{sign_payload_file, write_keypair, SigningKey, TrustedKeys};
use keelson_updater::rollout::{Interval, Policy, Refusal};
use keelson_updater::server::{InstanceStatus, UpdateServer};

/// Monday 2024-01-01 00:00:00 UTC.
const MONDAY: u64 = 1_704_067_200;

struct Setup {
    dir: tempfile::TempDir,
    key: SigningKey,
}

impl Setup {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        write_keypair(&dir.path().join("keys"), "release").unwrap();
        let key = SigningKey::load(&dir.path().join("keys/release.key")).unwrap();
        Self { dir, key }
    }

    /// Writes a payload and its manifest; returns their paths.
    fn package(&self, version: &str, len: usize) -> (std::path::PathBuf, std::path::PathBuf) {
        let d = self.dir.path().join("build").join(version);
        std::fs::create_dir_all(&d).unwrap();
        let p = d.join("update.gz");
        let bytes: Vec<u8> = (0..len).map(|i| (i % 253) as u8).collect();
        std::fs::write(&p, bytes).unwrap();
        let m = sign_payload_file(&self.key, &version.parse().unwrap(), &p).unwrap();
        let mp = d.join("update.gz.manifest.json");
        std::fs::write(&mp, m).unwrap();
        (p, mp)
    }

    async fn serve(&self) -> (UpdateServer, AdminClient, String) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let srv = UpdateServer::open(&self.dir.path().join("data"), COREOS_APP_ID, &url).unwrap();
        tokio::spawn(keelson_updater::server::serve(srv.clone(), listener));
        (srv, AdminClient::new(&url), url)
    }
}

fn check(machine: &str, version: &str, track: &str, events: &str, update: bool) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><request protocol="3.0"><app appid="{{{COREOS_APP_ID}}}" version="{version}" track="{track}" machineid="{machine}">{events}{}</app></request>"#,
        if update { "<updatecheck/>" } else { "" }
    )
}

fn granted(srv: &UpdateServer, body: &str, now: u64) -> bool {
    let r = srv.handle_omaha_at(body, now).unwrap();
    r.apps[0].update_check.as_ref().unwrap().status == "ok"
}

fn server_status(e: AdminError) -> (u16, String) {
    match e {
        AdminError::Server { status, message } => (status, message),
        other => panic!("expected a server error, got {other}"),
    }
}

#[tokio::test]
async fn upload_create_promote_and_survive_a_restart() {
    let s = Setup::new();
    let (srv, admin, url) = s.serve().await;
    let (p, m) = s.package("766.3.0", 3_000_000);
    let pkg = admin.upload(&p, &m).await.unwrap();
    assert_eq!((pkg.version.as_str(), pkg.size), ("766.3.0", 3_000_000));
    assert_eq!(admin.packages().await.unwrap(), vec![pkg.clone()]);

    let g = admin.create_group("stable", None).await.unwrap();
    assert!(g.policy.safe_mode, "safe mode on by default");
    assert_eq!(g.version, None);
    let g = admin.promote("stable", "766.3.0").await.unwrap();
    assert_eq!(g.version.as_deref(), Some("766.3.0"));

    // The hosted payload is byte-identical and Range-capable.
    let body = reqwest::get(format!("{url}/packages/766.3.0/update.gz"))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(body.as_ref(), std::fs::read(&p).unwrap().as_slice());

    // A restart from the data directory keeps packages, groups and policies.
    admin
        .set_policy(
            "stable",
            &Policy {
                max_updates_per_period: 2,
                period_interval: Interval(3600),
                ..Policy::default()
            },
        )
        .await
        .unwrap();
    drop(srv);
    let (_srv2, admin2, _) = s.serve().await;
    assert_eq!(admin2.packages().await.unwrap(), vec![pkg]);
    let g = admin2.group("stable").await.unwrap();
    assert_eq!(g.version.as_deref(), Some("766.3.0"));
    assert_eq!(g.policy.max_updates_per_period, 2);
}

#[tokio::test]
async fn bad_admin_requests_get_clear_errors_and_lose_nothing() {
    let s = Setup::new();
    let (_srv, admin, url) = s.serve().await;
    let (p, m) = s.package("766.3.0", 100_000);

    // A payload that does not match its manifest is not kept.
    let (other, _) = s.package("766.4.0", 100_001);
    let (st, msg) = server_status(admin.upload(&other, &m).await.unwrap_err());
    assert_eq!(st, 400);
    assert!(msg.contains("manifest says"), "{msg}");
    let mut tampered = std::fs::read(&p).unwrap();
    tampered[10] ^= 1;
    let tp = s.dir.path().join("tampered.gz");
    std::fs::write(&tp, tampered).unwrap();
    let (_, msg) = server_status(admin.upload(&tp, &m).await.unwrap_err());
    assert!(msg.contains("SHA-256"), "{msg}");
    assert!(admin.packages().await.unwrap().is_empty());
    let leftovers: Vec<_> = walk(&s.dir.path().join("data"))
        .into_iter()
        .filter(|f| f.to_string_lossy().contains(".upload-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // Missing or garbage manifest header.
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{url}/api/packages"))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains(MANIFEST_HEADER));
    let r = http
        .post(format!("{url}/api/packages"))
        .header(MANIFEST_HEADER, "e30=") // "{}"
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("malformed manifest"));

    // Groups.
    admin.upload(&p, &m).await.unwrap();
    let (st, msg) = server_status(admin.promote("nope", "766.3.0").await.unwrap_err());
    assert_eq!((st, msg.contains("create it first")), (404, true), "{msg}");
    admin.create_group("beta", None).await.unwrap();
    let (st, _) = server_status(admin.create_group("beta", None).await.unwrap_err());
    assert_eq!(st, 409);
    let (st, _) = server_status(admin.create_group("../etc", None).await.unwrap_err());
    assert_eq!(st, 400);
    let (st, msg) = server_status(admin.promote("beta", "999.0.0").await.unwrap_err());
    assert_eq!((st, msg.contains("upload it first")), (404, true), "{msg}");
    let (st, _) = server_status(admin.promote("beta", "not.a.version").await.unwrap_err());
    assert_eq!(st, 400);
    let zero = Policy {
        max_updates_per_period: 0,
        ..Policy::default()
    };
    let (st, msg) = server_status(admin.set_policy("beta", &zero).await.unwrap_err());
    assert_eq!((st, msg.contains("at least 1")), (400, true), "{msg}");
    for (path, body) in [
        ("/api/groups", "{\"id\":"),
        ("/api/groups", "[]"),
        ("/api/groups/beta/promote", "{}"),
    ] {
        let r = http
            .post(format!("{url}{path}"))
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{path} {body}");
        assert!(r.text().await.unwrap().contains("malformed JSON"));
    }
    let r = http
        .put(format!("{url}/api/groups/beta/policy"))
        .body(r#"{"period_interval":"whenever"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("bad interval"));
    // Nothing above changed the group.
    assert_eq!(admin.group("beta").await.unwrap().policy, Policy::default());
}

fn walk(d: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = vec![];
    for e in std::fs::read_dir(d).unwrap().flatten() {
        if e.path().is_dir() {
            out.extend(walk(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out
}

#[tokio::test]
async fn uploads_can_require_a_trusted_signature() {
    let s = Setup::new();
    let (srv, admin, _) = s.serve().await;
    let other = tempfile::tempdir().unwrap();
    write_keypair(other.path(), "other").unwrap();
    srv.require_upload_signatures(TrustedKeys::load_dirs(&[other.path().to_path_buf()]).unwrap());
    let (p, m) = s.package("766.3.0", 1000);
    let (st, msg) = server_status(admin.upload(&p, &m).await.unwrap_err());
    assert_eq!(st, 400);
    assert!(msg.contains("trusted key"), "{msg}");
}

#[tokio::test]
async fn rollout_policy_through_omaha_in_simulated_time() {
    let s = Setup::new();
    let (srv, admin, url) = s.serve().await;
    let (p, m) = s.package("766.3.0", 1000);
    admin.upload(&p, &m).await.unwrap();
    admin
        .create_group(
            "stable",
            Some(Policy {
                max_updates_per_period: 2,
                period_interval: Interval(3600),
                update_timeout: Interval(1800),
                office_hours: true,
                timezone: "+01:00".parse().unwrap(),
                ..Policy::default()
            }),
        )
        .await
        .unwrap();
    admin.promote("stable", "766.3.0").await.unwrap();
    let t = MONDAY + 9 * 3600; // 10:00 in +01:00

    // Outside office hours: on hold, with the reason visible.
    assert!(!granted(
        &srv,
        &check("m1", "723.3.0", "stable", "", true),
        MONDAY + 3600
    ));
    let i = srv.instance("m1").unwrap();
    assert_eq!(i.status, InstanceStatus::OnHold);
    assert_eq!(i.hold_reason, Some(Refusal::OutsideOfficeHours));

    // Safe mode: the canary flies alone until it has come through.
    assert!(granted(
        &srv,
        &check("m1", "723.3.0", "stable", "", true),
        t
    ));
    assert!(!granted(
        &srv,
        &check("m2", "723.3.0", "stable", "", true),
        t + 1
    ));
    assert_eq!(
        srv.instance("m2").unwrap().hold_reason,
        Some(Refusal::MaxUpdatesPerPeriodLimitReached)
    );
    // The canary succeeds (installed, then rebooted into 766.3.0).
    let installed = r#"<event eventtype="3" eventresult="1"/>"#;
    let rebooted = r#"<event eventtype="3" eventresult="2" previousversion="723.3.0"/>"#;
    srv.handle_omaha_at(&check("m1", "723.3.0", "stable", installed, false), t + 60)
        .unwrap();
    srv.handle_omaha_at(&check("m1", "766.3.0", "stable", rebooted, true), t + 120)
        .unwrap();
    assert_eq!(srv.instance("m1").unwrap().status, InstanceStatus::Complete);
    // Now the group's limit applies: 2 grants per hour.
    assert!(granted(
        &srv,
        &check("m2", "723.3.0", "stable", "", true),
        t + 121
    ));
    assert!(!granted(
        &srv,
        &check("m3", "723.3.0", "stable", "", true),
        t + 122
    ));
    assert_eq!(
        srv.instance("m3").unwrap().hold_reason,
        Some(Refusal::MaxUpdatesPerPeriodLimitReached)
    );
    // The same picture on /metrics.
    let text = http_get(&url, "/metrics").await;
    for line in [
        "keelson_update_server_instances{status=\"complete\"} 1\n",
        "keelson_update_server_instances{status=\"granted\"} 1\n",
        "keelson_update_server_instances{status=\"on-hold\"} 1\n",
        "keelson_update_server_instance_versions{group=\"stable\",version=\"766.3.0\"} 1\n",
        "keelson_update_server_instance_versions{group=\"stable\",version=\"723.3.0\"} 2\n",
        "keelson_update_server_group_paused{group=\"stable\"} 0\n",
    ] {
        assert!(text.contains(line), "missing {line:?} in {text}");
    }
    assert!(http_get(&url, "/health")
        .await
        .ends_with("{\"health\":\"true\"}"));
    // An hour later m2 has timed out (after a success: no pause); m3 may go.
    assert!(granted(
        &srv,
        &check("m3", "723.3.0", "stable", "", true),
        t + 3601
    ));
    // m2 never reports and times out; a success already happened, so no pause.
    let g = admin.groups().await.unwrap();
    assert!(g[0].policy.updates_enabled);
    // An operator pause refuses everyone.
    admin.set_paused("stable", true).await.unwrap();
    assert!(!granted(
        &srv,
        &check("m4", "723.3.0", "stable", "", true),
        t + 7200
    ));
    assert_eq!(
        srv.instance("m4").unwrap().hold_reason,
        Some(Refusal::UpdatesDisabled)
    );
    // Resumed, but m3 has timed out as well: as many timeouts as the limit
    // switch safe mode's brake on again.
    admin.set_paused("stable", false).await.unwrap();
    assert!(!granted(
        &srv,
        &check("m4", "723.3.0", "stable", "", true),
        t + 7201
    ));
    assert_eq!(
        srv.instance("m4").unwrap().hold_reason,
        Some(Refusal::MaxTimedOutUpdatesLimitReached)
    );
    let g = admin.group("stable").await.unwrap();
    assert_eq!(g.updates_timed_out, 2, "m2 and m3");
    assert!(!g.policy.updates_enabled);
    // A higher limit, set by the operator, lets the rollout continue.
    let mut p = g.policy.clone();
    p.updates_enabled = true;
    p.max_updates_per_period = 10;
    admin.set_policy("stable", &p).await.unwrap();
    assert!(granted(
        &srv,
        &check("m4", "723.3.0", "stable", "", true),
        t + 7202
    ));
}

#[tokio::test]
async fn safe_mode_pauses_the_group_when_the_canary_rolls_back() {
    let s = Setup::new();
    let (srv, admin, _) = s.serve().await;
    let (p, m) = s.package("766.3.0", 1000);
    admin.upload(&p, &m).await.unwrap();
    admin.create_group("stable", None).await.unwrap();
    admin.promote("stable", "766.3.0").await.unwrap();
    let t = MONDAY;
    assert!(granted(
        &srv,
        &check("canary", "723.3.0", "stable", "", true),
        t
    ));
    assert!(!granted(
        &srv,
        &check("m2", "723.3.0", "stable", "", true),
        t + 1
    ));
    let installed = r#"<event eventtype="3" eventresult="1"/>"#;
    srv.handle_omaha_at(
        &check("canary", "723.3.0", "stable", installed, false),
        t + 60,
    )
    .unwrap();
    // The new version fails its health check; the machine is back on 723.3.0.
    let rollback = r#"<event eventtype="3" eventresult="0" errorcode="44"/>"#;
    srv.handle_omaha_at(
        &check("canary", "723.3.0", "stable", rollback, true),
        t + 600,
    )
    .unwrap();
    assert_eq!(
        srv.instance("canary").unwrap().status,
        InstanceStatus::OnHold
    );
    let g = admin.group("stable").await.unwrap();
    assert!(!g.policy.updates_enabled);
    assert!(
        g.paused_reason.as_deref().unwrap().contains("canary"),
        "{g:?}"
    );
    assert!(!granted(
        &srv,
        &check("m2", "723.3.0", "stable", "", true),
        t + 700
    ));
    assert_eq!(
        srv.instance("m2").unwrap().hold_reason,
        Some(Refusal::UpdatesDisabled)
    );
    // Promoting a fixed release does not silently resume a paused group.
    let (p2, m2) = s.package("766.3.1", 1000);
    admin.upload(&p2, &m2).await.unwrap();
    admin.promote("stable", "766.3.1").await.unwrap();
    assert!(!granted(
        &srv,
        &check("m2", "723.3.0", "stable", "", true),
        t + 800
    ));
    admin.set_paused("stable", false).await.unwrap();
    assert!(granted(
        &srv,
        &check("m2", "723.3.0", "stable", "", true),
        t + 900
    ));
}

/// A plain HTTP/1.1 GET; the whole answer, headers included.
async fn http_get(url: &str, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = url.trim_start_matches("http://");
    let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
    c.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    c.read_to_string(&mut out).await.unwrap();
    out
}
