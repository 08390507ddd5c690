//! A whole tree as plain values: what is loaded from the backing directory at start, and
//! what is written back to it at the end (the durable image after a power cut, the live one
//! after a clean stop). The model builds and consumes it; [`super::backing`] writes it.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::pages::{Pages, MAX_FILE_SIZE};

/// The attributes an image keeps for a file or directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    /// Permission bits (`0o7777`), no file type.
    pub perm: u16,
    pub uid: u32,
    pub gid: u32,
    pub atime: SystemTime,
    pub mtime: SystemTime,
    pub ctime: SystemTime,
}

impl Meta {
    /// Fresh attributes with every time set to now.
    pub fn new(perm: u16, uid: u32, gid: u32) -> Self {
        let now = SystemTime::now();
        Meta { perm: perm & 0o7777, uid, gid, atime: now, mtime: now, ctime: now }
    }

    fn of(meta: &fs::Metadata) -> Self {
        let time = |t: io::Result<SystemTime>| t.unwrap_or(SystemTime::UNIX_EPOCH);
        Meta {
            perm: (meta.permissions().mode() & 0o7777) as u16,
            uid: meta.uid(),
            gid: meta.gid(),
            atime: time(meta.accessed()),
            mtime: time(meta.modified()),
            // std offers no ctime as a SystemTime; the change time restarts at load.
            ctime: SystemTime::now(),
        }
    }
}

/// A file or a directory with everything below it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Image {
    File { meta: Meta, data: Pages },
    Dir { meta: Meta, entries: BTreeMap<OsString, Image> },
}

/// Totals of an image, for the log lines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub files: u64,
    pub dirs: u64,
    pub bytes: u64,
}

impl fmt::Display for Counts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} files ({} bytes), {} directories", self.files, self.bytes, self.dirs)
    }
}

impl Image {
    pub fn empty_dir(meta: Meta) -> Self {
        Image::Dir { meta, entries: BTreeMap::new() }
    }

    #[cfg(test)]
    pub fn meta(&self) -> &Meta {
        match self {
            Image::File { meta, .. } | Image::Dir { meta, .. } => meta,
        }
    }

    /// Files, directories (the top one not counted) and file bytes below and at `self`.
    pub fn counts(&self) -> Counts {
        let mut counts = Counts::default();
        let mut stack = vec![self];
        while let Some(image) = stack.pop() {
            match image {
                Image::File { data, .. } => {
                    counts.files += 1;
                    counts.bytes += data.size();
                }
                Image::Dir { entries, .. } => {
                    counts.dirs += u64::from(!std::ptr::eq(image, self));
                    stack.extend(entries.values());
                }
            }
        }
        counts
    }

    /// Loads the tree at `root`, a directory. Anything but regular files and directories
    /// (symlinks, devices, fifos, sockets) is refused: the filesystem could not serve it.
    pub fn load(root: &Path) -> Result<Image, LoadError> {
        let meta = fs::symlink_metadata(root).map_err(|e| LoadError::io(root, e))?;
        if !meta.is_dir() {
            return Err(LoadError::Unsupported(root.to_owned(), kind_name(&meta)));
        }
        load_dir(root, &meta)
    }
}

fn load_dir(path: &Path, meta: &fs::Metadata) -> Result<Image, LoadError> {
    let mut entries = BTreeMap::new();
    for entry in fs::read_dir(path).map_err(|e| LoadError::io(path, e))? {
        let entry = entry.map_err(|e| LoadError::io(path, e))?;
        let child = entry.path();
        let meta = fs::symlink_metadata(&child).map_err(|e| LoadError::io(&child, e))?;
        let image = if meta.is_dir() {
            load_dir(&child, &meta)?
        } else if meta.is_file() {
            if meta.len() > MAX_FILE_SIZE {
                return Err(LoadError::TooBig(child, meta.len()));
            }
            let bytes = fs::read(&child).map_err(|e| LoadError::io(&child, e))?;
            Image::File { meta: Meta::of(&meta), data: Pages::from_bytes(&bytes) }
        } else {
            return Err(LoadError::Unsupported(child, kind_name(&meta)));
        };
        entries.insert(entry.file_name(), image);
    }
    Ok(Image::Dir { meta: Meta::of(meta), entries })
}

fn kind_name(meta: &fs::Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_symlink() {
        "a symbolic link"
    } else if t.is_fifo() {
        "a fifo"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_block_device() || t.is_char_device() {
        "a device"
    } else if t.is_file() {
        "a regular file"
    } else {
        "not a regular file or directory"
    }
}

/// Why the backing directory cannot be loaded (a start-up refusal, exit 2).
#[derive(Debug)]
pub enum LoadError {
    Io(PathBuf, io::Error),
    Unsupported(PathBuf, &'static str),
    TooBig(PathBuf, u64),
}

impl LoadError {
    fn io(path: &Path, e: io::Error) -> Self {
        LoadError::Io(path.to_owned(), e)
    }
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Io(path, e) => write!(f, "cannot read {}: {e}", path.display()),
            LoadError::Unsupported(path, what) => write!(
                f,
                "{} is {what}: the backing directory may hold only regular files and directories",
                path.display()
            ),
            LoadError::TooBig(path, size) => write!(
                f,
                "{} has {size} bytes, more than the {MAX_FILE_SIZE} a file may hold",
                path.display()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    #[test]
    fn loads_files_and_directories_and_refuses_symlinks() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        fs::create_dir(root.join("d")).expect("mkdir");
        fs::write(root.join("d/f"), b"hello").expect("write");
        fs::write(root.join("e"), b"").expect("write");
        fs::set_permissions(root.join("e"), fs::Permissions::from_mode(0o640)).expect("chmod");
        let image = Image::load(root).expect("load");
        assert_eq!(image.counts(), Counts { files: 2, dirs: 1, bytes: 5 });
        let Image::Dir { entries, .. } = &image else { panic!("root is a dir") };
        assert_eq!(entries[OsStr::new("e")].meta().perm, 0o640);
        let Image::Dir { entries: d, .. } = &entries[OsStr::new("d")] else { panic!("d is a dir") };
        let Image::File { data, .. } = &d[OsStr::new("f")] else { panic!("f is a file") };
        assert_eq!(data.read(0, 100), b"hello");

        std::os::unix::fs::symlink("f", root.join("d/link")).expect("symlink");
        let err = Image::load(root).expect_err("symlink refused");
        assert!(err.to_string().contains("d/link is a symbolic link"), "{err}");
        assert!(matches!(Image::load(&root.join("e")), Err(LoadError::Unsupported(..))));
    }
}
