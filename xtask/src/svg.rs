//! What the benchmarks' and the drill's SVG charts share: round axes and text escaping.

/// An axis maximum at or above `largest` and a round tick step (1, 2, 2.5 or 5 × 10ⁿ) giving
/// 4–10 ticks; `(100, 20)` when there is nothing to scale.
pub fn nice_axis(largest: f64) -> (f64, f64) {
    if !largest.is_finite() || largest <= 0.0 {
        return (100.0, 20.0);
    }
    let magnitude = 10f64.powf((largest / 5.0).log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|factor| factor * magnitude)
        .find(|step| largest / step <= 6.0)
        .unwrap_or(10.0 * magnitude);
    ((largest / step).ceil().max(1.0) * step, step)
}

/// The start of a chart `width` × `height` px: the `<svg>` element, a white background and the
/// bold `title` at `left`, 28 px down (the subtitle goes at 50 px).
pub fn open(width: f64, height: f64, left: f64, title: &str) -> String {
    format!(
        concat!(
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" font-family="Helvetica, Arial, sans-serif">"#,
            "\n",
            r#"<rect width="100%" height="100%" fill="white"/>"#,
            "\n",
            r#"<text x="{left}" y="28" font-size="18" font-weight="bold">{title}</text>"#,
            "\n"
        ),
        width = width,
        height = height,
        left = left,
        title = escape(title)
    )
}

/// `text` safe inside an SVG element or a double-quoted attribute.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_covers_the_largest_value_with_round_steps() {
        assert_eq!(nice_axis(0.0), (100.0, 20.0));
        assert_eq!(nice_axis(f64::NAN), (100.0, 20.0));
        let (max, step) = nice_axis(437.0);
        assert!(max >= 437.0 && max / step <= 10.0 && max / step >= 4.0, "{max} {step}");
        assert_eq!(nice_axis(100.0), (100.0, 20.0));
    }

    #[test]
    fn a_chart_opens_with_its_size_background_and_escaped_title() {
        let start = open(800.0, 600.4, 70.0, "a <b>");
        assert!(
            start.starts_with(
                r#"<svg xmlns="http://www.w3.org/2000/svg" width="800" height="600" viewBox="0 0 800 600""#
            )
        );
        assert!(start.contains(r#"<rect width="100%" height="100%" fill="white"/>"#));
        assert!(
            start.ends_with("<text x=\"70\" y=\"28\" font-size=\"18\" font-weight=\"bold\">a &lt;b&gt;</text>\n"),
            "{start}"
        );
    }

    #[test]
    fn markup_characters_are_escaped() {
        assert_eq!(escape("a<b & \"c\">"), "a&lt;b &amp; &quot;c&quot;&gt;");
    }
}
