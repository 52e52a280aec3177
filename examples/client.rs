//! The crate's client against a URL: sends requests with the keep-alive pool and prints what
//! the pool did.
//!
//! ```text
//! cargo run --release --example client -- --url http://127.0.0.1:3000/ --requests 100 --concurrency 4
//! ```

mod support;

use std::time::Duration;

use clap::Parser;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use keepalive::client::{Client, ClientConfig};
use support::parse_duration;

#[derive(Parser, Debug)]
#[command(about = "keep-alive client demo")]
struct Args {
    /// URL to request.
    #[arg(long, default_value = "http://127.0.0.1:3000/")]
    url: http::Uri,
    /// Requests in all.
    #[arg(long, default_value_t = 100)]
    requests: u64,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 1)]
    concurrency: u64,
    /// Pause between a worker's requests.
    #[arg(long, default_value = "0ms", value_parser = parse_duration)]
    interval: Duration,
    /// Learn the idle limit of a server that advertises none, from its closes (`false` to
    /// compare).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    learn_idle_limits: bool,
    /// The pool's idle timeout.
    #[arg(long, default_value = "50s", value_parser = parse_duration)]
    idle_timeout: Duration,
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let client = Client::new(
        ClientConfig::new()
            .idle_timeout(args.idle_timeout)
            .learn_server_idle_limits(args.learn_idle_limits),
    );
    let per_worker = args.requests / args.concurrency.max(1);
    let mut workers = Vec::new();
    for _ in 0..args.concurrency.max(1) {
        let client = client.clone();
        let url = args.url.clone();
        let interval = args.interval;
        workers.push(tokio::spawn(async move {
            let (mut ok, mut failed) = (0u64, 0u64);
            for i in 0..per_worker {
                if i > 0 && !interval.is_zero() {
                    tokio::time::sleep(interval).await;
                }
                let request = http::Request::get(url.clone())
                    .body(Empty::<Bytes>::new())
                    .expect("valid request");
                match client.request(request).await {
                    Ok(response) => match response.into_body().collect().await {
                        Ok(_) => ok += 1,
                        Err(error) => {
                            failed += 1;
                            eprintln!("body error: {error}");
                        }
                    },
                    Err(error) => {
                        failed += 1;
                        eprintln!("request error: {error}");
                    }
                }
            }
            (ok, failed)
        }));
    }
    let (mut ok, mut failed) = (0, 0);
    for worker in workers {
        let (o, f) = worker.await.expect("worker panicked");
        ok += o;
        failed += f;
    }
    println!("ok={ok} failed={failed}");
    println!("{}", client.stats().snapshot().to_json());
}
