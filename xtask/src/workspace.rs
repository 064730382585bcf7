//! Facts about the workspace read straight from the file system: where its
//! root is, which crates it has, and a minimal line-based look into their
//! `Cargo.toml` files (enough for our own manifests, not a TOML parser).

use std::fs;
use std::path::{Path, PathBuf};

use crate::Result;

/// The workspace root: the parent of the xtask crate's directory.
pub(crate) fn root() -> PathBuf {
    let xtask_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    // Cargo always sets an absolute CARGO_MANIFEST_DIR, so a parent exists.
    xtask_dir.parent().unwrap_or(xtask_dir).to_path_buf()
}

/// A crate of the workspace.
pub(crate) struct Crate {
    /// The package name, as `cargo -p` wants it.
    pub(crate) name: String,
    /// The directory holding its `Cargo.toml`.
    #[cfg_attr(not(test), expect(dead_code, reason = "read by the tidy tests"))]
    pub(crate) dir: PathBuf,
}

/// Every library crate under `crates/`: it has `src/lib.rs` and no `[[bin]]`.
pub(crate) fn library_crates(root: &Path) -> Result<Vec<Crate>> {
    let mut crates = Vec::new();
    for dir in subdirectories(&root.join("crates"))? {
        let manifest = dir.join("Cargo.toml");
        if !manifest.is_file() || !dir.join("src/lib.rs").is_file() {
            continue;
        }
        let text = read(&manifest)?;
        if text.lines().any(|line| line.trim() == "[[bin]]") {
            continue;
        }
        crates.push(Crate { name: package_name(&manifest, &text)?, dir });
    }
    Ok(crates)
}

/// Every member of the workspace, from `members` in the root `Cargo.toml`.
/// Entries may be plain paths or end in `/*`; other globs are an error.
#[cfg(test)]
pub(crate) fn members(root: &Path) -> Result<Vec<Crate>> {
    let manifest = root.join("Cargo.toml");
    let text = read(&manifest)?;
    let uncommented: Vec<&str> =
        section(&text, "workspace").map(|line| line.split('#').next().unwrap_or_default()).collect();
    let from_members = uncommented
        .iter()
        .position(|line| line.split_once('=').is_some_and(|(key, _)| key.trim() == "members"))
        .map(|start| uncommented[start..].join("\n"));
    let list = from_members
        .as_deref()
        .and_then(|text| text.split_once('['))
        .and_then(|(_, rest)| rest.split_once(']'))
        .map(|(list, _)| list)
        .ok_or_else(|| format!("{}: no `members = [...]` in [workspace]", manifest.display()))?;

    let mut dirs = Vec::new();
    for entry in list.split(',').map(|s| s.trim().trim_matches('"')).filter(|s| !s.is_empty()) {
        match entry.strip_suffix("/*") {
            Some(parent) => dirs
                .extend(subdirectories(&root.join(parent))?.into_iter().filter(|dir| dir.join("Cargo.toml").is_file())),
            None if entry.contains(['*', '?', '[']) => {
                return Err(format!("{}: unsupported glob `{entry}`", manifest.display()).into());
            }
            None => dirs.push(root.join(entry)),
        }
    }
    dirs.into_iter()
        .map(|dir| {
            let manifest = dir.join("Cargo.toml");
            let name = package_name(&manifest, &read(&manifest)?)?;
            Ok(Crate { name, dir })
        })
        .collect()
}

/// The fuzz targets: the names of the `.rs` files in `fuzz/fuzz_targets/`,
/// sorted.
pub(crate) fn fuzz_targets(root: &Path) -> Result<Vec<String>> {
    let dir = root.join("fuzz/fuzz_targets");
    let entries = fs::read_dir(&dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
    let mut targets = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| format!("cannot list {}: {e}", dir.display()))?.path();
        if path.extension().is_some_and(|ext| ext == "rs")
            && let Some(stem) = path.file_stem().and_then(|s| s.to_str())
        {
            targets.push(stem.to_owned());
        }
    }
    targets.sort();
    Ok(targets)
}

/// The lines of `[name]` in a TOML file, up to the next table header.
pub(crate) fn section<'a>(toml: &'a str, name: &str) -> impl Iterator<Item = &'a str> {
    let header = format!("[{name}]");
    toml.lines()
        .skip_while(move |line| line.trim() != header)
        .skip(1)
        .take_while(|line| !line.trim_start().starts_with('['))
}

/// `key = value` on one line, with the value's quotes removed.
pub(crate) fn value<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let (k, v) = line.split_once('=')?;
    (k.trim() == key).then(|| v.trim().trim_matches('"'))
}

/// Reads a file, naming it in the error.
pub(crate) fn read(path: &Path) -> Result<String> {
    fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()).into())
}

fn package_name(manifest: &Path, text: &str) -> Result<String> {
    section(text, "package")
        .find_map(|line| value(line, "name"))
        .map(str::to_owned)
        .ok_or_else(|| format!("{}: no `name` in [package]", manifest.display()).into())
}

/// The directories directly inside `dir`, sorted.
fn subdirectories(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = fs::read_dir(dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
    let mut dirs = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| format!("cannot list {}: {e}", dir.display()))?.path();
        if path.is_dir() {
            dirs.push(path);
        }
    }
    dirs.sort();
    Ok(dirs)
}
