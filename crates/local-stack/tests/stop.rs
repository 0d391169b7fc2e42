//! However a program that started process groups through local-stack ends — SIGKILL, SIGTERM,
//! Ctrl-C, SIGHUP, an abort, a panic, or a signal it handles — every process it started is
//! gone within 5 s. The program is this test binary itself, run again with an ignored test
//! that starts a group of two processes (a shell and the `sleep` it starts) and then waits.
#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Write};
use std::os::fd::FromRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use local_stack::inspect;
use local_stack::process::{GroupChild, signal_name, stop_children_on_signals};

const HOLDER: &str = "holder_of_a_process_group";
const MODE: &str = "LOCAL_STACK_TEST_HOLDER";

/// Not a test of its own: the program the other tests end (it returns at once unless they
/// started it). Prints `started <pid>` once its group runs.
#[test]
#[ignore]
fn holder_of_a_process_group() {
    let Ok(mode) = std::env::var(MODE) else { return };
    if mode == "handles-signals" {
        stop_children_on_signals(|signal| 128 + signal).unwrap();
    }
    if mode == "reports-signals" {
        // As `cargo xtask` does: say what happened on the way out.
        stop_children_on_signals(|signal| {
            eprintln!("stopped by {}", signal_name(signal));
            128 + signal
        })
        .unwrap();
    }
    let mut sleepers = Command::new("sh");
    sleepers.args(["-c", "sleep 600 & sleep 600"]);
    let group = GroupChild::spawn_inheriting("sleepers", &mut sleepers).unwrap();
    // libtest has printed `test … ... ` without a line break: start a line of our own.
    println!("\nstarted {}", group.id());
    std::io::stdout().flush().unwrap();
    if mode == "panics" {
        std::thread::sleep(Duration::from_millis(500));
        panic!("a panic while the group runs");
    }
    std::thread::sleep(Duration::from_secs(600));
}

/// Starts the holder in a process group of its own (so a "Ctrl-C" to it misses this test),
/// waits until its group runs, and returns it with every process it started.
// The caller waits for the holder; a failed start panics and fails the test anyway.
fn start_holder(mode: &str) -> (Child, Vec<inspect::Process>) {
    start_holder_with_stderr(mode, Stdio::null())
}

#[allow(clippy::zombie_processes)]
fn start_holder_with_stderr(mode: &str, stderr: Stdio) -> (Child, Vec<inspect::Process>) {
    let mut holder = Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", HOLDER, "--nocapture", "--test-threads=1"])
        .env(MODE, mode)
        .stdout(Stdio::piped())
        .stderr(stderr)
        .process_group(0)
        .spawn()
        .unwrap();
    let stdout = BufReader::new(holder.stdout.take().unwrap());
    let leader: u32 = stdout
        .lines()
        .map_while(Result::ok)
        .find_map(|line| line.strip_prefix("started ").and_then(|pid| pid.parse().ok()))
        .expect("the holder never started its group");
    // The shell starts its `sleep`s a moment later: the group runs once both are `sleep`, not
    // a fork of the shell that has yet to run it (one CI run on a machine saturated by an 8 GB
    // copy signalled such forks, which sat in uninterruptible sleep past the 5 s allowance
    // without having run at all).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let tree = inspect::tree(holder.id());
        // The shell and both sleeps (the tree also holds the holder and its guardian).
        let group = tree.iter().filter(|p| p.group == leader).count();
        let sleeping = tree.iter().filter(|p| p.group == leader && p.command_line == "sleep 600").count();
        if (group >= 3 && sleeping == 2) || Instant::now() > deadline {
            assert_eq!((group, sleeping), (3, 2), "{tree:#?}");
            return (holder, tree);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn signal(pid: i32, signal: libc::c_int) {
    // SAFETY: kill(2) touches no memory of ours.
    assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
}

fn assert_nothing_survives(mut holder: Child, started: &[inspect::Process]) -> std::process::ExitStatus {
    let status = holder.wait().unwrap();
    let survivors = inspect::survivors_after(started, Duration::from_secs(5));
    assert!(survivors.is_empty(), "still running 5 s after the holder ended ({status}): {survivors:#?}");
    status
}

fn ended_by_signal(mode: &str, to_group: bool, number: libc::c_int) -> std::process::ExitStatus {
    let (holder, started) = start_holder(mode);
    let pid = i32::try_from(holder.id()).unwrap();
    signal(if to_group { -pid } else { pid }, number);
    assert_nothing_survives(holder, &started)
}

#[test]
fn killed_outright() {
    ended_by_signal("waits", false, libc::SIGKILL);
}

#[test]
fn terminated_without_a_handler() {
    ended_by_signal("waits", false, libc::SIGTERM);
}

#[test]
fn interrupted_from_a_terminal() {
    // A terminal's Ctrl-C goes to the whole foreground group.
    ended_by_signal("waits", true, libc::SIGINT);
}

#[test]
fn hung_up() {
    ended_by_signal("waits", false, libc::SIGHUP);
}

#[test]
fn aborted() {
    ended_by_signal("waits", false, libc::SIGABRT);
}

#[test]
fn panicked() {
    let (holder, started) = start_holder("panics");
    let status = assert_nothing_survives(holder, &started);
    assert_eq!(status.code(), Some(101), "libtest reports the panic");
}

#[test]
fn handled_signals_stop_the_groups_then_exit() {
    for number in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        let status = ended_by_signal("handles-signals", false, number);
        assert_eq!(status.code(), Some(128 + number), "{status}");
    }
}

/// The terminal window `cargo xtask dev` ran in was closed: the kernel hangs the terminal up,
/// so every later write to it fails (EIO), and the program gets SIGHUP. Saying so on the way
/// out must not keep it from exiting (a failed `eprintln!` panics the signal thread).
#[test]
fn terminal_closed() {
    let (mut master, mut slave) = (0, 0);
    // SAFETY: openpty(3) writes the two descriptors it opens; the other arguments may be null.
    let opened =
        unsafe { libc::openpty(&mut master, &mut slave, std::ptr::null_mut(), std::ptr::null(), std::ptr::null()) };
    assert_eq!(opened, 0, "openpty: {}", std::io::Error::last_os_error());
    // Only the terminal (this test) holds the master side, so closing it hangs the terminal up.
    // SAFETY: fcntl(2) on a descriptor we own.
    assert_eq!(unsafe { libc::fcntl(master, libc::F_SETFD, libc::FD_CLOEXEC) }, 0);
    // SAFETY: both descriptors were just opened by openpty and are owned by nobody else.
    let (master, slave) =
        unsafe { (std::os::fd::OwnedFd::from_raw_fd(master), std::os::fd::OwnedFd::from_raw_fd(slave)) };
    let (mut holder, started) = start_holder_with_stderr("reports-signals", Stdio::from(slave));
    // The window closes: the terminal hangs up, then the signal arrives.
    drop(master);
    signal(i32::try_from(holder.id()).unwrap(), libc::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(10);
    while holder.try_wait().unwrap().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    if holder.try_wait().unwrap().is_none() {
        holder.kill().unwrap();
        holder.wait().unwrap();
        panic!("still running 10 s after SIGHUP on a closed terminal");
    }
    let status = assert_nothing_survives(holder, &started);
    assert_eq!(status.code(), Some(128 + libc::SIGHUP), "{status}");
}
