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
//! An address that closed first on its last [`LONG_AFTER`] waits in a row is known to close
//! first: it gets the whole linger instead of the short RTT-based wait, since on a busy
//! machine a client that closes may not run for tens of milliseconds (the wait ends at its
//! FIN, so this costs nothing while it keeps closing). One wait that ends without its FIN
//! puts it back on the short wait. A client that never closes first never gets the long wait.
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
/// Closes first in a row after which an address gets the whole linger.
pub(crate) const LONG_AFTER: u32 = 8;
/// The streak saturates here (7 bits).
const STREAK_MAX: u32 = 0x7f;

/// How long to wait for a client's FIN on one close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wait {
    /// Close at once: the address waits for the server's close.
    Skip,
    /// The RTT-based wait: nothing much known yet.
    Short,
    /// The whole linger: the address is known to close first.
    Long,
}

const SLOTS: usize = 4096;

/// See the module docs.
#[derive(Debug)]
pub(crate) struct PeerMemory {
    /// Per slot: closes first in a row in the top 7 bits (`streak`), the average in the
    /// next 17 (`rate`), closes skipped in the low 8 (`skipped`), packed as
    /// `streak << 25 | rate << 8 | skipped`.
    slots: Box<[AtomicU32]>,
    hasher: std::hash::RandomState,
}

fn pack(streak: u32, rate: u32, skipped: u32) -> u32 {
    (streak.min(STREAK_MAX) << 25) | (rate << 8) | (skipped & 0xff)
}

fn unpack(value: u32) -> (u32, u32, u32) {
    (value >> 25, (value >> 8) & 0x1_ffff, value & 0xff)
}

impl Default for PeerMemory {
    fn default() -> Self {
        PeerMemory {
            slots: (0..SLOTS)
                .map(|_| AtomicU32::new(pack(0, ONE, 0)))
                .collect(),
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

    /// How long to wait for this client's FIN on this close.
    pub(crate) fn wait(&self, peer: IpAddr) -> Wait {
        let mut wait = Wait::Short;
        let _ = self.slot(peer).fetch_update(Relaxed, Relaxed, |value| {
            let (streak, rate, skipped) = unpack(value);
            if streak >= LONG_AFTER {
                wait = Wait::Long;
                return None;
            }
            if rate >= SKIP_BELOW {
                wait = Wait::Short;
                return None;
            }
            if skipped + 1 >= PROBE_EVERY {
                wait = Wait::Short;
                Some(pack(streak, rate, 0))
            } else {
                wait = Wait::Skip;
                Some(pack(streak, rate, skipped + 1))
            }
        });
        wait
    }

    /// A wait ended: the client's FIN came in time (`closed_first`) or it did not.
    pub(crate) fn record(&self, peer: IpAddr, closed_first: bool) {
        let _ = self.slot(peer).fetch_update(Relaxed, Relaxed, |value| {
            let (streak, rate, skipped) = unpack(value);
            let target = if closed_first { ONE } else { 0 };
            let rate = if target > rate {
                rate + (target - rate).div_ceil(16)
            } else {
                rate - (rate - target).div_ceil(16)
            };
            let streak = if closed_first { streak + 1 } else { 0 };
            Some(pack(streak, rate, skipped))
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
            match memory.wait(ab) {
                Wait::Skip => {}
                Wait::Short => {
                    waits += 1;
                    memory.record(ab, false);
                }
                Wait::Long => panic!("a client that never closes first got the long wait"),
            }
        }
        // A few dozen waits to learn, then one in PROBE_EVERY.
        assert!(waits < 40 + 1000 / PROBE_EVERY as usize, "{waits} waits");
        assert!(waits > 1000 / PROBE_EVERY as usize, "{waits} waits");

        // The same address starts closing first: a few probes with a FIN bring the waits back.
        let mut skipped = 0;
        for _ in 0..1000 {
            if memory.wait(ab) == Wait::Skip {
                skipped += 1;
            } else {
                memory.record(ab, true);
            }
        }
        assert!(
            skipped < 100,
            "{skipped} closes skipped after the client changed"
        );
        assert!((0..10).all(|_| memory.wait(ab) == Wait::Long));
    }

    #[test]
    fn a_streak_of_closes_first_earns_the_long_wait_and_one_miss_ends_it() {
        let memory = PeerMemory::default();
        let curl: IpAddr = "127.0.0.11".parse().unwrap();
        for _ in 0..LONG_AFTER {
            assert_eq!(memory.wait(curl), Wait::Short);
            memory.record(curl, true);
        }
        assert_eq!(memory.wait(curl), Wait::Long);
        for _ in 0..1000 {
            memory.record(curl, true);
        }
        assert_eq!(memory.wait(curl), Wait::Long, "the streak saturates");
        memory.record(curl, false);
        assert_eq!(memory.wait(curl), Wait::Short);
    }

    #[test]
    fn a_burst_of_slow_closes_does_not_stop_the_waits() {
        let memory = PeerMemory::default();
        let busy: IpAddr = "127.0.0.10".parse().unwrap();
        for round in 0..50 {
            // Eight connections stall together, then the client catches up.
            for _ in 0..8 {
                assert_ne!(memory.wait(busy), Wait::Skip, "round {round}");
                memory.record(busy, false);
            }
            for _ in 0..40 {
                assert_ne!(memory.wait(busy), Wait::Skip);
                memory.record(busy, true);
            }
        }
    }
}
