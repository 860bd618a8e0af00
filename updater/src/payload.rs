//! Signed payload manifests and streaming, verified writes.
//!
//! update_engine trusted one RSA key baked into `/usr` and, worse, skipped the
//! signature check when that key was missing. Keelson fails closed instead: a
//! small JSON manifest, shaped like TUF's targets metadata, names the release
//! version, the payload's size and SHA-256, and is signed with Ed25519 by one
//! of several trusted keys (several, so keys can be rotated). The manifest is
//! verified before a single byte is written; the payload is then streamed into
//! the inactive slot, hashed as it streams, and read back and hashed again
//! before the slot is made bootable. Memory stays bounded by the chunk size,
//! and an interrupted download resumes by re-hashing what the slot already
//! holds.
//!
//! Wire format (`<payload>.manifest.json`, or base64 in the Omaha postinstall
//! action's `KeelsonManifest` attribute):
//!
//! ```json
//! {"signed":{"_type":"targets","release":"766.3.0","targets":{"update.gz":
//!   {"length":23,"hashes":{"sha256":"<hex>"}}}},
//!  "signatures":[{"keyid":"<hex sha256 of the public key>","sig":"<base64>"}]}
//! ```
//!
//! The signature covers the exact bytes of the `signed` value as they appear
//! in the file, so no canonical-JSON step is needed.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};
use serde::{Deserialize, Serialize};

use crate::omaha::{ErrorCode, Offer};
use crate::version::Version;

/// Chunk size for hashing and read-back; bounds memory use.
pub const CHUNK: usize = 1 << 20;

/// Directories searched for trusted `*.pub` keys, relative to `--root`.
pub const TRUSTED_KEY_DIRS: [&str; 2] =
    ["/usr/share/keelson/update-keys", "/etc/keelson/update-keys"];

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
const PEM_BEGIN: &str = "-----BEGIN PRIVATE KEY-----";
const PEM_END: &str = "-----END PRIVATE KEY-----";

/// What went wrong with a key, a manifest or a payload.
#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    #[error("no trusted update key configured (looked in {looked_in}); refusing to update without signature verification")]
    NoTrustedKeys { looked_in: String },
    #[error("bad key {what}: {reason}")]
    BadKey { what: String, reason: String },
    #[error("the update has no signed manifest; refusing an unsigned payload")]
    MissingManifest,
    #[error("malformed manifest: {0}")]
    BadManifest(String),
    #[error("manifest carries no signatures")]
    Unsigned,
    #[error(
        "no signature on the manifest verifies with a trusted key (key ids present: {key_ids:?})"
    )]
    BadSignature { key_ids: Vec<String> },
    #[error("manifest does not match the offer: {0}")]
    OfferMismatch(String),
    #[error("payload size mismatch: expected {expected} bytes, got {actual}")]
    SizeMismatch { expected: u64, actual: u64 },
    #[error("payload SHA-256 mismatch: expected {expected}, got {actual}")]
    HashMismatch { expected: String, actual: String },
    #[error("written slot does not match the payload: expected {expected}, read back {actual}")]
    ReadBackMismatch { expected: String, actual: String },
    #[error("payload of {size} bytes does not fit the {slot_size}-byte slot")]
    TooLarge { size: u64, slot_size: u64 },
    #[error("I/O error {context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
}

impl PayloadError {
    /// The update_engine error code reported to the server.
    pub fn code(&self) -> ErrorCode {
        match self {
            PayloadError::NoTrustedKeys { .. } | PayloadError::BadKey { .. } => {
                ErrorCode::DOWNLOAD_PAYLOAD_PUBKEY_VERIFICATION
            }
            PayloadError::MissingManifest | PayloadError::Unsigned => {
                ErrorCode::SIGNED_DELTA_PAYLOAD_EXPECTED
            }
            PayloadError::BadSignature { .. } => ErrorCode::DOWNLOAD_PAYLOAD_PUBKEY_VERIFICATION,
            PayloadError::BadManifest(_) | PayloadError::OfferMismatch(_) => {
                ErrorCode::DOWNLOAD_PAYLOAD_VERIFICATION
            }
            PayloadError::SizeMismatch { .. } => ErrorCode::PAYLOAD_SIZE_MISMATCH,
            PayloadError::HashMismatch { .. } => ErrorCode::PAYLOAD_HASH_MISMATCH,
            PayloadError::ReadBackMismatch { .. } => ErrorCode::NEW_ROOTFS_VERIFICATION,
            PayloadError::TooLarge { .. } => ErrorCode::INSTALL_DEVICE_OPEN_ERROR,
            PayloadError::Io { .. } => ErrorCode::DOWNLOAD_WRITE_ERROR,
        }
    }

    fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let context = context.into();
        move |source| PayloadError::Io { context, source }
    }
}

/// The id of a public key: hex SHA-256 of its 32 raw bytes.
pub fn key_id(public_key: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, public_key))
}

/// A freshly generated signing key.
pub struct GeneratedKey {
    /// PKCS#8 in PEM (`-----BEGIN PRIVATE KEY-----`), for `keelctl update sign`.
    pub private_pem: String,
    /// One line: base64 of the 32-byte Ed25519 public key, for trusted-key directories.
    pub public: String,
    /// [`key_id`] of the public key.
    pub key_id: String,
}

/// Generates an Ed25519 key pair (`keelctl update keygen`).
pub fn generate_key() -> Result<GeneratedKey, PayloadError> {
    let rng = ring::rand::SystemRandom::new();
    let doc = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| PayloadError::BadKey {
        what: "generation".into(),
        reason: "the system random source failed".into(),
    })?;
    let pair = Ed25519KeyPair::from_pkcs8(doc.as_ref()).map_err(|e| PayloadError::BadKey {
        what: "generation".into(),
        reason: e.to_string(),
    })?;
    let pk = pair.public_key().as_ref();
    Ok(GeneratedKey {
        private_pem: format!("{PEM_BEGIN}\n{}\n{PEM_END}\n", B64.encode(doc.as_ref())),
        public: format!("{}\n", B64.encode(pk)),
        key_id: key_id(pk),
    })
}

/// Writes `<dir>/<name>.key` (mode 0600) and `<dir>/<name>.pub`; returns the key id.
pub fn write_keypair(dir: &Path, name: &str) -> Result<String, PayloadError> {
    let k = generate_key()?;
    std::fs::create_dir_all(dir)
        .map_err(PayloadError::io(format!("creating {}", dir.display())))?;
    let key_path = dir.join(format!("{name}.key"));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts
        .open(&key_path)
        .map_err(PayloadError::io(format!("creating {}", key_path.display())))?;
    f.write_all(k.private_pem.as_bytes())
        .map_err(PayloadError::io(format!("writing {}", key_path.display())))?;
    let pub_path = dir.join(format!("{name}.pub"));
    std::fs::write(&pub_path, &k.public)
        .map_err(PayloadError::io(format!("writing {}", pub_path.display())))?;
    Ok(k.key_id)
}

/// A private key able to sign manifests.
pub struct SigningKey {
    pair: Ed25519KeyPair,
}

impl SigningKey {
    /// Parses the PEM written by [`generate_key`].
    pub fn from_pem(pem: &str) -> Result<Self, PayloadError> {
        let bad = |reason: &str| PayloadError::BadKey {
            what: "private key".into(),
            reason: reason.into(),
        };
        let body = pem
            .trim()
            .strip_prefix(PEM_BEGIN)
            .and_then(|s| s.strip_suffix(PEM_END))
            .ok_or_else(|| bad("not a PEM PRIVATE KEY"))?;
        let der: String = body.split_whitespace().collect();
        let der = B64.decode(der).map_err(|_| bad("PEM body is not base64"))?;
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der)
            .map_err(|e| bad(&format!("not an Ed25519 PKCS#8 key: {e}")))?;
        Ok(Self { pair })
    }

    /// Reads a key file.
    pub fn load(path: &Path) -> Result<Self, PayloadError> {
        let pem = std::fs::read_to_string(path)
            .map_err(PayloadError::io(format!("reading key {}", path.display())))?;
        Self::from_pem(&pem)
    }

    /// The public key's id.
    pub fn key_id(&self) -> String {
        key_id(self.pair.public_key().as_ref())
    }

    /// The public key line, as [`generate_key`] writes it.
    pub fn public_line(&self) -> String {
        format!("{}\n", B64.encode(self.pair.public_key().as_ref()))
    }
}

