//! Drop-ins: `NAME.d/*.conf` files applied on top of a unit, in systemd's
//! order (reference `unitfile.md` §4).
//!
//! Merging is pure: [`merge_drop_ins`] takes the unit and the drop-ins as
//! (file name, contents) pairs, sorts them by file name and appends their
//! assignments, so list settings accumulate and an empty assignment in a
//! later file resets what came before. Finding the files is separate and
//! only looks where the caller says ([`find_drop_ins`], [`load_unit`]): no
//! function here reads `/etc` or `/run` on its own, which is what lets
//! tests, `--root` and several simulated nodes share one host.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::error::{LoadError, ParseError};
use crate::unit::{effective_options, values, Mode, Unit};
use crate::UnitOption;

/// A unit with its drop-ins applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergedUnit {
    options: Vec<UnitOption>,
    files: Vec<String>,
    origins: Vec<usize>,
}

impl MergedUnit {
    /// Every assignment: the unit's, then each drop-in's in the order applied.
    pub fn options(&self) -> &[UnitOption] {
        &self.options
    }

    /// The options after empty-assignment resets, across files.
    pub fn effective_options(&self) -> Vec<UnitOption> {
        effective_options(&self.options)
    }

    /// Effective values of a list setting, across files.
    pub fn values(&self, section: &str, name: &str) -> Vec<&str> {
        values(&self.options, section, name)
    }

    /// Effective value of a scalar setting: the last assignment wins, across
    /// files.
    pub fn value(&self, section: &str, name: &str) -> Option<&str> {
        self.values(section, name).pop()
    }

    /// The unit's file name (empty if it had none), then the drop-ins in the
    /// order they were applied.
    pub fn files(&self) -> &[String] {
        &self.files
    }

    /// The drop-ins applied, in order (what `systemctl status` lists under
    /// "Drop-In").
    pub fn drop_ins(&self) -> &[String] {
        self.files.get(1..).unwrap_or(&[])
    }

    /// The file option `index` of [`MergedUnit::options`] came from.
    pub fn origin(&self, index: usize) -> Option<&str> {
        let file = *self.origins.get(index)?;
        self.files.get(file).map(String::as_str)
    }
}

/// Applies drop-ins to `unit`.
///
/// `drop_ins` are (file name, contents) pairs; they are applied sorted by
/// file name, whatever directory they came from. If a name occurs more than
/// once, the first occurrence wins, so pass higher-precedence directories
/// first. Each drop-in is parsed in the unit's mode and named by its file
/// name in errors. An empty drop-in contributes nothing.
pub fn merge_drop_ins<N, T>(unit: &Unit, drop_ins: &[(N, T)]) -> Result<MergedUnit, ParseError>
where
    N: AsRef<str>,
    T: AsRef<[u8]>,
{
    let mut sorted: BTreeMap<&str, &[u8]> = BTreeMap::new();
    for (name, text) in drop_ins {
        sorted.entry(name.as_ref()).or_insert(text.as_ref());
    }
    merge_sorted(unit, sorted.into_iter().map(|(n, t)| (n.to_owned(), t)))
}

fn merge_sorted<'a>(
    unit: &Unit,
    drop_ins: impl Iterator<Item = (String, &'a [u8])>,
) -> Result<MergedUnit, ParseError> {
    let mut merged = MergedUnit {
        options: unit.options().to_vec(),
        files: vec![unit.file_name().unwrap_or_default().to_owned()],
        origins: vec![0; unit.options().len()],
    };
    for (name, text) in drop_ins {
        let drop_in = Unit::parse(text, unit.mode(), Some(&name))?;
        let file = merged.files.len();
        merged.files.push(name);
        merged
            .origins
            .extend(drop_in.options().iter().map(|_| file));
        merged.options.extend_from_slice(drop_in.options());
    }
    Ok(merged)
}

impl Unit {
    /// Method form of [`merge_drop_ins`].
    pub fn with_drop_ins<N, T>(&self, drop_ins: &[(N, T)]) -> Result<MergedUnit, ParseError>
    where
        N: AsRef<str>,
        T: AsRef<[u8]>,
    {
        merge_drop_ins(self, drop_ins)
    }
}

