//! Where parked connections wait for a graceful shutdown to move on.
//!
//! A parked connection keeps as little as it can (see [`ServerConfig::park_after`]). Waiting on
//! the shutdown's watch channel would cost each of them a future of about 150 bytes; instead
//! each registers its task's waker here (16 bytes in one shared table) and reads the stage from
//! an atomic when woken.
//!
//! [`ServerConfig::park_after`]: crate::ServerConfig::park_after

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::task::Waker;

/// Where a graceful shutdown is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Stage {
    Running,
    Draining,
    Forcing,
}

impl Stage {
    pub(crate) fn from_u8(value: u8) -> Stage {
        match value {
            0 => Stage::Running,
            1 => Stage::Draining,
            _ => Stage::Forcing,
        }
    }
}

/// See the module docs.
#[derive(Debug, Default)]
pub(crate) struct ParkingLot {
    stage: AtomicU8,
    wakers: Mutex<Slots>,
}

#[derive(Debug, Default)]
struct Slots {
    wakers: Vec<Option<Waker>>,
    free: Vec<usize>,
}

impl ParkingLot {
    fn slots(&self) -> MutexGuard<'_, Slots> {
        // Nothing panics while holding the lock; a poisoned table is still consistent.
        self.wakers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The stage of the server's shutdown.
    pub(crate) fn stage(&self) -> Stage {
        Stage::from_u8(self.stage.load(Ordering::SeqCst))
    }

    /// Moves the shutdown on and wakes every parked connection.
    pub(crate) fn set_stage(&self, stage: Stage) {
        self.stage.store(stage as u8, Ordering::SeqCst);
        let slots = self.slots();
        for waker in slots.wakers.iter().flatten() {
            waker.wake_by_ref();
        }
    }

    /// Registers a parked connection's waker; returns its key. Read the stage *after* this: a
    /// stage set before is then seen, one set after wakes the waker.
    pub(crate) fn register(&self, waker: &Waker) -> usize {
        let mut slots = self.slots();
        match slots.free.pop() {
            Some(key) => {
                slots.wakers[key] = Some(waker.clone());
                key
            }
            None => {
                slots.wakers.push(Some(waker.clone()));
                slots.wakers.len() - 1
            }
        }
    }

    /// Replaces a registered waker if the task's waker changed.
    pub(crate) fn update(&self, key: usize, waker: &Waker) {
        if let Some(slot) = self.slots().wakers.get_mut(key) {
            if !slot.as_ref().is_some_and(|w| w.will_wake(waker)) {
                *slot = Some(waker.clone());
            }
        }
    }

    /// Forgets a registration.
    pub(crate) fn unregister(&self, key: usize) {
        let mut slots = self.slots();
        if let Some(slot) = slots.wakers.get_mut(key) {
            if slot.take().is_some() {
                slots.free.push(key);
            }
        }
    }
}

/// A registration in a [`ParkingLot`], forgotten when dropped.
#[derive(Debug)]
pub(crate) struct Parked<'a> {
    lot: &'a ParkingLot,
    key: Option<usize>,
}

impl<'a> Parked<'a> {
    pub(crate) fn new(lot: &'a ParkingLot) -> Self {
        Parked { lot, key: None }
    }

    /// Registers `waker` (or updates it if the task's waker changed) and returns the stage.
    /// Parked connections are polled only when something happens to them, so the lock taken
    /// here is rare.
    pub(crate) fn watch(&mut self, waker: &Waker) -> Stage {
        match self.key {
            Some(key) => self.lot.update(key, waker),
            None => self.key = Some(self.lot.register(waker)),
        }
        self.lot.stage()
    }
}

impl Parked<'_> {
    /// Like [`watch`](Self::watch) for a connection polled often: `cache` keeps the waker
    /// registered, so the table's lock is taken only when the task's waker changes.
    pub(crate) fn watch_cached(&mut self, waker: &Waker, cache: &mut Option<Waker>) -> Stage {
        if !cache.as_ref().is_some_and(|w| w.will_wake(waker)) {
            self.watch(waker);
            *cache = Some(waker.clone());
        }
        self.lot.stage()
    }
}

impl Drop for Parked<'_> {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            self.lot.unregister(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;
    use std::task::Wake;

    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn stage_changes_wake_registered_connections_only() {
        let lot = ParkingLot::default();
        let a = Arc::new(Count(AtomicUsize::new(0)));
        let b = Arc::new(Count(AtomicUsize::new(0)));
        let waker_a = Waker::from(a.clone());
        let waker_b = Waker::from(b.clone());
        let mut parked_a = Parked::new(&lot);
        assert_eq!(parked_a.watch(&waker_a), Stage::Running);
        {
            let mut parked_b = Parked::new(&lot);
            parked_b.watch(&waker_b);
        }
        lot.set_stage(Stage::Draining);
        assert_eq!(a.0.load(Ordering::SeqCst), 1);
        assert_eq!(b.0.load(Ordering::SeqCst), 0, "b left before the change");
        assert_eq!(parked_a.watch(&waker_a), Stage::Draining);
        // The freed slot is reused.
        drop(parked_a);
        let mut again = Parked::new(&lot);
        again.watch(&waker_b);
        assert_eq!(lot.slots().wakers.len(), 2);
    }
}
