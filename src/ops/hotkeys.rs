//! Hot keys: which keys the proxy's clients ask for most, with bounded memory.
//!
//! Each worker counts one routed request in `hotkeys.sample_rate` ([`Sampler`], thread-local:
//! a countdown, and for a sampled request a Space-Saving update). Every `hotkeys.interval_ms`
//! the worker publishes its top keys to its own slot of [`HotKeys`] (one short lock per
//! interval) and starts a new window. Readers (`INFO hotkeys`, admin `/hotkeys`) add the
//! workers' lists up. When hot keys are off no sampler exists: the request path pays one
//! branch on an `Option`.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use smallvec::SmallVec;

/// Keys longer than this are counted by their first this-many bytes (bounded memory).
pub const MAX_KEY: usize = 256;

/// A hot key of the last window.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HotKey {
    /// The key (its first [`MAX_KEY`] bytes).
    pub key: Bytes,
    /// Estimated requests in the window: samples × sample rate.
    pub count: u64,
}

/// The published top keys of every worker.
#[derive(Debug)]
pub struct HotKeys {
    /// One request in this many is sampled.
    pub sample_rate: u32,
    /// Keys shown.
    pub top: usize,
    /// Window length.
    pub interval: Duration,
    published: Box<[Mutex<Vec<HotKey>>]>,
}

impl HotKeys {
    /// Hot keys for `workers` workers.
    pub fn new(workers: usize, sample_rate: u32, top: usize, interval: Duration) -> HotKeys {
        HotKeys {
            sample_rate: sample_rate.max(1),
            top,
            interval,
            published: (0..workers.max(1))
                .map(|_| Mutex::new(Vec::new()))
                .collect(),
        }
    }

    /// A sampler for one worker.
    pub fn sampler(&self) -> Sampler {
        Sampler {
            rate: self.sample_rate,
            countdown: Cell::new(self.sample_rate),
            sketch: RefCell::new(SpaceSaving::new(capacity(self.top))),
        }
    }

    /// Worker `worker`'s window ended: publish its top keys and start a new window.
    pub fn publish(&self, worker: usize, sampler: &Sampler) {
        let top = sampler.sketch.borrow_mut().take_top(self.top);
        let keys = top
            .into_iter()
            .map(|(key, samples)| HotKey {
                key,
                count: samples.saturating_mul(u64::from(self.sample_rate)),
            })
            .collect();
        if let Some(window) = self.published.get(worker) {
            *lock(window) = keys;
        }
    }

    /// The top keys of the last window, all workers added up, most requested first.
    pub fn top(&self) -> Vec<HotKey> {
        let mut sum: HashMap<Bytes, u64> = HashMap::new();
        for window in self.published.iter() {
            for hot in lock(window).iter() {
                *sum.entry(hot.key.clone()).or_default() += hot.count;
            }
        }
        let mut all: Vec<HotKey> = sum
            .into_iter()
            .map(|(key, count)| HotKey { key, count })
            .collect();
        all.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.key.cmp(&b.key)));
        all.truncate(self.top);
        all
    }
}

/// Where `key` lives now: its slot (routing unit) and that slot's master (empty if none).
pub fn placed(table: &crate::topology::SlotTable, key: &[u8]) -> (u16, String) {
    let unit = table.placement().unit_of(key);
    let node = table
        .shard_of(unit)
        .and_then(|i| table.shards().get(i))
        .map(|s| s.master.to_string())
        .unwrap_or_default();
    (unit.get(), node)
}

/// Counters kept per worker for `top` keys: enough that the top ones are rarely evicted.
fn capacity(top: usize) -> usize {
    (top * 8).max(64)
}

/// One worker's sampling state (thread-local; `Cell`s, no atomics).
#[derive(Debug)]
pub struct Sampler {
    rate: u32,
    countdown: Cell<u32>,
    sketch: RefCell<SpaceSaving>,
}

impl Sampler {
    /// Count down one request; true for the one in `sample_rate` that is sampled.
    #[inline]
    pub fn tick(&self) -> bool {
        let left = self.countdown.get().saturating_sub(1);
        if left == 0 {
            self.countdown.set(self.rate);
            true
        } else {
            self.countdown.set(left);
            false
        }
    }

    /// Count the key of a sampled request (its first key; nothing for a key-less one).
    pub fn record_request(&self, args: &[&[u8]]) {
        if let Some(spec) = crate::command::lookup(args) {
            self.record(spec, args);
        }
    }

