//! The working directory of a cluster or server: either one the caller gave us (kept), or a fresh
//! one under `std::env::temp_dir()` that we create and remove on drop.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use super::error::LocalRedisError;

/// Distinguishes directories created by one process.
static SEQ: AtomicU32 = AtomicU32::new(0);

/// A directory that is removed on drop when we created it.
#[derive(Debug)]
pub(crate) struct ScratchDir {
    path: PathBuf,
    owned: bool,
}

impl ScratchDir {
    /// Uses `given` (created if missing, kept on drop), or creates a fresh temp directory whose
    /// name starts with `prefix` (removed on drop).
    pub(crate) fn new(given: Option<PathBuf>, prefix: &str) -> Result<ScratchDir, LocalRedisError> {
        if let Some(path) = given {
            std::fs::create_dir_all(&path)
                .map_err(|e| LocalRedisError::io(format!("cannot create {}", path.display()), e))?;
            return Ok(ScratchDir { path, owned: false });
        }
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let pid = std::process::id();
        loop {
            let seq = SEQ.fetch_add(1, Ordering::Relaxed);
            let path = std::env::temp_dir().join(format!("{prefix}-{pid}-{seq}-{nanos:x}"));
            // `create_dir` (not `_all`) fails on an existing directory, so we never adopt and
            // later delete a directory that is not ours.
            match std::fs::create_dir(&path) {
                Ok(()) => return Ok(ScratchDir { path, owned: true }),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => {
                    return Err(LocalRedisError::io(
                        format!("cannot create {}", path.display()),
                        e,
                    ))
                }
            }
        }
    }

    /// The directory.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Creates (if needed) and returns the subdirectory `name`.
    pub(crate) fn subdir(&self, name: &str) -> Result<PathBuf, LocalRedisError> {
        let dir = self.path.join(name);
        std::fs::create_dir_all(&dir)
            .map_err(|e| LocalRedisError::io(format!("cannot create {}", dir.display()), e))?;
        Ok(dir)
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if self.owned {
            // Best effort: a leftover temp dir is harmless, a panic in drop is not.
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}
