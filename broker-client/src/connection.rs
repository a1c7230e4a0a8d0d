//! One multiplexed TCP connection: many requests in flight, answers matched by opaque.
//!
//! A writer task drains a bounded queue into the socket (flushing once per burst) and a reader
//! task routes responses to their waiters and hands requests from the server to a handler. When
//! either side fails, every waiter learns it at once and the connection is marked dead, so the
//! pool dials a new one on next use. Dropping the last handle closes the connection and ends
//! both tasks; dropping a request's future forgets its waiter.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use parking_lot::Mutex;
use rmq_remoting::{RemotingCodec, RemotingCommand};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;
use tracing::{debug, trace, warn};

use crate::error::{ClientError, Result};

/// Process-wide request ids, as in the Java client: an id is never reused while its request is
/// pending, across all connections.
static NEXT_OPAQUE: AtomicI32 = AtomicI32::new(0);

/// A fresh request id (`opaque`), unique among pending requests of this process.
pub fn next_opaque() -> i32 {
    NEXT_OPAQUE.fetch_add(1, Ordering::Relaxed)
}

/// What a connection does with requests the server sends (docs/protocol.md §9.11). Returns the
/// response to write back, or `None` (one-way requests are never answered whatever it returns).
/// It runs on the connection's reader task, so it must not block; a panic in it is answered
/// SYSTEM_ERROR.
pub type ServerRequestHandler =
    Arc<dyn Fn(&str, RemotingCommand) -> Option<RemotingCommand> + Send + Sync>;

type Waiter = oneshot::Sender<Result<RemotingCommand>>;

struct Shared {
    addr: String,
    pending: Mutex<HashMap<i32, Waiter>>,
    closed: AtomicBool,
    close_reason: Mutex<Option<String>>,
    /// Wakes both tasks when the connection is closed from either side.
    cancel: CancellationToken,
}

impl Shared {
    fn close(&self, reason: String) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        debug!(addr = %self.addr, %reason, "connection closed");
        *self.close_reason.lock() = Some(reason.clone());
        self.cancel.cancel();
        let waiters: Vec<Waiter> = self.pending.lock().drain().map(|(_, w)| w).collect();
        for w in waiters {
            let _ = w.send(Err(ClientError::ConnectionClosed {
                addr: self.addr.clone(),
                reason: reason.clone(),
            }));
        }
    }

    fn closed_error(&self) -> ClientError {
        ClientError::ConnectionClosed {
            addr: self.addr.clone(),
            reason: self
                .close_reason
                .lock()
                .clone()
                .unwrap_or_else(|| "closed".into()),
        }
    }
}

/// A cheap handle to one connection; clones share it. The connection closes when the last
/// handle is dropped (or on [`close`](Connection::close)), and its tasks end with it.
#[derive(Clone)]
pub struct Connection {
    handle: Arc<Handle>,
}

/// What the handles share; the reader and writer tasks hold only `Shared`, so they do not keep
/// the connection open by themselves.
struct Handle {
    shared: Arc<Shared>,
    /// Encoded frames for the writer; callers encode, so an oversize or unencodable command
    /// fails alone instead of taking the connection down.
    tx: mpsc::Sender<Bytes>,
    max_frame: usize,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.close("every handle was dropped".into());
    }
}

/// Removes a request's waiter when its future finishes or is dropped, so a cancelled request
/// leaves nothing behind (a late answer then finds no waiter and is dropped).
struct WaiterGuard<'a> {
    shared: &'a Shared,
    opaque: i32,
}

impl Drop for WaiterGuard<'_> {
    fn drop(&mut self) {
        self.shared.pending.lock().remove(&self.opaque);
    }
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("addr", &self.handle.shared.addr)
            .field("closed", &self.is_closed())
            .finish()
    }
}

/// How many frames may wait for the socket before senders are made to wait.
const WRITE_QUEUE: usize = 4096;

