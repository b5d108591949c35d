//! Redis pub/sub fan-out: one reconnecting connection per process (redis `ConnectionManager`
//! with RESP3 push messages and automatic resubscription), one subscription to one channel.
//! On a Redis Cluster (`SECURECART_REDIS_CLUSTER`) the same, with sharded pub/sub: one channel
//! per event kind (`{channel}:{kind}` with the kind as hash tag), `SPUBLISH` to the shard that
//! owns it and one `SSUBSCRIBE` per process to all of them (the cluster client keeps one
//! connection per shard and resubscribes after a failover).
//!
//! - Publishing never waits on Redis: events go to a bounded queue that a task drains with
//!   `PUBLISH`; when Redis is down they are not sent (the other replicas' outbox sweeps deliver
//!   them), and mutations carry on.
//! - The process delivers its own events locally at once, so its subscribers see them even
//!   during an outage; events that come back from Redis with this process's origin are skipped.
//! - A health task PINGs every second. A failed PING makes the manager reconnect; after the
//!   reconnect the subscription is restored by the manager and events flow again with no
//!   client action. Meanwhile `/readyz` reports the bus as degraded.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ProtocolVersion, PushInfo, PushKind, Value};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::relay::Delivery;
use super::{Event, Recorded};
use crate::redis_client::{LazyCluster, RedisTarget, Timeouts, cluster_client};

/// The sharded channel of one event kind: the kind is the hash tag, so each kind's channel lives
/// in its own slot (which shard owns it depends on the cluster's slot layout).
fn shard_channel(channel: &str, kind: &str) -> String {
    format!("{channel}:{{{kind}}}")
}

/// The wire form. `seq` and `version` default to 0 so replicas of the previous release, which
/// sent only `origin` and `event`, still interoperate during a rolling deploy.
#[derive(Serialize, Deserialize)]
struct Envelope {
    origin: String,
    event: Event,
    #[serde(default)]
    seq: i64,
    #[serde(default)]
    version: i64,
}

/// The Redis side of the bus.
#[derive(Clone)]
pub struct RedisLink {
    outbox: mpsc::Sender<Arc<Recorded>>,
    healthy: Arc<AtomicBool>,
}

/// Makes sure the URL asks for RESP3 (push messages need it).
fn resp3(url: &str) -> String {
    if url.contains("protocol=") {
        url.to_string()
    } else if url.contains('?') {
        format!("{url}&protocol=resp3")
    } else {
        format!("{url}/?protocol=resp3").replace("//?", "/?")
    }
}

impl RedisLink {
    /// Connects lazily (the server starts even while Redis is down) and starts the tasks that
    /// publish, subscribe and watch the connection. `delivery` receives events from other processes.
    pub fn start(target: &RedisTarget, channel: &str, delivery: Arc<Delivery>) -> anyhow::Result<Self> {
        if target.cluster {
            return Self::start_cluster(target, channel, delivery);
        }
        let url = target.nodes().into_iter().next().unwrap_or_default();
        let client = redis::Client::open(resp3(&url))?;
        let (push_tx, mut push_rx) = mpsc::unbounded_channel::<PushInfo>();
        let config = ConnectionManagerConfig::new()
            .set_push_sender(push_tx)
            .set_automatic_resubscription()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(Duration::from_secs(1)))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let manager = ConnectionManager::new_lazy_with_config(client, config)?;
        let origin = uuid::Uuid::new_v4().to_string();
        let healthy = Arc::new(AtomicBool::new(false));
        let (outbox, mut queue) = mpsc::channel::<Arc<Recorded>>(10_000);
        let channel = channel.to_string();

        // Publisher: drains the queue; a failure drops the event rather than blocking writers.
        {
            let (mut manager, origin, channel, healthy) =
                (manager.clone(), origin.clone(), channel.clone(), healthy.clone());
            tokio::spawn(async move {
                while let Some(r) = queue.recv().await {
                    let Some(payload) = wire(&origin, &r) else { continue };
                    let sent: redis::RedisResult<i64> =
                        redis::cmd("PUBLISH").arg(&channel).arg(payload).query_async(&mut manager).await;
                    if let Err(e) = sent {
                        publish_failed(&healthy, &e);
                    }
                }
            });
        }

