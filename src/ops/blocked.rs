//! Blocking commands under way, by the proxy client that sent them: the node running it, the
//! node's id for that dedicated connection, and the worker it runs on. `CLIENT UNBLOCK id`
//! from any worker reaches it through here, and so does a migration phase change, which
//! unblocks its worker's commands so they run again by the new routing. Touched only by
//! blocking commands (a lock per command, never per ordinary request).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// The registry.
#[derive(Debug, Default)]
pub struct Blocked {
    entries: Mutex<HashMap<u64, Entry>>,
}

#[derive(Debug)]
struct Entry {
    node: Arc<str>,
    node_id: i64,
    worker: usize,
    /// Raised when the proxy itself unblocks the command (a phase change).
    by_proxy: Arc<AtomicBool>,
}

/// One blocking command's entry, removed when dropped (the command returned).
#[derive(Debug)]
pub struct BlockedEntry {
    registry: Arc<Blocked>,
    client: u64,
    by_proxy: Arc<AtomicBool>,
}

impl BlockedEntry {
    /// True when the proxy unblocked the command (a phase change): its `UNBLOCKED` error is
    /// not the client's, and the command runs again.
    pub fn unblocked_by_proxy(&self) -> bool {
        self.by_proxy.load(Ordering::Acquire)
    }
}

impl Blocked {
    /// Proxy client `client`, served by worker `worker`, is blocked on `node`, which calls the
    /// connection `node_id`.
    pub fn register(
        self: &Arc<Self>,
        client: u64,
        worker: usize,
        node: &Arc<str>,
        node_id: i64,
    ) -> BlockedEntry {
        let by_proxy = Arc::new(AtomicBool::new(false));
        let entry = Entry {
            node: Arc::clone(node),
            node_id,
            worker,
            by_proxy: Arc::clone(&by_proxy),
        };
        self.lock().insert(client, entry);
        BlockedEntry {
            registry: Arc::clone(self),
            client,
            by_proxy,
        }
    }

    /// Where proxy client `client` is blocked, if it is: the node and the node's client id.
    pub fn get(&self, client: u64) -> Option<(Arc<str>, i64)> {
        self.lock()
            .get(&client)
            .map(|e| (Arc::clone(&e.node), e.node_id))
    }

    /// The commands worker `worker` has blocked, each marked as unblocked by the proxy: the
    /// nodes and node ids to send `CLIENT UNBLOCK … ERROR` to.
    pub fn unblock_worker(&self, worker: usize) -> Vec<(Arc<str>, i64)> {
        self.lock()
            .values()
            .filter(|e| e.worker == worker)
            .map(|e| {
                e.by_proxy.store(true, Ordering::Release);
                (Arc::clone(&e.node), e.node_id)
            })
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Entry>> {
        // Every update is one insert or remove: a panic cannot leave it half-written.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for BlockedEntry {
    fn drop(&mut self) {
        self.registry.lock().remove(&self.client);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_lasts_as_long_as_its_command() {
        let blocked = Arc::new(Blocked::default());
        let node: Arc<str> = "127.0.0.1:7000".into();
        let entry = blocked.register(7, 0, &node, 42);
        assert_eq!(blocked.get(7), Some((Arc::clone(&node), 42)));
        assert_eq!(blocked.get(8), None);
        drop(entry);
        assert_eq!(blocked.get(7), None);
    }

    #[test]
    fn a_worker_s_commands_are_unblocked_by_the_proxy_and_marked() {
        let blocked = Arc::new(Blocked::default());
        let node: Arc<str> = "127.0.0.1:7000".into();
        let mine = blocked.register(1, 0, &node, 10);
        let other = blocked.register(2, 1, &node, 20);
        assert_eq!(blocked.unblock_worker(0), vec![(Arc::clone(&node), 10)]);
        assert!(mine.unblocked_by_proxy());
        assert!(!other.unblocked_by_proxy());
    }
}
