//! What the server remembers about how each client address ends its connections.
//!
//! Waiting for the client's FIN after a final response puts TIME_WAIT on the client, but a
//! client that waits for the server's close instead (ab without `-k`, some HTTP/1.0 tools)
//! would pay the whole wait on every connection. The wait cannot be shorter than the timer's
//! granularity (a millisecond), which is several times a loopback request. So the server
//! learns per client address: after [`LEARN_AFTER`] waits in a row that ended without the
//! client's FIN, it closes at once for that address, and still waits on one close in
//! [`PROBE_EVERY`] to notice when the address starts closing first again (a FIN in time
//! forgets the record).
//!
//! The memory is a fixed table of atomics indexed by a hash of the address: no lock, no
//! allocation per connection, bounded size. Addresses that share a slot (or clients of both
//! kinds behind one address) only make the server wait more or less often; correctness never
//! depends on it.

use std::hash::{BuildHasher, Hash};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};

/// Waits in a row that ended without the client's FIN before the server stops waiting.
pub(crate) const LEARN_AFTER: u32 = 3;
/// While it stops waiting for an address, the server still waits once in this many closes.
pub(crate) const PROBE_EVERY: u32 = 16;

const SLOTS: usize = 4096;

/// See the module docs.
#[derive(Debug)]
pub(crate) struct PeerMemory {
    /// Per slot: consecutive timed-out waits (capped), as a count of closes since.
    slots: Box<[AtomicU32]>,
    hasher: std::hash::RandomState,
}

impl Default for PeerMemory {
    fn default() -> Self {
        PeerMemory {
            slots: (0..SLOTS).map(|_| AtomicU32::new(0)).collect(),
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
        let slot = self.slot(peer);
        let timeouts = slot.load(Relaxed);
        if timeouts < LEARN_AFTER {
            return true;
        }
        // Count the skipped closes past the learning threshold; probe once in PROBE_EVERY.
        let seen = slot.fetch_add(1, Relaxed).saturating_add(1);
        if seen >= LEARN_AFTER + PROBE_EVERY {
            slot.store(LEARN_AFTER, Relaxed);
            return true;
        }
        false
    }

    /// The client's FIN came in time: it closes first, always wait for it.
    pub(crate) fn fin_in_time(&self, peer: IpAddr) {
        let slot = self.slot(peer);
        if slot.load(Relaxed) != 0 {
            slot.store(0, Relaxed);
        }
    }

    /// The wait ended without the client's FIN.
    pub(crate) fn wait_timed_out(&self, peer: IpAddr) {
        let slot = self.slot(peer);
        let value = slot.load(Relaxed);
        if value < LEARN_AFTER {
            slot.store(value + 1, Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learns_a_client_that_waits_for_the_server_and_keeps_probing() {
        let memory = PeerMemory::default();
        let ab: IpAddr = "127.0.0.9".parse().unwrap();
        for _ in 0..LEARN_AFTER {
            assert!(memory.should_wait(ab));
            memory.wait_timed_out(ab);
        }
        let waits = (0..PROBE_EVERY * 4)
            .filter(|_| {
                let wait = memory.should_wait(ab);
                if wait {
                    memory.wait_timed_out(ab);
                }
                wait
            })
            .count();
        assert_eq!(waits, 4, "one probe in {PROBE_EVERY}");

        // The same address starts closing first: a probe's FIN forgets the record.
        while !memory.should_wait(ab) {}
        memory.fin_in_time(ab);
        assert!((0..10).all(|_| memory.should_wait(ab)));
    }
}
