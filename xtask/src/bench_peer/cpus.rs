//! Where the bench's processes run: the Workers on a core of their own, and everything else —
//! devdb, wrangler and its entry proxies, wrk — on the others.
//!
//! On a small shared machine the Worker's workerd otherwise competes with wrk and the proxies
//! for the same cores, and its CPU time per request swings by ±15 % from run to run; pinned, it
//! still drifts with the machine (docs/performance.md, "How it is measured"). `bench peer`
//! loads one Worker at a time, so all six share that core; `bench ab` loads its two at once
//! there. Linux only (`sched_setaffinity`); elsewhere, and with a single core, nothing is
//! pinned.

use crate::Result;

/// The cores for the Worker under measurement and for the rest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub worker: usize,
    pub rest: Vec<usize>,
}

impl Placement {
    /// The last of `allowed` cores for the Workers, the others for the rest; `None` with
    /// fewer than two.
    pub fn of(allowed: &[usize]) -> Option<Self> {
        let (worker, rest) = allowed.split_last()?;
        (!rest.is_empty()).then(|| Self { worker: *worker, rest: rest.to_vec() })
    }

    /// For the table's header.
    pub fn describe(&self) -> String {
        let rest = self.rest.iter().map(usize::to_string).collect::<Vec<_>>().join(",");
        format!("Worker on CPU {}, the rest on CPU {rest}", self.worker)
    }
}

/// The placement on this machine, from the cores this process may use.
pub fn plan() -> Option<Placement> {
    Placement::of(&imp::allowed_cpus())
}

/// Pins the calling thread, and so every thread and process it starts from now on, to `cpus`
/// (the bench's main thread calls this before it starts anything).
pub fn pin_self(cpus: &[usize]) -> Result {
    imp::pin(0, cpus).map_err(|error| format!("cannot pin the bench to CPU {cpus:?}: {error}"))
}

/// Pins every thread of process `pid` to `cpu` (threads it starts later inherit it).
pub fn pin_process(pid: u32, cpu: usize) -> Result {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).map_err(|e| format!("process {pid}: {e}"))?;
    for task in tasks.flatten() {
        if let Some(tid) = task.file_name().to_str().and_then(|name| name.parse::<i32>().ok()) {
            match imp::pin(tid, &[cpu]) {
                Ok(()) => {}
                // The thread ended since the folder was read: nothing left to pin.
                Err(error) if error.raw_os_error() == Some(imp::NO_SUCH_THREAD) => {}
                Err(error) => return Err(format!("cannot pin thread {tid} of process {pid} to CPU {cpu}: {error}")),
            }
        }
    }
    Ok(())
}

#[cfg(target_os = "linux")]
mod imp {
    pub fn allowed_cpus() -> Vec<usize> {
        // SAFETY: `set` is a plain bit set that sched_getaffinity fills; the CPU_* helpers only
        // read and write within it.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            if libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut set) != 0 {
                return Vec::new();
            }
            (0..libc::CPU_SETSIZE as usize).filter(|cpu| libc::CPU_ISSET(*cpu, &set)).collect()
        }
    }

    pub const NO_SUCH_THREAD: i32 = libc::ESRCH;

    /// `tid` 0 is the calling thread.
    pub fn pin(tid: i32, cpus: &[usize]) -> std::io::Result<()> {
        // SAFETY: as above; sched_setaffinity only reads `set`.
        let status = unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            for cpu in cpus {
                libc::CPU_SET(*cpu, &mut set);
            }
            libc::sched_setaffinity(tid, size_of::<libc::cpu_set_t>(), &set)
        };
        if status == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    /// Unused here: `pin` pins nothing and never fails.
    pub const NO_SUCH_THREAD: i32 = 3;

    pub fn allowed_cpus() -> Vec<usize> {
        Vec::new()
    }

    pub fn pin(_tid: i32, _cpus: &[usize]) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_core_goes_to_the_worker_and_one_core_pins_nothing() {
        assert_eq!(Placement::of(&[0, 1]), Some(Placement { worker: 1, rest: vec![0] }));
        assert_eq!(Placement::of(&[0, 2, 5]), Some(Placement { worker: 5, rest: vec![0, 2] }));
        assert_eq!(Placement::of(&[3]), None);
        assert_eq!(Placement::of(&[]), None);
        assert_eq!(Placement { worker: 5, rest: vec![0, 2] }.describe(), "Worker on CPU 5, the rest on CPU 0,2");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_pinned_child_runs_only_on_its_core() {
        let Some(placement) = plan() else { return };
        let mut child = std::process::Command::new("sleep").arg("5").spawn().unwrap();
        pin_process(child.id(), placement.worker).unwrap();
        let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap();
        let _ = child.kill();
        let _ = child.wait();
        let allowed = status.lines().find_map(|line| line.strip_prefix("Cpus_allowed_list:")).unwrap().trim();
        assert_eq!(allowed, placement.worker.to_string());
    }
}
