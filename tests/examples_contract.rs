//! The examples' command lines, output lines and JSON fields are a contract outside tools
//! drive: run the built examples (cargo builds them for `cargo test`) and check it.

mod support;

use std::path::PathBuf;
use std::process::{Command, Stdio};

use support::*;
use tokio::io::AsyncBufReadExt;

/// The path of a built example, next to the test binary's directory. `cargo test` builds the
/// examples; a filtered run (`cargo test --test examples_contract`) may not, so build it then.
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let path = dir.join("examples").join(name);
    if !path.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--example", name])
            .status()
            .unwrap();
        assert!(status.success());
    }
    assert!(path.exists(), "{} is not built", path.display());
    path
}

/// Runs `short_vs_long --json` at concurrency 2 with `args`; its output and JSON lines (two,
/// when it succeeds).
fn short_vs_long_json(args: &[&str]) -> (std::process::Output, Vec<serde_json::Value>) {
    let output = Command::new(example("short_vs_long"))
        .args(args)
        .args(["--concurrency", "2", "--duration", "20s", "--json"])
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    if output.status.success() {
        assert_eq!(lines.len(), 2, "{stdout}");
    }
    (output, lines)
}

#[test]
fn short_vs_long_json_has_the_contract_fields() {
    let (output, lines) = short_vs_long_json(&["--requests", "40"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for (line, mode) in lines.iter().zip(["short", "long"]) {
        assert_eq!(line["mode"], mode);
        assert_eq!(line["server"], "keepalive");
        assert_eq!(line["requests"], 40);
        assert_eq!(line["errors"], 0);
        for field in [
            "rps",
            "p50_us",
            "p99_us",
            "p999_us",
            "connections_opened",
            "time_wait_server",
            "time_wait_client",
            "close_wait",
            "close_wait_server",
            "close_wait_client",
            "settle_ms",
        ] {
            assert!(line[field].is_number(), "{field} missing in {line}");
        }
        // The states are counted once settled, so no FIN the server has yet to handle shows
        // as a leak.
        assert_eq!(line["settled"], true, "{line}");
        assert_eq!(line["close_wait_server"], 0, "{line}");
        assert_eq!(line["close_wait_client"], 0, "{line}");
    }
    assert_eq!(
        lines[0]["connections_opened"], 40,
        "short: a connection per request"
    );
    assert!(lines[1]["connections_opened"].as_u64().unwrap() <= 2);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("tcp_tw_reuse"),
        "the header names the kernel settings"
    );
}

/// The table keeps its columns and legend, and says the states were counted once settled.
#[test]
fn short_vs_long_table_says_when_the_states_were_counted() {
    let output = Command::new(example("short_vs_long"))
        .args([
            "--requests",
            "40",
            "--concurrency",
            "2",
            "--duration",
            "20s",
        ])
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    let head = stdout
        .lines()
        .find(|l| l.starts_with("mode "))
        .unwrap_or_else(|| panic!("no table head in {stdout}"));
    let columns: Vec<&str> = head.split_whitespace().collect();
    let expected = [
        "mode", "requests", "errors", "req/s", "p50", "p99", "p99.9", "conns", "TW", "srv", "TW",
        "cli", "CW", "srv", "CW", "cli", "settle",
    ];
    assert_eq!(columns, expected, "{stdout}");
    for mode in ["short", "long"] {
        let row = stdout
            .lines()
            .find(|l| {
                let mut words = l.split_whitespace();
                words.next() == Some(mode) && words.next().is_some_and(|n| n.parse::<u64>().is_ok())
            })
            .unwrap_or_else(|| panic!("no {mode} row in {stdout}"));
        let settle = row.split_whitespace().last().unwrap();
        assert!(
            settle.ends_with("ms") && settle.trim_end_matches("ms").parse::<u64>().is_ok(),
            "{mode}: settled, with the time it took: {row}"
        );
    }
    assert!(stdout.contains("TW/CW = TIME_WAIT/CLOSE_WAIT sockets per side after the run"));
    assert!(stdout.contains("counted once settled"), "{stdout}");
}

/// `--tls` (feature `rustls`): both modes over TLS, no errors, the JSON says so.
#[cfg(feature = "rustls")]
#[test]
fn short_vs_long_runs_over_tls() {
    let (output, lines) = short_vs_long_json(&["--tls", "--requests", "30"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if stderr.contains("--tls needs the feature rustls") {
        // The example binary was built without the feature by another, filtered run.
        return;
    }
    assert!(output.status.success(), "{stderr}");
    for (line, mode) in lines.iter().zip(["short", "long"]) {
        assert_eq!(line["mode"], mode);
        assert_eq!(line["tls"], true);
        assert_eq!(line["requests"], 30);
        assert_eq!(line["errors"], 0, "{line}");
    }
    assert_eq!(lines[0]["connections_opened"], 30);
    assert!(lines[1]["connections_opened"].as_u64().unwrap() <= 2);
}

#[tokio::test]
async fn server_example_prints_its_address_serves_stats_and_drains_on_sigterm() {
    let mut child = tokio::process::Command::new(example("server"))
        .args(["--addr", "127.0.0.1:0", "--max-requests", "3"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let first = within("the first line", lines.next_line())
        .await
        .unwrap()
        .unwrap_or_default();
    let addr = first
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("first line: {first:?}"))
        .to_string();
    assert!(!addr.ends_with(":0"), "the real port: {addr}");

    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let hello = request(&mut stream, &get("/", "")).await;
    assert_eq!(hello.body, b"hello, world!");
    assert_eq!(hello.header("keep-alive"), Some("timeout=60, max=2"));
    let slow = request(&mut stream, &get("/slow?ms=20", "")).await;
    assert_eq!(slow.status, 200);
    let stats = request(&mut stream, &get("/stats", "")).await;
    assert!(
        stats.says_close(),
        "the third request reaches --max-requests 3"
    );
    let json: serde_json::Value = serde_json::from_slice(&stats.body).unwrap();
    assert_eq!(json["requests"], 3);
    assert_eq!(json["accepted"], 1);
    drop(stream);

    let pid = child.id().unwrap().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(killed.success());
    let status = within("the server exits after SIGTERM", child.wait())
        .await
        .unwrap();
    assert!(status.success(), "{status:?}");
}
