//! A container's PID 1 after it handed itself over: the container lives as long as its PID 1,
//! so the old process does not exit; it stays as a small init that waits for the successor,
//! passes it the signals the container gets (SIGTERM, SIGINT, SIGHUP), reaps orphans, and
//! exits when the successor has exited — 0 when it exited cleanly (its pid file removed), 1
//! otherwise.
//!
//! Which process is the successor: the one the pid file (`proxy.pid_file`) names, re-read on
//! every tick, so later upgrades (the successor handing over to its own successor, which
//! rewrites the file first) are followed; without a pid file, only the first successor, whose
//! pid came with its `Hello`.

use std::path::Path;
use std::time::Duration;

/// How often the successor is looked for.
const TICK: Duration = Duration::from_millis(100);

/// Wait for the successor `first` (and those after it, by `pid_file`), passing it each
/// signal `next_signal` returns (it waits up to the given time for one), and reaping every
/// exited child when `reap_children` (PID 1 inherits the orphans). `Ok` when the last
/// successor exited cleanly.
pub fn wait_for_successor(
    first: u32,
    pid_file: Option<&Path>,
    reap_children: bool,
    mut next_signal: impl FnMut(Duration) -> Option<libc::c_int>,
) -> Result<(), String> {
    let mut current = first;
    // Exit status of the successor, when it was our child (reparented to PID 1) and reaped.
    let mut reaped_clean: Option<bool> = None;
    loop {
        if let Some((pid, clean)) = reap_children.then(reap).flatten() {
            if pid == current {
                reaped_clean = Some(clean);
            }
            continue;
        }
        if let Some(named) = pid_file.and_then(read_pid) {
            if named != current && alive(named) {
                tracing::info!(successor = named, "upgrade: following the next successor");
                current = named;
                reaped_clean = None;
            }
        }
        if !alive(current) {
            let clean = match (pid_file, reaped_clean) {
                // A clean exit removes the pid file (or leaves it to another live process).
                (Some(file), _) => read_pid(file).is_none_or(|pid| pid != current),
                (None, clean) => clean.unwrap_or(true),
            };
            return if clean {
                tracing::info!(
                    successor = current,
                    "upgrade: the successor exited; exiting"
                );
                Ok(())
            } else {
                Err(format!(
                    "the successor (pid {current}) did not exit cleanly"
                ))
            };
        }
        if let Some(signal) = next_signal(TICK) {
            // SAFETY: kill(2) sends `signal` to the successor's pid; no memory is involved.
            unsafe { libc::kill(current as libc::pid_t, signal) };
        }
    }
}

/// One exited child, if any: its pid and whether it exited with status 0.
fn reap() -> Option<(u32, bool)> {
    let mut status = 0;
    // SAFETY: waitpid with WNOHANG writes only to `status`.
    let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
    (pid > 0).then(|| {
        let clean = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
        (pid as u32, clean)
    })
}

/// The pid a pid file names.
fn read_pid(file: &Path) -> Option<u32> {
    std::fs::read_to_string(file).ok()?.trim().parse().ok()
}

/// True while `pid` exists (a zombie counts until reaped).
fn alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 only checks that the process exists.
    pid > 0
        && (unsafe { libc::kill(pid, 0) } == 0
            || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clean_exit_is_one_that_removed_its_pid_file_and_signals_go_to_the_successor() {
        let file = std::env::temp_dir().join(format!("slotgate-init-{}.pid", std::process::id()));
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id();
        std::fs::write(&file, format!("{pid}\n")).unwrap();
        let mut sent = false;
        // The container is told to stop: the successor gets the signal (once), dies of it
        // and, not having removed its pid file, did not exit cleanly. (The test reaps it
        // itself: reaping every child would take other tests' children.)
        let waited = std::thread::scope(|s| {
            let waiter = s.spawn(|| {
                wait_for_successor(pid, Some(&file), false, |tick| {
                    std::thread::sleep(tick);
                    (!std::mem::replace(&mut sent, true)).then_some(libc::SIGTERM)
                })
            });
            let status = child.wait().unwrap();
            assert!(!status.success());
            waiter.join().unwrap()
        });
        assert!(waited.is_err(), "{waited:?}");
        std::fs::remove_file(&file).unwrap();
        assert_eq!(
            wait_for_successor(pid, Some(&file), false, |_| None),
            Ok(())
        );
    }
}