impl Connection {
    /// Dials `addr` and starts the connection's reader and writer tasks.
    pub async fn connect(
        addr: &str,
        connect_timeout: Duration,
        max_frame: usize,
        handler: Option<ServerRequestHandler>,
    ) -> Result<Connection> {
        let stream = match tokio::time::timeout(connect_timeout, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(source)) => {
                return Err(ClientError::Connect {
                    addr: addr.to_owned(),
                    source,
                })
            }
            Err(_) => {
                return Err(ClientError::ConnectTimeout {
                    addr: addr.to_owned(),
                    timeout: connect_timeout,
                })
            }
        };
        let _ = stream.set_nodelay(true);
        Ok(Self::from_stream(addr, stream, max_frame, handler))
    }

    fn from_stream(
        addr: &str,
        stream: TcpStream,
        max_frame: usize,
        handler: Option<ServerRequestHandler>,
    ) -> Connection {
        let (rd, wr) = stream.into_split();
        let shared = Arc::new(Shared {
            addr: addr.to_owned(),
            pending: Mutex::new(HashMap::new()),
            closed: AtomicBool::new(false),
            close_reason: Mutex::new(None),
            cancel: CancellationToken::new(),
        });
        let (tx, rx) = mpsc::channel(WRITE_QUEUE);
        tokio::spawn(write_loop(shared.clone(), rx, wr));
        tokio::spawn(read_loop(
            shared.clone(),
            tx.clone(),
            FramedRead::new(rd, RemotingCodec::with_max_frame(max_frame)),
            handler,
            max_frame,
        ));
        Connection {
            handle: Arc::new(Handle {
                shared,
                tx,
                max_frame,
            }),
        }
    }

    /// The address this connection was dialled to.
    pub fn addr(&self) -> &str {
        &self.handle.shared.addr
    }

    /// Whether the connection is closed (by either side); a closed connection stays closed.
    pub fn is_closed(&self) -> bool {
        self.handle.shared.closed.load(Ordering::Acquire)
    }

    /// Sends a request and waits for its response. A fresh opaque is assigned.
    ///
    /// # Cancel safety
    ///
    /// This method is cancel safe: dropping the future before it completes forgets the request
    /// (its waiter is removed, a late answer is discarded) and leaves the connection usable. The
    /// request may or may not have reached the peer.
    pub async fn invoke(
        &self,
        mut cmd: RemotingCommand,
        timeout: Duration,
    ) -> Result<RemotingCommand> {
        let shared = &*self.handle.shared;
        if self.is_closed() {
            return Err(shared.closed_error());
        }
        let opaque = next_opaque();
        cmd.opaque = opaque;
        let code = cmd.code;
        let frame = encode(&cmd, self.handle.max_frame)?;
        let (wtx, wrx) = oneshot::channel();
        shared.pending.lock().insert(opaque, wtx);
        let _guard = WaiterGuard { shared, opaque };
        // `close` drains the table; a request registered after that would wait forever.
        if self.is_closed() {
            return Err(shared.closed_error());
        }
        let result = tokio::time::timeout(timeout, async {
            if self.handle.tx.send(frame).await.is_err() {
                return Err(shared.closed_error());
            }
            match wrx.await {
                Ok(r) => r,
                Err(_) => Err(shared.closed_error()),
            }
        })
        .await;
        result.unwrap_or_else(|_| {
            Err(ClientError::Timeout {
                addr: shared.addr.clone(),
                code,
                timeout,
            })
        })
    }

    /// Sends a one-way request: nothing comes back, not even an error.
    ///
    /// # Cancel safety
    ///
    /// This method is cancel safe: a dropped future either queued the whole frame for the
    /// socket or nothing of it.
    pub async fn invoke_oneway(&self, mut cmd: RemotingCommand, timeout: Duration) -> Result<()> {
        let shared = &*self.handle.shared;
        if self.is_closed() {
            return Err(shared.closed_error());
        }
        cmd.opaque = next_opaque();
        cmd.set_oneway();
        let code = cmd.code;
        let frame = encode(&cmd, self.handle.max_frame)?;
        match tokio::time::timeout(timeout, self.handle.tx.send(frame)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(shared.closed_error()),
            Err(_) => Err(ClientError::Timeout {
                addr: shared.addr.clone(),
                code,
                timeout,
            }),
        }
    }

    /// Closes the connection for every handle; waiters fail with `ConnectionClosed`.
    pub fn close(&self) {
        self.handle.shared.close("closed by the client".into());
    }

    /// Requests waiting for an answer (for tests and metrics).
    pub fn pending(&self) -> usize {
        self.handle.shared.pending.lock().len()
    }
}

