//! The backstop that kills our children's process groups when this process ends without
//! stopping them itself: SIGKILL, an abort, a signal nobody handled.
//!
//! `Drop` and signal handlers only run while this process still runs code. So on the first
//! registration, a small guardian process is forked off. It holds the read end of a pipe whose
//! only write end stays in this process (close-on-exec, so no child inherits it); the kernel
//! closes that end however this process ends, and the guardian, reading end-of-file, sends
//! SIGTERM to every registered group, waits up to [`GRACE`] for them to go, sends SIGKILL to
//! what is left, and exits.
//!
//! The guardian is in a process group of its own and ignores the terminal's and a process
//! manager's signals, so the Ctrl-C or SIGTERM that ends this process does not end it first.
//! It runs only async-signal-safe calls (`read`, `kill`, `nanosleep`, `_exit`) on memory it
//! was forked with: after `fork` in a threaded process nothing else is safe.

use std::io::Write;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Mutex;
use std::time::Duration;

/// How long the groups get between SIGTERM and SIGKILL, here and in [`crate::process`].
pub const GRACE: Duration = Duration::from_secs(2);

/// Registered groups the guardian can hold; more are stopped by `Drop` only.
const MAX_GROUPS: usize = 1024;

struct Guardian {
    /// `None` once starting one failed (reported once; `Drop` and signal handling still work).
    pipe: Option<std::io::PipeWriter>,
}

static GUARDIAN: Mutex<Option<Guardian>> = Mutex::new(None);

/// From now on, the guardian kills group `pgid` if this process ends before [`forget`].
pub fn watch(pgid: libc::pid_t) {
    send(pgid);
}

/// The group is gone (or is being stopped by us): the guardian no longer touches it, so a
/// later process that happens to get the same id is safe.
pub fn forget(pgid: libc::pid_t) {
    send(-pgid);
}

fn send(message: libc::pid_t) {
    let mut guardian = GUARDIAN.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let guardian = guardian.get_or_insert_with(|| match start() {
        Ok(pipe) => Guardian { pipe: Some(pipe) },
        Err(error) => {
            eprintln!("local-stack: cannot start the guardian process ({error}); children are stopped on drop only");
            Guardian { pipe: None }
        }
    });
    if let Some(pipe) = &mut guardian.pipe {
        // Four bytes are far below PIPE_BUF, so the write is atomic. If the guardian died,
        // the write fails (Rust ignores SIGPIPE) and there is nothing better to do.
        let _ = pipe.write_all(&message.to_le_bytes());
    }
}

fn start() -> std::io::Result<std::io::PipeWriter> {
    // Both ends are close-on-exec: children we `exec` never hold the write end open.
    let (reader, writer) = std::io::pipe()?;
    let read_fd = reader.as_raw_fd();
    // SAFETY: the child branch calls only async-signal-safe functions and never returns;
    // the parent branch only inspects the result.
    match unsafe { libc::fork() } {
        -1 => Err(std::io::Error::last_os_error()),
        // SAFETY: we are the freshly forked child; `guardian_main` never returns.
        0 => unsafe { guardian_main(read_fd) },
        _guardian_pid => {
            // The guardian outlives us only to clean up; its exit status matters to nobody.
            drop(reader);
            Ok(writer)
        }
    }
}

/// The guardian's whole life. Only async-signal-safe calls, no allocation, no panics.
///
/// # Safety
/// Must run in a child right after `fork`, with `read_fd` the pipe's read end.
unsafe fn guardian_main(read_fd: RawFd) -> ! {
    // SAFETY (whole body): plain system calls on descriptors and ids we own; the buffers are
    // on this stack.
    unsafe {
        libc::setpgid(0, 0);
        for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT, libc::SIGPIPE, libc::SIGTSTP] {
            libc::signal(signal, libc::SIG_IGN);
        }
        // Hold nothing of the parent's open: not its stdout (a caller reading it to the end
        // would wait for us), not the pipe's write end (we would never see end-of-file).
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
        if null >= 0 {
            libc::dup2(null, 0);
            libc::dup2(null, 1);
            libc::dup2(null, 2);
        }
        close_all_but(read_fd);

        let mut groups: [libc::pid_t; MAX_GROUPS] = [0; MAX_GROUPS];
        let mut count = 0usize;
        let mut message = [0u8; 4];
        let mut filled = 0usize;
        loop {
            let rest = message.len() - filled;
            let read = libc::read(read_fd, message.as_mut_ptr().add(filled).cast(), rest);
            if read > 0 {
                filled += read.unsigned_abs();
                if filled < message.len() {
                    continue;
                }
                filled = 0;
                let value = libc::pid_t::from_le_bytes(message);
                if value > 0 && count < MAX_GROUPS {
                    groups[count] = value;
                    count += 1;
                } else if value < 0 {
                    let gone = value.wrapping_neg();
                    let mut index = 0;
                    while index < count {
                        if groups[index] == gone {
                            count -= 1;
                            groups[index] = groups[count];
                        } else {
                            index += 1;
                        }
                    }
                }
            } else if read < 0 && *errno() == libc::EINTR {
                continue;
            } else {
                // End of file: the parent is gone, however it ended.
                break;
            }
        }

        for group in &groups[..count] {
            libc::kill(-*group, libc::SIGTERM);
        }
        let pause = libc::timespec { tv_sec: 0, tv_nsec: 50_000_000 };
        let mut waited_ms = 0u128;
        while waited_ms < GRACE.as_millis() && groups[..count].iter().any(|group| libc::kill(-*group, 0) == 0) {
            libc::nanosleep(&pause, std::ptr::null_mut());
            waited_ms += 50;
        }
        for group in &groups[..count] {
            libc::kill(-*group, libc::SIGKILL);
        }
        libc::_exit(0)
    }
}

/// Closes every descriptor above 2 but `keep`.
unsafe fn close_all_but(keep: RawFd) {
    let keep = libc::c_uint::try_from(keep).unwrap_or(0);
    // SAFETY: closing descriptors is async-signal-safe; nothing in this process uses them again.
    unsafe {
        #[cfg(target_os = "linux")]
        {
            let below = keep.saturating_sub(1);
            let done = (keep <= 3 || libc::close_range(3, below, 0) == 0)
                && libc::close_range(keep.saturating_add(1), libc::c_uint::MAX, 0) == 0;
            if done {
                return;
            }
        }
        let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        let highest = if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
            limit.rlim_cur.min(65_536) as libc::c_int
        } else {
            4096
        };
        for fd in 3..highest {
            if fd as libc::c_uint != keep {
                libc::close(fd);
            }
        }
    }
}

#[cfg(target_os = "linux")]
unsafe fn errno() -> &'static mut libc::c_int {
    // SAFETY: the thread's errno location lives as long as the thread.
    unsafe { &mut *libc::__errno_location() }
}

#[cfg(not(target_os = "linux"))]
unsafe fn errno() -> &'static mut libc::c_int {
    // SAFETY: as above (BSD and macOS name it `__error`).
    unsafe { &mut *libc::__error() }
}
