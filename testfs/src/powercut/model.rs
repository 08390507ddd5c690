//! The two-image model: every inode carries its live state (what operations see) and its
//! durable state (what a power cut leaves). This file holds the inode table and the
//! operations that change only the live image; `durable.rs` holds fsync, fsyncdir, the
//! lifetime of inodes and the extraction of either image.
//!
//! Plain data and plain errors (`libc` errno values), no FUSE types, so the two-image logic
//! is unit-tested without a mount (`tests.rs`).

use std::collections::{BTreeMap, HashMap};
use std::ffi::{OsStr, OsString};
use std::time::SystemTime;

use super::image::Meta;
use super::pages::{FileData, Pages, PAGE};

pub type Ino = u64;
pub const ROOT: Ino = 1;
const NAME_MAX: usize = 255;

/// Result of a model operation: the error is an errno value.
pub type Res<T> = Result<T, i32>;

/// Why the model stopped accepting operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// SIGUSR1: only the durable image survives.
    PowerCut,
    /// SIGTERM, SIGINT or an external umount: the live image is kept.
    Clean,
}

#[derive(Debug, Clone)]
pub(super) enum Body {
    File(FileData),
    Dir { live: BTreeMap<OsString, Ino>, durable: BTreeMap<OsString, Ino> },
}

#[derive(Debug, Clone)]
pub(super) struct Inode {
    pub(super) meta: Meta,
    /// The attributes as of the last fsync (or creation): what a power cut writes.
    pub(super) durable_meta: Meta,
    /// Live parent directory, for `..`; stale once the inode has no live name.
    pub(super) parent: Ino,
    /// Whether a live directory entry names this inode (there are no hard links).
    pub(super) linked: bool,
    /// How many durable directory entries name this inode.
    pub(super) durable_links: u32,
    /// Open file and directory handles: an unlinked open file stays usable.
    pub(super) opens: u32,
    pub(super) body: Body,
}

/// What `getattr` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attr {
    pub ino: Ino,
    pub dir: bool,
    pub size: u64,
    /// 4 KiB pages the size spans (holes included).
    pub pages: u64,
    pub nlink: u32,
    pub meta: Meta,
}

/// The attribute changes of a `setattr`; `None` leaves a field alone.
#[derive(Debug, Clone, Copy, Default)]
pub struct SetAttr {
    pub perm: Option<u16>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub atime: Option<SystemTime>,
    pub mtime: Option<SystemTime>,
}

/// The whole filesystem. One `Mutex` around it serializes every operation.
#[derive(Debug)]
pub struct Model {
    pub(super) inodes: HashMap<Ino, Inode>,
    pub(super) next_ino: Ino,
    pub(super) stopped: Option<Stop>,
}

impl Model {
    /// Fails every operation with `EIO` once stopped: a cut machine answers nothing.
    pub(super) fn check(&self) -> Res<()> {
        match self.stopped {
            Some(_) => Err(libc::EIO),
            None => Ok(()),
        }
    }

    /// Stops the model (first caller wins) and returns why it is stopped.
    pub fn stop(&mut self, why: Stop) -> Stop {
        *self.stopped.get_or_insert(why)
    }

    pub(super) fn node(&self, ino: Ino) -> Res<&Inode> {
        self.inodes.get(&ino).ok_or(libc::ENOENT)
    }

    pub(super) fn node_mut(&mut self, ino: Ino) -> Res<&mut Inode> {
        self.inodes.get_mut(&ino).ok_or(libc::ENOENT)
    }

    fn entries(&self, dir: Ino) -> Res<&BTreeMap<OsString, Ino>> {
        match &self.node(dir)?.body {
            Body::Dir { live, .. } => Ok(live),
            Body::File(_) => Err(libc::ENOTDIR),
        }
    }

    fn entries_mut(&mut self, dir: Ino) -> Res<&mut BTreeMap<OsString, Ino>> {
        match &mut self.node_mut(dir)?.body {
            Body::Dir { live, .. } => Ok(live),
            Body::File(_) => Err(libc::ENOTDIR),
        }
    }

    fn file_mut(&mut self, ino: Ino) -> Res<&mut FileData> {
        match &mut self.node_mut(ino)?.body {
            Body::File(data) => Ok(data),
            Body::Dir { .. } => Err(libc::EISDIR),
        }
    }