        // Subscriber: turns push messages from the one subscription into local events.
        {
            let (origin, healthy) = (origin.clone(), healthy.clone());
            tokio::spawn(async move {
                while let Some(push) = push_rx.recv().await {
                    match push.kind {
                        PushKind::Message => received(&push, &origin, &delivery),
                        PushKind::Subscribe => healthy.store(true, Ordering::Relaxed),
                        PushKind::Disconnection => {
                            healthy.store(false, Ordering::Relaxed);
                            tracing::warn!("lost the Redis connection; reconnecting");
                        }
                        _ => {}
                    }
                }
            });
        }

        // Health: subscribe (again) until it works, then PING every second; a failed PING
        // makes the manager reconnect, which resubscribes.
        {
            let (mut manager, healthy) = (manager, healthy.clone());
            tokio::spawn(async move {
                let mut subscribed = false;
                let mut ticker = tokio::time::interval(Duration::from_millis(1000));
                ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    ticker.tick().await;
                    if !subscribed {
                        match manager.subscribe(&channel).await {
                            Ok(()) => {
                                subscribed = true;
                                healthy.store(true, Ordering::Relaxed);
                                tracing::info!(channel = %channel, "subscribed to Redis events");
                            }
                            Err(e) => tracing::debug!(error = %e, "Redis subscribe failed; retrying"),
                        }
                        continue;
                    }
                    ping(&mut manager, &healthy).await;
                }
            });
        }
        Ok(Self { outbox, healthy })
    }

    /// `start` on a Redis Cluster: sharded pub/sub, one channel per event kind.
    fn start_cluster(target: &RedisTarget, channel: &str, delivery: Arc<Delivery>) -> anyhow::Result<Self> {
        let (push_tx, mut push_rx) = mpsc::unbounded_channel::<PushInfo>();
        let timeouts = Timeouts { connect: Duration::from_secs(1), response: Duration::from_secs(1) };
        let client = cluster_client(target, timeouts, |b| b.use_protocol(ProtocolVersion::RESP3).push_sender(push_tx))?;
        let cluster = Arc::new(LazyCluster::new(client));
        let origin = uuid::Uuid::new_v4().to_string();
        let healthy = Arc::new(AtomicBool::new(false));
        let (outbox, mut queue) = mpsc::channel::<Arc<Recorded>>(10_000);
        let channels: Vec<String> = Event::KINDS.iter().map(|kind| shard_channel(channel, kind)).collect();
        // Channels still to (re)subscribe: all at first, and any a slot move unsubscribed.
        let pending = Arc::new(std::sync::Mutex::new(channels));

        // Publisher: `SPUBLISH` to the event kind's channel, on the shard that owns it.
        {
            let (cluster, origin, channel, healthy) =
                (cluster.clone(), origin.clone(), channel.to_string(), healthy.clone());
            tokio::spawn(async move {
                while let Some(r) = queue.recv().await {
                    let Some(payload) = wire(&origin, &r) else { continue };
                    let target = shard_channel(&channel, r.event.kind());
                    let sent: redis::RedisResult<i64> = async {
                        let mut connection = cluster.connection().await?;
                        redis::cmd("SPUBLISH").arg(&target).arg(payload).query_async(&mut connection).await
                    }
                    .await;
                    if let Err(e) = sent {
                        publish_failed(&healthy, &e);
                    }
                }
            });
        }

        // Subscriber: sharded messages become local events. A slot that moves to another shard
        // (resharding, a failover) ends its channel's subscription with `sunsubscribe`, which the
        // client takes as final: the channel goes back on the list to subscribe again.
        {
            let (origin, healthy, pending) = (origin.clone(), healthy.clone(), pending.clone());
            tokio::spawn(async move {
                while let Some(push) = push_rx.recv().await {
                    match push.kind {
                        PushKind::SMessage => received(&push, &origin, &delivery),
                        PushKind::SUnsubscribe => {
                            if let Some(Value::BulkString(name)) = push.data.first() {
                                let name = String::from_utf8_lossy(name).to_string();
                                let mut pending = pending.lock().unwrap_or_else(|e| e.into_inner());
                                if !pending.contains(&name) {
                                    tracing::warn!(channel = %name, "a sharded channel was unsubscribed (slot moved); subscribing again");
                                    pending.push(name);
                                }
                                healthy.store(false, Ordering::Relaxed);
                            }
                        }
                        PushKind::Disconnection => {
                            healthy.store(false, Ordering::Relaxed);
                            tracing::warn!("lost a Redis Cluster connection; reconnecting");
                        }
                        _ => {}
                    }
                }
            });
        }

        // Health: subscribe until it works (the client resubscribes by itself after that), then
        // PING every second.
        {
            let healthy = healthy.clone();
            tokio::spawn(async move {
                // One `SSUBSCRIBE` per channel: the channels live in different slots.
                let mut ticker = tokio::time::interval(Duration::from_millis(1000));
                ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    ticker.tick().await;
                    let mut connection = match cluster.connection().await {
                        Ok(c) => c,
                        Err(e) => {
                            healthy.store(false, Ordering::Relaxed);
                            tracing::debug!(error = %e, "Redis Cluster unreachable; retrying");
                            continue;
                        }
                    };
                    let next = pending.lock().unwrap_or_else(|e| e.into_inner()).clone();
                    if !next.is_empty() {
                        let mut all = true;
                        for channel in next {
                            match connection.ssubscribe(&channel).await {
                                Ok(()) => {
                                    tracing::info!(channel = %channel, "subscribed to Redis Cluster events (sharded)");
                                    pending.lock().unwrap_or_else(|e| e.into_inner()).retain(|c| *c != channel);
                                }
                                Err(e) => {
                                    tracing::debug!(error = %e, "Redis Cluster subscribe failed; retrying");
                                    all = false;
                                    break;
                                }
                            }
                        }
                        healthy.store(all, Ordering::Relaxed);
                        continue;
                    }
                    ping(&mut connection, &healthy).await;
                }
            });
        }
        Ok(Self { outbox, healthy })
    }

    /// Queues an event for the other processes.
    pub fn publish(&self, event: Arc<Recorded>) {
        if self.outbox.try_send(event).is_err() {
            tracing::warn!("the Redis publish queue is full; other replicas read this event from the outbox");
        }
    }

    /// Whether the connection (and the subscription) is up.
    pub fn healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }
}

