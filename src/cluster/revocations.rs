//! Revocations across the fleet, on a Redis Stream rather than pub/sub: a
//! replica that was disconnected reads what it missed from its last-seen
//! entry id. When it cannot tell what it missed (Redis lost its data, or the
//! stream was trimmed past that id) it drops its whole local cache.
//!
//! - `publish`: drains the outbox (revocations applied locally, not yet in
//!   Redis) into revocation records and stream entries; retries while Redis
//!   is down.
//! - `receive`: one dedicated connection blocked on `XREAD`, so another
//!   replica's revocation lands within milliseconds.

use std::sync::{PoisonError, Weak};
use std::time::{Duration, SystemTime};

use redis::aio::MultiplexedConnection;
use redis::streams::StreamReadReply;
use redis::{AsyncConnectionConfig, Value};
use ring::rand::{SecureRandom, SystemRandom};

use super::keys::{Tag, EPOCH, STREAM};
use super::record::unix_ms;
use super::{settle, Cluster, Event, FlushReason, Pending};

/// Stream field values: a credential's tag, or an IID session id's tag.
pub(super) const KIND_CREDENTIAL: &str = "c";
pub(super) const KIND_SESSION: &str = "s";

/// How long one `XREAD` blocks; also how soon a dropped gateway's task ends.
const BLOCK: Duration = Duration::from_secs(1);
/// Pause between attempts while Redis is unreachable.
const RETRY: Duration = Duration::from_millis(250);
/// How far back a replica that just started reads, for revocations published
/// while it was starting (stream ids are the Redis server's clock).
const STARTUP_LOOKBACK: Duration = Duration::from_secs(60);

