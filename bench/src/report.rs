//! The run's figures: the JSON summary for stdout and, in a report directory, a Markdown
//! table and a PNG plot of throughput, latency and lag over time.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use plotters::prelude::*;
use serde::Serialize;

use crate::config::{BenchArgs, ConfirmVia, Mode};
use crate::error::BenchError;
use crate::stats::{Counts, Latencies, Tally};

/// The font of every label, compiled in.
const FONT: &str = "sans-serif";

/// The JSON object printed at the end of a run. Rates are per second of the load window;
/// latencies in milliseconds, `null` when nothing was measured.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub mode: Mode,
    pub confirm_via: ConfirmVia,
    pub target: String,
    pub drivers: u32,
    pub concurrency: u32,
    /// The open loop's arrival rate; `null` in closed loop.
    pub rate: Option<f64>,
    pub seed: u64,
    pub duration_s: f64,
    pub accepted_per_s: f64,
    pub dispatched_per_s: f64,
    pub post_p50_ms: Option<f64>,
    pub post_p90_ms: Option<f64>,
    pub post_p99_ms: Option<f64>,
    pub post_max_ms: Option<f64>,
    pub confirm_p50_ms: Option<f64>,
    pub confirm_p90_ms: Option<f64>,
    pub confirm_p99_ms: Option<f64>,
    pub confirm_max_ms: Option<f64>,
    pub errors: u64,
    pub overloaded: u64,
    /// 503 answers among the calls sent.
    pub overloaded_rate: f64,
    /// Errors among the calls sent.
    pub error_rate: f64,
    pub max_lag_events: Option<u64>,
    pub max_dispatch_backlog_events: Option<u64>,
    pub max_lag_by_subscriber: BTreeMap<String, u64>,
    /// The server's peak resident set (VmHWM) in MiB; `null` without `--server-pid`.
    pub server_rss_mb: Option<f64>,
    /// Counts over the whole run, the in-flight calls drained after the window included.
    pub counts: Counts,
}

impl Summary {
    pub fn new(args: &BenchArgs, seed: u64, tally: &Tally) -> Self {
        let window = tally.window_length.unwrap_or_default().as_secs_f64();
        let per_second = |count: u64| if window > 0.0 { round(count as f64 / window, 2) } else { 0.0 };
        let share =
            |count: u64| if tally.total.sent > 0 { round(count as f64 / tally.total.sent as f64, 4) } else { 0.0 };
        let quantile = |latencies: &Latencies, q: f64| latencies.quantile_ms(q).map(|ms| round(ms, 2));
        let max_lag = tally.max_lag_by_subscriber.values().copied().chain(tally.max_dispatch_backlog).max();
        Self {
            mode: args.mode,
            confirm_via: args.confirm,
            target: args.target.clone(),
            drivers: args.drivers,
            concurrency: args.concurrency,
            rate: (args.mode == Mode::Open).then_some(args.rate),
            seed,
            duration_s: round(window, 3),
            accepted_per_s: per_second(tally.window.accepted),
            dispatched_per_s: per_second(tally.window.confirmed),
            post_p50_ms: quantile(&tally.post, 0.5),
            post_p90_ms: quantile(&tally.post, 0.9),
            post_p99_ms: quantile(&tally.post, 0.99),
            post_max_ms: tally.post.max_ms(),
            confirm_p50_ms: quantile(&tally.confirm, 0.5),
            confirm_p90_ms: quantile(&tally.confirm, 0.9),
            confirm_p99_ms: quantile(&tally.confirm, 0.99),
            confirm_max_ms: tally.confirm.max_ms(),
            errors: tally.total.errors,
            overloaded: tally.total.overloaded,
            overloaded_rate: share(tally.total.overloaded),
            error_rate: share(tally.total.errors),
            max_lag_events: max_lag,
            max_dispatch_backlog_events: tally.max_dispatch_backlog,
            max_lag_by_subscriber: tally.max_lag_by_subscriber.clone(),
            server_rss_mb: tally.peak_rss_kb.map(|kb| round(kb as f64 / 1024.0, 1)),
            counts: tally.total,
        }
    }
}

