//! The durable half of the model: what fsync and fsyncdir make durable, how long an inode
//! lives, and the two images a stop writes out.
//!
//! - fsync of a file: its durable data, size and attributes become the live ones (cost:
//!   the pages changed since its last sync, see `pages.rs`).
//! - fsyncdir: the directory's durable entries (name -> inode) become its live entries,
//!   which is how creations, renames and unlinks in it become durable. Nothing else does:
//!   a name never made durable does not survive a cut whatever happened to the file's data.
//! - An inode lives while a live entry, a durable entry or an open handle refers to it: an
//!   unlinked file whose unlink is not yet durable comes back after a cut.
//!
//! Renames are not atomic across directories here (each directory's entries become durable
//! on their own): a file moved between two directories of which only the target was
//! fsynced is in both after a cut (written out as two independent copies), and one moved
//! without a fsync of either stays in the old place. A directory could even end up named in
//! two durable places, or below itself; the durable image then keeps its first appearance
//! in a depth-first walk by name and drops the others (counted in [`Survivors::dirs_dropped`]).

use std::collections::{BTreeMap, HashSet};
use std::ffi::OsString;

use super::image::{Counts, Image, Meta};
use super::model::{Body, Ino, Inode, Model, Res, ROOT};
use super::pages::FileData;

/// What a power cut now would keep and lose, for its log line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Survivors {
    /// What the durable image holds.
    pub kept: Counts,
    /// Files of the live image that the durable image lacks entirely.
    pub files_dropped: u64,
    /// Live bytes of the files the durable image holds that are not durable as they are
    /// (dirty pages and size changes), plus the whole size of the dropped files.
    pub bytes_dropped: u64,
    /// Durable appearances of a directory after its first (see the module comment).
    pub dirs_dropped: u64,
}

impl Model {
    /// A model whose live and durable images are both `image` (a directory).
    pub fn from_image(image: Image) -> Model {
        let mut model = Model { inodes: Default::default(), next_ino: ROOT, stopped: None };
        model.add(image, ROOT);
        model
    }

    /// Adds `image` as a new inode (the root when `next_ino` is [`ROOT`]) named in both
    /// images of `parent`, which the caller does.
    fn add(&mut self, image: Image, parent: Ino) -> Ino {
        let ino = self.next_ino;
        self.next_ino += 1;
        let (meta, body) = match image {
            Image::File { meta, data } => (meta, Body::File(FileData::new(data))),
            Image::Dir { meta, entries } => {
                let entries: BTreeMap<_, _> =
                    entries.into_iter().map(|(name, child)| (name, self.add(child, ino))).collect();
                (meta, Body::Dir { live: entries.clone(), durable: entries })
            }
        };
        let parent = if ino == ROOT { ROOT } else { parent };
        let node = Inode {
            meta,
            durable_meta: meta,
            parent,
            linked: true,
            durable_links: u32::from(ino != ROOT),
            opens: 0,
            body,
        };
        self.inodes.insert(ino, node);
        ino
    }

    /// fsync or fdatasync of a file: its data, size and attributes become durable.
    pub fn fsync(&mut self, ino: Ino) -> Res<()> {
        self.check()?;
        let node = self.node_mut(ino)?;
        match &mut node.body {
            Body::File(data) => {
                data.sync();
            }
            Body::Dir { .. } => return Err(libc::EISDIR),
        }
        node.durable_meta = node.meta;
        Ok(())
    }

    /// fsync of a directory: its entries (and attributes) become durable. Inodes that lose
    /// their last durable name and have no live one are freed.
    pub fn fsyncdir(&mut self, ino: Ino) -> Res<()> {
        self.check()?;
        let node = self.node_mut(ino)?;
        let (gained, lost): (Vec<Ino>, Vec<Ino>) = match &mut node.body {
            Body::Dir { live, durable } => {
                let old = std::mem::replace(durable, live.clone());
                (durable.values().copied().collect(), old.into_values().collect())
            }
            Body::File(_) => return Err(libc::ENOTDIR),
        };
        node.durable_meta = node.meta;
        // Count the new names before dropping the old, so that nothing named in both is freed.
        for child in gained {
            self.node_mut(child)?.durable_links += 1;
        }
        for child in lost {
            self.drop_durable_link(child);
        }
        Ok(())
    }

    /// The inode lost its live name.
    pub(super) fn unlinked(&mut self, ino: Ino) -> Res<()> {
        let node = self.node_mut(ino)?;
        node.linked = false;
        node.meta.ctime = std::time::SystemTime::now();
        self.collect(ino);
        Ok(())
    }