/// Which drop-in directories are searched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropInLayout {
    /// `NAME.d/` and, for an instance, the template's `TEMPLATE.d/`: what the
    /// systemd of the book (and of fleet's era) reads.
    Classic,
    /// Also the dash-prefix directories (`foo-bar-baz.service` reads
    /// `foo-bar-.service.d/` and `foo-.service.d/`) and the type-wide
    /// `service.d/`, in current systemd's order: the more specific directory
    /// wins for equally named files.
    Current,
}

/// One drop-in file found on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DropInFile {
    /// The file name (`20-cloudinit.conf`), which decides the order.
    pub name: String,
    /// Where it was read.
    pub path: PathBuf,
    /// Its contents.
    pub contents: Vec<u8>,
}

/// Finds the drop-ins of `unit_name` under `unit_dirs`, given in precedence
/// order (e.g. `etc/systemd/system`, `run/systemd/system`,
/// `usr/lib/systemd/system` under some root).
///
/// Every `*.conf` file of every searched `.d/` directory is a candidate; for
/// each file name the first one found (highest-precedence directory, most
/// specific name) is used, and one that is empty or a symlink to `/dev/null`
/// masks that name. The result is sorted by file name, masked names
/// omitted. Missing directories are skipped.
pub fn find_drop_ins<P: AsRef<Path>>(
    unit_name: &str,
    unit_dirs: &[P],
    layout: DropInLayout,
) -> Result<Vec<DropInFile>, LoadError> {
    let mut names = Vec::new();
    dir_names(unit_name, layout, &mut names);
    let mut dirs: Vec<PathBuf> = Vec::new();
    for unit_dir in unit_dirs {
        for name in &names {
            dirs.push(unit_dir.as_ref().join(format!("{name}.d")));
        }
    }
    if layout == DropInLayout::Current {
        if let Some((_, kind)) = unit_name.rsplit_once('.') {
            for unit_dir in unit_dirs {
                dirs.push(unit_dir.as_ref().join(format!("{kind}.d")));
            }
        }
    }

    // None marks a masked name.
    let mut found: BTreeMap<String, Option<DropInFile>> = BTreeMap::new();
    for dir in dirs {
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) if e.kind() == io::ErrorKind::NotADirectory => continue,
            Err(source) => return Err(LoadError::Io { path: dir, source }),
        };
        for entry in entries {
            let entry = entry.map_err(|source| LoadError::Io {
                path: dir.clone(),
                source,
            })?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if !name.ends_with(".conf") || found.contains_key(&name) {
                continue;
            }
            let path = entry.path();
            let file = if is_masked(&path)? {
                None
            } else {
                match fs::read(&path) {
                    Ok(contents) => Some(DropInFile {
                        name: name.clone(),
                        path,
                        contents,
                    }),
                    // A directory or dangling link named *.conf is not a drop-in.
                    Err(e) if path.is_dir() || e.kind() == io::ErrorKind::NotFound => continue,
                    Err(source) => return Err(LoadError::Io { path, source }),
                }
            };
            found.insert(name, file);
        }
    }
    Ok(found.into_values().flatten().collect())
}

