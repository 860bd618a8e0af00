//! `--ip-masq` and forward-accept rules through Debian's `iptables`, as
//! flannel does (reference §7). The v0.6–v0.12 rule set lives in its own
//! chains (`FLANNEL-POSTRTG` in `nat`, `FLANNEL-FWD` in `filter`) so removal
//! is clean, and [`ensure`] is idempotent so the daemon can re-run it
//! periodically to restore rules others deleted.

use std::process::Command;

use crate::backend::BackendError;
use crate::cidr::Ipv4Net;

pub const MASQ_CHAIN: &str = "FLANNEL-POSTRTG";
pub const FWD_CHAIN: &str = "FLANNEL-FWD";

/// One rule: table, chain, arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub table: &'static str,
    pub chain: &'static str,
    pub args: Vec<String>,
}

fn rule(table: &'static str, chain: &'static str, args: &str) -> Rule {
    Rule {
        table,
        chain,
        args: args.split_whitespace().map(str::to_string).collect(),
    }
}

/// The masquerade rules for `network` with our lease `own`.
pub fn masq_rules(network: &Ipv4Net, own: &Ipv4Net) -> Vec<Rule> {
    let c = "-m comment --comment flanneld-masq";
    vec![
        rule("nat", "POSTROUTING", &format!("{c} -j {MASQ_CHAIN}")),
        rule(
            "nat",
            MASQ_CHAIN,
            &format!("-s {network} -d {network} {c} -j RETURN"),
        ),
        rule(
            "nat",
            MASQ_CHAIN,
            &format!("-s {network} ! -d 224.0.0.0/4 {c} -j MASQUERADE"),
        ),
        rule(
            "nat",
            MASQ_CHAIN,
            &format!("! -s {network} -d {own} {c} -j RETURN"),
        ),
        rule(
            "nat",
            MASQ_CHAIN,
            &format!("! -s {network} -d {network} {c} -j MASQUERADE"),
        ),
    ]
}

/// FORWARD accept rules for the overlay (Docker's FORWARD DROP policy).
pub fn forward_rules(network: &Ipv4Net) -> Vec<Rule> {
    let c = "-m comment --comment flanneld-forward";
    vec![
        rule("filter", "FORWARD", &format!("{c} -j {FWD_CHAIN}")),
        rule("filter", FWD_CHAIN, &format!("-s {network} {c} -j ACCEPT")),
        rule("filter", FWD_CHAIN, &format!("-d {network} {c} -j ACCEPT")),
    ]
}

fn run(args: &[&str]) -> Result<bool, BackendError> {
    let out = Command::new("iptables")
        .args(["-w", "5"])
        .args(args)
        .output()
        .map_err(|e| {
            BackendError::Iptables(format!(
                "cannot run iptables (install the iptables package): {e}"
            ))
        })?;
    Ok(out.status.success())
}

fn run_ok(args: &[&str]) -> Result<(), BackendError> {
    let out = Command::new("iptables")
        .args(["-w", "5"])
        .args(args)
        .output()
        .map_err(|e| {
            BackendError::Iptables(format!(
                "cannot run iptables (install the iptables package): {e}"
            ))
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(BackendError::Iptables(format!(
            "iptables {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// Creates the chains and appends every missing rule.
pub fn ensure(rules: &[Rule]) -> Result<(), BackendError> {
    for r in rules {
        if r.chain.starts_with("FLANNEL") {
            // -N fails when it exists; that is fine.
            let _ = run(&["-t", r.table, "-N", r.chain])?;
        }
    }
    for r in rules {
        let mut check = vec!["-t", r.table, "-C", r.chain];
        check.extend(r.args.iter().map(String::as_str));
        if !run(&check)? {
            let mut add = vec!["-t", r.table, "-A", r.chain];
            add.extend(r.args.iter().map(String::as_str));
            run_ok(&add)?;
        }
    }
    Ok(())
}

/// Deletes the rules (and their chains once empty).
pub fn remove(rules: &[Rule]) -> Result<(), BackendError> {
    for r in rules.iter().rev() {
        let mut del = vec!["-t", r.table, "-D", r.chain];
        del.extend(r.args.iter().map(String::as_str));
        while run(&del)? {}
    }
    for r in rules {
        if r.chain.starts_with("FLANNEL") {
            let _ = run(&["-t", r.table, "-X", r.chain])?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_set_is_flannels() {
        let n: Ipv4Net = "10.1.0.0/16".parse().unwrap();
        let own: Ipv4Net = "10.1.19.0/24".parse().unwrap();
        let r = masq_rules(&n, &own);
        assert_eq!(r.len(), 5);
        assert_eq!(
            r[2].args.join(" "),
            "-s 10.1.0.0/16 ! -d 224.0.0.0/4 -m comment --comment flanneld-masq -j MASQUERADE"
        );
        assert_eq!(r[3].args[..4].join(" "), "! -s 10.1.0.0/16 -d");
        assert_eq!(
            forward_rules(&n)[1].args.join(" "),
            "-s 10.1.0.0/16 -m comment --comment flanneld-forward -j ACCEPT"
        );
    }
}