/// 128 random bits in hex: a replica's origin, or a Redis data set's epoch.
pub(super) fn random_id() -> String {
    let mut bytes = [0u8; 16];
    // SystemRandom only fails when the OS has no randomness at all; the id
    // then degrades to a timestamp, which still tells replicas apart.
    if SystemRandom::new().fill(&mut bytes).is_err() {
        bytes[..8].copy_from_slice(&unix_ms(SystemTime::now()).to_be_bytes());
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Publishes pending revocations until the cluster is dropped.
pub(super) async fn publish(cluster: Weak<Cluster>) {
    loop {
        let Some(c) = cluster.upgrade() else { return };
        if c.ensure_connected().await {
            c.flush_outbox().await;
        }
        // Woken by a new revocation; otherwise retry what is pending now and then.
        let _ = tokio::time::timeout(RETRY * 4, c.wake_publisher.notified()).await;
    }
}

impl Cluster {
    /// Writes pending revocations in order; stops at the first failure and
    /// keeps the rest for the next attempt.
    async fn flush_outbox(&self) {
        loop {
            let next = self
                .outbox
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .front()
                .cloned();
            let Some(pending) = next else { return };
            if self.write_revocation(&pending).await.is_none() {
                return;
            }
            self.outbox
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop_front();
            (self.observe)(Event::RevocationSent);
        }
    }

    /// The record (refused on every L2 read), the shared answer gone, and
    /// the stream entry, in one transaction.
    async fn write_revocation(&self, p: &Pending) -> Option<()> {
        let ttl = u64::try_from(self.revocation_ttl().as_millis()).unwrap_or(u64::MAX);
        let record = if p.kind == KIND_SESSION {
            p.tag.revoked_session()
        } else {
            p.tag.revoked()
        };
        // Entries older than the retention go, approximately (`MINID ~`
        // trims whole stream nodes): time, not a count, is the promise.
        let retention_ms =
            u64::try_from(self.cfg.revocation_retention.as_millis()).unwrap_or(u64::MAX);
        let min_id = unix_ms(SystemTime::now()).saturating_sub(retention_ms);
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("SET")
            .arg(&record)
            .arg("1")
            .arg("PX")
            .arg(ttl)
            .ignore();
        if p.kind == KIND_CREDENTIAL {
            pipe.cmd("DEL").arg(p.tag.entry()).ignore();
        }
        pipe.cmd("XADD")
            .arg(STREAM)
            .arg("MINID")
            .arg("~")
            .arg(min_id)
            .arg("*")
            .arg("o")
            .arg(&self.origin)
            .arg("k")
            .arg(p.kind)
            .arg("t")
            .arg(p.tag.as_str())
            .ignore();
        self.query_pipe::<()>(&pipe).await
    }

    /// Applies another replica's revocation to the local cache; `false`
    /// for this replica's own entries and anything unreadable.
    async fn apply(&self, fields: &std::collections::HashMap<String, Value>) -> bool {
        let text = |name: &str| match fields.get(name) {
            Some(Value::BulkString(b)) => std::str::from_utf8(b).ok(),
            Some(Value::SimpleString(s)) => Some(s.as_str()),
            _ => None,
        };
        if text("o") == Some(self.origin.as_str()) {
            return false;
        }
        let Some(tag) = text("t").and_then(Tag::parse) else {
            return false;
        };
        match text("k") {
            Some(KIND_CREDENTIAL) => {
                if let Some(key) = self.index.get(&tag).await {
                    self.settings.cache.revoke(&key).await;
                }
            }
            Some(KIND_SESSION) if self.settings.session_ids => {
                self.settings
                    .cache
                    .revoke_where(|key| self.keys.session_id(key.id()) == tag)
                    .await;
            }
            _ => return false,
        }
        (self.observe)(Event::RevocationReceived);
        true
    }

    /// Drops every local answer: revocations may have been missed.
    fn flush(&self, reason: FlushReason) {
        self.settings.cache.drop_all();
        (self.observe)(Event::Flushed(reason));
        tracing::warn!(
            reason = match reason {
                FlushReason::RedisReset => "redis lost its data (new epoch)",
                FlushReason::StreamTrimmed =>
                    "the revocation stream was trimmed past the last entry this replica saw",
            },
            "cannot tell which revocations were missed: dropped the whole local session cache; sessions will be validated again"
        );
    }
}

/// Where the receiver stands in the stream.
struct Position {
    /// The Redis data set this replica last saw.
    epoch: Option<String>,
    /// The last stream entry id applied (or skipped).
    last_id: String,
    /// True after the first successful sync: later syncs are reconnections.
    reconnecting: bool,
}

/// Receives revocations until the cluster is dropped.
pub(super) async fn receive(cluster: Weak<Cluster>) {
    let lookback = unix_ms(SystemTime::now())
        .saturating_sub(u64::try_from(STARTUP_LOOKBACK.as_millis()).unwrap_or(0));
    let mut at = Position {
        epoch: None,
        last_id: format!("{lookback}-0"),
        reconnecting: false,
    };
    let mut degraded: Option<bool> = None;
    loop {
        let result = receive_once(&cluster, &mut at, &mut degraded).await;
        let Some(c) = cluster.upgrade() else { return };
        set_degraded(&c, &mut degraded, true);
        settle(&c.observe, Ok(result));
        drop(c);
        tokio::time::sleep(RETRY).await;
    }
}

fn set_degraded(c: &Cluster, state: &mut Option<bool>, now: bool) {
    if *state == Some(now) {
        return;
    }
    // The first report of an unreachable Redis at startup is a warning too.
    if now {
        tracing::warn!(
            redis = %crate::config::redact_url(&c.cfg.redis_url),
            "shared state degraded: Redis unreachable; serving from the local cache and the IdP, revocations are buffered"
        );
    } else if state.is_some() {
        tracing::info!("shared state restored: Redis reachable again");
    }
    *state = Some(now);
    (c.observe)(Event::Degraded(now));
}

/// One connection's life: connect, catch up, then apply entries as they
/// come. Returns when the connection fails or the cluster is dropped (the
/// cluster is held only while an answer is handled, so dropping the gateway
/// ends this within one `BLOCK`).
async fn receive_once(
    cluster: &Weak<Cluster>,
    at: &mut Position,
    degraded: &mut Option<bool>,
) -> redis::RedisResult<()> {
    let Some(c) = cluster.upgrade() else {
        return Ok(());
    };
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(c.cfg.connect_timeout)
        .set_response_timeout(BLOCK + c.cfg.command_timeout + Duration::from_secs(1));
    let connecting = c
        .client
        .get_multiplexed_async_connection_with_config(&config);
    let connected = tokio::time::timeout(c.cfg.connect_timeout * 2, connecting).await;
    let Some(mut conn) = settle(&c.observe, connected) else {
        return Ok(());
    };
    let replay_until = c.sync(&mut conn, at).await?;
    set_degraded(&c, degraded, false);
    // Publish what was buffered during the outage.
    c.wake_publisher.notify_one();
    drop(c);
    loop {
        let mut cmd = redis::cmd("XREAD");
        cmd.arg("COUNT")
            .arg(256)
            .arg("BLOCK")
            .arg(u64::try_from(BLOCK.as_millis()).unwrap_or(1000))
            .arg("STREAMS")
            .arg(STREAM)
            .arg(&at.last_id);
        let reply: Option<StreamReadReply> = cmd.query_async(&mut conn).await?;
        let Some(c) = cluster.upgrade() else {
            return Ok(());
        };
        for entry in reply.into_iter().flat_map(|r| r.keys).flat_map(|k| k.ids) {
            let replayed = replay_until
                .as_deref()
                .is_some_and(|until| !id_after(&entry.id, until));
            if c.apply(&entry.map).await && replayed {
                (c.observe)(Event::RevocationReplayed);
            }
            at.last_id = entry.id;
        }
    }
}

impl Cluster {
    /// Catches up after (re)connecting: detects a reset Redis (new epoch) or
    /// a stream trimmed past `at.last_id`, and flushes the local cache then.
    /// Returns the stream's last id when this is a reconnection (entries up
    /// to it are replays).
    async fn sync(
        &self,
        conn: &mut MultiplexedConnection,
        at: &mut Position,
    ) -> redis::RedisResult<Option<String>> {
        let candidate = random_id();
        let (_, epoch): (Value, Option<String>) = redis::pipe()
            .cmd("SET")
            .arg(EPOCH)
            .arg(&candidate)
            .arg("NX")
            .cmd("GET")
            .arg(EPOCH)
            .query_async(conn)
            .await?;
        let epoch = epoch.unwrap_or(candidate);
        let reset = at.epoch.as_ref().is_some_and(|seen| *seen != epoch);
        at.epoch = Some(epoch);
        if reset {
            self.flush(FlushReason::RedisReset);
            // A new data set: its stream starts over.
            at.last_id = "0-0".into();
            return Ok(None);
        }
        let info: redis::RedisResult<Value> = redis::cmd("XINFO")
            .arg("STREAM")
            .arg(STREAM)
            .query_async(conn)
            .await;
        let Ok(info) = info else {
            // No stream yet: nothing was ever revoked on this data set.
            return Ok(None);
        };
        let field = |name: &str| stream_info_field(&info, name);
        let last = field("last-generated-id");
        if let Some(deleted) = field("max-deleted-entry-id") {
            if deleted != "0-0" && id_after(&deleted, &at.last_id) {
                self.flush(FlushReason::StreamTrimmed);
                if let Some(last) = &last {
                    at.last_id = last.clone();
                }
                return Ok(None);
            }
        }
        let replay_until = if at.reconnecting { last } else { None };
        at.reconnecting = true;
        Ok(replay_until)
    }
}

/// A field of an `XINFO STREAM` reply (a flat key/value array in RESP2, a map in RESP3).
fn stream_info_field(info: &Value, name: &str) -> Option<String> {
    let as_text = |v: &Value| match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    };
    match info {
        Value::Array(items) => items
            .chunks(2)
            .find(|kv| kv.first().and_then(as_text).as_deref() == Some(name))
            .and_then(|kv| kv.get(1).and_then(as_text)),
        Value::Map(pairs) => pairs
            .iter()
            .find(|(k, _)| as_text(k).as_deref() == Some(name))
            .and_then(|(_, v)| as_text(v)),
        _ => None,
    }
}

/// Stream ids are `ms-seq`; true when `a` comes after `b`.
fn id_after(a: &str, b: &str) -> bool {
    let parse = |id: &str| {
        let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
        (
            ms.parse::<u64>().unwrap_or(0),
            seq.parse::<u64>().unwrap_or(0),
        )
    };
    parse(a) > parse(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_ids_compare_by_time_then_sequence() {
        assert!(id_after("1700000000001-0", "1700000000000-5"));
        assert!(id_after("1700000000000-6", "1700000000000-5"));
        assert!(!id_after("1700000000000-5", "1700000000000-5"));
        assert!(!id_after("0-0", "1-0"));
    }

    #[test]
    fn xinfo_fields_are_found_in_resp2_and_resp3_shapes() {
        let resp2 = Value::Array(vec![
            Value::BulkString(b"length".to_vec()),
            Value::Int(2),
            Value::BulkString(b"max-deleted-entry-id".to_vec()),
            Value::BulkString(b"5-0".to_vec()),
        ]);
        assert_eq!(
            stream_info_field(&resp2, "max-deleted-entry-id").as_deref(),
            Some("5-0")
        );
        assert_eq!(stream_info_field(&resp2, "length"), None);
        let resp3 = Value::Map(vec![(
            Value::SimpleString("last-generated-id".into()),
            Value::BulkString(b"7-1".to_vec()),
        )]);
        assert_eq!(
            stream_info_field(&resp3, "last-generated-id").as_deref(),
            Some("7-1")
        );
    }

    #[test]
    fn random_ids_differ() {
        assert_ne!(random_id(), random_id());
        assert_eq!(random_id().len(), 32);
    }
}
