//! A pool of multiplexed connections, one per address, dialled on demand and re-dialled when
//! they die. Every request leaving through it gets our language, version, serialization and (if
//! configured) ACL signature.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use rmq_remoting::{acl, RemotingCommand};

use crate::config::ClientConfig;
use crate::connection::{Connection, ServerRequestHandler};
use crate::error::{ClientError, Result};

type Slot = Arc<tokio::sync::Mutex<Option<Connection>>>;

#[derive(Clone)]
pub struct RemotingClient {
    inner: Arc<Inner>,
}

struct Inner {
    config: ClientConfig,
    slots: Mutex<HashMap<String, Slot>>,
    handler: Mutex<Option<ServerRequestHandler>>,
}

impl RemotingClient {
    pub fn new(config: ClientConfig) -> Self {
        RemotingClient {
            inner: Arc::new(Inner {
                config,
                slots: Mutex::new(HashMap::new()),
                handler: Mutex::new(None),
            }),
        }
    }

    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// Sets what to do with requests brokers send us; applies to connections dialled later.
    pub fn set_server_request_handler(&self, handler: ServerRequestHandler) {
        *self.inner.handler.lock() = Some(handler);
    }

    /// The live connection to `addr`, dialling it if needed. Concurrent callers share one dial.
    pub async fn connection(&self, addr: &str) -> Result<Connection> {
        let slot = self
            .inner
            .slots
            .lock()
            .entry(addr.to_owned())
            .or_default()
            .clone();
        let mut guard = slot.lock().await;
        if let Some(c) = guard.as_ref() {
            if !c.is_closed() {
                return Ok(c.clone());
            }
        }
        let cfg = &self.inner.config;
        let handler = self.inner.handler.lock().clone();
        let conn = Connection::connect(addr, cfg.connect_timeout, cfg.max_frame, handler).await?;
        *guard = Some(conn.clone());
        Ok(conn)
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
    pub async fn invoke(&self, addr: &str, cmd: RemotingCommand) -> Result<RemotingCommand> {
        self.invoke_timeout(addr, cmd, self.inner.config.request_timeout)
            .await
    }

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

    pub async fn invoke_oneway(&self, addr: &str, mut cmd: RemotingCommand) -> Result<()> {
        self.prepare(&mut cmd);
        let conn = self.connection(addr).await?;
        conn.invoke_oneway(cmd, self.inner.config.request_timeout)
            .await
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
