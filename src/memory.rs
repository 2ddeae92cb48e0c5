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
//! Measured with `bench/run.sh` (10,000 keep-alive connections, each served
//! once, then idle): ~150 MB resident without either, ~68 MB with the
//! threshold alone, ~53 MB with both. Requests/s did not move: busy
//! connections keep their buffers and never park.

use std::time::Duration;

/// How often the trimmer looks, and how many parks since its last trim
/// make a trim worth it (a trim walks every heap: a few milliseconds).
const TRIM_CHECK: Duration = Duration::from_secs(5);
const TRIM_AFTER_PARKS: u64 = 256;

/// Sets malloc's mmap threshold to 8 KiB. Call first thing in `main`,
/// before any other thread exists.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes a malloc tunable, before other threads run.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 8 * 1024);
    }
}

/// Starts the background trimmer on the current runtime.
pub fn spawn_trimmer() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    tokio::spawn(async {
        let mut trimmed_at = crate::metrics::metrics().parking_counts().1;
        loop {
            tokio::time::sleep(TRIM_CHECK).await;
            let parks = crate::metrics::metrics().parking_counts().1;
            if parks - trimmed_at >= TRIM_AFTER_PARKS {
                trimmed_at = parks;
                // SAFETY: malloc_trim only returns free pages to the OS.
                let _ = tokio::task::spawn_blocking(|| unsafe { libc::malloc_trim(0) }).await;
            }
        }
    });
}
