//! The PNG plots of a run, drawn with plotters and the bundled DejaVu Sans (no system fonts).
//!
//! Every plot has time since the start of the test on x and the fault intervals shaded, one
//! colour per fault kind (the same colours as the HTML timeline).

use std::error::Error;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};

use crate::clock::ClockSource;
use crate::html::fault_rgb;
use crate::ops::Outcome;
use crate::page::Analysis;
use crate::ReportError;

/// The bundled font (reports/assets/DejaVuSans.ttf, license beside it).
static FONT_BYTES: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");
const FONT: &str = "sans-serif";
const SIZE: (u32, u32) = (1100, 480);

/// Colours of operation kinds (`f`), in order of first appearance.
pub(crate) const F_COLORS: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
    RGBColor(214, 39, 40),
];

/// One PNG written into the run folder.
#[derive(Clone, Debug)]
pub struct PlotFile {
    pub path: PathBuf,
    /// File name, relative to the run folder (how report.html refers to it).
    pub name: &'static str,
    pub caption: String,
}

type DrawResult = Result<(), Box<dyn Error>>;
/// A plot to draw: file name, caption, and the drawing into a path.
type PlotJob<'a> = (&'static str, String, Box<dyn Fn(&Path) -> DrawResult + 'a>);
/// A quantile line: name, colour, and how to read it from a window.
type QuantileLine = (&'static str, RGBColor, fn(&crate::stats::WindowQuantiles) -> f64);

pub(crate) fn ensure_font() {
    static REGISTERED: OnceLock<()> = OnceLock::new();
    REGISTERED.get_or_init(|| {
        // The font is compiled in; failing to parse it is a build defect, not an input error.
        register_font(FONT, FontStyle::Normal, FONT_BYTES)
            .unwrap_or_else(|_| panic!("bundled DejaVuSans.ttf does not parse"));
    });
}

/// Writes every plot that has data, and removes stale plots of an earlier render that no
/// longer apply (e.g. clock-skew.png when clocks were not skewed).
pub fn write_all(dir: &Path, a: &Analysis) -> Result<Vec<PlotFile>, ReportError> {
    ensure_font();
    let mut out = Vec::new();
    let completed = a.ops.ops.iter().any(|o| o.complete_ns.is_some());
    let mut plots: Vec<PlotJob<'_>> = Vec::new();
    if completed {
        plots.push((
            "latency-raw.png",
            "Latency of every operation by kind (colour) and outcome (● ok, × fail, ▲ info), log scale; faults shaded."
                .into(),
            Box::new(|p| latency_raw(p, a)),
        ));
        plots.push((
            "latency-quantiles.png",
            format!(
                "Latency quantiles of ok operations in {} windows, log scale; faults shaded.",
                crate::html::duration(a.window_ns)
            ),
            Box::new(|p| latency_quantiles(p, a)),
        ));
        plots.push((
            "rate.png",
            format!(
                "Throughput by outcome (completions per second, {} windows); faults shaded.",
                crate::html::duration(a.window_ns)
            ),
            Box::new(|p| rate(p, a)),
        ));
    }
    if let Some(c) = &a.clocks {
        let source = match c.source {
            ClockSource::ResultsSamples => "offsets sampled from the nodes (results.json)",
            ClockSource::NemesisEvents => "offsets commanded by the nemesis (history)",
        };
        plots.push((
            "clock-skew.png",
            format!("Clock offset per node: {source}; faults shaded."),
            Box::new(|p| clock_skew(p, a)),
        ));
    }
    for name in ["latency-raw.png", "latency-quantiles.png", "rate.png", "clock-skew.png"] {
        if !plots.iter().any(|p| p.0 == name) {
            let stale = dir.join(name);
            if stale.exists() {
                std::fs::remove_file(&stale).map_err(|e| ReportError::io(&stale, e))?;
            }
        }
    }
    for (name, caption, draw) in plots {
        let path = dir.join(name);
        // Same extension, so plotters picks PNG; renamed into place when complete.
        let tmp = dir.join(format!(".tmp-{name}"));
        draw(&tmp).map_err(|e| ReportError::Plot { path: path.clone(), message: e.to_string() })?;
        std::fs::rename(&tmp, &path).map_err(|e| ReportError::io(&path, e))?;
        out.push(PlotFile { path, name, caption });
    }
    Ok(out)
}

fn secs(ns: u64) -> f64 {
    ns as f64 / 1e9
}

fn x_max(a: &Analysis) -> f64 {
    secs(a.ops.end_ns).max(1e-3)
}

/// Shades the fault intervals of `a` on a chart whose y range is `y0..y1`; one legend entry per
/// kind.
fn shade_faults<'a, DB: DrawingBackend + 'a, Y: plotters::coord::ranged1d::Ranged<ValueType = f64>>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<plotters::coord::types::RangedCoordf64, Y>>,
    a: &Analysis,
    y0: f64,
    y1: f64,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    for kind in a.faults.kinds() {
        let (r, g, b) = fault_rgb(&kind);
        let color = RGBColor(r, g, b);
        let rects = a.faults.intervals.iter().filter(|iv| iv.kind == kind).map(move |iv| {
            Rectangle::new(
                [(secs(iv.start_ns), y0), (secs(iv.end_ns.max(iv.start_ns + 1_000_000)), y1)],
                color.mix(0.18).filled(),
            )
        });
        chart
            .draw_series(rects)?
            .label(format!("fault: {kind}"))
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 14, y + 6)], color.mix(0.35).filled()));
    }
    Ok(())
}

