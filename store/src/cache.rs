//! The latest state of recently used aggregates, so that a command on a busy aggregate
//! does not read its stream again. Never trusted on its own: an append made from a
//! cached state carries the expected version and fails on a stale one, and an outcome
//! that appends nothing is checked against the events that follow the cached version
//! (see the executor).

use std::any::Any;
use std::num::NonZeroUsize;
use std::sync::Mutex;

use lru::LruCache;

type Key = (&'static str, String);

/// A state and the version (last sequence) it reflects.
struct Entry {
    state: Box<dyn Any + Send>,
    version: i64,
}

pub(crate) struct AggregateCache {
    entries: Option<Mutex<LruCache<Key, Entry>>>,
}

impl AggregateCache {
    /// Holds up to `capacity` aggregates; 0 turns the cache off.
    pub(crate) fn new(capacity: usize) -> Self {
        Self { entries: NonZeroUsize::new(capacity).map(|capacity| Mutex::new(LruCache::new(capacity))) }
    }

    pub(crate) fn get<A: Clone + Send + 'static>(&self, kind: &'static str, id: &str) -> Option<(A, i64)> {
        let mut entries = self.entries.as_ref()?.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let entry = entries.get(&(kind, id.to_string()))?;
        let state = entry.state.downcast_ref::<A>()?;
        Some((state.clone(), entry.version))
    }

    /// Keeps `state` unless the cache already holds a later version.
    pub(crate) fn put<A: Send + 'static>(&self, kind: &'static str, id: &str, state: A, version: i64) {
        let Some(entries) = &self.entries else { return };
        let mut entries = entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let key = (kind, id.to_string());
        if entries.peek(&key).is_some_and(|held| held.version > version) {
            return;
        }
        entries.put(key, Entry { state: Box::new(state), version });
    }

    pub(crate) fn forget(&self, kind: &'static str, id: &str) {
        if let Some(entries) = &self.entries {
            entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).pop(&(kind, id.to_string()));
        }
    }
}

impl std::fmt::Debug for AggregateCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let len = self.entries.as_ref().map(|entries| entries.lock().map_or(0, |entries| entries.len()));
        f.debug_struct("AggregateCache").field("entries", &len).finish()
    }
}