/// The signed part of a manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Targets {
    #[serde(rename = "_type")]
    pub kind: String,
    /// The release the payload installs.
    pub release: Version,
    /// Payload file name → its length and hashes.
    pub targets: BTreeMap<String, Target>,
}

/// One target file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    pub length: u64,
    pub hashes: Hashes,
}

/// Target hashes (hex).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hashes {
    pub sha256: String,
}

#[derive(Serialize, Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    signed: &'a serde_json::value::RawValue,
    #[serde(default)]
    signatures: Vec<Signature>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Signature {
    keyid: String,
    sig: String,
}

/// Hashes everything `reader` yields, in [`CHUNK`]-sized pieces.
pub fn sha256_reader(mut reader: impl Read) -> std::io::Result<([u8; 32], u64)> {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; CHUNK];
    let mut n = 0u64;
    loop {
        let k = reader.read(&mut buf)?;
        if k == 0 {
            break;
        }
        ctx.update(&buf[..k]);
        n += k as u64;
    }
    Ok((finish_hash(ctx), n))
}

fn finish_hash(ctx: ring::digest::Context) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// Builds and signs a manifest for a payload (`keelctl update sign`).
pub fn sign_manifest(
    key: &SigningKey,
    release: &Version,
    name: &str,
    length: u64,
    sha256: &[u8; 32],
) -> Result<Vec<u8>, PayloadError> {
    let targets = Targets {
        kind: "targets".into(),
        release: release.clone(),
        targets: BTreeMap::from([(
            name.to_string(),
            Target {
                length,
                hashes: Hashes {
                    sha256: hex::encode(sha256),
                },
            },
        )]),
    };
    let signed =
        serde_json::to_string(&targets).map_err(|e| PayloadError::BadManifest(e.to_string()))?;
    let sig = key.pair.sign(signed.as_bytes());
    let raw = serde_json::value::RawValue::from_string(signed)
        .map_err(|e| PayloadError::BadManifest(e.to_string()))?;
    let env = Envelope {
        signed: &raw,
        signatures: vec![Signature {
            keyid: key.key_id(),
            sig: B64.encode(sig.as_ref()),
        }],
    };
    serde_json::to_vec(&env).map_err(|e| PayloadError::BadManifest(e.to_string()))
}

/// Signs the payload file at `payload` (streamed, bounded memory).
pub fn sign_payload_file(
    key: &SigningKey,
    release: &Version,
    payload: &Path,
) -> Result<Vec<u8>, PayloadError> {
    let f = std::fs::File::open(payload)
        .map_err(PayloadError::io(format!("opening {}", payload.display())))?;
    let (hash, len) =
        sha256_reader(f).map_err(PayloadError::io(format!("reading {}", payload.display())))?;
    let name = payload
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| PayloadError::BadManifest("payload path has no file name".into()))?;
    sign_manifest(key, release, name, len, &hash)
}

/// The set of public keys a node trusts. Empty is not allowed.
#[derive(Debug, Clone)]
pub struct TrustedKeys {
    keys: BTreeMap<String, Vec<u8>>,
}

