//! A data folder has one user at a time: a second `FolderLock` on it is refused and names the
//! process that holds it, and the lock goes with its holder however it ends — here SIGKILL,
//! which leaves the lock file behind. The holder is this test binary itself, run again with
//! an ignored test that takes the lock and waits.
#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};

use local_stack::lock::{FolderLock, LockError};

const HOLDER: &str = "holder_of_a_folder_lock";
const FOLDER: &str = "LOCAL_STACK_TEST_LOCKED_FOLDER";

/// Not a test of its own: the program the other test ends. Prints `locked` once it holds it.
#[test]
#[ignore]
fn holder_of_a_folder_lock() {
    let Ok(folder) = std::env::var(FOLDER) else { return };
    let _lock = FolderLock::acquire(std::path::Path::new(&folder)).unwrap();
    println!("\nlocked");
    std::io::stdout().flush().unwrap();
    std::thread::sleep(std::time::Duration::from_secs(600));
}

#[test]
fn a_second_user_is_refused_until_the_first_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("data");
    let mut holder = Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", HOLDER, "--nocapture", "--test-threads=1"])
        .env(FOLDER, &folder)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Bytes, not lines of text: one line that is not UTF-8 must not hide the one looked for.
    let mut printed = Vec::new();
    let locked = BufReader::new(holder.stdout.take().unwrap()).split(b'\n').map_while(Result::ok).any(|line| {
        printed.push(String::from_utf8_lossy(&line).into_owned());
        line == b"locked"
    });
    if !locked {
        // It ended without the lock (one CI run saw that, not reproduced since): say how.
        let status = holder.wait().unwrap();
        let mut errors = String::new();
        let _ = holder.stderr.take().unwrap().read_to_string(&mut errors);
        panic!("the holder never took the lock: {status}; its stdout {printed:?}; its stderr {errors}");
    }

    let refused = FolderLock::acquire(&folder).err();
    assert_eq!(refused, Some(LockError::Held { path: folder.join("lock"), pid: Some(holder.id()) }));
    assert!(refused.unwrap().to_string().contains(&holder.id().to_string()));

    holder.kill().unwrap();
    holder.wait().unwrap();
    assert!(folder.join("lock").exists(), "SIGKILL leaves the file");
    let _lock = FolderLock::acquire(&folder).expect("the lock went with its holder");
    // Within one process too: a second open of the file is a second user.
    assert!(matches!(FolderLock::acquire(&folder), Err(LockError::Held { .. })));
}
