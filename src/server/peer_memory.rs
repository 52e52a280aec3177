//! What the server remembers about how each client address ends its connections.
//!
//! Waiting for the client's FIN after a final response puts TIME_WAIT on the client, but a
//! client that waits for the server's close instead (ab without `-k`, some HTTP/1.0 tools)
//! would pay the whole wait on every connection. The wait cannot be shorter than the timer's
//! granularity (a millisecond), which is several times a loopback request. So the server
//! learns, per client address, how often that address closes first: a moving average over its
//! recent waits (each wait moves it 1/16 of the way towards "closed first" or "did not"). While
//! the average stays above [`SKIP_BELOW`] the server waits; below it, it closes at once and
//! still waits on one close in [`PROBE_EVERY`], so an address that starts closing first again
//! is noticed.
//!
//! A burst of slow closes from a busy client (all its connections stalled together) moves the
//! average only a little, so a client that does close first is not mistaken for one that
//! never does; one that never does is learned after a few dozen connections.
//!
//! The memory is a fixed table of atomics indexed by a hash of the address: no lock, no
//! allocation per connection, bounded size. Addresses that share a slot (or clients of both
//! kinds behind one address) only make the server wait more or less often; correctness never
//! depends on it.

use std::hash::{BuildHasher, Hash};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};

/// Fixed-point scale of the average (1.0 = always closes first).
const ONE: u32 = 1 << 16;
/// Below this share of closing first (10 %), the server stops waiting for that address.
pub(crate) const SKIP_BELOW: u32 = ONE / 10;
/// While it stops waiting for an address, the server still waits once in this many closes.
pub(crate) const PROBE_EVERY: u32 = 16;

const SLOTS: usize = 4096;

/// See the module docs.
#[derive(Debug)]
pub(crate) struct PeerMemory {
    /// Per slot: the average in the high 17 bits' worth (`rate`), closes skipped in the low
    /// 8 bits (`skipped`), packed as `rate << 8 | skipped`.
    slots: Box<[AtomicU32]>,
    hasher: std::hash::RandomState,
}

fn pack(rate: u32, skipped: u32) -> u32 {
    (rate << 8) | (skipped & 0xff)
}

fn unpack(value: u32) -> (u32, u32) {
    (value >> 8, value & 0xff)
}

impl Default for PeerMemory {
    fn default() -> Self {
        PeerMemory {
            slots: (0..SLOTS).map(|_| AtomicU32::new(pack(ONE, 0))).collect(),
            hasher: std::hash::RandomState::new(),
        }
    }
}

impl PeerMemory {
    fn slot(&self, peer: IpAddr) -> &AtomicU32 {
        let mut hasher = self.hasher.build_hasher();
        peer.hash(&mut hasher);
        let hash = std::hash::Hasher::finish(&hasher);
        &self.slots[(hash as usize) % SLOTS]
    }

    /// Whether to wait for this client's FIN on this close.
    pub(crate) fn should_wait(&self, peer: IpAddr) -> bool {
        let mut wait = true;
        let _ = self.slot(peer).fetch_update(Relaxed, Relaxed, |value| {
            let (rate, skipped) = unpack(value);
            if rate >= SKIP_BELOW {
                wait = true;
                return None;
            }
            if skipped + 1 >= PROBE_EVERY {
                wait = true;
                Some(pack(rate, 0))
            } else {
                wait = false;
                Some(pack(rate, skipped + 1))
            }
        });
        wait
    }

    /// A wait ended: the client's FIN came in time (`closed_first`) or it did not.
    pub(crate) fn record(&self, peer: IpAddr, closed_first: bool) {
        let _ = self.slot(peer).fetch_update(Relaxed, Relaxed, |value| {
            let (rate, skipped) = unpack(value);
            let target = if closed_first { ONE } else { 0 };
            let rate = if target > rate {
                rate + (target - rate).div_ceil(16)
            } else {
                rate - (rate - target).div_ceil(16)
            };
            Some(pack(rate, skipped))
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learns_a_client_that_waits_for_the_server_and_keeps_probing() {
        let memory = PeerMemory::default();
        let ab: IpAddr = "127.0.0.9".parse().unwrap();
        let mut waits = 0;
        for _ in 0..1000 {
            if memory.should_wait(ab) {
                waits += 1;
                memory.record(ab, false);
            }
        }
        // A few dozen waits to learn, then one in PROBE_EVERY.
        assert!(waits < 40 + 1000 / PROBE_EVERY as usize, "{waits} waits");
        assert!(waits > 1000 / PROBE_EVERY as usize, "{waits} waits");

        // The same address starts closing first: a few probes with a FIN bring the waits back.
        let mut skipped = 0;
        for _ in 0..1000 {
            if memory.should_wait(ab) {
                memory.record(ab, true);
            } else {
                skipped += 1;
            }
        }
        assert!(
            skipped < 100,
            "{skipped} closes skipped after the client changed"
        );
        assert!((0..10).all(|_| memory.should_wait(ab)));
    }

    #[test]
    fn a_burst_of_slow_closes_does_not_stop_the_waits() {
        let memory = PeerMemory::default();
        let busy: IpAddr = "127.0.0.10".parse().unwrap();
        for round in 0..50 {
            // Eight connections stall together, then the client catches up.
            for _ in 0..8 {
                assert!(memory.should_wait(busy), "round {round}");
                memory.record(busy, false);
            }
            for _ in 0..40 {
                assert!(memory.should_wait(busy));
                memory.record(busy, true);
            }
        }
    }
}
