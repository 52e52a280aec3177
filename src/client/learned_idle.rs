//! What the pool learns of a server's idle limit when the server advertises none.
//!
//! Go's `http.Server` (`IdleTimeout`), lighttpd, aiohttp, uvicorn and cloud load balancers
//! close idle keep-alive connections after a limit they never send. Without it, a client learns
//! of their closes only from their FIN (the server then holds the TIME_WAIT) or by losing the
//! race of reusing a connection the server is just closing. The pool's FIN watch sees when a
//! server closes an idle connection and after how long: one estimate per key, learned from
//! such closes, lets the pool close idle connections to that key a margin before the server
//! would.
//!
//! Servers check their idle timers at a granularity of their own (lighttpd once a second, so
//! its `max-keep-alive-idle = 2` closes after 2 to 3 s), so the estimate keeps the shortest of
//! the closes it sees. It must not only shrink, or one early close (a restart, a drain, a load
//! balancer scaling in) would lower it for good:
//! - the first close sets it (so the very next idle period already ends on the client's side);
//! - a close down to half the estimate lowers it at once (the server's timer is coarse);
//! - a close before half of it lowers it only when a second such close confirms it;
//! - a close a quarter or more past it raises it (the server held the connection that long);
//! - a request that failed on a reused connection (the server closed it first, the race the
//!   FIN watch could not see) counts as a close after the idle time it had;
//! - closes after less than [`FLOOR`] of idleness teach nothing (they are rarely an idle
//!   limit);
//! - it expires [`EXPIRY`] after it was last set or confirmed;
//! - every [`PROBE_EVERY`], one connection is let idle past it (a probe): if the server closes
//!   it, the close confirms or raises the estimate; if it is reused past the estimate, or
//!   reaches the pool's own idle timeout, the server's limit went up and the estimate is
//!   forgotten, to be learned again from the next close.

use std::time::Duration;

use tokio::time::Instant;

/// Idle periods shorter than this that end in the server's close teach nothing.
pub(crate) const FLOOR: Duration = Duration::from_secs(1);

/// An estimate neither set nor confirmed for this long is forgotten.
pub(crate) const EXPIRY: Duration = Duration::from_secs(10 * 60);

/// How often one connection is let idle past the estimate, to find a raised server limit.
pub(crate) const PROBE_EVERY: Duration = Duration::from_secs(2 * 60);

/// One key's learned idle limit.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct LearnedIdle {
    /// The estimate, and when it was last set or confirmed.
    limit: Option<(Duration, Instant)>,
    /// A close well before the estimate, waiting for a second one to confirm it.
    early: Option<(Duration, Instant)>,
    /// When the last probe was let past the estimate.
    probed: Option<Instant>,
}

/// How the pool treats one connection going idle, from what it has learned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IdlePlan {
    /// Nothing learned: the pool's own idle timeout applies.
    Unknown,
    /// Close it after this much idleness (the estimate less a margin).
    CloseAfter(Duration),
    /// Let it idle past the estimate, to learn whether the server's limit went up.
    Probe,
}

impl LearnedIdle {
    /// The estimate in force at `now`, if any (forgotten once expired).
    pub(crate) fn limit(&mut self, now: Instant) -> Option<Duration> {
        match self.limit {
            Some((_, confirmed)) if now.saturating_duration_since(confirmed) >= EXPIRY => {
                self.limit = None;
                None
            }
            limit => limit.map(|(limit, _)| limit),
        }
    }

    /// Whether an estimate is held (perhaps expired).
    pub(crate) fn is_set(&self) -> bool {
        self.limit.is_some()
    }

    /// What to do with a connection of this key that goes idle at `now`.
    pub(crate) fn plan(&mut self, now: Instant) -> IdlePlan {
        let Some(limit) = self.limit(now) else {
            return IdlePlan::Unknown;
        };
        let since_learned = self
            .limit
            .map_or(Duration::ZERO, |(_, at)| now.saturating_duration_since(at));
        let since_probe = self
            .probed
            .map_or(Duration::MAX, |at| now.saturating_duration_since(at));
        if since_learned >= PROBE_EVERY && since_probe >= PROBE_EVERY {
            self.probed = Some(now);
            return IdlePlan::Probe;
        }
        IdlePlan::CloseAfter(limit.saturating_sub(margin(limit)))
    }

    /// The server closed a connection of this key after `idle` of idleness. Returns whether
    /// the estimate changed.
    pub(crate) fn server_closed(&mut self, idle: Duration, now: Instant) -> bool {
        if idle < FLOOR {
            return false;
        }
        let Some(limit) = self.limit(now) else {
            self.set(idle, now);
            return true;
        };
        if idle >= limit + limit / 4 {
            self.set(idle, now);
            return true;
        }
        if idle >= limit / 2 {
            // The same limit, seen through a coarse timer: keep the shortest.
            self.set(idle.min(limit), now);
            return idle < limit;
        }
        match self.early {
            Some((first, at)) if now.saturating_duration_since(at) < EXPIRY => {
                // Two early closes: the server's limit went down. The later of the two is
                // the one the server still kept to.
                self.set(first.max(idle), now);
                true
            }
            _ => {
                self.early = Some((idle, now));
                false
            }
        }
    }

