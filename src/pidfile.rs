//! The pid file (`proxy.pid_file`, `--pid-file`): for init systems and scripts that find the
//! process by file. systemd needs none (`Type=simple`: it knows the pid it started).
//!
//! Order at start: [`check`] before anything is bound (refuse to run beside a live instance
//! named by the file), then [`PidFile::write`] once the listeners are bound, so the file never
//! names a process that is not yet serving. The file is removed when the [`PidFile`] is
//! dropped on a clean exit, if it still holds this process's pid. A file left by a crash names
//! a dead process and is simply replaced.

use std::io;
use std::path::{Path, PathBuf};

/// A written pid file, removed on drop.
#[derive(Debug)]
pub struct PidFile {
    path: PathBuf,
    pid: u32,
}

/// Refuse to start when the file at `path` names a live process other than this one. A
/// missing file, an unreadable pid or a dead process is fine (a crash leaves the file behind;
/// in a container a restarted proxy is pid 1 again, which is this process).
pub fn check(path: &Path) -> Result<(), String> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(format!("pid file {}: {e}", path.display())),
    };
    let Ok(pid) = text.trim().parse::<u32>() else {
        return Ok(());
    };
    if pid != std::process::id() && is_alive(pid) {
        return Err(format!(
            "pid file {} names a running process (pid {pid}): is slotgate already running? \
             Stop it, or remove the file if that process is not slotgate",
            path.display()
        ));
    }
    Ok(())
}

/// True when a process with this pid exists (signal 0 checks without sending anything).
fn is_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return false;
    }
    // SAFETY: kill with signal 0 sends nothing; it only asks the kernel whether `pid` exists
    // and may be signalled. No memory is shared with the call.
    let status = unsafe { libc::kill(pid, 0) };
    // EPERM: it exists but belongs to another user.
    status == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

impl PidFile {
    /// Write this process's pid to `path` (through a temporary file and a rename, so a reader
    /// never sees a half-written file).
    pub fn write(path: &Path) -> Result<PidFile, String> {
        let pid = std::process::id();
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(format!(".{pid}.tmp"));
        let tmp = PathBuf::from(tmp);
        std::fs::write(&tmp, format!("{pid}\n"))
            .and_then(|()| std::fs::rename(&tmp, path))
            .map_err(|e| {
                let _ = std::fs::remove_file(&tmp);
                format!("cannot write pid file {}: {e}", path.display())
            })?;
        Ok(PidFile {
            path: path.to_path_buf(),
            pid,
        })
    }

    /// Where the file is.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        // Another instance may have replaced it since: remove only our own.
        let ours = std::fs::read_to_string(&self.path)
            .is_ok_and(|text| text.trim().parse::<u32>().ok() == Some(self.pid));
        if ours {
            if let Err(e) = std::fs::remove_file(&self.path) {
                tracing::warn!("cannot remove pid file {}: {e}", self.path.display());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("slotgate-{name}-{}.pid", std::process::id()))
    }

    #[test]
    fn written_then_removed_and_stale_files_are_replaced() {
        let path = temp("unit");
        // A pid that cannot exist (above Linux's pid_max limit) is stale.
        std::fs::write(&path, "4194305\n").unwrap();
        check(&path).unwrap();
        let file = PidFile::write(&path).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            format!("{}\n", std::process::id())
        );
        // Our own pid does not block us (a container restart as pid 1).
        check(&path).unwrap();
        drop(file);
        assert!(!path.exists());
        check(&path).unwrap();
    }

    #[test]
    fn a_live_process_is_refused() {
        let path = temp("live");
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        std::fs::write(&path, format!("{}\n", child.id())).unwrap();
        let refused = check(&path);
        child.kill().unwrap();
        child.wait().unwrap();
        let message = refused.unwrap_err();
        assert!(message.contains("names a running process"), "{message}");
        check(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
    }
}
