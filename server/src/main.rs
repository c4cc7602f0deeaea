//! The `ferrobase` binary: parse the command line and hand over to [`ferrobase_server::cli`].

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    ferrobase_server::cli::run().await
}
