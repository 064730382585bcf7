//! `cargo xtask bench rtmp`: RTMP fan-out of arcly against nginx-rtmp.
//!
//! For each scenario and server (arcly, nginx with the RTMP module, one
//! worker) the server runs pinned to core 0 and `arcly-loadgen` pinned to
//! core 1 publishes a synthetic stream (232 kbit/s or 3 Mbit/s, 30 fps)
//! and opens the players. After a warm-up, the server's CPU (utime + stime
//! from `/proc/PID/stat`) is measured over a steady window and its RSS read
//! from `/proc/PID/status`; the delay and time to first frame come from
//! the loadgen's summary. A run whose loadgen used more than 90% of its
//! core is marked invalid: the load generator, not the server, was the
//! bottleneck. The table is printed and appended to `BENCHMARKS.md`.
//!
//! Besides plain fan-out at 100, 1000 and 5000 players, two scenarios run
//! at 500 steady players: churn (200 more players connect per second, each
//! leaving 1 s after its first video frame) and slow consumers (10% of the
//! players read at half the stream's bit rate). The delay column is the
//! normal ("fast") players' delay, so it compares directly with the plain
//! rows. Two arcly-only rows repeat 1000 players with a 15 ms batch window,
//! and two more play the 3 Mbit/s stream to 1000 HTTP-FLV and LL-HLS
//! players (nginx-rtmp serves neither).

use std::fmt::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::Result;
use crate::workspace::root;

/// One loadgen run: stream bit rate, steady players, churn per second,
/// slow fraction, and for arcly an optional batch window.
struct Scenario {
    kbps: u32,
    players: usize,
    churn_per_sec: u32,
    slow_fraction: f64,
    /// arcly's `rtmp.play_batch_window_ms`; `None` is the default. A
    /// scenario with a window runs on arcly only.
    window_ms: Option<u64>,
    /// How the players play; other than RTMP, arcly only.
    play: Play,
}

/// The players' protocol.
#[derive(Clone, Copy, PartialEq)]
enum Play {
    Rtmp,
    HttpFlv,
    LlHls,
}

impl Scenario {
    const fn plain(kbps: u32, players: usize) -> Self {
        Self { kbps, players, churn_per_sec: 0, slow_fraction: 0.0, window_ms: None, play: Play::Rtmp }
    }

    const fn playing(kbps: u32, players: usize, play: Play) -> Self {
        Self { play, ..Self::plain(kbps, players) }
    }

    /// What the scenario is, without the server's settings: the key that
    /// pairs an arcly row with its nginx row.
    fn load(&self) -> String {
        let rate = if self.kbps.is_multiple_of(1000) {
            format!("{} Mbit/s", self.kbps / 1000)
        } else {
            format!("{} kbit/s", self.kbps)
        };
        let mut l = format!("{} players, {rate}", self.players);
        if self.churn_per_sec > 0 {
            let _ = write!(l, " + churn {}/s", self.churn_per_sec);
        }
        if self.slow_fraction > 0.0 {
            let _ = write!(l, ", {:.0}% slow (half rate)", self.slow_fraction * 100.0);
        }
        l
    }

    fn label(&self) -> String {
        let mut l = self.load();
        if let Some(w) = self.window_ms {
            let _ = write!(l, ", batch window {w} ms");
        }
        match self.play {
            Play::Rtmp => {}
            Play::HttpFlv => l.push_str(", HTTP-FLV players"),
            Play::LlHls => l.push_str(", LL-HLS players"),
        }
        l
    }

    fn servers(&self) -> &'static [&'static str] {
        if self.window_ms.is_some() || self.play != Play::Rtmp { &["arcly"] } else { &["arcly", "nginx"] }
    }

    /// Players connect 1 ms apart; the window starts once all have had
    /// time to connect and settle.
    fn warmup(&self) -> Duration {
        WARMUP + Duration::from_millis(self.players as u64)
    }
}

