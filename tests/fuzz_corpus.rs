//! Replays the fuzz corpus (`fuzz/corpus/<target>/`) through the same entry functions the
//! cargo-fuzz targets call (`appliance::fuzzing`), under the stable toolchain: every input that
//! once crashed or hung stays a regression test, and every seed keeps parsing.
#![allow(clippy::disallowed_methods)] // times each input to catch hangs

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use appliance::fuzzing::{RouterWorld, TARGETS};

/// The slowest any one input may be in a debug build; fuzzing runs them in microseconds.
const PER_INPUT: Duration = Duration::from_secs(2);

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target)
}

fn replay(target: &str, entry: fn(&[u8])) -> usize {
    let dir = corpus_dir(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("readable corpus directory").path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} holds no inputs", dir.display());
    for file in &files {
        let data = std::fs::read(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let started = Instant::now();
        if let Err(panic) = std::panic::catch_unwind(|| entry(&data)) {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            panic!("{target}: {} panics: {msg}", file.display());
        }
        let took = started.elapsed();
        assert!(
            took < PER_INPUT,
            "{target}: {} took {took:?} (limit {PER_INPUT:?})",
            file.display()
        );
    }
    files.len()
}

macro_rules! corpus_test {
    ($name:ident) => {
        #[test]
        fn $name() {
            let entry = TARGETS
                .iter()
                .find(|(n, _)| *n == stringify!($name))
                .expect("a target of that name")
                .1;
            let n = replay(stringify!($name), entry);
            eprintln!("{}: {n} inputs replayed", stringify!($name));
        }
    };
}

corpus_test!(router_datagram);
corpus_test!(http_gate);
corpus_test!(job_spec);
corpus_test!(wg_config);
corpus_test!(cron_tz);
corpus_test!(control_request);
corpus_test!(schedulezero_trigger);

/// Every target has a corpus, a cargo-fuzz binary and a test above.
#[test]
fn every_target_has_a_corpus_and_a_fuzz_binary() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let manifest = std::fs::read_to_string(root.join("fuzz/Cargo.toml")).expect("fuzz/Cargo.toml");
    let this = std::fs::read_to_string(file!()).unwrap_or_default();
    for (name, _) in TARGETS {
        assert!(corpus_dir(name).is_dir(), "no fuzz/corpus/{name}");
        assert!(
            root.join(format!("fuzz/fuzz_targets/{name}.rs")).is_file(),
            "no fuzz/fuzz_targets/{name}.rs"
        );
        assert!(
            manifest.contains(&format!("name = \"{name}\"")),
            "fuzz/Cargo.toml lacks {name}"
        );
        assert!(
            this.is_empty() || this.contains(&format!("corpus_test!({name});")),
            "no replay test for {name}"
        );
    }
}

/// The router seeds are real: a live session's datagrams reach the router's session path.
#[test]
fn router_world_has_a_live_session() {
    let mut world = RouterWorld::new();
    assert_eq!(world.router.stats().handshakes, 1);
    let packet = [
        0x45u8, 0, 0, 20, 0, 0, 0, 0, 64, 17, 0, 0, 10, 88, 88, 2, 10, 88, 88, 1,
    ];
    let sealed = world.seal(&packet).expect("the client's session is up");
    world.router.handle_datagram(world.from, &sealed);
    let inbound = world.router.poll_inbound().expect("the packet got through");
    assert_eq!(inbound.packet, packet);
}

/// Calendar days one `cron_tz` input may make the cron code walk: the satisfiability scan of
/// both parses, and four searches that each end within 400 years (146,097 days).
const CRON_DAYS_PER_INPUT: u64 =
    2 * appliance::sched::trigger::SATISFIABLE_SCAN_DAYS as u64 + 4 * 146_097;

/// No `cron_tz` input makes the cron search walk unbounded: `*/15 * * * +` (an empty weekday
/// field) once walked day by day to year 5000, about 11 s under the fuzzer. Measured in days
/// walked, not seconds, so a loaded machine cannot hide or fake it.
#[test]
fn cron_tz_inputs_walk_a_bounded_number_of_days() {
    use appliance::sched::trigger::cron_days_searched;
    let dir = corpus_dir("cron_tz");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("fuzz/corpus/cron_tz")
        .map(|e| e.expect("readable corpus directory").path())
        .collect();
    files.sort();
    assert!(files.iter().any(|f| f.ends_with("slow-empty-weekday")));
    for file in &files {
        let data = std::fs::read(file).expect("readable corpus file");
        let before = cron_days_searched();
        appliance::fuzzing::cron_tz(&data);
        let walked = cron_days_searched() - before;
        assert!(
            walked <= CRON_DAYS_PER_INPUT,
            "{}: the cron code walked {walked} days (limit {CRON_DAYS_PER_INPUT})",
            file.display()
        );
    }
}
