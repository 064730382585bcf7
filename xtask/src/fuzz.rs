//! `cargo xtask fuzz`: runs the fuzz targets of `fuzz/` with cargo-fuzz on
//! a nightly toolchain, one after another, and reports per target how many
//! inputs ran in how much CPU time and whether anything was found.
//!
//! - `--smoke`: every target (or those named) for 20 s each, or `--seconds`.
//! - `--seconds N target...`: a longer run of the targets named.
//! - `--seed`: rewrites the seed corpora (`fuzz/corpus/<target>/seed-*`)
//!   from `testdata/` (stable; see `fuzz/examples/seed.rs`).
//!
//! Each run reads `fuzz/corpus/<target>` (the committed seeds) and
//! `fuzz/regressions/<target>` and writes what it finds new to
//! `fuzz/target/corpus/<target>`, which git ignores and later runs start
//! from. A crash (or timeout, or out-of-memory) leaves its input under
//! `fuzz/artifacts/<target>/`, printed at the end, and fails the command.
//! libFuzzer's output goes to `fuzz/target/logs/<target>.log`.

use std::fs::{self, File};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::Result;
use crate::workspace;

/// Seconds per target of a smoke run, as CI runs it.
pub(crate) const SMOKE_SECONDS: u64 = 20;

/// What `cargo xtask ci` prints when it cannot run the smoke run.
pub(crate) const NO_NIGHTLY: &str = "fuzz smoke: skipped, no nightly toolchain (rustup toolchain install nightly)";

/// `cargo xtask fuzz <args>`.
pub(crate) fn run(args: &[&str]) -> Result<()> {
    let mut smoke = false;
    let mut seed = false;
    let mut seconds = None;
    let mut targets = Vec::new();
    let mut rest = args.iter();
    while let Some(&arg) = rest.next() {
        match arg {
            "--smoke" => smoke = true,
            "--seed" => seed = true,
            "--seconds" => {
                let value = rest.next().ok_or("--seconds needs a number")?;
                seconds = Some(value.parse::<u64>().map_err(|_| format!("--seconds {value}: not a number"))?);
            }
            flag if flag.starts_with('-') => return Err(format!("unknown option `{flag}`").into()),
            target => targets.push(target.to_owned()),
        }
    }
    let root = workspace::root();
    if seed {
        if smoke || seconds.is_some() || !targets.is_empty() {
            return Err("--seed takes no other arguments".into());
        }
        return write_seeds(&root);
    }
    let seconds = match (smoke, seconds) {
        (_, Some(0)) => return Err("--seconds must be at least 1".into()),
        (_, Some(n)) => n,
        (true, None) => SMOKE_SECONDS,
        (false, None) => return Err("say --smoke, --seconds N or --seed (see `cargo xtask help`)".into()),
    };
    if !smoke && targets.is_empty() {
        return Err("name the targets to run, or use --smoke for all of them".into());
    }
    if !has_nightly(&root) {
        return Err(NO_NIGHTLY.trim_start_matches("fuzz smoke: skipped, ").into());
    }
    run_targets(&root, seconds, &targets)
}

/// True if `cargo +nightly` works.
pub(crate) fn has_nightly(root: &Path) -> bool {
    let mut probe = rustup_cargo(root);
    probe.args(["+nightly", "--version"]).stdout(Stdio::null()).stderr(Stdio::null());
    probe.status().is_ok_and(|s| s.success())
}

