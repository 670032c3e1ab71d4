//! `drivercenter-bench`: parses the options, runs the load against a running server
//! and prints the summary as one JSON object on stdout; progress goes to stderr.

use clap::Parser;
use drivercenter_bench::BenchArgs;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = BenchArgs::parse();
    let summary = drivercenter_bench::run(args).await?;
    println!("{}", serde_json::to_string(&summary)?);
    Ok(())
}
