//! The FUSE face of the in-memory [`tree::Tree`]: each `fuser::Filesystem` method locks the
//! tree, performs one operation and replies.

pub mod tree;

use std::ffi::OsStr;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, FopenFlags, Generation, INodeNo, LockOwner, OpenFlags,
    RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry,
    ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow, WriteFlags,
};

use tree::{Node, Tree, TreeResult};

/// How long the kernel may cache attributes and entries. Short, so that a test that looks
/// through the mount sees changes at once.
const TTL: Duration = Duration::from_secs(1);
const BLOCK: u32 = 4096;

/// The filesystem served on the mount.
#[derive(Debug)]
pub struct MemFs {
    tree: Mutex<Tree>,
}

impl MemFs {
    pub fn new(uid: u32, gid: u32) -> Self {
        MemFs { tree: Mutex::new(Tree::new(uid, gid)) }
    }

    fn tree(&self) -> MutexGuard<'_, Tree> {
        // A panic inside one operation must not take every later operation down with it.
        self.tree.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn errno(code: i32) -> Errno {
    Errno::from_i32(code)
}

fn attr(node: &Node) -> FileAttr {
    let size = node.size();
    FileAttr {
        ino: INodeNo(node.ino),
        size,
        blocks: size.div_ceil(512),
        atime: node.atime,
        mtime: node.mtime,
        ctime: node.ctime,
        crtime: node.ctime,
        kind: kind(node.is_dir()),
        perm: node.perm,
        nlink: if node.is_dir() { 2 } else { 1 },
        uid: node.uid,
        gid: node.gid,
        rdev: 0,
        blksize: BLOCK,
        flags: 0,
    }
}

fn kind(dir: bool) -> FileType {
    if dir {
        FileType::Directory
    } else {
        FileType::RegularFile
    }
}

fn time(t: TimeOrNow) -> SystemTime {
    match t {
        TimeOrNow::SpecificTime(t) => t,
        TimeOrNow::Now => SystemTime::now(),
    }
}

fn reply_entry(result: TreeResult<&Node>, reply: ReplyEntry) {
    match result {
        Ok(node) => reply.entry(&TTL, &attr(node), Generation(0)),
        Err(e) => reply.error(errno(e)),
    }
}

fn reply_empty(result: TreeResult<()>, reply: ReplyEmpty) {
    match result {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(errno(e)),
    }
}

impl fuser::Filesystem for MemFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        reply_entry(self.tree().lookup(parent.0, name), reply);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.tree().get(ino.0) {
            Ok(node) => reply.attr(&TTL, &attr(node)),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let mut tree = self.tree();
        if let Some(size) = size {
            if let Err(e) = tree.truncate(ino.0, size) {
                return reply.error(errno(e));
            }
        }
        let node = match tree.get_mut(ino.0) {
            Ok(node) => node,
            Err(e) => return reply.error(errno(e)),
        };
        if let Some(mode) = mode {
            node.perm = (mode & 0o7777) as u16;
        }
        node.uid = uid.unwrap_or(node.uid);
        node.gid = gid.unwrap_or(node.gid);
        if let Some(t) = atime {
            node.atime = time(t);
        }
        if let Some(t) = mtime {
            node.mtime = time(t);
        }
        node.ctime = SystemTime::now();
        reply.attr(&TTL, &attr(node));
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let perm = (mode & !umask & 0o7777) as u16;
        let mut tree = self.tree();
        reply_entry(tree.create(parent.0, name, true, perm, req.uid(), req.gid()), reply);
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        reply_empty(self.tree().remove(parent.0, name, false), reply);
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        reply_empty(self.tree().remove(parent.0, name, true), reply);
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let mut tree = self.tree();
        if flags.contains(RenameFlags::RENAME_NOREPLACE)
            && tree.lookup(newparent.0, newname).is_ok()
        {
            return reply.error(Errno::EEXIST);
        }
        if !(flags - RenameFlags::RENAME_NOREPLACE).is_empty() {
            return reply.error(Errno::EINVAL);
        }
        reply_empty(tree.rename(parent.0, name, newparent.0, newname), reply);
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.tree().get(ino.0) {
            Ok(node) if node.is_dir() => reply.error(Errno::EISDIR),
            Ok(_) => reply.opened(FileHandle(0), FopenFlags::empty()),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.tree().read(ino.0, offset, size) {
            Ok(bytes) => reply.data(bytes),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        match self.tree().write(ino.0, offset, data) {
            Ok(n) => reply.written(n),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let entries = match self.tree().list(ino.0) {
            Ok(entries) => entries,
            Err(e) => return reply.error(errno(e)),
        };
        let skip = usize::try_from(offset).unwrap_or(usize::MAX);
        for (i, (child, dir, name)) in entries.into_iter().enumerate().skip(skip) {
            // The offset handed back is that of the *next* entry.
            if reply.add(INodeNo(child), (i + 1) as u64, kind(dir), &name) {
                break;
            }
        }
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let files = self.tree().inode_count();
        let blocks = 1 << 20;
        reply.statfs(blocks, blocks, blocks, files + 1_000_000, 1_000_000, BLOCK, 255, BLOCK);
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        let perm = (mode & !umask & 0o7777) as u16;
        let mut tree = self.tree();
        match tree.create(parent.0, name, false, perm, req.uid(), req.gid()) {
            Ok(node) => {
                reply.created(&TTL, &attr(node), Generation(0), FileHandle(0), FopenFlags::empty())
            }
            Err(e) => reply.error(errno(e)),
        }
    }
}