/// Runs `targets` (all when empty) for `seconds` each, one at a time.
pub(crate) fn run_targets(root: &Path, seconds: u64, targets: &[String]) -> Result<()> {
    let all = workspace::fuzz_targets(root)?;
    if all.is_empty() {
        return Err("no fuzz targets in fuzz/fuzz_targets/".into());
    }
    if let Some(unknown) = targets.iter().find(|t| !all.contains(t)) {
        return Err(format!("no fuzz target `{unknown}` (there are: {})", all.join(", ")).into());
    }
    let targets = if targets.is_empty() { all } else { targets.to_vec() };
    ensure_cargo_fuzz(root)?;
    // One build of every target first: the runs then start at once.
    let mut build = rustup_cargo(root);
    build.args(["+nightly", "fuzz", "build"]);
    exec(build)?;

    let fuzz = root.join("fuzz");
    let logs = fuzz.join("target/logs");
    fs::create_dir_all(&logs).map_err(|e| format!("cannot create {}: {e}", logs.display()))?;
    let mut reports = Vec::new();
    for target in &targets {
        println!("fuzz {target}: {seconds} s");
        let output = fuzz.join("target/corpus").join(target);
        fs::create_dir_all(&output).map_err(|e| format!("cannot create {}: {e}", output.display()))?;
        let mut corpora = vec![output, fuzz.join("corpus").join(target)];
        corpora.extend(Some(fuzz.join("regressions").join(target)).filter(|d| d.is_dir()));
        let log_path = logs.join(format!("{target}.log"));
        let log = File::create(&log_path).map_err(|e| format!("cannot create {}: {e}", log_path.display()))?;
        let mut command = rustup_cargo(root);
        command.args(["+nightly", "fuzz", "run", target]).args(&corpora).arg("--").args([
            format!("-max_total_time={seconds}"),
            // A single input that takes this long is a finding (a hang).
            "-timeout=10".to_owned(),
            "-print_final_stats=1".to_owned(),
        ]);
        command.stdout(log.try_clone()?).stderr(log);
        let cpu_before = children_cpu_seconds();
        let started = Instant::now();
        let status = command.status().map_err(|e| format!("could not start cargo fuzz: {e}"))?;
        let wall = started.elapsed().as_secs_f64();
        let cpu = children_cpu_seconds().zip(cpu_before).map(|(after, before)| after - before);
        let text = fs::read_to_string(&log_path).unwrap_or_default();
        let report = Report::parse(target, &text, status.success(), cpu.unwrap_or(wall));
        println!("  {}", report.line());
        if !status.success() && report.artifact.is_none() {
            println!("  cargo fuzz failed ({status}); its output is in {}", log_path.display());
        }
        reports.push(report);
    }
    println!("\n{}", table(&reports));
    let failed: Vec<&Report> = reports.iter().filter(|r| !r.ok).collect();
    if failed.is_empty() {
        return Ok(());
    }
    for r in &failed {
        let found = r.artifact.as_deref().unwrap_or("no artifact; see the log");
        println!("{}: {found}", r.target);
    }
    Err(format!("{} of {} fuzz targets failed", failed.len(), reports.len()).into())
}

/// What one run of a target did, from libFuzzer's final statistics.
#[derive(Debug, PartialEq)]
struct Report {
    target: String,
    ok: bool,
    runs: Option<u64>,
    /// libFuzzer's own seconds ("Done N runs in S second(s)").
    seconds: Option<u64>,
    /// CPU seconds of the whole run (cargo fuzz and the target), or the
    /// wall time where that cannot be read.
    cpu: f64,
    new_units: Option<u64>,
    coverage: Option<u64>,
    artifact: Option<String>,
}

impl Report {
    fn parse(target: &str, log: &str, ok: bool, cpu: f64) -> Self {
        let stat = |name: &str| {
            log.lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim_start_matches(':').trim().parse::<u64>().ok())
        };
        let done = log.lines().rev().find_map(|l| {
            let rest = l.strip_prefix("Done ")?;
            let (runs, rest) = rest.split_once(" runs in ")?;
            let seconds = rest.split_whitespace().next()?;
            Some((runs.parse().ok()?, seconds.parse().ok()?))
        });
        // The last status line: "#1234	DONE   cov: 456 ft: ..." or a pulse.
        let coverage = log.lines().rev().find_map(|l| {
            let (_, rest) = l.split_once(" cov: ")?;
            rest.split_whitespace().next()?.parse().ok()
        });
        let artifact =
            log.lines().find_map(|l| l.split_once("Test unit written to ").map(|(_, p)| p.trim().to_owned()));
        Self {
            target: target.to_owned(),
            ok: ok && artifact.is_none(),
            runs: stat("stat::number_of_executed_units").or(done.map(|d| d.0)),
            seconds: done.map(|d| d.1),
            cpu,
            new_units: stat("stat::new_units_added"),
            coverage,
            artifact,
        }
    }

    fn line(&self) -> String {
        let num = |v: Option<u64>| v.map_or_else(|| "?".to_owned(), |v| v.to_string());
        let result = match (&self.artifact, self.ok) {
            (Some(path), _) => format!("FOUND {path}"),
            (None, false) => "FAILED".to_owned(),
            (None, true) => "nothing found".to_owned(),
        };
        format!(
            "{} runs in {} s ({:.1} s CPU), coverage {}, {} new inputs: {result}",
            num(self.runs),
            num(self.seconds),
            self.cpu,
            num(self.coverage),
            num(self.new_units)
        )
    }
}

fn table(reports: &[Report]) -> String {
    let mut out = format!("{:<16} {:>12} {:>8} {:>8} {:>6}  result\n", "target", "runs", "CPU s", "cov", "new");
    for r in reports {
        let num = |v: Option<u64>| v.map_or_else(|| "?".to_owned(), |v| v.to_string());
        let result = if r.ok {
            "ok"
        } else if r.artifact.is_some() {
            "FOUND"
        } else {
            "FAILED"
        };
        out.push_str(&format!(
            "{:<16} {:>12} {:>8.1} {:>8} {:>6}  {result}\n",
            r.target,
            num(r.runs),
            r.cpu,
            num(r.coverage),
            num(r.new_units)
        ));
    }
    out
}

