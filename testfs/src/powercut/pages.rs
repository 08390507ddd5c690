//! File contents as 4 KiB pages, and a file's two images (live and durable).
//!
//! Why pages: the journal's `db` file is fsynced after every request, so an fsync must cost
//! what changed since the previous one, not the file's size. A file's live and durable
//! images share their pages (`Arc`); a write copies a shared page before changing it
//! (`Arc::make_mut`) and records its index as dirty; an fsync hands the durable image the
//! dirty pages (reference copies) and nothing else. A page that is `None` reads as zeros
//! (holes, and pages past a shrink that were extended again), so sparse files stay small.

use std::collections::BTreeSet;
use std::sync::Arc;

/// Page size, also reported as the block size.
pub const PAGE: usize = 4096;
/// Largest file held; a write or truncate beyond it gets `EFBIG` (the page table of a 4 GiB
/// file is 8 MiB).
pub const MAX_FILE_SIZE: u64 = 1 << 32;

pub type Page = [u8; PAGE];

/// One image of a file's contents. Invariants: `pages.len() == size.div_ceil(PAGE)`, and the
/// bytes of the last page beyond `size` are zero (so growing the file shows zeros).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pages {
    size: u64,
    pages: Vec<Option<Arc<Page>>>,
}

fn page_count(size: u64) -> usize {
    // MAX_FILE_SIZE / PAGE fits any usize this code runs on.
    usize::try_from(size.div_ceil(PAGE as u64)).unwrap_or(usize::MAX)
}

impl Pages {
    /// Contents equal to `bytes`; all-zero pages are stored as holes.
    pub fn from_bytes(bytes: &[u8]) -> Self {
        let pages = bytes
            .chunks(PAGE)
            .map(|chunk| {
                if chunk.iter().all(|b| *b == 0) {
                    return None;
                }
                let mut page = [0u8; PAGE];
                page[..chunk.len()].copy_from_slice(chunk);
                Some(Arc::new(page))
            })
            .collect();
        Pages { size: bytes.len() as u64, pages }
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Pages that hold data (not holes): the file's allocation.
    pub fn allocated(&self) -> u64 {
        self.pages.iter().filter(|p| p.is_some()).count() as u64
    }

    /// `(offset, bytes)` of every page that is not a hole, cut at the file size: what a
    /// writer must put on disk after setting the length.
    pub fn extents(&self) -> impl Iterator<Item = (u64, &[u8])> + '_ {
        self.pages.iter().enumerate().filter_map(move |(i, page)| {
            let start = (i * PAGE) as u64;
            let len = (self.size - start).min(PAGE as u64) as usize;
            page.as_ref().map(|p| (start, &p[..len]))
        })
    }

    /// Up to `len` bytes from `offset`; fewer (maybe none) at the end of the file.
    pub fn read(&self, offset: u64, len: u32) -> Vec<u8> {
        let end = offset.saturating_add(u64::from(len)).min(self.size);
        let mut out = Vec::with_capacity(end.saturating_sub(offset) as usize);
        let mut pos = offset;
        while pos < end {
            let idx = (pos / PAGE as u64) as usize;
            let within = (pos % PAGE as u64) as usize;
            let n = (end - pos).min((PAGE - within) as u64) as usize;
            match &self.pages[idx] {
                Some(page) => out.extend_from_slice(&page[within..within + n]),
                None => out.resize(out.len() + n, 0),
            }
            pos += n as u64;
        }
        out
    }

    /// Writes `bytes` at `offset`, growing the file if needed; calls `touched` with the
    /// index of every page written.
    fn write(&mut self, offset: u64, bytes: &[u8], mut touched: impl FnMut(usize)) {
        if bytes.is_empty() {
            return;
        }
        let end = offset + bytes.len() as u64;
        if end > self.size {
            self.size = end;
            self.pages.resize(page_count(end), None);
        }
        let mut pos = offset;
        let mut rest = bytes;
        while !rest.is_empty() {
            let idx = (pos / PAGE as u64) as usize;
            let within = (pos % PAGE as u64) as usize;
            let n = rest.len().min(PAGE - within);
            let page = self.pages[idx].get_or_insert_with(|| Arc::new([0u8; PAGE]));
            Arc::make_mut(page)[within..within + n].copy_from_slice(&rest[..n]);
            touched(idx);
            rest = &rest[n..];
            pos += n as u64;
        }
    }