impl TrustedKeys {
    /// From public key lines (base64 of 32 bytes each). No keys is an error.
    pub fn from_public_lines<'a>(
        lines: impl IntoIterator<Item = &'a str>,
    ) -> Result<Self, PayloadError> {
        let mut keys = BTreeMap::new();
        for l in lines {
            let pk = parse_public(l)?;
            keys.insert(key_id(&pk), pk);
        }
        if keys.is_empty() {
            return Err(PayloadError::NoTrustedKeys {
                looked_in: "the given list".into(),
            });
        }
        Ok(Self { keys })
    }

    /// Every `*.pub` in [`TRUSTED_KEY_DIRS`] under `root`.
    pub fn load(root: &Path) -> Result<Self, PayloadError> {
        let dirs: Vec<PathBuf> = TRUSTED_KEY_DIRS
            .iter()
            .map(|d| crate::config::rooted(root, d))
            .collect();
        Self::load_dirs(&dirs)
    }

    /// Every `*.pub` in `dirs`; missing directories are skipped, but at least
    /// one valid key must be found, and any unreadable or malformed key file is
    /// an error rather than silently ignored.
    pub fn load_dirs(dirs: &[PathBuf]) -> Result<Self, PayloadError> {
        let mut keys = BTreeMap::new();
        for dir in dirs {
            let entries = match std::fs::read_dir(dir) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(PayloadError::io(format!("reading {}", dir.display()))(e)),
            };
            let mut paths: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "pub"))
                .collect();
            paths.sort();
            for p in paths {
                let text = std::fs::read_to_string(&p)
                    .map_err(PayloadError::io(format!("reading key {}", p.display())))?;
                let pk = parse_public(&text).map_err(|e| PayloadError::BadKey {
                    what: p.display().to_string(),
                    reason: e.to_string(),
                })?;
                keys.insert(key_id(&pk), pk);
            }
        }
        if keys.is_empty() {
            return Err(PayloadError::NoTrustedKeys {
                looked_in: dirs
                    .iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        Ok(Self { keys })
    }

    /// The ids of the trusted keys.
    pub fn key_ids(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }

    /// Verifies a manifest: at least one signature by a trusted key over the
    /// exact `signed` bytes, and a well-formed targets document with one target.
    pub fn verify_manifest(&self, manifest: &[u8]) -> Result<VerifiedManifest, PayloadError> {
        let env: Envelope<'_> = serde_json::from_slice(manifest)
            .map_err(|e| PayloadError::BadManifest(e.to_string()))?;
        if env.signatures.is_empty() {
            return Err(PayloadError::Unsigned);
        }
        let signed = env.signed.get().as_bytes();
        let ok = env.signatures.iter().any(|s| {
            let Some(pk) = self.keys.get(&s.keyid) else {
                return false;
            };
            let Ok(sig) = B64.decode(&s.sig) else {
                return false;
            };
            UnparsedPublicKey::new(&ED25519, pk)
                .verify(signed, &sig)
                .is_ok()
        });
        if !ok {
            return Err(PayloadError::BadSignature {
                key_ids: env.signatures.iter().map(|s| s.keyid.clone()).collect(),
            });
        }
        parse_targets(signed)
    }
}

/// Reads a manifest without checking its signature: for servers that only
/// need to advertise what it promises. Clients must use
/// [`TrustedKeys::verify_manifest`].
pub fn inspect_manifest(manifest: &[u8]) -> Result<VerifiedManifest, PayloadError> {
    let env: Envelope<'_> =
        serde_json::from_slice(manifest).map_err(|e| PayloadError::BadManifest(e.to_string()))?;
    parse_targets(env.signed.get().as_bytes())
}

fn parse_targets(signed: &[u8]) -> Result<VerifiedManifest, PayloadError> {
    let targets: Targets =
        serde_json::from_slice(signed).map_err(|e| PayloadError::BadManifest(e.to_string()))?;
    if targets.kind != "targets" {
        return Err(PayloadError::BadManifest(format!(
            "_type is {:?}, expected \"targets\"",
            targets.kind
        )));
    }
    let mut it = targets.targets.iter();
    let (name, target) = match (it.next(), it.next()) {
        (Some(t), None) => t,
        _ => {
            return Err(PayloadError::BadManifest(
                "expected exactly one target".into(),
            ))
        }
    };
    let sha256: [u8; 32] = hex::decode(&target.hashes.sha256)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| PayloadError::BadManifest("sha256 is not 64 hex digits".into()))?;
    Ok(VerifiedManifest {
        release: targets.release.clone(),
        name: name.clone(),
        length: target.length,
        sha256,
    })
}

fn parse_public(line: &str) -> Result<Vec<u8>, PayloadError> {
    let bad = |reason: &str| PayloadError::BadKey {
        what: "public key".into(),
        reason: reason.into(),
    };
    let pk = B64.decode(line.trim()).map_err(|_| bad("not base64"))?;
    if pk.len() != 32 {
        return Err(bad("an Ed25519 public key is 32 bytes"));
    }
    Ok(pk)
}

