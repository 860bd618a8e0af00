//! End to end: an update server with a signed payload, an engine on a GPT disk
//! image made by sgdisk, simulated reboots, rollback, and the failure cases.
mod common;

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use keelson_updater::config::{rooted, Overrides, ReleaseInfo, UpdateConfig};
use keelson_updater::driver::{load_identity, Driver, StateStore};
use keelson_updater::engine::{Engine, Status, Timing};
use keelson_updater::gpt::GptSlots;
use keelson_updater::omaha::COREOS_APP_ID;
use keelson_updater::payload::{sign_payload_file, write_keypair, SigningKey, TRUSTED_KEY_DIRS};
use keelson_updater::server::{Faults, InstanceStatus, UpdateServer};
use keelson_updater::slots::{BootSlots, Slot};

const OLD_USR: &[u8] = b"USR-A: CoreOS 723.3.0";

struct World {
    dir: tempfile::TempDir,
    server: UpdateServer,
    url: String,
    img: PathBuf,
    key: SigningKey,
}

fn payload_bytes(len: usize, salt: u8) -> Vec<u8> {
    (0..len)
        .map(|i| ((i * 31 + salt as usize) % 251) as u8)
        .collect()
}

impl World {
    async fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("keys");
        write_keypair(&keys, "release").unwrap();
        let key = SigningKey::load(&keys.join("release.key")).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = UpdateServer::new(COREOS_APP_ID, &url);
        tokio::spawn(keelson_updater::server::serve(server.clone(), listener));
        let img = dir.path().join("disk.img");
        common::make_image(&img, 8);
        let slots = GptSlots::open(&img, Slot::A).unwrap();
        let mut a = slots.open_slot(Slot::A).unwrap();
        std::io::Write::write_all(&mut a, OLD_USR).unwrap();
        World {
            dir,
            server,
            url,
            img,
            key,
        }
    }

    /// Hosts `payload` as version `v` in `group`, signed by `key` (or the release key).
    fn publish(
        &self,
        v: &str,
        group: &str,
        payload: &[u8],
        signer: Option<&SigningKey>,
        hosted: Option<&[u8]>,
    ) {
        let d = self.dir.path().join("pkgs").join(v);
        std::fs::create_dir_all(&d).unwrap();
        let p = d.join("update.gz");
        std::fs::write(&p, payload).unwrap();
        let manifest =
            sign_payload_file(signer.unwrap_or(&self.key), &v.parse().unwrap(), &p).unwrap();
        if let Some(h) = hosted {
            std::fs::write(&p, h).unwrap();
        }
        let version = self.server.add_package(p, manifest).unwrap();
        self.server.set_group(group, &version).unwrap();
    }

    /// A node root running `version` in `group`, trusting the release key.
    fn node(&self, name: &str, version: &str, group: &str, trust: bool) -> PathBuf {
        let root = self.dir.path().join(name);
        let w = |p: &str, t: &str| {
            let f = rooted(&root, p);
            std::fs::create_dir_all(f.parent().unwrap()).unwrap();
            std::fs::write(f, t).unwrap();
        };
        w(
            "/etc/coreos/update.conf",
            &format!("GROUP={group}\nSERVER={}/v1/update/\n", self.url),
        );
        w("/etc/machine-id", &format!("machine-{name}\n"));
        self.set_release(&root, version);
        if trust {
            let pub_line =
                std::fs::read_to_string(self.dir.path().join("keys/release.pub")).unwrap();
            w(&format!("{}/release.pub", TRUSTED_KEY_DIRS[1]), &pub_line);
        }
        root
    }

    fn set_release(&self, root: &Path, version: &str) {
        let f = rooted(root, "/usr/share/coreos/release");
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        let r = ReleaseInfo {
            version: version.parse().unwrap(),
            board: "amd64-usr".into(),
            app_id: format!("{{{COREOS_APP_ID}}}"),
        };
        std::fs::write(f, r.render()).unwrap();
    }

    /// Boots the disk (GRUB's rule) and starts an engine on the node.
    fn boot(&self, root: &Path, now: u64) -> Driver<GptSlots> {
        let slots = GptSlots::boot(&self.img).unwrap();
        let config = UpdateConfig::load(root, &Overrides::default()).unwrap();
        let id = load_identity(root, &config).unwrap();
        let store = StateStore::new(root);
        let engine = Engine::new(id, Timing::default(), store.load(), now, 42);
        Driver::new(engine, slots, &config.server, root)
    }

    fn slot_bytes(&self, slot: Slot, n: usize) -> Vec<u8> {
        let mut r = GptSlots::open(&self.img, Slot::A)
            .unwrap()
            .open_slot(slot)
            .unwrap();
        r.seek(SeekFrom::Start(0)).unwrap();
        let mut b = vec![0u8; n];
        r.read_exact(&mut b).unwrap();
        b
    }

    fn table(&self) -> String {
        let t = GptSlots::open(&self.img, Slot::A).unwrap().table().unwrap();
        format!("A: {} / B: {}", t.a, t.b)
    }

    fn events(&self, name: &str) -> Vec<(u32, u32, Option<u32>)> {
        self.server
            .instance(&format!("machine-{name}"))
            .map(|i| i.events)
            .unwrap_or_default()
    }

    /// USR-A is intact and still the boot choice.
    fn assert_usr_a_untouched(&self) {
        assert_eq!(self.slot_bytes(Slot::A, OLD_USR.len()), OLD_USR);
        let t = GptSlots::open(&self.img, Slot::A).unwrap().table().unwrap();
        assert!(t.a.successful && t.a.priority > 0, "{}", self.table());
        assert!(
            !t.b.bootable(),
            "half-written B must not be bootable: {}",
            self.table()
        );
        common::sgdisk_verify(&self.img);
    }
}