    /// Sets the size. Growing adds holes; shrinking drops pages and zeroes the tail of the
    /// new last page, whose index is then passed to `touched`.
    fn truncate(&mut self, size: u64, mut touched: impl FnMut(usize)) {
        let count = page_count(size);
        self.pages.resize(count, None);
        let within = (size % PAGE as u64) as usize;
        if size < self.size && within != 0 {
            if let Some(page) = &mut self.pages[count - 1] {
                Arc::make_mut(page)[within..].fill(0);
                touched(count - 1);
            }
        }
        self.size = size;
    }
}

/// A regular file: what every operation sees (`live`), what survives a power cut
/// (`durable`), and what it takes to bring the second up to the first.
#[derive(Debug, Clone)]
pub struct FileData {
    live: Pages,
    durable: Pages,
    /// Live pages written (or zeroed) since the last sync.
    dirty: BTreeSet<usize>,
    /// Lowest live page count since the last sync: durable pages from here on were cut
    /// off (and maybe grown again as holes) in the live image.
    low_water: usize,
}

impl FileData {
    /// A file whose live and durable images are both `pages` (loaded, or new and empty).
    pub fn new(pages: Pages) -> Self {
        let low_water = pages.pages.len();
        FileData { durable: pages.clone(), live: pages, dirty: BTreeSet::new(), low_water }
    }

    pub fn live(&self) -> &Pages {
        &self.live
    }

    pub fn durable(&self) -> &Pages {
        &self.durable
    }

    /// Live bytes a power cut now would lose or change: the dirty pages within the live
    /// size (whole pages, the last one cut at the size), plus a lost size difference.
    pub fn unsynced_bytes(&self) -> u64 {
        let size = self.live.size;
        let dirty: u64 = self
            .dirty
            .iter()
            .map(|i| (*i as u64 * PAGE as u64).min(size))
            .map(|start| (size - start).min(PAGE as u64))
            .sum();
        dirty.max(self.live.size.abs_diff(self.durable.size))
    }

    /// Writes into the live image; `EFBIG` past [`MAX_FILE_SIZE`].
    pub fn write(&mut self, offset: u64, bytes: &[u8]) -> Result<(), i32> {
        match offset.checked_add(bytes.len() as u64) {
            Some(end) if end <= MAX_FILE_SIZE => {}
            _ => return Err(libc::EFBIG),
        }
        let dirty = &mut self.dirty;
        self.live.write(offset, bytes, |i| {
            dirty.insert(i);
        });
        Ok(())
    }

    /// Resizes the live image; `EFBIG` past [`MAX_FILE_SIZE`].
    pub fn truncate(&mut self, size: u64) -> Result<(), i32> {
        if size > MAX_FILE_SIZE {
            return Err(libc::EFBIG);
        }
        let dirty = &mut self.dirty;
        self.live.truncate(size, |i| {
            dirty.insert(i);
        });
        self.low_water = self.low_water.min(self.live.pages.len());
        Ok(())
    }