/// A manifest whose signature checked out: what the payload must be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedManifest {
    pub release: Version,
    pub name: String,
    pub length: u64,
    pub sha256: [u8; 32],
}

impl VerifiedManifest {
    /// The Omaha offer must agree with what was signed: version, size and hash.
    pub fn check_offer(&self, offer: &Offer) -> Result<(), PayloadError> {
        let offered: Version = offer.version.parse().map_err(|_| {
            PayloadError::OfferMismatch(format!("offered version {:?} is invalid", offer.version))
        })?;
        if offered != self.release {
            return Err(PayloadError::OfferMismatch(format!(
                "offer says version {offered}, signed manifest says {}",
                self.release
            )));
        }
        if offer.size != self.length {
            return Err(PayloadError::OfferMismatch(format!(
                "offer says {} bytes, signed manifest says {}",
                offer.size, self.length
            )));
        }
        if offer.sha256 != self.sha256 {
            return Err(PayloadError::OfferMismatch(
                "offer's sha256 differs from the signed manifest's".into(),
            ));
        }
        Ok(())
    }
}

/// Streams a payload into a slot, hashing as it goes; bounded memory.
pub struct PayloadWriter<W> {
    out: W,
    ctx: ring::digest::Context,
    written: u64,
    expected: VerifiedManifest,
}

impl<W: Write + Seek> PayloadWriter<W> {
    /// Starts writing at offset 0 of `out`, which holds `slot_size` bytes.
    pub fn new(
        mut out: W,
        expected: VerifiedManifest,
        slot_size: u64,
    ) -> Result<Self, PayloadError> {
        if expected.length > slot_size {
            return Err(PayloadError::TooLarge {
                size: expected.length,
                slot_size,
            });
        }
        out.seek(SeekFrom::Start(0))
            .map_err(PayloadError::io("seeking to the slot start"))?;
        Ok(Self {
            out,
            ctx: ring::digest::Context::new(&ring::digest::SHA256),
            written: 0,
            expected,
        })
    }

    /// Bytes accepted so far (the offset to resume a download from).
    pub fn written(&self) -> u64 {
        self.written
    }

    /// The total expected.
    pub fn expected_len(&self) -> u64 {
        self.expected.length
    }

    /// Appends one chunk. More bytes than the manifest promised is an error.
    pub fn write_chunk(&mut self, data: &[u8]) -> Result<(), PayloadError> {
        let actual = self.written + data.len() as u64;
        if actual > self.expected.length {
            return Err(PayloadError::SizeMismatch {
                expected: self.expected.length,
                actual,
            });
        }
        self.out
            .write_all(data)
            .map_err(PayloadError::io("writing the payload to the slot"))?;
        self.ctx.update(data);
        self.written = actual;
        Ok(())
    }

    /// Checks size and hash of what was streamed, flushes, and returns the writer.
    pub fn finish(mut self) -> Result<W, PayloadError> {
        if self.written != self.expected.length {
            return Err(PayloadError::SizeMismatch {
                expected: self.expected.length,
                actual: self.written,
            });
        }
        let got = finish_hash(self.ctx);
        if got != self.expected.sha256 {
            return Err(PayloadError::HashMismatch {
                expected: hex::encode(self.expected.sha256),
                actual: hex::encode(got),
            });
        }
        self.out
            .flush()
            .map_err(PayloadError::io("flushing the slot"))?;
        Ok(self.out)
    }
}

impl<W: Read + Write + Seek> PayloadWriter<W> {
    /// Resumes after an interruption: re-hashes the first `written` bytes the
    /// slot already holds, then continues at that offset.
    pub fn resume(
        out: W,
        expected: VerifiedManifest,
        slot_size: u64,
        written: u64,
    ) -> Result<Self, PayloadError> {
        if written > expected.length {
            return Err(PayloadError::SizeMismatch {
                expected: expected.length,
                actual: written,
            });
        }
        let mut w = Self::new(out, expected, slot_size)?;
        let mut buf = vec![0u8; CHUNK];
        let mut left = written;
        while left > 0 {
            let k = usize::try_from(left).unwrap_or(CHUNK).min(CHUNK);
            w.out
                .read_exact(&mut buf[..k])
                .map_err(PayloadError::io("re-reading the partial payload"))?;
            w.ctx.update(&buf[..k]);
            left -= k as u64;
        }
        w.written = written;
        Ok(w)
    }
}