const NEW_LEN: usize = 3 * 1024 * 1024 + 12345;

#[tokio::test]
async fn update_reboot_and_rollback() {
    let w = World::new().await;
    let payload = payload_bytes(NEW_LEN, 1);
    w.publish("766.3.0", "stable", &payload, None, None);
    let root = w.node("n1", "723.3.0", "stable", true);

    // Check, download, verify, write USR-B, report.
    let mut d = w.boot(&root, 1000);
    assert_eq!(d.slots().active(), Slot::A);
    d.check_now(1000).await;
    assert_eq!(
        d.status().current_operation,
        Status::UpdatedNeedReboot,
        "{:?}",
        d.last_error()
    );
    assert_eq!(d.status().new_version, "766.3.0");
    assert!(d
        .status()
        .render()
        .contains("CURRENT_OP=UPDATE_STATUS_UPDATED_NEED_REBOOT"));
    let ops: Vec<Status> = d.history().iter().map(|s| s.current_operation).collect();
    assert_eq!(
        ops,
        vec![
            Status::CheckingForUpdate,
            Status::UpdateAvailable,
            Status::Downloading,
            Status::Verifying,
            Status::Finalizing,
            Status::UpdatedNeedReboot
        ]
    );
    assert_eq!(w.slot_bytes(Slot::B, NEW_LEN), payload);
    assert_eq!(
        w.table(),
        "A: priority=1 tries=0 successful=1 / B: priority=2 tries=1 successful=0"
    );
    common::sgdisk_verify(&w.img);
    assert_eq!(
        w.events("n1"),
        vec![(13, 1, None), (14, 1, None), (3, 1, None)]
    );
    assert_eq!(
        w.server.instance("machine-n1").unwrap().status,
        InstanceStatus::Installed
    );

    // Reboot: GRUB picks B and spends its try; the new /usr is 766.3.0.
    StateStore::new(&root).simulate_reboot().unwrap();
    w.set_release(&root, "766.3.0");
    let mut d = w.boot(&root, 5000);
    assert_eq!(d.slots().active(), Slot::B);
    assert_eq!(
        w.table(),
        "A: priority=1 tries=0 successful=1 / B: priority=2 tries=0 successful=0"
    );
    d.check_now(5000).await;
    assert_eq!(d.status().current_operation, Status::Idle);
    assert_eq!(
        w.table(),
        "A: priority=1 tries=0 successful=1 / B: priority=2 tries=0 successful=1"
    );
    assert_eq!(w.events("n1").last(), Some(&(3, 2, None)));
    let inst = w.server.instance("machine-n1").unwrap();
    assert_eq!(
        (inst.status, inst.version.as_str()),
        (InstanceStatus::Complete, "766.3.0")
    );
    // and stays on B
    assert_eq!(w.boot(&root, 6000).slots().active(), Slot::B);
}

