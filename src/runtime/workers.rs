//! Connection workers: one thread per core, each running its own
//! single-threaded tokio runtime, like nginx's worker processes.
//!
//! A connection is accepted on the control runtime (which also runs key
//! refreshes, config reloads and the admin listener) and handed to one
//! worker, where it stays: its requests, its upstream connections (each
//! worker has its own pools, see `proxy::UpstreamClient`) and every wake-up
//! in between happen on one thread. Measured back to back with
//! `bench/run.sh`, this served 1.25-1.4x the requests/s of one work-stealing
//! runtime, whose cross-thread wake-ups between the client and the upstream
//! connection tasks cost futex calls and cache misses on every request.

use std::cell::Cell;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;

use tokio::runtime::{Builder, Handle};
use tokio::sync::oneshot;

thread_local! {
    static WORKER: Cell<usize> = const { Cell::new(0) };
}

/// The worker this thread is (1..=n), or 0 on any other thread.
pub fn current() -> usize {
    WORKER.with(|w| w.get())
}

/// The worker threads; dropping this ends them (their connections with them).
pub struct Workers {
    handles: Vec<Handle>,
    next: AtomicUsize,
    // Dropping a sender ends its worker's runtime.
    _exit: Vec<oneshot::Sender<()>>,
}

impl Workers {
    /// Starts `n` (at least one) worker threads.
    pub fn start(n: usize) -> std::io::Result<Workers> {
        let n = n.max(1);
        let mut handles = Vec::with_capacity(n);
        let mut exits = Vec::with_capacity(n);
        for i in 1..=n {
            let rt = Builder::new_current_thread().enable_all().build()?;
            handles.push(rt.handle().clone());
            let (exit, exited) = oneshot::channel::<()>();
            exits.push(exit);
            thread::Builder::new().name(format!("agw-worker-{i}")).spawn(move || {
                WORKER.with(|w| w.set(i));
                crate::runtime::memory::enable_stash();
                let _ = rt.block_on(exited);
                // Whatever is left (idle pooled upstream connections, or
                // connections past the grace period) is dropped here.
                rt.shutdown_background();
                crate::runtime::memory::drain_stash();
            })?;
        }
        Ok(Workers { handles, next: AtomicUsize::new(0), _exit: exits })
    }

    /// How many workers there are.
    pub fn len(&self) -> usize {
        self.handles.len()
    }

    /// Always false: there is at least one worker.
    pub fn is_empty(&self) -> bool {
        self.handles.is_empty()
    }

    /// Runs the task `make` returns on the next worker, round robin.
    ///
    /// `make` runs here, on the calling thread, inside the worker's runtime
    /// context: a socket it registers belongs to the worker's event loop,
    /// but the registration, the task and whatever `make` allocates come
    /// from this thread's malloc arena. A connection's long-lived parts
    /// then sit together there, apart from the short-lived allocations of
    /// the worker's requests; on the worker they would each pin a page of
    /// its heap after the requests around them were freed (10,000 parked
    /// connections took 44 MB that way instead of 37, see bench/README.md).
    pub fn spawn_with<M, F>(&self, make: M)
    where
        M: FnOnce() -> F,
        F: Future<Output = ()> + Send + 'static,
    {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.handles.len();
        let handle = &self.handles[i];
        let task = {
            let _in_worker = handle.enter();
            make()
        };
        handle.spawn(task);
    }
}

/// The worker count when `[server] workers` is not set: the CPUs this
/// process may use (cgroup limits included).
pub fn default_count() -> usize {
    thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}
