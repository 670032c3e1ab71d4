//! The command line, environment first like the server's: every option also reads a
//! `DRIVERCENTER_BENCH_*` variable.

use std::path::PathBuf;

use clap::{Parser, ValueEnum};

/// How calls arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Poisson arrivals at `--rate` calls/s, whatever the server's answers take.
    Open,
    /// `--concurrency` customers, each sending its next call once the last one is answered.
    Closed,
}

/// How the load generator learns that a call is confirmed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ConfirmVia {
    /// POST answered at once (202), then `GET /calls/{id}/stream` until a driver is assigned.
    Sse,
    /// POST with `Prefer: wait=N`: the answer itself is the confirmation (201).
    Wait,
    /// POST only, answered 202 at once: the acceptance rate alone. Calls are left to the
    /// dispatcher and never released, so they fail once every driver is taken.
    None,
}

#[derive(Debug, Clone, Parser)]
#[command(name = "drivercenter-bench", version, about = "Load generator for the drivercenter HTTP API")]
pub struct BenchArgs {
    /// Base URL of the server under test.
    #[arg(long, env = "DRIVERCENTER_BENCH_TARGET", default_value = "http://127.0.0.1:8088")]
    pub target: String,
    /// Drivers registered over Seoul's 25 districts and brought online before the load.
    #[arg(long, env = "DRIVERCENTER_BENCH_DRIVERS", default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub drivers: u32,
    /// Open loop (fixed arrival rate) or closed loop (fixed concurrency).
    #[arg(long, env = "DRIVERCENTER_BENCH_MODE", value_enum, default_value = "closed")]
    pub mode: Mode,
    /// Open loop: mean calls per second, with exponential gaps between arrivals.
    #[arg(long, env = "DRIVERCENTER_BENCH_RATE", default_value_t = 50.0, value_parser = parse_rate)]
    pub rate: f64,
    /// Closed loop: customers waiting at once. Open loop: the most calls outstanding at
    /// once; an arrival beyond it is shed (counted, not sent), so the client cannot pile
    /// up without bound.
    #[arg(long, env = "DRIVERCENTER_BENCH_CONCURRENCY", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub concurrency: u32,
    /// Seconds of load, after the drivers are online.
    #[arg(long, env = "DRIVERCENTER_BENCH_DURATION_SECS", default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=900))]
    pub duration_secs: u64,
    /// Stop sending after this many calls, even before the duration is over.
    #[arg(long, env = "DRIVERCENTER_BENCH_MAX_CALLS", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_calls: Option<u64>,
    /// Longest hold of a confirmed call, in milliseconds, before it is completed or
    /// cancelled (uniform from 0), so that its driver becomes available again.
    #[arg(long, env = "DRIVERCENTER_BENCH_HOLD_MS", default_value_t = 500, value_parser = clap::value_parser!(u64).range(0..=60_000))]
    pub hold_ms: u64,
    /// Share of confirmed calls that are cancelled instead of completed.
    #[arg(long, env = "DRIVERCENTER_BENCH_CANCEL_RATIO", default_value_t = 0.1, value_parser = parse_ratio)]
    pub cancel_ratio: f64,
    /// Share of calls for a manual car (`drive_type` MANUAL); the rest are AUTO.
    #[arg(long, env = "DRIVERCENTER_BENCH_MANUAL_RATIO", default_value_t = 0.05, value_parser = parse_ratio)]
    pub manual_ratio: f64,
    /// How the confirmation of a call is awaited: SSE stream, `Prefer: wait`, or not at all.
    #[arg(long, env = "DRIVERCENTER_BENCH_CONFIRM", value_enum, default_value = "sse")]
    pub confirm: ConfirmVia,
    /// Seconds a call may take to be confirmed before it counts as unconfirmed (≤ 30,
    /// the longest `Prefer: wait`).
    #[arg(long, env = "DRIVERCENTER_BENCH_CONFIRM_TIMEOUT_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=30))]
    pub confirm_timeout_secs: u64,
    /// The server's process id: its peak and current RSS are read from /proc/PID/status.
    #[arg(long, env = "DRIVERCENTER_BENCH_SERVER_PID")]
    pub server_pid: Option<u32>,
    /// Directory for `report.md`, `report.png` and `summary.json` (created when missing).
    #[arg(long, env = "DRIVERCENTER_BENCH_REPORT_DIR")]
    pub report_dir: Option<PathBuf>,
    /// Seed of the random choices (places, holds, arrivals), to repeat a run; random when unset.
    #[arg(long, env = "DRIVERCENTER_BENCH_SEED")]
    pub seed: Option<u64>,
}

fn parse_rate(raw: &str) -> Result<f64, String> {
    let rate: f64 = raw.parse().map_err(|_| format!("`{raw}` is not a number"))?;
    if rate.is_finite() && rate > 0.0 && rate <= 100_000.0 {
        Ok(rate)
    } else {
        Err("the rate must be above 0 and at most 100000 calls/s".to_string())
    }
}

fn parse_ratio(raw: &str) -> Result<f64, String> {
    let ratio: f64 = raw.parse().map_err(|_| format!("`{raw}` is not a number"))?;
    if (0.0..=1.0).contains(&ratio) {
        Ok(ratio)
    } else {
        Err("a ratio lies between 0 and 1".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_aim_at_the_local_server_in_closed_loop() {
        let args = BenchArgs::try_parse_from(["drivercenter-bench"]).unwrap();
        assert_eq!(args.target, "http://127.0.0.1:8088");
        assert_eq!(args.mode, Mode::Closed);
        assert_eq!(args.confirm, ConfirmVia::Sse);
        assert_eq!(args.max_calls, None);
    }

    #[test]
    fn rates_and_ratios_out_of_range_are_refused() {
        for bad in [["--rate", "0"], ["--rate", "NaN"], ["--cancel-ratio", "1.5"], ["--confirm-timeout-secs", "31"]] {
            let parsed = BenchArgs::try_parse_from(["drivercenter-bench", bad[0], bad[1]]);
            assert!(parsed.is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn open_loop_takes_its_rate() {
        let args = BenchArgs::try_parse_from(["drivercenter-bench", "--mode", "open", "--rate", "120.5"]).unwrap();
        assert_eq!((args.mode, args.rate), (Mode::Open, 120.5));
    }
}
