//! Journal benchmark: plain `std` timing, a small report on stdout.
//!
//! ```text
//! cargo bench -p dms-journal --bench journal_bench
//! DMS_BENCH_EVENTS=100000 cargo bench -p dms-journal --bench journal_bench   # quick run
//! ```
//!
//! Measures, on a journal in a temporary directory on the real disk (the target directory's
//! `tmp/`, or `$DMS_BENCH_DIR`; never tmpfs, whose fsync is free and would flatter every
//! figure — the report names the filesystem):
//!
//! - (a) append latency of one record by one writer: median and p99 over 2,000 appends,
//!   each durable (flushed) before it returns;
//! - (b) appends/s and physical flushes with 16 and with 64 concurrent writers (200 appends each), with
//!   the one-writer rate of (a) as the baseline ratio: what group commit buys;
//! - (c) replay: `Journal::open` of `$DMS_BENCH_EVENTS` records (default 1,000,000) over up to
//!   10,000 targets, written as realistic chains (Requested → CredsFetched → Spawned →
//!   Verified → UnmountRequested → HelperStopped → Unmounted, repeated) in appends of 64
//!   records, the size the append combiner reaches under load (sled's crash recovery is far
//!   slower for huge batches: 10,000-record appends made the first open after the writes
//!   ~15× slower than a clean reopen, 64-record appends do not);
//! - (d) the `dms-journal` binary on that journal: `inspect --summary`, the full `inspect`
//!   table and `verify`. The binary is the daemon package's (`dms`), which cargo does not
//!   build for this package's bench: it is taken from `$DMS_JOURNAL_BIN`, else from beside
//!   this bench's own build (`target/release/dms-journal` under `cargo bench`,
//!   `target/debug/dms-journal` under `cargo test --bench`). Build it first with
//!   `cargo build --release -p dms --bin dms-journal`; without it the bench stops before
//!   measuring anything.

use dms_journal::store::Journal;
use dms_journal::{BootId, Event, HelperIdentity, OperationId, Record, RequestKey};
use dms_journal::{TargetId, TargetKind, TargetSpec, Timestamp};
use std::error::Error;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use uuid::Uuid;

type Res<T> = Result<T, Box<dyn Error>>;

const LATENCY_APPENDS: usize = 2_000;
/// The writer counts of (b): a busy node's burst, and the engine's whole pool.
const WRITERS: [usize; 2] = [16, 64];
const APPENDS_PER_WRITER: u64 = 200;
const MAX_TARGETS: u64 = 10_000;
const BATCH: usize = 64;
const T0: u64 = 1_767_225_600_000;

fn main() -> Res<()> {
    if std::env::args().any(|a| a == "--list") {
        return Ok(()); // `cargo bench -- --list` and test harness probes
    }
    let events: u64 = match std::env::var("DMS_BENCH_EVENTS") {
        Ok(v) => v.trim().replace('_', "").parse()?,
        Err(_) => 1_000_000,
    };
    let bin = journal_bin()?;
    let base = std::env::var_os("DMS_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")));
    std::fs::create_dir_all(&base)?;
    let dir = tempfile::Builder::new().prefix("journal-bench-").tempdir_in(&base)?;
    println!("dms-journal bench: journals under {} ({})", base.display(), fs_type(&base));

    let one = latency(&dir.path().join("latency"))?;
    for writers in WRITERS {
        concurrent(&dir.path().join(format!("concurrent-{writers}")), writers, one)?;
    }
    let big = dir.path().join("replay");
    replay(&big, events)?;
    binary(&bin, &big)?;
    Ok(())
}

/// The `dms-journal` binary (d) runs: see the module comment.
fn journal_bin() -> Res<PathBuf> {
    let bin = match std::env::var_os("DMS_JOURNAL_BIN") {
        Some(bin) => PathBuf::from(bin),
        // target/<profile>/deps/journal_bench-<hash> → target/<profile>/dms-journal
        None => {
            let exe = std::env::current_exe()?;
            let profile = exe.parent().and_then(Path::parent).ok_or("no target directory")?;
            profile.join("dms-journal")
        }
    };
    if !bin.is_file() {
        let how = "build it with `cargo build --release -p dms --bin dms-journal` (or set \
                   DMS_JOURNAL_BIN)";
        return Err(format!("no dms-journal binary at {}: {how}", bin.display()).into());
    }
    Ok(bin)
}