fn round(value: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (value * scale).round() / scale
}

/// Writes `summary.json`, `report.md` and `report.png` into `dir`.
pub fn write(dir: &Path, summary: &Summary, tally: &Tally) -> Result<(), BenchError> {
    let io = |path: PathBuf| move |source| BenchError::Report { path, source };
    std::fs::create_dir_all(dir).map_err(io(dir.to_path_buf()))?;
    let json = serde_json::to_string_pretty(summary).expect("a summary always serialises");
    std::fs::write(dir.join("summary.json"), json + "\n").map_err(io(dir.join("summary.json")))?;
    std::fs::write(dir.join("report.md"), markdown(summary, tally)).map_err(io(dir.join("report.md")))?;
    plot(&dir.join("report.png"), summary, tally)
}

fn cell(value: Option<f64>) -> String {
    value.map_or_else(|| "–".to_string(), |value| format!("{value:.1}"))
}

/// The summary table, then one row per second of the run.
pub fn markdown(summary: &Summary, tally: &Tally) -> String {
    let mut out = String::new();
    let load = match summary.rate {
        Some(rate) => format!("open loop at {rate} calls/s (at most {} outstanding)", summary.concurrency),
        None => format!("closed loop, {} customers", summary.concurrency),
    };
    let _ = writeln!(out, "# drivercenter-bench: {load}\n");
    let _ = writeln!(
        out,
        "Target {}, {} drivers, confirmation by {:?}, {:.1} s of load, seed {}.\n",
        summary.target, summary.drivers, summary.confirm_via, summary.duration_s, summary.seed
    );
    let counts = &summary.counts;
    let rows: [(&str, String); 14] = [
        ("accepted calls/s", format!("{:.1}", summary.accepted_per_s)),
        ("dispatched calls/s", format!("{:.1}", summary.dispatched_per_s)),
        (
            "POST p50 / p90 / p99 ms",
            format!("{} / {} / {}", cell(summary.post_p50_ms), cell(summary.post_p90_ms), cell(summary.post_p99_ms)),
        ),
        (
            "confirm p50 / p90 / p99 ms",
            format!(
                "{} / {} / {}",
                cell(summary.confirm_p50_ms),
                cell(summary.confirm_p90_ms),
                cell(summary.confirm_p99_ms)
            ),
        ),
        ("calls sent", counts.sent.to_string()),
        ("accepted", counts.accepted.to_string()),
        ("confirmed", counts.confirmed.to_string()),
        ("dispatch failed / unconfirmed", format!("{} / {}", counts.dispatch_failed, counts.unconfirmed)),
        ("503 overloaded", format!("{} ({:.2} %)", counts.overloaded, summary.overloaded_rate * 100.0)),
        ("errors", format!("{} ({:.2} %)", counts.errors, summary.error_rate * 100.0)),
        ("shed by the client", counts.shed.to_string()),
        ("completed / cancelled", format!("{} / {}", counts.completed, counts.cancelled)),
        ("max subscriber lag (events)", summary.max_lag_events.map_or_else(|| "–".into(), |lag| lag.to_string())),
        ("server peak RSS MiB", cell(summary.server_rss_mb)),
    ];
    let _ = writeln!(out, "| metric | value |\n|---|---|");
    for (metric, value) in rows {
        let _ = writeln!(out, "| {metric} | {value} |");
    }
    let _ = writeln!(out, "\n## Per second\n");
    let _ = writeln!(
        out,
        "| s | sent | accepted | confirmed | 503 | errors | POST p50 ms | POST p99 ms | confirm p50 ms | confirm p99 ms | max lag | RSS MiB |"
    );
    let _ = writeln!(out, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (index, second) in tally.seconds.iter().enumerate() {
        let c = &second.counts;
        let _ = writeln!(
            out,
            "| {index} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            c.sent,
            c.accepted,
            c.confirmed,
            c.overloaded,
            c.errors,
            cell(second.post.quantile_ms(0.5)),
            cell(second.post.quantile_ms(0.99)),
            cell(second.confirm.quantile_ms(0.5)),
            cell(second.confirm.quantile_ms(0.99)),
            second.max_lag.map_or_else(|| "–".into(), |lag| lag.to_string()),
            cell(second.rss_kb.map(|kb| kb as f64 / 1024.0)),
        );
    }
    out
}

/// Registers the bundled font once; plotters keeps it for the process.
fn register_font() -> Result<(), String> {
    static REGISTERED: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular())
                .map_err(|_| "the bundled font does not load".to_string())
        })
        .clone()
}

