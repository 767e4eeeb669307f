//! Shared state across replicas on Redis (`[cluster]`): one IdP call per
//! session for the whole fleet, and revocations (logout, admin `/revoke`)
//! that reach every replica.
//!
//! Redis is an optimisation, never a dependency: every command is bounded by
//! `cluster.command_timeout`, and when Redis fails a replica works from its
//! own cache and the IdP, as without `[cluster]`. The local cache-hit path
//! never comes here.
//!
//! - **L2 cache** ([`Cluster::fetch`], on a local miss): read the sealed
//!   answer and the revocation records in one round trip; on a miss take a
//!   short `SET NX PX` lock, so one replica asks the IdP while the others
//!   wait for its answer (up to `idp.timeout`, then they ask themselves).
//! - **Revocations** (`revocations`): applied locally at once, then written
//!   as records that outlive any cached copy and carried to the other
//!   replicas in a Redis Stream, replayed after a disconnection.

pub mod keys;
pub mod record;
mod revocations;

use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant, SystemTime};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::Value;
use serde::Deserialize;
use tokio::sync::Notify;

use crate::auth::cache::SessionCache;
use crate::auth::credential::Credential;
use crate::config::ClusterConfig;
use crate::idp::{IdpError, Verdict};
use keys::{Keys, Tag};
use record::Record;

/// How often a replica waiting on another's lock looks for its answer.
const LOCK_POLL: Duration = Duration::from_millis(20);

/// What the cluster layer did, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// One L2 lookup on a local miss.
    L2(L2Result),
    /// A wait for another replica's IdP call ended.
    LockWait(LockWaitResult),
    /// A revocation reached the stream.
    RevocationSent,
    /// Another replica's revocation was applied here.
    RevocationReceived,
    /// Received after a disconnection (a subset of `RevocationReceived`).
    RevocationReplayed,
    /// The outage buffer was full: the oldest pending revocation was dropped.
    RevocationDropped,
    /// The local cache was emptied because revocations may have been missed.
    Flushed(FlushReason),
    /// A Redis command failed.
    RedisError(ErrorKind),
    /// Shared state is (or no longer is) degraded: the revocation stream is unreachable.
    Degraded(bool),
}

/// How an L2 lookup ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L2Result {
    /// A valid session, shared by another replica.
    Hit,
    /// A negative answer, shared by another replica.
    Negative,
    /// Nothing shared yet.
    Miss,
    /// A revocation record: refused without asking the IdP.
    Revoked,
    /// A value that does not open with this replica's secret (altered,
    /// forged, or another secret): treated as a miss.
    Unreadable,
    /// Redis failed or was slow: treated as a miss.
    Error,
}

/// How a wait on another replica's lock ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockWaitResult {
    /// The other replica's answer arrived.
    Filled,
    /// It did not arrive in time: this replica asked the IdP itself.
    GaveUp,
}

/// Why the local cache was emptied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushReason {
    /// Redis lost its data (its epoch changed), revocations with it.
    RedisReset,
    /// The stream was trimmed past the last revocation this replica saw.
    StreamTrimmed,
}

/// Kinds of Redis failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// No answer within `cluster.command_timeout` (or `connect_timeout`).
    Timeout,
    /// Refused, reset or not connected.
    Connection,
    /// Anything else Redis answered.
    Other,
}

impl L2Result {
    /// The `result` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            L2Result::Hit => "hit",
            L2Result::Negative => "negative",
            L2Result::Miss => "miss",
            L2Result::Revoked => "revoked",
            L2Result::Unreadable => "unreadable",
            L2Result::Error => "error",
        }
    }
}

impl LockWaitResult {
    /// The `result` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            LockWaitResult::Filled => "filled",
            LockWaitResult::GaveUp => "gave_up",
        }
    }
}

impl FlushReason {
    /// The `reason` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            FlushReason::RedisReset => "redis_reset",
            FlushReason::StreamTrimmed => "stream_trimmed",
        }
    }
}

