//! Giving memory back to the OS after idle connections released it.
//!
//! Parked connections (see `parkio`) free hyper's buffers, but glibc's
//! malloc keeps freed memory in its heaps unless it sits at the very top.
//! Two measures, both glibc-only (elsewhere they compile to nothing):
//! - [`tune_allocator`]: allocations of 8 KiB and more (hyper's read and
//!   write buffers) get their own mappings, unmapped the moment they are
//!   freed;
//! - [`spawn_trimmer`]: once many connections have parked, `malloc_trim`
//!   returns the free pages between the small objects that live on.
//!
//! The threshold has a price on busy connections: hyper replaces its 8 KiB
//! read buffer whenever the last message still holds bytes of it, and with
//! the buffer in its own mapping each replacement is an `mmap`, page faults
//! and an `munmap` (which interrupts every other core to flush its TLB). So
//! [`Allocator`] keeps a few freed 8 KiB blocks per connection worker and
//! hands them out again: no system call in steady state, and at most
//! `STASH_KEEP` blocks per worker held back from the OS. With one token
//! (strace): 0.8 `mmap` + 0.8 `munmap` per request before, none after;
//! ~14% more requests/s in an A/B of 8 alternating rounds. Without the
//! threshold at all, 10,000 idle connections took ~60 MB instead of ~47.
//!
//! The `mimalloc` and `jemalloc` cargo features replace all of this with a
//! maintained allocator (the tuning and the trimmer then do nothing: they
//! act on glibc's heaps), and the `glibc` feature turns it all off;
//! `bench/alloc_ab.sh` compares the four. On 2026-12-02, after the request's
//! future shrank below 8 KiB (medians of 3 rounds, bench/README.md), every
//! throughput figure was within the noise of the others (0.87-1.09x), and
//! this code held 10,000 idle connections in 48.8 MB against 102.4 with
//! glibc untouched, 141.1 with mimalloc and 80.9 with jemalloc, so it
//! stays. jemalloc with `dirty_decay_ms:0` got to 36 MB but at about 0.7x
//! the throughput; that trade is worth a further look. On 2026-12-03, with
//! a never-seen token on every request (7 paired rounds), mimalloc served
//! 1.01x the stash's requests/s with its defaults (idle 20.9 MB, 10,000
//! connections 77.7 MB) and 1.00x with `purge_delay=0` and
//! `arena_eager_commit=0` (10.4 and 35.4 MB): no gain to switch for.
//!
//! Measured with `bench/run.sh` (10,000 keep-alive connections, each served
//! once, then idle): ~150 MB resident without either, ~68 MB with the
//! threshold alone, ~53 MB with both (~48 MB since), ~37 MB once a
//! connection's long-lived parts were made on the accepting thread
//! (`Workers::spawn_with`, docs/ARCHITECTURE.md), 31-33 MB with the release
//! link's code layout (build.rs).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::ptr::null_mut;
use std::time::Duration;

/// How often the trimmer looks, and how many parks since its last trim
/// make a trim worth it (a trim walks every heap: a few milliseconds).
const TRIM_CHECK: Duration = Duration::from_secs(5);
const TRIM_AFTER_PARKS: u64 = 256;

/// A maintained allocator replaces glibc's for Rust allocations, so tuning
/// and trimming glibc's heaps would only cost time; the `glibc` feature
/// (the A/B's baseline) leaves glibc's malloc as it comes.
const ALTERNATIVE: bool = cfg!(any(feature = "mimalloc", feature = "jemalloc", feature = "glibc"));

/// Which global allocator this build uses (in the "gateway listening" log
/// line, so a benchmark can tell its binaries apart).
pub const ALLOCATOR_NAME: &str = if cfg!(feature = "mimalloc") {
    "mimalloc"
} else if cfg!(feature = "jemalloc") {
    "jemalloc"
} else if cfg!(feature = "glibc") {
    "glibc"
} else {
    "system+stash"
};

/// Sets malloc's mmap threshold to 8 KiB. Call first thing in `main`,
/// before any other thread exists.
pub fn tune_allocator() {
    if ALTERNATIVE {
        return;
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes a malloc tunable, before other threads run.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 8 * 1024);
    }
}

