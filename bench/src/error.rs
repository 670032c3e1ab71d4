//! The load generator's failures: those that stop a run before it can report. Failures
//! of single calls during the load are counted in the report, never raised.

use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("the server did not answer {what}")]
    Http {
        what: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{what} answered {status}: {body}")]
    Unexpected { what: String, status: u16, body: String },
    #[error("only {available} of {wanted} drivers were available after {waited:?}")]
    DriversNotReady { available: usize, wanted: usize, waited: Duration },
    #[error("cannot write the report to {path}")]
    Report {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot draw the plot {path}: {reason}")]
    Plot { path: PathBuf, reason: String },
}
