//! The latency chart as a hand-written SVG: per region a group of bars, per configuration a
//! solid p50 bar beside a lighter p95 bar, with values, axis and legend.

use std::fmt::Write as _;

use super::report::{ConfigurationResult, Report};
use crate::svg::{escape, nice_axis};

/// One colour per configuration, in order (enough for Level 5 and a few more).
const PALETTE: [&str; 6] = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#b07aa1"];

const BAR: f64 = 22.0;
const PAIR_GAP: f64 = 2.0;
const CONFIG_GAP: f64 = 12.0;
const GROUP_GAP: f64 = 48.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 24.0;
const TOP: f64 = 90.0;
const PLOT_HEIGHT: f64 = 340.0;
const BOTTOM: f64 = 56.0;
const LEGEND_LINE: f64 = 18.0;

pub fn render(report: &Report) -> String {
    let configurations = &report.configurations;
    let regions: Vec<String> = report.round_trip_ms.regions.clone();
    let per_config = 2.0 * BAR + PAIR_GAP;
    let group_width =
        configurations.len() as f64 * per_config + configurations.len().saturating_sub(1) as f64 * CONFIG_GAP;
    let plot_width = (regions.len() as f64 * group_width + (regions.len() as f64 + 1.0) * GROUP_GAP).max(720.0);
    let width = LEFT + plot_width + RIGHT;
    let height = TOP + PLOT_HEIGHT + BOTTOM + (configurations.len() as f64 + 1.0) * LEGEND_LINE;
    let largest = configurations
        .iter()
        .flat_map(|configuration| configuration.regions.iter())
        .filter_map(|region| region.latency.p95_ms)
        .fold(0.0_f64, f64::max);
    let (axis_max, step) = nice_axis(largest);
    let y = |ms: f64| TOP + PLOT_HEIGHT - (ms / axis_max).min(1.0) * PLOT_HEIGHT;

    let mut svg =
        crate::svg::open(width, height, LEFT, "edgestack region lab: request latency per region (client side)");
    for (line, text) in subtitle(report).iter().enumerate() {
        let _ = writeln!(
            svg,
            r##"<text x="{LEFT}" y="{}" font-size="12" fill="#444">{}</text>"##,
            50 + 16 * line,
            escape(text)
        );
    }

    // Grid and y axis.
    let mut tick = 0.0;
    while tick <= axis_max + f64::EPSILON {
        let ty = y(tick);
        let _ = writeln!(
            svg,
            r##"<line x1="{LEFT}" y1="{ty:.1}" x2="{:.1}" y2="{ty:.1}" stroke="#ddd" stroke-width="1"/>"##,
            LEFT + plot_width
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
        r##"<text transform="translate(18 {:.1}) rotate(-90)" font-size="12" text-anchor="middle" fill="#333">latency (ms)</text>"##,
        TOP + PLOT_HEIGHT / 2.0
    );
    let _ = writeln!(
        svg,
        r##"<line x1="{LEFT}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#333" stroke-width="1"/>"##,
        TOP + PLOT_HEIGHT,
        LEFT + plot_width,
        TOP + PLOT_HEIGHT
    );

    let offset = (plot_width - regions.len() as f64 * (group_width + GROUP_GAP) + GROUP_GAP) / 2.0;
    for (region_index, region) in regions.iter().enumerate() {
        let group_x = LEFT + offset + region_index as f64 * (group_width + GROUP_GAP);
        for (config_index, configuration) in configurations.iter().enumerate() {
            let colour = PALETTE.get(config_index % PALETTE.len()).copied().unwrap_or("#888");
            let x = group_x + config_index as f64 * (per_config + CONFIG_GAP);
            let figures = configuration.regions.iter().find(|r| &r.region == region);
            let p50 = figures.and_then(|r| r.latency.p50_ms);
            let p95 = figures.and_then(|r| r.latency.p95_ms);
            bar(&mut svg, x, p50, colour, 1.0, &y);
            bar(&mut svg, x + BAR + PAIR_GAP, p95, colour, 0.45, &y);
        }
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" font-size="14" font-weight="bold" text-anchor="middle">{}</text>"#,
            group_x + group_width / 2.0,
            TOP + PLOT_HEIGHT + 22.0,
            escape(&region_caption(region, report))
        );
    }
    legend(&mut svg, configurations, TOP + PLOT_HEIGHT + 48.0);
    svg.push_str("</svg>\n");
    svg
}