const SCENARIOS: &[Scenario] = &[
    Scenario::plain(232, 100),
    Scenario::plain(232, 1000),
    Scenario::plain(232, 5000),
    Scenario::plain(3000, 100),
    Scenario::plain(3000, 1000),
    Scenario::plain(3000, 5000),
    Scenario { churn_per_sec: 200, ..Scenario::plain(3000, 500) },
    Scenario { slow_fraction: 0.1, ..Scenario::plain(3000, 500) },
    // The batch window trades CPU for delay: a short one meets a 20 ms
    // delay target at a higher cost.
    Scenario { window_ms: Some(15), ..Scenario::plain(232, 1000) },
    Scenario { window_ms: Some(15), ..Scenario::plain(3000, 1000) },
    // The same stream to players of arcly's HTTP outputs.
    Scenario::playing(3000, 1000, Play::HttpFlv),
    Scenario::playing(3000, 1000, Play::LlHls),
];
const WARMUP: Duration = Duration::from_secs(6);
const WINDOW: Duration = Duration::from_secs(10);
/// The loadgen runs past the window by this much, then stops by itself.
const TAIL: Duration = Duration::from_secs(2);
const NGINX_MODULE: &str = "/usr/lib/nginx/modules/ngx_rtmp_module.so";
/// Server CPU above this share of its core: the server was saturated and
/// the delay figures describe an overload, not the steady state.
const SATURATED_PCT: f64 = 95.0;

/// `cargo xtask bench <what>`.
pub(crate) fn run(what: &str, filter: Option<&str>) -> Result<()> {
    match what {
        "rtmp" => rtmp(filter),
        _ => Err(format!("unknown benchmark `{what}` (known: rtmp)").into()),
    }
}

struct Row {
    label: String,
    /// [`Scenario::load`], shared by the rows to compare.
    load: String,
    kbps: u32,
    /// No churn, no slow players, default window: comparable by player count.
    plain: bool,
    players: usize,
    server: &'static str,
    cpu_pct: f64,
    rss_mib: f64,
    /// RSS before the loadgen started (the server idle).
    idle_rss_mib: f64,
    delay: String,
    ttff: String,
    alive: String,
    valid: bool,
    note: String,
    /// Churn players: connects ok / failed and their TTFF (empty without churn).
    churn: String,
    /// Slow players: delay, missing frames, disconnected (empty without).
    slow: String,
}