    /// Sets mtime and ctime to now.
    fn touch(&mut self, ino: Ino) -> Res<()> {
        let meta = &mut self.node_mut(ino)?.meta;
        meta.mtime = SystemTime::now();
        meta.ctime = meta.mtime;
        Ok(())
    }

    pub fn getattr(&self, ino: Ino) -> Res<Attr> {
        self.check()?;
        let node = self.node(ino)?;
        let (dir, size, pages, nlink) = match &node.body {
            // From the size, not the allocated pages: counting those costs the file's size.
            Body::File(data) => {
                (false, data.live().size(), data.live().size().div_ceil(PAGE as u64), 1)
            }
            Body::Dir { live, .. } => {
                let subdirs = live
                    .values()
                    .filter(|i| {
                        matches!(self.inodes.get(i).map(|n| &n.body), Some(Body::Dir { .. }))
                    })
                    .count();
                (true, live.len() as u64, 1, 2 + u32::try_from(subdirs).unwrap_or(u32::MAX - 2))
            }
        };
        let nlink = if node.linked || ino == ROOT { nlink } else { 0 };
        Ok(Attr { ino, dir, size, pages, nlink, meta: node.meta })
    }

    pub fn lookup(&self, parent: Ino, name: &OsStr) -> Res<Attr> {
        self.check()?;
        let ino = *self.entries(parent)?.get(name).ok_or(libc::ENOENT)?;
        self.getattr(ino)
    }

    pub fn setattr(&mut self, ino: Ino, set: SetAttr) -> Res<Attr> {
        self.check()?;
        if let Some(size) = set.size {
            self.file_mut(ino)?.truncate(size)?;
            self.touch(ino)?;
        }
        let meta = &mut self.node_mut(ino)?.meta;
        meta.perm = set.perm.map_or(meta.perm, |p| p & 0o7777);
        meta.uid = set.uid.unwrap_or(meta.uid);
        meta.gid = set.gid.unwrap_or(meta.gid);
        meta.atime = set.atime.unwrap_or(meta.atime);
        meta.mtime = set.mtime.unwrap_or(meta.mtime);
        meta.ctime = SystemTime::now();
        self.getattr(ino)
    }