/// CPU seconds (user + system) of this process's finished children, from
/// `/proc/self/stat` (Linux; clock ticks of 1/100 s).
fn children_cpu_seconds() -> Option<f64> {
    let stat = fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses and may hold
    // spaces: state is field 3, cutime 16 and cstime 17.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i - 3)?.parse::<u64>().ok();
    Some((ticks(16)? + ticks(17)?) as f64 / 100.0)
}

/// `cargo` through rustup (so `+nightly` works), without the variables the
/// cargo that runs us sets, which would pin its toolchain.
fn rustup_cargo(root: &Path) -> Command {
    let mut command = Command::new("cargo");
    command.current_dir(root);
    for var in ["CARGO", "RUSTUP_TOOLCHAIN", "RUSTC", "RUSTDOC"] {
        command.env_remove(var);
    }
    command
}

/// Installs cargo-fuzz unless `cargo fuzz` works.
fn ensure_cargo_fuzz(root: &Path) -> Result<()> {
    let mut probe = rustup_cargo(root);
    probe.args(["+nightly", "fuzz", "--version"]).stdout(Stdio::null()).stderr(Stdio::null());
    if probe.status().is_ok_and(|s| s.success()) {
        return Ok(());
    }
    println!("`cargo fuzz` is not available; installing cargo-fuzz");
    let mut install = rustup_cargo(root);
    install.args(["install", "cargo-fuzz", "--locked"]);
    exec(install)
}

/// Rewrites the seed corpora with the seeding example of the fuzz crate.
fn write_seeds(root: &Path) -> Result<()> {
    let mut seed = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    seed.current_dir(root).args([
        "run",
        "--quiet",
        "--manifest-path",
        "fuzz/Cargo.toml",
        "--locked",
        "--example",
        "seed",
    ]);
    exec(seed)
}

fn exec(mut command: Command) -> Result<()> {
    let shown = std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|a| Path::new(a).file_name().unwrap_or(a).to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ");
    println!("$ {shown}");
    let status = command.status().map_err(|e| format!("could not start `{shown}`: {e}"))?;
    if status.success() { Ok(()) } else { Err(format!("`{shown}` failed ({status})").into()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DONE_LOG: &str = "\
INFO: Seed: 42
#2\tINITED cov: 310 ft: 311 corp: 5/1200b exec/s: 0 rss: 30Mb
#65536\tpulse  cov: 400 ft: 900 corp: 40/9000b lim: 4096 exec/s: 32768 rss: 40Mb
#120000\tDONE   cov: 412 ft: 950 corp: 44/9800b lim: 4096 exec/s: 6000 rss: 41Mb
Done 120000 runs in 20 second(s)
stat::number_of_executed_units: 120000
stat::average_exec_per_sec:     6000
stat::new_units_added:          39
stat::slowest_unit_time_sec:    0
stat::peak_rss_mb:              41
";

    #[test]
    fn report_reads_the_final_statistics() {
        let r = Report::parse("h264", DONE_LOG, true, 20.4);
        assert_eq!(
            r,
            Report {
                target: "h264".into(),
                ok: true,
                runs: Some(120_000),
                seconds: Some(20),
                cpu: 20.4,
                new_units: Some(39),
                coverage: Some(412),
                artifact: None,
            }
        );
        assert!(r.line().contains("120000 runs in 20 s") && r.line().ends_with("nothing found"));
    }

    #[test]
    fn report_names_the_artifact_of_a_crash() {
        let log = "#9\tNEW    cov: 20 ft: 21 corp: 2/3b\n==1== ERROR: libFuzzer: deadly signal\n\
            artifact_prefix='/x/fuzz/artifacts/amf0/'; Test unit written to /x/fuzz/artifacts/amf0/crash-abc\n";
        let r = Report::parse("amf0", log, false, 1.0);
        assert!(!r.ok);
        assert_eq!(r.artifact.as_deref(), Some("/x/fuzz/artifacts/amf0/crash-abc"));
        assert_eq!((r.runs, r.coverage), (None, Some(20)));
        assert!(table(&[r]).lines().nth(1).is_some_and(|l| l.ends_with("FOUND")));
    }

    #[test]
    fn cpu_time_of_children_is_readable() {
        assert!(children_cpu_seconds().is_some_and(|s| s >= 0.0));
    }

    #[test]
    fn every_fuzz_target_has_a_corpus() {
        let root = workspace::root();
        let targets = workspace::fuzz_targets(&root).unwrap_or_else(|e| panic!("{e}"));
        assert!(targets.len() > 10, "fuzz targets: {targets:?}");
        for t in &targets {
            assert!(root.join("fuzz/corpus").join(t).is_dir(), "fuzz target {t} has no fuzz/corpus/{t}");
        }
    }
}