fn rtmp(filter: Option<&str>) -> Result<()> {
    let root = root();
    for tool in ["taskset", "nginx"] {
        if Command::new(tool).arg("-h").stdout(Stdio::null()).stderr(Stdio::null()).status().is_err() {
            return Err(format!("`{tool}` is needed (Debian: util-linux, nginx-light)").into());
        }
    }
    if !Path::new(NGINX_MODULE).is_file() {
        return Err(format!("{NGINX_MODULE} missing: install the Debian package `libnginx-mod-rtmp`").into());
    }
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(&root)
        .args(["build", "--release", "-p", "arcly-server", "-p", "arcly-loadgen"])
        .status()?;
    if !status.success() {
        return Err("cargo build --release -p arcly-server -p arcly-loadgen failed".into());
    }
    let tck = clock_ticks();
    let dir = std::env::temp_dir().join(format!("arcly-bench-rtmp-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let mut rows = Vec::new();
    let chosen: Vec<&Scenario> = SCENARIOS.iter().filter(|sc| filter.is_none_or(|f| sc.label().contains(f))).collect();
    if chosen.is_empty() {
        return Err(format!("no scenario matches {filter:?}").into());
    }
    for (i, sc) in chosen.into_iter().enumerate() {
        for &server in sc.servers() {
            let label = sc.label();
            eprintln!("bench: {server}, {label} ...");
            let row = scenario(&root, &dir, server, sc, i, tck.0)?;
            eprintln!(
                "bench: {server}, {label}: CPU {:.1}%, RSS {:.1} MiB, delay {}, {} {} {}",
                row.cpu_pct, row.rss_mib, row.delay, row.note, row.churn, row.slow
            );
            rows.push(row);
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    let table = table(&rows, &tck.1);
    print!("{table}");
    append(&root, &table)?;
    Ok(())
}

/// Clock ticks per second and how they were found.
fn clock_ticks() -> (f64, String) {
    let out = Command::new("getconf").arg("CLK_TCK").output().ok();
    match out.and_then(|o| String::from_utf8(o.stdout).ok()).and_then(|s| s.trim().parse::<f64>().ok()) {
        Some(t) if t > 0.0 => (t, format!("CLK_TCK {t} (getconf)")),
        _ => (100.0, "CLK_TCK assumed 100 (getconf failed)".into()),
    }
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A child killed when dropped.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `argv` through `sh` with a raised open-file limit, pinned to `core`;
/// `exec` keeps the PID the program's own.
fn pinned(core: u32, argv: &[String], stdout: Stdio, log: &Path) -> Result<Child> {
    let quoted: Vec<String> = argv.iter().map(|a| format!("'{}'", a.replace('\'', "'\\''"))).collect();
    let script = format!("ulimit -n 65536 2>/dev/null || ulimit -n 20000; exec taskset -c {core} {}", quoted.join(" "));
    Ok(Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(std::fs::File::create(log)?)
        .spawn()?)
}

fn start_server(root: &Path, dir: &Path, server: &str, port: u16, http: u16, sc: &Scenario) -> Result<Guard> {
    let log = dir.join(format!("{server}.log"));
    let argv: Vec<String> = if server == "arcly" {
        // HLS only when played (nginx does none here); room for the players.
        let conf = dir.join("arcly.toml");
        let window = sc.window_ms.map(|w| format!("play_batch_window_ms = {w}\n")).unwrap_or_default();
        let hls = sc.play == Play::LlHls;
        // Every player comes from 127.0.0.1: no per-address limit.
        std::fs::write(
            &conf,
            format!(
                "[rtmp]\nmax_connections = 20000\nmax_connections_per_ip = 0\n{window}\
                 [http]\nmax_connections = 20000\nmax_connections_per_ip = 0\n[hls]\nenabled = {hls}\n"
            ),
        )?;
        let bin = root.join("target/release/arcly");
        vec![
            bin.display().to_string(),
            "--config".into(),
            conf.display().to_string(),
            "--rtmp".into(),
            format!("127.0.0.1:{port}"),
            "--http".into(),
            format!("127.0.0.1:{http}"),
            "--log".into(),
            "warn".into(),
        ]
    } else {
        let d = dir.display();
        let conf = format!(
            "load_module {NGINX_MODULE};\nworker_processes 1;\ndaemon off;\nmaster_process off;\npid {d}/nginx.pid;\n\
             error_log {d}/nginx-error.log warn;\nworker_rlimit_nofile 65536;\n\
             events {{ worker_connections 20000; }}\n\
             rtmp {{ server {{ listen 127.0.0.1:{port}; chunk_size 4096;\n\
               application live {{ live on; }}\n\
             }} }}\n"
        );
        let path = dir.join("nginx.conf");
        std::fs::write(&path, conf)?;
        vec![
            "nginx".into(),
            "-p".into(),
            d.to_string(),
            "-e".into(),
            dir.join("nginx-error.log").display().to_string(),
            "-c".into(),
            path.display().to_string(),
        ]
    };
    let child = Guard(pinned(0, &argv, Stdio::null(), &log)?);
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(child);
        }
        sleep(Duration::from_millis(100));
    }
    Err(format!("{server} did not listen on 127.0.0.1:{port}: {}", std::fs::read_to_string(&log).unwrap_or_default())
        .into())
}

/// utime + stime of `pid` in clock ticks.
fn cpu_ticks(pid: u32) -> Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let get = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).ok_or("bad /proc/PID/stat");
    Ok(get(11)? + get(12)?)
}

fn rss_kib(pid: u32) -> Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| "no VmRSS in /proc/PID/status".into())
}

