//! The `arcly` server: RTMP in; HLS, LL-HLS and HTTP-FLV out; a JSON API,
//! health checks and a web player.
//!
//! `cargo run --release` at the repository root starts it with embedded
//! defaults (RTMP on `0.0.0.0:1935`, HTTP on `0.0.0.0:8080`, application
//! `live`). See `arcly --help`, [`arcly_server::config`] and
//! `arcly.example.toml` for the settings. `arcly token` mints a stream
//! token with a key of the configuration (`arcly token --help`).
#![forbid(unsafe_code)]

use std::io::IsTerminal;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use arcly_auth::{Grant, StreamScope};
use arcly_core::auth::Action;
use arcly_core::identity::{AppName, StreamKey};
use arcly_server::auth::{AuthMode, parse_ttl};
use arcly_server::{Config, Server};
use clap::{Args, Parser, Subcommand, ValueEnum};
use tracing_subscriber::EnvFilter;

/// The arcly live-media streaming server.
#[derive(Debug, Parser)]
#[command(name = "arcly", version, about, after_help = ENV_HELP)]
struct Cli {
    /// The configuration file (TOML); without it, the embedded defaults.
    #[arg(long, value_name = "FILE", env = "ARCLY_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// The RTMP listen address (overrides rtmp.listen).
    #[arg(long, value_name = "ADDR")]
    rtmp: Option<std::net::SocketAddr>,
    /// The HTTP listen address (overrides http.listen).
    #[arg(long, value_name = "ADDR")]
    http: Option<std::net::SocketAddr>,
    /// The log filter, e.g. `info` or `info,arcly_rtmp=debug` (overrides
    /// `log` and ARCLY_LOG; default info).
    #[arg(long, value_name = "LEVEL")]
    log: Option<String>,
    /// Validate the configuration, print it and exit.
    #[arg(long)]
    check_config: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Mint a stream token, signed with a key of [[auth.keys]] (its secret
    /// from the configuration or its environment variable), and print it.
    ///
    /// Use it as `rtmp://HOST/APP/STREAM?token=TOKEN` (OBS: server
    /// `rtmp://HOST/APP`, stream key `STREAM?token=TOKEN`), as
    /// `?token=TOKEN` on HTTP-FLV and HLS URLs, or in an
    /// `Authorization: Bearer TOKEN` header.
    Token(TokenArgs),
}

#[derive(Debug, Args)]
struct TokenArgs {
    /// The key to sign with (an [[auth.keys]] id; default: the first).
    #[arg(long, value_name = "ID")]
    key_id: Option<String>,
    /// What the token allows.
    #[arg(long, value_enum)]
    action: TokenAction,
    /// The application.
    #[arg(long, default_value = "live")]
    app: String,
    /// The stream key (with --prefix: a key prefix; "" for any key).
    #[arg(long, value_name = "KEY")]
    stream: String,
    /// Allow every stream key starting with --stream.
    #[arg(long)]
    prefix: bool,
    /// How long the token is valid: 90s, 30m, 12h, 7d.
    #[arg(long, default_value = "1h", value_parser = parse_ttl)]
    ttl: Duration,
    /// Only for a client at this address.
    #[arg(long)]
    ip: Option<IpAddr>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum TokenAction {
    Publish,
    Play,
}

const ENV_HELP: &str = "Environment (applied after the file, before the flags):
  ARCLY_CONFIG          the configuration file
  ARCLY_LOG             log
  ARCLY_RTMP_LISTEN     rtmp.listen
  ARCLY_HTTP_LISTEN     http.listen
  ARCLY_MAX_PUBLISHERS  max_publishers
  ARCLY_CORS_ORIGINS    http.cors_origins (comma-separated)
  ARCLY_HLS_ENABLED     hls.enabled (true/false)
  (and the variables [[auth.keys]] secret_env names)

The daemon listens on all interfaces by default (0.0.0.0:1935, 0.0.0.0:8080).";

fn load(cli: &Cli) -> Result<Config, String> {
    let mut config = match &cli.config {
        Some(path) => Config::from_file(path).map_err(|e| e.to_string())?,
        None => Config::default(),
    };
    config.apply_env(|k| std::env::var(k).ok()).map_err(|e| e.to_string())?;
    if let Some(a) = cli.rtmp {
        config.rtmp.listen = a;
    }
    if let Some(a) = cli.http {
        config.http.listen = a;
    }
    if let Some(l) = &cli.log {
        config.log = l.clone();
    }
    config.validate().map_err(|e| e.to_string())?;
    Ok(config)
}

#[allow(clippy::print_stdout, clippy::print_stderr)] // CLI output.
fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match load(&cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("arcly: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(Command::Token(args)) = &cli.command {
        return match mint(&config, args) {
            Ok(token) => {
                println!("{token}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("arcly token: {e}");
                ExitCode::from(2)
            }
        };
    }
    // Secrets are read now too, so a missing variable is a configuration
    // error, not a failure to start.
    if let Err(e) = config.auth.authenticator(|k| std::env::var(k).ok()) {
        eprintln!("arcly: configuration error: {e}");
        return ExitCode::from(2);
    }
    if cli.check_config {
        println!("# configuration OK\n{}", config.to_toml());
        return ExitCode::SUCCESS;
    }
    // Logs go to stderr, coloured only on a terminal.
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::new(&config.log))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    raise_open_files_limit();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("arcly: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(config));
    // Tasks still running (a connection being torn down) are not waited for.
    runtime.shutdown_timeout(Duration::from_millis(200));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "arcly stopped");
            ExitCode::FAILURE
        }
    }
}

