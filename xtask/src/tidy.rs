//! Tidy checks over the repository's files, run as ordinary tests (as in
//! rust-analyzer), so `cargo nextest run --workspace` enforces them.
//!
//! Each check has a small detector function with a test of its own showing
//! that it does catch what it looks for.

use std::fs;
use std::path::Path;
use std::process::Command;

use crate::workspace::{self, Crate};

/// This file names the patterns it hunts for, so it skips itself.
const THIS_FILE: &str = "xtask/src/tidy.rs";

const LIB_ATTRIBUTES: [&str; 2] = ["#![forbid(unsafe_code)]", "#![deny(missing_docs)]"];
const ROOT_DOCS: [&str; 3] = ["README.md", "ARCHITECTURE.md", "BENCHMARKS.md"];
const LEFTOVER_MACROS: [&str; 2] = ["dbg!(", "todo!("];
const MACHINE_PATHS: [&str; 3] = ["/work/", "/root/", "/tmp/"];
const MACHINE_WORDS: [&str; 1] = ["bash_jobs"];

#[test]
fn library_crates_forbid_unsafe_and_deny_missing_docs() {
    let crates = must(workspace::library_crates(&workspace::root()));
    assert!(!crates.is_empty(), "no library crates found under crates/");
    let mut problems = Vec::new();
    for Crate { name, dir } in &crates {
        let lib = must(workspace::read(&dir.join("src/lib.rs")));
        for attribute in missing_attributes(&lib) {
            problems.push(format!("{name}: src/lib.rs lacks `{attribute}`"));
        }
    }
    report(&problems, "library crates without the required crate attributes");
}

#[test]
fn every_crate_uses_workspace_lints() {
    let members = must(workspace::members(&workspace::root()));
    assert!(!members.is_empty(), "no workspace members found");
    let problems: Vec<String> = members
        .iter()
        .filter(|krate| !has_workspace_lints(&must(workspace::read(&krate.dir.join("Cargo.toml")))))
        .map(|krate| format!("{}: Cargo.toml needs `[lints]` with `workspace = true`", krate.name))
        .collect();
    report(&problems, "crates that do not inherit the workspace lints");
}

#[test]
fn no_machine_specific_paths_in_tracked_files() {
    let root = workspace::root();
    let output = Command::new("git")
        .args(["ls-files", "-z"])
        .current_dir(&root)
        .output()
        .unwrap_or_else(|e| panic!("could not start `git ls-files`: {e}"));
    assert!(output.status.success(), "`git ls-files` failed: {}", output.status);
    let listing = String::from_utf8_lossy(&output.stdout);
    let files: Vec<&str> = listing.split('\0').filter(|f| !f.is_empty()).collect();
    assert!(!files.is_empty(), "`git ls-files` listed no files");

    let mut problems = Vec::new();
    for file in files.into_iter().filter(|&file| file != THIS_FILE) {
        // Deleted-but-tracked and binary files have no text to check.
        let Ok(bytes) = fs::read(root.join(file)) else {
            continue;
        };
        let Ok(text) = String::from_utf8(bytes) else {
            continue;
        };
        for (number, line) in text.lines().enumerate() {
            if let Some(found) = machine_specific(line) {
                problems.push(format!("{file}:{}: `{found}`", number + 1));
            }
        }
    }
    report(&problems, "machine-specific paths in tracked files");
}

#[test]
fn no_dbg_or_todo_in_crates() {
    let root = workspace::root();
    let mut files = Vec::new();
    rust_files(&root.join("crates"), &mut files);
    assert!(!files.is_empty(), "no .rs files found under crates/");
    let mut problems = Vec::new();
    for file in &files {
        let text = must(workspace::read(file));
        for (number, line) in text.lines().enumerate() {
            if let Some(found) = leftover_macro(line) {
                let shown = file.strip_prefix(&root).unwrap_or(file).display();
                problems.push(format!("{shown}:{}: `{found}`", number + 1));
            }
        }
    }
    report(&problems, "leftover `dbg!`/`todo!` in crates/");
}

