//! The `ferrobase` binary: parse the command line and hand over to [`ferrobase_server::cli`].

use std::process::ExitCode;

/// mimalloc instead of glibc's malloc: the request path makes many small,
/// short-lived allocations across threads, where glibc spent about a quarter
/// of the server's CPU under the functions benchmark's load (docs/BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    ferrobase_server::cli::run().await
}
