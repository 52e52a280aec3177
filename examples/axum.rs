//! An axum Router served by the crate's `serve`: the one-line change from `axum::serve`.
//!
//! ```text
//! cargo run --example axum
//! curl -v http://127.0.0.1:3000/
//! ```

use std::time::Duration;

use axum::{routing::get, Router};
use keepalive::ServerConfig;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let app = Router::new().route("/", get(|| async { "hello, world!" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!("listening on {}", listener.local_addr()?);
    // Instead of `axum::serve(listener, app).await`:
    keepalive::serve(listener, app)
        .config(ServerConfig::new().idle_timeout(Duration::from_secs(30)))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
}
