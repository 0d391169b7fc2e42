//! Child processes that never outlive us.
//!
//! Every child runs in a process group of its own, so stopping it reaches what it started too
//! (wrangler's workerd and esbuild, cargo's test binaries). A group is stopped when its
//! [`GroupChild`] drops (also while a panic unwinds), by [`stop_all`] when a signal ends
//! the program ([`stop_children_on_signals`]), and by the [`guardian`](crate::guardian)
//! when this process ends in a way no code of ours sees (SIGKILL, an abort).

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::guardian;

pub use crate::guardian::GRACE;

/// Where a child's stdout and stderr go.
enum Output {
    /// Appended to a file: servers whose output only matters when they fail.
    Log(PathBuf),
    /// Our own stdout and stderr: what the developer watches (`wrangler dev`, nested cargo).
    Inherited,
    /// Pipes the caller reads.
    Captured,
}

pub struct GroupChild {
    name: String,
    child: Child,
    output: Output,
    /// `true` until the group was stopped (and is watched by the guardian until then).
    registered: bool,
}

/// Groups started and not yet stopped, for [`stop_all`].
static RUNNING: Mutex<Vec<libc::pid_t>> = Mutex::new(Vec::new());
static STOPPING: AtomicBool = AtomicBool::new(false);

impl GroupChild {
    /// Starts `command` with stdout and stderr appended to `log_path`.
    pub fn spawn(name: &str, mut command: Command, log_path: &Path) -> std::io::Result<Self> {
        // The path in the error: "Read-only file system" alone does not say where.
        let log = File::create(log_path)
            .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", log_path.display())))?;
        command.stdout(log.try_clone()?).stderr(log);
        Self::start(name, &mut command, Output::Log(log_path.to_path_buf()))
    }

    /// Starts `command` writing to our own stdout and stderr. Its stdin is empty: a process
    /// outside the terminal's foreground group must not read the terminal.
    pub fn spawn_inheriting(name: &str, command: &mut Command) -> std::io::Result<Self> {
        Self::start(name, command, Output::Inherited)
    }

    fn start(name: &str, command: &mut Command, output: Output) -> std::io::Result<Self> {
        command.stdin(Stdio::null()).process_group(0);
        // Registered under the lock, so `stop_all` never misses a group started meanwhile.
        let mut running = RUNNING.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let child = command.spawn()?;
        let pgid = pid_of(&child);
        guardian::watch(pgid);
        running.push(pgid);
        Ok(Self { name: name.to_string(), child, output, registered: true })
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

    /// Waits for the process to end by itself; then stops what it left in its group.
    pub fn wait(&mut self) -> std::io::Result<ExitStatus> {
        let status = self.child.wait();
        self.stop(GRACE);
        status
    }

    /// The start and the last `max_bytes` of what the process printed, for error messages:
    /// the first error is usually at the start, the latest state at the end.
    pub fn log_tail(&self, max_bytes: usize) -> String {
        let Output::Log(path) = &self.output else { return String::new() };
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.len() <= 2 * max_bytes {
            return text;
        }
        let boundary = |at: usize| (at..text.len()).find(|i| text.is_char_boundary(*i)).unwrap_or(text.len());
        let head_end = boundary(max_bytes);
        let tail_start = boundary(text.len() - max_bytes);
        format!("{}\n[…]\n{}", &text[..head_end], &text[tail_start..])
    }

    /// The log file, for children started with [`GroupChild::spawn`].
    pub fn log_path(&self) -> Option<&Path> {
        match &self.output {
            Output::Log(path) => Some(path),
            Output::Inherited | Output::Captured => None,
        }
    }

    /// SIGTERM to the whole group, then SIGKILL to what is left after `grace`.
    pub fn stop(&mut self, grace: Duration) {
        // Stopped before: the group is gone, and its id may belong to another process by now.
        if !self.registered {
            return;
        }
        let pgid = pid_of(&self.child);
        if self.exited().is_none() {
            signal_group(pgid, libc::SIGTERM);
            let deadline = Instant::now() + grace;
            while Instant::now() < deadline && self.exited().is_none() {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        // Descendants (workerd) may outlive the leader; the group kill reaches them too.
        signal_group(pgid, libc::SIGKILL);
        let _ = self.child.wait();
        self.unregister();
    }

    /// Kills the group at once, as a crash would (for fault-injection tests).
    pub fn kill(&mut self) {
        if !self.registered {
            return;
        }
        signal_group(pid_of(&self.child), libc::SIGKILL);
        let _ = self.child.wait();
        self.unregister();
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    fn unregister(&mut self) {
        if std::mem::take(&mut self.registered) {
            let pgid = pid_of(&self.child);
            let mut running = RUNNING.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            running.retain(|group| *group != pgid);
            guardian::forget(pgid);
        }
    }
}

impl Drop for GroupChild {
    fn drop(&mut self) {
        self.stop(GRACE);
    }
}

/// Runs `command` to its end in its own group, with our stdout and stderr; a signal that ends
/// us ends it too. The error names the program and its arguments, never its environment.
pub fn run(command: &mut Command) -> Result<(), String> {
    let description = describe(command);
    let mut child =
        GroupChild::spawn_inheriting(&description, command).map_err(|e| format!("cannot run {description}: {e}"))?;
    let status = child.wait().map_err(|e| format!("{description}: {e}"))?;
    if status.success() { Ok(()) } else { Err(format!("{description} failed: {status}")) }
}

/// Runs `command` to its end in its own group and returns what it printed.
pub fn output(command: &mut Command) -> Result<std::process::Output, String> {
    let description = describe(command);
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = GroupChild::start(&description, command, Output::Captured)
        .map_err(|e| format!("cannot run {description}: {e}"))?;
    // Read both pipes to the end (in threads, so a full stderr cannot block stdout), then reap.
    let read = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            bytes
        })
    };
    let stdout = read(child.child.stdout.take().map(|pipe| Box::new(pipe) as Box<dyn std::io::Read + Send>));
    let stderr = read(child.child.stderr.take().map(|pipe| Box::new(pipe) as Box<dyn std::io::Read + Send>));
    let status = child.wait().map_err(|e| format!("{description}: {e}"))?;
    Ok(std::process::Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    })
}