    /// Creates a file (`dir` false) or directory `name` in `parent`. Its durable content
    /// is empty and it has no durable name until `parent` is fsynced.
    pub fn create(&mut self, parent: Ino, name: &OsStr, dir: bool, meta: Meta) -> Res<Attr> {
        self.check()?;
        if name.len() > NAME_MAX {
            return Err(libc::ENAMETOOLONG);
        }
        if self.entries(parent)?.contains_key(name) {
            return Err(libc::EEXIST);
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        let body = if dir {
            Body::Dir { live: BTreeMap::new(), durable: BTreeMap::new() }
        } else {
            Body::File(FileData::new(Pages::default()))
        };
        let node = Inode {
            meta,
            durable_meta: meta,
            parent,
            linked: true,
            durable_links: 0,
            opens: 0,
            body,
        };
        self.inodes.insert(ino, node);
        self.entries_mut(parent)?.insert(name.to_owned(), ino);
        self.touch(parent)?;
        self.getattr(ino)
    }

    /// unlink (`dir` false) or rmdir (`dir` true).
    pub fn remove(&mut self, parent: Ino, name: &OsStr, dir: bool) -> Res<()> {
        self.check()?;
        let ino = *self.entries(parent)?.get(name).ok_or(libc::ENOENT)?;
        match (&self.node(ino)?.body, dir) {
            (Body::File(_), true) => return Err(libc::ENOTDIR),
            (Body::Dir { .. }, false) => return Err(libc::EISDIR),
            (Body::Dir { live, .. }, true) if !live.is_empty() => return Err(libc::ENOTEMPTY),
            _ => {}
        }
        self.entries_mut(parent)?.remove(name);
        self.touch(parent)?;
        self.unlinked(ino)
    }

    /// Moves `name` in `parent` to `new_name` in `new_parent`, replacing a compatible
    /// target unless `noreplace` (then `EEXIST`).
    pub fn rename(
        &mut self,
        parent: Ino,
        name: &OsStr,
        new_parent: Ino,
        new_name: &OsStr,
        noreplace: bool,
    ) -> Res<()> {
        self.check()?;
        if new_name.len() > NAME_MAX {
            return Err(libc::ENAMETOOLONG);
        }
        let ino = *self.entries(parent)?.get(name).ok_or(libc::ENOENT)?;
        let is_dir = matches!(self.node(ino)?.body, Body::Dir { .. });
        if is_dir && self.is_within(new_parent, ino)? {
            return Err(libc::EINVAL); // a directory must not move below itself
        }
        let target = self.entries(new_parent)?.get(new_name).copied();
        if let Some(target) = target {
            if noreplace {
                return Err(libc::EEXIST);
            }
            if target == ino {
                return Ok(());
            }
            match (is_dir, &self.node(target)?.body) {
                (false, Body::Dir { .. }) => return Err(libc::EISDIR),
                (true, Body::File(_)) => return Err(libc::ENOTDIR),
                (true, Body::Dir { live, .. }) if !live.is_empty() => return Err(libc::ENOTEMPTY),
                _ => {}
            }
        }
        self.entries_mut(parent)?.remove(name);
        self.entries_mut(new_parent)?.insert(new_name.to_owned(), ino);
        self.touch(parent)?;
        self.touch(new_parent)?;
        let node = self.node_mut(ino)?;
        node.parent = new_parent;
        node.meta.ctime = SystemTime::now();
        match target {
            Some(target) => self.unlinked(target),
            None => Ok(()),
        }
    }

    /// Whether `ino` is `ancestor` or lies below it in the live tree.
    fn is_within(&self, mut ino: Ino, ancestor: Ino) -> Res<bool> {
        loop {
            if ino == ancestor {
                return Ok(true);
            }
            if ino == ROOT {
                return Ok(false);
            }
            ino = self.node(ino)?.parent;
        }
    }

    /// open or opendir: `EISDIR`/`ENOTDIR` for the wrong kind; the inode is kept until
    /// [`Model::release`] even if its name goes away.
    pub fn open(&mut self, ino: Ino, dir: bool) -> Res<()> {
        self.check()?;
        let node = self.node_mut(ino)?;
        match (&node.body, dir) {
            (Body::Dir { .. }, false) => Err(libc::EISDIR),
            (Body::File(_), true) => Err(libc::ENOTDIR),
            _ => {
                node.opens += 1;
                Ok(())
            }
        }
    }

    /// release or releasedir: the last handle of a nameless inode frees it. Works even
    /// when stopped (it changes neither image).
    pub fn release(&mut self, ino: Ino) {
        if let Ok(node) = self.node_mut(ino) {
            node.opens = node.opens.saturating_sub(1);
            self.collect(ino);
        }
    }

    pub fn read(&self, ino: Ino, offset: u64, len: u32) -> Res<Vec<u8>> {
        self.check()?;
        match &self.node(ino)?.body {
            Body::File(data) => Ok(data.live().read(offset, len)),
            Body::Dir { .. } => Err(libc::EISDIR),
        }
    }

    pub fn write(&mut self, ino: Ino, offset: u64, bytes: &[u8]) -> Res<u32> {
        self.check()?;
        self.file_mut(ino)?.write(offset, bytes)?;
        self.touch(ino)?;
        u32::try_from(bytes.len()).map_err(|_| libc::EINVAL)
    }

    /// Directory listing with `.` and `..` first: (ino, is_dir, name).
    pub fn list(&self, dir: Ino) -> Res<Vec<(Ino, bool, OsString)>> {
        self.check()?;
        let parent = self.node(dir)?.parent;
        let mut out = vec![(dir, true, ".".into()), (parent, true, "..".into())];
        for (name, ino) in self.entries(dir)? {
            let is_dir = matches!(self.node(*ino)?.body, Body::Dir { .. });
            out.push((*ino, is_dir, name.clone()));
        }
        Ok(out)
    }

    /// (inodes, allocated pages) of everything held, both images, for statfs.
    pub fn usage(&self) -> Res<(u64, u64)> {
        self.check()?;
        let pages = self
            .inodes
            .values()
            .map(|n| match &n.body {
                Body::File(data) => data.live().allocated().max(data.durable().allocated()),
                Body::Dir { .. } => 1,
            })
            .sum();
        Ok((self.inodes.len() as u64, pages))
    }
}