/// A bar with its value above it; a missing value is a "–" on the axis, not a zero bar.
fn bar(svg: &mut String, x: f64, value: Option<f64>, colour: &str, opacity: f64, y: &impl Fn(f64) -> f64) {
    let base = y(0.0);
    let centre = x + BAR / 2.0;
    match value {
        Some(ms) => {
            let top = y(ms);
            let _ = writeln!(
                svg,
                r#"<rect x="{x:.1}" y="{top:.1}" width="{BAR}" height="{:.1}" fill="{colour}" fill-opacity="{opacity}"><title>{ms:.1} ms</title></rect>"#,
                (base - top).max(0.5)
            );
            let _ = writeln!(
                svg,
                r##"<text x="{centre:.1}" y="{:.1}" font-size="9" text-anchor="middle" fill="#222">{ms:.0}</text>"##,
                top - 3.0
            );
        }
        None => {
            let _ = writeln!(
                svg,
                r##"<text x="{centre:.1}" y="{:.1}" font-size="11" text-anchor="middle" fill="#888">–</text>"##,
                base - 4.0
            );
        }
    }
}

fn legend(svg: &mut String, configurations: &[ConfigurationResult], top: f64) {
    // One line per configuration: descriptions are long, and Level 5 and later add lines.
    for (index, configuration) in configurations.iter().enumerate() {
        let colour = PALETTE.get(index % PALETTE.len()).copied().unwrap_or("#888");
        let line_y = top + index as f64 * LEGEND_LINE;
        let label = format!("{}: {}", configuration.label, configuration.description);
        let _ = writeln!(svg, r#"<rect x="{LEFT}" y="{:.1}" width="12" height="12" fill="{colour}"/>"#, line_y - 10.0);
        let _ =
            writeln!(svg, r#"<text x="{:.1}" y="{line_y:.1}" font-size="12">{}</text>"#, LEFT + 18.0, escape(&label));
    }
    let _ = writeln!(
        svg,
        r##"<text x="{LEFT}" y="{:.1}" font-size="12" fill="#444">solid bar: p50 · light bar: p95 · values in ms · "–": no successful request</text>"##,
        top + configurations.len() as f64 * LEGEND_LINE + 4.0
    );
}

fn subtitle(report: &Report) -> [String; 2] {
    let trips = &report.round_trip_ms;
    let mut pairs = Vec::new();
    for (i, from) in trips.regions.iter().enumerate() {
        for (j, to) in trips.regions.iter().enumerate().skip(i + 1) {
            if let Some(ms) = trips.matrix.get(i).and_then(|row| row.get(j)) {
                pairs.push(format!("{from}↔{to} {ms}"));
            }
        }
    }
    let same = trips.matrix.first().and_then(|row| row.first()).copied().unwrap_or(0);
    [
        format!(
            "added round trips (ms): {}, same region {same}; primary in {}",
            pairs.join(", "),
            trips.primary_region
        ),
        format!(
            "{} readers + {} authors per region, {} measured requests each, ~90 % reads; one wrangler dev per region",
            report.settings.readers_per_region,
            report.settings.authors_per_region,
            report.settings.measured_requests_per_user
        ),
    ]
}

fn region_caption(region: &str, report: &Report) -> String {
    if region == report.round_trip_ms.primary_region { format!("{region} (primary)") } else { region.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_configuration_without_answers_shows_dashes_not_bars() {
        use super::super::report::{ConfigurationResult, CrossCheck, RoundTrips};
        use super::super::topology::configurations;
        use super::super::workload::Settings;
        let settings = Settings {
            authors_per_region: 1,
            readers_per_region: 1,
            warmup_requests_per_user: 0,
            measured_requests_per_user: 1,
            max_measured_seconds: 1,
            max_think_ms: 0,
            seeded_public_notes: 1,
            levels: None,
        };
        let configuration = ConfigurationResult::new(&configurations()[0], &[], 1.0, 1.0, CrossCheck::default());
        let report = Report {
            generated_at_unix_s: 0,
            round_trip_ms: RoundTrips::current(),
            settings,
            notes: Vec::new(),
            configurations: vec![configuration],
        };
        let svg = render(&report);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("na↔eu 80, na↔ap 180, eu↔ap 160, same region 5"), "{svg}");
        assert!(svg.contains("Level 1: primary only, no cache"));
        assert_eq!(svg.matches(">–</text>").count(), 6, "p50 and p95 for three regions");
        assert!(!svg.contains("<title>"), "no bars without data");
    }
}
