//! A single-threaded executor with a virtual clock, so the API's data path — deadlines, replica
//! lag, TTLs, background work — runs in milliseconds of real time and the same way every run.
//!
//! Time moves only when every task is waiting: the clock then jumps to the earliest timer. A
//! request that waits 300 ms on a replica deadline costs nothing real, and interleavings of
//! concurrent requests follow from their (simulated) latencies alone.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use futures::executor::{LocalPool, LocalSpawner};
use futures::task::LocalSpawnExt;

#[derive(Default)]
struct Timers {
    /// `(deadline_ms, waker)`; few at a time, so a scan beats a heap.
    pending: Vec<(f64, Waker)>,
}

/// The shared clock and spawner; cheap to clone into every simulated Worker.
#[derive(Clone)]
pub struct Clock {
    now: Rc<Cell<f64>>,
    timers: Rc<RefCell<Timers>>,
    spawner: LocalSpawner,
}

impl Clock {
    pub fn now_ms(&self) -> f64 {
        self.now.get()
    }

    /// Resolves once the clock reaches now + `ms`.
    pub fn sleep(&self, ms: f64) -> Sleep {
        Sleep { clock: self.clone(), deadline: self.now_ms() + ms.max(0.0) }
    }

    /// Runs `work` beside the current task (a Worker's `waitUntil`).
    pub fn spawn(&self, work: impl Future<Output = ()> + 'static) {
        if self.spawner.spawn_local(work).is_err() {
            panic!("the simulated runtime is gone");
        }
    }
}

pub struct Sleep {
    clock: Clock,
    deadline: f64,
}

impl Future for Sleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<()> {
        if self.clock.now_ms() >= self.deadline {
            return Poll::Ready(());
        }
        self.clock.timers.borrow_mut().pending.push((self.deadline, context.waker().clone()));
        Poll::Pending
    }
}

/// A task's result, filled when it finishes.
pub struct Task<T>(Rc<RefCell<Option<T>>>);

impl<T> Task<T> {
    pub fn is_done(&self) -> bool {
        self.0.borrow().is_some()
    }
}

pub struct Runtime {
    pool: LocalPool,
    clock: Clock,
}

impl Default for Runtime {
    fn default() -> Self {
        let pool = LocalPool::new();
        let clock = Clock { now: Rc::default(), timers: Rc::default(), spawner: pool.spawner() };
        Self { pool, clock }
    }
}

impl Runtime {
    pub fn clock(&self) -> Clock {
        self.clock.clone()
    }

    /// Starts `future` now; [`Self::wait`] collects its result.
    pub fn spawn<T: 'static>(&self, future: impl Future<Output = T> + 'static) -> Task<T> {
        let slot = Rc::new(RefCell::new(None));
        let filled = slot.clone();
        self.clock.spawn(async move {
            let value = future.await;
            *filled.borrow_mut() = Some(value);
        });
        Task(slot)
    }

    /// Runs everything until `task` is done, moving the clock as far as it needs.
    pub fn wait<T>(&mut self, task: Task<T>) -> T {
        loop {
            self.pool.run_until_stalled();
            if let Some(value) = task.0.borrow_mut().take() {
                return value;
            }
            if !self.fire_next_timer(f64::INFINITY) {
                panic!("deadlock: the task waits on nothing that can happen");
            }
        }
    }

    pub fn run<T: 'static>(&mut self, future: impl Future<Output = T> + 'static) -> T {
        let task = self.spawn(future);
        self.wait(task)
    }

    /// Runs every task and timer due within the next `ms`, then sets the clock to that time.
    pub fn advance(&mut self, ms: f64) {
        let until = self.clock.now_ms() + ms;
        loop {
            self.pool.run_until_stalled();
            if !self.fire_next_timer(until) {
                break;
            }
        }
        self.clock.now.set(until.max(self.clock.now_ms()));
        self.pool.run_until_stalled();
    }

    /// Runs until no task can make progress and no timer is left (background work finished).
    pub fn settle(&mut self) {
        loop {
            self.pool.run_until_stalled();
            if !self.fire_next_timer(f64::INFINITY) {
                break;
            }
        }
    }

    /// Moves the clock to the earliest timer not after `limit` and wakes every timer due then.
    fn fire_next_timer(&mut self, limit: f64) -> bool {
        let mut timers = self.clock.timers.borrow_mut();
        let Some(next) = timers.pending.iter().map(|(at, _)| *at).min_by(f64::total_cmp) else {
            return false;
        };
        if next > limit {
            return false;
        }
        self.clock.now.set(next.max(self.clock.now.get()));
        let (due, later): (Vec<_>, Vec<_>) = timers.pending.drain(..).partition(|(at, _)| *at <= next);
        timers.pending = later;
        drop(timers);
        for (_, waker) in due {
            waker.wake();
        }
        true
    }
}