    /// A connection of this key stayed open for `idle` of idleness without the server closing
    /// it (it was reused, or reached the pool's own idle timeout): past the estimate, the
    /// server's limit went up, and the estimate is forgotten.
    pub(crate) fn server_held(&mut self, idle: Duration, now: Instant) {
        if self.limit(now).is_some_and(|limit| idle > limit) {
            self.limit = None;
            self.early = None;
        }
    }

    fn set(&mut self, limit: Duration, now: Instant) {
        self.limit = Some((limit, now));
        self.early = None;
    }
}

/// How long before a learned limit the pool closes: a quarter of it, at most 1 s (the same
/// rule as for an advertised `Keep-Alive: timeout=`).
pub(crate) fn margin(limit: Duration) -> Duration {
    (limit / 4).min(Duration::from_secs(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn the_first_close_sets_it_and_closes_come_a_margin_before() {
        let t0 = Instant::now();
        let mut learned = LearnedIdle::default();
        assert_eq!(learned.plan(t0), IdlePlan::Unknown);
        assert!(learned.server_closed(2 * S, t0));
        assert_eq!(learned.plan(t0), IdlePlan::CloseAfter(S * 3 / 2));
        // A long limit: the margin is 1 s.
        assert!(learned.server_closed(60 * S, t0));
        assert_eq!(learned.plan(t0), IdlePlan::CloseAfter(59 * S));
    }

    #[test]
    fn closes_below_the_floor_teach_nothing() {
        let t0 = Instant::now();
        let mut learned = LearnedIdle::default();
        assert!(!learned.server_closed(FLOOR / 2, t0));
        assert_eq!(learned.plan(t0), IdlePlan::Unknown);
    }

    #[test]
    fn one_early_close_does_not_lower_it_two_do() {
        let t0 = Instant::now();
        let mut learned = LearnedIdle::default();
        learned.server_closed(10 * S, t0);
        // A restart closes one connection after 3 s.
        assert!(!learned.server_closed(3 * S, t0 + S));
        assert_eq!(learned.limit(t0 + S), Some(10 * S));
        // A close at the limit confirms it and clears the early one.
        assert!(!learned.server_closed(10 * S, t0 + 2 * S));
        assert!(!learned.server_closed(4 * S, t0 + 3 * S));
        assert_eq!(learned.limit(t0 + 3 * S), Some(10 * S));
        // A second early close in a row: the server's limit went down.
        assert!(learned.server_closed(4 * S, t0 + 4 * S));
        assert_eq!(learned.limit(t0 + 4 * S), Some(4 * S));
    }

    #[test]
    fn a_coarse_server_timer_keeps_the_shortest_close() {
        // lighttpd checks once a second: `max-keep-alive-idle = 2` closes after 2 to 3 s.
        let t0 = Instant::now();
        let mut learned = LearnedIdle::default();
        learned.server_closed(S * 3, t0);
        assert!(learned.server_closed(S * 2, t0 + S));
        assert_eq!(learned.limit(t0 + S), Some(2 * S));
        assert!(!learned.server_closed(S * 24 / 10, t0 + 2 * S));
        assert_eq!(learned.limit(t0 + 2 * S), Some(2 * S));
    }

    #[test]
    fn a_close_well_past_it_raises_it() {
        let t0 = Instant::now();
        let mut learned = LearnedIdle::default();
        learned.server_closed(2 * S, t0);
        assert!(learned.server_closed(5 * S, t0 + S));
        assert_eq!(learned.limit(t0 + S), Some(5 * S));
    }

    #[test]
    fn it_expires() {
        let t0 = Instant::now();
        let mut learned = LearnedIdle::default();
        learned.server_closed(2 * S, t0);
        assert_eq!(learned.limit(t0 + EXPIRY - S), Some(2 * S));
        assert_eq!(learned.limit(t0 + EXPIRY), None);
        assert_eq!(learned.plan(t0 + EXPIRY), IdlePlan::Unknown);
    }

    #[test]
    fn one_probe_every_period_and_a_held_probe_forgets_it() {
        let t0 = Instant::now();
        let mut learned = LearnedIdle::default();
        learned.server_closed(2 * S, t0);
        assert_eq!(learned.plan(t0 + S), IdlePlan::CloseAfter(S * 3 / 2));
        let later = t0 + PROBE_EVERY;
        assert_eq!(learned.plan(later), IdlePlan::Probe);
        assert_eq!(learned.plan(later), IdlePlan::CloseAfter(S * 3 / 2));
        // Held no longer than the estimate: nothing learned.
        learned.server_held(S, later);
        assert_eq!(learned.limit(later), Some(2 * S));
        // The probe was reused after 3 s: the server's limit went up.
        learned.server_held(3 * S, later + 3 * S);
        assert_eq!(learned.plan(later + 3 * S), IdlePlan::Unknown);
    }

    #[test]
    fn a_probe_the_server_closes_confirms_it() {
        let t0 = Instant::now();
        let mut learned = LearnedIdle::default();
        learned.server_closed(2 * S, t0);
        let later = t0 + PROBE_EVERY;
        assert_eq!(learned.plan(later), IdlePlan::Probe);
        assert!(!learned.server_closed(2 * S, later + 2 * S));
        // Confirmed at the probe: no other probe for a period, and it does not expire then.
        assert_eq!(learned.plan(later + 3 * S), IdlePlan::CloseAfter(S * 3 / 2));
        assert_eq!(learned.limit(t0 + EXPIRY + S), Some(2 * S));
    }
}