/// A log axis range from the decade at or below `lo` to the decade above `hi` (so every
/// decade line is labelled), at least one decade wide; `lo` is at least 1 µs (in ms).
fn decades(lo: f64, hi: f64) -> (f64, f64) {
    let lo = if lo.is_finite() { lo.max(1e-3) } else { 1e-3 };
    let hi = if hi.is_finite() { hi.max(lo) } else { lo };
    let y0 = 10f64.powf(lo.log10().floor());
    let y1 = 10f64.powf((hi * 1.05).log10().ceil()).max(y0 * 10.0);
    (y0, y1)
}

/// A log-axis label with no needless digits: 0.1, 1, 10, 100.
fn log_label(v: f64) -> String {
    if v <= 0.0 || !v.is_finite() {
        return format!("{v}");
    }
    let decimals = (-v.log10().floor()).max(0.0) as usize;
    format!("{v:.decimals$}")
}

pub(crate) fn font(size: u32) -> FontDesc<'static> {
    (FONT, size).into_font()
}

fn latency_raw(path: &Path, a: &Analysis) -> DrawResult {
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let lat_ms: Vec<f64> =
        a.ops.ops.iter().filter_map(|o| o.latency_ns()).map(|l| (l as f64 / 1e6).max(1e-3)).collect();
    let lo = lat_ms.iter().copied().fold(f64::INFINITY, f64::min).max(1e-3);
    let hi = lat_ms.iter().copied().fold(0.0, f64::max);
    let (y0, y1) = decades(lo, hi);
    let mut chart = ChartBuilder::on(&root)
        .caption("Latency of every operation", font(20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..x_max(a), (y0..y1).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("time since start (s)")
        .y_desc("latency (ms)")
        .y_label_formatter(&|v| log_label(*v))
        .label_style(font(13))
        .light_line_style(WHITE.mix(0.0))
        .draw()?;
    shade_faults(&mut chart, a, y0, y1)?;
    // Rare outcomes are drawn last so that they stay visible over the many ok points; big
    // histories get smaller, lighter points.
    let radius = if a.ops.ops.len() > 20_000 { 1 } else { 2 };
    for outcome in [Outcome::Ok, Outcome::Fail, Outcome::Info] {
        for (fi, fname) in a.ops.fs.iter().enumerate() {
            let color = F_COLORS[fi % F_COLORS.len()];
            let pts = a
                .ops
                .ops
                .iter()
                .filter(|o| o.f == fi && o.outcome == outcome)
                .filter_map(|o| o.latency_ns().map(|l| (secs(o.invoke_ns), (l as f64 / 1e6).max(1e-3))));
            let mut any = false;
            let anno =
                match outcome {
                    Outcome::Ok => chart.draw_series(
                        pts.inspect(|_| any = true).map(|p| Circle::new(p, radius, color.mix(0.7).filled())),
                    )?,
                    Outcome::Fail => chart
                        .draw_series(pts.inspect(|_| any = true).map(|p| Cross::new(p, 3, color.stroke_width(1))))?,
                    _ => chart
                        .draw_series(pts.inspect(|_| any = true).map(|p| TriangleMarker::new(p, 4, color.filled())))?,
                };
            if any {
                let label = format!("{} {}", crate::html::truncate(fname, 20), outcome.name());
                match outcome {
                    Outcome::Ok => anno.label(label).legend(move |(x, y)| Circle::new((x + 7, y), 3, color.filled())),
                    Outcome::Fail => {
                        anno.label(label).legend(move |(x, y)| Cross::new((x + 7, y), 4, color.stroke_width(2)))
                    }
                    _ => anno.label(label).legend(move |(x, y)| TriangleMarker::new((x + 7, y), 4, color.filled())),
                };
            }
        }
    }
    legend(&mut chart)?;
    root.present()?;
    Ok(())
}

fn legend<'a, DB: DrawingBackend + 'a, X: plotters::coord::ranged1d::Ranged, Y: plotters::coord::ranged1d::Ranged>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<X, Y>>,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .label_font(font(12))
        .draw()?;
    Ok(())
}

fn latency_quantiles(path: &Path, a: &Analysis) -> DrawResult {
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let w = &a.quantiles;
    let lo = w.iter().map(|q| q.p50).fold(f64::INFINITY, f64::min).max(1e-3);
    let hi = w.iter().map(|q| q.max).fold(0.0, f64::max);
    let (y0, y1) = decades(lo, hi);
    let mut chart = ChartBuilder::on(&root)
        .caption("Latency quantiles (ok operations)", font(20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..x_max(a), (y0..y1).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("time since start (s)")
        .y_desc("latency (ms)")
        .y_label_formatter(&|v| log_label(*v))
        .label_style(font(13))
        .light_line_style(WHITE.mix(0.0))
        .draw()?;
    shade_faults(&mut chart, a, y0, y1)?;
    // Drawn from max down so that the lower quantiles stay visible where they coincide.
    let series: [QuantileLine; 4] = [
        ("max", RGBColor(214, 39, 40), |q| q.max),
        ("p99", RGBColor(255, 127, 14), |q| q.p99),
        ("p95", RGBColor(44, 160, 44), |q| q.p95),
        ("p50", RGBColor(31, 119, 180), |q| q.p50),
    ];
    for (name, color, get) in series {
        let pts: Vec<(f64, f64)> = w.iter().map(|q| (secs(q.mid_ns), get(q).max(1e-3))).collect();
        chart
            .draw_series(LineSeries::new(pts.iter().copied(), color.stroke_width(2)))?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2)));
        chart.draw_series(pts.iter().map(|&p| Circle::new(p, 2, color.filled())))?;
    }
    legend(&mut chart)?;
    root.present()?;
    Ok(())
}

