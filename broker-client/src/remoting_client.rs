//! A pool of multiplexed connections, one per address, dialled on demand and re-dialled when
//! they die (with a growing pause after failed dials). Every request leaving through it gets our
//! language, version, serialization and (if configured) ACL signature.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use parking_lot::Mutex;
use rmq_remoting::{acl, RemotingCommand};

use crate::config::ClientConfig;
use crate::connection::{Connection, ServerRequestHandler};
use crate::error::{ClientError, Result};

type Slot = Arc<tokio::sync::Mutex<SlotState>>;

/// One address of the pool: its live connection, or when the last dials failed, until when
/// requests fail without dialling.
#[derive(Default)]
struct SlotState {
    conn: Option<Connection>,
    failed_dials: u32,
    retry_at: Option<Instant>,
    last_error: String,
}

impl SlotState {
    fn take(&mut self) -> Option<Connection> {
        self.conn.take()
    }
}

/// A pool of connections, one per address; clones share it. Connections close when the last
/// clone is dropped.
#[derive(Clone)]
pub struct RemotingClient {
    inner: Arc<Inner>,
}

struct Inner {
    config: ClientConfig,
    slots: Mutex<HashMap<String, Slot>>,
    handler: Mutex<Option<ServerRequestHandler>>,
    /// Connections dialled successfully per address (see [`RemotingClient::connection_epoch`]).
    dials: Mutex<HashMap<String, u64>>,
}