/// Raises the soft limit on open files to the hard limit (at most 2^20,
/// Linux's default ceiling): every connection is a descriptor, and a soft
/// limit of 1024 would refuse connections long before the configured
/// connection limits.
fn raise_open_files_limit() {
    match rlimit::increase_nofile_limit(1 << 20) {
        Ok(n) => tracing::info!(soft = n, "open files limit (RLIMIT_NOFILE)"),
        Err(e) => tracing::warn!(error = %e, "cannot raise the open files limit"),
    }
}

/// `arcly token`: a token for `args`, signed with a configured key.
#[allow(clippy::print_stderr)] // CLI output.
fn mint(config: &Config, args: &TokenArgs) -> Result<String, String> {
    if config.auth.keys.is_empty() {
        return Err("no [[auth.keys]] in the configuration (give it with --config)".to_owned());
    }
    let auth = config.auth.token_authenticator(|k| std::env::var(k).ok()).map_err(|e| e.to_string())?;
    let key_id = args.key_id.as_deref().unwrap_or_else(|| auth.keys()[0].id());
    AppName::new(&args.app).map_err(|e| format!("--app {:?}: {e}", args.app))?;
    let scope = if args.prefix {
        if !args.stream.is_empty() {
            StreamKey::new(&args.stream).map_err(|e| format!("--stream {:?}: {e}", args.stream))?;
        }
        StreamScope::Prefix(args.stream.clone())
    } else {
        StreamKey::new(&args.stream).map_err(|e| format!("--stream {:?}: {e}", args.stream))?;
        StreamScope::Key(args.stream.clone())
    };
    let action = match args.action {
        TokenAction::Publish => Action::Publish,
        TokenAction::Play => Action::Play,
    };
    let mut grant = Grant::new(action, args.app.clone(), scope).expires_in(args.ttl);
    if let Some(ip) = args.ip {
        grant = grant.ip(ip);
    }
    let token = auth.mint(key_id, &grant).map_err(|e| format!("--key-id: {e}"))?;
    if config.auth.mode != AuthMode::Token {
        eprintln!(
            "arcly token: note: auth.mode is {:?}, so the server does not check these tokens",
            config.auth.mode.as_str()
        );
    }
    Ok(token)
}

async fn run(config: Config) -> Result<(), String> {
    let server = Server::start(config).await.map_err(|e| e.to_string())?;
    let stopped = server.shutdown_token();
    tokio::select! {
        signal = shutdown_signal() => tracing::info!(signal, "shutting down"),
        () = stopped.cancelled() => tracing::warn!("server stopped on its own"),
        () = finished(&server) => tracing::warn!("server stopped on its own"),
    }
    server.shutdown();
    let result = server.wait().await;
    tracing::info!("arcly stopped");
    result
}

async fn finished(server: &Server) {
    while !server.is_finished() {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn shutdown_signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => tokio::select! {
                _ = tokio::signal::ctrl_c() => "SIGINT",
                _ = term.recv() => "SIGTERM",
            },
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; SIGINT only");
                let _ = tokio::signal::ctrl_c().await;
                "SIGINT"
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "SIGINT"
    }
}