fn rate(path: &Path, a: &Analysis) -> DrawResult {
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let hi = a.rates.iter().flat_map(|(_, pts)| pts.iter().map(|p| p.1)).fold(0.0, f64::max).max(1.0) * 1.15;
    let mut chart = ChartBuilder::on(&root)
        .caption("Throughput by outcome", font(20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..x_max(a), 0f64..hi)?;
    chart
        .configure_mesh()
        .x_desc("time since start (s)")
        .y_desc("operations / s")
        .label_style(font(13))
        .light_line_style(WHITE.mix(0.0))
        .draw()?;
    shade_faults(&mut chart, a, 0.0, hi)?;
    for (outcome, pts) in &a.rates {
        let color = match outcome {
            Outcome::Ok => RGBColor(44, 160, 44),
            Outcome::Fail => RGBColor(214, 39, 40),
            Outcome::Info => RGBColor(230, 160, 20),
            Outcome::Pending => RGBColor(127, 127, 127),
        };
        chart
            .draw_series(LineSeries::new(pts.iter().map(|&(t, r)| (secs(t), r)), color.stroke_width(2)))?
            .label(outcome.name())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2)));
    }
    legend(&mut chart)?;
    root.present()?;
    Ok(())
}

fn clock_skew(path: &Path, a: &Analysis) -> DrawResult {
    let Some(clocks) = &a.clocks else { return Ok(()) };
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let all = clocks.series.iter().flat_map(|s| s.points.iter().map(|p| p.1));
    let (lo, hi) = all.fold((0.0f64, 0.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let pad = ((hi - lo) * 0.1).max(1.0);
    let (y0, y1) = (lo - pad, hi + pad);
    let x1 = clocks.series.iter().flat_map(|s| s.points.iter().map(|p| secs(p.0))).fold(x_max(a), f64::max);
    let mut chart = ChartBuilder::on(&root)
        .caption("Clock offset per node", font(20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..x1, y0..y1)?;
    chart
        .configure_mesh()
        .x_desc("time since start (s)")
        .y_desc("offset from true time (ms)")
        .label_style(font(13))
        .light_line_style(WHITE.mix(0.0))
        .draw()?;
    shade_faults(&mut chart, a, y0, y1)?;
    for (i, s) in clocks.series.iter().enumerate() {
        let color = F_COLORS[i % F_COLORS.len()];
        chart
            .draw_series(LineSeries::new(s.points.iter().map(|&(t, o)| (secs(t), o)), color.stroke_width(2)))?
            .label(crate::html::truncate(&s.node, 24))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2)));
    }
    legend(&mut chart)?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::decades;

    #[test]
    fn log_ranges_span_whole_decades() {
        assert_eq!(decades(2.0, 5.0), (1.0, 10.0));
        assert_eq!(decades(0.3, 45.0), (0.1, 100.0));
        assert_eq!(decades(0.0, 0.0), (1e-3, 1e-2));
        assert_eq!(decades(f64::INFINITY, 0.0), (1e-3, 1e-2));
    }

    #[test]
    fn log_labels_have_no_needless_digits() {
        assert_eq!(super::log_label(0.1), "0.1");
        assert_eq!(super::log_label(1.0), "1");
        assert_eq!(super::log_label(100.0), "100");
        assert_eq!(super::log_label(0.001), "0.001");
    }
}
