//! A child process in its own process group, killed with all its descendants on drop.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct GroupChild {
    name: String,
    child: Child,
    log_path: PathBuf,
}

impl GroupChild {
    /// Starts `command` with stdout and stderr appended to `log_path`.
    pub fn spawn(name: &str, mut command: Command, log_path: &Path) -> std::io::Result<Self> {
        let log = File::create(log_path)?;
        command.stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log).process_group(0);
        let child = command.spawn()?;
        Ok(Self { name: name.to_string(), child, log_path: log_path.to_path_buf() })
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// `Some(description)` once the process has exited.
    pub fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            Ok(None) => None,
            Err(error) => Some(format!("unknown state: {error}")),
        }
    }

    /// The start and the last `max_bytes` of what the process printed, for error messages:
    /// the first error is usually at the start, the latest state at the end.
    pub fn log_tail(&self, max_bytes: usize) -> String {
        let text = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        if text.len() <= 2 * max_bytes {
            return text;
        }
        let boundary = |at: usize| (at..text.len()).find(|i| text.is_char_boundary(*i)).unwrap_or(text.len());
        let head_end = boundary(max_bytes);
        let tail_start = boundary(text.len() - max_bytes);
        format!("{}\n[…]\n{}", &text[..head_end], &text[tail_start..])
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// SIGTERM to the whole group, then SIGKILL if it has not gone within `grace`.
    pub fn stop(&mut self, grace: Duration) {
        if self.exited().is_some() {
            signal_group(self.child.id(), libc::SIGKILL);
            return;
        }
        signal_group(self.child.id(), libc::SIGTERM);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if self.exited().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // Descendants (workerd) may outlive the leader; the group kill reaches them too.
        signal_group(self.child.id(), libc::SIGKILL);
        let _ = self.child.wait();
    }

    /// Kills the group at once, as a crash would (for fault-injection tests).
    pub fn kill(&mut self) {
        signal_group(self.child.id(), libc::SIGKILL);
        let _ = self.child.wait();
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for GroupChild {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(2));
    }
}

fn signal_group(leader: u32, signal: libc::c_int) {
    let Ok(pid) = libc::pid_t::try_from(leader) else { return };
    // SAFETY: kill(2) with a negative pid signals the process group we created with
    // `process_group(0)`; it touches no memory of ours.
    unsafe {
        libc::kill(-pid, signal);
    }
}
