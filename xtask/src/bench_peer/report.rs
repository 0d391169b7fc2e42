//! Figures per run, their medians over rounds, the ratios, and how they are shown: a terminal
//! table, a Markdown table (for the README) and `results.json`.

use serde_json::{Value, json};

use super::load::LoadRun;
use super::stack::{Sample, Shape, ticks_per_second};
use super::{CONNECTIONS, THREADS};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Edgestack,
    Peer,
    Floor,
}

impl Side {
    pub const ALL: [Side; 3] = [Side::Edgestack, Side::Peer, Side::Floor];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Edgestack => "edgestack",
            Self::Peer => "peer",
            Self::Floor => "floor",
        }
    }

    /// The sides in the order round `round` drives them.
    pub fn rotated(round: usize) -> [Side; 3] {
        let mut sides = Self::ALL;
        sides.rotate_left(round % Self::ALL.len());
        sides
    }
}

/// One run of one shape on one side.
#[derive(Debug, Clone)]
pub struct Measurement {
    pub shape: &'static str,
    pub side: Side,
    pub requests: u64,
    pub rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub errors: u64,
    /// CPU time of the Worker's workerd process per request.
    pub cpu_us: f64,
    pub db_per_request: f64,
}

impl Measurement {
    pub fn new(shape: &Shape, side: Side, run: &LoadRun, before: &Sample, after: &Sample) -> Self {
        let requests = run.requests.max(1) as f64;
        let cpu_seconds = after.cpu_ticks.saturating_sub(before.cpu_ticks) as f64 / ticks_per_second();
        Self {
            shape: shape.key,
            side,
            requests: run.requests,
            rps: run.rps(),
            p50_ms: run.p50_ms,
            p99_ms: run.p99_ms,
            errors: run.errors(),
            cpu_us: cpu_seconds * 1e6 / requests,
            db_per_request: after.db_requests.saturating_sub(before.db_requests) as f64 / requests,
        }
    }

    pub fn one_line(&self) -> String {
        format!(
            "{:<20} {:<9} {:>7.0} req/s  p50 {:>6.2} ms  p99 {:>6.2} ms  {:>6.0} µs CPU/req  {:.2} db/req  {} errors",
            self.shape,
            self.side.as_str(),
            self.rps,
            self.p50_ms,
            self.p99_ms,
            self.cpu_us,
            self.db_per_request,
            self.errors
        )
    }
}

/// One side's figures for one shape: medians over the rounds (errors and requests summed).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Figures {
    pub rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub cpu_us: f64,
    pub errors: u64,
    pub requests: u64,
    pub db_per_request: f64,
    pub rounds: Vec<f64>,
    /// CPU µs per request of each round, in round order.
    pub cpu_rounds: Vec<f64>,
}

impl Figures {
    fn of(runs: &[&Measurement]) -> Self {
        let median_of = |value: fn(&Measurement) -> f64| median(&runs.iter().map(|run| value(run)).collect::<Vec<_>>());
        Self {
            rps: median_of(|run| run.rps),
            p50_ms: median_of(|run| run.p50_ms),
            p99_ms: median_of(|run| run.p99_ms),
            cpu_us: median_of(|run| run.cpu_us),
            errors: runs.iter().map(|run| run.errors).sum(),
            requests: runs.iter().map(|run| run.requests).sum(),
            db_per_request: median_of(|run| run.db_per_request),
            rounds: runs.iter().map(|run| run.rps).collect(),
            cpu_rounds: runs.iter().map(|run| run.cpu_us).collect(),
        }
    }

    fn to_json(&self) -> Value {
        json!({
            "rps": round(self.rps, 1),
            "p50_ms": round(self.p50_ms, 2),
            "p99_ms": round(self.p99_ms, 2),
            "cpu_us": round(self.cpu_us, 0),
            "errors": self.errors,
            "requests": self.requests,
            "db_requests_per_request": round(self.db_per_request, 3),
            "rps_per_round": self.rounds.iter().map(|rps| round(*rps, 1)).collect::<Vec<_>>(),
        })
    }
}

pub struct ShapeResult {
    pub key: &'static str,
    pub name: &'static str,
    pub edgestack: Figures,
    pub peer: Figures,
    pub floor: Figures,
    /// Edgestack ÷ peer req/s (medians).
    pub rps_ratio: f64,
    /// The smallest and largest of the rounds' own ratios.
    pub rps_ratio_range: (f64, f64),
    /// (edgestack − floor) ÷ (peer − floor) CPU µs; `None` when the peer is at or below the floor.
    pub own_cpu_ratio: Option<f64>,
    /// Where 95 % of `own_cpu_ratio` falls when the rounds are drawn again (`own_cpu_interval`).
    pub own_cpu_interval: Option<(f64, f64)>,
}

