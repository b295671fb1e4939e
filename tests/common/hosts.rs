//! Names resolved by the system resolver for real: tests add them to `/etc/hosts` (pointing at
//! 127.0.0.x addresses), move them, give them several addresses or take them away, as DNS does
//! for a Kubernetes pod or a headless Service.
//!
//! Editing `/etc/hosts` needs root (CI containers run as root): when it is not writable,
//! [`Hosts::open`] says `SKIPPED` and the test returns. The edits only ever append lines
//! (marked `# slotgate-test`) after the file's own content, which stays byte for byte what it
//! was, so lookups of other names (`localhost`) by tests running at the same time are not
//! disturbed; the lines are removed on drop (and stale ones left by a killed run are removed
//! first). One test at a time in this process holds the file.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::sync::{Mutex, MutexGuard};

const HOSTS: &str = "/etc/hosts";
/// Ends every line this module adds.
const MARK: &str = "# slotgate-test";

/// The test's names in `/etc/hosts`, removed on drop. One at a time in this process.
pub struct Hosts {
    file: File,
    /// Length of the file's own content: our lines start here.
    base: u64,
    /// Length the file is cut back to on drop.
    restore: u64,
    /// Each name's addresses, one line each.
    names: BTreeMap<String, Vec<String>>,
    _one_at_a_time: MutexGuard<'static, ()>,
}

impl Hosts {
    /// `None` (after saying why) when `/etc/hosts` cannot be written here.
    pub fn open(test: &str) -> Option<Hosts> {
        static LOCK: Mutex<()> = Mutex::new(());
        let guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let file = match OpenOptions::new().read(true).write(true).open(HOSTS) {
            Ok(file) => file,
            Err(e) => {
                eprintln!("SKIPPED {test}: {HOSTS} is not writable here ({e}); run as root");
                return None;
            }
        };
        let mut text = String::new();
        (&file).read_to_string(&mut text).expect("read /etc/hosts");
        // Our lines from a run that was killed: cut them off (they are last).
        let base = text
            .lines()
            .position(|l| l.ends_with(MARK))
            .map(|first| text.lines().take(first).map(|l| l.len() + 1).sum::<usize>())
            .unwrap_or(text.len());
        let mut hosts = Hosts {
            file,
            base: base as u64,
            restore: base as u64,
            names: BTreeMap::new(),
            _one_at_a_time: guard,
        };
        if !text.ends_with('\n') && base == text.len() && !text.is_empty() {
            // Keep the file's last line whole: our first line starts on a line of its own.
            hosts.file.write_all_at(b"\n", hosts.base).unwrap();
            hosts.base += 1;
        }
        hosts.write();
        Some(hosts)
    }

    /// `name` resolves to `ip` from now on.
    pub fn set(&mut self, name: &str, ip: &str) {
        self.set_all(name, &[ip]);
    }

    /// `name` resolves to every one of `ips` from now on (one line each, and `getaddrinfo`
    /// gives them all: `tests/it/fleet_dns.rs` relies on it); none: it does not resolve.
    pub fn set_all(&mut self, name: &str, ips: &[&str]) {
        let ips: Vec<String> = ips.iter().map(|ip| ip.to_string()).collect();
        if ips.is_empty() {
            self.names.remove(name);
        } else {
            self.names.insert(name.to_string(), ips);
        }
        self.write();
    }

    fn write(&self) {
        let block: String = self
            .names
            .iter()
            .flat_map(|(name, ips)| ips.iter().map(move |ip| format!("{ip} {name} {MARK}\n")))
            .collect();
        self.file
            .write_all_at(block.as_bytes(), self.base)
            .expect("write /etc/hosts");
        self.file
            .set_len(self.base + block.len() as u64)
            .expect("truncate /etc/hosts");
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        let _ = self.file.set_len(self.restore);
    }
}