fn scenario(root: &Path, dir: &Path, server: &'static str, sc: &Scenario, index: usize, tck: f64) -> Result<Row> {
    let n = sc.players;
    let port = free_port()?;
    let http = free_port()?;
    let mut srv = start_server(root, dir, server, port, http, sc)?;
    let pid = srv.0.id();
    let idle_rss = rss_kib(pid)?;
    let url = format!("rtmp://127.0.0.1:{port}/live/bench");
    let play_url = match sc.play {
        Play::Rtmp => url.clone(),
        Play::HttpFlv => format!("http://127.0.0.1:{http}/live/live/bench.flv"),
        Play::LlHls => format!("http://127.0.0.1:{http}/live/live/bench/index.m3u8"),
    };
    let duration = (sc.warmup() + WINDOW + TAIL).as_secs();
    let loadgen: PathBuf = root.join("target/release/arcly-loadgen");
    let argv: Vec<String> = [
        loadgen.display().to_string().as_str(),
        "--publish",
        &url,
        "--synthetic",
        "--bitrate-kbps",
        &sc.kbps.to_string(),
        "--fps",
        "30",
        "--gop-frames",
        "60",
        "--play",
        &play_url,
        "--players",
        &n.to_string(),
        "--duration",
        &duration.to_string(),
        "--churn-per-sec",
        &sc.churn_per_sec.to_string(),
        "--slow-fraction",
        &sc.slow_fraction.to_string(),
        "--quiet",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let lg_log = dir.join(format!("loadgen-{server}-{index}.log"));
    let lg = pinned(1, &argv, Stdio::piped(), &lg_log)?;
    let mut lg = Guard(lg);
    sleep(sc.warmup());
    let (c0, t0) = (cpu_ticks(pid)?, Instant::now());
    sleep(WINDOW);
    let (c1, wall) = (cpu_ticks(pid)?, t0.elapsed());
    let rss = rss_kib(pid)?;
    // The loadgen stops by itself after `duration`.
    let out = {
        let mut stdout = lg.0.stdout.take().ok_or("no loadgen stdout")?;
        let mut text = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut text)?;
        let _ = lg.0.wait();
        text
    };
    if let Ok(Some(status)) = srv.0.try_wait() {
        return Err(format!("{server} exited during the run ({status})").into());
    }
    drop(srv);
    let summary = out.lines().find_map(|l| l.strip_prefix("summary ")).ok_or_else(|| {
        format!("no summary from the loadgen: {}", std::fs::read_to_string(&lg_log).unwrap_or_default())
    })?;
    let get = |k: &str| {
        summary.split_whitespace().find_map(|kv| kv.strip_prefix(k)?.strip_prefix('=')).unwrap_or("?").to_string()
    };
    let lg_cpu: f64 = get("cpu_pct").parse().unwrap_or(f64::NAN);
    let valid = lg_cpu <= 90.0;
    let churn = if sc.churn_per_sec > 0 {
        format!(
            "{} ok / {} failed, {} / {}",
            get("churn_ok"),
            get("churn_failed"),
            get("churn_ttff_p50_ms"),
            get("churn_ttff_p99_ms")
        )
    } else {
        String::new()
    };
    let slow = if sc.slow_fraction > 0.0 {
        format!(
            "{} slow: {} / {}, missing {}, {} disconnected",
            get("slow_players"),
            get("delay_slow_p50_ms"),
            get("delay_slow_p99_ms"),
            get("missing_slow"),
            get("slow_disconnected")
        )
    } else {
        String::new()
    };
    let cpu_pct = (c1 - c0) as f64 / tck * 100.0 / wall.as_secs_f64();
    let mut note = format!("loadgen CPU {lg_cpu:.0}%, missing {}", get("missing_fast"));
    if cpu_pct >= SATURATED_PCT {
        note.push_str(", server saturated");
    }
    Ok(Row {
        label: sc.label(),
        load: sc.load(),
        kbps: sc.kbps,
        plain: sc.churn_per_sec == 0 && sc.slow_fraction == 0.0 && sc.window_ms.is_none(),
        players: n,
        server,
        cpu_pct,
        rss_mib: rss / 1024.0,
        idle_rss_mib: idle_rss / 1024.0,
        delay: format!("{} / {}", get("delay_fast_p50_ms"), get("delay_fast_p99_ms")),
        ttff: format!("{} / {}", get("ttff_p50_ms"), get("ttff_p99_ms")),
        alive: format!("{}/{}", get("alive"), n),
        valid,
        note,
        churn,
        slow,
    })
}

