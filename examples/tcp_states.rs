//! How long counting one port's TCP states takes with many sockets open: the netlink
//! `sock_diag` reader (port filtered in the kernel) against the /proc/net/tcp reader.
//!
//! ```text
//! cargo run --release --example tcp_states -- --pairs 9900
//! ```
//!
//! Opens `--pairs` loopback connections (two sockets each) to a listener of its own, then
//! counts the listener port's sockets 20 times with each reader, alternating, and prints the
//! median and the maximum of each, and the counts they agree on.

mod support;

use std::time::{Duration, Instant};

use clap::Parser;
use keepalive::tcp_state::{self, Filter};
use support::memory::raise_nofile;

#[derive(Parser)]
struct Args {
    /// Connections to open (each is two sockets: the client's and the server's).
    #[arg(long, default_value_t = 9900)]
    pairs: usize,
    /// Counts per reader.
    #[arg(long, default_value_t = 20)]
    rounds: usize,
}

fn main() {
    let args = Args::parse();
    let limit = raise_nofile().unwrap_or(1024) as usize;
    let pairs = args.pairs.min(limit.saturating_sub(50) / 2);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let listener = support::memory::listen("127.0.0.1:0".parse().expect("addr")).expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut held = Vec::with_capacity(pairs * 2);
        for _ in 0..pairs {
            let client = tokio::net::TcpStream::connect(addr).await.expect("connect");
            let (server, _) = listener.accept().await.expect("accept");
            held.push(client);
            held.push(server);
        }
        // A second listener with nothing on it: the common health-check case, one quiet port
        // among many busy ones.
        let quiet = support::memory::listen("127.0.0.1:0".parse().expect("addr")).expect("bind");
        let quiet_filter = Filter::new().local_port(quiet.local_addr().expect("addr").port());
        let mut quiet_proc = Vec::new();
        let mut quiet_diag = Vec::new();
        for _ in 0..args.rounds {
            let start = Instant::now();
            let p = tcp_state::count_proc(quiet_filter).expect("/proc");
            quiet_proc.push(start.elapsed());
            let start = Instant::now();
            let d = tcp_state::count_sock_diag(quiet_filter).expect("sock_diag");
            quiet_diag.push(start.elapsed());
            assert_eq!(p, d, "the readers disagree on the quiet port");
        }
        let filter = Filter::new().local_port(addr.port());
        let mut proc_times = Vec::new();
        let mut diag_times = Vec::new();
        let (mut proc_counts, mut diag_counts) = (None, None);
        for _ in 0..args.rounds {
            let start = Instant::now();
            proc_counts = Some(tcp_state::count_proc(filter).expect("/proc"));
            proc_times.push(start.elapsed());
            let start = Instant::now();
            diag_counts = Some(tcp_state::count_sock_diag(filter).expect("sock_diag"));
            diag_times.push(start.elapsed());
        }
        let stats = |times: &mut Vec<Duration>| {
            times.sort();
            (times[times.len() / 2], times[times.len() - 1])
        };
        let (proc_median, proc_max) = stats(&mut proc_times);
        let (diag_median, diag_max) = stats(&mut diag_times);
        let total = tcp_state::count_proc(Filter::new()).expect("/proc").total();
        let (quiet_proc_median, _) = stats(&mut quiet_proc);
        let (quiet_diag_median, _) = stats(&mut quiet_diag);
        println!(
            "{{\"quiet_port_proc_median_ms\":{:.3},\"quiet_port_sock_diag_median_ms\":{:.3}}}",
            quiet_proc_median.as_secs_f64() * 1e3,
            quiet_diag_median.as_secs_f64() * 1e3
        );
        println!(
            "{{\"sockets_open\":{total},\"pairs\":{pairs},\"port_counts_proc\":\"{}\",\"port_counts_sock_diag\":\"{}\",\
             \"proc_median_ms\":{:.3},\"proc_max_ms\":{:.3},\"sock_diag_median_ms\":{:.3},\"sock_diag_max_ms\":{:.3}}}",
            proc_counts.unwrap_or_default(),
            diag_counts.unwrap_or_default(),
            proc_median.as_secs_f64() * 1e3,
            proc_max.as_secs_f64() * 1e3,
            diag_median.as_secs_f64() * 1e3,
            diag_max.as_secs_f64() * 1e3,
        );
        drop(held);
    });
}
