//! What a failover cost, from one run's samples and the new primary's notes: the figures of
//! `target/drill/failover.json` and the table.

use std::collections::BTreeSet;

use serde::Serialize;

use super::load::{Op, Sample};

/// When each step of the failover happened, in seconds since the run's start.
#[derive(Debug, Clone, Serialize)]
pub struct Timeline {
    /// The primary was killed (SIGKILL).
    pub kill_s: f64,
    /// The operator's health check saw it gone.
    pub detected_s: f64,
    /// The most advanced replica answered its promotion.
    pub promoted_s: f64,
    /// The primary record was in the worker's KV (`wrangler kv key put` returned).
    pub switched_s: f64,
    pub end_s: f64,
    pub promoted_region: String,
    /// The promoted replica's index when promoted, and the old primary's just before the kill.
    pub promoted_index: u64,
    pub primary_index_before_kill: u64,
}

/// One run in `failover.json`'s `runs`: the issue's five figures.
#[derive(Debug, Clone, Serialize)]
pub struct RunFigures {
    pub lag_ms: u64,
    /// Seconds without a successful write: from the last write acknowledged before the kill
    /// to the first one acknowledged after it.
    pub write_gap_s: f64,
    /// Writes acknowledged to a client (201) that the new primary lacks.
    pub lost_acknowledged_writes: usize,
    /// Reads with no answer or a 5xx (a read-back's 404 is not a failure, see below).
    pub failed_reads: usize,
    /// A writer's read-back of its own acknowledged note answered 404 while the note exists in
    /// the new history (a read-back of a lost note is expected to miss it).
    pub ryw_violations: usize,
}

/// The rest of a run, beside the figures in `failover.json`'s `details`.
#[derive(Debug, Clone, Serialize)]
pub struct RunDetails {
    pub lag_ms: u64,
    pub timeline: Timeline,
    pub writes_acknowledged: usize,
    /// Writes answered with an error or not at all.
    pub writes_refused: usize,
    pub reads: usize,
    /// Read-backs of lost notes (404, as they should be).
    pub reads_of_lost_writes: usize,
    /// When the first write after the kill was acknowledged.
    pub first_write_after_kill_s: Option<f64>,
    pub lost_notes: Vec<String>,
}

pub struct RunResult {
    pub figures: RunFigures,
    pub details: RunDetails,
    pub samples: Vec<Sample>,
    /// Every note the new primary holds at the end.
    pub survived: BTreeSet<String>,
}

fn round2(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

fn is_read(sample: &Sample) -> bool {
    matches!(sample.op, Op::ReadOwn | Op::ReadPublic)
}

/// A read with no usable answer: none at all, a 5xx, or (for a public read) anything but 200.
pub fn failed_read(sample: &Sample) -> bool {
    match (sample.op, sample.status) {
        (_, None) => true,
        (Op::ReadOwn, Some(status)) => !matches!(status, 200 | 404),
        (Op::ReadPublic, Some(status)) => status != 200,
        (Op::Write, _) => false,
    }
}

/// A read-back that missed a note the history still has.
pub fn ryw_violation(sample: &Sample, survived: &BTreeSet<String>) -> bool {
    sample.op == Op::ReadOwn
        && sample.status == Some(404)
        && sample.note.as_ref().is_some_and(|id| survived.contains(id))
}

pub fn acknowledged(sample: &Sample) -> Option<&str> {
    (sample.op == Op::Write && sample.status == Some(201)).then_some(sample.note.as_deref()).flatten()
}

pub fn evaluate(lag_ms: u64, timeline: Timeline, samples: Vec<Sample>, survived: BTreeSet<String>) -> RunResult {
    let acks: Vec<&Sample> = samples.iter().filter(|sample| acknowledged(sample).is_some()).collect();
    // A write's side of the kill is where it started: an answer that arrives just after the
    // kill was committed before it.
    let last_before = acks.iter().filter(|s| s.started_s < timeline.kill_s).map(|s| s.done_s).fold(0.0, f64::max);
    let first_after = acks.iter().filter(|s| s.started_s >= timeline.kill_s).map(|s| s.done_s).reduce(f64::min);
    let write_gap_s = round2(first_after.unwrap_or(timeline.end_s) - last_before);
    let lost_notes: Vec<String> =
        acks.iter().filter_map(|s| acknowledged(s)).filter(|id| !survived.contains(*id)).map(String::from).collect();
    let reads: Vec<&Sample> = samples.iter().filter(|sample| is_read(sample)).collect();
    let figures = RunFigures {
        lag_ms,
        write_gap_s,
        lost_acknowledged_writes: lost_notes.len(),
        failed_reads: reads.iter().filter(|sample| failed_read(sample)).count(),
        ryw_violations: reads.iter().filter(|sample| ryw_violation(sample, &survived)).count(),
    };
    let details = RunDetails {
        lag_ms,
        writes_acknowledged: acks.len(),
        writes_refused: samples.iter().filter(|s| s.op == Op::Write && s.status != Some(201)).count(),
        reads: reads.len(),
        reads_of_lost_writes: reads
            .iter()
            .filter(|s| s.op == Op::ReadOwn && s.status == Some(404))
            .filter(|s| s.note.as_ref().is_some_and(|id| !survived.contains(id)))
            .count(),
        first_write_after_kill_s: first_after.map(round2),
        lost_notes,
        timeline,
    };
    RunResult { figures, details, samples, survived }
}

/// `{"runs": [...], "details": [...]}`: the issue's figures, then how each run went.
#[derive(Serialize)]
pub struct Report<'a> {
    pub runs: Vec<&'a RunFigures>,
    pub details: Vec<&'a RunDetails>,
}

