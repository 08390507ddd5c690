//! The in-memory tree: inodes, directories and file contents. Plain data and plain errors
//! (`libc` errno values), no FUSE types, so it is unit-tested without a mount.

use std::collections::{BTreeMap, HashMap};
use std::ffi::{OsStr, OsString};
use std::time::SystemTime;

pub type Ino = u64;
pub const ROOT: Ino = 1;
/// Largest file the tree will hold; a write beyond it gets `EFBIG` instead of an allocation
/// the size of the offset.
pub const MAX_FILE_SIZE: u64 = 1 << 32;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    File(Vec<u8>),
    Dir(BTreeMap<OsString, Ino>),
}

#[derive(Debug, Clone)]
pub struct Node {
    pub ino: Ino,
    pub parent: Ino,
    pub perm: u16,
    pub uid: u32,
    pub gid: u32,
    pub atime: SystemTime,
    pub mtime: SystemTime,
    pub ctime: SystemTime,
    pub content: Content,
}

impl Node {
    pub fn size(&self) -> u64 {
        match &self.content {
            Content::File(data) => data.len() as u64,
            Content::Dir(entries) => entries.len() as u64,
        }
    }

    pub fn is_dir(&self) -> bool {
        matches!(self.content, Content::Dir(_))
    }

    fn touch(&mut self) {
        let now = SystemTime::now();
        self.mtime = now;
        self.ctime = now;
    }
}

/// Result type of tree operations: the error is an errno value.
pub type TreeResult<T> = Result<T, i32>;

#[derive(Debug)]
pub struct Tree {
    nodes: HashMap<Ino, Node>,
    next_ino: Ino,
}

impl Tree {
    pub fn new(uid: u32, gid: u32) -> Self {
        let now = SystemTime::now();
        let root = Node {
            ino: ROOT,
            parent: ROOT,
            perm: 0o755,
            uid,
            gid,
            atime: now,
            mtime: now,
            ctime: now,
            content: Content::Dir(BTreeMap::new()),
        };
        Tree { nodes: HashMap::from([(ROOT, root)]), next_ino: ROOT + 1 }
    }

    pub fn get(&self, ino: Ino) -> TreeResult<&Node> {
        self.nodes.get(&ino).ok_or(libc::ENOENT)
    }

    pub fn get_mut(&mut self, ino: Ino) -> TreeResult<&mut Node> {
        self.nodes.get_mut(&ino).ok_or(libc::ENOENT)
    }

    fn entries(&self, dir: Ino) -> TreeResult<&BTreeMap<OsString, Ino>> {
        match &self.get(dir)?.content {
            Content::Dir(entries) => Ok(entries),
            Content::File(_) => Err(libc::ENOTDIR),
        }
    }

    fn entries_mut(&mut self, dir: Ino) -> TreeResult<&mut BTreeMap<OsString, Ino>> {
        match &mut self.get_mut(dir)?.content {
            Content::Dir(entries) => Ok(entries),
            Content::File(_) => Err(libc::ENOTDIR),
        }
    }

    pub fn lookup(&self, parent: Ino, name: &OsStr) -> TreeResult<&Node> {
        let ino = *self.entries(parent)?.get(name).ok_or(libc::ENOENT)?;
        self.get(ino)
    }