pub struct Results {
    pub shapes: Vec<ShapeResult>,
    pub rounds: u32,
    pub seconds: u32,
    pub machine: String,
    pub date: String,
    /// The machine's 1-minute load average when measuring began and ended (the bench's own
    /// load included: about 2–3 on an otherwise idle machine), so figures taken while other
    /// work ran beside the bench say so.
    pub load_average: Option<(f64, f64)>,
}

impl Results {
    pub fn new(shapes: &[Shape], measurements: &[Measurement], rounds: u32, seconds: u32) -> Self {
        let shapes = shapes
            .iter()
            .map(|shape| {
                let runs_of = |side: Side| -> Vec<&Measurement> {
                    measurements.iter().filter(|m| m.shape == shape.key && m.side == side).collect()
                };
                let (edgestack, peer, floor) = (
                    Figures::of(&runs_of(Side::Edgestack)),
                    Figures::of(&runs_of(Side::Peer)),
                    Figures::of(&runs_of(Side::Floor)),
                );
                let per_round: Vec<f64> =
                    edgestack.rounds.iter().zip(&peer.rounds).map(|(e, p)| ratio(*e, *p)).collect();
                let low = per_round.iter().copied().fold(f64::INFINITY, f64::min);
                let high = per_round.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let peer_own = peer.cpu_us - floor.cpu_us;
                ShapeResult {
                    key: shape.key,
                    name: shape.name,
                    rps_ratio: ratio(edgestack.rps, peer.rps),
                    rps_ratio_range: (low, high),
                    own_cpu_ratio: (peer_own > 0.0).then(|| (edgestack.cpu_us - floor.cpu_us) / peer_own),
                    own_cpu_interval: own_cpu_interval(&edgestack.cpu_rounds, &peer.cpu_rounds, &floor.cpu_rounds),
                    edgestack,
                    peer,
                    floor,
                }
            })
            .collect();
        Self { shapes, rounds, seconds, machine: machine(), date: utc_now(), load_average: None }
    }

    pub fn to_json(&self) -> Value {
        let shapes: Vec<Value> = self
            .shapes
            .iter()
            .map(|shape| {
                json!({
                    "name": shape.name,
                    "key": shape.key,
                    "edgestack": shape.edgestack.to_json(),
                    "peer": shape.peer.to_json(),
                    "floor": shape.floor.to_json(),
                    "rps_ratio": round(shape.rps_ratio, 3),
                    "rps_ratio_range": [round(shape.rps_ratio_range.0, 3), round(shape.rps_ratio_range.1, 3)],
                    "own_cpu_ratio": shape.own_cpu_ratio.map(|r| round(r, 3)),
                    // An unbounded end (`∞` in the tables) is null: JSON has no infinity.
                    "own_cpu_ratio_95": shape.own_cpu_interval.map(|(low, high)| [round(low, 3), round(high, 3)]),
                })
            })
            .collect();
        json!({
            "shapes": shapes,
            "machine": self.machine,
            "date": self.date,
            "load_average_1m": self.load_average.map(|(start, end)| json!({"start": start, "end": end})),
            "settings": {
                "load_generator": "wrk",
                "threads": THREADS,
                "connections": CONNECTIONS,
                "rounds": self.rounds,
                "seconds_per_run": self.seconds,
                "figures": "medians over rounds; errors and requests summed; own_cpu_ratio_95: the central 95 % of own_cpu_ratio over 2000 bootstrap resamples of the rounds (a round's three sides drawn together; null: unbounded, the peer at or below the floor in some draws); cpu_us: user+system CPU of the workerd process running the Worker, per request; db_requests_per_request: devdb pipelines per completed request (the up to 16 requests still in flight when wrk stops add about 1-2 %)",
            },
        })
    }

