//! Five `keelson kv` members in five network namespaces joined by veth
//! pairs on a bridge (topology T3). The leader and one follower are cut
//! off from the other three with blackhole routes: the minority refuses
//! writes with error 300, the majority elects a leader and goes on; after
//! healing every member has the same index and the same store.
//!
//! Needs root (CAP_NET_ADMIN); it fails, never skips, without it. The
//! namespaces, bridge and processes are the test's own and are removed
//! even when it fails.

mod cluster_support;

use std::process::Command;
use std::time::Duration;

use cluster_support::*;

fn ip(args: &[&str]) {
    let o = Command::new("ip").args(args).output().expect("ip runs");
    assert!(
        o.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// The bridge and namespaces; removed on drop.
struct Net {
    bridge: String,
    namespaces: Vec<String>,
    prefix: String,
}

impl Net {
    fn create(n: usize) -> Net {
        let tag = std::process::id() % 10000;
        let prefix = format!("10.77.{}", 20 + tag % 200);
        let mut net = Net {
            bridge: format!("kcb{tag}"),
            namespaces: Vec::new(),
            prefix,
        };
        ip(&["link", "add", &net.bridge, "type", "bridge"]);
        ip(&[
            "addr",
            "add",
            &format!("{}.1/24", net.prefix),
            "dev",
            &net.bridge,
        ]);
        ip(&["link", "set", &net.bridge, "up"]);
        for i in 1..=n {
            let ns = format!("kcn{tag}-{i}");
            let veth = format!("kcv{tag}-{i}");
            ip(&["netns", "add", &ns]);
            net.namespaces.push(ns.clone());
            ip(&[
                "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns,
            ]);
            ip(&["link", "set", &veth, "master", &net.bridge, "up"]);
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{}/24", net.addr(i)),
                "dev",
                "eth0",
            ]);
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
            ip(&["-n", &ns, "link", "set", "eth0", "up"]);
        }
        net
    }

    fn addr(&self, i: usize) -> String {
        format!("{}.{}", self.prefix, 10 + i)
    }

    /// Cuts (or restores) traffic between member `a` and member `b`.
    fn cut(&self, a: usize, b: usize, on: bool) {
        let verb = if on { "add" } else { "del" };
        for (from, to) in [(a, b), (b, a)] {
            ip(&[
                "-n",
                &self.namespaces[from - 1],
                "route",
                verb,
                "blackhole",
                &format!("{}/32", self.addr(to)),
            ]);
        }
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for ns in &self.namespaces {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .status();
    }
}

#[test]
fn five_members_partition_and_heal() {
    let _g = serial();
    let net = Net::create(5);
    let dir = tempfile::tempdir().unwrap();
    let mut ms: Vec<Member> = (1..=5)
        .map(|i| {
            let mut m = Member::new(
                &format!("core-0{i}"),
                &net.addr(i),
                dir.path(),
                (2379, 2380),
            );
            m.netns = Some(net.namespaces[i - 1].clone());
            m
        })
        .collect();
    let ic = initial_cluster(&ms.iter().collect::<Vec<_>>());
    for m in ms.iter_mut() {
        m.start(&ic, "new", "t3-partition");
    }
    let all: Vec<&Member> = ms.iter().collect();
    wait_healthy(&all);
    for i in 0..20 {
        let a = ms[i % 5].put(&format!("/before/{i}"), "value=x").unwrap();
        assert_eq!(a.status, 201, "{a:?}");
    }
    let leader = agreed_leader(&all);
    let follower = (leader + 1) % 5;
    let minority = [leader + 1, follower + 1];
    let majority: Vec<usize> = (1..=5).filter(|i| !minority.contains(i)).collect();
    for a in minority {
        for &b in &majority {
            net.cut(a, b, true);
        }
    }

    // The majority elects a leader among itself and accepts writes.
    let maj: Vec<&Member> = majority.iter().map(|i| &ms[i - 1]).collect();
    let new_leader = agreed_leader(&maj);
    eprintln!("majority elected {}", maj[new_leader].name);
    for (i, m) in maj.iter().enumerate() {
        let a = m.put(&format!("/during/{i}"), "value=y").unwrap();
        assert_eq!(a.status, 201, "{a:?}");
    }
    // The minority (the old leader among it) refuses writes with 300.
    for &i in &minority {
        let a = ms[i - 1].put("/minority", "value=z").unwrap();
        assert_eq!(a.status, 500, "{a:?}");
        assert_eq!(
            a.body,
            "{\"errorCode\":300,\"message\":\"Raft Internal Error\",\"cause\":\"etcdserver: request timed out\",\"index\":0}\n"
        );
        // Plain reads still answer from the local copy.
        assert_eq!(ms[i - 1].get("/v2/keys/before/1").unwrap().status, 200);
    }

    // Heal: everyone converges on the majority's history.
    for a in minority {
        for &b in &majority {
            net.cut(a, b, false);
        }
    }
    wait_healthy(&all);
    let (index, store) = wait_converged(&all);
    assert!(store.contains("/during/2"), "{store}");
    assert!(!store.contains("/minority"), "{store}");
    eprintln!("converged at etcd index {index}");
    let a = ms[leader].put("/after", "value=w").unwrap();
    assert_eq!(a.status, 201, "{a:?}");
    let raft_indexes: Vec<String> =
        eventually("equal raft indexes", Duration::from_secs(30), || {
            let v: Vec<String> = ms
                .iter()
                .map(|m| {
                    m.get("/v2/keys/after")
                        .and_then(|a| a.header("x-raft-index").map(str::to_owned))
                })
                .collect::<Option<_>>()?;
            v.iter().all(|x| *x == v[0]).then_some(v)
        });
    eprintln!("raft index {} on all five", raft_indexes[0]);
}
