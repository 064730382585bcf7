//! The configuration: the example file, error messages naming the key,
//! environment overrides, and the `--check-config` command line.

use std::process::Command;

use arcly_server::Config;

fn example() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/arcly.example.toml")).expect("example file")
}

#[test]
fn example_file_parses_validates_and_equals_the_defaults() {
    let config = Config::from_toml(&example()).expect("the example parses");
    config.validate().expect("the example is valid");
    assert_eq!(config, Config::default(), "the example documents the defaults");
}

#[test]
fn defaults_listen_on_all_interfaces_with_live_app() {
    let c = Config::default();
    c.validate().unwrap();
    assert_eq!(c.rtmp.listen.to_string(), "0.0.0.0:1935");
    assert_eq!(c.http.listen.to_string(), "0.0.0.0:8080");
    assert_eq!(c.apps.len(), 1);
    assert_eq!(c.apps[0].name, "live");
    assert!(c.apps[0].gop_cache);
    assert_eq!(c.apps[0].republish_grace_secs, 10.0);
    let spec = c.apps[0].to_spec();
    assert!(spec.bus_config().gop_cache_frames > 0);
}

#[test]
fn unknown_key_error_names_the_key() {
    let e = Config::from_toml("[hls]\nsegment_targt_ms = 3000\n").unwrap_err().to_string();
    assert!(e.contains("segment_targt_ms"), "{e}");
    assert!(e.contains("unknown field"), "{e}");
    let e = Config::from_toml("[rtmp]\nlisten = \"nowhere\"\n").unwrap_err().to_string();
    assert!(e.contains("listen"), "{e}");
    let e = Config::from_toml("max_publishers = \"many\"\n").unwrap_err().to_string();
    assert!(e.contains("max_publishers"), "{e}");
}

#[test]
fn validation_errors_name_the_key_and_the_reason() {
    let c = Config::from_toml("[hls]\nsegment_target_ms = 1000\npart_target_ms = 1000\n").unwrap();
    assert_eq!(c.validate().unwrap_err().to_string(), "hls.part_target_ms: must be less than hls.segment_target_ms");
    // Upper bounds keep a typo from holding hours of segments in memory or
    // overflowing durations.
    for (toml, want) in [
        ("[hls]\nwindow = 10000\n", "hls.window: must be between 2 and 100 segments"),
        ("[hls]\nsegment_target_ms = 9223372036854775807\n", "hls.segment_target_ms: must be between 100 and 60000"),
        ("[hls]\nblocking_timeout_ms = 3600000\n", "hls.blocking_timeout_ms: must be between 100 and 30000"),
        ("[hls]\npart_target_ms = 20\n", "hls.part_target_ms: must be at least 50"),
    ] {
        let c = Config::from_toml(toml).unwrap();
        assert_eq!(c.validate().unwrap_err().to_string(), want, "{toml}");
    }
    let c = Config::from_toml("[[app]]\nname = \"a/b\"\n").unwrap();
    assert!(c.validate().unwrap_err().to_string().starts_with("app[0].name: "));
    let c = Config::from_toml("[[app]]\nname = \"x\"\n[[app]]\nname = \"x\"\n").unwrap();
    assert_eq!(c.validate().unwrap_err().to_string(), "app[1].name: \"x\" is given twice");
    let c = Config::from_toml("[http]\ncors_origins = [\"example.com\"]\n").unwrap();
    assert!(c.validate().unwrap_err().to_string().starts_with("http.cors_origins: "));
    let c = Config::from_toml("log = \"info,[\"\n").unwrap();
    assert!(c.validate().unwrap_err().to_string().starts_with("log: "));
}

#[test]
fn apps_in_a_file_replace_the_default() {
    let c = Config::from_toml("[[app]]\nname = \"studio\"\nrepublish_grace_secs = 0\n").unwrap();
    c.validate().unwrap();
    assert_eq!(c.apps.iter().map(|a| a.name.as_str()).collect::<Vec<_>>(), ["studio"]);
    assert!(c.apps[0].gop_cache, "unset keys of an [[app]] take the defaults");
}

#[test]
fn environment_overrides_the_file() {
    let mut c = Config::from_toml("[rtmp]\nlisten = \"127.0.0.1:1935\"\n").unwrap();
    let env = |k: &str| match k {
        "ARCLY_RTMP_LISTEN" => Some("127.0.0.1:19350".to_owned()),
        "ARCLY_HTTP_LISTEN" => Some("127.0.0.1:18080".to_owned()),
        "ARCLY_LOG" => Some("debug".to_owned()),
        "ARCLY_MAX_PUBLISHERS" => Some("7".to_owned()),
        "ARCLY_CORS_ORIGINS" => Some("https://a.example, https://b.example".to_owned()),
        "ARCLY_HLS_ENABLED" => Some("false".to_owned()),
        _ => None,
    };
    c.apply_env(env).unwrap();
    assert_eq!(c.rtmp.listen.to_string(), "127.0.0.1:19350");
    assert_eq!(c.http.listen.to_string(), "127.0.0.1:18080");
    assert_eq!(c.log, "debug");
    assert_eq!(c.max_publishers, 7);
    assert_eq!(c.http.cors_origins, ["https://a.example", "https://b.example"]);
    assert!(!c.hls.enabled);
    c.validate().unwrap();
    let e = c.apply_env(|k| (k == "ARCLY_HTTP_LISTEN").then(|| "8080".to_owned())).unwrap_err();
    assert!(e.to_string().starts_with("ARCLY_HTTP_LISTEN: "), "{e}");
    for (var, _) in arcly_server::config::ENV_VARS {
        assert!(example().contains(var), "{var} is documented in the example file");
    }
}

fn arcly() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_arcly"));
    for (var, _) in arcly_server::config::ENV_VARS {
        c.env_remove(var);
    }
    c
}

#[test]
fn check_config_prints_the_effective_configuration() {
    let out = arcly()
        .args(["--config", concat!(env!("CARGO_MANIFEST_DIR"), "/arcly.example.toml"), "--check-config"])
        .args(["--rtmp", "127.0.0.1:1999"])
        .env("ARCLY_HTTP_LISTEN", "127.0.0.1:18081")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let printed = Config::from_toml(&stdout).expect("the printed configuration parses");
    assert_eq!(printed.rtmp.listen.to_string(), "127.0.0.1:1999", "flag");
    assert_eq!(printed.http.listen.to_string(), "127.0.0.1:18081", "environment");
}

#[test]
fn bad_config_file_fails_naming_file_and_key() {
    let dir = arcly_testkit::scratch_dir("bad-config");
    let path = dir.join("bad.toml");
    std::fs::write(&path, "[hls]\nsegment_target_ms = 1000\npart_target_ms = 2000\n").unwrap();
    let out = arcly().args(["--config", path.to_str().unwrap(), "--check-config"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("hls.part_target_ms: must be less than hls.segment_target_ms"), "{stderr}");

    std::fs::write(&path, "[http]\nlisten = \"0.0.0.0:8080\"\nport = 1\n").unwrap();
    let out = arcly().args(["--config", path.to_str().unwrap(), "--check-config"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("bad.toml") && stderr.contains("unknown field `port`"), "{stderr}");
}