/// `program arg arg …` for messages. Secrets never travel as arguments (they go through
/// files and the environment), and the environment is left out.
pub fn describe(command: &Command) -> String {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|part| part.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Stops every group started and not yet stopped: SIGTERM, up to `grace`, SIGKILL.
pub fn stop_all(grace: Duration) {
    let groups: Vec<libc::pid_t> = RUNNING.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
    for group in &groups {
        signal_group(*group, libc::SIGTERM);
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline && groups.iter().any(|group| group_alive(*group)) {
        std::thread::sleep(Duration::from_millis(20));
    }
    for group in &groups {
        signal_group(*group, libc::SIGKILL);
        guardian::forget(*group);
    }
}

/// `true` once a signal handled by [`stop_children_on_signals`] arrived: the program is
/// stopping its children and about to exit, so a child's end is no failure to report.
pub fn stopping() -> bool {
    STOPPING.load(Ordering::SeqCst)
}

/// On SIGINT, SIGTERM or SIGHUP: [`stop_all`], then exit with what `stopped(signal)` returns
/// (it may say what happened). What a terminal's Ctrl-C, a process manager or a closed
/// terminal sends ends every child first.
///
/// The program exits even if `stopped` panics (128 + the signal's number then): after a closed
/// terminal every write to it fails, and `eprintln!` panics on that. Without this the signal
/// thread would die before `exit`, and a program whose other threads wait for it to exit
/// (`cargo xtask` parks once [`stopping`]) would stay behind, deaf to every later SIGTERM.
pub fn stop_children_on_signals(stopped: impl FnOnce(libc::c_int) -> i32 + Send + 'static) -> std::io::Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])?;
    std::thread::Builder::new().name("signals".into()).spawn(move || {
        if let Some(signal) = signals.forever().next() {
            STOPPING.store(true, Ordering::SeqCst);
            stop_all(GRACE);
            let code =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || stopped(signal))).unwrap_or(128 + signal);
            std::process::exit(code);
        }
    })?;
    Ok(())
}

/// The name of a signal for messages (`SIGINT`).
pub fn signal_name(signal: libc::c_int) -> String {
    signal_hook::low_level::signal_name(signal).map_or_else(|| format!("signal {signal}"), str::to_string)
}

fn pid_of(child: &Child) -> libc::pid_t {
    libc::pid_t::try_from(child.id()).unwrap_or(libc::pid_t::MAX)
}

/// Whether any process of the group still runs. A leader that exited is reaped here (it is
/// our child; a zombie would count as alive): only at the end, when nobody else waits for it.
fn group_alive(group: libc::pid_t) -> bool {
    // SAFETY: waitpid(2) and kill(2) on an id we created; they touch only `status`.
    unsafe {
        let mut status = 0;
        libc::waitpid(group, &mut status, libc::WNOHANG);
        libc::kill(-group, 0) == 0
    }
}

fn signal_group(leader: libc::pid_t, signal: libc::c_int) {
    // SAFETY: kill(2) with a negative pid signals the process group we created with
    // `process_group(0)`; it touches no memory of ours.
    unsafe {
        libc::kill(-leader, signal);
    }
}