/// Loads `unit_name` from the first of `unit_dirs` that has it (for an
/// instance without its own file, the template's), then applies its
/// drop-ins from the same directories. Files are parsed in `mode` and named
/// by path in errors.
pub fn load_unit<P: AsRef<Path>>(
    unit_name: &str,
    unit_dirs: &[P],
    mode: Mode,
    layout: DropInLayout,
) -> Result<MergedUnit, LoadError> {
    let mut candidates = vec![unit_name.to_owned()];
    if let Some(template) = template_of(unit_name) {
        candidates.push(template);
    }
    let path = candidates
        .iter()
        .find_map(|name| {
            unit_dirs
                .iter()
                .map(|d| d.as_ref().join(name))
                .find(|p| p.symlink_metadata().is_ok())
        })
        .ok_or_else(|| LoadError::NotFound {
            name: unit_name.to_owned(),
        })?;
    if is_masked(&path)? {
        return Err(LoadError::Masked {
            name: unit_name.to_owned(),
            path,
        });
    }
    let text = fs::read(&path).map_err(|source| LoadError::Io {
        path: path.clone(),
        source,
    })?;
    let display = path.display().to_string();
    let unit = Unit::parse(&text, mode, Some(&display))?;
    let drop_ins = find_drop_ins(unit_name, unit_dirs, layout)?;
    let merged = merge_sorted(
        &unit,
        drop_ins
            .iter()
            .map(|d| (d.path.display().to_string(), d.contents.as_slice())),
    )?;
    Ok(merged)
}

/// Empty, or a symlink to `/dev/null`.
fn is_masked(path: &Path) -> Result<bool, LoadError> {
    let io_err = |source| LoadError::Io {
        path: path.to_owned(),
        source,
    };
    let meta = fs::symlink_metadata(path).map_err(io_err)?;
    if meta.file_type().is_symlink() {
        let target = fs::read_link(path).map_err(io_err)?;
        if target == Path::new("/dev/null") {
            return Ok(true);
        }
    }
    match fs::metadata(path) {
        Ok(m) => Ok(m.is_file() && m.len() == 0),
        Err(_) => Ok(false),
    }
}

/// `foo@bar.service` → `foo@.service`; `None` for anything else.
fn template_of(name: &str) -> Option<String> {
    let (stem, kind) = name.rsplit_once('.')?;
    let (prefix, instance) = stem.split_once('@')?;
    if instance.is_empty() {
        return None;
    }
    Some(format!("{prefix}@.{kind}"))
}

/// The `.d` directory names (without `.d`) searched for `name`, in
/// systemd's `unit_file_find_dirs()` order.
fn dir_names(name: &str, layout: DropInLayout, out: &mut Vec<String>) {
    if out.iter().any(|n| n == name) || out.len() > 64 {
        return;
    }
    out.push(name.to_owned());
    if let Some(template) = template_of(name) {
        dir_names(&template, layout, out);
    }
    if layout == DropInLayout::Classic {
        return;
    }
    let Some((stem, kind)) = name.rsplit_once('.') else {
        return;
    };
    let (mut prefix, instance) = match stem.split_once('@') {
        Some((p, i)) if !i.is_empty() => (p, Some(i)),
        Some((p, _)) => (p, None),
        None => (stem, None),
    };
    // foo-bar-baz → foo-bar-; foo-bar- → foo- (a trailing dash is chopped
    // once); a leading dash ends the search.
    let mut chopped = false;
    loop {
        let Some(dash) = prefix.rfind('-') else {
            return;
        };
        if dash == 0 {
            return;
        }
        if dash + 1 < prefix.len() || chopped {
            prefix = &prefix[..=dash];
            break;
        }
        prefix = &prefix[..dash];
        chopped = true;
    }
    let built = match instance {
        Some(i) => format!("{prefix}@{i}.{kind}"),
        None => format!("{prefix}.{kind}"),
    };
    dir_names(&built, layout, out);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(name: &str, layout: DropInLayout) -> Vec<String> {
        let mut out = Vec::new();
        dir_names(name, layout, &mut out);
        out
    }

    #[test]
    fn classic_dirs_are_instance_then_template() {
        assert_eq!(
            names("foo@bar.service", DropInLayout::Classic),
            ["foo@bar.service", "foo@.service"]
        );
        assert_eq!(
            names("foo-bar.service", DropInLayout::Classic),
            ["foo-bar.service"]
        );
    }

    #[test]
    fn current_dirs_walk_the_dash_prefixes() {
        assert_eq!(
            names("foo-bar-baz.service", DropInLayout::Current),
            ["foo-bar-baz.service", "foo-bar-.service", "foo-.service"]
        );
        assert_eq!(names("-.mount", DropInLayout::Current), ["-.mount"]);
    }
}
