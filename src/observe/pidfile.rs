//! PID files: `<pid_dir>/<target>.pid`, one line, the decimal PID (the seed's format, kept
//! for the operators' tools that read them).
//!
//! The journal, not the PID file, is the authority on who a helper is; a PID file is an
//! external view of it and a way for operators to hand the daemon a helper they started.
//! So writes are atomic (a reader never sees half a PID), removal is conditional (a file
//! rewritten meanwhile for a newer helper is left alone), and reading trusts neither the
//! content nor the file: only a small regular file owned by the daemon's user is read, opened
//! without following a symlink and without blocking (a FIFO would hang the reader, a link to
//! `/dev/zero` would feed it forever). Anything else is [`Content::Refused`]: reported by the
//! reconciler, never read, never removed.

use dms_journal::reconcile::{Finding, PidFile};
use dms_journal::TargetId;
use rustix::fs::{FileType, Mode, OFlags};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// More than any PID plus a newline and some blanks; a larger file is not a PID file.
const MAX_BYTES: u64 = 32;

#[derive(Debug, thiserror::Error)]
pub enum PidFileError {
    #[error("cannot {action} PID file {path}: {source}")]
    Io { action: &'static str, path: PathBuf, source: std::io::Error },
}

/// What a PID file holds, as far as the daemon is willing to look.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    /// There is no file.
    Absent,
    /// One decimal PID.
    Pid(u32),
    /// A file of ours whose content is not one decimal PID.
    NotAPid,
    /// Not a file the daemon reads: why (a FIFO, a symlink, another user's, too large).
    Refused(String),
}

impl Content {
    /// The PID, if the file names one.
    pub fn pid(&self) -> Option<u32> {
        match self {
            Content::Pid(pid) => Some(*pid),
            Content::Absent | Content::NotAPid | Content::Refused(_) => None,
        }
    }
}

/// What [`PidDir::list`] found: the files it read, and the ones it would not.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    pub files: Vec<PidFile>,
    pub refused: Vec<Finding>,
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
        // Never through anything planted at the temporary's name (unlink does not follow a
        // symlink, and an exclusive create refuses one that reappears).
        match std::fs::remove_file(&tmp) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(io("clear the temporary of")(e))
            }
            _ => {}
        }
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            // The flags' bits are the kernel's small positive O_* values: the cast is exact.
            .custom_flags((OFlags::NOFOLLOW | OFlags::CLOEXEC).bits() as i32)
            .open(&tmp)
            .map_err(io("create a temporary for"))?;
        file.write_all(format!("{pid}\n").as_bytes()).map_err(io("write"))?;
        std::fs::rename(&tmp, &path).map_err(io("rename into place"))
    }

    /// What the target's PID file holds.
    pub fn read(&self, target: &TargetId) -> Result<Content, PidFileError> {
        read_pid(&self.path(target))
    }

    /// Remove the file only if it still names `expected` (`None`: only if unreadable).
    pub fn remove_if(
        &self,
        target: &TargetId,
        expected: Option<u32>,
    ) -> Result<Removal, PidFileError> {
        let path = self.path(target);
        let found = match read_pid(&path)? {
            Content::Absent => return Ok(Removal::Absent),
            Content::Refused(_) => return Ok(Removal::Kept),
            Content::Pid(pid) => Some(pid),
            Content::NotAPid => None,
        };
        if found != expected {
            return Ok(Removal::Kept);
        }
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(Removal::Removed(path)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Removal::Absent),
            Err(source) => Err(PidFileError::Io { action: "remove", path, source }),
        }
    }

    /// Remove the file whatever PID it names, if it is one the daemon reads (a refused file
    /// stays: the reconciler reports it). `Some(path)` if a file was removed.
    pub fn remove(&self, target: &TargetId) -> Result<Option<PathBuf>, PidFileError> {
        let path = self.path(target);
        match read_pid(&path)? {
            Content::Absent | Content::Refused(_) => return Ok(None),
            Content::Pid(_) | Content::NotAPid => {}
        }
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(Some(path)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(PidFileError::Io { action: "remove", path, source }),
        }
    }

    /// Every `*.pid` file, by stem, for the reconciler. Names are reported as found (the
    /// reconciler refuses the ones that are not valid target ids); temporaries are skipped;
    /// files the daemon does not read are listed as refused, with why.
    pub fn list(&self) -> Result<Listing, PidFileError> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Listing::default()),
            Err(source) => {
                return Err(PidFileError::Io { action: "list", path: self.dir.clone(), source })
            }
        };
        let mut listing = Listing::default();
        for entry in entries.filter_map(Result::ok) {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(stem) = name.strip_suffix(".pid") else { continue };
            let pid = match read_pid(&entry.path())? {
                Content::Absent => continue, // removed while listing
                Content::Pid(pid) => Some(pid),
                Content::NotAPid => None,
                Content::Refused(why) => {
                    listing.refused.push(Finding {
                        target: TargetId::new(stem).ok(),
                        what: format!(
                            "PID file {} is {why}; not read, left alone",
                            entry.path().display()
                        ),
                    });
                    continue;
                }
            };
            listing.files.push(PidFile { name: stem.to_owned(), pid });
        }
        listing.files.sort_by(|a, b| a.name.cmp(&b.name));
        listing.refused.sort_by(|a, b| a.what.cmp(&b.what));
        Ok(listing)
    }
}

