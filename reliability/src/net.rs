//! The harness's network: one namespace per member, each joined to a bridge
//! in the host namespace by a veth pair, addresses on 10.213.X.0/24. Faults
//! are iptables rules inside the members' namespaces (so deleting the
//! namespace removes them) and link state; clients run in the host
//! namespace and always reach every member, as in Jepsen.
//!
//! Everything created here is removed on drop, failures included.

use std::process::Command;

/// A command that failed.
#[derive(Debug, thiserror::Error)]
#[error("`{command}` failed: {stderr}")]
pub struct NetError {
    pub command: String,
    pub stderr: String,
}

fn run(program: &str, args: &[&str]) -> Result<(), NetError> {
    let command = format!("{program} {}", args.join(" "));
    let o = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| NetError {
            command: command.clone(),
            stderr: e.to_string(),
        })?;
    if o.status.success() {
        Ok(())
    } else {
        Err(NetError {
            command,
            stderr: String::from_utf8_lossy(&o.stderr).trim().to_owned(),
        })
    }
}

/// The bridge, namespaces and veth pairs of one run.
#[derive(Debug)]
pub struct Net {
    pub bridge: String,
    pub namespaces: Vec<String>,
    /// Host ends of the veth pairs.
    veths: Vec<String>,
    /// `10.213.X`.
    pub prefix: String,
}

impl Net {
    /// Creates `n` namespaces on a fresh bridge; names carry `tag` so that
    /// concurrent runs do not collide.
    pub fn create(n: usize, tag: u32) -> Result<Net, NetError> {
        let mut net = Net {
            bridge: format!("krb{tag}"),
            namespaces: (1..=n).map(|i| format!("kr-{tag}-{i}")).collect(),
            veths: (1..=n).map(|i| format!("krv{tag}-{i}")).collect(),
            prefix: format!("10.213.{}", 1 + tag % 250),
        };
        // Leftovers of a killed run with the same tag would make `add` fail.
        net.remove_quietly();
        let namespaces = std::mem::take(&mut net.namespaces);
        run("ip", &["link", "add", &net.bridge, "type", "bridge"])?;
        // With br_netfilter loaded, bridged frames go through the host's
        // FORWARD chain, which a Docker host sets to DROP: let this bridge's
        // own traffic through (removed on drop). Fault rules live inside the
        // namespaces.
        run("iptables", &net.forward_rule("-I"))?;
        run(
            "ip",
            &[
                "addr",
                "add",
                &format!("{}.1/24", net.prefix),
                "dev",
                &net.bridge,
            ],
        )?;
        run("ip", &["link", "set", &net.bridge, "up"])?;
        for (i, ns) in namespaces.into_iter().enumerate() {
            let veth = net.veths[i].clone();
            run("ip", &["netns", "add", &ns])?;
            net.namespaces.push(ns.clone());
            run(
                "ip",
                &[
                    "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns,
                ],
            )?;
            run("ip", &["link", "set", &veth, "master", &net.bridge, "up"])?;
            let cidr = format!("{}/24", net.addr(i));
            run("ip", &["-n", &ns, "addr", "add", &cidr, "dev", "eth0"])?;
            run("ip", &["-n", &ns, "link", "set", "lo", "up"])?;
            run("ip", &["-n", &ns, "link", "set", "eth0", "up"])?;
        }
        Ok(net)
    }

    /// Member `i`'s address (0-based).
    pub fn addr(&self, i: usize) -> String {
        format!("{}.{}", self.prefix, 10 + i)
    }

    fn iptables(&self, i: usize, rule: &[&str]) -> Result<(), NetError> {
        let ns = self.namespaces.get(i).ok_or_else(|| NetError {
            command: format!("iptables in member {i}"),
            stderr: "no such member".into(),
        })?;
        let mut args = vec!["netns", "exec", ns.as_str(), "iptables", "-w"];
        args.extend_from_slice(rule);
        run("ip", &args)
    }

    /// Drops all traffic between members `a` and `b`, both ways.
    pub fn cut(&self, a: usize, b: usize) -> Result<(), NetError> {
        for (x, y) in [(a, b), (b, a)] {
            let other = self.addr(y);
            self.iptables(x, &["-A", "INPUT", "-s", &other, "-j", "DROP"])?;
            self.iptables(x, &["-A", "OUTPUT", "-d", &other, "-j", "DROP"])?;
        }
        Ok(())
    }

    /// Drops a random `percent` of the peer packets member `i` receives
    /// (iptables' `statistic` match; this kernel has no netem).
    pub fn loss(&self, i: usize, percent: u8) -> Result<(), NetError> {
        let p = format!("{:.2}", f64::from(percent) / 100.0);
        // Peer traffic only (to or from port 2380): clients keep a clean path.
        self.iptables(
            i,
            &[
                "-A",
                "INPUT",
                "-p",
                "tcp",
                "-m",
                "multiport",
                "--ports",
                "2380",
                "-m",
                "statistic",
                "--mode",
                "random",
                "--probability",
                &p,
                "-j",
                "DROP",
            ],
        )
    }

    /// Takes member `i`'s link down (or up): it loses clients and peers.
    pub fn link(&self, i: usize, up: bool) -> Result<(), NetError> {
        let ns = self.namespaces.get(i).map(String::as_str).unwrap_or("");
        run(
            "ip",
            &[
                "-n",
                ns,
                "link",
                "set",
                "eth0",
                if up { "up" } else { "down" },
            ],
        )
    }

    /// Removes every rule and brings every link up.
    pub fn heal(&self) -> Result<(), NetError> {
        for i in 0..self.namespaces.len() {
            self.iptables(i, &["-F"])?;
            self.link(i, true)?;
        }
        Ok(())
    }

    fn forward_rule<'a>(&'a self, op: &'a str) -> Vec<&'a str> {
        let mut v = vec!["-w", op, "FORWARD"];
        if op == "-I" {
            v.push("1");
        }
        v.extend_from_slice(&["-i", &self.bridge, "-o", &self.bridge, "-j", "ACCEPT"]);
        v
    }

    fn remove_quietly(&self) {
        // The host ends first, synchronously: a deleted namespace's devices
        // go away asynchronously, and the next run may reuse the names.
        for veth in &self.veths {
            let _ = Command::new("ip").args(["link", "del", veth]).output();
        }
        for ns in &self.namespaces {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .output();
        // Every copy of the rule (a killed earlier run may have left one).
        while Command::new("iptables")
            .args(self.forward_rule("-D"))
            .output()
            .is_ok_and(|o| o.status.success())
        {}
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        self.remove_quietly();
    }
}