impl ErrorKind {
    /// The `kind` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Timeout => "timeout",
            ErrorKind::Connection => "connection",
            ErrorKind::Other => "other",
        }
    }
}

/// Where events go (the admin metrics).
pub type Observer = Arc<dyn Fn(Event) + Send + Sync>;

/// What to revoke: one credential, or (IID) every token pair of a session id.
#[derive(Debug, Clone)]
pub enum Target {
    /// One credential (cookie pair or bearer).
    Credential(Credential),
    /// Every credential of an IID session id.
    SessionId(String),
}

/// Why a `/revoke` body was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TargetError {
    /// Not the JSON the endpoint takes.
    #[error("want {{\"credential\": \"...\", \"token\": \"...\"}} or {{\"sessionId\": \"...\"}}")]
    Malformed,
    /// `sessionId` on a provider whose credential has no session id.
    #[error("sessionId is only for idp.provider = \"iid\"")]
    NoSessionIds,
}

impl Target {
    /// Revokes this target in `cache`; returns how many live answers went.
    pub async fn revoke_in<E: Send + Sync + 'static>(&self, cache: &SessionCache<E>) -> usize {
        match self {
            Target::Credential(key) => usize::from(cache.revoke(key).await),
            Target::SessionId(id) => cache.revoke_where(|key| key.id() == id.as_str()).await,
        }
    }

    /// Reads a `/revoke` body: `{"credential": ..., "token": ...}` (the
    /// token cookie is IID's second part) or, when `session_ids`, `{"sessionId": ...}`.
    pub fn parse(body: &[u8], session_ids: bool) -> Result<Target, TargetError> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields, rename_all = "camelCase")]
        struct Body {
            credential: Option<String>,
            #[serde(default)]
            token: String,
            session_id: Option<String>,
        }
        let body: Body = serde_json::from_slice(body).map_err(|_| TargetError::Malformed)?;
        match (body.credential, body.session_id) {
            (Some(c), None) if !c.is_empty() => {
                Ok(Target::Credential(Credential::new(&c, &body.token)))
            }
            (None, Some(_)) if !session_ids => Err(TargetError::NoSessionIds),
            (None, Some(id)) if !id.is_empty() && body.token.is_empty() => {
                Ok(Target::SessionId(id))
            }
            _ => Err(TargetError::Malformed),
        }
    }
}

/// What the cluster layer needs to know about the gateway around it.
pub struct Settings {
    /// The local cache revocations are applied to.
    pub cache: SessionCache<IdpError>,
    /// `cache.max_ttl`: the longest a valid answer is shared.
    pub max_ttl: Duration,
    /// `cache.negative_ttl`: how long a negative answer is shared.
    pub negative_ttl: Duration,
    /// How long a cached answer can outlive its freshness (the longest
    /// route `stale_if_error`): revocation records must outlive that too.
    pub stale_retention: Duration,
    /// `idp.timeout`: the longest wait for another replica's IdP call.
    pub idp_timeout: Duration,
    /// `cache.max_entries`: bounds the tag index like the cache.
    pub max_entries: u64,
    /// The provider's credential starts with a session id (IID).
    pub session_ids: bool,
}

/// One revocation waiting for Redis.
#[derive(Debug, Clone)]
struct Pending {
    kind: &'static str,
    tag: Tag,
}

