//! The `drivercenter` binary: parses the command line and hands over to the library.

use clap::Parser;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = drivercenter::cli::Cli::parse();
    let telemetry = drivercenter::telemetry::init(cli.log_format);
    let outcome = drivercenter::cli::run(cli).await;
    // After serving stops, so that the spans of the last requests are exported too.
    telemetry.shutdown();
    outcome
}
