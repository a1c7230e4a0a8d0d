//! One multiplexed TCP connection: many requests in flight, answers matched by opaque.
//!
//! A caller encodes its frame into the connection's write buffer and, when no one else is
//! writing, writes the buffer to the socket itself (non-blocking), so a request costs no task
//! wake-up on the way out. Frames that arrive while someone writes are written by that writer in
//! the same syscall or the next (coalescing under load, as redis-rs's multiplexed connection and
//! hyper do). When the socket is full, a writer task takes over until the buffer drains. A
//! reader task routes responses to their waiters and hands requests from the server to a
//! handler. When either side fails, every waiter learns it at once and the connection is marked
//! dead, so the pool dials a new one on next use. Dropping the last handle closes the
//! connection and ends both tasks; dropping a request's future forgets its waiter.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use futures::StreamExt;
use parking_lot::Mutex;
use rmq_remoting::{RemotingCodec, RemotingCommand};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::{oneshot, Notify};
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
    writer: Writer,
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
        self.writer.drained.notify_waiters();
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

/// A caller's duty to write the buffer; handed to the writer task when its future is dropped
/// before it wrote.
struct WriteDuty<'a> {
    writer: &'a Writer,
    done: bool,
}

impl Drop for WriteDuty<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.writer.hand_over(None);
        }
    }
}

/// What the handles share; the reader and writer tasks hold only `Shared`, so they do not keep
/// the connection open by themselves.
struct Handle {
    shared: Arc<Shared>,
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

/// Bytes that may wait for the socket before senders are made to wait (one frame is always
/// accepted into an emptier buffer, whatever its size).
const WRITE_BUFFER_LIMIT: usize = 8 * 1024 * 1024;
/// Buffers a caller writes for others before it leaves the rest to the writer task, so one
/// caller does not write for everyone under a steady load.
const CALLER_WRITE_ROUNDS: usize = 4;

/// The sending side: a buffer of encoded frames and who is writing it to the socket.
///
/// At most one party writes at a time (`busy`): a caller that found the connection idle, or the
/// writer task once the socket would block. Everyone else only appends, and the party writing
/// picks their frames up before it lets go, so frames reach the socket in the order they were
/// appended and nothing is left behind.
struct Writer {
    state: Mutex<WriteState>,
    wr: OwnedWriteHalf,
    /// Wakes the writer task when a caller hands the buffer over.
    takeover: Notify,
    /// Wakes senders waiting for room in the buffer, and on close.
    drained: Notify,
}

struct WriteState {
    /// Frames nobody has started writing yet.
    buf: BytesMut,
    /// Someone is writing (and will take `buf` before it lets go).
    busy: bool,
    /// What a caller had taken but could not write: the writer task writes it before `buf`.
    handed_over: Option<BytesMut>,
    /// An empty buffer to swap with `buf`, so steady traffic reuses two allocations.
    spare: BytesMut,
}

impl Writer {
    fn new(wr: OwnedWriteHalf) -> Writer {
        Writer {
            state: Mutex::new(WriteState {
                buf: BytesMut::new(),
                busy: false,
                handed_over: None,
                spare: BytesMut::new(),
            }),
            wr,
            takeover: Notify::new(),
            drained: Notify::new(),
        }
    }

    /// Waits until the buffer has room (or the connection is closed). Cancel safe.
    async fn room(&self, shared: &Shared) -> Result<()> {
        loop {
            let notified = self.drained.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if shared.closed.load(Ordering::Acquire) {
                return Err(shared.closed_error());
            }
            if self.state.lock().buf.len() < WRITE_BUFFER_LIMIT {
                return Ok(());
            }
            notified.await;
        }
    }

    /// Encodes `cmd` into the buffer (nothing is appended when encoding fails). `Ok(true)`: nobody
    /// was writing, and now the caller must (see [`WriteDuty`]).
    fn append(&self, shared: &Shared, cmd: &RemotingCommand, max_frame: usize) -> Result<bool> {
        let mut st = self.state.lock();
        if shared.closed.load(Ordering::Acquire) {
            return Err(shared.closed_error());
        }
        cmd.encode_frame(&mut st.buf, max_frame)?;
        if st.busy {
            // Whoever writes takes this frame before letting go.
            return Ok(false);
        }
        st.busy = true;
        Ok(true)
    }

    /// The buffer to write now, leaving the spare one in its place.
    fn take_buffer(&self) -> BytesMut {
        let mut st = self.state.lock();
        let spare = std::mem::take(&mut st.spare);
        let out = std::mem::replace(&mut st.buf, spare);
        drop(st);
        if out.len() >= WRITE_BUFFER_LIMIT {
            self.drained.notify_waiters();
        }
        out
    }

    /// Appends `cmd` and writes it out from this thread when nobody else is writing. Never
    /// waits: the request goes out without waking another task.
    fn submit(&self, shared: &Shared, cmd: &RemotingCommand, max_frame: usize) -> Result<()> {
        if self.append(shared, cmd, max_frame)? {
            self.write_from_caller(shared, self.take_buffer());
        }
        Ok(())
    }

    /// As [`submit`](Self::submit), but under load (`coalesce`: other requests are in flight)
    /// the caller that has to write first lets the other tasks that are ready in this turn of
    /// the scheduler append their frames, so that one syscall carries many requests (on loopback
    /// a send also pays for the peer's receive). A lone request is written at once. Cancel safe:
    /// a dropped future leaves its duty to the writer task.
    async fn send(
        &self,
        shared: &Shared,
        cmd: &RemotingCommand,
        max_frame: usize,
        coalesce: bool,
    ) -> Result<()> {
        if !self.append(shared, cmd, max_frame)? {
            return Ok(());
        }
        if !coalesce {
            self.write_from_caller(shared, self.take_buffer());
            return Ok(());
        }
        let mut duty = WriteDuty {
            writer: self,
            done: false,
        };
        tokio::task::yield_now().await;
        duty.done = true;
        self.write_from_caller(shared, self.take_buffer());
        Ok(())
    }

