//! Integrity sled does not give: noticing that history was lost.
//!
//! sled recovers from a damaged or truncated file by replaying its log up to the damage and
//! quietly dropping the rest, so a journal can open "clean" with most of its records gone,
//! and with them the answered request keys that make redelivery exactly-once. Two marks
//! make that loss visible at open:
//!
//! - **The seal**, a key of the tree itself (`m seal`), written in the same atomic batch
//!   as every change: a random journal id, the highest seq written, and how many records
//!   and snapshots the tree holds. Pages lost inside sled make the tree disagree with its
//!   own seal (or lose the seal).
//! - **The sidecar**, a small file beside sled's (`<journal>/dms-seal`), written after
//!   every flush with the journal id and the highest seq that flush made durable. A file
//!   truncated or rolled back as a whole, seal included, ends below the sidecar's mark.
//!   It has two checksummed slots written in turn, so a torn write leaves the other one;
//!   it is written after sled's flush, so it never claims more than is durable (after a
//!   power loss it may claim less, which only narrows what is checked).
//!
//! A journal found with neither (created by an earlier version) is sealed at open. A loss
//! is reported as a [`Loss`]; the daemon refuses such a journal until an operator accepts
//! it (`dms-journal accept-loss`), which re-seals what is there and journals the acceptance.

use super::Seq;
use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The seal's key in the tree.
pub(super) const KEY: &[u8] = b"mseal";
/// Accepted losses: `a <unix ms BE>` → what was accepted, as text.
pub(super) const ACCEPTED: u8 = b'a';
/// The sidecar's file name inside the journal directory.
pub(super) const SIDECAR: &str = "dms-seal";

const SEAL_MAGIC: &[u8; 8] = b"DMSSEAL\x01";
const SLOT_MAGIC: &[u8; 8] = b"DMSMARK\x01";
const SEAL_LEN: usize = 8 + 16 + 8 + 8 + 8 + 4;
const SLOT_LEN: usize = 64;

/// What the tree says about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Seal {
    pub id: [u8; 16],
    pub high_water: Seq,
    pub records: u64,
    pub snapshots: u64,
}

impl Seal {
    pub(super) fn new(high_water: Seq, records: u64, snapshots: u64) -> Self {
        Self { id: *uuid::Uuid::new_v4().as_bytes(), high_water, records, snapshots }
    }

    pub(super) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(SEAL_LEN);
        out.extend_from_slice(SEAL_MAGIC);
        out.extend_from_slice(&self.id);
        for n in [self.high_water, self.records, self.snapshots] {
            out.extend_from_slice(&n.to_be_bytes());
        }
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_be_bytes());
        out
    }

    pub(super) fn decode(bytes: &[u8]) -> Option<Self> {
        let body = checked(bytes, SEAL_LEN, SEAL_MAGIC)?;
        Some(Self {
            id: body.get(..16)?.try_into().ok()?,
            high_water: be(body.get(16..24)?)?,
            records: be(body.get(24..32)?)?,
            snapshots: be(body.get(32..40)?)?,
        })
    }
}

/// The sidecar's claim: this journal had `high_water` durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Mark {
    pub id: [u8; 16],
    pub high_water: Seq,
}

/// A loss of history found at open. Each names what is missing and how it was seen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Loss {
    #[error("the journal's seal is missing from the database, but its sidecar {sidecar} says seq {high_water} was durable: the database lost its history or was replaced")]
    SealMissing { sidecar: PathBuf, high_water: Seq },
    #[error("the journal's seal in the database is damaged")]
    SealDamaged,
    #[error(
        "the sidecar {sidecar} is missing: the journal directory was copied or edited without it"
    )]
    SidecarMissing { sidecar: PathBuf },
    #[error("the sidecar {sidecar} is unreadable (both slots damaged)")]
    SidecarDamaged { sidecar: PathBuf },
    #[error("the sidecar {sidecar} belongs to another journal")]
    Foreign { sidecar: PathBuf },
    #[error("records up to seq {sealed} were durable, but the journal ends at seq {found}: the newest history is lost")]
    RolledBack { sealed: Seq, found: Seq },
    #[error("the journal should hold {sealed} records but holds {found}")]
    Records { sealed: u64, found: u64 },
    #[error("the journal should hold {sealed} snapshots but holds {found}")]
    Snapshots { sealed: u64, found: u64 },
}

/// What the tree holds, counted during replay.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Found {
    pub last_seq: Seq,
    pub records: u64,
    pub snapshots: u64,
}