    /// The terminal table: a line per side, then the ratios.
    pub fn render_table(&self) -> String {
        let mut out = format!(
            "bench peer — {} round(s) × {} s per shape and side, wrk {THREADS} threads / {CONNECTIONS} connections — {} — {}{}\n",
            self.rounds,
            self.seconds,
            self.machine,
            self.date,
            self.load_text()
        );
        out.push_str(&format!(
            "{:<38} {:<9} {:>8} {:>8} {:>8} {:>10} {:>7} {:>7}\n",
            "shape", "side", "req/s", "p50 ms", "p99 ms", "CPU µs/req", "db/req", "errors"
        ));
        for shape in &self.shapes {
            for (side, figures) in [("edgestack", &shape.edgestack), ("peer", &shape.peer), ("floor", &shape.floor)] {
                out.push_str(&format!(
                    "{:<38} {:<9} {:>8.0} {:>8.2} {:>8.2} {:>10.0} {:>7.2} {:>7}\n",
                    if side == "edgestack" { shape.name } else { "" },
                    side,
                    figures.rps,
                    figures.p50_ms,
                    figures.p99_ms,
                    figures.cpu_us,
                    figures.db_per_request,
                    figures.errors
                ));
            }
            out.push_str(&format!(
                "{:<38} req/s edgestack ÷ peer {:.2} (rounds {:.2}–{:.2}); own CPU above the floor {:.0} µs ÷ {:.0} µs = {}{}\n",
                "",
                shape.rps_ratio,
                shape.rps_ratio_range.0,
                shape.rps_ratio_range.1,
                shape.edgestack.cpu_us - shape.floor.cpu_us,
                shape.peer.cpu_us - shape.floor.cpu_us,
                own_ratio_text(shape.own_cpu_ratio),
                interval_text(shape.own_cpu_interval)
            ));
            let failing: Vec<&str> = [(&shape.edgestack, "edgestack"), (&shape.peer, "peer")]
                .into_iter()
                .filter(|(figures, _)| figures.errors > 0)
                .map(|(_, side)| side)
                .collect();
            if !failing.is_empty() {
                out.push_str(&format!(
                    "{:<38} NOT COMPARABLE: {} answered errors (a refusal is cheaper than the work)\n",
                    "",
                    failing.join(" and ")
                ));
            }
        }
        out
    }

    /// The README's table.
    pub fn render_markdown(&self) -> String {
        let mut out = format!(
            "{} — {}{}; {} round(s) × {} s per shape and side, wrk {THREADS} threads / {CONNECTIONS} connections; medians over rounds.\n\n",
            self.date,
            self.machine,
            self.load_text(),
            self.rounds,
            self.seconds
        );
        out.push_str("| shape | req/s edgestack / peer | ÷ (rounds) | p50 ms e / p | p99 ms e / p | CPU µs/req floor / peer / edgestack | own CPU e ÷ p | db req/req e / p | errors e / p |\n");
        out.push_str("|---|---|---|---|---|---|---|---|---|\n");
        for shape in &self.shapes {
            let (e, p, f) = (&shape.edgestack, &shape.peer, &shape.floor);
            out.push_str(&format!(
                "| {} | {:.0} / {:.0} | **{:.2}** ({:.2}–{:.2}) | {:.2} / {:.2} | {:.2} / {:.2} | {:.0} / {:.0} / {:.0} | **{}**{} | {:.2} / {:.2} | {} / {} |\n",
                shape.name.replace('|', "\\|"),
                e.rps,
                p.rps,
                shape.rps_ratio,
                shape.rps_ratio_range.0,
                shape.rps_ratio_range.1,
                e.p50_ms,
                p.p50_ms,
                e.p99_ms,
                p.p99_ms,
                f.cpu_us,
                p.cpu_us,
                e.cpu_us,
                own_ratio_text(shape.own_cpu_ratio),
                interval_text(shape.own_cpu_interval),
                e.db_per_request,
                p.db_per_request,
                e.errors,
                p.errors
            ));
        }
        out
    }
}

impl Results {
    fn load_text(&self) -> String {
        self.load_average.map_or_else(String::new, |(start, end)| format!(", load average {start:.1} → {end:.1}"))
    }
}

/// The 1-minute load average (`/proc/loadavg`).
pub fn load_average_1m() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg").ok()?.split_whitespace().next()?.parse().ok()
}

fn own_ratio_text(ratio: Option<f64>) -> String {
    match ratio {
        Some(ratio) => format!("{ratio:.1}×"),
        None => "n/a (peer at the floor)".into(),
    }
}

/// ` (95 % 0.6–1.1×)`, or nothing without rounds.
fn interval_text(interval: Option<(f64, f64)>) -> String {
    let end = |value: f64| if value.is_finite() { format!("{value:.1}") } else { "∞".into() };
    interval.map_or_else(String::new, |(low, high)| format!(" (95 % {}–{}×)", end(low), end(high)))
}

/// Draws of the rounds behind `own_cpu_interval`.
const RESAMPLES: usize = 2_000;

