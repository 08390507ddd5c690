//! PID files: `<pid_dir>/<target>.pid`, one line, the decimal PID (the seed's format, kept
//! for the operators' tools that read them).
//!
//! The journal, not the PID file, is the authority on who a helper is; a PID file is an
//! external view of it and a way for operators to hand the daemon a helper they started.
//! So writes are atomic (a reader never sees half a PID), removal is conditional (a file
//! rewritten meanwhile for a newer helper is left alone), and reading never trusts content.

use dms_journal::reconcile::PidFile;
use dms_journal::TargetId;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum PidFileError {
    #[error("cannot {action} PID file {path}: {source}")]
    Io { action: &'static str, path: PathBuf, source: std::io::Error },
}

/// What a conditional removal did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removal {
    /// The file named the expected PID and is gone now.
    Removed(PathBuf),
    /// There was no file.
    Absent,
    /// The file names another process (rewritten meanwhile): left alone.
    Kept,
}

impl Removal {
    /// The file this removal deleted, if it deleted one.
    pub fn removed(self) -> Option<PathBuf> {
        match self {
            Removal::Removed(path) => Some(path),
            Removal::Absent | Removal::Kept => None,
        }
    }
}

/// The PID directory of this node.
#[derive(Debug, Clone)]
pub struct PidDir {
    dir: PathBuf,
}

impl PidDir {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// A [`TargetId`] is a validated name, so the path cannot leave the directory.
    pub fn path(&self, target: &TargetId) -> PathBuf {
        self.dir.join(format!("{target}.pid"))
    }

    /// Write atomically: a temporary file in the same directory, renamed over. Not
    /// fsynced: the rename is atomic for every reader and for a crash of the daemon, and
    /// only a power loss could undo it, after which the file means nothing (a new boot id
    /// voids every helper; `/run` is a tmpfs anyway).
    pub fn write(&self, target: &TargetId, pid: u32) -> Result<(), PidFileError> {
        let path = self.path(target);
        let io =
            |action| move |source| PidFileError::Io { action, path: self.path(target), source };
        std::fs::create_dir_all(&self.dir).map_err(io("create the directory of"))?;
        let tmp = self.dir.join(format!(".{target}.pid.tmp"));
        let mut file = std::fs::File::create(&tmp).map_err(io("create a temporary for"))?;
        file.write_all(format!("{pid}\n").as_bytes()).map_err(io("write"))?;
        std::fs::rename(&tmp, &path).map_err(io("rename into place"))
    }

    /// The PID in the file; `Ok(None)` when there is no file, `Ok(Some(None))` when its
    /// content is not one decimal PID.
    pub fn read(&self, target: &TargetId) -> Result<Option<Option<u32>>, PidFileError> {
        read_pid(&self.path(target))
    }

    /// Remove the file only if it still names `expected` (`None`: only if unreadable).
    pub fn remove_if(
        &self,
        target: &TargetId,
        expected: Option<u32>,
    ) -> Result<Removal, PidFileError> {
        let path = self.path(target);
        match read_pid(&path)? {
            None => Ok(Removal::Absent),
            Some(found) if found == expected => match std::fs::remove_file(&path) {
                Ok(()) => Ok(Removal::Removed(path)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Removal::Absent),
                Err(source) => Err(PidFileError::Io { action: "remove", path, source }),
            },
            Some(_) => Ok(Removal::Kept),
        }
    }

    /// Remove the file whatever it says. `Some(path)` if there was one.
    pub fn remove(&self, target: &TargetId) -> Result<Option<PathBuf>, PidFileError> {
        let path = self.path(target);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(Some(path)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(PidFileError::Io { action: "remove", path, source }),
        }
    }

    /// Every `*.pid` file, by stem, for the reconciler. Names are reported as found (the
    /// reconciler refuses the ones that are not valid target ids); temporaries are skipped.
    pub fn list(&self) -> Result<Vec<PidFile>, PidFileError> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(PidFileError::Io { action: "list", path: self.dir.clone(), source })
            }
        };
        let mut files = Vec::new();
        for entry in entries.filter_map(Result::ok) {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(stem) = name.strip_suffix(".pid") else { continue };
            if stem.starts_with('.') && name.ends_with(".pid.tmp") {
                continue;
            }
            let pid = read_pid(&entry.path())?.flatten();
            files.push(PidFile { name: stem.to_owned(), pid });
        }
        files.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(files)
    }
}

/// At most a few bytes are read: a huge or binary file is simply "not a PID".
fn read_pid(path: &Path) -> Result<Option<Option<u32>>, PidFileError> {
    let raw = match std::fs::read(path) {
        Ok(raw) => raw,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(PidFileError::Io { action: "read", path: path.to_path_buf(), source })
        }
    };
    let pid = std::str::from_utf8(&raw)
        .ok()
        .map(str::trim)
        .filter(|s| !s.is_empty() && s.len() <= 10 && s.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|s| s.parse::<u32>().ok())
        .filter(|pid| *pid > 0);
    Ok(Some(pid))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn t(s: &str) -> TargetId {
        TargetId::new(s).unwrap()
    }

    #[test]
    fn given_a_pid_when_written_then_the_seed_format_is_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let pids = PidDir::new(dir.path().join("s3"));
        pids.write(&t("target-123"), 12345).unwrap();
        let path = dir.path().join("s3/target-123.pid");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "12345\n");
        assert_eq!(pids.read(&t("target-123")).unwrap(), Some(Some(12345)));
        assert_eq!(pids.read(&t("absent")).unwrap(), None);
        assert!(!dir.path().join("s3/.target-123.pid.tmp").exists());
    }

    #[test]
    fn given_hand_written_or_broken_files_when_listed_then_content_is_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, body: &[u8]| std::fs::write(dir.path().join(name), body).unwrap();
        write("hand.pid", b"  4242 \n");
        write("junk.pid", b"42; rm -rf /");
        write("zero.pid", b"0");
        write("huge.pid", b"99999999999999999999");
        write("binary.pid", &[0xff, 0xfe]);
        write("notes.txt", b"1");
        write("..pid", b"7");
        let list = PidDir::new(dir.path()).list().unwrap();
        let got: Vec<(&str, Option<u32>)> = list.iter().map(|f| (f.name.as_str(), f.pid)).collect();
        assert_eq!(
            got,
            [
                (".", Some(7)),
                ("binary", None),
                ("hand", Some(4242)),
                ("huge", None),
                ("junk", None),
                ("zero", None)
            ]
        );
    }

    #[test]
    fn given_a_file_rewritten_for_another_helper_when_removing_conditionally_then_it_stays() {
        let dir = tempfile::tempdir().unwrap();
        let pids = PidDir::new(dir.path());
        pids.write(&t("a"), 100).unwrap();
        assert_eq!(pids.remove_if(&t("a"), Some(99)).unwrap(), Removal::Kept);
        assert_eq!(pids.read(&t("a")).unwrap(), Some(Some(100)));
        assert_eq!(
            pids.remove_if(&t("a"), Some(100)).unwrap(),
            Removal::Removed(pids.path(&t("a")))
        );
        assert_eq!(pids.read(&t("a")).unwrap(), None);
        assert_eq!(pids.remove_if(&t("a"), Some(100)).unwrap(), Removal::Absent, "already gone");
    }

    #[test]
    fn given_a_missing_directory_when_listed_then_empty() {
        assert!(PidDir::new("/nonexistent/dms/pids").list().unwrap().is_empty());
    }
}
