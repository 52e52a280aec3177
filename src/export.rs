//! The server's and the client's counters exported through the [`metrics`] facade (feature
//! `metrics`): install any recorder (Prometheus, StatsD, ...) and they appear under these names.
//! The counters of [`ServerStats`](crate::ServerStats) and
//! [`ClientStats`](crate::client::ClientStats) keep working with or without it.
//!
//! | name | kind | labels |
//! |---|---|---|
//! | `keepalive_server_connections_accepted_total` | counter | |
//! | `keepalive_server_connections_closed_total` | counter | `reason` ([`CloseReason::name`](crate::CloseReason::name)), `first` (`client` or `server`: who closed first) |
//! | `keepalive_server_requests_total` | counter | |
//! | `keepalive_server_connections_active` | gauge | |
//! | `keepalive_server_connections_idle` | gauge | |
//! | `keepalive_server_connections_parked` | gauge | |
//! | `keepalive_server_unparked_total` | counter | |
//! | `keepalive_server_handlers_dropped_total` | counter | |
//! | `keepalive_server_linger_timeouts_total`, `keepalive_server_linger_skipped_total` | counter | |
//! | `keepalive_server_accept_errors_total` | counter | |
//! | `keepalive_client_connections_opened_total` | counter | |
//! | `keepalive_client_connections_closed_total` | counter | `reason` ([`PoolCloseReason::name`](crate::client::PoolCloseReason::name)) |
//! | `keepalive_client_requests_total` | counter | `reused` (`true` or `false`) |
//! | `keepalive_client_retries_total` | counter | |
//! | `keepalive_client_connections_open` | gauge | |
//! | `keepalive_client_connections_idle` | gauge | |

use metrics::{counter, gauge};

pub(crate) fn server_opened() {
    counter!("keepalive_server_connections_accepted_total").increment(1);
    gauge!("keepalive_server_connections_active").increment(1.0);
}

pub(crate) fn server_closed(reason: &'static str, client_first: bool) {
    let first = if client_first { "client" } else { "server" };
    counter!("keepalive_server_connections_closed_total", "reason" => reason, "first" => first)
        .increment(1);
    gauge!("keepalive_server_connections_active").decrement(1.0);
}

pub(crate) fn server_request() {
    counter!("keepalive_server_requests_total").increment(1);
}

pub(crate) fn server_idle(delta: f64) {
    gauge!("keepalive_server_connections_idle").increment(delta);
}

pub(crate) fn server_parked(delta: f64) {
    gauge!("keepalive_server_connections_parked").increment(delta);
}

pub(crate) fn server_unparked() {
    counter!("keepalive_server_unparked_total").increment(1);
}

pub(crate) fn server_event(name: &'static str) {
    counter!(name).increment(1);
}

pub(crate) fn client_opened() {
    counter!("keepalive_client_connections_opened_total").increment(1);
    gauge!("keepalive_client_connections_open").increment(1.0);
}

pub(crate) fn client_request(reused: bool) {
    let reused = if reused { "true" } else { "false" };
    counter!("keepalive_client_requests_total", "reused" => reused).increment(1);
}

pub(crate) fn client_retry() {
    counter!("keepalive_client_retries_total").increment(1);
}

pub(crate) fn client_closed(reason: &'static str, was_open: bool) {
    counter!("keepalive_client_connections_closed_total", "reason" => reason).increment(1);
    if was_open {
        gauge!("keepalive_client_connections_open").decrement(1.0);
    }
}

pub(crate) fn client_idle(delta: f64) {
    gauge!("keepalive_client_connections_idle").increment(delta);
}