/// The central 95 % of the own-CPU ratio when the rounds are drawn again with replacement (a
/// percentile bootstrap), a round's three sides always together, so that a slow moment of the
/// machine stays paired: how far the ratio moves from the rounds' noise alone. Own CPU is a
/// small difference of two large figures, so one run's ratio can sit on either side of 1.0
/// while nothing changed (docs/performance.md). A draw where the peer's own cost is zero or
/// less has no finite ratio and counts as `∞`. The seed is fixed: the same figures, the same
/// interval. `None` without rounds.
fn own_cpu_interval(edgestack: &[f64], peer: &[f64], floor: &[f64]) -> Option<(f64, f64)> {
    let rounds = edgestack.len().min(peer.len()).min(floor.len());
    if rounds == 0 {
        return None;
    }
    let mut rng = fastrand::Rng::with_seed(0x0b00_75a3);
    let mut ratios: Vec<f64> = (0..RESAMPLES)
        .map(|_| {
            let draw: Vec<usize> = (0..rounds).map(|_| rng.usize(..rounds)).collect();
            let median_of = |side: &[f64]| median(&draw.iter().map(|&i| side[i]).collect::<Vec<_>>());
            let (e, p, f) = (median_of(edgestack), median_of(peer), median_of(floor));
            if p > f { (e - f) / (p - f) } else { f64::INFINITY }
        })
        .collect();
    ratios.sort_by(f64::total_cmp);
    Some((ratios[RESAMPLES * 25 / 1000], ratios[RESAMPLES * 975 / 1000 - 1]))
}

fn ratio(numerator: f64, denominator: f64) -> f64 {
    if denominator > 0.0 { numerator / denominator } else { f64::NAN }
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

fn round(value: f64, decimals: i32) -> Value {
    let factor = 10f64.powi(decimals);
    // JSON has no NaN: a figure that could not be measured is null.
    serde_json::Number::from_f64((value * factor).round() / factor).map_or(Value::Null, Value::Number)
}

/// `nproc N, <CPU model>`, as the README's Benchmarks section names the machine (read before
/// the bench pins itself to fewer cores).
pub fn machine() -> String {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|line| line.strip_prefix("model name")?.split_once(':').map(|(_, model)| model.trim().to_string()))
        .unwrap_or_else(|| "unknown CPU".into());
    format!("nproc {cores}, {model}")
}

/// Now as `YYYY-MM-DDTHH:MM:SSZ`.
fn utc_now() -> String {
    let seconds = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    format_utc(seconds)
}