    /// Creates a file or directory `name` in `parent`.
    pub fn create(
        &mut self,
        parent: Ino,
        name: &OsStr,
        dir: bool,
        perm: u16,
        uid: u32,
        gid: u32,
    ) -> TreeResult<&Node> {
        if name.len() > 255 {
            return Err(libc::ENAMETOOLONG);
        }
        if self.entries(parent)?.contains_key(name) {
            return Err(libc::EEXIST);
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        let now = SystemTime::now();
        let content = if dir { Content::Dir(BTreeMap::new()) } else { Content::File(Vec::new()) };
        let node = Node {
            ino,
            parent,
            perm: perm & 0o7777,
            uid,
            gid,
            atime: now,
            mtime: now,
            ctime: now,
            content,
        };
        self.entries_mut(parent)?.insert(name.to_owned(), ino);
        self.get_mut(parent)?.touch();
        self.nodes.insert(ino, node);
        self.get(ino)
    }

    /// Removes `name` from `parent`: a file if `dir` is false, an empty directory otherwise.
    pub fn remove(&mut self, parent: Ino, name: &OsStr, dir: bool) -> TreeResult<()> {
        let node = self.lookup(parent, name)?;
        match (&node.content, dir) {
            (Content::File(_), true) => return Err(libc::ENOTDIR),
            (Content::Dir(_), false) => return Err(libc::EISDIR),
            (Content::Dir(entries), true) if !entries.is_empty() => return Err(libc::ENOTEMPTY),
            _ => {}
        }
        let ino = node.ino;
        self.entries_mut(parent)?.remove(name);
        self.get_mut(parent)?.touch();
        self.nodes.remove(&ino);
        Ok(())
    }

    /// Moves `name` in `parent` to `new_name` in `new_parent`, replacing a compatible target.
    pub fn rename(
        &mut self,
        parent: Ino,
        name: &OsStr,
        new_parent: Ino,
        new_name: &OsStr,
    ) -> TreeResult<()> {
        let (ino, is_dir) = {
            let node = self.lookup(parent, name)?;
            (node.ino, node.is_dir())
        };
        if is_dir && self.is_within(new_parent, ino)? {
            return Err(libc::EINVAL); // a directory must not move below itself
        }
        if let Ok(target) = self.lookup(new_parent, new_name) {
            if target.ino == ino {
                return Ok(());
            }
            match (is_dir, target.is_dir()) {
                (false, true) => return Err(libc::EISDIR),
                (true, false) => return Err(libc::ENOTDIR),
                _ => {}
            }
            self.remove(new_parent, new_name, target.is_dir())?;
        } else {
            self.entries(new_parent)?;
        }
        self.entries_mut(parent)?.remove(name);
        self.get_mut(parent)?.touch();
        self.entries_mut(new_parent)?.insert(new_name.to_owned(), ino);
        self.get_mut(new_parent)?.touch();
        let node = self.get_mut(ino)?;
        node.parent = new_parent;
        node.ctime = SystemTime::now();
        Ok(())
    }

    /// Whether `ino` is `ancestor` or lies below it.
    fn is_within(&self, mut ino: Ino, ancestor: Ino) -> TreeResult<bool> {
        loop {
            if ino == ancestor {
                return Ok(true);
            }
            if ino == ROOT {
                return Ok(false);
            }
            ino = self.get(ino)?.parent;
        }
    }

    fn file_mut(&mut self, ino: Ino) -> TreeResult<&mut Vec<u8>> {
        match &mut self.get_mut(ino)?.content {
            Content::File(data) => Ok(data),
            Content::Dir(_) => Err(libc::EISDIR),
        }
    }

    pub fn read(&self, ino: Ino, offset: u64, size: u32) -> TreeResult<&[u8]> {
        match &self.get(ino)?.content {
            Content::File(data) => {
                let start = usize::try_from(offset).unwrap_or(usize::MAX).min(data.len());
                let end = start.saturating_add(size as usize).min(data.len());
                Ok(&data[start..end])
            }
            Content::Dir(_) => Err(libc::EISDIR),
        }
    }

    pub fn write(&mut self, ino: Ino, offset: u64, bytes: &[u8]) -> TreeResult<u32> {
        let end = offset
            .checked_add(bytes.len() as u64)
            .filter(|end| *end <= MAX_FILE_SIZE)
            .ok_or(libc::EFBIG)?;
        let data = self.file_mut(ino)?;
        let (start, end) = (offset as usize, end as usize);
        if data.len() < end {
            data.resize(end, 0);
        }
        data[start..end].copy_from_slice(bytes);
        self.get_mut(ino)?.touch();
        u32::try_from(bytes.len()).map_err(|_| libc::EINVAL)
    }

    pub fn truncate(&mut self, ino: Ino, size: u64) -> TreeResult<()> {
        if size > MAX_FILE_SIZE {
            return Err(libc::EFBIG);
        }
        self.file_mut(ino)?.resize(size as usize, 0);
        self.get_mut(ino)?.touch();
        Ok(())
    }

    /// Directory listing with `.` and `..` first: (ino, is_dir, name).
    pub fn list(&self, dir: Ino) -> TreeResult<Vec<(Ino, bool, OsString)>> {
        let node = self.get(dir)?;
        let mut out =
            vec![(dir, true, OsString::from(".")), (node.parent, true, OsString::from(".."))];
        for (name, ino) in self.entries(dir)? {
            out.push((*ino, self.get(*ino)?.is_dir(), name.clone()));
        }
        Ok(out)
    }

    pub fn inode_count(&self) -> u64 {
        self.nodes.len() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(s: &str) -> &OsStr {
        OsStr::new(s)
    }

    #[test]
    fn file_round_trip_and_truncate() {
        let mut t = Tree::new(0, 0);
        let ino = t.create(ROOT, os("f"), false, 0o644, 0, 0).expect("create").ino;
        assert_eq!(t.write(ino, 0, b"hello"), Ok(5));
        assert_eq!(t.write(ino, 7, b"!"), Ok(1));
        assert_eq!(t.read(ino, 0, 100), Ok(&b"hello\0\0!"[..]));
        assert_eq!(t.read(ino, 100, 10), Ok(&b""[..]));
        t.truncate(ino, 2).expect("truncate");
        assert_eq!(t.read(ino, 0, 100), Ok(&b"he"[..]));
        assert_eq!(t.write(ino, MAX_FILE_SIZE, b"x"), Err(libc::EFBIG));
        assert_eq!(t.create(ROOT, os("f"), false, 0o644, 0, 0).err(), Some(libc::EEXIST));
    }

    #[test]
    fn directories_and_removal_rules() {
        let mut t = Tree::new(0, 0);
        let d = t.create(ROOT, os("d"), true, 0o755, 0, 0).expect("mkdir").ino;
        t.create(d, os("f"), false, 0o644, 0, 0).expect("create");
        assert_eq!(t.remove(ROOT, os("d"), true), Err(libc::ENOTEMPTY));
        assert_eq!(t.remove(ROOT, os("d"), false), Err(libc::EISDIR));
        assert_eq!(t.remove(d, os("f"), true), Err(libc::ENOTDIR));
        let names: Vec<_> = t.list(d).expect("list").into_iter().map(|e| e.2).collect();
        assert_eq!(names, [".", "..", "f"]);
        t.remove(d, os("f"), false).expect("unlink");
        t.remove(ROOT, os("d"), true).expect("rmdir");
        assert_eq!(t.inode_count(), 1);
        assert_eq!(t.lookup(ROOT, os("d")).err(), Some(libc::ENOENT));
    }

    #[test]
    fn rename_replaces_and_refuses_cycles() {
        let mut t = Tree::new(0, 0);
        let a = t.create(ROOT, os("a"), true, 0o755, 0, 0).expect("mkdir").ino;
        let b = t.create(a, os("b"), true, 0o755, 0, 0).expect("mkdir").ino;
        assert_eq!(t.rename(ROOT, os("a"), b, os("x")), Err(libc::EINVAL));
        let f = t.create(ROOT, os("f"), false, 0o644, 0, 0).expect("create").ino;
        t.create(a, os("g"), false, 0o644, 0, 0).expect("create");
        t.rename(ROOT, os("f"), a, os("g")).expect("rename over a file");
        assert_eq!(t.lookup(a, os("g")).map(|n| n.ino), Ok(f));
        assert_eq!(t.get(f).map(|n| n.parent), Ok(a));
        assert_eq!(t.lookup(ROOT, os("f")).err(), Some(libc::ENOENT));
    }
}