#[tokio::test]
async fn failed_health_check_rolls_back_and_is_reported() {
    let w = World::new().await;
    w.publish("766.3.0", "stable", &payload_bytes(100_000, 2), None, None);
    let root = w.node("n2", "723.3.0", "stable", true);
    let mut d = w.boot(&root, 1000);
    d.check_now(1000).await;
    assert_eq!(d.status().current_operation, Status::UpdatedNeedReboot);

    // Boot B, but the health check fails: B is never marked good, no check runs.
    StateStore::new(&root).simulate_reboot().unwrap();
    w.set_release(&root, "766.3.0");
    let d = w.boot(&root, 5000);
    assert_eq!(d.slots().active(), Slot::B);
    let mut d = d.with_health_check(Box::new(|| Err("etcd member unhealthy".into())));
    d.check_now(5000).await;
    assert!(d.last_error().unwrap().contains("etcd member unhealthy"));
    let before = w.events("n2").len();
    assert_eq!(before, 3, "nothing reported from an unhealthy boot");

    // Next boot falls back to A; the first check reports error 44.
    StateStore::new(&root).simulate_reboot().unwrap();
    w.set_release(&root, "723.3.0");
    let mut d = w.boot(&root, 9000);
    assert_eq!(d.slots().active(), Slot::A);
    assert_eq!(w.slot_bytes(Slot::A, OLD_USR.len()), OLD_USR);
    let t = d.next_wakeup();
    d.tick(t).await;
    assert_eq!(w.events("n2")[3], (3, 0, Some(44)));
    let inst = w.server.instance("machine-n2").unwrap();
    assert_eq!(inst.last_error, Some(44));
    assert_eq!(inst.version, "723.3.0");
}

async fn failing_update(w: &World, name: &str, trust: bool) -> (Driver<GptSlots>, u32) {
    let root = w.node(name, "723.3.0", "stable", trust);
    let mut d = w.boot(&root, 1000);
    d.check_now(1000).await;
    assert_eq!(
        d.status().current_operation,
        Status::Idle,
        "{:?}",
        d.status()
    );
    w.assert_usr_a_untouched();
    let last = *w.events(name).last().unwrap();
    assert_eq!((last.0, last.1), (3, 0), "{:?}", w.events(name));
    (d, last.2.unwrap())
}

#[tokio::test]
async fn tampered_payload_is_rejected() {
    let w = World::new().await;
    let good = payload_bytes(200_000, 3);
    let mut bad = good.clone();
    bad[100_000] ^= 0x40;
    w.publish("766.3.0", "stable", &good, None, Some(&bad));
    let (d, code) = failing_update(&w, "t1", true).await;
    assert_eq!(code, 10);
    assert!(
        d.last_error().unwrap().contains("SHA-256 mismatch"),
        "{:?}",
        d.last_error()
    );
}

#[tokio::test]
async fn wrong_signature_is_rejected() {
    let w = World::new().await;
    let other_dir = w.dir.path().join("otherkeys");
    write_keypair(&other_dir, "evil").unwrap();
    let evil = SigningKey::load(&other_dir.join("evil.key")).unwrap();
    w.publish(
        "766.3.0",
        "stable",
        &payload_bytes(1000, 4),
        Some(&evil),
        None,
    );
    let (d, code) = failing_update(&w, "t2", true).await;
    assert_eq!(code, 18);
    assert!(
        d.last_error().unwrap().contains("trusted key"),
        "{:?}",
        d.last_error()
    );
}

