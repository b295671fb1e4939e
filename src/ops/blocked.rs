//! Blocking commands under way, by the proxy client that sent them: the node running it and
//! the node's id for that dedicated connection, so `CLIENT UNBLOCK id` from any worker can
//! unblock it there. Touched only by blocking commands (a lock per command, never per
//! ordinary request).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The registry.
#[derive(Debug, Default)]
pub struct Blocked {
    entries: Mutex<HashMap<u64, (Arc<str>, i64)>>,
}

/// One blocking command's entry, removed when dropped (the command returned).
#[derive(Debug)]
pub struct BlockedEntry {
    registry: Arc<Blocked>,
    client: u64,
}

impl Blocked {
    /// Proxy client `client` is blocked on `node`, which calls the connection `node_id`.
    pub fn register(self: &Arc<Self>, client: u64, node: &Arc<str>, node_id: i64) -> BlockedEntry {
        self.lock().insert(client, (Arc::clone(node), node_id));
        BlockedEntry {
            registry: Arc::clone(self),
            client,
        }
    }

    /// Where proxy client `client` is blocked, if it is: the node and the node's client id.
    pub fn get(&self, client: u64) -> Option<(Arc<str>, i64)> {
        self.lock().get(&client).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, (Arc<str>, i64)>> {
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
        let entry = blocked.register(7, &node, 42);
        assert_eq!(blocked.get(7), Some((Arc::clone(&node), 42)));
        assert_eq!(blocked.get(8), None);
        drop(entry);
        assert_eq!(blocked.get(7), None);
    }
}
