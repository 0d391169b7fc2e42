//! The drill's timeline as a hand-written SVG, in the region lab's style (`region_lab/svg.rs`):
//! a panel per run (replication lag), time on x with the kill at 0, every write and read a
//! tick in its region's lane coloured by outcome, the steps of the failover as lines, and the
//! write gap shaded.

use std::fmt::Write as _;

use super::load::Op;
use super::report::{RunResult, acknowledged, failed_read, ryw_violation};
use super::stack::REGIONS;
use crate::svg::escape;

const LEFT: f64 = 96.0;
const RIGHT: f64 = 24.0;
const TOP: f64 = 78.0;
const PLOT_WIDTH: f64 = 900.0;
const LANE: f64 = 12.0;
const ROW_GAP: f64 = 14.0;
const PANEL_GAP: f64 = 58.0;
const BOTTOM: f64 = 96.0;
const TICK: f64 = 2.0;

const OK: &str = "#59a14f";
const REFUSED: &str = "#e15759";
const LOST: &str = "#f28e2b";
const READ_OK: &str = "#4e79a7";
const VIOLATION: &str = "#b07aa1";
const MISSED_LOST: &str = "#bab0ac";

/// `(name, colour)` of the failover's steps, as drawn.
const STEPS: [(&str, &str); 4] =
    [("kill", "#e15759"), ("promoted", "#f28e2b"), ("record in KV", "#4e79a7"), ("first write after", "#59a14f")];

