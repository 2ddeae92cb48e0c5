//! The listeners: binds them, runs the accept loops (connection limit,
//! worker threads) and the graceful shutdown. Each accepted connection goes
//! to [`crate::front::conn::serve`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::front::admin;
use crate::front::conn;
use crate::front::tls::ListenerTls;
use crate::observe::metrics;
use crate::runtime::workers::Workers;
use crate::state::Gateway;
use crate::upstream::upgrade::ConnTicket;

/// A running gateway: its listeners and the handle to stop it.
pub struct Server {
    pub addr: SocketAddr,
    pub admin_addr: Option<SocketAddr>,
    /// The forward-auth decision endpoint's address, when configured.
    pub forward_auth_addr: Option<SocketAddr>,
    pub gateway: Arc<Gateway>,
    /// The listener's TLS when `tls_cert`/`tls_key` are set.
    pub tls: Option<ListenerTls>,
    stop: watch::Sender<bool>,
    accept_task: JoinHandle<()>,
    admin_task: Option<JoinHandle<()>>,
    forward_auth_task: Option<JoinHandle<()>>,
}

impl Server {
    /// Binds the listeners named in the gateway's config and starts serving.
    pub async fn start(gateway: Arc<Gateway>) -> std::io::Result<Server> {
        let snap = gateway.snapshot();
        let settings = snap.config.server.clone();
        let tls = match &settings.tls {
            Some(files) => Some(ListenerTls::load(files).map_err(|e| std::io::Error::other(format!("listener TLS: {e}")))?),
            None => None,
        };
        let listener = crate::runtime::net::bind(settings.listen, settings.listen_backlog)?;
        let addr = listener.local_addr()?;
        let (stop, stop_rx) = watch::channel(false);
        let admin = match snap.config.admin_listen {
            Some(a) => {
                let l = crate::runtime::net::bind(a, crate::runtime::net::DEFAULT_BACKLOG)?;
                let admin_addr = l.local_addr()?;
                Some((admin_addr, tokio::spawn(admin::serve(l, gateway.clone(), stop_rx.clone()))))
            }
            None => None,
        };
        let forward_auth = match snap.config.forward_auth.as_ref().map(|f| f.listen) {
            Some(a) => {
                let l = crate::runtime::net::bind(a, crate::runtime::net::DEFAULT_BACKLOG)?;
                let fa_addr = l.local_addr()?;
                Some((fa_addr, tokio::spawn(crate::front::forward_auth::serve(l, gateway.clone(), stop_rx.clone()))))
            }
            None => None,
        };
        if let Some(t) = &tls {
            tokio::spawn(t.clone().watch(settings.tls_reload_interval, stop_rx.clone()));
        }
        let workers = Workers::start(settings.workers)?;
        let worker_count = workers.len();
        let accept_task = tokio::spawn(accept_loop(listener, tls.clone(), gateway.clone(), workers, stop_rx));
        info!(%addr, tls = tls.is_some(), admin = ?admin.as_ref().map(|a| a.0), forward_auth = ?forward_auth.as_ref().map(|a| a.0), workers = worker_count, allocator = crate::runtime::memory::ALLOCATOR_NAME, "gateway listening");
        Ok(Server {
            addr,
            admin_addr: admin.as_ref().map(|a| a.0),
            forward_auth_addr: forward_auth.as_ref().map(|a| a.0),
            gateway,
            tls,
            stop,
            accept_task,
            admin_task: admin.map(|a| a.1),
            forward_auth_task: forward_auth.map(|a| a.1),
        })
    }

    /// Graceful shutdown: report not-ready, keep serving for the drain
    /// period (so load balancers stop sending), stop accepting, then let
    /// in-flight requests and open WebSockets finish within the grace
    /// period; whatever is still open then is cut.
    pub async fn shutdown(self) {
        let snap = self.gateway.snapshot();
        self.gateway.start_draining();
        let drain = snap.config.server.shutdown_drain;
        if !drain.is_zero() {
            info!(drain_secs = drain.as_secs_f64(), "draining before closing the listener");
            tokio::time::sleep(drain).await;
        }
        let _ = self.stop.send(true);
        let _ = self.accept_task.await;
        if let Some(t) = self.admin_task {
            t.abort();
        }
        if let Some(t) = self.forward_auth_task {
            t.abort();
        }
        info!("gateway stopped");
    }
}

/// Accepts connections until `stop` flips, then waits up to
/// `shutdown_grace` for every connection (upgraded ones included) to end.
/// Each connection is served on one of `workers`, which end with this.
///
/// Each connection holds one permit of a semaphore sized `max_connections`:
/// beyond it new connections wait in the kernel's accept backlog instead of
/// being accepted, and "every permit is back" is "every connection closed".
async fn accept_loop(listener: TcpListener, tls: Option<ListenerTls>, gw: Arc<Gateway>, workers: Workers, mut stop: watch::Receiver<bool>) {
    let settings = Arc::new(gw.snapshot().config.server.clone());
    let builders = Arc::new(conn::builders(&settings));
    // acquire_many takes a u32; nobody runs a gateway with more sockets.
    let max = settings.max_connections.min(u32::MAX as usize >> 1);
    let limit = Arc::new(Semaphore::new(max));
    let (abort, abort_rx) = watch::channel(false);
    loop {
        let permit = tokio::select! {
            p = limit.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            _ = stop.changed() => break,
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => break,
        };
        let _ = stream.set_nodelay(true);
        // Moved to the worker's own event loop: registered there afresh.
        let stream = match stream.into_std() {
            Ok(s) => s,
            Err(e) => {
                warn!(error = %e, "cannot hand a connection to a worker");
                continue;
            }
        };
        let ticket = ConnTicket::new(permit, abort_rx.clone());
        let ctx = conn::Context { gw: gw.clone(), builders: builders.clone(), settings: settings.clone(), stop: stop.clone() };
        let tls = tls.clone();
        metrics::metrics().connection_opened();
        workers.spawn_with(move || {
            // Registered with the worker's event loop from here (see spawn_with).
            let stream = TcpStream::from_std(stream);
            let shared = conn::Shared::new(&ctx, peer.ip());
            async move {
                match stream {
                    Ok(stream) => conn::serve(stream, peer, tls, ctx, ticket, shared).await,
                    Err(e) => warn!(error = %e, "cannot register a connection with its worker"),
                }
                metrics::metrics().connection_closed();
            }
        });
    }
    drop(listener);
    let grace = settings.shutdown_grace;
    if tokio::time::timeout(grace, limit.acquire_many(max as u32)).await.is_err() {
        warn!(grace_secs = grace.as_secs(), "some connections were still open when the grace period ended; closing them");
    }
    let _ = abort.send(true);
}
