//! Inline SVG line charts for the HTML report: no script, no network, readable when the page
//! is saved or mailed. Non-finite points are skipped; an empty series draws "no data".

use std::fmt::Write as _;

use super::xml_escape;
use crate::outcome::{Scale, Series};

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 260.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 28.0;
const BOTTOM: f64 = 44.0;
/// Line colours, distinguishable for the common colour-vision deficiencies.
const PALETTE: [&str; 6] = [
    "#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9",
];

/// Round tick positions covering `[lo, hi]`: steps of 1, 2 or 5 × 10ⁿ, about five of them.
pub(crate) fn ticks(lo: f64, hi: f64) -> Vec<f64> {
    let span = (hi - lo).max(f64::EPSILON);
    let raw = span / 5.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= raw)
        .unwrap_or(magnitude * 10.0);
    let first = (lo / step).floor() * step;
    let mut ticks = Vec::new();
    for i in 0..=12 {
        let tick = first + step * f64::from(i);
        ticks.push(tick);
        // Stop at the first tick that reaches the top (within rounding).
        if tick >= hi - step * 1e-9 {
            break;
        }
    }
    ticks
}

/// Ticks for a log axis over `[lo, hi]` (both > 0): 1, 2 and 5 × 10ⁿ inside the range.
pub(crate) fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let (first, last) = (lo.log10().floor() as i32, hi.log10().ceil() as i32);
    (first..=last)
        .flat_map(|n| [1.0, 2.0, 5.0].map(|m| m * 10f64.powi(n)))
        .filter(|t| *t >= lo * (1.0 - 1e-9) && *t <= hi * (1.0 + 1e-9))
        .collect()
}