/// The shared-state layer of one replica.
pub struct Cluster {
    keys: Keys,
    client: redis::Client,
    /// Set once the first connection succeeds; it reconnects by itself after that.
    conn: RwLock<Option<ConnectionManager>>,
    cfg: ClusterConfig,
    settings: Settings,
    /// Tag -> credential of every session this replica resolved, so a
    /// revocation that arrives as a tag finds the local entry.
    index: moka::future::Cache<Tag, Credential>,
    /// Revocations not yet in Redis (bounded by `cluster.outage_buffer`).
    outbox: Mutex<VecDeque<Pending>>,
    wake_publisher: Notify,
    /// This replica in the stream, so it skips its own revocations.
    origin: String,
    observe: Observer,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("cfg", &self.cfg)
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// Builds the layer and starts its background tasks (connecting,
    /// publishing and receiving revocations); they end when it is dropped.
    pub fn start(
        cfg: &ClusterConfig,
        settings: Settings,
        observe: Observer,
    ) -> Result<Arc<Cluster>, redis::RedisError> {
        let client = redis::Client::open(cfg.redis_url.as_str())?;
        // Room for every live session the cache can hold, with a wide margin:
        // a revocation whose tag is not here is not applied on this replica.
        let index = moka::future::Cache::builder()
            .max_capacity(settings.max_entries.saturating_mul(4))
            .time_to_live(settings.max_ttl.max(settings.negative_ttl) + settings.stale_retention)
            .build();
        let cluster = Arc::new(Cluster {
            keys: Keys::new(&cfg.secret),
            client,
            conn: RwLock::new(None),
            cfg: cfg.clone(),
            settings,
            index,
            outbox: Mutex::new(VecDeque::new()),
            wake_publisher: Notify::new(),
            origin: revocations::random_id(),
            observe,
        });
        // Degraded until the first connection (milliseconds after start, or
        // later if Redis is down): until then this replica works alone.
        (cluster.observe)(Event::Degraded(true));
        tokio::spawn(revocations::publish(Arc::downgrade(&cluster)));
        tokio::spawn(revocations::receive(Arc::downgrade(&cluster)));
        Ok(cluster)
    }

