//! The reference's example configurations (cloud-config.md §8, E1–E12) as
//! test data: the drop-ins, environment, files and unit actions each must
//! produce, byte for byte.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use keelson_cloudconfig::{
    plan, validate, CloudConfig, EnvVar, Metadata, NoFiles, Plan, Step, UnitCommand,
};

const TOKEN: &str = "0cbf57ced1c56ac028af8ce7e32264ba";

fn data(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .replace("<token>", TOKEN)
}

/// The book's image: `/usr/share/coreos/update.conf` is `GROUP=alpha`.
fn alpha_image() -> HashMap<PathBuf, Vec<u8>> {
    HashMap::from([(
        PathBuf::from("/usr/share/coreos/update.conf"),
        b"GROUP=alpha\n".to_vec(),
    )])
}

fn plan_for(name: &str, addr: &str) -> Plan {
    let md = Metadata::ipv4(addr);
    let cfg = CloudConfig::parse_with(&data(name), &md).unwrap_or_else(|e| panic!("{name}: {e}"));
    plan(&cfg, &md, &alpha_image()).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn text(plan: &Plan, path: &str) -> String {
    plan.file(path)
        .unwrap_or_else(|| panic!("{path} is not written; plan: {plan:#?}"))
        .text()
}

fn commands(plan: &Plan) -> Vec<String> {
    plan.units
        .commands()
        .iter()
        .map(|(c, u)| format!("{c} {u}"))
        .collect()
}

const ETCD2_DROPIN: &str = "/run/systemd/system/etcd2.service.d/20-cloudinit.conf";
const FLEET_DROPIN: &str = "/run/systemd/system/fleet.service.d/20-cloudinit.conf";

#[test]
fn every_example_validates_cleanly() {
    for name in [
        "e1.yaml",
        "e2.yaml",
        "e3.yaml",
        "e4-master.yaml",
        "e4-worker.yaml",
        "e5.yaml",
        "e6.yaml",
        "e7.yaml",
        "e9.yaml",
        "e10.yaml",
        "e11.yaml",
        "e12.yaml",
    ] {
        let report = validate(&data(name));
        assert!(report.is_empty(), "{name}: {report}");
        assert_eq!(report.exit_code(), 0);
    }
}

#[test]
fn e1_single_node() {
    let p = plan_for("e1.yaml", "172.17.8.101");
    assert_eq!(
        text(&p, ETCD2_DROPIN),
        "[Service]\n\
         Environment=\"ETCD_ADVERTISE_CLIENT_URLS=http://172.17.8.101:2379\"\n\
         Environment=\"ETCD_INITIAL_ADVERTISE_PEER_URLS=http://172.17.8.101:2380\"\n\
         Environment=\"ETCD_INITIAL_CLUSTER=etcdserver=http://172.17.8.101:2380\"\n\
         Environment=\"ETCD_INITIAL_CLUSTER_STATE=new\"\n\
         Environment=\"ETCD_INITIAL_CLUSTER_TOKEN=etcd-cluster-1\"\n\
         Environment=\"ETCD_LISTEN_CLIENT_URLS=http://0.0.0.0:2379,http://0.0.0.0:4001\"\n\
         Environment=\"ETCD_LISTEN_PEER_URLS=http://172.17.8.101:2380,http://172.17.8.101:7001\"\n\
         Environment=\"ETCD_NAME=etcdserver\"\n"
    );
    assert_eq!(
        text(&p, FLEET_DROPIN),
        "[Service]\nEnvironment=\"FLEET_METADATA=role=services\"\nEnvironment=\"FLEET_PUBLIC_IP=172.17.8.101\"\n"
    );
    assert_eq!(
        text(&p, "/run/flannel/options.env"),
        "FLANNELD_IFACE=172.17.8.101"
    );
    assert_eq!(
        text(&p, "/etc/coreos/update.conf"),
        "GROUP=alpha\nREBOOT_STRATEGY=etcd-lock\n"
    );
    assert_eq!(
        text(&p, "/etc/systemd/system/flanneld.service.d/50-network-config.conf"),
        "[Service]\nExecStartPre=/usr/bin/etcdctl set /coreos.com/network/config '{ \"Network\": \"10.1.0.0/16\" }'\n"
    );
    assert_eq!(
        text(&p, "/etc/systemd/system/docker-tcp.socket"),
        "[Unit]\nDescription=Docker Socket for the API\n[Socket]\nListenStream=2375\nService=docker.service\nBindIPv6Only=both\n[Install]\nWantedBy=sockets.target\n"
    );
    let motd = p.file("/etc/motd").unwrap();
    assert_eq!(motd.text(), "--- My CoreOS Cluster ---\n");
    assert_eq!(motd.mode, 0o644);
    assert_eq!(motd.owner.as_deref(), Some("root"));
    assert_eq!(
        text(&p, "/etc/environment"),
        "COREOS_PRIVATE_IPV4=172.17.8.101\nCOREOS_PUBLIC_IPV4=172.17.8.101\n"
    );
    // Files in coreos-cloudinit's order.
    let files: Vec<_> = p
        .files
        .iter()
        .map(|f| f.path.display().to_string())
        .collect();
    assert_eq!(
        files,
        [
            "/etc/motd",
            "/etc/coreos/update.conf",
            "/run/flannel/options.env",
            "/etc/environment"
        ]
    );
    // Units: every file, then one reload, then the commands in list order.
    assert_eq!(
        p.units.describe(),
        [
            "write /etc/systemd/system/flanneld.service.d/50-network-config.conf",
            "write /etc/systemd/system/docker-tcp.socket",
            "enable docker-tcp.socket",
            "write /run/systemd/system/etcd2.service.d/20-cloudinit.conf",
            "write /run/systemd/system/fleet.service.d/20-cloudinit.conf",
            "daemon-reload",
            "start etcd2.service",
            "start fleet.service",
            "start flanneld.service",
            "start docker-tcp.socket",
            "restart locksmithd.service",
        ]
    );
    let links = p
        .units
        .steps
        .iter()
        .find_map(|s| match s {
            Step::Enable { links, .. } => Some(links.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(links.len(), 1);
    assert_eq!(
        links[0].path,
        Path::new("/etc/systemd/system/sockets.target.wants/docker-tcp.socket")
    );
    assert_eq!(
        links[0].target,
        Path::new("/etc/systemd/system/docker-tcp.socket")
    );
}

#[test]
fn e1_programmatic_environment_for_the_daemons() {
    let md = Metadata::ipv4("172.17.8.101");
    let cfg = CloudConfig::parse_with(&data("e1.yaml"), &md).unwrap();
    let services = cfg.services();
    let names: Vec<_> = services
        .iter()
        .map(|s| (s.section.as_str(), s.unit.as_str()))
        .collect();
    assert_eq!(
        names,
        [
            ("etcd2", "etcd2.service"),
            ("fleet", "fleet.service"),
            ("flannel", "flanneld.service")
        ]
    );
    assert_eq!(
        cfg.service_env("flannel"),
        vec![EnvVar::new("FLANNELD_IFACE", "172.17.8.101")]
    );
    assert_eq!(
        cfg.service_env("fleet"),
        vec![
            EnvVar::new("FLEET_METADATA", "role=services"),
            EnvVar::new("FLEET_PUBLIC_IP", "172.17.8.101"),
        ]
    );
    let etcd = cfg.service_env("etcd2");
    assert_eq!(etcd.len(), 8);
    assert_eq!(etcd[7], EnvVar::new("ETCD_NAME", "etcdserver"));
    assert_eq!(
        cfg.coreos.update.reboot_strategy.as_deref(),
        Some("etcd-lock")
    );
    assert!(cfg.service_env("locksmith").is_empty());
}

#[test]
fn e2_static_node_1() {
    let p = plan_for("e2.yaml", "172.17.8.101");
    assert_eq!(
        text(&p, ETCD2_DROPIN),
        "[Service]\n\
         Environment=\"ETCD_ADVERTISE_CLIENT_URLS=http://172.17.8.101:2379\"\n\
         Environment=\"ETCD_INITIAL_ADVERTISE_PEER_URLS=http://172.17.8.101:2380\"\n\
         Environment=\"ETCD_INITIAL_CLUSTER=core-01=http://172.17.8.101:2380,core-02=http://172.17.8.102:2380,core-03=http://172.17.8.103:2380\"\n\
         Environment=\"ETCD_INITIAL_CLUSTER_STATE=new\"\n\
         Environment=\"ETCD_INITIAL_CLUSTER_TOKEN=etcd-cluster-1\"\n\
         Environment=\"ETCD_LISTEN_CLIENT_URLS=http://172.17.8.101:2379,http://127.0.0.1:2379\"\n\
         Environment=\"ETCD_LISTEN_PEER_URLS=http://172.17.8.101:2380\"\n\
         Environment=\"ETCD_NAME=core-01\"\n"
    );
    assert_eq!(
        text(&p, FLEET_DROPIN),
        "[Service]\nEnvironment=\"FLEET_PUBLIC_IP=172.17.8.101\"\n"
    );
    assert_eq!(
        text(&p, "/run/flannel/options.env"),
        "FLANNELD_IFACE=172.17.8.101"
    );
    assert_eq!(commands(&p), ["start etcd2.service", "start fleet.service"]);
    assert!(p.units.describe().contains(&"daemon-reload".to_string()));
    // No update section: update.conf is left alone.
    assert!(p.file("/etc/coreos/update.conf").is_none());
}

#[test]
fn e3_discovery() {
    let p = plan_for("e3.yaml", "172.17.8.101");
    assert_eq!(
        text(&p, ETCD2_DROPIN),
        "[Service]\n\
         Environment=\"ETCD_ADVERTISE_CLIENT_URLS=http://172.17.8.101:2379\"\n\
         Environment=\"ETCD_DISCOVERY=https://discovery.etcd.io/9a6b7af06c8a677b4e5f76ae9ce0da9c\"\n\
         Environment=\"ETCD_INITIAL_ADVERTISE_PEER_URLS=http://172.17.8.101:2380\"\n\
         Environment=\"ETCD_LISTEN_CLIENT_URLS=http://0.0.0.0:2379,http://0.0.0.0:4001\"\n\
         Environment=\"ETCD_LISTEN_PEER_URLS=http://172.17.8.101:2380,http://172.17.8.101:7001\"\n"
    );
    // The same file on another node yields that node's addresses.
    let p2 = plan_for("e3.yaml", "172.17.8.102");
    assert!(text(&p2, ETCD2_DROPIN)
        .contains("ETCD_LISTEN_PEER_URLS=http://172.17.8.102:2380,http://172.17.8.102:7001"));
}

#[test]
fn e4_master_and_proxy_worker() {
    let m = plan_for("e4-master.yaml", "172.17.8.101");
    assert_eq!(
        text(&m, ETCD2_DROPIN),
        "[Service]\n\
         Environment=\"ETCD_ADVERTISE_CLIENT_URLS=http://172.17.8.101:2379\"\n\
         Environment=\"ETCD_DISCOVERY=https://discovery.etcd.io/d49bac8527395e2a7346e694124c8222\"\n\
         Environment=\"ETCD_INITIAL_ADVERTISE_PEER_URLS=http://172.17.8.101:2380\"\n\
         Environment=\"ETCD_LISTEN_CLIENT_URLS=http://0.0.0.0:2379,http://0.0.0.0:4001\"\n\
         Environment=\"ETCD_LISTEN_PEER_URLS=http://172.17.8.101:2380,http://172.17.8.101:7001\"\n"
    );
    assert_eq!(
        text(&m, FLEET_DROPIN),
        "[Service]\nEnvironment=\"FLEET_METADATA=role=master\"\nEnvironment=\"FLEET_PUBLIC_IP=172.17.8.101\"\n"
    );
    let w = plan_for("e4-worker.yaml", "172.17.8.104");
    // `proxy: on` arrives as the string "on", not a boolean.
    assert_eq!(
        text(&w, ETCD2_DROPIN),
        "[Service]\n\
         Environment=\"ETCD_DISCOVERY=https://discovery.etcd.io/d49bac8527395e2a7346e694124c8222\"\n\
         Environment=\"ETCD_LISTEN_CLIENT_URLS=http://0.0.0.0:2379,http://0.0.0.0:4001\"\n\
         Environment=\"ETCD_PROXY=on\"\n"
    );
    // `etcd_servers` (underscore) is `etcd-servers`.
    assert_eq!(
        text(&w, FLEET_DROPIN),
        "[Service]\nEnvironment=\"FLEET_ETCD_SERVERS=http://localhost:2379\"\nEnvironment=\"FLEET_PUBLIC_IP=172.17.8.104\"\n"
    );
    assert_eq!(commands(&w), ["start etcd2.service", "start fleet.service"]);
}

#[test]
fn e4_static_proxy_variant_orders_and_validates() {
    let text_ = "#cloud-config\ncoreos:\n  etcd2:\n    proxy: on\n    listen-client-urls: http://localhost:2379\n    initial-cluster: etcdserver=http://172.17.8.101:2380, http://172.17.8.102:2380, http://172.17.8.103:2380\n";
    let cfg = CloudConfig::parse(text_).unwrap();
    let names: Vec<_> = cfg
        .service_env("etcd2")
        .into_iter()
        .map(|v| v.name)
        .collect();
    assert_eq!(
        names,
        [
            "ETCD_INITIAL_CLUSTER",
            "ETCD_LISTEN_CLIENT_URLS",
            "ETCD_PROXY"
        ]
    );
    // Keelson validates initial-cluster and points at each bad element.
    assert_eq!(
        validate(text_).to_string(),
        "line 6: error: initial_cluster element 2 (\"http://172.17.8.102:2380\") is not name=URL\n\
         line 6: error: initial_cluster element 3 (\"http://172.17.8.103:2380\") is not name=URL\n"
    );
}

#[test]
fn e5_flannel_vxlan_drop_in() {
    let p = plan_for("e5.yaml", "172.17.8.101");
    assert!(text(&p, ETCD2_DROPIN)
        .contains(&format!("ETCD_DISCOVERY=https://discovery.etcd.io/{TOKEN}")));
    assert_eq!(
        text(&p, FLEET_DROPIN),
        "[Service]\nEnvironment=\"FLEET_PUBLIC_IP=172.17.8.101\"\n"
    );
    assert_eq!(
        text(&p, "/run/flannel/options.env"),
        "FLANNELD_IFACE=172.17.8.101"
    );
    assert_eq!(
        text(&p, "/etc/systemd/system/flanneld.service.d/50-network-config.conf"),
        "[Service]\nExecStartPre=/usr/bin/etcdctl set /coreos.com/network/config '{ \"Network\": \"10.1.0.0/16\", \"Backend\": {\"Type\": \"vxlan\"}}'\n"
    );
    assert_eq!(
        commands(&p),
        [
            "start etcd2.service",
            "start fleet.service",
            "start flanneld.service"
        ]
    );
}

#[test]
fn e6_rkt_cni_write_files() {
    let p = plan_for("e6.yaml", "172.17.8.101");
    let f = p.file("/etc/rkt/net.d/10-containernet.conf").unwrap();
    assert_eq!(
        f.text(),
        "{\n  \"name\": \"containernet\",\n  \"type\": \"flannel\"\n}\n"
    );
    assert_eq!(f.mode, 0o644);
    assert_eq!(f.owner.as_deref(), Some("root"));
    assert!(text(
        &p,
        "/etc/systemd/system/flanneld.service.d/50-network-config.conf"
    )
    .contains("'{ \"network\": \"10.1.0.0/16\" }'"));
}

#[test]
fn e7_underscore_keys() {
    let p = plan_for("e7.yaml", "172.17.8.104");
    assert_eq!(
        text(&p, ETCD2_DROPIN),
        "[Service]\n\
         Environment=\"ETCD_ADVERTISE_CLIENT_URLS=http://172.17.8.104:2379\"\n\
         Environment=\"ETCD_INITIAL_ADVERTISE_PEER_URLS=http://172.17.8.104:2380\"\n\
         Environment=\"ETCD_INITIAL_CLUSTER=core-01=http://172.17.8.101:2380,core-02=http://172.17.8.102:2380,core-03=http://172.17.8.103:2380,core-04=http://172.17.8.104:2380\"\n\
         Environment=\"ETCD_INITIAL_CLUSTER_STATE=existing\"\n\
         Environment=\"ETCD_LISTEN_CLIENT_URLS=http://0.0.0.0:2379,http://0.0.0.0:4001\"\n\
         Environment=\"ETCD_LISTEN_PEER_URLS=http://172.17.8.104:2380,http://172.17.8.104:7001\"\n\
         Environment=\"ETCD_NAME=core-04\"\n"
    );
}

#[test]
fn e8_tls_drop_in_and_its_warnings() {
    let p = plan_for("e8.yaml", "172.17.8.101");
    let user_drop_in = p
        .file("/run/systemd/system/etcd2.service.d/30-configuration.conf")
        .unwrap();
    assert_eq!(user_drop_in.mode, 0o644);
    assert!(user_drop_in
        .text()
        .starts_with("[Service]\nEnvironment=ETCD_NAME=core-01\nEnvironment=ETCD_VERBOSE=1\n"));
    // The user's 30- drop-in sorts after the generated 20- one and so wins.
    assert!("30-configuration.conf" > "20-cloudinit.conf");
    assert!(
        text(&p, ETCD2_DROPIN).contains("ETCD_INITIAL_CLUSTER=core-01=http://172.17.8.101:2380")
    );
    assert_eq!(p.file("/home/core/server.key").unwrap().mode, 0o644);
    assert_eq!(commands(&p), ["start etcd2.service"]);
    // Keelson warns about the world-readable key and http:// with TLS.
    assert_eq!(
        validate(&data("e8.yaml")).to_string(),
        "line 25: warning: \"/home/core/server.key\" holds a private key but is readable by everyone (permissions 0644)\n\
         line 35: warning: \"advertise_client_urls\" uses http:// while etcd2 is given TLS certificates\n\
         line 39: warning: \"listen_client_urls\" uses http:// while etcd2 is given TLS certificates\n"
    );
}

#[test]
fn e9_update_channel_and_strategy() {
    let p = plan_for("e9.yaml", "172.17.8.101");
    assert_eq!(
        text(&p, "/etc/coreos/update.conf"),
        "GROUP=stable\nREBOOT_STRATEGY=etcd-lock\n"
    );
    assert_eq!(
        commands(&p),
        [
            "start etcd2.service",
            "start fleet.service",
            "restart locksmithd.service",
            "restart update-engine.service"
        ]
    );
    // An existing /etc/coreos/update.conf is the starting point.
    let md = Metadata::ipv4("172.17.8.101");
    let cfg = CloudConfig::parse_with(&data("e9.yaml"), &md).unwrap();
    let mut current = alpha_image();
    current.insert(
        PathBuf::from("/etc/coreos/update.conf"),
        b"GROUP=beta\nSERVER=https://example.invalid/v1/update/\n".to_vec(),
    );
    let p = plan(&cfg, &md, &current).unwrap();
    assert_eq!(
        p.file("/etc/coreos/update.conf").unwrap().text(),
        "GROUP=stable\nSERVER=https://example.invalid/v1/update/\nREBOOT_STRATEGY=etcd-lock\n"
    );
}

#[test]
fn e9_reboot_strategy_off_stops_and_masks_locksmithd() {
    let text_ = data("e9.yaml").replace("reboot-strategy: \"etcd-lock\"", "reboot-strategy: off");
    let md = Metadata::ipv4("172.17.8.101");
    let cfg = CloudConfig::parse_with(&text_, &md).unwrap();
    assert_eq!(cfg.coreos.update.reboot_strategy.as_deref(), Some("off"));
    let p = plan(&cfg, &md, &alpha_image()).unwrap();
    assert_eq!(
        text(&p, "/etc/coreos/update.conf"),
        "GROUP=stable\nREBOOT_STRATEGY=off\n"
    );
    let mask = p
        .units
        .steps
        .iter()
        .find_map(|s| match s {
            Step::Mask {
                unit,
                runtime,
                link,
                ..
            } => Some((unit.clone(), *runtime, link.clone())),
            _ => None,
        })
        .expect("locksmithd is masked");
    assert_eq!(mask.0, "locksmithd.service");
    assert!(mask.1, "runtime mask");
    assert_eq!(
        mask.2.path,
        Path::new("/run/systemd/system/locksmithd.service")
    );
    assert_eq!(mask.2.target, Path::new("/dev/null"));
    assert_eq!(
        commands(&p),
        [
            "start etcd2.service",
            "start fleet.service",
            "stop locksmithd.service",
            "restart update-engine.service"
        ]
    );
}

#[test]
fn e10_runtime_units_and_script() {
    let p = plan_for("e10.yaml", "172.17.8.101");
    let script = p.file("/tmp/ip.sh").unwrap();
    assert_eq!(script.mode, 0o755);
    let body = script.text();
    assert!(body.starts_with("#!/bin/sh\nget_ipv4() {\n    IFACE=\"${1}\"\n"));
    assert!(body.contains("ip=$(ip -4 -o addr show dev \"${IFACE}\" scope global"));
    assert_eq!(
        text(&p, "/run/systemd/system/populate-ips.service"),
        "[Service]\nType=oneshot\nExecStart=/tmp/ip.sh\n"
    );
    let custom = text(&p, "/run/systemd/system/etcd2.service.d/custom.conf");
    assert!(custom.contains("ExecStart=\nExecStart=/usr/bin/etcd2 --initial-advertise-peer-urls=http://${IPV4_PRIVATE}:2380"));
    assert!(p.file(ETCD2_DROPIN).is_none(), "no coreos.etcd2 section");
    assert_eq!(
        p.units.describe(),
        [
            "write /run/systemd/system/populate-ips.service",
            "write /run/systemd/system/etcd2.service.d/custom.conf",
            "daemon-reload",
            "start populate-ips.service",
            "start etcd2.service",
            "start fleet.service",
        ]
    );
}

#[test]
fn e11_hyphenated_write_files_mount_and_enable() {
    let p = plan_for("e11.yaml", "172.17.8.101");
    let nfs = p.file("/etc/conf.d/nfs").unwrap();
    assert_eq!(nfs.text(), "OPTS_RPC_MOUNTD=\"\"\n");
    assert_eq!(nfs.mode, 0o644);
    assert_eq!(
        text(&p, "/etc/systemd/system/mnt-data.mount"),
        "[Mount]\nWhat=172.17.8.110:/var/nfs\nWhere=/mnt/data\nType=nfs\nOptions=vers=3,sec=sys,noauto\n"
    );
    assert!(p
        .units
        .describe()
        .contains(&"enable rpc-statd.service".to_string()));
    assert_eq!(
        commands(&p),
        [
            "start etcd2.service",
            "start fleet.service",
            "start rpc-statd.service",
            "start mnt-data.mount"
        ]
    );
}

#[test]
fn e12_socket_enable_yes() {
    let md = Metadata::default();
    let cfg = CloudConfig::parse_with(&data("e12.yaml"), &md).unwrap();
    assert!(cfg.coreos.units[0].enable, "`enable: yes` is true");
    let p = plan(&cfg, &md, &NoFiles).unwrap();
    let unit = text(&p, "/etc/systemd/system/systemd-journal-gatewayd.socket");
    assert!(unit.starts_with("[Unit]\nDescription=Journal Gateway Service Socket\n"));
    let enable = p
        .units
        .steps
        .iter()
        .find_map(|s| match s {
            Step::Enable { links, runtime, .. } => Some((links.clone(), *runtime)),
            _ => None,
        })
        .unwrap();
    assert!(!enable.1);
    assert_eq!(
        enable.0[0].path,
        Path::new("/etc/systemd/system/sockets.target.wants/systemd-journal-gatewayd.socket")
    );
    assert_eq!(
        p.units.steps.last(),
        Some(&Step::Command {
            unit: "systemd-journal-gatewayd.socket".into(),
            command: UnitCommand::Start
        })
    );
}

#[test]
fn hyphens_and_underscores_are_the_same_keys() {
    let hyphen = "#cloud-config\nwrite-files:\n  - path: /etc/x\n    content: y\ncoreos:\n  etcd2:\n    initial-cluster-state: existing\n    advertise-client-urls: http://a:2379\n  update:\n    reboot-strategy: reboot\n  units:\n    - name: a.service\n      drop-ins:\n        - name: x.conf\n          content: z\nssh-authorized-keys:\n  - ssh-rsa AAA\n";
    let underscore = hyphen
        .replace("write-files", "write_files")
        .replace("initial-cluster-state", "initial_cluster_state")
        .replace("advertise-client-urls", "advertise_client_urls")
        .replace("reboot-strategy", "reboot_strategy")
        .replace("drop-ins", "drop_ins")
        .replace("ssh-authorized-keys", "ssh_authorized_keys");
    assert_ne!(hyphen, underscore);
    let a = CloudConfig::parse(hyphen).unwrap();
    let b = CloudConfig::parse(&underscore).unwrap();
    assert_eq!(a, b);
    assert_eq!(a.write_files.len(), 1);
    assert_eq!(a.coreos.units[0].drop_ins[0].name, "x.conf");
    assert_eq!(a.ssh_authorized_keys, ["ssh-rsa AAA"]);
    assert_eq!(
        a.coreos.etcd2.initial_cluster_state.as_deref(),
        Some("existing")
    );
    // Values are never changed.
    let v = CloudConfig::parse("#cloud-config\nhostname: my-host\n").unwrap();
    assert_eq!(v.hostname.as_deref(), Some("my-host"));
}

#[test]
fn substitution_uses_the_callers_values_and_refuses_missing_ones() {
    let md = Metadata {
        public_ipv4: Some("203.0.113.7".into()),
        private_ipv4: Some("10.0.0.7".into()),
        ..Metadata::default()
    };
    let cfg = CloudConfig::parse_with(&data("e3.yaml"), &md).unwrap();
    let env = cfg.service_env("etcd2");
    assert_eq!(
        env[0],
        EnvVar::new("ETCD_ADVERTISE_CLIENT_URLS", "http://203.0.113.7:2379")
    );
    assert_eq!(
        env[2],
        EnvVar::new("ETCD_INITIAL_ADVERTISE_PEER_URLS", "http://10.0.0.7:2380")
    );
    // Without a private address the file is refused, naming the variable and
    // the line of its first use (line 8 of E3), not the comment on line 6.
    let err = CloudConfig::parse_with(
        &data("e3.yaml"),
        &Metadata {
            public_ipv4: Some("203.0.113.7".into()),
            ..Metadata::default()
        },
    )
    .unwrap_err();
    assert_eq!(
        err,
        keelson_cloudconfig::Error::Unresolved {
            line: 8,
            name: "private_ipv4".into()
        }
    );
    // COREOS_* environment variables are the fallback source.
    let from_env =
        Metadata::from_lookup(|k| (k == "COREOS_PUBLIC_IPV4").then(|| "192.0.2.1".to_string()));
    assert_eq!(from_env.public_ipv4.as_deref(), Some("192.0.2.1"));
    assert_eq!(from_env.private_ipv4, None);
}

#[test]
fn type_errors_stop_the_whole_config() {
    let err = CloudConfig::parse(
        "#cloud-config\ncoreos:\n  units:\n    - name: a.service\n      enable: bad\n",
    )
    .unwrap_err();
    assert!(
        matches!(&err, keelson_cloudconfig::Error::Type { line: 5, key, .. } if key == "enable"),
        "{err}"
    );
    let err = CloudConfig::parse("cloud-config\n").unwrap_err();
    assert!(err.to_string().contains("leading '#' is missing"), "{err}");
}

/// Carry out a plan's writes and links under `root`, as a driver would.
fn carry_out(root: &Path, p: &Plan) {
    keelson_cloudconfig::write_files(root, &p.files).unwrap();
    for step in &p.units.steps {
        match step {
            Step::Write(w) => {
                keelson_cloudconfig::write_file(root, w).unwrap();
            }
            Step::Enable { links, .. } => {
                for l in links {
                    let host = root.join(l.path.strip_prefix("/").unwrap());
                    std::fs::create_dir_all(host.parent().unwrap()).unwrap();
                    let _ = std::fs::remove_file(&host);
                    std::os::unix::fs::symlink(&l.target, &host).unwrap();
                }
            }
            _ => {}
        }
    }
}

#[test]
fn reapplying_writes_nothing_and_reloads_nothing() {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("usr/share/coreos")).unwrap();
    std::fs::write(
        root.path().join("usr/share/coreos/update.conf"),
        "GROUP=alpha\n",
    )
    .unwrap();
    let md = Metadata::ipv4("172.17.8.101");
    let cfg = CloudConfig::parse_with(&data("e1.yaml"), &md).unwrap();
    let current = keelson_cloudconfig::RootDir(root.path().to_path_buf());
    let first = plan(&cfg, &md, &current).unwrap();
    carry_out(root.path(), &first);
    assert_eq!(
        std::fs::read_link(
            root.path()
                .join("etc/systemd/system/sockets.target.wants/docker-tcp.socket")
        )
        .unwrap(),
        Path::new("/etc/systemd/system/docker-tcp.socket")
    );
    assert_eq!(
        std::fs::read_to_string(
            root.path()
                .join("run/systemd/system/etcd2.service.d/20-cloudinit.conf")
        )
        .unwrap(),
        text(&first, ETCD2_DROPIN)
    );
    let second = plan(&cfg, &md, &current).unwrap();
    assert!(
        second.units.writes().is_empty(),
        "{:?}",
        second.units.describe()
    );
    assert!(!second.units.steps.contains(&Step::DaemonReload));
    assert!(
        second.file("/etc/environment").is_none(),
        "environment unchanged"
    );
    // update.conf now merges from the node's own file.
    assert_eq!(
        second.file("/etc/coreos/update.conf").unwrap().text(),
        "GROUP=alpha\nREBOOT_STRATEGY=etcd-lock\n"
    );
    assert_eq!(commands(&second), commands(&first));
    // Changing the fleet metadata rewrites only the fleet drop-in (C3).
    let changed = data("e1.yaml").replace("role=services", "role=db");
    let cfg2 = CloudConfig::parse_with(&changed, &md).unwrap();
    let third = plan(&cfg2, &md, &current).unwrap();
    assert_eq!(
        third.units.describe()[..2],
        [
            "write /run/systemd/system/fleet.service.d/20-cloudinit.conf".to_string(),
            "daemon-reload".to_string()
        ]
    );
}

#[test]
fn values_needing_systemd_escapes_are_escaped() {
    let cfg = CloudConfig::parse(
        "#cloud-config\ncoreos:\n  fleet:\n    metadata: 'role=\"a\",pct=50%'\n",
    )
    .unwrap();
    let p = plan(&cfg, &Metadata::default(), &NoFiles).unwrap();
    assert_eq!(
        text(&p, FLEET_DROPIN),
        "[Service]\nEnvironment=\"FLEET_METADATA=role=\\\"a\\\",pct=50%%\"\n"
    );
    // The programmatic form keeps the value as written.
    assert_eq!(cfg.service_env("fleet")[0].value, "role=\"a\",pct=50%");
}

#[test]
fn bad_unit_entries_are_refused_with_the_entry_named() {
    for (yaml, needle) in [
        ("    - name: ../../etc/shadow\n      content: x\n", "file name"),
        ("    - name: a.service\n      command: launch\n", "unknown command \"launch\""),
        (
            "    - name: a.service\n      drop-ins:\n        - name: ../x.conf\n          content: y\n",
            "drop-in name",
        ),
    ] {
        let text_ = format!("#cloud-config\ncoreos:\n  units:\n{yaml}");
        let cfg = CloudConfig::parse(&text_).unwrap();
        let err = plan(&cfg, &Metadata::default(), &NoFiles).unwrap_err();
        assert!(err.to_string().contains(needle), "{err}");
        assert!(err.to_string().contains("coreos.units entry 0"), "{err}");
        assert!(!validate(&text_).is_empty(), "validator flags it too: {text_}");
    }
}

#[test]
fn network_units_restart_networkd_instead_of_their_command() {
    let cfg = CloudConfig::parse(
        "#cloud-config\ncoreos:\n  units:\n    - name: 40-eth1.network\n      runtime: true\n      command: start\n      content: |\n        [Match]\n        Name=eth1\n",
    )
    .unwrap();
    let p = plan(&cfg, &Metadata::default(), &NoFiles).unwrap();
    assert_eq!(
        p.units.describe(),
        [
            "write /run/systemd/network/40-eth1.network",
            "daemon-reload",
            "restart systemd-networkd.service"
        ]
    );
}

#[test]
fn manage_etc_hosts_and_oem() {
    let cfg = CloudConfig::parse(
        "#cloud-config\nhostname: coreos1\nmanage_etc_hosts: localhost\ncoreos:\n  oem:\n    id: vagrant\n    name: Vagrant\n    version-id: 0.0.1\n    home-url: https://www.vagrantup.com/\n    bug-report-url: https://example.invalid/bugs\n",
    )
    .unwrap();
    let p = plan(&cfg, &Metadata::default(), &NoFiles).unwrap();
    assert_eq!(p.hostname.as_deref(), Some("coreos1"));
    assert_eq!(text(&p, "/etc/hosts"), "127.0.0.1 coreos1\n");
    assert_eq!(
        text(&p, "/etc/oem-release"),
        "ID=vagrant\nVERSION_ID=0.0.1\nNAME=\"Vagrant\"\nHOME_URL=\"https://www.vagrantup.com/\"\nBUG_REPORT_URL=\"https://example.invalid/bugs\"\n"
    );
    let bad = CloudConfig::parse("#cloud-config\nmanage_etc_hosts: yes-please\n").unwrap();
    let err = plan(&bad, &Metadata::default(), &NoFiles).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("Invalid option to manage_etc_hosts"),
        "{err}"
    );
}

/// Every key of a section set at once: the variables come out in the
/// reference's emission order (§4.2, §4.4, §4.6), including the two places
/// where it is not alphabetical, and with each type's formatting.
#[test]
fn every_service_key_in_emission_order() {
    let etcd2_keys = [
        (
            "advertise-client-urls",
            "http://a:2379",
            "ETCD_ADVERTISE_CLIENT_URLS",
        ),
        ("ca-file", "/ca", "ETCD_CA_FILE"),
        ("cert-file", "/cert", "ETCD_CERT_FILE"),
        ("client-cert-auth", "true", "ETCD_CLIENT_CERT_AUTH"),
        ("cors", "http://origin", "ETCD_CORS"),
        ("data-dir", "/var/lib/etcd2", "ETCD_DATA_DIR"),
        ("debug", "yes", "ETCD_DEBUG"),
        ("discovery", "https://d/x", "ETCD_DISCOVERY"),
        ("discovery-fallback", "proxy", "ETCD_DISCOVERY_FALLBACK"),
        ("discovery-srv", "example.com", "ETCD_DISCOVERY_SRV"),
        ("discovery-proxy", "http://p:1", "ETCD_DISCOVERY_PROXY"),
        ("election-timeout", "1000", "ETCD_ELECTION_TIMEOUT"),
        ("force-new-cluster", "on", "ETCD_FORCE_NEW_CLUSTER"),
        ("heartbeat-interval", "100", "ETCD_HEARTBEAT_INTERVAL"),
        (
            "initial-advertise-peer-urls",
            "http://a:2380",
            "ETCD_INITIAL_ADVERTISE_PEER_URLS",
        ),
        ("initial-cluster", "a=http://a:2380", "ETCD_INITIAL_CLUSTER"),
        ("initial-cluster-state", "new", "ETCD_INITIAL_CLUSTER_STATE"),
        ("initial-cluster-token", "t", "ETCD_INITIAL_CLUSTER_TOKEN"),
        ("key-file", "/key", "ETCD_KEY_FILE"),
        (
            "listen-client-urls",
            "http://0.0.0.0:2379",
            "ETCD_LISTEN_CLIENT_URLS",
        ),
        (
            "listen-peer-urls",
            "http://0.0.0.0:2380",
            "ETCD_LISTEN_PEER_URLS",
        ),
        (
            "log-package-levels",
            "etcdserver=DEBUG",
            "ETCD_LOG_PACKAGE_LEVELS",
        ),
        ("max-snapshots", "5", "ETCD_MAX_SNAPSHOTS"),
        ("max-wals", "5", "ETCD_MAX_WALS"),
        ("name", "a", "ETCD_NAME"),
        ("peer-ca-file", "/pca", "ETCD_PEER_CA_FILE"),
        ("peer-cert-file", "/pcert", "ETCD_PEER_CERT_FILE"),
        ("peer-key-file", "/pkey", "ETCD_PEER_KEY_FILE"),
        (
            "peer-client-cert-auth",
            "TRUE",
            "ETCD_PEER_CLIENT_CERT_AUTH",
        ),
        ("peer-trusted-ca-file", "/ptca", "ETCD_PEER_TRUSTED_CA_FILE"),
        ("proxy", "readonly", "ETCD_PROXY"),
        ("proxy-dial-timeout", "1000", "ETCD_PROXY_DIAL_TIMEOUT"),
        ("proxy-failure-wait", "5000", "ETCD_PROXY_FAILURE_WAIT"),
        ("proxy-read-timeout", "0", "ETCD_PROXY_READ_TIMEOUT"),
        (
            "proxy-refresh-interval",
            "30000",
            "ETCD_PROXY_REFRESH_INTERVAL",
        ),
        ("proxy-write-timeout", "5000", "ETCD_PROXY_WRITE_TIMEOUT"),
        ("snapshot-count", "10000", "ETCD_SNAPSHOT_COUNT"),
        ("trusted-ca-file", "/tca", "ETCD_TRUSTED_CA_FILE"),
        ("wal-dir", "/wal", "ETCD_WAL_DIR"),
    ];
    // Written in reverse to show that the file's order does not matter.
    let mut text_ = String::from("#cloud-config\ncoreos:\n  etcd2:\n");
    for (k, v, _) in etcd2_keys.iter().rev() {
        text_.push_str(&format!("    {k}: {v}\n"));
    }
    let cfg = CloudConfig::parse(&text_).unwrap();
    let mut expected = String::from("[Service]\n");
    for (_, v, var) in etcd2_keys {
        let v = match v {
            "yes" | "on" | "TRUE" => "true",
            // Zero integers are left out, as coreos-cloudinit did.
            "0" => continue,
            v => v,
        };
        expected.push_str(&format!("Environment=\"{var}={v}\"\n"));
    }
    let p = plan(&cfg, &Metadata::default(), &NoFiles).unwrap();
    assert_eq!(text(&p, ETCD2_DROPIN), expected);

    let cfg = CloudConfig::parse(
        "#cloud-config\ncoreos:\n  fleet:\n    verify-units: true\n    token-limit: 50\n    public-ip: 10.0.0.1\n    metadata: a=b\n    etcd-servers: http://e:2379\n    etcd-request-timeout: 1.5\n    etcd-key-prefix: /_coreos.com/fleet/\n    etcd-keyfile: /k\n    etcd-certfile: /c\n    etcd-cafile: /ca\n    engine-reconcile-interval: 2\n    disable-engine: false\n    authorized-keys-file: /ak\n    agent-ttl: 30s\n    verbosity: 0\n  locksmith:\n    window-length: 1h\n    window-start: Thu 04:00\n    group: g\n    endpoint: http://e:2379\n",
    )
    .unwrap();
    let p = plan(&cfg, &Metadata::default(), &NoFiles).unwrap();
    assert_eq!(
        text(&p, FLEET_DROPIN),
        "[Service]\n\
         Environment=\"FLEET_AGENT_TTL=30s\"\n\
         Environment=\"FLEET_AUTHORIZED_KEYS_FILE=/ak\"\n\
         Environment=\"FLEET_ENGINE_RECONCILE_INTERVAL=2\"\n\
         Environment=\"FLEET_ETCD_CAFILE=/ca\"\n\
         Environment=\"FLEET_ETCD_CERTFILE=/c\"\n\
         Environment=\"FLEET_ETCD_KEYFILE=/k\"\n\
         Environment=\"FLEET_ETCD_KEY_PREFIX=/_coreos.com/fleet/\"\n\
         Environment=\"FLEET_ETCD_REQUEST_TIMEOUT=1.5\"\n\
         Environment=\"FLEET_ETCD_SERVERS=http://e:2379\"\n\
         Environment=\"FLEET_METADATA=a=b\"\n\
         Environment=\"FLEET_PUBLIC_IP=10.0.0.1\"\n\
         Environment=\"FLEET_TOKEN_LIMIT=50\"\n\
         Environment=\"FLEET_VERIFY_UNITS=true\"\n"
    );
    assert_eq!(
        text(
            &p,
            "/run/systemd/system/locksmithd.service.d/20-cloudinit.conf"
        ),
        "[Service]\n\
         Environment=\"LOCKSMITHD_ENDPOINT=http://e:2379\"\n\
         Environment=\"LOCKSMITHD_GROUP=g\"\n\
         Environment=\"REBOOT_WINDOW_START=Thu 04:00\"\n\
         Environment=\"REBOOT_WINDOW_LENGTH=1h\"\n"
    );
    // The generated drop-ins come after the user's units, in
    // etcd, etcd2, fleet, locksmithd order, all runtime.
    assert_eq!(
        p.units.describe(),
        [
            "write /run/systemd/system/fleet.service.d/20-cloudinit.conf",
            "write /run/systemd/system/locksmithd.service.d/20-cloudinit.conf",
            "daemon-reload"
        ]
    );
}

#[test]
fn legacy_etcd_users_and_keys() {
    let text_ = "#cloud-config\nhostname: node1\nssh_authorized_keys:\n  - ssh-rsa AAAAB3Nza core@laptop\nusers:\n  - name: elroy\n    passwd: $6$5s2u6/jR$un0AvWnqilcgaNB3Mkxd5yYv6mTlWfOoCYHZmfi3LDKVltj.E8XNKEcwWm\n    groups:\n      - sudo\n      - docker\n    ssh-authorized-keys:\n      - ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ elroy\n    no-create-home: yes\n  - gecos: no name\ncoreos:\n  etcd:\n    name: node1\n    addr: $private_ipv4:4001\n    peer-addr: $private_ipv4:7001\n    snapshot: true\n";
    let md = Metadata::ipv4("10.0.0.9");
    let cfg = CloudConfig::parse_with(text_, &md).unwrap();
    let p = plan(&cfg, &md, &NoFiles).unwrap();
    assert_eq!(p.hostname.as_deref(), Some("node1"));
    assert_eq!(p.ssh_authorized_keys, ["ssh-rsa AAAAB3Nza core@laptop"]);
    // The entry without a name is skipped, with a note.
    assert_eq!(p.users.len(), 1);
    let u = &p.users[0];
    assert_eq!(u.name, "elroy");
    assert_eq!(u.groups, ["sudo", "docker"]);
    assert!(u.no_create_home);
    assert!(u.passwd.as_deref().unwrap().starts_with("$6$5s2u6/jR$"));
    assert_eq!(u.ssh_authorized_keys.len(), 1);
    assert!(p.notes.iter().any(|n| n.contains("users[1] has no name")));
    // coreos.etcd is the legacy etcd.service, said so in the notes.
    assert_eq!(
        text(&p, "/run/systemd/system/etcd.service.d/20-cloudinit.conf"),
        "[Service]\n\
         Environment=\"ETCD_ADDR=10.0.0.9:4001\"\n\
         Environment=\"ETCD_NAME=node1\"\n\
         Environment=\"ETCD_PEER_ADDR=10.0.0.9:7001\"\n\
         Environment=\"ETCD_SNAPSHOT=true\"\n"
    );
    assert!(p
        .notes
        .iter()
        .any(|n| n.contains("legacy etcd 0.4 unit etcd.service")));
    assert!(p.file(ETCD2_DROPIN).is_none());
    // The plan is data a driver in another process can read back.
    let json = serde_json::to_string(&p).unwrap();
    let back: Plan = serde_json::from_str(&json).unwrap();
    assert_eq!(back, p);
}
