//! The `drivercenter` binary: parses the command line and hands over to the library.

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = drivercenter::cli::Cli::parse();
    drivercenter::telemetry::init(cli.log_format);
    drivercenter::cli::run(cli).await
}