/// A realistic record: step `i` of `target`'s endless mount/unmount cycle.
fn chain(target: &TargetId, n: u64, i: u64, at: u64) -> Res<Record> {
    let boot = BootId(Uuid::from_u128(0x3f1b_2c4d_1111_4222_8333_9444_5555_6666));
    let cycle = i / 7;
    let op = OperationId(Uuid::from_u128(u128::from(n) << 64 | u128::from(cycle)));
    let helper = HelperIdentity { pid: 10_000 + n as u32 % 50_000, start_ticks: i, boot };
    let mount_path = format!("/var/lib/trilio/triliovault-mounts/{target}");
    let (request, event) = match i % 7 {
        0 => {
            let secret_ref =
                format!("https://barbican:9311/v1/secrets/{}", Uuid::from_u128(n.into()));
            let spec = TargetSpec { kind: TargetKind::S3 { secret_ref }, mount_path };
            ("m", Event::Requested { spec })
        }
        1 => ("m", Event::CredsFetched),
        2 => ("m", Event::Spawned { helper }),
        3 => ("m", Event::Verified),
        4 => ("u", Event::UnmountRequested { mount_path }),
        5 => ("u", Event::HelperStopped),
        _ => ("u", Event::Unmounted),
    };
    let request = RequestKey::new(&format!("{target}-{request}{cycle}"))?;
    Ok(Record {
        target: target.clone(),
        at: Timestamp(T0 + at),
        boot,
        request: Some(request),
        op: Some(op),
        event,
    })
}

fn target(prefix: &str, n: u64) -> Res<TargetId> {
    Ok(TargetId::new(&format!("{prefix}-{n:05}"))?)
}

/// (a) One writer, one record per append. Returns appends/s.
fn latency(path: &Path) -> Res<f64> {
    let (journal, _) = Journal::open(path)?;
    let t = target("lat", 0)?;
    for i in 0..50 {
        journal.append(&[chain(&t, 0, i, i)?])?; // warm-up
    }
    let flushes = journal.flushes();
    let mut samples = Vec::with_capacity(LATENCY_APPENDS);
    let start = Instant::now();
    for i in 50..50 + LATENCY_APPENDS as u64 {
        let record = chain(&t, 0, i, i)?;
        let t0 = Instant::now();
        journal.append(&[record])?;
        samples.push(t0.elapsed());
    }
    let total = start.elapsed();
    samples.sort_unstable();
    let pct = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)];
    let rate = LATENCY_APPENDS as f64 / total.as_secs_f64();
    println!(
        "(a) append, 1 writer, 1 record each, {LATENCY_APPENDS} appends: median {}, p99 {}, \
         max {}; {rate:.0} appends/s; {} flushes",
        ms(pct(0.5)),
        ms(pct(0.99)),
        ms(pct(1.0)),
        journal.flushes() - flushes
    );
    Ok(rate)
}

/// (b) Many writers at once: group commit shares flushes between them.
fn concurrent(path: &Path, writers: usize, baseline: f64) -> Res<()> {
    let (journal, _) = Journal::open(path)?;
    let targets = (0..writers as u64).map(|n| target("conc", n)).collect::<Res<Vec<_>>>()?;
    let flushes = journal.flushes();
    let start = Instant::now();
    let failures = std::thread::scope(|s| {
        let handles: Vec<_> = targets
            .iter()
            .enumerate()
            .map(|(n, t)| {
                let journal = &journal;
                s.spawn(move || -> Result<(), String> {
                    for i in 0..APPENDS_PER_WRITER {
                        let record = chain(t, n as u64, i, i).map_err(|e| e.to_string())?;
                        journal.append(&[record]).map_err(|e| e.to_string())?;
                    }
                    Ok(())
                })
            })
            .collect();
        let results = handles.into_iter().map(|h| h.join());
        results
            .filter_map(|r| match r {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e),
                Err(_) => Some("writer panicked".to_owned()),
            })
            .collect::<Vec<_>>()
    });
    let elapsed = start.elapsed();
    let appends = writers as u64 * APPENDS_PER_WRITER;
    let flushes = journal.flushes() - flushes;
    let rate = appends as f64 / elapsed.as_secs_f64();
    println!(
        "(b) append, {writers} writers x {APPENDS_PER_WRITER}: {appends} appends in {} = \
         {rate:.0} appends/s ({:.1}x the 1-writer rate); {flushes} flushes ({:.1} appends per \
         flush); {} writers failed {:?}",
        secs(elapsed),
        rate / baseline,
        appends as f64 / flushes.max(1) as f64,
        failures.len(),
        failures.first(),
    );
    Ok(())
}

