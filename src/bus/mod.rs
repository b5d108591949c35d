//! The event bus: inventory, order and cart events, published after a transaction commits and
//! fanned out to this process's subscribers (and, with Redis, to every replica's).
//!
//! Events are durable: each is written to the outbox in the transaction of its change (see
//! `store::outbox`), and the store hands it to the bus only once that commits. The bus delivers
//! it at once to this process's subscribers of its topics (`topics`: a subscriber is woken only
//! for events it may want) and to the listeners of every event (a broadcast channel: the
//! cache), and publishes it on Redis for the other replicas, whose single subscription per
//! process feeds their router and channel (a WebSocket never opens a Redis connection of its
//! own). Pub/sub is at most once, so every process also sweeps the
//! outbox (`SECURECART_EVENT_SWEEP_MS`) for events that did not reach it: a Redis outage, a
//! replica that crashed between commit and publish. `relay` delivers each event once, whichever
//! path brings it first, and never after a newer version of its entity.

use std::sync::Arc;

pub mod mailbox;
pub mod redis;
pub mod relay;
pub mod topics;

pub use crate::domain::event::{Event, Recorded, Topic};
use tokio::sync::broadcast;

/// A store's commits reach the bus synchronously: delivering is a push into the mailbox of each
/// subscriber of the event's topics (short locks, no await), a broadcast send and a queue push.
impl crate::store::outbox::CommitSink for EventBus {
    fn committed(&self, recorded: Arc<Recorded>) {
        self.send(recorded);
    }
}

/// Events a subscriber can fall behind by before it loses the oldest ones.
pub const SUBSCRIBER_BUFFER: usize = 1024;

/// How the bus is doing, for `/readyz`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BusHealth {
    /// In-process only: always fine.
    InProcess,
    /// Redis connected and subscribed.
    Connected,
    /// Redis unreachable: local events still flow, other replicas' do not.
    Degraded,
}

impl BusHealth {
    /// The name `/readyz` shows.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InProcess => "in-process",
            Self::Connected => "ok",
            Self::Degraded => "degraded",
        }
    }
}

/// Publishes events and hands out subscriptions.
#[derive(Clone)]
pub struct EventBus {
    local: broadcast::Sender<Arc<Recorded>>,
    router: Arc<topics::Router>,
    delivery: Arc<relay::Delivery>,
    redis: Option<redis::RedisLink>,
    /// Subscribers that listen through another's subscription, less those it stands for
    /// (`graphql::shared`; see `shared_listeners`).
    shared: Arc<std::sync::atomic::AtomicIsize>,
}

impl Default for EventBus {
    fn default() -> Self {
        Self::in_process()
    }
}

impl EventBus {
    /// A bus inside this process only.
    pub fn in_process() -> Self {
        let (local, _) = broadcast::channel(SUBSCRIBER_BUFFER);
        let router = Arc::new(topics::Router::default());
        let delivery = relay::Delivery::new(local.clone(), router.clone());
        Self { local, router, delivery, redis: None, shared: Arc::default() }
    }

    /// A bus fanned out through Redis pub/sub on `channel` (sharded channels on a cluster).
    pub fn redis(target: &crate::redis_client::RedisTarget, channel: &str) -> anyhow::Result<Self> {
        let (local, _) = broadcast::channel(SUBSCRIBER_BUFFER);
        let router = Arc::new(topics::Router::default());
        let delivery = relay::Delivery::new(local.clone(), router.clone());
        let redis = redis::RedisLink::start(target, channel, delivery.clone())?;
        Ok(Self { local, router, delivery, redis: Some(redis), shared: Arc::default() })
    }

    /// Publishes an event that is not in the outbox (product details, which only invalidate
    /// caches that expire anyway; tests). Never waits on Redis.
    pub async fn publish(&self, event: Event) {
        self.send(Arc::new(Recorded::unrecorded(event)));
    }

    /// Delivers `r` here at once and queues it for the other replicas.
    fn send(&self, r: Arc<Recorded>) {
        metrics::counter!(crate::telemetry::metrics::EVENTS_PUBLISHED, "type" => r.event.kind()).increment(1);
        self.delivery.deliver(r.clone());
        if let Some(redis) = &self.redis {
            redis.publish(r);
        }
    }

    /// Delivers events read back from the outbox (the sweep); how many were new here. `skip`:
    /// ids of rows that cannot be read here.
    pub fn swept(&self, events: Vec<Recorded>, skip: &[i64]) -> usize {
        self.delivery.skip(skip);
        let delivered = events.into_iter().map(Arc::new).filter(|r| self.delivery.deliver(r.clone())).count();
        if delivered > 0 {
            metrics::counter!(crate::telemetry::metrics::EVENTS_RECOVERED).increment(delivered as u64);
        }
        delivered
    }

    /// Once per sweep tick, whether the outbox could be read or not: moves the cursor on and
    /// releases events held too long for a gap.
    pub fn tick(&self) {
        self.delivery.advance();
    }

    /// Resolves when an event waits for an earlier version of its entity: the sweep reads the
    /// outbox at once instead of at its next tick.
    pub async fn gap(&self) {
        self.delivery.gap().await
    }

    /// The outbox id the next sweep reads after.
    pub fn cursor(&self) -> i64 {
        self.delivery.cursor()
    }

    /// Delivers outbox events committed after `seq` from now on (where a new process starts).
    pub fn start_after(&self, seq: i64) {
        self.delivery.start_after(seq);
    }

    /// How the bus is doing.
    pub fn health(&self) -> BusHealth {
        match &self.redis {
            None => BusHealth::InProcess,
            Some(r) if r.healthy() => BusHealth::Connected,
            Some(_) => BusHealth::Degraded,
        }
    }

    /// How many listen to this process's events (subscriptions, the cache's invalidation):
    /// tests wait on it instead of sleeping.
    pub fn receivers(&self) -> usize {
        let own = (self.local.receiver_count() + self.router.subscriptions()) as isize;
        (own + self.shared.load(std::sync::atomic::Ordering::SeqCst)).max(0) as usize
    }

    /// Counts subscribers that share one bus subscription (`graphql::shared`'s groups): the bus
    /// counts an execution's own subscription, which stands for one of its group's members, so
    /// +1 for each member beyond that one, and the reverse when they go; `receivers` counts
    /// every subscriber once.
    pub fn shared_listeners(&self, delta: isize) {
        self.shared.fetch_add(delta, std::sync::atomic::Ordering::SeqCst);
    }

    /// A receiver of every event of this process (for listeners that want them all: the
    /// cache's invalidation).
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Recorded>> {
        self.local.subscribe()
    }

    /// A subscriber's receiver of the events on `topics` only (see `topics`).
    pub fn subscribe_to(&self, topics: Vec<Topic>) -> topics::Subscription {
        self.router.subscribe(topics)
    }

    /// Events put in a subscriber's mailbox so far (each wakes one subscriber).
    pub fn routed(&self) -> u64 {
        self.router.routed()
    }
}
