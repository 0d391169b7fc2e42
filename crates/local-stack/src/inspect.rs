//! What runs on this machine, read from Linux's `/proc`: for tests that prove a stack left
//! no process behind (by process id, never by name) and put no secret on a command line.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

/// One process, told apart from a later one that reuses its id by its start time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Process {
    pub pid: u32,
    pub parent: u32,
    pub group: u32,
    /// Clock ticks after boot (`/proc/<pid>/stat` field 22).
    started: u64,
    /// `R`, `S`, `Z`, … (field 3).
    state: char,
    /// User plus system CPU time so far, in clock ticks (fields 14 and 15).
    cpu_ticks: u64,
    pub command_line: String,
}

impl Process {
    /// Still running: present, not a zombie waiting to be reaped, and not a newer process
    /// that got the same id.
    pub fn is_running(&self) -> bool {
        read(self.pid).is_some_and(|now| now.started == self.started && now.state != 'Z')
    }
}

/// CPU time (user + system) `processes` used so far, in seconds; those gone since count 0.
pub fn cpu_seconds(processes: &[Process]) -> f64 {
    // SAFETY: sysconf(3) reads a constant of the system.
    let ticks_per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let ticks: u64 = processes
        .iter()
        .filter_map(|p| read(p.pid).filter(|now| now.started == p.started))
        .map(|now| now.cpu_ticks)
        .sum();
    ticks as f64 / ticks_per_second
}

/// Every process on the machine (those that end while being read are skipped).
pub fn all() -> Vec<Process> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries.filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok()).filter_map(read).collect()
}

/// `root` and everything it started, directly or not, that still runs.
pub fn tree(root: u32) -> Vec<Process> {
    let everything = all();
    let mut members: Vec<Process> = everything.iter().filter(|p| p.pid == root).cloned().collect();
    let mut index = 0;
    while index < members.len() {
        let parent = members[index].pid;
        members.extend(everything.iter().filter(|p| p.parent == parent && p.pid != parent).cloned());
        index += 1;
    }
    members.retain(|p| p.state != 'Z');
    members
}

/// Processes whose command line contains `needle` (arguments joined by spaces).
pub fn command_lines_containing(needle: &str) -> Vec<Process> {
    all().into_iter().filter(|p| p.command_line.contains(needle)).collect()
}

