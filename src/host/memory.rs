//! Giving back what a burst freed. The daemon's live heap is small and grows slowly (about
//! 2.5 KiB of folded state per target), but a burst of requests allocates far more for a
//! few seconds: journal buffers, replies, deliveries, and one blocking thread per
//! concurrent journal write or executor call. glibc's malloc keeps what is freed for reuse,
//! spread over one arena per thread that allocated (up to eight per core), and returns
//! little of it by itself. Measured at 1,000 mounts on 2 cores (`server_bench`, footprint
//! at scale): 16 arenas beside the main heap, 16.5 MiB resident; a trim released 2.6 MiB of
//! it, and with one arena the heap was 14.5 MiB after the trim.
//!
//! So the daemon asks for few arenas ([`limit_arenas`], before its runtime starts any
//! thread) and hands free pages back once a burst is over ([`release_freed`], from
//! `node`'s background work). Both are glibc calls; on another C library they do nothing.

/// Arenas when the operator did not choose (`MALLOC_ARENA_MAX` in the environment wins).
/// Allocation is not where this daemon spends its time (a mount waits on the journal's
/// fsync, the helper and the broker), and glibc's per-thread cache serves small
/// allocations without taking an arena's lock.
pub const ARENAS: i32 = 2;

/// Caps malloc's arenas at `max`, unless `MALLOC_ARENA_MAX` is set (glibc read it at
/// start). Call before the process starts threads: an arena, once made, stays.
pub fn limit_arenas(max: i32) -> bool {
    if std::env::var_os("MALLOC_ARENA_MAX").is_some() {
        return false;
    }
    imp::limit_arenas(max)
}

/// Returns free heap pages to the kernel, in every arena. Takes each arena's lock for as
/// long as it walks that arena's free chunks: well under a millisecond at the daemon's
/// heap size, so it is called outright, not moved to a blocking thread. Whether any memory
/// was released.
pub fn release_freed() -> bool {
    imp::release_freed()
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod imp {
    #[allow(unsafe_code)]
    pub fn limit_arenas(max: i32) -> bool {
        // SAFETY: mallopt(3) only sets a malloc parameter; M_ARENA_MAX takes any positive
        // value and is safe to set while other threads allocate (it bounds new arenas).
        unsafe { libc::mallopt(libc::M_ARENA_MAX, max) == 1 }
    }

    #[allow(unsafe_code)]
    pub fn release_freed() -> bool {
        // SAFETY: malloc_trim(3) takes no pointers; it locks each arena itself and only
        // releases pages no allocation uses.
        unsafe { libc::malloc_trim(0) == 1 }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
mod imp {
    pub fn limit_arenas(_max: i32) -> bool {
        false
    }

    pub fn release_freed() -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn a_freed_burst_is_handed_back() {
        // Freed memory inside the heap, not at its top (which free() itself may trim):
        // ~20 MiB of small blocks, then copies of a few of them above those, then the
        // blocks freed.
        let mut blocks: Vec<Vec<u8>> = (0..20_000).map(|i| vec![i as u8; 1024]).collect();
        let kept: Vec<Vec<u8>> = blocks.iter().step_by(64).cloned().collect();
        blocks.clear();
        blocks.shrink_to_fit();
        assert!(release_freed(), "malloc_trim released nothing after ~20 MiB were freed");
        drop(kept);
    }
}