    /// Writes `out`, then whatever others appended meanwhile, until the buffer is empty (then
    /// lets go); hands the rest to the writer task when the socket would block or after
    /// [`CALLER_WRITE_ROUNDS`].
    fn write_from_caller(&self, shared: &Shared, mut out: BytesMut) {
        let mut rounds = 1;
        loop {
            match self.try_write_all(&mut out) {
                Ok(true) => {}
                Ok(false) => return self.hand_over(Some(out)),
                Err(e) => return shared.close(format!("write failed: {e}")),
            }
            match self.next_buffer(out) {
                None => return,
                Some(next) if rounds >= CALLER_WRITE_ROUNDS => return self.hand_over(Some(next)),
                Some(next) => out = next,
            }
            rounds += 1;
        }
    }

    /// Leaves the writing to the writer task: `rest` first (what the caller could not write),
    /// then the buffer.
    fn hand_over(&self, rest: Option<BytesMut>) {
        self.state.lock().handed_over = rest;
        self.takeover.notify_one();
    }

    /// After `done` was written: the frames appended meanwhile, or `None` when there are none
    /// (then the writer lets go, keeping `done`'s allocation for the next one).
    fn next_buffer(&self, mut done: BytesMut) -> Option<BytesMut> {
        done.clear();
        let mut st = self.state.lock();
        if st.buf.is_empty() {
            st.busy = false;
            if done.capacity() <= 1024 * 1024 {
                st.spare = done;
            }
            return None;
        }
        let next = std::mem::replace(&mut st.buf, done);
        drop(st);
        if next.len() >= WRITE_BUFFER_LIMIT {
            self.drained.notify_waiters();
        }
        Some(next)
    }

    /// Writes as much of `out` as the socket takes now: `Ok(true)` when all of it went.
    fn try_write_all(&self, out: &mut BytesMut) -> std::io::Result<bool> {
        while !out.is_empty() {
            match self.wr.try_write(out) {
                Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                Ok(n) => out.advance(n),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }
}

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
            writer: Writer::new(wr),
            pending: Mutex::new(HashMap::new()),
            closed: AtomicBool::new(false),
            close_reason: Mutex::new(None),
            cancel: CancellationToken::new(),
        });
        tokio::spawn(write_loop(shared.clone()));
        tokio::spawn(read_loop(
            shared.clone(),
            FramedRead::new(rd, RemotingCodec::with_max_frame(max_frame)),
            handler,
            max_frame,
        ));
        Connection {
            handle: Arc::new(Handle { shared, max_frame }),
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
        let (wtx, wrx) = oneshot::channel();
        // Others waiting for answers means load: worth waiting a turn to share a write.
        let loaded = {
            let mut pending = shared.pending.lock();
            pending.insert(opaque, wtx);
            pending.len() > 1
        };
        let _guard = WaiterGuard { shared, opaque };
        // `close` drains the table; a request registered after that would wait forever.
        if self.is_closed() {
            return Err(shared.closed_error());
        }
        let result = tokio::time::timeout(timeout, async {
            shared.writer.room(shared).await?;
            shared
                .writer
                .send(shared, &cmd, self.handle.max_frame, loaded)
                .await?;
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
        match tokio::time::timeout(timeout, shared.writer.room(shared)).await {
            Ok(Ok(())) => shared.writer.submit(shared, &cmd, self.handle.max_frame),
            Ok(Err(e)) => Err(e),
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

/// Writes what callers hand over when the socket would block, until the buffer is empty again;
/// on close, shuts the socket down so the peer sees the end at once.
async fn write_loop(shared: Arc<Shared>) {
    let w = &shared.writer;
    let result = async {
        loop {
            tokio::select! {
                _ = w.takeover.notified() => {}
                _ = shared.cancel.cancelled() => return Ok::<(), std::io::Error>(()),
            }
            let handed_over = w.state.lock().handed_over.take();
            let mut out = handed_over.unwrap_or_else(|| w.take_buffer());
            loop {
                while !w.try_write_all(&mut out)? {
                    tokio::select! {
                        r = w.wr.writable() => r?,
                        _ = shared.cancel.cancelled() => return Ok(()),
                    }
                }
                match w.next_buffer(out) {
                    Some(next) => out = next,
                    None => break,
                }
            }
        }
    }
    .await;
    if let Err(e) = result {
        shared.close(format!("write failed: {e}"));
    }
    // Whatever stopped the writer ends the connection for everyone.
    shared.close("writer stopped".into());
    let _ = socket2::SockRef::from(w.wr.as_ref()).shutdown(std::net::Shutdown::Write);
}

async fn read_loop(
    shared: Arc<Shared>,
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
                match shared.writer.submit(&shared, &resp, max_frame) {
                    Ok(()) => {}
                    Err(ClientError::ConnectionClosed { .. }) => {
                        break "writer stopped".to_owned();
                    }
                    Err(e) => {
                        warn!(addr = %shared.addr, error = %e, "cannot encode reply to server request");
                    }
                }
            }
        }
    };
    if !shared.closed.load(Ordering::Acquire) {
        warn!(addr = %shared.addr, %reason, "connection lost");
    }
    shared.close(reason);
}