/// Waits up to `timeout` for every one of `processes` to end; returns those still running.
pub fn survivors_after(processes: &[Process], timeout: Duration) -> Vec<Process> {
    let deadline = Instant::now() + timeout;
    loop {
        let running: Vec<Process> = processes.iter().filter(|p| p.is_running()).cloned().collect();
        if running.is_empty() || Instant::now() >= deadline {
            return running;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The TCP sockets `pid` listens on, IPv4 and IPv6 (its socket descriptors matched against the
/// `LISTEN` rows, state `0A`, of `/proc/net/tcp` and `/proc/net/tcp6`), sorted; a socket bound
/// to every address (`0.0.0.0`, `::`) is given as that family's loopback, where a client on
/// this machine reaches it. Empty when the process is gone.
pub fn listening_sockets(pid: u32) -> Vec<SocketAddr> {
    let Ok(descriptors) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { return Vec::new() };
    let inodes: HashSet<String> = descriptors
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .filter_map(|target| Some(target.to_str()?.strip_prefix("socket:[")?.strip_suffix(']')?.to_string()))
        .collect();
    let mut sockets: Vec<SocketAddr> = ["/proc/net/tcp", "/proc/net/tcp6"]
        .into_iter()
        .flat_map(|table| {
            std::fs::read_to_string(table).unwrap_or_default().lines().skip(1).map(String::from).collect::<Vec<_>>()
        })
        .filter_map(|row| {
            let fields: Vec<&str> = row.split_whitespace().collect();
            let (local, state, inode) = (fields.get(1)?, fields.get(3)?, fields.get(9)?);
            (*state == "0A" && inodes.contains(*inode)).then(|| socket_address(local)).flatten()
        })
        .collect();
    sockets.sort_unstable();
    sockets.dedup();
    sockets
}

/// `0100007F:1F90` (`/proc/net/tcp`) or 32 hex digits and a port (`tcp6`) as an address. The
/// kernel prints the address as 32-bit words in the host's byte order, the port as a number.
fn socket_address(local: &str) -> Option<SocketAddr> {
    let (address, port) = local.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    if !matches!(address.len(), 8 | 32) {
        return None;
    }
    let mut bytes = Vec::with_capacity(16);
    for word in address.as_bytes().chunks(8) {
        let word = u32::from_str_radix(std::str::from_utf8(word).ok()?, 16).ok()?;
        bytes.extend_from_slice(&word.to_ne_bytes());
    }
    let ip = match bytes.len() {
        4 => IpAddr::from(<[u8; 4]>::try_from(bytes).ok()?),
        16 => IpAddr::from(<[u8; 16]>::try_from(bytes).ok()?),
        _ => return None,
    };
    let ip = match ip {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    Some(SocketAddr::new(ip, port))
}

fn read(pid: u32) -> Option<Process> {
    let dir = Path::new("/proc").join(pid.to_string());
    let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
    // `pid (comm) state ppid pgrp …`: comm may hold spaces and parentheses, so split after
    // the last `)`.
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let command_line = std::fs::read(dir.join("cmdline")).unwrap_or_default();
    let command_line = String::from_utf8_lossy(&command_line).split('\0').collect::<Vec<_>>().join(" ");
    Some(Process {
        pid,
        state: fields.first()?.chars().next()?,
        parent: fields.get(1)?.parse().ok()?,
        group: fields.get(2)?.parse().ok()?,
        // Fields here start at field 3: field 14 is index 11, field 22 index 19.
        cpu_ticks: fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?,
        started: fields.get(19)?.parse().ok()?,
        command_line: command_line.trim_end().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_this_process_and_its_children() {
        let mut child = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        // Between fork and exec the child is in the tree with an empty command line (a CI run
        // caught it there), so wait for the exec to show.
        let deadline = Instant::now() + Duration::from_secs(5);
        let (tree, found) = loop {
            let tree = tree(std::process::id());
            let found = tree.iter().find(|p| p.pid == child.id()).cloned();
            if found.as_ref().is_some_and(|p| p.command_line == "sleep 30") || Instant::now() >= deadline {
                break (tree, found);
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        assert!(found.as_ref().is_some_and(|p| p.command_line == "sleep 30"), "{tree:?}");
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(survivors_after(&[found.unwrap()], Duration::from_secs(1)).is_empty());
    }

    #[test]
    fn finds_the_sockets_a_process_listens_on_in_both_families() {
        for bind in ["127.0.0.1:0", "[::1]:0"] {
            let listener = std::net::TcpListener::bind(bind).unwrap();
            let address = listener.local_addr().unwrap();
            assert!(listening_sockets(std::process::id()).contains(&address), "{address}");
            drop(listener);
            assert!(!listening_sockets(std::process::id()).contains(&address), "{address} closed");
        }
    }

    #[test]
    fn reads_the_kernels_address_form() {
        assert_eq!(socket_address("0100007F:1F90"), Some("127.0.0.1:8080".parse().unwrap()));
        assert_eq!(socket_address("00000000:0050"), Some("127.0.0.1:80".parse().unwrap()));
        let loopback6 =
            format!("{}:1F90", [0u32, 0, 0, u32::from_ne_bytes([0, 0, 0, 1])].map(|w| format!("{w:08X}")).concat());
        assert_eq!(socket_address(&loopback6), Some("[::1]:8080".parse().unwrap()));
        assert_eq!(socket_address(&format!("{}:0050", "0".repeat(32))), Some("[::1]:80".parse().unwrap()));
        assert_eq!(socket_address("0100007F"), None);
        assert_eq!(socket_address("01007F:0050"), None);
    }
}
