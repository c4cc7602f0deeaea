//! The `ferrobase` binary: parse the command line and hand over to [`ferrobase_server::cli`].

use std::process::ExitCode;

/// mimalloc instead of glibc's malloc: under load, glibc's `malloc`/`free`
/// (arena locks, consolidation) took about a fifth of the server's CPU on
/// the data API's hot path (`perf`, docs/BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    ferrobase_server::cli::run().await
}