/// The wire form of an event published by `origin`.
fn wire(origin: &str, r: &Recorded) -> Option<String> {
    let envelope = Envelope { origin: origin.to_string(), event: r.event.clone(), seq: r.seq, version: r.version };
    serde_json::to_string(&envelope).ok()
}

/// A publish failed: the bus is degraded; the other replicas read the event from the outbox.
fn publish_failed(healthy: &AtomicBool, e: &redis::RedisError) {
    healthy.store(false, Ordering::Relaxed);
    tracing::warn!(error = %e, "event not published to Redis (other replicas read it from the outbox)");
}

/// The health check once subscribed: a PING, whose answer says whether the bus is connected.
async fn ping(connection: &mut impl redis::aio::ConnectionLike, healthy: &AtomicBool) {
    let pong: redis::RedisResult<String> = redis::cmd("PING").query_async(connection).await;
    match pong {
        Ok(_) => {
            if !healthy.swap(true, Ordering::Relaxed) {
                tracing::info!("Redis connection is back");
            }
        }
        Err(_) => healthy.store(false, Ordering::Relaxed),
    }
}

/// Delivers an event another process published (`data`: channel, payload); our own are skipped.
fn received(push: &PushInfo, origin: &str, delivery: &Delivery) {
    let Some(Value::BulkString(bytes)) = push.data.get(1) else { return };
    match serde_json::from_slice::<Envelope>(bytes) {
        Ok(envelope) if envelope.origin != origin => {
            let Envelope { event, seq, version, .. } = envelope;
            delivery.deliver(Arc::new(Recorded { seq, version, event }));
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "ignoring a malformed event from Redis"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn each_kind_has_its_own_hash_tag() {
        assert_eq!(super::shard_channel("securecart:events", "cart"), "securecart:events:{cart}");
    }

    #[test]
    fn urls_ask_for_resp3() {
        assert_eq!(super::resp3("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379/?protocol=resp3");
        assert_eq!(super::resp3("redis://h:1/2"), "redis://h:1/2/?protocol=resp3");
        assert_eq!(super::resp3("redis://h:1/?db=2"), "redis://h:1/?db=2&protocol=resp3");
        assert_eq!(super::resp3("redis://h/?protocol=resp3"), "redis://h/?protocol=resp3");
    }
}