impl RemotingClient {
    /// An empty pool; nothing is dialled until the first request.
    pub fn new(config: ClientConfig) -> Self {
        RemotingClient {
            inner: Arc::new(Inner {
                config,
                slots: Mutex::new(HashMap::new()),
                handler: Mutex::new(None),
                dials: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The configuration every connection uses.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// Sets what to do with requests brokers send us; applies to connections dialled later.
    pub fn set_server_request_handler(&self, handler: ServerRequestHandler) {
        *self.inner.handler.lock() = Some(handler);
    }

    /// How many connections to `addr` were established so far (0: never). A peer's state that
    /// lives as long as a connection (a broker's consumer registration, and with it the queue
    /// locks other clients may release once it is gone) may have been lost whenever this
    /// changes, so callers compare it before and after relying on such state.
    pub fn connection_epoch(&self, addr: &str) -> u64 {
        self.inner.dials.lock().get(addr).copied().unwrap_or(0)
    }

    /// The live connection to `addr`, dialling it if needed. Concurrent callers share one dial.
    /// After a failed dial, calls fail with [`ClientError::Reconnecting`] until the backoff of
    /// [`ClientConfig::reconnect_backoff`] has passed.
    ///
    /// # Cancel safety
    ///
    /// This method is cancel safe: a dropped call leaves the pool as it was or with the new
    /// connection in place.
    pub async fn connection(&self, addr: &str) -> Result<Connection> {
        let slot = self
            .inner
            .slots
            .lock()
            .entry(addr.to_owned())
            .or_default()
            .clone();
        let mut state = slot.lock().await;
        if let Some(c) = state.conn.as_ref() {
            if !c.is_closed() {
                return Ok(c.clone());
            }
        }
        let now = Instant::now();
        if let Some(at) = state.retry_at.filter(|at| *at > now) {
            return Err(ClientError::Reconnecting {
                addr: addr.to_owned(),
                retry_in: at - now,
                last_error: state.last_error.clone(),
            });
        }
        let cfg = &self.inner.config;
        let handler = self.inner.handler.lock().clone();
        match Connection::connect(addr, cfg.connect_timeout, cfg.max_frame, handler).await {
            Ok(conn) => {
                *self.inner.dials.lock().entry(addr.to_owned()).or_default() += 1;
                *state = SlotState {
                    conn: Some(conn.clone()),
                    ..SlotState::default()
                };
                Ok(conn)
            }
            Err(e) => {
                state.conn = None;
                state.failed_dials = state.failed_dials.saturating_add(1);
                let wait = backoff(
                    cfg.reconnect_backoff,
                    cfg.reconnect_backoff_max,
                    state.failed_dials,
                );
                state.retry_at = Some(Instant::now() + wait);
                state.last_error = e.to_string();
                Err(e)
            }
        }
    }

    fn prepare(&self, cmd: &mut RemotingCommand) {
        let cfg = &self.inner.config;
        cmd.language = cfg.language;
        cmd.version = cfg.version;
        cmd.serialize_type = cfg.serialize_type;
        cmd.json_rpc_type_member = true;
        if let Some(creds) = &cfg.credentials {
            acl::sign(cmd, creds, cfg.acl_flavor);
        }
    }

    /// Request/response with the default timeout.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe, as [`Connection::invoke`].
    pub async fn invoke(&self, addr: &str, cmd: RemotingCommand) -> Result<RemotingCommand> {
        self.invoke_timeout(addr, cmd, self.inner.config.request_timeout)
            .await
    }

    /// Request/response with an explicit timeout (the dial is not counted in it).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe, as [`Connection::invoke`].
    pub async fn invoke_timeout(
        &self,
        addr: &str,
        mut cmd: RemotingCommand,
        timeout: Duration,
    ) -> Result<RemotingCommand> {
        self.prepare(&mut cmd);
        let conn = self.connection(addr).await?;
        conn.invoke(cmd, timeout).await
    }

    /// A one-way request: nothing comes back.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe, as [`Connection::invoke_oneway`].
    pub async fn invoke_oneway(&self, addr: &str, mut cmd: RemotingCommand) -> Result<()> {
        self.prepare(&mut cmd);
        let conn = self.connection(addr).await?;
        conn.invoke_oneway(cmd, self.inner.config.request_timeout)
            .await
    }

    /// The addresses with an open connection now, for monitoring. A connection being dialled
    /// right now does not count yet.
    pub fn open_connections(&self) -> Vec<String> {
        self.inner
            .slots
            .lock()
            .iter()
            .filter(|(_, slot)| {
                slot.try_lock()
                    .is_ok_and(|s| s.conn.as_ref().is_some_and(|c| !c.is_closed()))
            })
            .map(|(addr, _)| addr.clone())
            .collect()
    }

    /// Drops the connection to `addr` (e.g. after a name-server timeout, to fail over).
    pub async fn close_connection(&self, addr: &str) {
        let slot = self.inner.slots.lock().get(addr).cloned();
        if let Some(slot) = slot {
            if let Some(c) = slot.lock().await.take() {
                c.close();
            }
        }
    }

    /// Closes every connection.
    pub async fn close_all(&self) {
        let slots: Vec<Slot> = self.inner.slots.lock().drain().map(|(_, s)| s).collect();
        for s in slots {
            if let Some(c) = s.lock().await.take() {
                c.close();
            }
        }
    }
}

/// The pause before dial number `failures + 1`: `first`, doubling, at most `max`.
fn backoff(first: Duration, max: Duration, failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(20);
    first.saturating_mul(1 << doublings).min(max)
}

/// Turns a non-success response into an error carrying its code and remark.
pub fn expect_code(
    addr: &str,
    resp: RemotingCommand,
    ok: &[rmq_remoting::ResponseCode],
) -> Result<RemotingCommand> {
    if ok.contains(&resp.response_code()) {
        Ok(resp)
    } else {
        Err(ClientError::Broker {
            addr: addr.to_owned(),
            code: resp.response_code(),
            remark: resp.remark,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let ms = Duration::from_millis;
        let waits: Vec<_> = (1..=8).map(|n| backoff(ms(100), ms(5000), n)).collect();
        assert_eq!(
            waits,
            [100, 200, 400, 800, 1600, 3200, 5000, 5000]
                .map(ms)
                .to_vec()
        );
        assert_eq!(backoff(ms(100), ms(5000), u32::MAX), ms(5000));
    }
}
