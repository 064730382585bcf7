//! Replays every committed input on stable: each file of `corpus/<target>/`
//! (seeds) and `regressions/<target>/` (minimized crash inputs, named after
//! what they caught) through the target's function, so a fixed crash
//! stays fixed without a nightly toolchain or cargo-fuzz.
//!
//! A target without a corpus folder fails (no silent skip), and so does a
//! file in `fuzz_targets/` that [`arcly_fuzz::TARGETS`] does not list, or
//! a folder in `corpus/` or `regressions/` that names no target.

use std::fs;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use arcly_fuzz::{TARGETS, Target};

fn fuzz_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The files of `dir`, sorted; none if it does not exist.
fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else { return Vec::new() };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display())).path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// Runs every corpus and regression input of `name`, reporting all that
/// panic, with their paths.
fn replay(name: &str, target: Target) {
    let corpus = fuzz_dir().join("corpus").join(name);
    assert!(corpus.is_dir(), "target `{name}` has no corpus folder {}", corpus.display());
    let seeds = files(&corpus);
    assert!(!seeds.is_empty(), "target `{name}` has an empty corpus folder {}", corpus.display());
    let regressions = files(&fuzz_dir().join("regressions").join(name));
    let mut failed = Vec::new();
    for file in seeds.iter().chain(&regressions) {
        let data = fs::read(file).unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
        if panic::catch_unwind(AssertUnwindSafe(|| target(&data))).is_err() {
            failed.push(file.display().to_string());
        }
    }
    assert!(failed.is_empty(), "target `{name}` panics on:\n  {}", failed.join("\n  "));
}

macro_rules! replay_tests {
    ($($name:ident)*) => {
        $(
            #[test]
            fn $name() {
                replay(stringify!($name), arcly_fuzz::$name);
            }
        )*

        /// The targets that have a replay test here.
        const REPLAYED: &[&str] = &[$(stringify!($name)),*];
    };
}

replay_tests! {
    identity bus_ops annexb h264 h265 av1 vp9 vvc aac opus
    amf0 amf0_roundtrip flv_read flv_roundtrip ts_demux ts_roundtrip
    rtmp_handshake rtmp_chunk rtmp_server rtmp_client hls_params hls_packager hls_ingest
}

/// The names of the `.rs` files in `fuzz_targets/`, or of the folders in
/// `dir`, sorted.
fn names(dir: &Path, folders: bool) -> Vec<String> {
    let Ok(entries) = fs::read_dir(dir) else { return Vec::new() };
    let mut names: Vec<String> = entries
        .filter_map(|e| {
            let path = e.ok()?.path();
            if folders {
                path.is_dir().then(|| path.file_name()?.to_str().map(str::to_owned))?
            } else {
                path.extension().filter(|x| *x == "rs")?;
                path.file_stem()?.to_str().map(str::to_owned)
            }
        })
        .collect();
    names.sort();
    names
}

#[test]
fn every_target_is_listed_and_replayed() {
    let mut listed: Vec<&str> = TARGETS.iter().map(|(name, _)| *name).collect();
    listed.sort_unstable();
    let mut replayed = REPLAYED.to_vec();
    replayed.sort_unstable();
    assert_eq!(listed, replayed, "TARGETS and the replay tests differ");
    assert_eq!(names(&fuzz_dir().join("fuzz_targets"), false), listed, "fuzz_targets/ and TARGETS differ");
    for dir in ["corpus", "regressions"] {
        for folder in names(&fuzz_dir().join(dir), true) {
            assert!(listed.contains(&folder.as_str()), "{dir}/{folder} names no target");
        }
    }
}
