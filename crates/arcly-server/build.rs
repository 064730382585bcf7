//! Build script: installs the web player's npm dependencies when
//! `web/node_modules` is missing (`npm ci` from the committed lock file),
//! then copies hls.js into `OUT_DIR`, where `src/player.rs` embeds it with
//! `include_bytes!`. The player is served from the binary: no CDN.
#![allow(clippy::print_stdout, clippy::print_stderr)] // Cargo reads the build script's stdout.

use std::env;
use std::fs;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let web = manifest.join("web");
    let hls = web.join("node_modules/hls.js/dist/hls.min.js");
    println!("cargo:rerun-if-changed=web/package.json");
    println!("cargo:rerun-if-changed=web/package-lock.json");
    println!("cargo:rerun-if-changed={}", hls.display());
    if !hls.is_file() {
        let status = Command::new("npm").args(["ci", "--no-audit", "--no-fund"]).current_dir(&web).status();
        match status {
            Ok(s) if s.success() => {}
            Ok(s) => panic!(
                "`npm ci --no-audit --no-fund` in {} failed ({s}); the web player embeds hls.js from npm \
                 (web/package-lock.json); see npm's output above",
                web.display()
            ),
            Err(e) => panic!(
                "cannot run `npm` ({e}): building arcly-server embeds hls.js installed with npm. \
                 Install Node.js and npm (Debian packages `nodejs` and `npm`) and build again, \
                 or run `npm ci` in {} yourself",
                web.display()
            ),
        }
        assert!(hls.is_file(), "`npm ci` did not install {}", hls.display());
    }
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("hls.min.js");
    if let Err(e) = fs::copy(&hls, &out) {
        panic!("cannot copy {} to {}: {e}", hls.display(), out.display());
    }
}
