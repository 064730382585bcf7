//! The HTTP listener: an accept loop with connection limits and a header
//! read timeout, serving the router over HTTP/1.1 with hyper.
//!
//! `axum::serve` has neither limits nor a header read timeout, so a
//! thousand peers sending one byte a second would hold a thousand
//! connections forever. Here:
//!
//! - a connection over `http.max_connections` or
//!   `http.max_connections_per_ip` is closed at accept, counted with
//!   [`Observer::connection_refused`] and logged at most once a second per
//!   limit;
//! - a request head (and an idle keep-alive connection waiting for the
//!   next one) must arrive within `http.header_read_timeout_ms`. The timer
//!   runs only while a head is being read: long responses (HTTP-FLV, a
//!   blocking LL-HLS reload) are not cut by it;
//! - a handler can close its connection with a reason through the
//!   [`ConnectionCloser`] in the request's extensions: HTTP-FLV does when
//!   its player stops reading, since hyper would otherwise wait forever to
//!   write to a socket that is never read;
//! - every connection is reported to the engine's observer (opened, then
//!   closed with a [`CloseReason`]) with one log line when it closes.
//!
//! Graceful shutdown: on the token, accepting stops and each connection
//! finishes its response in progress and closes.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arcly_core::engine::Engine;
use arcly_core::limit::{Admission, ConnectionLimiter};
use arcly_core::observe::{CloseReason, RefuseReason};
use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tower_service::Service;

/// The protocol name in counters and logs.
pub(crate) const PROTOCOL: &str = "http";

/// The listener's limits.
#[derive(Clone, Copy, Debug)]
pub(crate) struct HttpLimits {
    /// Most connections at once (0: no limit).
    pub(crate) max_connections: usize,
    /// Most connections at once from one address (0: no limit).
    pub(crate) max_connections_per_ip: usize,
    /// Time allowed to read a request head.
    pub(crate) header_read_timeout: Duration,
}

/// Closes the connection a request came on, with a reason; found in every
/// request's extensions.
#[derive(Clone, Debug, Default)]
pub(crate) struct ConnectionCloser {
    token: CancellationToken,
    why: Arc<Mutex<Option<(CloseReason, String)>>>,
}

impl ConnectionCloser {
    /// Closes the connection at once (the response in progress is cut).
    pub(crate) fn close(&self, reason: CloseReason, detail: String) {
        self.why.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert((reason, detail));
        self.token.cancel();
    }

    fn take(&self) -> Option<(CloseReason, String)> {
        self.why.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

/// Pending connections the kernel queues for `accept` (the default of 128
/// overflows in a burst of connections, and the kernel then holds the
/// extra ones for seconds of SYN-ACK retries).
const LISTEN_BACKLOG: u32 = 1024;

/// A listener on `addr` with [`LISTEN_BACKLOG`].
pub(crate) fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    // As std's TcpListener::bind: a restarted server can bind at once.
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Serves `router` on `listener` until `shutdown`, then lets the
/// connections finish.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    limits: HttpLimits,
    engine: Engine,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let limiter = ConnectionLimiter::new(limits.max_connections, limits.max_connections_per_ip);
    let mut refusals = RefusalLog::default();
    let mut tasks = JoinSet::new();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            accepted = listener.accept() => {
                let (socket, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of descriptors and the like: back off briefly.
                        tracing::warn!(error = %e, "http accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let admission = match limiter.try_admit(peer.ip()) {
                    Ok(a) => a,
                    Err(why) => {
                        drop(socket);
                        engine.observer().connection_refused(PROTOCOL, peer, why);
                        refusals.refused(why, peer, &limits);
                        continue;
                    }
                };
                let ticket = Ticket::open(engine.clone(), peer, admission);
                tasks.spawn(connection(socket, peer, router.clone(), limits.header_read_timeout, shutdown.clone(), ticket));
            }
        }
    }
    // Each connection saw the token and is finishing its response.
    while tasks.join_next().await.is_some() {}
    Ok(())
}

