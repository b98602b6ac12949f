//! Giving freed heap back to the system.
//!
//! A kernel allocates from many threads (tokio workers, one driver thread per running
//! agent, blocking-pool threads), so glibc spreads its heap over per-thread arenas. Memory
//! freed there stays resident in the arena, in holes between live blocks, and only the
//! top of each heap is returned by itself. Measured in a release soak (2026-12-02,
//! `perf/drills.md`): the live heap (heaptrack) rose ≈ 0.25 MiB/min and levelled off,
//! while RSS rose ≈ 2.8 MiB/min, almost all of it in the arenas' mappings. Every
//! [`TRIM_EVERY_MS`] a task asks glibc to give back the free pages of every arena
//! (`malloc_trim(0)`, which releases whole free pages inside the heaps too, not only the
//! top), on a blocking-pool thread. [`limit_arenas`], called by `rlp` and `runloopd`
//! first thing, keeps the arenas (and so their holes) few.

use std::time::Duration;

/// How often the kernel gives freed heap back to the system.
pub const TRIM_EVERY_MS: u64 = 10_000;

/// Starts the task that trims the heap every [`TRIM_EVERY_MS`]; it ends when aborted
/// (at shutdown). Outside glibc it does nothing and is not started.
pub(super) fn spawn_trimmer() -> Option<tokio::task::JoinHandle<()>> {
    if !cfg!(target_env = "gnu") {
        return None;
    }
    Some(tokio::spawn(async {
        let period = Duration::from_millis(TRIM_EVERY_MS);
        loop {
            tokio::time::sleep(period).await;
            // A walk over every arena under its lock: off the workers.
            if tokio::task::spawn_blocking(trim).await.is_err() {
                return;
            }
        }
    }))
}

/// Gives the free pages of every malloc arena back to the system; whether any were.
pub fn trim() -> bool {
    #[cfg(target_env = "gnu")]
    {
        // SAFETY: malloc_trim takes a pad size and only walks the allocator's own
        // arenas under their locks; it is safe to call from any thread at any time.
        unsafe { libc::malloc_trim(0) == 1 }
    }
    #[cfg(not(target_env = "gnu"))]
    {
        false
    }
}

/// Most malloc arenas a kernel's process keeps (`limit_arenas`), unless
/// `MALLOC_ARENA_MAX` says otherwise.
pub const ARENAS_MAX: usize = 2;

/// Caps glibc's malloc arenas at [`ARENAS_MAX`] (glibc's default is 8 per core), for a
/// process that hosts a kernel; call it first thing in `main`, before any thread
/// allocates. A person's own `MALLOC_ARENA_MAX` wins. Threads come and go here (one
/// driver per running agent), and each arena keeps its own holes: in a 4-minute release
/// soak the heap held from the system grew 21 → 29 MiB with glibc's default against
/// 14 → 17 MiB with two arenas, for the same 13–15 MiB in use (`perf/drills.md`).
pub fn limit_arenas() {
    #[cfg(target_env = "gnu")]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        let arenas = libc::c_int::try_from(ARENAS_MAX).unwrap_or(libc::c_int::MAX);
        // SAFETY: mallopt only sets an allocator parameter; M_ARENA_MAX bounds the
        // arenas created from now on.
        unsafe { libc::mallopt(libc::M_ARENA_MAX, arenas) };
    }
}

/// The heap as glibc sees it over every arena: `(in use, held from the system)`, KiB
/// (`mallinfo2`; blocks mapped on their own count in both). `None` outside glibc.
pub fn heap_kib() -> Option<(u64, u64)> {
    #[cfg(target_env = "gnu")]
    {
        // SAFETY: mallinfo2 only reads the allocator's counters under its arena locks and
        // returns them by value.
        let info = unsafe { libc::mallinfo2() };
        let kib = |bytes: usize| u64::try_from(bytes / 1024).unwrap_or(u64::MAX);
        Some((
            kib(info.uordblks + info.hblkhd),
            kib(info.arena + info.hblkhd),
        ))
    }
    #[cfg(not(target_env = "gnu"))]
    {
        None
    }
}

#[cfg(all(test, target_env = "gnu"))]
mod tests {
    use super::*;

    fn rss_kib() -> u64 {
        std::fs::read_to_string("/proc/self/status")
            .expect("/proc/self/status")
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS")
    }

    /// 128 MiB in 4 KiB blocks on a thread of its own (so in an arena of its own), then
    /// all but one block in 64 freed: the holes stay resident (the kept blocks pin the
    /// top of the heap), and `trim` gives them back.
    #[test]
    fn trim_gives_back_the_holes_freed_inside_an_arena() {
        const BLOCK: usize = 4 * 1024;
        const BLOCKS: usize = 32 * 1024;
        let kept = std::thread::spawn(|| {
            let mut blocks: Vec<Vec<u8>> = (0..BLOCKS).map(|i| vec![i as u8; BLOCK]).collect();
            let mut kept = Vec::with_capacity(BLOCKS / 64);
            for (i, block) in blocks.drain(..).enumerate() {
                if i % 64 == 63 {
                    kept.push(block);
                }
            }
            kept
        })
        .join()
        .expect("the allocating thread");
        let before = rss_kib();
        assert!(trim(), "malloc_trim found nothing to give back");
        let after = rss_kib();
        assert!(
            before.saturating_sub(after) >= 64 * 1024,
            "RSS {before} KiB before the trim, {after} KiB after: expected ≥ 64 MiB back"
        );
        assert_eq!(kept.len(), BLOCKS / 64);
        assert!(kept.iter().all(|b| b.len() == BLOCK));
    }
}
