//! Redis pub/sub fan-out: one reconnecting connection per process (redis `ConnectionManager`
//! with RESP3 push messages and automatic resubscription), one subscription to one channel.
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
use redis::{PushInfo, PushKind, Value};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::relay::Delivery;
use super::{Event, Recorded};

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
    pub fn start(url: &str, channel: &str, delivery: Arc<Delivery>) -> anyhow::Result<Self> {
        let client = redis::Client::open(resp3(url))?;
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
                    let envelope =
                        Envelope { origin: origin.clone(), event: r.event.clone(), seq: r.seq, version: r.version };
                    let Ok(payload) = serde_json::to_string(&envelope) else { continue };
                    let sent: redis::RedisResult<i64> =
                        redis::cmd("PUBLISH").arg(&channel).arg(payload).query_async(&mut manager).await;
                    if let Err(e) = sent {
                        healthy.store(false, Ordering::Relaxed);
                        tracing::warn!(error = %e, "event not published to Redis (other replicas read it from the outbox)");
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
                        PushKind::Message => {
                            let Some(Value::BulkString(bytes)) = push.data.get(1) else { continue };
                            match serde_json::from_slice::<Envelope>(bytes) {
                                Ok(envelope) if envelope.origin != origin => {
                                    let Envelope { event, seq, version, .. } = envelope;
                                    delivery.deliver(Arc::new(Recorded { seq, version, event }));
                                }
                                Ok(_) => {}
                                Err(e) => tracing::warn!(error = %e, "ignoring a malformed event from Redis"),
                            }
                        }
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
                    let pong: redis::RedisResult<String> = redis::cmd("PING").query_async(&mut manager).await;
                    match pong {
                        Ok(_) => {
                            if !healthy.swap(true, Ordering::Relaxed) {
                                tracing::info!("Redis connection is back");
                            }
                        }
                        Err(_) => healthy.store(false, Ordering::Relaxed),
                    }
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

#[cfg(test)]
mod tests {
    #[test]
    fn urls_ask_for_resp3() {
        assert_eq!(super::resp3("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379/?protocol=resp3");
        assert_eq!(super::resp3("redis://h:1/2"), "redis://h:1/2/?protocol=resp3");
        assert_eq!(super::resp3("redis://h:1/?db=2"), "redis://h:1/?db=2&protocol=resp3");
        assert_eq!(super::resp3("redis://h/?protocol=resp3"), "redis://h/?protocol=resp3");
    }
}