/// Three panels over the seconds of the run: calls/s, latency percentiles, lag.
pub fn plot(path: &Path, summary: &Summary, tally: &Tally) -> Result<(), BenchError> {
    draw(path, summary, tally).map_err(|reason| BenchError::Plot { path: path.to_path_buf(), reason })
}

type Series = Vec<(f64, f64)>;

fn series(tally: &Tally, value: impl Fn(&crate::stats::Second) -> Option<f64>) -> Series {
    tally
        .seconds
        .iter()
        .enumerate()
        .filter_map(|(index, second)| value(second).map(|v| (index as f64 + 0.5, v)))
        .collect()
}

fn draw(path: &Path, summary: &Summary, tally: &Tally) -> Result<(), String> {
    register_font()?;
    let text = |error: &dyn std::fmt::Display| error.to_string();
    let root = BitMapBackend::new(path, (1200, 1000)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| text(&e))?;
    let title = match summary.rate {
        Some(rate) => format!("open loop, {rate} calls/s"),
        None => format!("closed loop, {} customers", summary.concurrency),
    };
    let root = root.titled(&format!("drivercenter-bench: {title}"), (FONT, 24)).map_err(|e| text(&e))?;
    let panels = root.split_evenly((3, 1));
    let seconds = tally.seconds.len().max(1) as f64;

    let throughput = [
        ("accepted/s", BLUE, series(tally, |s| Some(s.counts.accepted as f64))),
        ("dispatched/s", GREEN, series(tally, |s| Some(s.counts.confirmed as f64))),
        ("503/s", RED, series(tally, |s| Some(s.counts.overloaded as f64))),
    ];
    panel(&panels[0], "calls per second", seconds, &throughput)?;

    let latency = [
        ("confirm p50 ms", GREEN, series(tally, |s| s.confirm.quantile_ms(0.5))),
        ("confirm p99 ms", RED, series(tally, |s| s.confirm.quantile_ms(0.99))),
        ("POST p99 ms", BLUE, series(tally, |s| s.post.quantile_ms(0.99))),
    ];
    panel(&panels[1], "latency (ms)", seconds, &latency)?;

    let lag = [("max subscriber lag (events)", MAGENTA, series(tally, |s| s.max_lag.map(|lag| lag as f64)))];
    panel(&panels[2], "lag (events)", seconds, &lag)?;
    root.present().map_err(|e| text(&e))
}

fn panel(
    area: &DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>,
    caption: &str,
    seconds: f64,
    lines: &[(&str, RGBColor, Series)],
) -> Result<(), String> {
    let text = |error: &dyn std::fmt::Display| error.to_string();
    let top = lines.iter().flat_map(|(_, _, points)| points.iter().map(|(_, y)| *y)).fold(0.0, f64::max);
    let top = if top > 0.0 { top * 1.1 } else { 1.0 };
    let mut chart = ChartBuilder::on(area)
        .caption(caption, (FONT, 18))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..seconds, 0.0..top)
        .map_err(|e| text(&e))?;
    chart
        .configure_mesh()
        .x_desc("s")
        .label_style((FONT, 13))
        .axis_desc_style((FONT, 14))
        .draw()
        .map_err(|e| text(&e))?;
    for (name, colour, points) in lines {
        let colour = *colour;
        chart
            .draw_series(LineSeries::new(points.iter().copied(), colour.stroke_width(2)))
            .map_err(|e| text(&e))?
            .label(*name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font((FONT, 13))
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| text(&e))
}
