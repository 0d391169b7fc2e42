//! The bench's chart as a hand-written SVG, in the region lab's style (`region_lab/svg.rs`):
//! two panels, requests per second and Worker CPU µs per request, a group of bars per shape
//! (edgestack, peer, floor) with values, and the ratios under each group.

use std::fmt::Write as _;

use super::report::{Figures, Results, ShapeResult};
use crate::svg::{escape, nice_axis};

/// edgestack, peer, floor (the region lab's first colours; the floor in grey).
const COLOURS: [(&str, &str); 3] =
    [("edgestack", "#4e79a7"), ("JS peer", "#f28e2b"), ("floor (runtime only)", "#9d9d9d")];

const BAR: f64 = 26.0;
const BAR_GAP: f64 = 4.0;
const GROUP_GAP: f64 = 56.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 24.0;
const TOP: f64 = 74.0;
const PANEL_HEIGHT: f64 = 220.0;
const PANEL_GAP: f64 = 110.0;
const BOTTOM: f64 = 96.0;

pub fn render(results: &Results) -> String {
    let group_width = 3.0 * BAR + 2.0 * BAR_GAP;
    let shapes = &results.shapes;
    let plot_width = (shapes.len() as f64 * (group_width + GROUP_GAP) + GROUP_GAP).max(720.0);
    let width = LEFT + plot_width + RIGHT;
    let height = TOP + 2.0 * PANEL_HEIGHT + PANEL_GAP + BOTTOM;
    let mut svg =
        crate::svg::open(width, height, LEFT, "edgestack vs the JavaScript Worker a team would write (bench peer)");
    let load = results.load_average.map_or_else(String::new, |(start, end)| format!(" · load {start:.1} → {end:.1}"));
    let subtitle = format!(
        "{} · {}{load} · wrk 2 threads / 16 connections · {} round(s) × {} s per shape and side · medians",
        results.date, results.machine, results.rounds, results.seconds
    );
    let _ = writeln!(svg, r##"<text x="{LEFT}" y="50" font-size="12" fill="#444">{}</text>"##, escape(&subtitle));

    let layout = Layout { plot_width, group_width, count: shapes.len() };
    let rps_top = TOP;
    panel(
        &mut svg,
        &layout,
        rps_top,
        "requests per second",
        shapes,
        |f| f.rps,
        |shape| format!("req/s ÷ {:.2}", shape.rps_ratio),
    );
    let cpu_top = TOP + PANEL_HEIGHT + PANEL_GAP;
    panel(
        &mut svg,
        &layout,
        cpu_top,
        "Worker CPU µs per request",
        shapes,
        |f| f.cpu_us,
        |shape| match shape.own_cpu_ratio {
            Some(ratio) => format!("own CPU {ratio:.1}×"),
            None => "own CPU n/a".into(),
        },
    );
    legend(&mut svg, cpu_top + PANEL_HEIGHT + 52.0);
    svg.push_str("</svg>\n");
    svg
}

struct Layout {
    plot_width: f64,
    group_width: f64,
    count: usize,
}

impl Layout {
    fn group_x(&self, index: usize) -> f64 {
        let used = self.count as f64 * (self.group_width + GROUP_GAP) - GROUP_GAP;
        LEFT + (self.plot_width - used) / 2.0 + index as f64 * (self.group_width + GROUP_GAP)
    }
}

fn panel(
    svg: &mut String,
    layout: &Layout,
    top: f64,
    title: &str,
    shapes: &[ShapeResult],
    value: impl Fn(&Figures) -> f64,
    caption: impl Fn(&ShapeResult) -> String,
) {
    let largest = shapes
        .iter()
        .flat_map(|shape| [&shape.edgestack, &shape.peer, &shape.floor])
        .map(&value)
        .filter(|v| v.is_finite())
        .fold(0.0_f64, f64::max);
    let (axis_max, step) = nice_axis(largest);
    let y = |v: f64| top + PANEL_HEIGHT - (v / axis_max).clamp(0.0, 1.0) * PANEL_HEIGHT;
    let mut tick = 0.0;
    while tick <= axis_max + f64::EPSILON {
        let ty = y(tick);
        let _ = writeln!(
            svg,
            r##"<line x1="{LEFT}" y1="{ty:.1}" x2="{:.1}" y2="{ty:.1}" stroke="#ddd" stroke-width="1"/>"##,
            LEFT + layout.plot_width
        );
        let _ = writeln!(
            svg,
            r##"<text x="{:.1}" y="{:.1}" font-size="11" text-anchor="end" fill="#333">{tick:.0}</text>"##,
            LEFT - 6.0,
            ty + 4.0
        );
        tick += step;
    }
    let _ = writeln!(
        svg,
        r##"<text transform="translate(20 {:.1}) rotate(-90)" font-size="12" text-anchor="middle" fill="#333">{}</text>"##,
        top + PANEL_HEIGHT / 2.0,
        escape(title)
    );
    let _ = writeln!(
        svg,
        r##"<line x1="{LEFT}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#333" stroke-width="1"/>"##,
        top + PANEL_HEIGHT,
        LEFT + layout.plot_width,
        top + PANEL_HEIGHT
    );
    for (index, shape) in shapes.iter().enumerate() {
        let x = layout.group_x(index);
        for (bar_index, figures) in [&shape.edgestack, &shape.peer, &shape.floor].into_iter().enumerate() {
            let (_, colour) = COLOURS[bar_index];
            bar(svg, x + bar_index as f64 * (BAR + BAR_GAP), value(figures), colour, &y);
        }
        let centre = x + layout.group_width / 2.0;
        let _ = writeln!(
            svg,
            r#"<text x="{centre:.1}" y="{:.1}" font-size="11" font-weight="bold" text-anchor="middle">{}</text>"#,
            top + PANEL_HEIGHT + 16.0,
            escape(&short_name(shape.name))
        );
        let _ = writeln!(
            svg,
            r##"<text x="{centre:.1}" y="{:.1}" font-size="11" text-anchor="middle" fill="#333">{}</text>"##,
            top + PANEL_HEIGHT + 31.0,
            escape(&caption(shape))
        );
    }
}

/// A bar with its value above it; an unmeasured value is a "–" on the axis, not a zero bar.
fn bar(svg: &mut String, x: f64, value: f64, colour: &str, y: &impl Fn(f64) -> f64) {
    let base = y(0.0);
    let centre = x + BAR / 2.0;
    if !value.is_finite() {
        let _ = writeln!(
            svg,
            r##"<text x="{centre:.1}" y="{:.1}" font-size="11" text-anchor="middle" fill="#888">–</text>"##,
            base - 4.0
        );
        return;
    }
    let top = y(value);
    let _ = writeln!(
        svg,
        r#"<rect x="{x:.1}" y="{top:.1}" width="{BAR}" height="{:.1}" fill="{colour}"><title>{value:.0}</title></rect>"#,
        (base - top).max(0.5)
    );
    let _ = writeln!(
        svg,
        r##"<text x="{centre:.1}" y="{:.1}" font-size="9" text-anchor="middle" fill="#222">{value:.0}</text>"##,
        top - 3.0
    );
}

fn legend(svg: &mut String, top: f64) {
    let mut x = LEFT;
    for (label, colour) in COLOURS {
        let _ = writeln!(svg, r#"<rect x="{x:.1}" y="{:.1}" width="12" height="12" fill="{colour}"/>"#, top - 10.0);
        let _ = writeln!(svg, r#"<text x="{:.1}" y="{top:.1}" font-size="12">{}</text>"#, x + 18.0, escape(label));
        x += 40.0 + 7.0 * label.len() as f64;
    }
    let _ = writeln!(
        svg,
        r##"<text x="{LEFT}" y="{:.1}" font-size="12" fill="#444">req/s ÷: edgestack ÷ peer · own CPU: (edgestack − floor) ÷ (peer − floor) CPU µs per request</text>"##,
        top + 20.0
    );
}

/// `GET /api/public/notes/{id}, cached` → `public note, cached`: the groups are narrow.
fn short_name(name: &str) -> String {
    match name {
        n if n.starts_with("GET /api/health") => "health".into(),
        n if n.starts_with("GET /api/public/notes/{id}") => {
            format!("public note,{}", n.split(',').nth(1).unwrap_or_default())
        }
        n if n.starts_with("GET /api/notes/{id}") => "own note (session)".into(),
        n if n.starts_with("POST /api/notes") => "create note".into(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_both_panels_with_ratios_and_dashes_for_missing_figures() {
        let figures = |rps: f64, cpu_us: f64| Figures { rps, cpu_us, ..Figures::default() };
        let results = Results {
            shapes: vec![ShapeResult {
                key: "public-note-cached",
                name: "GET /api/public/notes/{id}, cached",
                edgestack: figures(900.0, 1100.0),
                peer: figures(1000.0, 800.0),
                floor: figures(f64::NAN, 650.0),
                rps_ratio: 0.9,
                rps_ratio_range: (0.85, 0.95),
                own_cpu_ratio: Some(3.0),
                own_cpu_interval: None,
            }],
            rounds: 1,
            seconds: 2,
            machine: "nproc 2, <cpu>".into(),
            date: "2026-11-30T00:00:00Z".into(),
            load_average: Some((2.4, 2.6)),
        };
        let svg = render(&results);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("req/s ÷ 0.90") && svg.contains("own CPU 3.0×"), "{svg}");
        assert!(svg.contains("public note, cached"), "{svg}");
        assert!(svg.contains("nproc 2, &lt;cpu&gt; · load 2.4 → 2.6"), "escaped, with the load: {svg}");
        assert_eq!(svg.matches(">–</text>").count(), 1, "the missing floor req/s");
    }
}
