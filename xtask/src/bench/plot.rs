//! Line charts as SVG, written by hand (a few dozen lines beat a plotting crate and its fonts):
//! axes with round ticks, one polyline with markers per series, a legend.

use std::fmt::Write;

const WIDTH: f64 = 760.0;
const HEIGHT: f64 = 440.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 250.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 60.0;
const COLOURS: [&str; 8] = [
    "#1f77b4", "#1f77b4", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#ff7f0e", "#17becf",
];

pub struct Series {
    name: String,
    points: Vec<(f64, f64)>,
    dashed: bool,
    markers: bool,
    colour: Option<&'static str>,
}

impl Series {
    pub fn new(name: &str, points: Vec<(f64, f64)>) -> Self {
        Self {
            name: name.into(),
            points,
            dashed: false,
            markers: true,
            colour: None,
        }
    }

    pub fn dashed(mut self) -> Self {
        self.dashed = true;
        self
    }

    /// Drawn in `colour` rather than the palette's next.
    pub fn coloured(mut self, colour: &'static str) -> Self {
        self.colour = Some(colour);
        self
    }

    /// A line without a marker per point (a distribution of hundreds of samples).
    pub fn without_markers(mut self) -> Self {
        self.markers = false;
        self
    }
}

pub struct Chart {
    title: String,
    x_label: String,
    y_label: String,
    series: Vec<Series>,
}

