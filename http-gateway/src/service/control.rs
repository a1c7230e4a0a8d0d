//! The shared control plane's I/O: `/mq/consumer/config` writes a scope's settings to every
//! name server's KV table (namespace [`KV_NAMESPACE`], one key per scope); every instance reads
//! the namespace back about every second ([`Gateway::sync_settings`]) and applies what is newer
//! (see [`crate::engine::control`] for the document and why it is versioned and how actions run
//! once). A new scope starts from the newest document known, so settings survive restarts of
//! every instance.

use std::collections::HashMap;

use tracing::{debug, info, warn};

use super::{Gateway, Scope};
use crate::broker::BrokerApi;
use crate::engine::control::{Defaults, ResetAction};
use crate::engine::{StoredSettings, KV_NAMESPACE};
use crate::error::GatewayError;

/// How often instances read the control plane (the main loop's period; settings reach every
/// instance within about this long plus a name-server round trip).
pub const CONTROL_POLL_MS: u64 = 1_000;

/// A scope's settings in effect on this instance (`GET /mq/consumer/config`).
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EffectiveSettings {
    /// The broadcast clientId, for broadcast consumers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Fetches answer `PAUSED`.
    pub pause: bool,
    /// Messages per pull.
    pub max_pull_size: u32,
    /// Invisibility timeout, ms.
    pub consume_timeout_in_millis: u64,
    /// A rate limit is on.
    pub rate_limit_enabled: bool,
    /// The rate limit, messages per second (when on).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit_rate: Option<f64>,
    /// Resends queued on this instance, not yet handed out.
    pub pending_resends: usize,
    /// The version of the stored settings applied (0: none stored, the configuration's).
    pub version: i64,
    /// The newest offset reset's time, if one was made.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_reset_timestamp: Option<i64>,
}

impl Scope {
    fn defaults(&self) -> Defaults {
        Defaults {
            max_pull_size: self.cfg.max_pull_size,
            consume_timeout_ms: self.cfg.consume_timeout_ms,
        }
    }
}

impl<B: BrokerApi> Gateway<B> {
    /// Reads the control plane's namespace from every name server, keeps the newest document of
    /// each key, and applies the newer ones to this instance's scopes. Run about every
    /// [`CONTROL_POLL_MS`]. Returns how many scopes changed.
    pub async fn sync_settings(&self) -> Result<usize, GatewayError> {
        let tables = self
            .broker
            .kv_list(KV_NAMESPACE)
            .await
            .map_err(|e| GatewayError::Internal(format!("reading the control plane: {e}")))?;
        let mut newest: HashMap<String, StoredSettings> = HashMap::new();
        for table in tables {
            for (k, v) in table {
                let Some(doc) = StoredSettings::parse(&v) else {
                    debug!(key = %k, "a KV value the gateway did not write: ignored");
                    continue;
                };
                if newest.get(&k).is_none_or(|d| d.version < doc.version) {
                    newest.insert(k, doc);
                }
            }
        }
        {
            let mut known = self.control.lock();
            for (k, doc) in newest {
                if known.get(&k).is_none_or(|d| d.version < doc.version) {
                    known.insert(k, doc);
                }
            }
        }
        let mut changed = 0;
        for scope in self.all_scopes() {
            if self.apply_known(&scope, false) {
                changed += 1;
            }
        }
        Ok(changed)
    }

    /// Applies the newest known document of `scope`'s key; `fresh` for a scope being created.
    pub(super) fn apply_known(&self, scope: &Scope, fresh: bool) -> bool {
        let Some(doc) = self.control.lock().get(&scope.kv_key).cloned() else {
            return false;
        };
        let out = scope.state.lock().apply_stored(
            &doc,
            scope.defaults(),
            &self.instance_id,
            fresh,
            self.now(),
        );
        if out.changed && !fresh {
            info!(scope = %scope.kv_key, version = doc.version, paused = ?doc.paused,
                rate = ?doc.limit_rate, resends = out.resends, reset = out.reset_seen,
                "applied shared settings");
        }
        out.changed
    }

    /// The newest stored document of `key`: read from the name servers now (another instance
    /// may have written it a moment ago), else the last one this instance read.
    async fn current_doc(&self, key: &str) -> Result<StoredSettings, GatewayError> {
        match self.sync_settings().await {
            Ok(_) => {}
            Err(e) => {
                return Err(GatewayError::Internal(format!(
                    "the settings cannot be changed while no name server answers: {e}"
                )))
            }
        }
        Ok(self.control.lock().get(key).cloned().unwrap_or_default())
    }

