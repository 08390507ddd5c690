//! Writes an image to the backing directory, replacing its contents exactly.
//!
//! In place, directory by directory: first whatever the image lacks (or holds as the other
//! kind) is removed, then every file is written to a temporary name in its directory,
//! fsynced and renamed over its own name, then subdirectories are done the same way, and
//! each directory is fsynced after its entries. So a file on disk is always either its old
//! or its new content, never a torn mix; a crash of this process in the middle (or a real
//! power cut) may leave some files old and some new. In place rather than a tree built
//! beside it and swapped: the backing directory may be a mount point, or its parent not
//! writable, and the sibling would need the space of a second copy.
//!
//! Attributes written: permission bits, owner (when allowed), access and modification
//! times. Holes stay holes (only allocated pages are written).

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fs::{self, File, FileTimes, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use super::image::{Image, Meta};
use super::pages::Pages;

/// Makes `root` (an existing directory) hold exactly `image` (a directory image).
pub fn write(root: &Path, image: &Image) -> io::Result<()> {
    let Image::Dir { meta, entries } = image else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the image root is not a directory",
        ));
    };
    write_dir(root, entries)?;
    set_meta(&File::open(root)?, meta)
}

fn write_dir(dir: &Path, entries: &BTreeMap<OsString, Image>) -> io::Result<()> {
    let context = |e: io::Error, what: &str, path: &Path| {
        io::Error::new(e.kind(), format!("cannot {what} {}: {e}", path.display()))
    };
    for found in fs::read_dir(dir).map_err(|e| context(e, "list", dir))? {
        let found = found.map_err(|e| context(e, "list", dir))?;
        let kind = found.file_type()?;
        let keep = match entries.get(&found.file_name()) {
            Some(Image::Dir { .. }) => kind.is_dir(),
            Some(Image::File { .. }) => kind.is_file(),
            None => false,
        };
        if !keep {
            let path = found.path();
            let removed =
                if kind.is_dir() { fs::remove_dir_all(&path) } else { fs::remove_file(&path) };
            removed.map_err(|e| context(e, "remove", &path))?;
        }
    }
    for (name, image) in entries {
        let path = dir.join(name);
        match image {
            Image::File { meta, data } => {
                write_file(dir, name, meta, data).map_err(|e| context(e, "write", &path))?
            }
            Image::Dir { meta, entries } => {
                match fs::create_dir(&path) {
                    Err(e) if e.kind() != io::ErrorKind::AlreadyExists => {
                        return Err(context(e, "create", &path))
                    }
                    _ => {}
                }
                write_dir(&path, entries)?;
                // After the entries: writing them changed the directory's times.
                let handle = File::open(&path).map_err(|e| context(e, "open", &path))?;
                set_meta(&handle, meta).map_err(|e| context(e, "set attributes of", &path))?;
            }
        }
    }
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| context(e, "fsync", dir))
}

/// Writes `data` to a fresh temporary file in `dir`, then renames it over `name`.
fn write_file(dir: &Path, name: &OsStr, meta: &Meta, data: &Pages) -> io::Result<()> {
    let (tmp, file) = temp_file(dir)?;
    let written = (|| {
        file.set_len(data.size())?;
        for (offset, bytes) in data.extents() {
            file.write_all_at(bytes, offset)?;
        }
        set_meta(&file, meta)?;
        file.sync_all()?;
        fs::rename(&tmp, dir.join(name))
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written
}

/// A new file named `.dms-powercutfs.tmp.<n>` in `dir`, the first `n` not taken.
fn temp_file(dir: &Path) -> io::Result<(std::path::PathBuf, File)> {
    for n in 0u32.. {
        let path = dir.join(format!(".dms-powercutfs.tmp.{n}"));
        match OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path) {
            Ok(file) => return Ok((path, file)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::other("no free temporary name"))
}

/// Owner first (a chown clears set-id bits), then permissions, then times.
fn set_meta(file: &File, meta: &Meta) -> io::Result<()> {
    match std::os::unix::fs::fchown(file, Some(meta.uid), Some(meta.gid)) {
        Err(e) if e.kind() != io::ErrorKind::PermissionDenied => return Err(e),
        _ => {} // not root: the files stay ours
    }
    file.set_permissions(fs::Permissions::from_mode(u32::from(meta.perm)))?;
    file.set_times(FileTimes::new().set_accessed(meta.atime).set_modified(meta.mtime))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime};

    fn file(bytes: &[u8], perm: u16) -> Image {
        Image::File { meta: Meta::new(perm, 0, 0), data: Pages::from_bytes(bytes) }
    }

    fn dir(entries: Vec<(&str, Image)>) -> Image {
        let entries = entries.into_iter().map(|(n, i)| (n.into(), i)).collect();
        Image::Dir { meta: Meta::new(0o755, 0, 0), entries }
    }

    #[test]
    fn replaces_the_contents_exactly_and_round_trips() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path();
        fs::create_dir_all(root.join("gone/deep")).expect("mkdir");
        fs::write(root.join("gone/deep/x"), b"x").expect("write");
        fs::write(root.join("was-file"), b"old").expect("write");
        fs::create_dir(root.join("was-dir")).expect("mkdir");
        fs::write(root.join("keep"), b"old content, longer").expect("write");
        fs::write(root.join(".dms-powercutfs.tmp.0"), b"taken").expect("write");

        let mut sparse = vec![0u8; 3 * 4096];
        sparse[2 * 4096 + 5] = 9;
        let mut image = dir(vec![
            ("keep", file(b"new", 0o600)),
            ("was-file", dir(vec![("inner", file(b"i", 0o644))])),
            ("was-dir", file(&sparse, 0o640)),
            ("empty", dir(vec![])),
        ]);
        if let Image::Dir { entries, .. } = &mut image {
            if let Some(Image::File { meta, .. }) = entries.get_mut(OsStr::new("keep")) {
                meta.mtime = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
            }
        }
        write(root, &image).expect("write image");

        let mut names: Vec<_> = fs::read_dir(root)
            .expect("ls")
            .map(|e| e.expect("entry").file_name().into_string().expect("utf-8"))
            .collect();
        names.sort();
        assert_eq!(names, ["empty", "keep", "was-dir", "was-file"]);
        assert_eq!(fs::read(root.join("keep")).expect("read"), b"new");
        let keep = fs::metadata(root.join("keep")).expect("stat");
        assert_eq!(keep.permissions().mode() & 0o7777, 0o600);
        assert_eq!(
            keep.modified().expect("mtime"),
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000)
        );
        assert_eq!(fs::read(root.join("was-dir")).expect("read"), sparse);
        assert_eq!(fs::read(root.join("was-file/inner")).expect("read"), b"i");

        let loaded = Image::load(root).expect("load");
        assert_eq!(loaded.counts(), image.counts());
    }
}
