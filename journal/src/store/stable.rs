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
//! - `fsync` of the journal directory: sled renames snapshot files (`snap.<lsn>.generating`
//!   to `snap.<lsn>`, `src/pagecache/snapshot.rs`) and then reuses the log segments they
//!   cover, and a name is durable only once its directory is synced. A directory with
//!   nothing new costs little to sync.
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
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// sled 0.34's data file and configuration inside the journal directory
/// (`sled::Config::db_path`, `config_path`).
const DATA_FILE: &str = "db";
const CONF_FILE: &str = "conf";

/// The journal's files that [`Stable::sync`] makes durable after each sled flush.
#[derive(Debug)]
pub(super) struct Stable {
    journal: PathBuf,
    data: File,
    dir: File,
}

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
        let stable = Stable { journal: journal.to_path_buf(), data, dir };
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

    /// After a sled flush: its data file's data and size, then the journal directory's
    /// entries, on stable storage.
    pub(super) fn sync(&self) -> Result<(), StoreError> {
        let failed = |what: &'static str| {
            let path = self.journal.clone();
            move |source| StoreError::Sync { path, what, source: Arc::new(source) }
        };
        self.data.sync_data().map_err(failed("fdatasync its data file"))?;
        self.dir.sync_all().map_err(failed("fsync its directory"))
    }
}