#[tokio::test]
async fn missing_key_is_an_error_not_a_skipped_check() {
    let w = World::new().await;
    w.publish("766.3.0", "stable", &payload_bytes(1000, 5), None, None);
    let (d, code) = failing_update(&w, "t3", false).await;
    assert_eq!(code, 18);
    assert!(
        d.last_error().unwrap().contains("no trusted update key"),
        "{:?}",
        d.last_error()
    );
}

#[tokio::test]
async fn truncated_payload_is_rejected() {
    let w = World::new().await;
    let good = payload_bytes(500_000, 6);
    w.publish("766.3.0", "stable", &good, None, Some(&good[..250_000]));
    let (d, code) = failing_update(&w, "t4", true).await;
    assert_eq!(code, 11);
    assert!(
        d.last_error().unwrap().contains("size mismatch"),
        "{:?}",
        d.last_error()
    );
}

#[tokio::test]
async fn interrupted_download_resumes() {
    let w = World::new().await;
    let payload = payload_bytes(NEW_LEN, 7);
    w.publish("766.3.0", "stable", &payload, None, None);
    w.server.set_faults(Faults {
        cut_payload_after: Some(1_000_000),
        ..Default::default()
    });
    let root = w.node("r1", "723.3.0", "stable", true);
    let mut d = w.boot(&root, 1000);
    d.check_now(1000).await;
    assert_eq!(
        d.status().current_operation,
        Status::UpdatedNeedReboot,
        "{:?}",
        d.last_error()
    );
    assert_eq!(w.slot_bytes(Slot::B, NEW_LEN), payload);
}

#[tokio::test]
async fn server_errors_and_malformed_xml() {
    let w = World::new().await;
    w.publish("766.3.0", "stable", &payload_bytes(1000, 8), None, None);
    let root = w.node("s1", "723.3.0", "stable", true);
    let mut d = w.boot(&root, 1000);

    w.server.set_faults(Faults {
        omaha_status: Some(503),
        ..Default::default()
    });
    d.check_now(1000).await;
    assert_eq!(d.status().current_operation, Status::Idle);
    assert_eq!(d.status().last_checked_time, 0);
    assert!(d.next_wakeup() >= 1000 + 45 * 60, "backs off");

    w.server.set_faults(Faults {
        omaha_body: Some("<response protocol=\"3.0\"><app".into()),
        ..Default::default()
    });
    d.check_now(2000).await;
    assert_eq!(d.status().current_operation, Status::Idle);
    assert_eq!(d.status().last_checked_time, 0);
    assert!(d
        .history()
        .iter()
        .any(|s| s.current_operation == Status::ReportingErrorEvent));

    w.server.set_faults(Faults::default());
    w.assert_usr_a_untouched();
    d.check_now(3000).await;
    assert_eq!(d.status().current_operation, Status::UpdatedNeedReboot);
}

#[tokio::test]
async fn channel_switch_from_the_book() {
    let w = World::new().await;
    w.publish("766.3.0", "stable", &payload_bytes(1000, 9), None, None);
    w.publish("808.0.0", "alpha", &payload_bytes(1000, 10), None, None);
    // GROUP=alpha after a restart: the next check moves to the newest alpha.
    let root = w.node("c1", "723.3.0", "alpha", true);
    let mut d = w.boot(&root, 1000);
    d.check_now(1000).await;
    assert_eq!(d.status().new_version, "808.0.0");
    assert_eq!(d.status().current_operation, Status::UpdatedNeedReboot);

    // A machine on alpha 808.0.0 switching to stable (766.3.0) is never downgraded.
    let root = w.node("c2", "808.0.0", "stable", true);
    let mut d = w.boot(&root, 1000);
    d.check_now(1000).await;
    assert_eq!(d.status().current_operation, Status::Idle);
    assert_eq!(w.server.instance("machine-c2").unwrap().group, "stable");
}