/// A tick's label: as few decimals as it needs (`0.5`, `1`, `2000`).
fn tick_label(value: f64) -> String {
    let text = format!("{value:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// One chart: a title, axes with round ticks, one polyline per line, and a legend.
pub(crate) fn line_chart(series: &Series) -> String {
    let log_x = series.x_scale == Scale::Log;
    // A log axis has no place for x ≤ 0: such points are skipped like non-finite ones.
    let drawable =
        move |(x, y): &(f64, f64)| x.is_finite() && y.is_finite() && (!log_x || *x > 0.0);
    let points = || {
        series
            .lines
            .iter()
            .flat_map(|l| l.points.iter())
            .filter(|p| drawable(p))
    };
    let mut svg = String::new();
    let _ = write!(
        svg,
        r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="{title}"><text x="{LEFT}" y="18" class="t">{title}</text>"##,
        title = xml_escape(&series.title)
    );
    if points().next().is_none() {
        let _ = write!(
            svg,
            r##"<text x="{}" y="{}" class="n">no data</text></svg>"##,
            WIDTH / 2.0 - 24.0,
            HEIGHT / 2.0
        );
        return svg;
    }
    let (mut x_lo, mut x_hi, mut y_hi) = (f64::INFINITY, f64::NEG_INFINITY, 0f64);
    for (x, y) in points() {
        x_lo = x_lo.min(*x);
        x_hi = x_hi.max(*x);
        y_hi = y_hi.max(*y);
    }
    if !log_x {
        for (from, to) in &series.shaded {
            x_lo = x_lo.min(*from);
            x_hi = x_hi.max(*to);
        }
    }
    let y_ticks = ticks(0.0, y_hi.max(f64::EPSILON));
    let (x_ticks, x_min, x_max) = if log_x {
        // The axis spans the data exactly; a decade of padding would squash doubling steps.
        let x_max = x_hi.max(x_lo * 1.01);
        (log_ticks(x_lo, x_max), x_lo, x_max)
    } else {
        let x_ticks = ticks(x_lo, x_hi.max(x_lo + f64::EPSILON));
        let x_min = x_ticks.first().copied().unwrap_or(x_lo);
        let x_max = x_ticks
            .last()
            .copied()
            .unwrap_or(x_hi)
            .max(x_min + f64::EPSILON);
        (x_ticks, x_min, x_max)
    };
    let y_max = y_ticks.last().copied().unwrap_or(y_hi).max(f64::EPSILON);
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let px = |x: f64| {
        let share = if log_x {
            (x / x_min).log10() / (x_max / x_min).log10()
        } else {
            (x - x_min) / (x_max - x_min)
        };
        LEFT + share * plot_w
    };
    let py = |y: f64| TOP + plot_h - y / y_max * plot_h;
    for (from, to) in &series.shaded {
        let (a, b) = (px(from.max(x_min)), px(to.min(x_max)));
        if b > a {
            let _ = write!(
                svg,
                r##"<rect x="{a:.1}" y="{TOP}" width="{:.1}" height="{plot_h}" class="fault"><title>fault</title></rect>"##,
                b - a
            );
        }
    }
    for t in &y_ticks {
        let _ = write!(
            svg,
            r##"<line x1="{LEFT}" x2="{}" y1="{y:.1}" y2="{y:.1}" class="g"/><text x="{}" y="{:.1}" class="a" text-anchor="end">{}</text>"##,
            WIDTH - RIGHT,
            LEFT - 6.0,
            py(*t) + 4.0,
            tick_label(*t),
            y = py(*t)
        );
    }
    for t in &x_ticks {
        let _ = write!(
            svg,
            r##"<text x="{:.1}" y="{}" class="a" text-anchor="middle">{}</text>"##,
            px(*t),
            TOP + plot_h + 16.0,
            tick_label(*t)
        );
    }
    let _ = write!(
        svg,
        r##"<line x1="{LEFT}" x2="{LEFT}" y1="{TOP}" y2="{b}" class="x"/><line x1="{LEFT}" x2="{r}" y1="{b}" y2="{b}" class="x"/><text x="{cx}" y="{}" class="a" text-anchor="middle">{}</text><text x="14" y="{cy}" class="a" text-anchor="middle" transform="rotate(-90 14 {cy})">{}</text>"##,
        HEIGHT - 6.0,
        xml_escape(&series.x_label),
        xml_escape(&series.y_label),
        b = TOP + plot_h,
        r = WIDTH - RIGHT,
        cx = LEFT + plot_w / 2.0,
        cy = TOP + plot_h / 2.0,
    );
    for (i, line) in series.lines.iter().enumerate() {
        let colour = PALETTE[i % PALETTE.len()];
        let coords: Vec<String> = line
            .points
            .iter()
            .filter(|p| drawable(p))
            .map(|(x, y)| format!("{:.1},{:.1}", px(*x), py(*y)))
            .collect();
        if coords.len() == 1 {
            let _ = write!(
                svg,
                r##"<circle cx="{}" r="3" fill="{colour}"/>"##,
                coords[0].replacen(',', "\" cy=\"", 1)
            );
        } else {
            let _ = write!(
                svg,
                r##"<polyline points="{}" fill="none" stroke="{colour}" stroke-width="2"/>"##,
                coords.join(" ")
            );
        }
        let lx = LEFT + 10.0 + 150.0 * i as f64;
        let _ = write!(
            svg,
            r##"<rect x="{lx}" y="{}" width="10" height="3" fill="{colour}"/><text x="{}" y="{}" class="a">{}</text>"##,
            TOP + 2.0,
            lx + 14.0,
            TOP + 7.0,
            xml_escape(&line.name)
        );
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::{Line, Scale};

    #[test]
    fn ticks_are_round_and_cover_the_range() {
        assert_eq!(ticks(0.0, 10.0), vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
        let t = ticks(0.0, 37.0);
        assert_eq!(t.first(), Some(&0.0));
        assert!(*t.last().expect("ticks") >= 37.0);
        assert!(t.len() <= 8, "{t:?}");
        let t = ticks(100.0, 6400.0);
        assert!(
            t[0] <= 100.0 && *t.last().expect("ticks") >= 6400.0,
            "{t:?}"
        );
    }

    #[test]
    fn log_ticks_are_1_2_5_within_the_range() {
        assert_eq!(
            log_ticks(500.0, 256_000.0),
            vec![500.0, 1e3, 2e3, 5e3, 1e4, 2e4, 5e4, 1e5, 2e5]
        );
    }

    #[test]
    fn log_axis_spaces_doublings_evenly() {
        let series = Series {
            id: "x".into(),
            title: "t".into(),
            x_label: "users".into(),
            y_label: "rps".into(),
            x_scale: Scale::Log,
            lines: vec![Line {
                name: "rps".into(),
                points: vec![(0.0, 1.0), (100.0, 1.0), (200.0, 2.0), (400.0, 4.0)],
            }],
            shaded: Vec::new(),
        };
        let svg = line_chart(&series);
        let points = svg
            .split("points=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .expect("a polyline");
        let xs: Vec<f64> = points
            .split(' ')
            .map(|p| p.split(',').next().and_then(|x| x.parse().ok()).expect("x"))
            .collect();
        // x = 0 cannot be drawn on a log axis; 100 → 200 → 400 are equal steps.
        assert_eq!(xs.len(), 3, "{points}");
        assert!(((xs[1] - xs[0]) - (xs[2] - xs[1])).abs() < 0.2, "{xs:?}");
    }

    #[test]
    fn tick_labels_carry_no_trailing_zeros() {
        assert_eq!(tick_label(0.5), "0.5");
        assert_eq!(tick_label(2000.0), "2000");
        assert_eq!(tick_label(0.0), "0");
    }

    #[test]
    fn chart_draws_every_line_and_escapes_labels() {
        let series = Series {
            id: "x".into(),
            title: "p99 <ms> & more".into(),
            x_label: "s".into(),
            y_label: "ms".into(),
            x_scale: Scale::Linear,
            lines: vec![
                Line {
                    name: "p50".into(),
                    points: vec![(0.0, 1.0), (1.0, 2.0), (2.0, f64::NAN)],
                },
                Line {
                    name: "p99".into(),
                    points: vec![(0.0, 3.0), (1.0, 9.0)],
                },
            ],
            shaded: Vec::new(),
        };
        let svg = line_chart(&series);
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains("p99 &lt;ms&gt; &amp; more"));
        assert!(!svg.contains("NaN"));
        assert!(svg.ends_with("</svg>"));
        let shaded = Series {
            shaded: vec![(1.0, 2.0)],
            ..series.clone()
        };
        assert_eq!(line_chart(&shaded).matches(r#"class="fault""#).count(), 1);
        let empty = Series {
            lines: vec![],
            ..series
        };
        assert!(line_chart(&empty).contains("no data"));
    }
}
