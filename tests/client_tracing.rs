//! The client's `tracing` span per request: made, with the method and the URI, when a
//! subscriber listens at the debug level; not made when nothing listens at that level (the
//! client checks before it formats the fields).

mod support;

use std::sync::{Arc, Mutex};

use keepalive::client::{Client, ClientConfig};
use support::*;
use tracing::span::{Attributes, Id};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::{Layer, Registry};

/// Every span made, as its name and its fields.
#[derive(Clone, Default)]
struct Spans(Arc<Mutex<Vec<String>>>);

impl<S: tracing::Subscriber> Layer<S> for Spans {
    fn on_new_span(&self, attrs: &Attributes<'_>, _id: &Id, _ctx: Context<'_, S>) {
        struct Fields(String);
        impl tracing::field::Visit for Fields {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                self.0.push_str(&format!(" {}={:?}", field.name(), value));
            }
        }
        let mut fields = Fields(String::new());
        attrs.record(&mut fields);
        self.0
            .lock()
            .unwrap()
            .push(format!("{}{}", attrs.metadata().name(), fields.0));
    }
}

/// The client's request spans seen while one GET runs under a subscriber at `level`. (A
/// current-thread runtime: the subscriber, set for this thread, sees the whole request.)
async fn request_spans_at(level: LevelFilter) -> Vec<String> {
    let server = TestServer::start(patient()).await;
    let spans = Spans::default();
    let _guard = tracing::subscriber::set_default(
        Registry::default().with(spans.clone().with_filter(level)),
    );
    let client = Client::new(ClientConfig::new());
    let url = format!("http://{}/hello", server.addr);
    assert_eq!(fetch_ok(&client, &url).await, "hello, world!");
    let seen = spans.0.lock().unwrap().clone();
    seen.into_iter()
        .filter(|span| span.starts_with("request "))
        .collect()
}

#[tokio::test]
async fn a_request_has_a_span_with_its_method_and_uri_at_debug() {
    let spans = request_spans_at(LevelFilter::DEBUG).await;
    assert_eq!(spans.len(), 1, "{spans:?}");
    assert!(spans[0].contains("method=GET"), "{spans:?}");
    assert!(spans[0].contains("/hello"), "{spans:?}");
}

#[tokio::test]
async fn no_request_span_when_nothing_listens_at_debug() {
    let spans = request_spans_at(LevelFilter::INFO).await;
    assert!(spans.is_empty(), "{spans:?}");
}
