//! The gateway's in-memory state: the split in force, per-version counters for the current
//! window, and a bounded history of earlier windows.

use std::cell::RefCell;
use std::collections::VecDeque;

use release::plan::{Split, parse_percent};
use release::routing::Version;
use release::stats::{GatewayStats, VersionWindow, WindowReport};
use worker::Date;

/// Earlier windows kept for `/__gateway/stats` (one per config change).
const HISTORY: usize = 32;

#[derive(Default)]
pub struct GatewayState {
    initialized: bool,
    generation: u64,
    split: Split,
    started_ms: f64,
    blue: VersionWindow,
    green: VersionWindow,
    blue_version_id: Option<String>,
    green_version_id: Option<String>,
    history: VecDeque<WindowReport>,
}

thread_local! {
    // A Worker isolate runs one thread; requests interleave only at awaits, never inside this.
    static STATE: RefCell<GatewayState> = RefCell::new(GatewayState::default());
}

pub fn with_state<T>(f: impl FnOnce(&mut GatewayState) -> T) -> T {
    STATE.with(|state| f(&mut state.borrow_mut()))
}

impl GatewayState {
    /// Applies `GATEWAY_INITIAL_SPLIT` once per isolate; a bad value means everything on blue.
    pub fn initialize(&mut self, initial_split: &str) {
        if self.initialized {
            return;
        }
        self.initialized = true;
        self.split = Split { default_bps: parse_percent(initial_split).unwrap_or(0), ..Split::default() };
        self.started_ms = Date::now().as_millis() as f64;
    }

    pub fn routing_inputs(&self) -> (Split, Option<String>, Option<String>) {
        (self.split.clone(), self.blue_version_id.clone(), self.green_version_id.clone())
    }

    pub fn record(&mut self, version: Version, status: u16, latency_ms: u32, version_id: Option<String>) {
        let (window, id) = match version {
            Version::Blue => (&mut self.blue, &mut self.blue_version_id),
            Version::Green => (&mut self.green, &mut self.green_version_id),
        };
        window.record(status, latency_ms);
        if id.is_none() {
            *id = version_id.filter(|value| !value.is_empty());
        }
    }

    fn current(&self) -> WindowReport {
        WindowReport {
            generation: self.generation,
            split: self.split.clone(),
            started_ms: self.started_ms,
            blue: self.blue.counts(),
            green: self.green.counts(),
        }
    }

    /// Puts `split` in force and starts a new window, so the gate compares only traffic that
    /// saw this split.
    pub fn set_split(&mut self, split: Split) -> WindowReport {
        let finished = self.current();
        if self.history.len() == HISTORY {
            self.history.pop_front();
        }
        self.history.push_back(finished);
        self.generation += 1;
        self.split = split;
        self.started_ms = Date::now().as_millis() as f64;
        self.blue = VersionWindow::default();
        self.green = VersionWindow::default();
        self.current()
    }

    pub fn stats(&self) -> GatewayStats {
        GatewayStats {
            blue_version_id: self.blue_version_id.clone(),
            green_version_id: self.green_version_id.clone(),
            current: self.current(),
            history: self.history.iter().cloned().collect(),
        }
    }
}
