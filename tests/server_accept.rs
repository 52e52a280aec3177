//! Descriptor exhaustion in the accept loop: the server neither exits nor spins while `accept`
//! fails with EMFILE, and resumes as soon as descriptors free up.
//!
//! One test only in this file: it fills the process's whole descriptor table, which would break
//! any other test running in the same process at the time.
#![cfg(target_os = "linux")]

mod support;

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::time::Duration;

use keepalive::ServerConfig;
use support::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Above this soft limit filling the table takes too long for a test: skip instead.
const MAX_SOFT_LIMIT: u64 = 4096;

/// `EMFILE`: the process's descriptor table is full.
const EMFILE: i32 = 24;

/// Clock ticks per second of `/proc/self/stat`'s CPU times (`sysconf(_SC_CLK_TCK)`). It is 100
/// on every Linux architecture in practice (the kernel's `USER_HZ`); it cannot be asked for
/// without libc or spawning `getconf`, and spawning needs descriptors this test uses up.
const CLOCK_TICKS_PER_SECOND: u64 = 100;

/// The soft "Max open files" limit from `/proc/self/limits` (`None` when unlimited).
fn soft_open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("no \"Max open files\" in /proc/self/limits");
    // "Max open files            1024                 1048576              files"
    line["Max open files".len()..]
        .split_whitespace()
        .next()
        .and_then(|soft| soft.parse().ok())
}

/// Lowers this process's soft limit of open files (this test binary runs only this test), with
/// python3's `resource.prlimit`, so the table fills quickly. The hard limit is kept.
fn lower_soft_limit(soft: u64) {
    let script = format!(
        "import resource; _, hard = resource.prlimit({pid}, resource.RLIMIT_NOFILE); \
         resource.prlimit({pid}, resource.RLIMIT_NOFILE, ({soft}, hard))",
        pid = std::process::id()
    );
    let status = std::process::Command::new("python3")
        .args(["-c", &script])
        .status();
    if !matches!(status, Ok(s) if s.success()) {
        println!("could not lower the soft limit of open files: {status:?}");
    }
}

/// This process's CPU time (user + system) in clock ticks, read from an already open
/// `/proc/self/stat` (opening it again would need a free descriptor).
fn cpu_ticks(stat: &mut File) -> u64 {
    let mut text = String::new();
    stat.seek(SeekFrom::Start(0)).unwrap();
    stat.read_to_string(&mut text).unwrap();
    // Fields after the command name (which is in parentheses and may hold spaces): the first
    // of them is field 3, so utime (14) and stime (15) are at indexes 11 and 12.
    let after_comm = &text[text.rfind(')').expect("malformed /proc/self/stat") + 1..];
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    let utime: u64 = fields[11].parse().unwrap();
    let stime: u64 = fields[12].parse().unwrap();
    utime + stime
}

#[tokio::test]
async fn accept_loop_backs_off_on_emfile_and_resumes_when_descriptors_free_up() {
    if soft_open_files_limit().is_none_or(|limit| limit > MAX_SOFT_LIMIT) {
        lower_soft_limit(1024);
    }
    match soft_open_files_limit() {
        Some(limit) if limit <= MAX_SOFT_LIMIT => {}
        other => {
            println!(
                "skipped: the soft limit of open files is {other:?} (unlimited if None), above \
                 {MAX_SOFT_LIMIT}, and could not be lowered"
            );
            return;
        }
    }

    let server = TestServer::start(ServerConfig::new()).await;
    let mut stat = File::open("/proc/self/stat").unwrap();

    // Fill the descriptor table.
    let mut fillers = Vec::with_capacity(MAX_SOFT_LIMIT as usize);
    loop {
        match File::open("/dev/null") {
            Ok(file) => fillers.push(file),
            Err(e) if e.raw_os_error() == Some(EMFILE) => break,
            Err(e) => panic!("unexpected error while filling the descriptor table: {e}"),
        }
    }
    assert!(!fillers.is_empty());

    // One free descriptor, taken by the client: the server's accept has none left.
    fillers.pop();
    let mut client = within(
        "connect (the kernel completes it)",
        TcpStream::connect(server.addr),
    )
    .await
    .unwrap();
    client.write_all(get("/", "").as_bytes()).await.unwrap();

    wait_until("the server's accept fails", SOON, || {
        server.stats.snapshot().accept_errors >= 1
    })
    .await;

    // A real window of 500 ms: a server retrying accept at once would burn all of it.
    let errors_before = server.stats.snapshot().accept_errors;
    let ticks_before = cpu_ticks(&mut stat);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ticks = cpu_ticks(&mut stat) - ticks_before;
    let errors = server.stats.snapshot().accept_errors - errors_before;
    let cpu_ms = ticks * 1000 / CLOCK_TICKS_PER_SECOND;
    println!("while out of descriptors: {errors} accept errors, {cpu_ms} ms of CPU in 500 ms");
    assert!(
        cpu_ms < 250,
        "the accept loop spins: {cpu_ms} ms of CPU in 500 ms ({errors} accept errors)"
    );
    // A back-off from 5 ms doubling to 500 ms fails about 7 times in 500 ms; a spin, thousands.
    assert!(
        errors < 100,
        "{errors} accept errors in 500 ms: no back-off"
    );
    let stats = server.stats.snapshot();
    assert_eq!(stats.accepted, 0, "nothing can be accepted yet");

    // Free the descriptors: the server accepts the waiting client and answers it.
    drop(fillers);
    let mut leftover = Vec::new();
    let response = within(
        "the waiting client is served",
        read_response(&mut client, &mut leftover),
    )
    .await
    .unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.body, b"hello, world!");

    // And a fresh connection is served too.
    let mut fresh = server.connect().await;
    let response = within("a fresh connection", request(&mut fresh, &get("/", ""))).await;
    assert_eq!(response.status, 200);
    assert_eq!(server.stats.snapshot().accepted, 2);
}