    /// The shared connection, once there is one.
    fn conn(&self) -> Option<ConnectionManager> {
        self.conn
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Connects the shared connection if it is not yet; `false` while Redis is unreachable.
    async fn ensure_connected(&self) -> bool {
        if self.conn().is_some() {
            return true;
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(self.cfg.connect_timeout)
            .set_response_timeout(self.cfg.command_timeout)
            .set_number_of_retries(1)
            .set_max_delay(1000);
        let connecting = self.client.get_connection_manager_with_config(config);
        let connected = tokio::time::timeout(self.cfg.connect_timeout * 2, connecting).await;
        let Some(conn) = settle(&self.observe, connected) else {
            return false;
        };
        *self.conn.write().unwrap_or_else(PoisonError::into_inner) = Some(conn);
        true
    }

    /// Runs `cmd` within `command_timeout`; a failure is counted and is `None`.
    async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Option<T> {
        self.bounded(async |mut conn: ConnectionManager| cmd.query_async(&mut conn).await)
            .await
    }

    async fn query_pipe<T: redis::FromRedisValue>(&self, pipe: &redis::Pipeline) -> Option<T> {
        self.bounded(async |mut conn: ConnectionManager| pipe.query_async(&mut conn).await)
            .await
    }

    async fn bounded<T>(
        &self,
        run: impl AsyncFnOnce(ConnectionManager) -> redis::RedisResult<T>,
    ) -> Option<T> {
        let conn = self.conn()?;
        settle(
            &self.observe,
            tokio::time::timeout(self.cfg.command_timeout, run(conn)).await,
        )
    }

    /// The answer for `key` on a local miss: shared by another replica, or
    /// from `idp` (called at most once, by one replica of the fleet while
    /// Redis works) and then shared. `renewing` is set by a refresh-ahead:
    /// only a shared answer fresh for longer than that counts.
    pub async fn fetch<F>(
        &self,
        key: &Credential,
        renewing: Option<SystemTime>,
        idp: F,
    ) -> Result<Verdict, IdpError>
    where
        F: Future<Output = Result<Verdict, IdpError>>,
    {
        let tag = self.keys.credential(key);
        // Indexed before the lookup, so a revocation arriving while it runs
        // finds the entry (the cache then waits for this call, and buries it).
        self.index.insert(tag.clone(), key.clone()).await;
        let answer = self.fetch_shared(key, &tag, renewing, idp).await;
        // Only live sessions need finding later: garbage credentials must not
        // crowd real ones out of the index.
        if !matches!(answer, Ok(Verdict::Valid { .. })) {
            self.index.invalidate(&tag).await;
        }
        answer
    }

    async fn fetch_shared<F>(
        &self,
        key: &Credential,
        tag: &Tag,
        renewing: Option<SystemTime>,
        idp: F,
    ) -> Result<Verdict, IdpError>
    where
        F: Future<Output = Result<Verdict, IdpError>>,
    {
        let session = self
            .settings
            .session_ids
            .then(|| self.keys.session_id(key.id()));
        let mut owns_lock = false;
        match self.read(key, tag, session.as_ref(), renewing).await {
            Shared::Answer(verdict) => return Ok(verdict),
            Shared::Unreachable => {}
            Shared::Nothing => match self.lock(key, tag, session.as_ref(), renewing).await {
                Locked::Mine => owns_lock = true,
                Locked::Answer(verdict) => return Ok(verdict),
                Locked::Held => match self.wait_for(key, tag, session.as_ref(), renewing).await {
                    Waited::Answer(verdict) => return Ok(verdict),
                    Waited::LockFreed => owns_lock = true,
                    Waited::GaveUp => {}
                },
                // Redis stopped answering: no one to wait for.
                Locked::Unreachable => {}
            },
        }
        let answer = idp.await;
        self.share(tag, answer.as_ref().ok(), owns_lock);
        answer
    }

    /// One round trip: the sealed answer and the revocation records.
    async fn read(
        &self,
        key: &Credential,
        tag: &Tag,
        session: Option<&Tag>,
        renewing: Option<SystemTime>,
    ) -> Shared {
        let (shared, result) = match self.query(&read_command(tag, session)).await {
            Some(values) => self.interpret(key, tag, values, renewing),
            None => (Shared::Unreachable, L2Result::Error),
        };
        (self.observe)(Event::L2(result));
        shared
    }

    /// What the values of [`read_command`] say about the session.
    fn interpret(
        &self,
        key: &Credential,
        tag: &Tag,
        values: Vec<Option<Vec<u8>>>,
        renewing: Option<SystemTime>,
    ) -> (Shared, L2Result) {
        let mut values = values.into_iter();
        let entry = values.next().flatten();
        if values.any(|v| v.is_some()) {
            let revoked = Verdict::Invalid { reason: "revoked" };
            return (Shared::Answer(revoked), L2Result::Revoked);
        }
        let Some(sealed) = entry else {
            return (Shared::Nothing, L2Result::Miss);
        };
        let record = self
            .keys
            .open(&tag.entry(), &sealed)
            .and_then(|plain| serde_json::from_slice::<Record>(&plain).ok());
        let Some(record) = record else {
            tracing::warn!(
                session = %key.fingerprint(),
                "shared session entry does not open with this replica's cluster.secret (altered, forged, or another secret): asking the IdP"
            );
            return (Shared::Nothing, L2Result::Unreadable);
        };
        // A renewal wants an answer newer than the one it is renewing.
        if let (Some(until), Some(renewing)) = (record.until(), renewing) {
            if until <= renewing + Duration::from_secs(1) {
                return (Shared::Nothing, L2Result::Miss);
            }
        }
        match record.into_verdict() {
            Some(verdict) => {
                let result = match verdict {
                    Verdict::Valid { .. } => L2Result::Hit,
                    Verdict::Invalid { .. } => L2Result::Negative,
                };
                (Shared::Answer(verdict), result)
            }
            None => (Shared::Nothing, L2Result::Miss),
        }
    }

    /// Takes the session's short lock, so this replica asks the IdP for the
    /// fleet. The previous holder may have shared its answer between this
    /// replica's read and its lock: that answer is read back in the same
    /// round trip, and then the lock is given back at once.
    async fn lock(
        &self,
        key: &Credential,
        tag: &Tag,
        session: Option<&Tag>,
        renewing: Option<SystemTime>,
    ) -> Locked {
        // Held at most two IdP timeouts (a provider may make two calls), so a
        // replica that dies holding it delays the others, never blocks them.
        let hold = u64::try_from((self.settings.idp_timeout * 2).as_millis()).unwrap_or(u64::MAX);
        let mut pipe = redis::pipe();
        pipe.cmd("SET")
            .arg(tag.lock())
            .arg(&self.origin)
            .arg("NX")
            .arg("PX")
            .arg(hold.max(1));
        let (set, values): (Value, Vec<Option<Vec<u8>>>) = match self
            .query_pipe(pipe.add_command(read_command(tag, session)))
            .await
        {
            Some(replies) => replies,
            None => return Locked::Unreachable,
        };
        if !matches!(set, Value::Okay | Value::SimpleString(_)) {
            return Locked::Held;
        }
        match self.interpret(key, tag, values, renewing) {
            // Its miss was counted by the read before; only an answer counts now.
            (Shared::Answer(verdict), result) => {
                (self.observe)(Event::L2(result));
                self.share(tag, None, true);
                Locked::Answer(verdict)
            }
            _ => Locked::Mine,
        }
    }

    /// Waits for the replica holding the lock to share its answer, up to `idp.timeout`.
    async fn wait_for(
        &self,
        key: &Credential,
        tag: &Tag,
        session: Option<&Tag>,
        renewing: Option<SystemTime>,
    ) -> Waited {
        let deadline = Instant::now() + self.settings.idp_timeout;
        while Instant::now() < deadline {
            tokio::time::sleep(LOCK_POLL).await;
            match self.read(key, tag, session, renewing).await {
                Shared::Answer(verdict) => {
                    (self.observe)(Event::LockWait(LockWaitResult::Filled));
                    return Waited::Answer(verdict);
                }
                Shared::Unreachable => break,
                // The holder gave up (its IdP call failed) or its lock expired.
                Shared::Nothing => match self.lock(key, tag, session, renewing).await {
                    Locked::Mine => return Waited::LockFreed,
                    Locked::Answer(verdict) => {
                        (self.observe)(Event::LockWait(LockWaitResult::Filled));
                        return Waited::Answer(verdict);
                    }
                    Locked::Held => {}
                    Locked::Unreachable => break,
                },
            }
        }
        (self.observe)(Event::LockWait(LockWaitResult::GaveUp));
        Waited::GaveUp
    }

    /// Shares an IdP answer (sealed, with its lifetime) and frees the lock,
    /// in the background: the request that asked does not wait for Redis.
    fn share(self: &Cluster, tag: &Tag, answer: Option<&Verdict>, owns_lock: bool) {
        let mut pipe = redis::pipe();
        pipe.atomic();
        let mut any = false;
        if let Some(verdict) = answer {
            let ttl = match verdict {
                Verdict::Valid { expires_in, .. } => (*expires_in).min(self.settings.max_ttl),
                Verdict::Invalid { .. } => self.settings.negative_ttl,
            };
            let name = tag.entry();
            let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
            let sealed = serde_json::to_vec(&Record::of(verdict, ttl))
                .ok()
                .and_then(|plain| self.keys.seal(&name, &plain));
            if let (Some(sealed), true) = (sealed, ms > 0) {
                pipe.cmd("SET")
                    .arg(&name)
                    .arg(sealed)
                    .arg("PX")
                    .arg(ms)
                    .ignore();
                any = true;
            }
        }
        if owns_lock {
            pipe.cmd("DEL").arg(tag.lock()).ignore();
            any = true;
        }
        if !any {
            return;
        }
        let Some(conn) = self.conn() else {
            return;
        };
        let timeout = self.cfg.command_timeout;
        let observe = Arc::clone(&self.observe);
        tokio::spawn(async move {
            let mut conn = conn;
            let shared = tokio::time::timeout(timeout, pipe.query_async::<()>(&mut conn)).await;
            settle(&observe, shared);
        });
    }

    /// Sends a revocation already applied here to every other replica,
    /// through Redis (later if Redis is down: it waits in the outbox).
    pub fn publish(&self, target: &Target) {
        let pending = match target {
            Target::Credential(key) => Pending {
                kind: revocations::KIND_CREDENTIAL,
                tag: self.keys.credential(key),
            },
            Target::SessionId(id) => Pending {
                kind: revocations::KIND_SESSION,
                tag: self.keys.session_id(id),
            },
        };
        let mut outbox = self.outbox.lock().unwrap_or_else(PoisonError::into_inner);
        if outbox.len() >= self.cfg.outage_buffer {
            outbox.pop_front();
            (self.observe)(Event::RevocationDropped);
            tracing::warn!(
                outage_buffer = self.cfg.outage_buffer,
                "revocation buffer full while Redis is unreachable: the oldest pending revocation was dropped (it stays applied on this replica)"
            );
        }
        outbox.push_back(pending);
        drop(outbox);
        self.wake_publisher.notify_one();
    }

    /// How long revocation records live: longer than any cached copy anywhere.
    fn revocation_ttl(&self) -> Duration {
        self.settings.max_ttl.max(self.settings.negative_ttl)
            + self.settings.stale_retention
            + Duration::from_secs(60)
    }
}

/// The value of a Redis call bounded by a timeout; a failure is counted
/// (by kind) and is `None`.
fn settle<T>(
    observe: &Observer,
    result: Result<redis::RedisResult<T>, tokio::time::error::Elapsed>,
) -> Option<T> {
    let kind = match result {
        Ok(Ok(v)) => return Some(v),
        Err(_) => ErrorKind::Timeout,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "redis command failed");
            if e.is_timeout() {
                ErrorKind::Timeout
            } else if e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() {
                ErrorKind::Connection
            } else {
                ErrorKind::Other
            }
        }
    };
    observe(Event::RedisError(kind));
    None
}

