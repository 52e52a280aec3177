//! With the `metrics` feature, the server's and the client's counters reach an installed
//! `metrics` recorder under the documented names and labels.
#![cfg(feature = "metrics")]

mod support;

use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use keepalive::client::{Client, ClientConfig};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use metrics_util::MetricKind;
use support::*;

/// One snapshot of the recorder (taking it may reset what it read, so take it once).
type Metrics = Vec<(metrics_util::CompositeKey, DebugValue)>;

fn snapshot(snapshotter: &Snapshotter) -> Metrics {
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| (key, value))
        .collect()
}

/// The value of the metric `name` whose labels include every pair of `labels` (summed over
/// the other labels).
fn value(metrics: &Metrics, kind: MetricKind, name: &str, labels: &[(&str, &str)]) -> f64 {
    metrics
        .iter()
        .filter(|(key, _)| key.kind() == kind && key.key().name() == name)
        .filter(|(key, _)| {
            labels.iter().all(|(k, v)| {
                key.key()
                    .labels()
                    .any(|label| label.key() == *k && label.value() == *v)
            })
        })
        .map(|(_, value)| match value {
            DebugValue::Counter(n) => *n as f64,
            DebugValue::Gauge(g) => g.into_inner(),
            DebugValue::Histogram(h) => h.len() as f64,
        })
        .sum()
}

#[tokio::test]
async fn server_and_client_counters_reach_the_recorder() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder
        .install()
        .expect("the only recorder of this test binary");

    let server = TestServer::start(patient()).await;
    let client = Client::new(ClientConfig::new());
    let url = format!("http://{}/", server.addr);
    for _ in 0..3 {
        let response = client
            .request(Request::get(&url).body(Empty::<Bytes>::new()).unwrap())
            .await
            .unwrap();
        response.into_body().collect().await.unwrap();
    }
    // A second connection that asks to close and closes first after its answer.
    let mut stream = server.connect().await;
    request(&mut stream, &get("/", "Connection: close\r\n")).await;
    drop(stream);
    wait_until("the server counted the close", SOON, || {
        let stats = server.stats.snapshot();
        stats.closed(keepalive::CloseReason::ClientClose) == 1 && stats.idle == 1
    })
    .await;

    let metrics = snapshot(&snapshotter);
    let counter =
        |name, labels: &[(&str, &str)]| value(&metrics, MetricKind::Counter, name, labels);
    assert_eq!(
        counter(
            "keepalive_server_connections_closed_total",
            &[("reason", "client_close"), ("first", "client")]
        ),
        1.0
    );
    assert_eq!(
        counter("keepalive_server_connections_accepted_total", &[]),
        2.0
    );
    assert_eq!(counter("keepalive_server_requests_total", &[]), 4.0);
    assert_eq!(
        counter("keepalive_client_connections_opened_total", &[]),
        1.0
    );
    assert_eq!(
        counter("keepalive_client_requests_total", &[("reused", "true")]),
        2.0
    );
    assert_eq!(
        counter("keepalive_client_requests_total", &[("reused", "false")]),
        1.0
    );
    let gauge = |name| value(&metrics, MetricKind::Gauge, name, &[]);
    assert_eq!(
        gauge("keepalive_server_connections_active"),
        1.0,
        "the client's"
    );
    assert_eq!(gauge("keepalive_server_connections_idle"), 1.0);
    assert_eq!(
        server.stats.snapshot().active as f64,
        gauge("keepalive_server_connections_active")
    );
    assert_eq!(gauge("keepalive_client_connections_open"), 1.0);
    assert_eq!(gauge("keepalive_client_connections_idle"), 1.0);

    // Dropping the client closes its idle connection: both client gauges go back to zero.
    let client_stats = client.stats().clone();
    drop(client);
    let after = client_stats.snapshot();
    assert_eq!((after.open, after.idle), (0, 0), "{}", after.to_json());
    // The debugging recorder hands out each gauge's change since its last snapshot.
    let metrics = snapshot(&snapshotter);
    let gauge = |name| value(&metrics, MetricKind::Gauge, name, &[]);
    assert_eq!(gauge("keepalive_client_connections_open"), -1.0);
    assert_eq!(gauge("keepalive_client_connections_idle"), -1.0);
    assert_eq!(
        value(
            &metrics,
            MetricKind::Counter,
            "keepalive_client_connections_closed_total",
            &[("reason", "dropped")]
        ),
        1.0
    );
}
