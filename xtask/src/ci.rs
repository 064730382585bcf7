//! `cargo xtask ci`: every check CI runs, in order, stopping at the first
//! failure and naming it.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::{Result, workspace};

/// A CI step: a name for the header and the error, and what it runs.
type Step = (&'static str, fn(&Path) -> Result<()>);

const STEPS: &[Step] = &[
    ("fmt", fmt),
    ("clippy", clippy),
    ("features", features),
    ("peers", peers),
    ("tests", tests),
    ("loom", loom),
    ("docs", docs),
    ("deny", deny),
    ("fuzz", fuzz),
];

/// Runs every step from the workspace root.
pub(crate) fn run() -> Result<()> {
    let root = workspace::root();
    let total = STEPS.len();
    for (passed, (name, step)) in STEPS.iter().enumerate() {
        println!("\n==> ci step {}/{total}: {name}", passed + 1);
        if let Err(error) = step(&root) {
            println!("\nci: {passed}/{total} steps passed; step `{name}` failed");
            return Err(format!("ci step `{name}` failed: {error}").into());
        }
    }
    println!("\nci: {total}/{total} steps passed");
    Ok(())
}

fn fmt(root: &Path) -> Result<()> {
    exec(cargo(root, "fmt --all -- --check"))
}

fn clippy(root: &Path) -> Result<()> {
    exec(cargo(root, "clippy --workspace --all-targets --locked -- -D warnings"))
}

/// Each library crate with no default features, each feature alone, the
/// defaults, and all features together.
fn features(root: &Path) -> Result<()> {
    ensure_tool(root, "hack", "cargo-hack")?;
    let crates = workspace::library_crates(root)?;
    if crates.is_empty() {
        return Err("no library crates found under crates/".into());
    }
    for krate in &crates {
        // No `--no-dev-deps`: it edits Cargo.toml while running, which changes
        // the lock file and so fails under `--locked`. It is not needed either:
        // with resolver 2+, `cargo check` of a library does not enable the
        // features that dev-dependencies ask for.
        let name = krate.name.as_str();
        exec(cargo(root, &format!("hack check --package {name} --each-feature --locked")))?;
        exec(cargo(root, &format!("check --package {name} --all-features --locked")))?;
    }
    Ok(())
}

/// The real peers the tests run against, from Debian packages: installed
/// with apt-get when missing and running as root, else a failure that names
/// the package. Tests never skip for want of a peer.
fn peers(root: &Path) -> Result<()> {
    // (a command that succeeds when the peer is there, its Debian package)
    const PEERS: &[(&[&str], &str)] = &[
        (&["ffprobe", "-version"], "ffmpeg"),
        (&["ffmpeg", "-version"], "ffmpeg"),
        (&["rtmpdump", "-h"], "rtmpdump"),
        (&["gst-launch-1.0", "--version"], "gstreamer1.0-tools"),
        (&["gst-inspect-1.0", "flvmux"], "gstreamer1.0-plugins-good"),
        (&["gst-inspect-1.0", "rtmp2sink"], "gstreamer1.0-plugins-bad"),
        (&["gst-inspect-1.0", "avdec_h264"], "gstreamer1.0-libav"),
        (&["nginx", "-v"], "nginx-light"),
        (&["test", "-f", "/usr/lib/nginx/modules/ngx_rtmp_module.so"], "libnginx-mod-rtmp"),
        (&["test", "-x", "/usr/bin/chromium"], "chromium"),
        (&["promtool", "--version"], "prometheus"),
    ];
    let present = |probe: &[&str]| {
        Command::new(probe[0])
            .args(&probe[1..])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let mut packages: Vec<&str> =
        PEERS.iter().filter(|(probe, _)| !present(probe)).map(|&(_, package)| package).collect();
    packages.dedup();
    if packages.is_empty() {
        println!(
            "peers present: ffmpeg, ffprobe, rtmpdump, GStreamer (rtmp2, flv, libav), nginx with the RTMP module, chromium, promtool"
        );
        return Ok(());
    }
    if !is_root() {
        return Err(format!("missing Debian packages: {} (run as root to install them)", packages.join(" ")).into());
    }
    let mut update = Command::new("apt-get");
    update.current_dir(root).args(["-q", "update"]);
    exec(update)?;
    let mut install = Command::new("apt-get");
    install.current_dir(root).args(["-q", "-y", "install", "--no-install-recommends"]).args(&packages);
    // Install only: tests start their own nginx on loopback.
    install.env("DEBIAN_FRONTEND", "noninteractive").env("RUNLEVEL", "1");
    exec(install)?;
    match PEERS.iter().find(|(probe, _)| !present(probe)) {
        Some((probe, package)) => Err(format!("`{}` still fails after installing {package}", probe.join(" ")).into()),
        None => Ok(()),
    }
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Unit, integration and tidy tests under nextest, then doctests (which
/// nextest does not run).
fn tests(root: &Path) -> Result<()> {
    ensure_tool(root, "nextest", "cargo-nextest")?;
    exec(cargo(root, "nextest run --workspace --locked --no-fail-fast"))?;
    exec(cargo(root, "test --workspace --doc --locked"))
}

/// The model-checked tests of the bus's wake-up protocol (`--cfg
/// arcly_loom`), in a target directory of their own so the cfg change does
/// not invalidate the main build.
fn loom(root: &Path) -> Result<()> {
    let mut test = cargo(root, "test --package arcly-core --lib --release --locked loom_tests");
    test.env("RUSTFLAGS", "--cfg arcly_loom").env("CARGO_TARGET_DIR", root.join("target/loom"));
    exec(test)
}

fn docs(root: &Path) -> Result<()> {
    let mut doc = cargo(root, "doc --workspace --no-deps --locked");
    doc.env("RUSTDOCFLAGS", "-D warnings");
    exec(doc)
}

fn deny(root: &Path) -> Result<()> {
    ensure_tool(root, "deny", "cargo-deny")?;
    exec(cargo(root, "deny --locked check licenses bans sources"))?;
    println!("cargo-deny: advisories not checked (needs network access to the advisory database)");
    Ok(())
}

/// The fuzz workspace (excluded from ours): it builds on stable and its
/// replay tests pass (every committed corpus and regression input through
/// its target); then, with a nightly toolchain, every target runs for
/// [`fuzz::SMOKE_SECONDS`](crate::fuzz::SMOKE_SECONDS) under libFuzzer.
fn fuzz(root: &Path) -> Result<()> {
    let manifest = root.join("fuzz/Cargo.toml");
    if !manifest.is_file() {
        println!("no fuzz targets yet (fuzz/Cargo.toml does not exist)");
        return Ok(());
    }
    exec(cargo(root, "build --manifest-path fuzz/Cargo.toml --locked"))?;
    exec(cargo(root, "test --manifest-path fuzz/Cargo.toml --locked"))?;
    if !crate::fuzz::has_nightly(root) {
        println!("{}", crate::fuzz::NO_NIGHTLY);
        return Ok(());
    }
    crate::fuzz::run_targets(root, crate::fuzz::SMOKE_SECONDS, &[])
}

/// `cargo <args>` in `root`, using the cargo that runs us when known.
/// `args` is split at whitespace; no argument here contains any.
fn cargo(root: &Path, args: &str) -> Command {
    let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    command.current_dir(root).args(args.split_whitespace());
    command
}

/// Installs `crate_name` unless `cargo <subcommand> --version` works.
fn ensure_tool(root: &Path, subcommand: &str, crate_name: &str) -> Result<()> {
    let mut probe = cargo(root, &format!("{subcommand} --version"));
    probe.stdout(Stdio::null()).stderr(Stdio::null());
    if probe.status().is_ok_and(|status| status.success()) {
        return Ok(());
    }
    println!("`cargo {subcommand}` is not available; installing {crate_name}");
    exec(cargo(root, &format!("install --locked {crate_name}")))
}

/// Runs a command with inherited stdio; an error names the command.
fn exec(mut command: Command) -> Result<()> {
    let shown = show(&command);
    println!("$ {shown}");
    let status = command.status().map_err(|e| format!("could not start `{shown}`: {e}"))?;
    if status.success() { Ok(()) } else { Err(format!("`{shown}` failed ({status})").into()) }
}

/// The command as a shell line, with the environment it sets and plain
/// `cargo` in place of the full path to it.
fn show(command: &Command) -> String {
    let env = command.get_envs().filter_map(|(key, value)| Some(format!("{}=\"{}\"", key.to_str()?, value?.to_str()?)));
    let program = Path::new(command.get_program()).file_name().unwrap_or_default();
    let words = std::iter::once(program).chain(command.get_args());
    env.chain(words.map(|word| word.to_string_lossy().into_owned())).collect::<Vec<_>>().join(" ")
}