async fn connection(
    socket: TcpStream,
    peer: SocketAddr,
    router: Router,
    header_read_timeout: Duration,
    shutdown: CancellationToken,
    ticket: Ticket,
) {
    let _ = socket.set_nodelay(true);
    let closer = ConnectionCloser::default();
    let service = {
        let closer = closer.clone();
        hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            request.extensions_mut().insert(closer.clone());
            let mut router = router.clone();
            router.call(request)
        })
    };
    let mut builder = http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(header_read_timeout);
    let conn = builder.serve_connection(TokioIo::new(socket), service);
    tokio::pin!(conn);
    let end = tokio::select! {
        result = conn.as_mut() => classify(result),
        () = closer.token.cancelled() => {
            let (reason, detail) = closer.take().unwrap_or((CloseReason::Io, "closed by its handler".into()));
            End { reason, detail }
        }
        () = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            tokio::select! {
                result = conn.as_mut() => {
                    let end = classify(result);
                    if end.reason == CloseReason::PeerClosed {
                        End { reason: CloseReason::Shutdown, detail: "server shutting down".into() }
                    } else {
                        end
                    }
                }
                () = closer.token.cancelled() => {
                    let (reason, detail) = closer.take().unwrap_or((CloseReason::Shutdown, "server shutting down".into()));
                    End { reason, detail }
                }
            }
        }
    };
    ticket.close(end);
}

/// Why a connection ended.
#[derive(Debug)]
struct End {
    reason: CloseReason,
    detail: String,
}

fn classify(result: Result<(), hyper::Error>) -> End {
    let (reason, detail) = match result {
        Ok(()) => (CloseReason::PeerClosed, "connection closed".to_owned()),
        Err(e) if e.is_timeout() => (CloseReason::Timeout, format!("{e}")),
        Err(e) if e.is_parse() || e.is_parse_too_large() || e.is_parse_version_h2() => {
            (CloseReason::ProtocolError, format!("{e}"))
        }
        Err(e) if e.is_incomplete_message() => (CloseReason::PeerClosed, format!("{e}")),
        Err(e) => (CloseReason::Io, format!("{e}")),
    };
    End { reason, detail }
}

/// Logs refusals at most once a second per limit, with the number refused
/// since the last line.
#[derive(Debug, Default)]
struct RefusalLog {
    last: [(Option<Instant>, u64); RefuseReason::ALL.len()],
}

impl RefusalLog {
    fn refused(&mut self, why: RefuseReason, peer: SocketAddr, limits: &HttpLimits) {
        let (last, since) = &mut self.last[why.index()];
        *since += 1;
        let now = Instant::now();
        if last.is_some_and(|t| now.duration_since(t) < Duration::from_secs(1)) {
            return;
        }
        let limit = match why {
            RefuseReason::GlobalLimit => limits.max_connections,
            _ => limits.max_connections_per_ip,
        };
        tracing::warn!(%peer, reason = %why, limit, refused = *since, "http connection refused");
        *last = Some(now);
        *since = 0;
    }
}

/// A connection's place under the limits and its report to the observer;
/// dropped without [`Ticket::close`] (the task aborted), it reports a
/// shutdown.
struct Ticket {
    engine: Engine,
    peer: SocketAddr,
    _admission: Admission,
    closed: bool,
}

impl Ticket {
    fn open(engine: Engine, peer: SocketAddr, admission: Admission) -> Self {
        engine.observer().connection_opened(PROTOCOL, peer);
        Self { engine, peer, _admission: admission, closed: false }
    }

    fn close(mut self, end: End) {
        let (peer, reason, detail) = (self.peer, end.reason, &end.detail);
        if reason.is_normal() {
            tracing::debug!(%peer, %reason, %detail, "http connection closed");
        } else {
            tracing::info!(%peer, %reason, %detail, "http connection closed");
        }
        self.engine.observer().connection_closed(PROTOCOL, peer, reason, detail);
        self.closed = true;
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if !self.closed {
            self.engine.observer().connection_closed(
                PROTOCOL,
                self.peer,
                CloseReason::Shutdown,
                "connection task cancelled",
            );
        }
    }
}