    /// [`Sampler::record_request`] for a request whose command `spec` is already known
    /// (a `[commands.custom]` command too).
    pub fn record(&self, spec: &crate::command::CommandSpec, args: &[&[u8]]) {
        let mut keys: SmallVec<[usize; 8]> = SmallVec::new();
        if spec.routing_args(args, &mut keys).is_err() {
            return;
        }
        if let Some(key) = keys.first().and_then(|&i| args.get(i)) {
            self.sketch.borrow_mut().add(key);
        }
    }
}

/// The Space-Saving algorithm (Metwally et al.): at most `capacity` counters; a new key when
/// all are taken replaces the smallest counter and inherits its count, so a key's count is
/// over-estimated by at most the smallest count, and any key with more than 1/capacity of
/// the samples is certainly kept.
#[derive(Debug)]
pub struct SpaceSaving {
    capacity: usize,
    counts: HashMap<Bytes, u64>,
}

impl SpaceSaving {
    /// An empty sketch of `capacity` counters.
    pub fn new(capacity: usize) -> SpaceSaving {
        SpaceSaving {
            capacity: capacity.max(1),
            counts: HashMap::with_capacity(capacity.max(1)),
        }
    }

    /// Count one occurrence of `key`.
    pub fn add(&mut self, key: &[u8]) {
        let key = key.get(..MAX_KEY).unwrap_or(key);
        if let Some(n) = self.counts.get_mut(key) {
            *n += 1;
            return;
        }
        let mut inherited = 0;
        if self.counts.len() >= self.capacity {
            // A linear scan of a few hundred counters, on a sampled request only.
            let smallest = self
                .counts
                .iter()
                .min_by_key(|(_, &n)| n)
                .map(|(k, &n)| (k.clone(), n));
            if let Some((k, n)) = smallest {
                self.counts.remove(&k);
                inherited = n;
            }
        }
        self.counts
            .insert(Bytes::copy_from_slice(key), inherited + 1);
    }

    /// The `n` largest counts, largest first, and an empty sketch for the next window.
    pub fn take_top(&mut self, n: usize) -> Vec<(Bytes, u64)> {
        let mut all: Vec<(Bytes, u64)> = self.counts.drain().collect();
        all.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        all.truncate(n);
        all
    }

    /// Counters in use.
    pub fn len(&self) -> usize {
        self.counts.len()
    }

    /// True when nothing was counted.
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn space_saving_keeps_the_heavy_hitter_in_bounded_memory() {
        let mut sketch = SpaceSaving::new(8);
        for i in 0..10_000u32 {
            sketch.add(format!("cold:{i}").as_bytes());
            if i % 4 == 0 {
                sketch.add(b"hot");
            }
        }
        assert!(sketch.len() <= 8);
        let top = sketch.take_top(3);
        assert_eq!(&top[0].0[..], b"hot");
        assert!(top[0].1 >= 2_500, "never under-counted: {}", top[0].1);
        assert!(sketch.is_empty(), "a new window starts empty");
    }

    #[test]
    fn sampler_counts_one_in_rate_and_workers_add_up() {
        let hot = HotKeys::new(2, 4, 2, Duration::from_secs(1));
        let (a, b) = (hot.sampler(), hot.sampler());
        let get = |k: &'static str| [&b"GET"[..], k.as_bytes()];
        let mut sampled = 0;
        for _ in 0..400 {
            if a.tick() {
                sampled += 1;
                a.record_request(&get(if sampled % 2 == 0 { "x" } else { "y" }));
            }
        }
        assert_eq!(sampled, 100);
        for _ in 0..40 {
            if b.tick() {
                b.record_request(&get("y"));
            }
        }
        // MSET's first key; PING has none.
        b.record_request(&[&b"MSET"[..], b"z", b"1"]);
        b.record_request(&[&b"PING"[..]]);
        hot.publish(0, &a);
        hot.publish(1, &b);
        let top = hot.top();
        assert_eq!(top.len(), 2);
        // x: 50 samples; y: 50 + 10 samples; × 4.
        assert_eq!(&top[0].key[..], b"y");
        assert_eq!(top[0].count, 240);
        assert_eq!(top[1].count, 200);
    }

    #[test]
    fn long_keys_are_bounded() {
        let mut sketch = SpaceSaving::new(4);
        sketch.add(&vec![b'k'; 1000]);
        assert_eq!(sketch.take_top(1)[0].0.len(), MAX_KEY);
    }
}