/// Compare what is there with both marks. `Ok(None)`: nothing to compare with (an
/// unsealed journal of an earlier version, or a new one).
pub(super) fn check(
    stored: Option<Option<Seal>>,
    mark: Option<Option<Mark>>,
    found: Found,
    sidecar: &Path,
) -> Result<Option<Seal>, Vec<Loss>> {
    let sidecar = sidecar.to_path_buf();
    let mut losses = Vec::new();
    let seal = match (stored, mark) {
        (None, None) => return Ok(None),
        (None, Some(Some(m))) => {
            losses.push(Loss::SealMissing { sidecar, high_water: m.high_water });
            return Err(losses);
        }
        (None, Some(None)) => {
            losses.push(Loss::SidecarDamaged { sidecar: sidecar.clone() });
            losses.push(Loss::SealMissing { sidecar, high_water: 0 });
            return Err(losses);
        }
        (Some(None), _) => {
            losses.push(Loss::SealDamaged);
            return Err(losses);
        }
        (Some(Some(seal)), mark) => {
            match mark {
                None => losses.push(Loss::SidecarMissing { sidecar }),
                Some(None) => losses.push(Loss::SidecarDamaged { sidecar }),
                Some(Some(m)) if m.id != seal.id => losses.push(Loss::Foreign { sidecar }),
                Some(Some(m)) if m.high_water > seal.high_water => {
                    losses.push(Loss::RolledBack { sealed: m.high_water, found: seal.high_water })
                }
                Some(Some(_)) => {}
            }
            seal
        }
    };
    if found.last_seq < seal.high_water {
        losses.push(Loss::RolledBack { sealed: seal.high_water, found: found.last_seq });
    }
    if found.records != seal.records {
        losses.push(Loss::Records { sealed: seal.records, found: found.records });
    }
    if found.snapshots != seal.snapshots {
        losses.push(Loss::Snapshots { sealed: seal.snapshots, found: found.snapshots });
    }
    if losses.is_empty() {
        Ok(Some(seal))
    } else {
        Err(losses)
    }
}

/// The sidecar file, open for the journal's lifetime.
pub(super) struct Sidecar {
    file: File,
    path: PathBuf,
    generation: u64,
}

impl fmt::Debug for Sidecar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sidecar").field("path", &self.path).finish_non_exhaustive()
    }
}

impl Sidecar {
    pub(super) fn path_in(journal: &Path) -> PathBuf {
        journal.join(SIDECAR)
    }

    /// Open (creating it empty if absent) and read its mark:
    /// `None` if it was absent or empty, `Some(None)` if no slot is valid.
    pub(super) fn open(journal: &Path) -> io::Result<(Sidecar, Option<Option<Mark>>)> {
        let path = Self::path_in(journal);
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)?;
        let mut raw = Vec::new();
        (&mut file).take(2 * SLOT_LEN as u64).read_to_end(&mut raw)?;
        let slots: Vec<Option<(u64, Mark)>> = raw.chunks(SLOT_LEN).map(decode_slot).collect();
        let best = slots.iter().flatten().max_by_key(|(generation, _)| *generation).copied();
        // A file just created here is empty, like one an earlier version never wrote.
        let mark = match (raw.is_empty(), best) {
            (true, _) => None,
            (false, Some((_, mark))) => Some(Some(mark)),
            (false, None) => Some(None),
        };
        let generation = best.map_or(0, |(g, _)| g);
        Ok((Sidecar { file, path, generation }, mark))
    }

    /// Record `mark` in the older slot. `sync` for the first seal and an acceptance, which
    /// must not be lost; the per-flush updates are not synced (see the module doc).
    pub(super) fn write(&mut self, mark: Mark, sync: bool) -> io::Result<()> {
        let generation = self.generation + 1;
        let slot = encode_slot(generation, mark);
        let offset = (generation % 2) * SLOT_LEN as u64;
        self.file.write_all_at(&slot, offset)?;
        if sync {
            self.file.sync_all()?;
        }
        self.generation = generation;
        Ok(())
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// The file's content and size on stable storage (at open: a sidecar just created).
    pub(super) fn sync(&self) -> io::Result<()> {
        self.file.sync_all()
    }
}

fn encode_slot(generation: u64, mark: Mark) -> Vec<u8> {
    let mut out = Vec::with_capacity(SLOT_LEN);
    out.extend_from_slice(SLOT_MAGIC);
    out.extend_from_slice(&mark.id);
    out.extend_from_slice(&mark.high_water.to_be_bytes());
    out.extend_from_slice(&generation.to_be_bytes());
    out.resize(SLOT_LEN - 4, 0);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

fn decode_slot(bytes: &[u8]) -> Option<(u64, Mark)> {
    let body = checked(bytes, SLOT_LEN, SLOT_MAGIC)?;
    let mark = Mark { id: body.get(..16)?.try_into().ok()?, high_water: be(body.get(16..24)?)? };
    Some((be(body.get(24..32)?)?, mark))
}

/// The body of a `magic ‖ body ‖ crc32` value of exactly `len` bytes, if intact.
fn checked<'a>(bytes: &'a [u8], len: usize, magic: &[u8; 8]) -> Option<&'a [u8]> {
    if bytes.len() != len || !bytes.starts_with(magic) {
        return None;
    }
    let (data, crc) = bytes.split_at(len - 4);
    (crc32fast::hash(data).to_be_bytes() == crc).then(|| &data[magic.len()..])
}

fn be(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.try_into().ok()?))
}

#[cfg(test)]
#[path = "seal_tests.rs"]
mod tests;
