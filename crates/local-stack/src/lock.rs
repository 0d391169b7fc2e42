//! One program at a time per data folder: `cargo xtask dev` holds `<folder>/lock` for as long
//! as it runs, so a second one on the same folder stops before it touches the databases
//! (two servers on one SQLite file, one stack's logs truncated by the other, `stack.env`
//! rewritten under the first).
//!
//! The lock is `flock(2)` on an open file: the kernel drops it however the holder ends,
//! SIGKILL included, so a stale lock file never blocks the next start.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// The exclusive hold on one data folder (`<folder>/lock`, which holds the holder's process id
/// for the message a second program gets); released when dropped or when the process ends.
pub struct FolderLock {
    // Held open: closing it releases the lock.
    _file: File,
}

/// Why [`FolderLock::acquire`] did not take the folder.
#[derive(Debug, PartialEq, Eq)]
pub enum LockError {
    /// Another process holds the lock (its id, if it wrote one).
    Held { path: PathBuf, pid: Option<u32> },
    /// The lock file cannot be opened or locked.
    Io(String),
}

impl std::fmt::Display for LockError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Held { path, pid: Some(pid) } => write!(f, "{} is held by process {pid}", path.display()),
            Self::Held { path, pid: None } => write!(f, "{} is held by another process", path.display()),
            Self::Io(message) => f.write_str(message),
        }
    }
}

impl FolderLock {
    /// Takes `<folder>/lock` (creating the folder), or says who holds it; never waits.
    pub fn acquire(folder: &Path) -> Result<Self, LockError> {
        let describe = |path: &Path, e: std::io::Error| LockError::Io(format!("{}: {e}", path.display()));
        std::fs::create_dir_all(folder).map_err(|e| describe(folder, e))?;
        let path = folder.join("lock");
        // Not truncated on open: the holder's id must stay readable for the message.
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| describe(&path, e))?;
        // SAFETY: flock(2) on a descriptor we own; it touches no memory.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let error = std::io::Error::last_os_error();
            if error.raw_os_error() != Some(libc::EWOULDBLOCK) {
                return Err(describe(&path, error));
            }
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            return Err(LockError::Held { path, pid: text.trim().parse().ok() });
        }
        let written = file
            .set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| write!(file, "{}", std::process::id()))
            .and_then(|()| file.flush());
        written.map_err(|e| describe(&path, e))?;
        Ok(Self { _file: file })
    }
}