/// Starts the background trimmer on the current runtime.
pub fn spawn_trimmer() {
    if ALTERNATIVE {
        return;
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    tokio::spawn(async {
        let mut trimmed_at = crate::observe::metrics::metrics().parking_counts().1;
        loop {
            tokio::time::sleep(TRIM_CHECK).await;
            let parks = crate::observe::metrics::metrics().parking_counts().1;
            if parks - trimmed_at >= TRIM_AFTER_PARKS {
                trimmed_at = parks;
                // SAFETY: malloc_trim only returns free pages to the OS.
                let _ = tokio::task::spawn_blocking(|| unsafe { libc::malloc_trim(0) }).await;
            }
        }
    });
}

/// The size of the blocks the stash keeps: hyper's buffer size.
const STASH_SIZE: usize = 8192;
/// Blocks kept per worker (256 KiB).
const STASH_KEEP: usize = 32;

/// The process's allocator: the system's, plus a per-thread stash of freed
/// 8 KiB blocks on the threads that called [`enable_stash`].
pub struct Allocator;

/// Freed blocks, a stack. Plain cells with a `const` initializer and no
/// destructor, so reaching it from inside the allocator never allocates.
struct Stash {
    on: Cell<bool>,
    len: Cell<usize>,
    blocks: [Cell<*mut u8>; STASH_KEEP],
}

thread_local! {
    static STASH: Stash = const { Stash { on: Cell::new(false), len: Cell::new(0), blocks: [const { Cell::new(null_mut()) }; STASH_KEEP] } };
}

/// Whether a block of this layout may come from (and go to) the stash.
/// Every stashed block came from `malloc`, which aligns to 16.
fn stashable(layout: Layout) -> bool {
    layout.size() == STASH_SIZE && layout.align() <= 16
}

/// A stashed block, if this thread has one.
fn take() -> Option<*mut u8> {
    STASH
        .try_with(|s| {
            let n = s.len.get();
            if n == 0 {
                return None;
            }
            s.len.set(n - 1);
            Some(s.blocks[n - 1].get())
        })
        .ok()
        .flatten()
}

/// Keeps `block` if this thread stashes and has room; false otherwise.
fn put(block: *mut u8) -> bool {
    STASH
        .try_with(|s| {
            let n = s.len.get();
            if !s.on.get() || n == STASH_KEEP {
                return false;
            }
            s.blocks[n].set(block);
            s.len.set(n + 1);
            true
        })
        .unwrap_or(false)
}

/// Lets this thread stash freed 8 KiB blocks (connection workers).
pub fn enable_stash() {
    let _ = STASH.try_with(|s| s.on.set(true));
}

/// Stops stashing on this thread and frees what it holds. Call before a
/// thread that enabled the stash ends, or its blocks are lost.
pub fn drain_stash() {
    let _ = STASH.try_with(|s| {
        s.on.set(false);
        while let Some(block) = take() {
            // SAFETY: every stashed block was allocated by `System` with a
            // stashable layout, which this layout matches in size.
            unsafe { System.dealloc(block, Layout::from_size_align_unchecked(STASH_SIZE, 1)) };
        }
    });
}

/// How many blocks this thread holds.
#[cfg(test)]
fn stashed() -> usize {
    STASH.try_with(|s| s.len.get()).unwrap_or(0)
}

// SAFETY: every pointer handed out is a live `System` allocation of at
// least the requested size and alignment: stashed blocks are `System`
// blocks of exactly `STASH_SIZE` bytes from `malloc` (16-aligned), handed
// out only for layouts of that size and at most that alignment, and each
// is in the stash at most once (it is put there only when freed).
unsafe impl GlobalAlloc for Allocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if stashable(layout) {
            if let Some(block) = take() {
                return block;
            }
        }
        System.alloc(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if stashable(layout) && put(ptr) {
            return;
        }
        System.dealloc(ptr, layout)
    }

    // A stashed block holds old bytes, so zeroed memory always comes from
    // the system; `realloc` works on any `System` block, stashed or not.
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        System.alloc_zeroed(layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        System.realloc(ptr, layout, new_size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freed_buffers_are_reused_on_stashing_threads_only() {
        std::thread::spawn(|| {
            let a = Allocator;
            let layout = Layout::from_size_align(STASH_SIZE, 1).expect("layout");
            // SAFETY: each block is allocated and freed with the same layout.
            unsafe {
                let p = a.alloc(layout);
                a.dealloc(p, layout);
                assert_eq!(stashed(), 0, "a thread that did not enable the stash keeps nothing");
                enable_stash();
                let p = a.alloc(layout);
                p.write_bytes(7, STASH_SIZE);
                a.dealloc(p, layout);
                assert_eq!(stashed(), 1);
                assert_eq!(a.alloc(Layout::from_size_align(STASH_SIZE, 16).expect("layout")), p, "the freed block comes back");
                assert_eq!(stashed(), 0);
                let z = a.alloc_zeroed(layout);
                assert_ne!(z, p);
                assert!(std::slice::from_raw_parts(z, STASH_SIZE).iter().all(|&b| b == 0));
                a.dealloc(z, layout);
                a.dealloc(p, layout);
                let other = Layout::from_size_align(STASH_SIZE + 1, 1).expect("layout");
                let q = a.alloc(other);
                a.dealloc(q, other);
                assert_eq!(stashed(), 2, "only 8 KiB blocks are stashed");
                let many: Vec<*mut u8> = (0..STASH_KEEP + 5).map(|_| a.alloc(layout)).collect();
                for p in many {
                    a.dealloc(p, layout);
                }
                assert_eq!(stashed(), STASH_KEEP, "the stash is bounded");
                drain_stash();
                assert_eq!(stashed(), 0);
                let p = a.alloc(layout);
                a.dealloc(p, layout);
                assert_eq!(stashed(), 0, "a drained stash is off");
            }
        })
        .join()
        .expect("test thread");
    }
}
