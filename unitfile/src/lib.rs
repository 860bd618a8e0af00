//! keelson-unitfile: systemd unit files as systemd reads them and as fleet
//! stored and hashed them.
//!
//! ```
//! use keelson_unitfile::{Mode, Unit};
//!
//! let text = "[Unit]\nDescription=My Service\n# a comment\n\n[Service]\nExecStart=/bin/true\n";
//! let unit = Unit::parse(text, Mode::Fleet, Some("hello.service"))?;
//!
//! assert_eq!(unit.options().len(), 2);
//! assert_eq!(unit.value("Unit", "Description"), Some("My Service"));
//! // Lossless: every byte comes back, comments and blank lines included.
//! assert_eq!(unit.to_lossless(), text);
//! // Normalised exactly as go-systemd's unit.Serialize, and fleet's hash of it.
//! assert_eq!(unit.normalized(), "[Unit]\nDescription=My Service\n\n[Service]\nExecStart=/bin/true\n");
//! assert_eq!(unit.hash().short().len(), 7);
//!
//! // Errors carry file, line and column.
//! let err = Unit::parse("[Service]\nJustAWord\n", Mode::Fleet, Some("bad.service")).unwrap_err();
//! assert_eq!((err.line(), err.column()), (2, 1));
//! assert!(err.to_string().starts_with("bad.service:2:1: missing `=`"));
//! # Ok::<(), keelson_unitfile::ParseError>(())
//! ```
//!
//! Two dialects are implemented, chosen per call with [`Mode`]:
//!
//! - [`Mode::Systemd`] reads a file as current systemd does
//!   (systemd.syntax(7)): comments never continue, an odd number of trailing
//!   backslashes joins lines with a space, a line without `=` is a
//!   [`Warning`], not an error.
//! - [`Mode::Fleet`] reads it as the go-systemd `unit` package vendored in
//!   fleet v1.0.0 did, quirks included, because that reading is what fleet
//!   stored and hashed. A unit's hash ([`Unit::hash`], [`UnitHash`]) is the
//!   SHA-1 of its normalised form, never of the submitted bytes.
//!
//! Where Keelson deliberately differs from go-systemd: fleet mode rejects
//! every physical line of 2048 bytes or more (go-systemd's check depends on
//! where the line falls in its read buffer, so it accepts some); invalid
//! UTF-8 is an error in both modes; error texts are Keelson's own, with
//! positions ([`ParseErrorKind::go_systemd_message`] gives go-systemd's).
//!
//! Drop-ins are merged with [`merge_drop_ins`] from (file name, contents)
//! pairs, or found on disk with [`find_drop_ins`] / [`load_unit`] in
//! directories the caller names; nothing is read behind the caller's back.

mod dropin;
mod error;
mod option;
mod parse;
mod serialize;
mod unit;

pub mod exec;
pub mod fleet;
pub mod name;
pub mod specifier;
pub mod verify;

pub use dropin::{find_drop_ins, load_unit, merge_drop_ins, DropInFile, DropInLayout, MergedUnit};
pub use error::{
    LoadError, ParseError, ParseErrorKind, Warning, WarningKind, FLEET_LINE_MAX, SYSTEMD_LINE_MAX,
};
pub use fleet::XFleet;
pub use name::{UnitName, UnitType};
pub use option::UnitOption;
pub use serialize::{
    fleet_hash, fleet_normalize, hash_options, normalize, InvalidUnitHash, UnitHash,
};
pub use specifier::SpecifierContext;
pub use unit::{effective_options, LineKind, Mode, SourceLine, Unit, UnknownMode};

/// The README's example is compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