#[test]
fn root_docs_exist() {
    let root = workspace::root();
    let missing: Vec<String> = ROOT_DOCS
        .iter()
        .filter(|doc| !root.join(doc).is_file())
        .map(|doc| format!("{doc} is missing at the workspace root"))
        .collect();
    report(&missing, "required documents missing");
}

// Detectors.

fn missing_attributes(lib_rs: &str) -> Vec<&'static str> {
    LIB_ATTRIBUTES.into_iter().filter(|attribute| !lib_rs.lines().any(|line| line.trim() == *attribute)).collect()
}

fn has_workspace_lints(cargo_toml: &str) -> bool {
    let in_section = workspace::section(cargo_toml, "lints").any(|l| workspace::value(l, "workspace") == Some("true"));
    let dotted = cargo_toml.lines().any(|l| workspace::value(l, "lints.workspace") == Some("true"));
    in_section || dotted
}

/// An absolute path into this machine's scratch or home directories, or a
/// word that only our tooling's scratch space uses.
fn machine_specific(line: &str) -> Option<&'static str> {
    let is_path_char = |c: char| c.is_alphanumeric() || "_-./~}".contains(c);
    let absolute = MACHINE_PATHS.into_iter().find(|needle| {
        line.match_indices(needle).any(|(at, _)| !line[..at].chars().next_back().is_some_and(is_path_char))
    });
    absolute.or_else(|| MACHINE_WORDS.into_iter().find(|word| line.contains(word)))
}

fn leftover_macro(line: &str) -> Option<&'static str> {
    LEFTOVER_MACROS.into_iter().find(|needle| line.contains(needle))
}

// Helpers.

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    let entries = fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display())).path();
        if path.is_dir() && !path.ends_with("target") {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            out.push(path);
        }
    }
}

fn must<T>(result: crate::Result<T>) -> T {
    result.unwrap_or_else(|e| panic!("{e}"))
}

fn report(problems: &[String], what: &str) {
    assert!(problems.is_empty(), "tidy: {what}:\n  {}\n", problems.join("\n  "));
}

// The detectors catch what they look for.

#[test]
fn detector_missing_attributes() {
    assert_eq!(missing_attributes("//! Docs.\n"), LIB_ATTRIBUTES);
    assert_eq!(missing_attributes("#![forbid(unsafe_code)]\n"), ["#![deny(missing_docs)]"]);
    assert!(missing_attributes("//! Docs.\n#![forbid(unsafe_code)]\n#![deny(missing_docs)]\n").is_empty());
}

#[test]
fn detector_workspace_lints() {
    assert!(has_workspace_lints("[package]\nname = \"a\"\n\n[lints]\nworkspace = true\n"));
    assert!(has_workspace_lints("[package]\nname = \"a\"\nlints.workspace = true\n"));
    assert!(!has_workspace_lints("[package]\nname = \"a\"\nworkspace = true\n"));
    assert!(!has_workspace_lints("[lints]\n\n[package]\nworkspace = true\n"));
    assert!(!has_workspace_lints("[lints.rust]\nunsafe_code = \"forbid\"\n"));
}

#[test]
fn detector_machine_specific() {
    assert_eq!(machine_specific("see /work/main/Cargo.toml"), Some("/work/"));
    assert_eq!(machine_specific("cd \"/root/.cargo\""), Some("/root/"));
    assert_eq!(machine_specific("/tmp/x"), Some("/tmp/"));
    assert_eq!(machine_specific("out in bash_jobs.0"), Some("bash_jobs"));
    assert_eq!(machine_specific("crates/x/tmp/y and ./work/z"), None);
    assert_eq!(machine_specific("/target"), None);
}

#[test]
fn detector_leftover_macro() {
    assert_eq!(leftover_macro("    dbg!(x);"), Some("dbg!("));
    assert_eq!(leftover_macro("    todo!()"), Some("todo!("));
    assert_eq!(leftover_macro("    // debug and to-do"), None);
}