/// A round step giving about `count` ticks over `0..=max`.
fn step(max: f64, count: f64) -> f64 {
    let raw = (max / count).max(f64::MIN_POSITIVE);
    let magnitude = 10f64.powf(raw.log10().floor());
    let fraction = raw / magnitude;
    let nice = if fraction <= 1.0 {
        1.0
    } else if fraction <= 2.0 {
        2.0
    } else if fraction <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * magnitude
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

impl Chart {
    pub fn new(title: &str, x_label: &str, y_label: &str) -> Self {
        Self {
            title: title.into(),
            x_label: x_label.into(),
            y_label: y_label.into(),
            series: Vec::new(),
        }
    }

    pub fn add(&mut self, series: Series) {
        if !series.points.is_empty() {
            self.series.push(series);
        }
    }

    pub fn svg(&self) -> String {
        let all = self.series.iter().flat_map(|s| s.points.iter());
        let (x_max, y_max) = all.fold((0f64, 0f64), |(x, y), p| (x.max(p.0), y.max(p.1)));
        let (x_step, y_step) = (step(x_max, 5.0), step(y_max, 6.0));
        let (x_top, y_top) = (
            (x_max / x_step).ceil().max(1.0) * x_step,
            (y_max / y_step).ceil().max(1.0) * y_step,
        );
        let plot_w = WIDTH - LEFT - RIGHT;
        let plot_h = HEIGHT - TOP - BOTTOM;
        let x = |v: f64| LEFT + v / x_top * plot_w;
        let y = |v: f64| TOP + plot_h - v / y_top * plot_h;
        let mut svg = String::new();
        let _ = write!(
            svg,
            r##"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="{}" y="22" font-size="15" text-anchor="middle">{}</text>
"##,
            LEFT + plot_w / 2.0,
            escape(&self.title)
        );
        let mut tick = 0.0;
        while tick <= y_top + y_step / 2.0 {
            let _ = writeln!(
                svg,
                r##"<line x1="{LEFT}" x2="{}" y1="{yy:.1}" y2="{yy:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{tick}</text>"##,
                LEFT + plot_w,
                LEFT - 6.0,
                y(tick) + 4.0,
                yy = y(tick),
            );
            tick += y_step;
        }
        let mut tick = 0.0;
        while tick <= x_top + x_step / 2.0 {
            let _ = writeln!(
                svg,
                r##"<line x1="{xx:.1}" x2="{xx:.1}" y1="{TOP}" y2="{}" stroke="#eee"/><text x="{xx:.1}" y="{}" text-anchor="middle">{tick}</text>"##,
                TOP + plot_h,
                TOP + plot_h + 18.0,
                xx = x(tick),
            );
            tick += x_step;
        }
        let _ = writeln!(
            svg,
            r##"<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#333"/>
<text x="{}" y="{}" text-anchor="middle">{}</text>
<text x="18" y="{}" text-anchor="middle" transform="rotate(-90 18 {})">{}</text>"##,
            LEFT + plot_w / 2.0,
            HEIGHT - 18.0,
            escape(&self.x_label),
            TOP + plot_h / 2.0,
            TOP + plot_h / 2.0,
            escape(&self.y_label)
        );
        for (i, series) in self.series.iter().enumerate() {
            let colour = series.colour.unwrap_or(COLOURS[i % COLOURS.len()]);
            let points: Vec<String> = series
                .points
                .iter()
                .map(|(px, py)| format!("{:.1},{:.1}", x(*px), y(*py)))
                .collect();
            let dash = if series.dashed {
                r#" stroke-dasharray="6 4""#
            } else {
                ""
            };
            let _ = writeln!(
                svg,
                r##"<polyline points="{}" fill="none" stroke="{colour}" stroke-width="2"{dash}/>"##,
                points.join(" ")
            );
            for (px, py) in series.points.iter().filter(|_| series.markers) {
                let _ = writeln!(
                    svg,
                    r##"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{colour}"/>"##,
                    x(*px),
                    y(*py)
                );
            }
            let ly = TOP + 10.0 + i as f64 * 20.0;
            let lx = LEFT + plot_w + 15.0;
            let _ = writeln!(
                svg,
                r##"<line x1="{lx}" x2="{}" y1="{ly}" y2="{ly}" stroke="{colour}" stroke-width="2"{dash}/><text x="{}" y="{}">{}</text>"##,
                lx + 24.0,
                lx + 30.0,
                ly + 4.0,
                escape(&series.name)
            );
        }
        svg.push_str("</svg>\n");
        svg
    }
}

/// `cargo xtask bench-plot IN.json OUT.svg`: a chart from measured series written down, e.g. a
/// run's table kept after the run itself was stopped. The JSON: `{"title", "x", "y",
/// "series": [{"name", "points": [[x, y], ...], "dashed"?}]}`.
pub fn from_json(input: &std::path::Path, output: &std::path::Path) -> anyhow::Result<()> {
    use anyhow::Context;
    let spec: serde_json::Value = serde_json::from_slice(&std::fs::read(input)?)
        .with_context(|| format!("{} is not JSON", input.display()))?;
    let text = |k: &str| spec[k].as_str().unwrap_or_default().to_owned();
    let mut chart = Chart::new(&text("title"), &text("x"), &text("y"));
    for series in spec["series"].as_array().context("no `series` array")? {
        let points = series["points"]
            .as_array()
            .context("a series without `points`")?
            .iter()
            .filter_map(|p| Some((p[0].as_f64()?, p[1].as_f64()?)))
            .collect();
        let mut s = Series::new(series["name"].as_str().unwrap_or("?"), points);
        if series["dashed"].as_bool() == Some(true) {
            s = s.dashed();
        }
        chart.add(s);
    }
    std::fs::write(output, chart.svg())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_every_point_is_drawn() {
        assert_eq!(step(5000.0, 5.0), 1000.0);
        assert_eq!(step(27.0, 6.0), 5.0);
        let mut chart = Chart::new("t <1>", "x", "y");
        chart.add(Series::new("a", vec![(0.0, 10.0), (5000.0, 30.0)]));
        chart.add(Series::new("empty", vec![]));
        let svg = chart.svg();
        assert_eq!(svg.matches("<circle").count(), 2);
        assert!(svg.contains("t &lt;1&gt;"));
        assert!(!svg.contains(">empty<"));
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
    }
}

/// The share of `sample` (ms) at or below each value: a cumulative distribution's points.
pub fn cumulative(sample: &[f64]) -> Vec<(f64, f64)> {
    let mut sorted = sample.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len() as f64;
    sorted
        .iter()
        .enumerate()
        .map(|(i, v)| (*v, 100.0 * (i + 1) as f64 / n))
        .collect()
}

#[cfg(test)]
mod cumulative_tests {
    #[test]
    fn the_distribution_rises_to_every_sample() {
        let points = super::cumulative(&[30.0, 10.0, 20.0, 40.0]);
        assert_eq!(
            points,
            vec![(10.0, 25.0), (20.0, 50.0), (30.0, 75.0), (40.0, 100.0)]
        );
    }
}
