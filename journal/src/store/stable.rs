//! Stable storage: what "durable" means for the journal, against a power cut as well as a
//! process crash.
//!
//! `sled::Db::flush` (sled 0.34.7) does not fsync, whatever its doc comment says: on Linux
//! its log writes end in `sync_file_range(WAIT_BEFORE | WRITE | WAIT_AFTER)`
//! (`src/pagecache/iobuf.rs`, `write_to_log`), which starts and waits for the writeback of
//! the range but neither flushes the device's write cache nor persists the file's size;
//! only sled's background flusher calls `sync_all`, every `flush_every_ms` (500 ms,
//! `src/flusher.rs`). A process crash keeps the page cache, so sled's crash tests (and
//! ours that SIGKILL the daemon) cannot tell; a power cut, a kernel panic or a hypervisor
//! crash loses up to half a second of records whose replies were already sent. And
//! `sync_file_range` never reaches a FUSE filesystem at all. So after every sled flush the
//! store makes it stable itself, once per group commit (concurrent appends share it, as
//! they share the flush):
//!
//! - `fdatasync` of sled's data file `db`: its data and size;
//! - `fsync` of the journal directory when its entries changed since the last one: sled
//!   renames snapshot files (`snap.<lsn>.generating` to `snap.<lsn>`,
//!   `src/pagecache/snapshot.rs`) and then reuses the log segments they cover, and a name is
//!   durable only once its directory is synced. Whether they changed is one `readdir`
//!   (names and inode numbers) against the entries at the last sync: a directory fsync on
//!   every flush cost a quarter to a third of the appends/s at 1 and 16 writers
//!   (`journal_bench`), and the entries change only when sled snapshots;
//! - the same for `blobs/`, where sled writes a value too large for its log (a big target
//!   snapshot) as a file of its own without any sync (`src/pagecache/blob_io.rs`,
//!   `write_blob`), the log then pointing at it: each new blob file is fdatasynced, then the
//!   directory, before the data file (a log durable without its blob would be damage).
//!
//! At open, what a journal starts with: sled's `conf` (sled writes it without any sync),
//! `db`, the seal's sidecar, the journal directory and its parent, so a journal created
//! just before a power cut opens as that journal, not as an empty one (beside a sidecar
//! claiming more, which would stop the daemon until an operator accepts a loss).
//!
//! The power-cut tests (`tests/server_power_cut.rs`: the journal on `dms-powercutfs`, which
//! drops whatever was not synced) lose acknowledged records without this module, while
//! every process-crash test passes either way: it is not redundant with sled's flush.
//!
//! A failed fsync is reported and the flush fails (the append's records license nothing).
//! Linux may have dropped the unwritten pages by then, so a later fsync that succeeds does
//! not bring them back: that is why a failed append promises nothing either way
//! ([`super::Journal::append`]), and a log that lost pages in its middle is found at the
//! next open by the seal ([`super::seal`]).

use super::StoreError;
use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

/// sled 0.34's data file and configuration inside the journal directory
/// (`sled::Config::db_path`, `config_path`).
const DATA_FILE: &str = "db";
const CONF_FILE: &str = "conf";
/// Where sled 0.34 writes values too large for its log (`sled::Config::blob_path`).
const BLOBS_DIR: &str = "blobs";

/// The journal's files that [`Stable::sync`] makes durable after each sled flush.
#[derive(Debug)]
pub(super) struct Stable {
    journal: PathBuf,
    data: File,
    dir: File,
    /// The entries (name, inode) of the journal directory and of `blobs/` at their last
    /// fsync.
    synced: Mutex<Synced>,
}

#[derive(Debug, Default)]
struct Synced {
    journal: Option<Entries>,
    blobs: Option<Entries>,
}

type Entries = Vec<(OsString, u64)>;

impl Stable {
    /// Opens sled's data file and the journal directory (after sled and the sidecar
    /// created theirs), and makes what a journal starts with durable: `conf`, `db`, the
    /// sidecar (`sidecar` is synced by its owner, passed here to be reported) and both
    /// directories' entries.
    pub(super) fn open(
        journal: &Path,
        sidecar: impl FnOnce() -> io::Result<()>,
    ) -> Result<Stable, StoreError> {
        let failed = |what: &'static str| {
            let journal = journal.to_path_buf();
            move |source| StoreError::Sync { path: journal, what, source: Arc::new(source) }
        };
        let data = File::open(journal.join(DATA_FILE)).map_err(failed("open its data file"))?;
        let dir = File::open(journal).map_err(failed("open its directory"))?;
        let synced = Mutex::default();
        let stable = Stable { journal: journal.to_path_buf(), data, dir, synced };
        File::open(journal.join(CONF_FILE))
            .and_then(|conf| conf.sync_all())
            .map_err(failed("sync sled's conf file"))?;
        sidecar().map_err(failed("sync the seal's sidecar"))?;
        stable.sync()?;
        // The journal directory's own name; `/` has no parent to sync.
        if let Some(parent) = journal.parent().filter(|p| !p.as_os_str().is_empty()) {
            File::open(parent)
                .and_then(|parent| parent.sync_all())
                .map_err(failed("sync the directory holding it"))?;
        }
        Ok(stable)
    }

    /// After a sled flush: new blob files and their directory, sled's data file (data and
    /// size), then the journal directory's entries if they changed since their last sync,
    /// on stable storage.
    pub(super) fn sync(&self) -> Result<(), StoreError> {
        let failed = |what: &'static str| {
            let path = self.journal.clone();
            move |source| StoreError::Sync { path, what, source: Arc::new(source) }
        };
        let mut synced = self.synced.lock().unwrap_or_else(PoisonError::into_inner);
        // New blobs first: the log that points at them must not be durable without them.
        // Entries are read before their fsync: a change after the read is covered by this
        // fsync or, not being in what is recorded, found by the next sync.
        let blobs_dir = self.journal.join(BLOBS_DIR);
        let blobs = entries(&blobs_dir);
        if blobs.is_none() || blobs != synced.blobs {
            let known = synced.blobs.take().unwrap_or_default();
            for (name, _) in blobs.iter().flatten().filter(|e| !known.contains(e)) {
                match File::open(blobs_dir.join(name)).and_then(|blob| blob.sync_data()) {
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {} // removed since
                    done => done.map_err(failed("fdatasync a blob file"))?,
                }
            }
            if blobs_dir.is_dir() {
                File::open(&blobs_dir)
                    .and_then(|dir| dir.sync_all())
                    .map_err(failed("fsync its blobs directory"))?;
            }
            synced.blobs = blobs;
        }
        self.data.sync_data().map_err(failed("fdatasync its data file"))?;
        let now = entries(&self.journal);
        if now.is_none() || now != synced.journal {
            self.dir.sync_all().map_err(failed("fsync its directory"))?;
            synced.journal = now;
        }
        Ok(())
    }
}

/// The directory's entries, sorted; `None` if they cannot be read (then it is synced).
fn entries(dir: &Path) -> Option<Entries> {
    use std::os::unix::fs::DirEntryExt;
    let mut found = std::fs::read_dir(dir)
        .ok()?
        .map(|e| e.map(|e| (e.file_name(), e.ino())))
        .collect::<io::Result<Entries>>()
        .ok()?;
    found.sort_unstable();
    Some(found)
}
