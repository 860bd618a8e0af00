//! `keelson certs`: the certificates a TLS cluster needs, made the way the
//! book made them with etcd-ca and cfssl: a cluster CA, then certificates it
//! signs for servers (client URLs), peers (member to member: both server and
//! client use) and clients (`kvctl`, fleet, the overlay), with the
//! addresses and names they are reached by as subject alternative names.
//! Keys are ECDSA P-256; private keys are written mode 0600.

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};

#[derive(Debug, Parser)]
#[command(
    name = "keelson certs",
    about = "Make a cluster CA and the server, peer and client certificates it signs"
)]
struct CertsArgs {
    /// Directory holding ca.pem, ca-key.pem and the certificates made.
    #[arg(long, default_value = ".", global = true)]
    dir: PathBuf,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Create the CA (ca.pem, ca-key.pem); refuses to replace one.
    Ca {
        /// The CA's common name.
        #[arg(long, default_value = "keelson-ca")]
        cn: String,
    },
    /// A server certificate (TLS server use) for the given hosts.
    Server(Leaf),
    /// A peer certificate (server and client use) for the given hosts.
    Peer(Leaf),
    /// A client certificate (client use).
    Client(Leaf),
}

#[derive(Debug, clap::Args)]
struct Leaf {
    /// Certificate name: NAME.pem and NAME-key.pem.
    name: String,
    /// Comma-separated IP addresses and DNS names it is reached by.
    #[arg(long, value_delimiter = ',')]
    hosts: Vec<String>,
}

fn write(path: &Path, text: &str, mode: u32) -> anyhow::Result<()> {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("setting the mode of {}", path.display()))?;
    Ok(())
}

fn make_ca(dir: &Path, cn: &str) -> anyhow::Result<()> {
    let (cert_path, key_path) = (dir.join("ca.pem"), dir.join("ca-key.pem"));
    if cert_path.exists() || key_path.exists() {
        bail!(
            "{} already holds a CA; remove ca.pem and ca-key.pem first to make a new one",
            dir.display()
        );
    }
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, cn);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.not_after = rcgen::date_time_ymd(2036, 1, 1);
    let key = KeyPair::generate()?;
    let cert = p.self_signed(&key)?;
    write(&key_path, &key.serialize_pem(), 0o600)?;
    write(&cert_path, &cert.pem(), 0o644)?;
    println!("wrote {} and {}", cert_path.display(), key_path.display());
    Ok(())
}

fn make_leaf(dir: &Path, leaf: &Leaf, uses: &[ExtendedKeyUsagePurpose]) -> anyhow::Result<()> {
    let ca_pem = std::fs::read_to_string(dir.join("ca.pem")).with_context(|| {
        format!(
            "reading the CA in {} (make one with `keelson certs ca`)",
            dir.display()
        )
    })?;
    let ca_key_pem = std::fs::read_to_string(dir.join("ca-key.pem"))
        .with_context(|| format!("reading {}", dir.join("ca-key.pem").display()))?;
    let ca_key = KeyPair::from_pem(&ca_key_pem).context("ca-key.pem is not a usable key")?;
    let ca = CertificateParams::from_ca_cert_pem(&ca_pem)
        .context("ca.pem is not a usable CA certificate")?
        .self_signed(&ca_key)?;
    if leaf.name.contains('/') || leaf.name.is_empty() {
        bail!(
            "bad certificate name {:?}: use a plain file name",
            leaf.name
        );
    }
    let mut p = CertificateParams::new(leaf.hosts.clone())
        .with_context(|| format!("bad --hosts {:?}", leaf.hosts))?;
    p.distinguished_name.push(DnType::CommonName, &leaf.name);
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    p.extended_key_usages = uses.to_vec();
    p.not_after = rcgen::date_time_ymd(2036, 1, 1);
    let key = KeyPair::generate()?;
    let cert = p.signed_by(&key, &ca, &ca_key)?;
    let (cert_path, key_path) = (
        dir.join(format!("{}.pem", leaf.name)),
        dir.join(format!("{}-key.pem", leaf.name)),
    );
    write(&key_path, &key.serialize_pem(), 0o600)?;
    write(&cert_path, &cert.pem(), 0o644)?;
    println!("wrote {} and {}", cert_path.display(), key_path.display());
    Ok(())
}

/// `keelson certs ...`.
pub fn main(args: Vec<OsString>) -> ExitCode {
    let mut argv = vec![OsString::from("keelson certs")];
    argv.extend(args);
    let a = match CertsArgs::try_parse_from(argv) {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    use ExtendedKeyUsagePurpose::{ClientAuth, ServerAuth};
    let r = match &a.command {
        Cmd::Ca { cn } => make_ca(&a.dir, cn),
        Cmd::Server(l) => make_leaf(&a.dir, l, &[ServerAuth]),
        Cmd::Peer(l) => make_leaf(&a.dir, l, &[ServerAuth, ClientAuth]),
        Cmd::Client(l) => make_leaf(&a.dir, l, &[ClientAuth]),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("keelson certs: {e:#}");
            ExitCode::from(1)
        }
    }
}
