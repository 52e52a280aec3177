//! Two ways to use the crate with plain hyper:
//! - `keepalive::serve` with hyper's `service_fn` (the full policy, on port 3000);
//! - hyper-util's own server with `KeepAliveLayer` (headers only, on port 3001).
//!
//! ```text
//! cargo run --example hyper
//! curl -v http://127.0.0.1:3000/ http://127.0.0.1:3001/
//! ```

use std::convert::Infallible;
use std::future::IntoFuture;
use std::time::Duration;

use http::{Request, Response};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use keepalive::server::HyperToTowerService;
use keepalive::{KeepAliveLayer, ServerConfig};
use tower::ServiceBuilder;

async fn hello(_req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::new(Full::new(Bytes::from_static(
        b"hello, world!",
    ))))
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    // The crate's serve owns the sockets: idle timeout, limits, FIN watch, client-first close.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!("keepalive::serve on {}", listener.local_addr()?);
    let config = ServerConfig::new().max_requests(100);
    tokio::spawn(
        keepalive::serve(
            listener,
            HyperToTowerService::new(hyper::service::service_fn(hello)),
        )
        .config(config)
        .into_future(),
    );

    // A foreign server with the layer: `Keep-Alive: timeout=` and HTTP/1.0 negotiation only.
    // hyper 1.x runs `header_read_timeout` on idle keep-alive connections too (it needs a
    // timer): that is the idle limit this server enforces, so it is the one to advertise.
    let idle = Duration::from_secs(30);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3001").await?;
    println!(
        "hyper-util with KeepAliveLayer on {}",
        listener.local_addr()?
    );
    let service = ServiceBuilder::new()
        .layer(KeepAliveLayer::new().idle_timeout(idle))
        .service_fn(hello);
    loop {
        let (stream, _) = listener.accept().await?;
        let service = TowerToHyperService::new(service.clone());
        tokio::spawn(async move {
            let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(idle);
            let _ = builder
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
