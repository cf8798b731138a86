//! Coalescing of identical in-flight requests: one goes upstream, the others wait for its entry.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::watch;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Running,
    Completed,
    Failed,
}

/// Per key: the leader's flight id and a receiver to hand to followers.
type FlightMap = HashMap<[u8; 32], (u64, watch::Receiver<State>)>;

/// The in-flight requests, by cache key. A plain mutex: it is never held across an `.await`.
#[derive(Default)]
pub(super) struct Flights {
    map: Mutex<FlightMap>,
    next_id: AtomicU64,
}

impl Flights {
    fn lock(&self) -> MutexGuard<'_, FlightMap> {
        // A panic elsewhere cannot leave the map inconsistent (each update is one call).
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn join(self: &Arc<Self>, key: [u8; 32]) -> Flight {
        let mut map = self.lock();
        if let Some((_, rx)) = map.get(&key) {
            return Flight::Follower(Waiter { rx: rx.clone() });
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = watch::channel(State::Running);
        map.insert(key, (id, rx));
        Flight::Leader(LeaderGuard {
            flights: Arc::clone(self),
            key,
            id,
            tx,
            completed: false,
        })
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.lock().len()
    }
}

/// The result of [`super::ResponseCache::join`].
pub enum Flight {
    /// Nobody is fetching this answer: go upstream, store the entry, then `complete()`.
    Leader(LeaderGuard),
    /// Someone is already fetching it: wait, then read the cache again.
    Follower(Waiter),
}

/// Held by the request that fetches the answer; dropping it without `complete()` (error, client
/// gone, panic) releases the followers so they go upstream themselves.
pub struct LeaderGuard {
    flights: Arc<Flights>,
    key: [u8; 32],
    id: u64,
    tx: watch::Sender<State>,
    completed: bool,
}

impl LeaderGuard {
    /// The entry is stored: followers can read it now.
    pub fn complete(mut self) {
        self.completed = true;
        // Drop does the rest.
    }
}

impl Drop for LeaderGuard {
    fn drop(&mut self) {
        {
            let mut map = self.flights.lock();
            if map.get(&self.key).is_some_and(|(id, _)| *id == self.id) {
                map.remove(&self.key);
            }
        }
        let state = if self.completed {
            State::Completed
        } else {
            State::Failed
        };
        self.tx.send_replace(state);
    }
}

/// How a follower's wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitOutcome {
    /// The leader stored the entry: read the cache.
    Completed,
    /// The leader gave up: go upstream.
    Failed,
    /// The leader is still busy: go upstream rather than keep the client waiting.
    TimedOut,
}

/// A follower's handle on the leader's outcome.
pub struct Waiter {
    rx: watch::Receiver<State>,
}

impl Waiter {
    /// Waits at most `timeout` for the leader to finish.
    pub async fn wait(mut self, timeout: Duration) -> WaitOutcome {
        match tokio::time::timeout(timeout, self.rx.wait_for(|s| *s != State::Running)).await {
            Ok(Ok(state)) => match *state {
                State::Completed => WaitOutcome::Completed,
                State::Failed | State::Running => WaitOutcome::Failed,
            },
            Ok(Err(_closed)) => WaitOutcome::Failed,
            Err(_elapsed) => WaitOutcome::TimedOut,
        }
    }
}
