//! keelson-updater: automatic updates for A/B `/usr` slots.
pub mod omaha;