pub fn table(results: &[RunResult]) -> String {
    let mut lines = vec![
        "| lag ms | write gap s | lost acknowledged writes | failed reads | RYW violations | writes ok / refused | reads | promoted (index) | kill → detected → promoted → record (s) |".to_string(),
        "|---:|---:|---:|---:|---:|---:|---:|---|---|".to_string(),
    ];
    for result in results {
        let (f, d) = (&result.figures, &result.details);
        let t = &d.timeline;
        lines.push(format!(
            "| {} | {:.2} | {} | {} | {} | {} / {} | {} | {} ({} of {}) | {:.2} → {:.2} → {:.2} |",
            f.lag_ms,
            f.write_gap_s,
            f.lost_acknowledged_writes,
            f.failed_reads,
            f.ryw_violations,
            d.writes_acknowledged,
            d.writes_refused,
            d.reads,
            t.promoted_region,
            t.promoted_index,
            t.primary_index_before_kill,
            t.detected_s - t.kill_s,
            t.promoted_s - t.kill_s,
            t.switched_s - t.kill_s,
        ));
    }
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(op: Op, started_s: f64, done_s: f64, status: Option<u16>, note: Option<&str>) -> Sample {
        Sample { region: "na", op, started_s, done_s, status, note: note.map(String::from) }
    }

    fn timeline() -> Timeline {
        Timeline {
            kill_s: 10.0,
            detected_s: 10.1,
            promoted_s: 10.3,
            switched_s: 12.5,
            end_s: 20.0,
            promoted_region: "eu".into(),
            promoted_index: 90,
            primary_index_before_kill: 100,
        }
    }

    #[test]
    fn figures_count_by_the_new_history() {
        let survived: BTreeSet<String> = ["a", "c"].into_iter().map(String::from).collect();
        let samples = vec![
            sample(Op::Write, 9.0, 9.2, Some(201), Some("a")),
            // Answered after the kill but sent before: committed by the old primary, then lost.
            sample(Op::Write, 9.9, 10.05, Some(201), Some("b")),
            sample(Op::ReadOwn, 10.06, 10.07, Some(404), Some("b")),
            sample(Op::Write, 10.2, 10.3, Some(503), None),
            sample(Op::ReadOwn, 11.0, 11.1, Some(404), Some("a")),
            sample(Op::ReadPublic, 11.0, 11.1, Some(503), None),
            sample(Op::ReadPublic, 11.0, 11.1, None, None),
            sample(Op::Write, 13.0, 13.4, Some(201), Some("c")),
        ];
        let result = evaluate(200, timeline(), samples, survived);
        let f = &result.figures;
        assert_eq!((f.write_gap_s, f.lost_acknowledged_writes, f.failed_reads, f.ryw_violations), (3.35, 1, 2, 1));
        assert_eq!((result.details.reads_of_lost_writes, result.details.writes_refused), (1, 1));
        assert_eq!(result.details.lost_notes, ["b"]);
        let json = serde_json::to_string(&result.figures).unwrap();
        assert_eq!(
            json,
            r#"{"lag_ms":200,"write_gap_s":3.35,"lost_acknowledged_writes":1,"failed_reads":2,"ryw_violations":1}"#
        );
    }

    #[test]
    fn without_a_write_after_the_kill_the_gap_runs_to_the_end() {
        let samples = vec![sample(Op::Write, 9.0, 9.5, Some(201), Some("a"))];
        let result = evaluate(0, timeline(), samples, ["a".to_string()].into());
        assert_eq!(result.figures.write_gap_s, 10.5);
        assert_eq!(result.details.first_write_after_kill_s, None);
    }
}