/// Reads back the first `expected.length` bytes of a written slot and checks
/// their hash (update_engine's new-rootfs verification, error 15).
pub fn verify_written(slot: impl Read, expected: &VerifiedManifest) -> Result<(), PayloadError> {
    let (got, n) = sha256_reader(slot.take(expected.length))
        .map_err(PayloadError::io("reading back the written slot"))?;
    if n != expected.length || got != expected.sha256 {
        return Err(PayloadError::ReadBackMismatch {
            expected: hex::encode(expected.sha256),
            actual: hex::encode(got),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn setup(payload: &[u8]) -> (SigningKey, TrustedKeys, Vec<u8>) {
        let k = generate_key().unwrap();
        let key = SigningKey::from_pem(&k.private_pem).unwrap();
        assert_eq!(key.key_id(), k.key_id);
        let trusted = TrustedKeys::from_public_lines([k.public.as_str()]).unwrap();
        let hash: [u8; 32] = ring::digest::digest(&ring::digest::SHA256, payload)
            .as_ref()
            .try_into()
            .unwrap();
        let m = sign_manifest(
            &key,
            &"766.3.0".parse().unwrap(),
            "update.gz",
            payload.len() as u64,
            &hash,
        )
        .unwrap();
        (key, trusted, m)
    }

    #[test]
    fn sign_verify_write() {
        let payload: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let (_, trusted, m) = setup(&payload);
        let v = trusted.verify_manifest(&m).unwrap();
        assert_eq!(v.length, payload.len() as u64);
        let mut slot = Cursor::new(vec![0u8; 4_000_000]);
        let mut w = PayloadWriter::new(&mut slot, v.clone(), 4_000_000).unwrap();
        for c in payload.chunks(65536) {
            w.write_chunk(c).unwrap();
        }
        w.finish().unwrap();
        slot.set_position(0);
        verify_written(&mut slot, &v).unwrap();
    }

    #[test]
    fn resume_rehashes_prefix() {
        let payload: Vec<u8> = (0..2_500_000u32).map(|i| (i * 7 % 253) as u8).collect();
        let (_, trusted, m) = setup(&payload);
        let v = trusted.verify_manifest(&m).unwrap();
        let mut slot = Cursor::new(vec![0u8; 3_000_000]);
        {
            let mut w = PayloadWriter::new(&mut slot, v.clone(), 3_000_000).unwrap();
            w.write_chunk(&payload[..1_234_567]).unwrap();
            // interrupted here: the writer is dropped
        }
        let mut w = PayloadWriter::resume(&mut slot, v.clone(), 3_000_000, 1_234_567).unwrap();
        w.write_chunk(&payload[1_234_567..]).unwrap();
        w.finish().unwrap();
    }

    #[test]
    fn tampering_is_detected() {
        let payload = b"hello keelson payload".to_vec();
        let (_, trusted, m) = setup(&payload);
        let v = trusted.verify_manifest(&m).unwrap();

        // flipped byte
        let mut bad = payload.clone();
        bad[3] ^= 1;
        let mut w = PayloadWriter::new(Cursor::new(vec![0u8; 64]), v.clone(), 64).unwrap();
        w.write_chunk(&bad).unwrap();
        let e = w.finish().unwrap_err();
        assert_eq!(e.code(), ErrorCode::PAYLOAD_HASH_MISMATCH, "{e}");

        // truncated
        let mut w = PayloadWriter::new(Cursor::new(vec![0u8; 64]), v.clone(), 64).unwrap();
        w.write_chunk(&payload[..5]).unwrap();
        assert_eq!(
            w.finish().unwrap_err().code(),
            ErrorCode::PAYLOAD_SIZE_MISMATCH
        );

        // too long
        let mut w = PayloadWriter::new(Cursor::new(vec![0u8; 64]), v.clone(), 64).unwrap();
        w.write_chunk(&payload).unwrap();
        assert!(matches!(
            w.write_chunk(b"x"),
            Err(PayloadError::SizeMismatch { .. })
        ));

        // slot too small
        assert!(matches!(
            PayloadWriter::new(Cursor::new(vec![0u8; 4]), v, 4),
            Err(PayloadError::TooLarge { .. })
        ));
    }

    #[test]
    fn wrong_key_and_tampered_manifest() {
        let (_, _, m) = setup(b"abc");
        let other = generate_key().unwrap();
        let trusted_other = TrustedKeys::from_public_lines([other.public.as_str()]).unwrap();
        let e = trusted_other.verify_manifest(&m).unwrap_err();
        assert_eq!(
            e.code(),
            ErrorCode::DOWNLOAD_PAYLOAD_PUBKEY_VERIFICATION,
            "{e}"
        );

        let (_, trusted, m) = setup(b"abc");
        let text = String::from_utf8(m.clone()).unwrap();
        let tampered = text.replace("\"length\":3", "\"length\":4");
        assert_ne!(tampered, text);
        assert!(matches!(
            trusted.verify_manifest(tampered.as_bytes()),
            Err(PayloadError::BadSignature { .. })
        ));
        let unsigned = format!(
            "{{\"signed\":{},\"signatures\":[]}}",
            &text[10..text.find(",\"signatures\"").unwrap()]
        );
        assert!(
            matches!(
                trusted.verify_manifest(unsigned.as_bytes()),
                Err(PayloadError::Unsigned)
            ),
            "{unsigned}"
        );
        for junk in ["", "{}", "[1]", "{\"signed\":1}"] {
            assert!(trusted.verify_manifest(junk.as_bytes()).is_err());
        }
    }

    #[test]
    fn rotation_any_trusted_key_verifies() {
        let (key, _, m) = setup(b"abc");
        let other = generate_key().unwrap();
        let both =
            TrustedKeys::from_public_lines([other.public.as_str(), key.public_line().as_str()])
                .unwrap();
        assert_eq!(both.key_ids().count(), 2);
        both.verify_manifest(&m).unwrap();
    }

    #[test]
    fn missing_keys_fail_closed() {
        let dir = tempfile::tempdir().unwrap();
        let e = TrustedKeys::load(dir.path()).unwrap_err();
        assert!(matches!(e, PayloadError::NoTrustedKeys { .. }), "{e}");
        assert!(TrustedKeys::from_public_lines([]).is_err());
        let kd = crate::config::rooted(dir.path(), TRUSTED_KEY_DIRS[1]);
        std::fs::create_dir_all(&kd).unwrap();
        std::fs::write(kd.join("bad.pub"), "not a key").unwrap();
        assert!(matches!(
            TrustedKeys::load(dir.path()),
            Err(PayloadError::BadKey { .. })
        ));
        std::fs::remove_file(kd.join("bad.pub")).unwrap();
        let id = write_keypair(&kd, "k1").unwrap();
        let t = TrustedKeys::load(dir.path()).unwrap();
        assert_eq!(t.key_ids().collect::<Vec<_>>(), vec![id.as_str()]);
        let key = SigningKey::load(&kd.join("k1.key")).unwrap();
        assert_eq!(key.key_id(), id);
        assert!(SigningKey::from_pem("garbage").is_err());
    }

    #[test]
    fn offer_must_match_manifest() {
        let (_, trusted, m) = setup(b"abc");
        let v = trusted.verify_manifest(&m).unwrap();
        let mut offer = Offer {
            version: "766.3.0".into(),
            urls: vec![],
            size: 3,
            sha256: v.sha256,
            signed_manifest: None,
            disable_payload_backoff: false,
        };
        v.check_offer(&offer).unwrap();
        offer.version = "766.4.0".into();
        assert!(v.check_offer(&offer).is_err());
        offer.version = "766.3.0".into();
        offer.size = 4;
        assert!(v.check_offer(&offer).is_err());
    }
}