fn table(rows: &[Row], tck: &str) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "| scenario | server | CPU % | CPU per 1000 players | CPU arcly/nginx | RSS MiB | RSS per player KiB (beyond idle) | RSS per added player KiB | \
         delay p50/p99 ms | TTFF p50/p99 ms | players alive | valid | churn: ok / failed, TTFF p50 / p99 ms | \
         slow players: delay p50 / p99 ms |"
    );
    let _ = writeln!(t, "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for r in rows {
        let nginx = rows.iter().find(|o| o.load == r.load && o.server == "nginx");
        let ratio = match (r.server, nginx) {
            ("arcly", Some(ng)) if ng.cpu_pct > 0.0 => format!("{:.2}", r.cpu_pct / ng.cpu_pct),
            _ => String::new(),
        };
        // The slope between two plain runs of the same stream: what one
        // more player costs, without the shared GOP cache and buffers.
        let smaller = rows
            .iter()
            .filter(|o| o.plain && r.plain && o.server == r.server && o.kbps == r.kbps && o.players < r.players)
            .max_by_key(|o| o.players);
        let added = smaller.map_or(String::new(), |o| {
            format!("{:.1}", (r.rss_mib - o.rss_mib) * 1024.0 / (r.players - o.players) as f64)
        });
        let (cpu, per) = if r.valid {
            (format!("{:.1}", r.cpu_pct), format!("{:.1}", r.cpu_pct * 1000.0 / r.players as f64))
        } else {
            ("INVALID".into(), "INVALID".into())
        };
        let _ = writeln!(
            t,
            "| {}, 30 fps | {} | {cpu} | {per} | {ratio} | {:.1} | {:.1} | {added} | {} | {} | {} | {} ({}) | {} | {} |",
            r.label,
            r.server,
            r.rss_mib,
            (r.rss_mib - r.idle_rss_mib) * 1024.0 / r.players as f64,
            r.delay,
            r.ttff,
            r.alive,
            if r.valid { "yes" } else { "INVALID" },
            r.note,
            r.churn,
            r.slow,
        );
    }
    let _ = writeln!(
        t,
        "\nServer pinned to core 0, loadgen to core 1; CPU over a {}s window after a warm-up of {}s plus 1 ms \
         per player; {tck}. A synthetic H.264 + AAC stream, 30 fps, 2 s GOP. RSS per player: (RSS - RSS of the \
         idle server) / players, so it includes the shared GOP cache; per added player: the RSS difference to the \
         run with the next smaller player count of the same stream, divided by the added players. Delay: publish-to-receive of video frames \
         sent after the player started playing. arcly's batch window is 50 ms unless the scenario names one. \
         INVALID: the loadgen used more than 90% of its core, so it, not the server, set the pace. Server \
         saturated: the server's core was busy over {SATURATED_PCT}% of the window.",
        WINDOW.as_secs(),
        WARMUP.as_secs()
    );
    let _ = writeln!(
        t,
        "\nChurn: besides the steady players, new players connect at the given rate, each leaving 1 s after its \
         first video frame (failed: error, or no video frame within 5 s); their connects and TTFF are counted \
         apart from the steady players'. Slow: that share of the steady players reads at half the stream's bit \
         rate (64 KiB receive buffer); their delay, missing frames and disconnections by the server are in the \
         last column, while the delay and missing columns are the normal players' only. Per-player columns \
         count the steady players."
    );
    t
}

fn append(root: &Path, table: &str) -> Result<()> {
    let date = Command::new("date").arg("-u").arg("+%Y-%m-%d %H:%M UTC").output()?.stdout;
    let rev = Command::new("git").current_dir(root).args(["rev-parse", "--short", "HEAD"]).output()?.stdout;
    let path = root.join("BENCHMARKS.md");
    let mut text = std::fs::read_to_string(&path).unwrap_or_default();
    let heading = "## RTMP fan-out against nginx-rtmp";
    if !text.contains(heading) {
        let _ = write!(text, "\n{heading}\n");
    }
    let _ = write!(
        text,
        "\n### {} (commit {}), `cargo xtask bench rtmp`\n\n{table}",
        String::from_utf8_lossy(&date).trim(),
        String::from_utf8_lossy(&rev).trim()
    );
    std::fs::write(&path, text)?;
    Ok(())
}