    /// fsync: the durable image becomes the live one. Costs the pages changed since the
    /// last sync (plus those cut off), never the whole file: untouched pages are shared.
    /// Returns how many pages it handed over.
    pub fn sync(&mut self) -> usize {
        let count = self.live.pages.len();
        self.durable.pages.truncate(self.low_water);
        self.durable.pages.resize(count, None);
        let mut copied = 0;
        for &i in self.dirty.range(..count) {
            self.durable.pages[i] = self.live.pages[i].clone();
            copied += 1;
        }
        self.durable.size = self.live.size;
        self.dirty.clear();
        self.low_water = count;
        copied
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(p: &Pages) -> Vec<u8> {
        p.read(0, u32::MAX)
    }

    #[test]
    fn reads_and_writes_across_page_boundaries() {
        let mut f = FileData::new(Pages::default());
        let data: Vec<u8> = (0..3 * PAGE + 10).map(|i| (i % 251) as u8 + 1).collect();
        f.write(PAGE as u64 - 5, &data).expect("write");
        let live = f.live();
        assert_eq!(live.size(), (4 * PAGE + 5) as u64);
        assert_eq!(live.read(0, PAGE as u32 - 5), vec![0; PAGE - 5]);
        assert_eq!(live.read(PAGE as u64 - 5, u32::MAX), data);
        assert_eq!(live.read(PAGE as u64 * 2 - 1, 3), data[PAGE + 4..PAGE + 7]);
        assert_eq!(live.read(live.size(), 10), Vec::<u8>::new());
        assert_eq!(live.allocated(), 5);
        assert_eq!(f.durable().size(), 0, "nothing durable before a sync");
    }

    #[test]
    fn sync_hands_over_only_dirty_pages_and_shares_the_rest() {
        let mut f = FileData::new(Pages::from_bytes(&vec![7u8; 100 * PAGE]));
        assert_eq!(f.sync(), 0);
        f.write(50 * PAGE as u64 + 10, b"abc").expect("write");
        f.write(99 * PAGE as u64 - 1, b"xy").expect("write");
        assert_eq!(f.durable().read(50 * PAGE as u64 + 10, 3), vec![7; 3]);
        assert_eq!(f.sync(), 3);
        assert_eq!(f.durable(), f.live());
        assert_eq!(f.durable().read(50 * PAGE as u64 + 10, 3), b"abc");
        assert!(Arc::ptr_eq(
            f.live.pages[1].as_ref().expect("page"),
            f.durable.pages[1].as_ref().expect("page")
        ));
        // Writing after the sync copies the shared page: the durable image keeps its bytes.
        f.write(PAGE as u64, b"Z").expect("write");
        assert_eq!(f.durable().read(PAGE as u64, 1), [7]);
        assert_eq!(f.unsynced_bytes(), PAGE as u64);
    }

    #[test]
    fn unsynced_truncate_is_lost_and_synced_shrink_then_grow_reads_zeros() {
        let mut f = FileData::new(Pages::from_bytes(&[1u8; 3 * PAGE]));
        f.truncate(10).expect("shrink");
        assert_eq!(all(f.durable()), vec![1u8; 3 * PAGE], "shrink not synced");
        f.truncate(2 * PAGE as u64).expect("grow");
        let mut want = vec![1u8; 10];
        want.resize(2 * PAGE, 0);
        assert_eq!(all(f.live()), want);
        f.sync();
        assert_eq!(all(f.durable()), want, "page 1 was cut off and came back as a hole");
        assert_eq!(f.durable().allocated(), 1);
        assert_eq!(f.live().extents().map(|(o, b)| (o, b.len())).collect::<Vec<_>>(), [(0, PAGE)]);
        f.truncate(0).expect("empty");
        f.sync();
        assert_eq!(f.durable(), &Pages::default());
    }

    #[test]
    fn limits_and_empty_writes() {
        let mut f = FileData::new(Pages::default());
        assert_eq!(f.write(MAX_FILE_SIZE, b"x"), Err(libc::EFBIG));
        assert_eq!(f.write(u64::MAX, b"x"), Err(libc::EFBIG));
        assert_eq!(f.truncate(MAX_FILE_SIZE + 1), Err(libc::EFBIG));
        f.write(1000, b"").expect("empty write");
        assert_eq!(f.live().size(), 0, "an empty write does not grow the file");
        assert_eq!(Pages::from_bytes(&[0; 2 * PAGE + 1]).allocated(), 0);
    }
}