/// Open without following a symlink and without blocking, check what was opened, then
/// read at most [`MAX_BYTES`]: a huge or binary file is simply "not a PID".
fn read_pid(path: &Path) -> Result<Content, PidFileError> {
    let io = |source| PidFileError::Io { action: "read", path: path.to_path_buf(), source };
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let fd = match rustix::fs::open(path, flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT) => return Ok(Content::Absent),
        // O_NOFOLLOW on a symlink.
        Err(rustix::io::Errno::LOOP) => return Ok(Content::Refused("a symbolic link".into())),
        Err(e) => return Err(io(e.into())),
    };
    let stat = rustix::fs::fstat(&fd).map_err(|e| io(e.into()))?;
    let kind = FileType::from_raw_mode(stat.st_mode);
    if kind != FileType::RegularFile {
        return Ok(Content::Refused(format!("not a regular file ({kind:?})")));
    }
    let owner = rustix::process::geteuid().as_raw();
    if stat.st_uid != owner {
        return Ok(Content::Refused(format!("owned by uid {}, not {owner}", stat.st_uid)));
    }
    let size = u64::try_from(stat.st_size).unwrap_or(u64::MAX);
    if size > MAX_BYTES {
        return Ok(Content::Refused(format!("{size} bytes long, too large for a PID")));
    }
    let mut raw = Vec::new();
    std::fs::File::from(fd).take(MAX_BYTES).read_to_end(&mut raw).map_err(io)?;
    let pid = std::str::from_utf8(&raw)
        .ok()
        .map(str::trim)
        .filter(|s| !s.is_empty() && s.len() <= 10 && s.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|s| s.parse::<u32>().ok())
        .filter(|pid| *pid > 0);
    Ok(pid.map_or(Content::NotAPid, Content::Pid))
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
        assert_eq!(pids.read(&t("target-123")).unwrap(), Content::Pid(12345));
        assert_eq!(pids.read(&t("absent")).unwrap(), Content::Absent);
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
        assert!(list.refused.is_empty(), "{:?}", list.refused);
        let got: Vec<(&str, Option<u32>)> =
            list.files.iter().map(|f| (f.name.as_str(), f.pid)).collect();
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
        assert_eq!(pids.read(&t("a")).unwrap(), Content::Pid(100));
        assert_eq!(
            pids.remove_if(&t("a"), Some(100)).unwrap(),
            Removal::Removed(pids.path(&t("a")))
        );
        assert_eq!(pids.read(&t("a")).unwrap(), Content::Absent);
        assert_eq!(pids.remove_if(&t("a"), Some(100)).unwrap(), Removal::Absent, "already gone");
    }

    #[test]
    fn given_a_fifo_a_symlink_a_large_and_a_foreign_file_when_listed_then_none_is_read_or_removed()
    {
        let dir = tempfile::tempdir().unwrap();
        let pids = PidDir::new(dir.path());
        let at = |name: &str| dir.path().join(format!("{name}.pid"));
        rustix::fs::mkfifoat(rustix::fs::CWD, at("fifo"), Mode::from_raw_mode(0o644)).unwrap();
        std::os::unix::fs::symlink("/dev/zero", at("zero")).unwrap();
        std::fs::write(dir.path().join("real"), "4242\n").unwrap();
        std::os::unix::fs::symlink(dir.path().join("real"), at("link")).unwrap();
        std::fs::write(at("large"), format!("4242{}\n", " ".repeat(40))).unwrap();
        std::fs::write(at("foreign"), "4242\n").unwrap();
        let nobody = rustix::process::Uid::from_raw(65534);
        rustix::fs::chown(at("foreign"), Some(nobody), None).unwrap();
        pids.write(&t("ours"), 77).unwrap();

        // Each of these would block, read forever or trust a file someone else wrote; a
        // test that hangs here has failed.
        let listing = pids.list().unwrap();
        let names: Vec<&str> = listing.files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["ours"]);
        let refused: Vec<&str> = listing.refused.iter().map(|f| f.what.as_str()).collect();
        assert_eq!(refused.len(), 5, "{refused:?}");
        for (name, why) in [
            ("fifo", "not a regular file (Fifo)"),
            ("zero", "a symbolic link"),
            ("link", "a symbolic link"),
            ("large", "45 bytes long"),
            ("foreign", "owned by uid 65534"),
        ] {
            let path = at(name).display().to_string();
            assert!(
                refused.iter().any(|w| w.contains(&path) && w.contains(why)),
                "{name}: {refused:?}"
            );
            let target = t(name);
            assert!(matches!(pids.read(&target).unwrap(), Content::Refused(_)), "{name}");
            assert_eq!(pids.remove_if(&target, Some(4242)).unwrap(), Removal::Kept, "{name}");
            assert_eq!(pids.remove_if(&target, None).unwrap(), Removal::Kept, "{name}");
            assert_eq!(pids.remove(&target).unwrap(), None, "{name}");
            assert!(std::fs::symlink_metadata(at(name)).is_ok(), "{name} was removed");
        }
        assert_eq!(std::fs::read_to_string(dir.path().join("real")).unwrap(), "4242\n");
    }

    #[test]
    fn given_a_symlink_at_the_temporary_name_when_writing_then_its_target_is_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "precious").unwrap();
        std::os::unix::fs::symlink(&victim, dir.path().join(".t.pid.tmp")).unwrap();
        let pids = PidDir::new(dir.path());
        pids.write(&t("t"), 5).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        assert_eq!(pids.read(&t("t")).unwrap(), Content::Pid(5));
    }

    #[test]
    fn given_a_missing_directory_when_listed_then_empty() {
        assert_eq!(PidDir::new("/nonexistent/dms/pids").list().unwrap(), Listing::default());
    }
}
