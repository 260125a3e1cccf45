//! What the harness-less benches' `main` shares: starting only under `cargo bench`, choosing
//! the named parts (`cargo bench --bench scheduler -- startup`), and the report heading.
//! Included by the benches with `#[path]` (each bench is its own crate).

use std::time::Instant;

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
}

/// Prints the bench's results under a heading with the worker threads and the time taken.
pub fn report(bench: &str, started: Instant, out: &str) {
    println!(
        "\n## {bench} bench ({} worker threads, {:.0} s)\n\n{out}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        started.elapsed().as_secs_f64()
    );
}