/// `MGET` of the sealed answer and the revocation records (the credential's,
/// and with `session` the IID session id's).
fn read_command(tag: &Tag, session: Option<&Tag>) -> redis::Cmd {
    let mut cmd = redis::cmd("MGET");
    cmd.arg(tag.entry()).arg(tag.revoked());
    if let Some(s) = session {
        cmd.arg(s.revoked_session());
    }
    cmd
}

/// How taking the lock ended.
enum Locked {
    /// This replica asks the IdP.
    Mine,
    /// Another replica is asking.
    Held,
    /// Another replica's answer arrived just before.
    Answer(Verdict),
    /// Redis did not answer.
    Unreachable,
}

/// What Redis holds for a session, as far as this replica can tell.
enum Shared {
    /// A usable answer (valid, negative, or revoked).
    Answer(Verdict),
    /// Nothing usable: ask (or wait for) the IdP.
    Nothing,
    /// Redis did not answer: go straight to the IdP.
    Unreachable,
}

/// How waiting for another replica's IdP call ended.
enum Waited {
    Answer(Verdict),
    /// The lock came free and this replica took it.
    LockFreed,
    GaveUp,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revoke_bodies_name_a_credential_or_an_iid_session_id() {
        match Target::parse(br#"{"credential":"abc","token":"t"}"#, true) {
            Ok(Target::Credential(c)) => {
                assert_eq!((c.id(), c.token()), ("abc", "t"));
            }
            other => panic!("{other:?}"),
        }
        match Target::parse(br#"{"credential":"bearer-xyz"}"#, false) {
            Ok(Target::Credential(c)) => assert_eq!((c.id(), c.token()), ("bearer-xyz", "")),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            Target::parse(br#"{"sessionId":"s-1"}"#, true),
            Ok(Target::SessionId(id)) if id == "s-1"
        ));
        assert_eq!(
            Target::parse(br#"{"sessionId":"s-1"}"#, false).unwrap_err(),
            TargetError::NoSessionIds
        );
        for bad in [
            &b""[..],
            b"{}",
            b"[]",
            br#"{"credential":""}"#,
            br#"{"credential":"a","sessionId":"b"}"#,
            br#"{"sessionId":"b","token":"t"}"#,
            br#"{"credential":"a","extra":1}"#,
        ] {
            assert_eq!(
                Target::parse(bad, true).unwrap_err(),
                TargetError::Malformed,
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