pub fn render(results: &[RunResult], subtitle: &str) -> String {
    let row_height = REGIONS.len() as f64 * LANE;
    let panel_height = 2.0 * row_height + ROW_GAP + 20.0;
    let width = LEFT + PLOT_WIDTH + RIGHT;
    let height = TOP + results.len() as f64 * (panel_height + PANEL_GAP) + BOTTOM;
    // One time axis for every panel, the kill at 0.
    let from = results.iter().map(|r| -r.details.timeline.kill_s).fold(0.0_f64, f64::min).floor();
    let to =
        results.iter().map(|r| r.details.timeline.end_s - r.details.timeline.kill_s).fold(1.0_f64, f64::max).ceil();
    let x = |seconds_from_kill: f64| LEFT + (seconds_from_kill - from) / (to - from) * PLOT_WIDTH;

    let mut svg = crate::svg::open(
        width,
        height,
        LEFT,
        "edgestack failover drill: the primary killed under load, a replica promoted, the worker switched",
    );
    let _ = writeln!(svg, r##"<text x="{LEFT}" y="50" font-size="12" fill="#444">{}</text>"##, escape(subtitle));

    for (index, result) in results.iter().enumerate() {
        let top = TOP + index as f64 * (panel_height + PANEL_GAP);
        panel(&mut svg, result, top, row_height, &x, (from, to));
    }
    legend(&mut svg, height - BOTTOM + 36.0);
    svg.push_str("</svg>\n");
    svg
}

fn panel(
    svg: &mut String,
    result: &RunResult,
    top: f64,
    row_height: f64,
    x: &impl Fn(f64) -> f64,
    (from, to): (f64, f64),
) {
    let (f, d) = (&result.figures, &result.details);
    let t = &d.timeline;
    let kill = t.kill_s;
    let heading = format!(
        "replication lag {} ms — write gap {:.2} s · lost acknowledged writes {} · failed reads {} · RYW violations {} · promoted {} at index {} of {}",
        f.lag_ms,
        f.write_gap_s,
        f.lost_acknowledged_writes,
        f.failed_reads,
        f.ryw_violations,
        t.promoted_region,
        t.promoted_index,
        t.primary_index_before_kill
    );
    let _ = writeln!(
        svg,
        r#"<text x="{LEFT}" y="{:.1}" font-size="13" font-weight="bold">{}</text>"#,
        top - 6.0,
        escape(&heading)
    );
    let writes_top = top + 4.0;
    let reads_top = writes_top + row_height + ROW_GAP;
    let bottom = reads_top + row_height;
    // The write gap, shaded behind everything.
    if let Some(first_after) = d.first_write_after_kill_s {
        let last_before = first_after - f.write_gap_s;
        let _ = writeln!(
            svg,
            r##"<rect x="{:.1}" y="{writes_top:.1}" width="{:.1}" height="{:.1}" fill="#e15759" fill-opacity="0.08"><title>no write acknowledged for {:.2} s</title></rect>"##,
            x(last_before - kill),
            (x(first_after - kill) - x(last_before - kill)).max(1.0),
            bottom - writes_top,
            f.write_gap_s
        );
    }
    for (row_top, label) in [(writes_top, "writes"), (reads_top, "reads")] {
        let _ = writeln!(
            svg,
            r##"<text x="{:.1}" y="{:.1}" font-size="12" text-anchor="end" fill="#333">{label}</text>"##,
            LEFT - 34.0,
            row_top + row_height / 2.0 + 4.0
        );
        for (lane, region) in REGIONS.iter().enumerate() {
            let lane_y = row_top + lane as f64 * LANE;
            let _ = writeln!(
                svg,
                r##"<text x="{:.1}" y="{:.1}" font-size="9" text-anchor="end" fill="#666">{region}</text>"##,
                LEFT - 6.0,
                lane_y + LANE - 3.0
            );
            let _ = writeln!(
                svg,
                r##"<rect x="{LEFT}" y="{lane_y:.1}" width="{PLOT_WIDTH}" height="{LANE}" fill="{}" fill-opacity="0.6"/>"##,
                if lane % 2 == 0 { "#f4f4f4" } else { "#fafafa" }
            );
        }
    }
    for sample in &result.samples {
        let lane = REGIONS.iter().position(|region| *region == sample.region).unwrap_or(0) as f64;
        let (row_top, colour) = match sample.op {
            Op::Write => {
                let colour = match acknowledged(sample) {
                    Some(id) if result.survived.contains(id) => OK,
                    Some(_) => LOST,
                    None => REFUSED,
                };
                (writes_top, colour)
            }
            Op::ReadOwn | Op::ReadPublic => {
                let colour = if failed_read(sample) {
                    REFUSED
                } else if ryw_violation(sample, &result.survived) {
                    VIOLATION
                } else if sample.status == Some(404) {
                    MISSED_LOST
                } else {
                    READ_OK
                };
                (reads_top, colour)
            }
        };
        let _ = writeln!(
            svg,
            r#"<rect x="{:.1}" y="{:.1}" width="{TICK}" height="{:.1}" fill="{colour}"/>"#,
            x(sample.done_s - kill) - TICK / 2.0,
            row_top + lane * LANE + 1.0,
            LANE - 2.0
        );
    }
    let steps = [Some(t.kill_s), Some(t.promoted_s), Some(t.switched_s), d.first_write_after_kill_s];
    for ((name, colour), at) in STEPS.iter().zip(steps) {
        let Some(at) = at else { continue };
        let _ = writeln!(
            svg,
            r#"<line x1="{0:.1}" y1="{1:.1}" x2="{0:.1}" y2="{2:.1}" stroke="{colour}" stroke-width="1.5" stroke-dasharray="4 2"><title>{name}: {3:+.2} s</title></line>"#,
            x(at - kill),
            writes_top - 2.0,
            bottom + 2.0,
            at - kill
        );
    }
    // Time axis under the panel.
    let _ = writeln!(
        svg,
        r##"<line x1="{LEFT}" y1="{0:.1}" x2="{1:.1}" y2="{0:.1}" stroke="#333" stroke-width="1"/>"##,
        bottom + 2.0,
        LEFT + PLOT_WIDTH
    );
    let mut second = from;
    while second <= to + f64::EPSILON {
        let _ = writeln!(
            svg,
            r##"<text x="{:.1}" y="{:.1}" font-size="10" text-anchor="middle" fill="#333">{second:+.0}</text>"##,
            x(second),
            bottom + 14.0
        );
        second += 1.0;
    }
}

fn legend(svg: &mut String, top: f64) {
    let items = [
        (OK, "write acknowledged"),
        (LOST, "acknowledged, then lost"),
        (REFUSED, "write refused / read failed"),
        (READ_OK, "read answered"),
        (VIOLATION, "read missed the reader's own write"),
        (MISSED_LOST, "read-back of a lost write (404)"),
    ];
    let mut x = LEFT;
    for (colour, label) in items {
        let _ = writeln!(svg, r#"<rect x="{x:.1}" y="{:.1}" width="10" height="10" fill="{colour}"/>"#, top - 9.0);
        let _ = writeln!(svg, r#"<text x="{:.1}" y="{top:.1}" font-size="11">{label}</text>"#, x + 14.0);
        x += 14.0 + 6.2 * label.len() as f64 + 18.0;
    }
    let mut x = LEFT;
    let line_y = top + 20.0;
    for (name, colour) in STEPS {
        let _ = writeln!(
            svg,
            r#"<line x1="{x:.1}" y1="{0:.1}" x2="{x:.1}" y2="{1:.1}" stroke="{colour}" stroke-width="1.5" stroke-dasharray="4 2"/>"#,
            line_y - 10.0,
            line_y + 2.0
        );
        let _ = writeln!(svg, r#"<text x="{:.1}" y="{line_y:.1}" font-size="11">{name}</text>"#, x + 6.0);
        x += 6.0 + 6.2 * name.len() as f64 + 24.0;
    }
    let _ = writeln!(
        svg,
        r##"<text x="{LEFT}" y="{:.1}" font-size="11" fill="#444">seconds from the kill · shaded: no write acknowledged · one tick per request, when its answer came, in its region's lane</text>"##,
        line_y + 20.0
    );
}

#[cfg(test)]
mod tests {
    use super::super::load::Sample;
    use super::super::report::{Timeline, evaluate};
    use super::*;

    #[test]
    fn draws_a_panel_per_run_with_its_steps_and_ticks() {
        let timeline = Timeline {
            kill_s: 4.0,
            detected_s: 4.1,
            promoted_s: 4.3,
            switched_s: 6.8,
            end_s: 12.0,
            promoted_region: "eu".into(),
            promoted_index: 50,
            primary_index_before_kill: 52,
        };
        let samples = vec![
            Sample {
                region: "eu",
                op: Op::Write,
                started_s: 3.0,
                done_s: 3.1,
                status: Some(201),
                note: Some("a".into()),
            },
            Sample { region: "ap", op: Op::Write, started_s: 5.0, done_s: 5.1, status: Some(503), note: None },
            Sample {
                region: "na",
                op: Op::Write,
                started_s: 7.0,
                done_s: 7.1,
                status: Some(201),
                note: Some("b".into()),
            },
        ];
        let runs = [
            evaluate(0, timeline.clone(), samples.clone(), ["a".to_string(), "b".to_string()].into()),
            evaluate(1000, timeline, samples, ["b".to_string()].into()),
        ];
        let svg = render(&runs, "a <test>");
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("a &lt;test&gt;"));
        assert_eq!(svg.matches("replication lag").count(), 2);
        assert!(svg.contains("replication lag 1000 ms — write gap 4.00 s · lost acknowledged writes 1"));
        assert_eq!(svg.matches(&format!("width=\"2\" height=\"10.0\" fill=\"{LOST}\"")).count(), 1, "the lost write");
        assert_eq!(svg.matches("stroke-dasharray=\"4 2\"><title>").count(), 8, "four steps per panel");
    }
}
