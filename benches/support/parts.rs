//! What the harness-less benches' `main` shares: starting only under `cargo bench`, choosing
//! the named parts (`cargo bench --bench scheduler -- startup`), the tokio runtime, and the
//! report heading. Included by the benches with `#[path]` (each bench is its own crate).
#![allow(clippy::disallowed_methods)] // benchmark: times the whole run

use std::future::Future;
use std::time::Instant;

/// The whole `main` of a bench made of parts: returns at once under `cargo test` (see
/// [`Parts::from_args`]), else runs `body` on a multi-thread tokio runtime — each part it runs
/// through [`Parts::part`] appends its markdown to the report — and prints the report.
pub fn main(bench: &str, body: impl AsyncFnOnce(&Parts, &mut String)) {
    let Some(parts) = Parts::from_args(bench) else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("build the tokio runtime");
    let started = Instant::now();
    let mut out = String::new();
    rt.block_on(body(&parts, &mut out));
    report(bench, started, &out);
}

/// The parts named on the command line (all when none is named).
pub struct Parts(Vec<String>);

impl Parts {
    /// `None` under `cargo test --all-targets`, which also runs harness-less benches but
    /// without `--bench`: benchmarks are not tests, so it only checks that the bench starts.
    /// Flags cargo passes (`--bench`) are not part names.
    pub fn from_args(bench: &str) -> Option<Parts> {
        if !std::env::args().any(|a| a == "--bench") {
            println!(
                "{bench} bench: not run under `cargo test` (use `cargo bench --bench {bench}`)"
            );
            return None;
        }
        let named = std::env::args()
            .skip(1)
            .filter(|a| !a.starts_with('-'))
            .collect();
        Some(Parts(named))
    }

    /// Whether the part `name` runs.
    pub fn run(&self, name: &str) -> bool {
        self.0.is_empty() || self.0.iter().any(|o| o == name)
    }

    /// Runs the part `name` (a future not yet polled, so nothing of it runs otherwise) when
    /// [`Parts::run`] says so.
    pub async fn part(&self, name: &str, part: impl Future<Output = ()>) {
        if self.run(name) {
            part.await;
        }
    }
}

/// Prints the bench's results under a heading with the worker threads and the time taken.
pub fn report(bench: &str, started: Instant, out: &str) {
    println!(
        "\n## {bench} bench ({} worker threads, {:.0} s)\n\n{out}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        started.elapsed().as_secs_f64()
    );
}