/// (c) Build a big journal in batches, then time its replay. Targets are written round-robin
/// (as a busy node would interleave them); even ones get 98 records (14 full cycles, ending
/// unmounted), odd ones 102 (ending mounted), 100 on average.
fn replay(path: &Path, events: u64) -> Res<()> {
    let targets_n = (events / 100).clamp(1, MAX_TARGETS);
    let targets = (0..targets_n).map(|n| target("t", n)).collect::<Res<Vec<_>>>()?;
    let per_target = |n: u64| if n.is_multiple_of(2) { 98 } else { 102 };
    let (journal, _) = Journal::open(path)?;
    let start = Instant::now();
    let mut batch = Vec::with_capacity(BATCH);
    let (mut batches, mut written) = (0, 0u64);
    for i in 0..102 {
        for (n, t) in (0..targets_n).zip(&targets) {
            if i < per_target(n) {
                batch.push(chain(t, n, i, written)?);
                written += 1;
            }
            if batch.len() == BATCH {
                journal.append(&batch)?;
                batch.clear();
                batches += 1;
            }
        }
    }
    if !batch.is_empty() {
        journal.append(&batch)?;
        batches += 1;
    }
    let events = written;
    let built = start.elapsed();
    drop(journal);
    println!(
        "(c) wrote {events} records over {targets_n} targets in {batches} appends: {} \
         ({:.0} records/s); {} on disk",
        secs(built),
        events as f64 / built.as_secs_f64(),
        mib(dir_size(path)?)
    );
    // The first open after the writes also pays for sled's own recovery of its log (what a
    // restart after a crash pays); the second open shows the plain replay.
    for label in ["first open after the writes", "second open"] {
        let start = Instant::now();
        let (journal, replay) = Journal::open(path)?;
        let took = start.elapsed();
        println!(
            "    replay (Journal::open), {label}: {} ({:.0} records/s); {} records, {} targets, \
             {} problems",
            secs(took),
            replay.records as f64 / took.as_secs_f64(),
            replay.records,
            replay.state.targets.len(),
            replay.problems.len()
        );
        drop(journal);
    }
    Ok(())
}

/// (d) The inspection tool on the big journal, as an operator would run it.
fn binary(bin: &Path, path: &Path) -> Res<()> {
    for args in [&["inspect", "--summary"][..], &["inspect"], &["verify"]] {
        let start = Instant::now();
        let out = Command::new(bin)
            .arg("--path")
            .arg(path)
            .args(args)
            .stderr(Stdio::inherit())
            .output()?;
        let took = start.elapsed();
        let text = String::from_utf8_lossy(&out.stdout);
        let last = text.lines().last().unwrap_or("");
        println!(
            "(d) dms-journal {}: {} (exit {:?}, {} lines): {last}",
            args.join(" "),
            secs(took),
            out.status.code(),
            text.lines().count()
        );
    }
    println!("    binary: {}", bin.display());
    Ok(())
}

fn dir_size(path: &Path) -> Res<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(path)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() { dir_size(&entry.path())? } else { meta.len() };
    }
    Ok(total)
}

/// The filesystem type holding `path`, from the longest matching mount point.
fn fs_type(path: &Path) -> String {
    let path = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (_, point, kind) = (f.next()?, f.next()?, f.next()?);
            path.starts_with(point).then(|| (point.len(), kind.to_owned()))
        })
        .max()
        .map_or_else(|| "unknown filesystem".to_owned(), |(_, kind)| kind)
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

fn mib(bytes: u64) -> String {
    format!("{:.0} MiB", bytes as f64 / (1024.0 * 1024.0))
}
