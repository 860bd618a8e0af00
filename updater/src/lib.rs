//! keelson-updater: automatic updates and coordinated reboots.
//!
//! This crate will hold the Omaha v3 protocol types, the update engine as a pure
//! state machine with update_engine's states, payload verification (Ed25519
//! over a manifest holding the payload's SHA-256), the `BootSlots` and
//! `Rebooter` seams, an update server, and locksmith's reboot semaphore in the kv.
//!
//! Nothing is implemented yet; see the updater and locksmith issues.