    /// Stores `doc` (the next version of `scope`'s settings) on every name server and applies
    /// it here at once. An error if no name server took it; a name server that missed it is
    /// outvoted by the others' newer version when read.
    pub(super) async fn store_settings(
        &self,
        scope: &Scope,
        doc: StoredSettings,
    ) -> Result<(), GatewayError> {
        if let Err(e) = self
            .broker
            .kv_put(KV_NAMESPACE, &scope.kv_key, &doc.to_value())
            .await
        {
            // Every name server is tried; the value counts if one of them has it now.
            let stored = self.broker.kv_list(KV_NAMESPACE).await.is_ok_and(|ts| {
                ts.iter().any(|t| {
                    t.get(&scope.kv_key)
                        .and_then(|v| StoredSettings::parse(v))
                        .is_some_and(|d| d.version == doc.version)
                })
            });
            if !stored {
                return Err(GatewayError::Internal(format!(
                    "the settings could not be stored on the name servers: {e}"
                )));
            }
            warn!(error = %e, "a name server missed the settings; the others have them");
        }
        self.control.lock().insert(scope.kv_key.clone(), doc);
        self.apply_known(scope, false);
        Ok(())
    }

    /// The next document of `scope`'s settings with `change` applied (not stored yet).
    pub(super) async fn next_doc(
        &self,
        scope: &Scope,
        change: &super::ConsumerConfigChange,
        reset_by_me: bool,
    ) -> Result<StoredSettings, GatewayError> {
        let mut doc = self.current_doc(&scope.kv_key).await?;
        let now = self.now();
        doc.version = doc.next_version(now);
        doc.written_by = self.instance_id.clone();
        if let Some(p) = change.pause {
            doc.paused = Some(p);
        }
        if let Some(n) = change.max_pull_size {
            doc.max_pull_size = Some(n);
        }
        if let Some(t) = change.consume_timeout_ms {
            doc.consume_timeout_ms = Some(t);
        }
        match (change.rate_limit_enabled, change.limit_rate) {
            (Some(false), _) => doc.limit_rate = None,
            (Some(true), r) | (None, r @ Some(_)) => {
                let current = scope
                    .state
                    .lock()
                    .settings
                    .rate
                    .as_ref()
                    .map(|x| x.per_sec());
                doc.limit_rate = Some(r.or(doc.limit_rate).or(current).unwrap_or(1024.0));
            }
            (None, None) => {}
        }
        if let Some(id) = change.retry_msg_id.as_deref().filter(|s| !s.is_empty()) {
            doc.push_resend(id.to_owned());
        }
        if let (Some(ts), true) = (change.reset_offset_timestamp, reset_by_me) {
            doc.reset = Some(ResetAction {
                seq: doc.next_seq(),
                timestamp: ts,
                by: self.instance_id.clone(),
            });
        }
        Ok(doc)
    }

    /// Mirrors a pause to the brokers' subscription group config (`consumeEnable`), so
    /// RocketMQ's own tools show it. Brokers that refuse are reported, not fatal: the gateway's
    /// own pause is in force either way.
    pub(super) async fn mirror_pause(&self, scope: &Scope, paused: bool) -> Option<String> {
        match self
            .broker
            .set_consume_enable(&scope.broker_group, &scope.topic, !paused)
            .await
        {
            Ok(()) => None,
            Err(e) => {
                warn!(group = %scope.broker_group, error = %e, "consumeEnable not set on the broker");
                Some(format!(
                    "{} consumeEnable not set on the broker: {e}",
                    scope.broker_group
                ))
            }
        }
    }

    /// `GET /mq/consumer/config`: the settings in effect on this instance (after the control
    /// plane's last read).
    pub async fn effective_settings(
        &self,
        consumer: &str,
        client_id: Option<&str>,
    ) -> Result<Vec<EffectiveSettings>, GatewayError> {
        let scopes = self.scopes_for(consumer, client_id).await?;
        let docs = self.control.lock().clone();
        Ok(scopes
            .into_iter()
            .map(|(cid, scope)| {
                let st = scope.state.lock();
                let rate = st.settings.rate.as_ref().map(|r| r.per_sec());
                EffectiveSettings {
                    client_id: cid,
                    pause: st.settings.paused,
                    max_pull_size: st.settings.max_pull_size,
                    consume_timeout_in_millis: st.settings.consume_timeout_ms,
                    rate_limit_enabled: rate.is_some(),
                    limit_rate: rate,
                    pending_resends: st.settings.resend.len(),
                    version: st.applied.version,
                    last_reset_timestamp: docs
                        .get(&scope.kv_key)
                        .and_then(|d| d.reset.as_ref())
                        .map(|r| r.timestamp),
                }
            })
            .collect())
    }
}