    fn drop_durable_link(&mut self, ino: Ino) {
        if let Some(node) = self.inodes.get_mut(&ino) {
            node.durable_links = node.durable_links.saturating_sub(1);
            self.collect(ino);
        }
    }

    /// Frees `ino` if nothing refers to it any more, and with it whatever only its durable
    /// entries kept alive. (Its live entries are empty: only empty directories lose their
    /// name.)
    pub(super) fn collect(&mut self, ino: Ino) {
        let mut work = vec![ino];
        while let Some(ino) = work.pop() {
            let free = ino != ROOT
                && self
                    .inodes
                    .get(&ino)
                    .is_some_and(|n| !n.linked && n.durable_links == 0 && n.opens == 0);
            if !free {
                continue;
            }
            if let Some(Inode { body: Body::Dir { durable, .. }, .. }) = self.inodes.remove(&ino) {
                for child in durable.into_values() {
                    if let Some(node) = self.inodes.get_mut(&child) {
                        node.durable_links = node.durable_links.saturating_sub(1);
                        work.push(child);
                    }
                }
            }
        }
    }

    /// What a clean stop writes: the tree as every operation sees it.
    pub fn live_image(&self) -> Image {
        self.image_of(ROOT, &mut HashSet::new(), false).0
    }

    /// What a power cut writes: the tree reachable from the root through durable entries,
    /// with durable contents and attributes, and what it loses compared with the live one.
    pub fn durable_image(&self) -> (Image, Survivors) {
        let (image, dirs_dropped) = self.image_of(ROOT, &mut HashSet::new(), true);
        let mut seen = HashSet::new();
        self.durable_files(ROOT, &mut HashSet::new(), &mut seen);
        let mut out = Survivors { kept: image.counts(), dirs_dropped, ..Default::default() };
        for ino in self.live_files() {
            let Some(Body::File(data)) = self.inodes.get(&ino).map(|n| &n.body) else { continue };
            if seen.contains(&ino) {
                out.bytes_dropped += data.unsynced_bytes();
            } else {
                out.files_dropped += 1;
                out.bytes_dropped += data.live().size();
            }
        }
        (image, out)
    }

    /// The image below `ino`, and how many directory appearances it skipped because the
    /// directory was already in it (`dirs`: directories taken so far).
    fn image_of(&self, ino: Ino, dirs: &mut HashSet<Ino>, durable: bool) -> (Image, u64) {
        let Some(node) = self.inodes.get(&ino) else {
            // The root always exists; children are checked by the caller.
            return (Image::empty_dir(Meta::new(0o755, 0, 0)), 0);
        };
        let meta = if durable { node.durable_meta } else { node.meta };
        match &node.body {
            Body::File(data) => {
                let data = if durable { data.durable() } else { data.live() };
                (Image::File { meta, data: data.clone() }, 0)
            }
            Body::Dir { .. } => {
                dirs.insert(ino);
                let mut skipped = 0;
                let mut entries = BTreeMap::new();
                for (name, child) in entries_of(node, durable).into_iter().flatten() {
                    // Every entry's inode exists (links are counted); skip one that would not.
                    let Some(child_node) = self.inodes.get(child) else { continue };
                    if matches!(child_node.body, Body::Dir { .. }) && dirs.contains(child) {
                        skipped += 1;
                        continue;
                    }
                    let (image, n) = self.image_of(*child, dirs, durable);
                    skipped += n;
                    entries.insert(name.clone(), image);
                }
                (Image::Dir { meta, entries }, skipped)
            }
        }
    }

    /// Files reachable through durable entries, walked like [`Model::image_of`].
    fn durable_files(&self, ino: Ino, dirs: &mut HashSet<Ino>, files: &mut HashSet<Ino>) {
        let Some(node) = self.inodes.get(&ino) else { return };
        let Some(entries) = entries_of(node, true) else {
            files.insert(ino);
            return;
        };
        dirs.insert(ino);
        for child in entries.values() {
            if !dirs.contains(child) {
                self.durable_files(*child, dirs, files);
            }
        }
    }

    /// Files reachable through live entries.
    fn live_files(&self) -> Vec<Ino> {
        let mut out = Vec::new();
        let mut stack = vec![ROOT];
        while let Some(ino) = stack.pop() {
            match self.inodes.get(&ino).map(|n| &n.body) {
                Some(Body::Dir { live, .. }) => stack.extend(live.values()),
                Some(Body::File(_)) => out.push(ino),
                None => {}
            }
        }
        out
    }
}

/// A directory's live or durable entries; `None` for a file.
fn entries_of(node: &Inode, durable: bool) -> Option<&BTreeMap<OsString, Ino>> {
    match &node.body {
        Body::Dir { live, durable: d } => Some(if durable { d } else { live }),
        Body::File(_) => None,
    }
}
