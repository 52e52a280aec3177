//! What the server hands each connection task: the configuration, the counters, hyper's
//! builder, the keep-alive policy, and the two tables all connections share (what the server
//! remembers about client addresses, and where connections watch the shutdown).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use hyper::server::conn::http1;

use super::parking::ParkingLot;
use super::peer_memory::PeerMemory;
use crate::server::config::ServerConfig;
use crate::server::policy::Policy;
use crate::server::stats::ServerStats;

/// What the server hands each connection task.
#[derive(Debug)]
pub(crate) struct ConnContext {
    pub(crate) config: Arc<ServerConfig>,
    pub(crate) stats: ServerStats,
    pub(crate) http1: http1::Builder,
    pub(crate) policy: Policy,
    pub(crate) peers: PeerMemory,
    pub(crate) parking: ParkingLot,
    /// The id the next accepted connection gets (`ConnectionInfo::id`).
    next_connection_id: AtomicU64,
}

impl ConnContext {
    pub(crate) fn new(config: ServerConfig, stats: ServerStats) -> Self {
        let mut http1 = http1::Builder::new();
        http1
            .keep_alive(true)
            // hyper's own FIN check mid-request (it reads the FIN once its buffer is empty and
            // ends the connection) is kept; `Shared::client_left` decides first, and the FIN is
            // held back from hyper while a request complete before it runs.
            .half_close(false)
            // Our own header timeout counts from a head's first byte instead.
            .header_read_timeout(None);
        let policy = Policy {
            idle_timeout: Some(config.idle_timeout),
            advertise: config.advertise,
        };
        ConnContext {
            config: Arc::new(config),
            stats,
            http1,
            policy,
            peers: PeerMemory::default(),
            parking: ParkingLot::default(),
            next_connection_id: AtomicU64::new(1),
        }
    }

    /// A new connection's id: unique in this serve, increasing.
    pub(crate) fn next_connection_id(&self) -> u64 {
        self.next_connection_id.fetch_add(1, Ordering::Relaxed)
    }
}