fn encode(cmd: &RemotingCommand, max_frame: usize) -> Result<Bytes> {
    let mut buf = BytesMut::with_capacity(256 + cmd.body.len());
    cmd.encode_frame(&mut buf, max_frame)?;
    Ok(buf.freeze())
}

async fn write_loop(
    shared: Arc<Shared>,
    mut rx: mpsc::Receiver<Bytes>,
    wr: tokio::net::tcp::OwnedWriteHalf,
) {
    let mut wr = tokio::io::BufWriter::with_capacity(64 * 1024, wr);
    loop {
        let first = tokio::select! {
            m = rx.recv() => match m { Some(m) => m, None => break },
            _ = shared.cancel.cancelled() => break,
        };
        let mut result = wr.write_all(&first).await;
        // Coalesce a burst of queued frames into one flush.
        while result.is_ok() {
            match rx.try_recv() {
                Ok(next) => result = wr.write_all(&next).await,
                Err(_) => break,
            }
        }
        if result.is_ok() {
            result = wr.flush().await;
        }
        if let Err(e) = result {
            shared.close(format!("write failed: {e}"));
            break;
        }
    }
    // Whatever stopped the writer ends the connection for everyone.
    shared.close("writer stopped".into());
    let _ = wr.shutdown().await;
}

async fn read_loop(
    shared: Arc<Shared>,
    tx: mpsc::Sender<Bytes>,
    mut stream: FramedRead<tokio::net::tcp::OwnedReadHalf, RemotingCodec>,
    handler: Option<ServerRequestHandler>,
    max_frame: usize,
) {
    let reason = loop {
        if shared.closed.load(Ordering::Acquire) {
            break "closed by the client".to_owned();
        }
        let next = tokio::select! {
            n = stream.next() => n,
            _ = shared.cancel.cancelled() => break "closed by the client".to_owned(),
        };
        match next {
            None => break "closed by the peer".to_owned(),
            Some(Err(e)) => break format!("bad frame from peer: {e}"),
            Some(Ok(cmd)) if cmd.is_response() => {
                let waiter = shared.pending.lock().remove(&cmd.opaque);
                match waiter {
                    Some(w) => {
                        let _ = w.send(Ok(cmd));
                    }
                    // A late answer to a request that already timed out, or an answer to a
                    // one-way request (4.9 brokers do that for some errors): drop it.
                    None => trace!(addr = %shared.addr, opaque = cmd.opaque, code = cmd.code,
                        "response without a waiter dropped"),
                }
            }
            Some(Ok(req)) => {
                let oneway = req.is_oneway();
                let opaque = req.opaque;
                let code = req.code;
                let reply = match &handler {
                    // A handler bug must not take the reader (and every waiter) down with it.
                    Some(h) => std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        h(&shared.addr, req)
                    }))
                    .unwrap_or_else(|_| {
                        warn!(addr = %shared.addr, code, "server request handler panicked");
                        Some(RemotingCommand::response(
                            rmq_remoting::ResponseCode::SystemError,
                            opaque,
                            Some(format!("the client failed handling request code {code}")),
                        ))
                    }),
                    None => None,
                };
                if oneway {
                    continue;
                }
                let mut resp = reply.unwrap_or_else(|| {
                    RemotingCommand::response(
                        rmq_remoting::ResponseCode::RequestCodeNotSupported,
                        opaque,
                        Some(format!("request code {code} not supported by this client")),
                    )
                });
                resp.opaque = opaque;
                resp.flag |= rmq_remoting::FLAG_RESPONSE;
                let frame = match encode(&resp, max_frame) {
                    Ok(f) => f,
                    Err(e) => {
                        warn!(addr = %shared.addr, error = %e, "cannot encode reply to server request");
                        continue;
                    }
                };
                if tx.send(frame).await.is_err() {
                    break "writer stopped".to_owned();
                }
            }
        }
    };
    if !shared.closed.load(Ordering::Acquire) {
        warn!(addr = %shared.addr, %reason, "connection lost");
    }
    shared.close(reason);
}
