//! keelson-updater: CoreOS-style automatic updates with A/B `/usr` slots.
//!
//! A node runs an [`engine::Engine`] (update_engine's state machine, pure)
//! inside a [`driver::Driver`] that speaks [`omaha`] v3 over HTTP to an update
//! server ([`server::UpdateServer`], or Nebraska), verifies an Ed25519-signed
//! [`payload`] manifest before writing anything, streams the payload into the
//! inactive slot of a [`slots::BootSlots`] (a real GPT disk in [`gpt`]), and
//! reports its progress as Omaha events. Configuration comes from
//! `update.conf` and the release file ([`config`]); versions and channels are
//! in [`version`].
//!
//! ```
//! use keelson_updater::payload::{generate_key, sign_manifest, SigningKey, TrustedKeys};
//! use keelson_updater::slots::{Slot, SlotTable};
//!
//! // `keelctl update keygen` / `keelctl update sign`
//! let k = generate_key().unwrap();
//! let key = SigningKey::from_pem(&k.private_pem).unwrap();
//! let payload = b"new /usr image";
//! let sha: [u8; 32] = ring::digest::digest(&ring::digest::SHA256, payload)
//!     .as_ref().try_into().unwrap();
//! let manifest = sign_manifest(&key, &"766.3.0".parse().unwrap(), "update.gz",
//!                              payload.len() as u64, &sha).unwrap();
//!
//! // A node trusting that key accepts the manifest; nothing else does.
//! let trusted = TrustedKeys::from_public_lines([k.public.as_str()]).unwrap();
//! let m = trusted.verify_manifest(&manifest).unwrap();
//! assert_eq!(m.length, payload.len() as u64);
//!
//! // The bootloader rule: a new slot gets one try; unmarked, it rolls back.
//! let mut t = SlotTable::fresh_install();
//! t.set_next(Slot::B);
//! assert_eq!(t.boot_next(), Some(Slot::B)); // the try is spent
//! assert_eq!(t.boot_next(), Some(Slot::A)); // never marked good: back to A
//! ```
pub mod admin;
pub mod api;
pub mod config;
pub mod driver;
pub mod engine;
pub mod gpt;
pub mod locksmith;
pub mod omaha;
pub mod payload;
pub mod rollout;
pub mod server;
pub mod slots;
pub mod version;