fn format_utc(unix_seconds: u64) -> String {
    let days = i64::try_from(unix_seconds / 86_400).unwrap_or(0);
    let of_day = unix_seconds % 86_400;
    // Days since 1970-01-01 → civil date (H. Hinnant's `civil_from_days`).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 { month_index + 3 } else { month_index - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", of_day / 3600, of_day % 3600 / 60, of_day % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(shape: &'static str, side: Side, rps: f64, cpu_us: f64) -> Measurement {
        Measurement {
            shape,
            side,
            requests: 1000,
            rps,
            p50_ms: 1.0,
            p99_ms: 2.0,
            errors: 1,
            cpu_us,
            db_per_request: 1.0,
        }
    }

    fn shape(key: &'static str) -> Shape {
        Shape {
            key,
            name: "GET /api/health",
            method: "GET",
            path: "/api/health".into(),
            read_cache: true,
            headers: Vec::new(),
            body: None,
            same_body: false,
            expected_status: 200,
            rotating_cookies: Vec::new(),
        }
    }

    #[test]
    fn ratios_come_from_medians_and_own_cpu_from_the_floor() {
        let measurements = vec![
            run("health", Side::Edgestack, 800.0, 1100.0),
            run("health", Side::Edgestack, 780.0, 1200.0),
            run("health", Side::Edgestack, 790.0, 1160.0),
            run("health", Side::Peer, 1000.0, 730.0),
            run("health", Side::Peer, 1010.0, 720.0),
            run("health", Side::Peer, 1000.0, 740.0),
            run("health", Side::Floor, 1200.0, 660.0),
            run("health", Side::Floor, 1210.0, 650.0),
            run("health", Side::Floor, 1190.0, 670.0),
        ];
        let results = Results::new(&[shape("health")], &measurements, 3, 5);
        let health = &results.shapes[0];
        assert_eq!(health.edgestack.rps, 790.0);
        assert_eq!(health.edgestack.errors, 3);
        assert!((health.rps_ratio - 0.79).abs() < 1e-9);
        assert!((health.rps_ratio_range.0 - 0.772_277).abs() < 1e-5, "{:?}", health.rps_ratio_range);
        assert!((health.rps_ratio_range.1 - 0.8).abs() < 1e-9);
        assert!((health.own_cpu_ratio.unwrap() - 500.0 / 70.0).abs() < 1e-9);
        let json = results.to_json();
        assert_eq!(json["shapes"][0]["edgestack"]["cpu_us"], 1160.0);
        assert_eq!(json["shapes"][0]["own_cpu_ratio"], 7.143);
        assert!(json["machine"].as_str().unwrap().starts_with("nproc "));
        assert!(results.render_markdown().contains("| GET /api/health | 790 / 1000 | **0.79**"));
        assert!(results.render_markdown().contains("| **7.1×** (95 % "), "{}", results.render_markdown());
        assert_eq!(json["shapes"][0]["own_cpu_ratio_95"].as_array().map(Vec::len), Some(2));
    }

    #[test]
    fn the_own_cpu_interval_spans_the_rounds_noise_and_is_unbounded_when_the_peer_meets_the_floor() {
        let steady = own_cpu_interval(&[900.0; 8], &[800.0; 8], &[600.0; 8]).unwrap();
        assert_eq!(steady, (1.5, 1.5), "rounds that agree leave no doubt");

        let edgestack = [900.0, 950.0, 880.0, 1000.0, 920.0, 870.0, 990.0, 910.0];
        let peer = [800.0, 780.0, 850.0, 760.0, 820.0, 790.0, 840.0, 810.0];
        let floor = [600.0; 8];
        let (low, high) = own_cpu_interval(&edgestack, &peer, &floor).unwrap();
        let point = (median(&edgestack) - 600.0) / (median(&peer) - 600.0);
        assert!(low < point && point < high, "{low} < {point} < {high}");
        assert!(high - low > 0.2, "noisy rounds give a wide interval: {low}–{high}");
        assert_eq!(own_cpu_interval(&edgestack, &peer, &floor), Some((low, high)), "a fixed seed");

        let near_floor = [640.0, 590.0, 650.0, 580.0, 620.0, 600.0, 610.0, 570.0];
        let (_, unbounded) = own_cpu_interval(&edgestack, &near_floor, &floor).unwrap();
        assert_eq!(unbounded, f64::INFINITY);
        assert_eq!(interval_text(Some((0.61, unbounded))), " (95 % 0.6–∞×)");
        assert_eq!(own_cpu_interval(&[], &[], &[]), None);
    }

    #[test]
    fn a_peer_at_the_floor_has_no_own_cpu_ratio() {
        let measurements = vec![
            run("health", Side::Edgestack, 1.0, 900.0),
            run("health", Side::Peer, 1.0, 600.0),
            run("health", Side::Floor, 1.0, 650.0),
        ];
        let results = Results::new(&[shape("health")], &measurements, 1, 1);
        assert_eq!(results.shapes[0].own_cpu_ratio, None);
        assert_eq!(results.to_json()["shapes"][0]["own_cpu_ratio"], Value::Null);
    }

    #[test]
    fn a_side_that_answered_errors_is_flagged_as_not_comparable() {
        let clean = |mut measurement: Measurement| {
            measurement.errors = 0;
            measurement
        };
        let flagged = |edgestack_errors: u64| {
            let mut edgestack = clean(run("health", Side::Edgestack, 1.0, 900.0));
            edgestack.errors = edgestack_errors;
            let measurements = vec![
                edgestack,
                clean(run("health", Side::Peer, 1.0, 800.0)),
                clean(run("health", Side::Floor, 1.0, 600.0)),
            ];
            Results::new(&[shape("health")], &measurements, 1, 1).render_table()
        };
        assert!(flagged(7).contains("NOT COMPARABLE: edgestack answered errors"), "{}", flagged(7));
        assert!(!flagged(0).contains("NOT COMPARABLE"), "{}", flagged(0));
    }

    #[test]
    fn sides_take_turns_across_rounds() {
        assert_eq!(Side::rotated(0), [Side::Edgestack, Side::Peer, Side::Floor]);
        assert_eq!(Side::rotated(1), [Side::Peer, Side::Floor, Side::Edgestack]);
        assert_eq!(Side::rotated(3), Side::rotated(0));
    }

    #[test]
    fn formats_utc_dates() {
        assert_eq!(format_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(format_utc(1_795_996_800 + 3_661), "2026-11-30T01:01:01Z");
    }
}
