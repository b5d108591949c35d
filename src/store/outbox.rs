//! The event outbox: events written in the transaction of the change they report, handed to the
//! bus only after that transaction commits, and read back by every replica's sweep (see
//! `bus::relay`) so that an event Redis did not carry is still delivered.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use chrono::{DateTime, Utc};

use super::{Store, on_pool};
use crate::domain::event::{Event, Recorded};

/// Takes the entity's next version (and holds its row until commit on PostgreSQL, so versions of
/// one entity follow commit order).
pub(crate) const NEXT_VERSION: &str = "INSERT INTO entity_versions (entity, version) VALUES ($1, 1) \
     ON CONFLICT (entity) DO UPDATE SET version = entity_versions.version + 1 RETURNING version";
pub(crate) const INSERT_EVENT: &str =
    "INSERT INTO events (entity, version, payload, created_at) VALUES ($1, $2, $3, $4) RETURNING id";

/// Writes `$events` (an iterator of `Event`) to the outbox inside the open transaction `$tx`,
/// each with its entity's next version; evaluates to `sqlx::Result<Vec<Recorded>>`. Hand the
/// result to `Store::committed` once the transaction has committed, never before.
macro_rules! record_events {
    ($tx:expr, $events:expr, $now:expr) => {
        async {
            let mut recorded = Vec::new();
            for event in $events {
                let event: $crate::domain::event::Event = event;
                let entity = event.entity();
                let version: i64 =
                    sqlx::query_scalar($crate::store::outbox::NEXT_VERSION).bind(&entity).fetch_one(&mut *$tx).await?;
                let payload = serde_json::to_string(&event).expect("an event always serializes");
                let seq: i64 = sqlx::query_scalar($crate::store::outbox::INSERT_EVENT)
                    .bind(&entity)
                    .bind(version)
                    .bind(payload)
                    .bind($now)
                    .fetch_one(&mut *$tx)
                    .await?;
                recorded.push($crate::domain::event::Recorded { seq, version, event });
            }
            Ok::<_, sqlx::Error>(recorded)
        }
        .await
    };
}
pub(crate) use record_events;

/// A page of the outbox.
#[derive(Debug, Default)]
pub struct OutboxPage {
    /// The events read.
    pub events: Vec<Recorded>,
    /// Ids of rows this build cannot read (written by a newer release): never delivered here.
    pub unreadable: Vec<i64>,
    /// Rows read (events and unreadable).
    pub rows: usize,
    /// The last row's id.
    pub last: Option<i64>,
}

/// Where a store hands the events of its commits: the bus, which delivers them at once (no
/// waiting: a local broadcast and a queue for Redis).
pub trait CommitSink: Send + Sync {
    /// Events of a transaction that has just committed, in order.
    fn committed(&self, recorded: Arc<Recorded>);
}

/// The sink a store was given (none: events reach running servers through their sweeps).
pub(crate) type Sink = Arc<OnceLock<Arc<dyn CommitSink>>>;

impl Store {
    /// Hands events of a transaction that has just committed to the bus.
    pub(crate) fn committed(&self, recorded: Vec<Recorded>) {
        if let Some(sink) = self.events.get() {
            for r in recorded {
                sink.committed(Arc::new(r));
            }
        }
    }

    /// Gives this store (and its clones) the bus its commits go to; once.
    pub fn on_commit(&self, sink: Arc<dyn CommitSink>) {
        if self.events.set(sink).is_err() {
            tracing::warn!("this store already hands its events to a bus; ignoring another");
        }
    }

    /// Outbox rows after `seq`, oldest first, at most `limit`.
    pub async fn events_after(&self, seq: i64, limit: i64) -> sqlx::Result<OutboxPage> {
        const SQL: &str = "SELECT id, version, payload FROM events WHERE id > $1 ORDER BY id LIMIT $2";
        let rows: Vec<(i64, i64, String)> =
            on_pool!(self, pool => sqlx::query_as(SQL).bind(seq).bind(limit).fetch_all(pool).await)?;
        let mut page = OutboxPage { rows: rows.len(), last: rows.last().map(|r| r.0), ..OutboxPage::default() };
        for (seq, version, payload) in rows {
            match serde_json::from_str::<Event>(&payload) {
                Ok(event) => page.events.push(Recorded { seq, version, event }),
                Err(e) => {
                    tracing::warn!(seq, error = %e, "skipping an outbox event this build cannot read");
                    page.unreadable.push(seq);
                }
            }
        }
        Ok(page)
    }

    /// Where a new process starts reading the outbox: before every event written in the last
    /// `recent` (on PostgreSQL an id is taken before its transaction commits, so ids just below
    /// the newest may still be committing), else after the newest.
    pub async fn event_start(&self, recent: std::time::Duration) -> sqlx::Result<i64> {
        let since = Utc::now() - chrono::Duration::from_std(recent).unwrap_or(chrono::Duration::zero());
        const SQL: &str = "SELECT COALESCE((SELECT MIN(id) - 1 FROM events WHERE created_at > $1), \
                           (SELECT MAX(id) FROM events), 0)";
        on_pool!(self, pool => sqlx::query_scalar(SQL).bind(since).fetch_one(pool).await)
    }

    /// Deletes outbox events older than `before`; how many.
    pub async fn prune_events(&self, before: DateTime<Utc>) -> sqlx::Result<u64> {
        on_pool!(self, pool => sqlx::query("DELETE FROM events WHERE created_at < $1")
            .bind(before).execute(pool).await.map(|r| r.rows_affected()))
    }

    /// The current versions of `entities` (absent: never changed).
    pub async fn entity_versions(&self, entities: &[String]) -> sqlx::Result<HashMap<String, i64>> {
        let mut versions = HashMap::new();
        // A subscriber's current state is a handful of entities: one short read each.
        for entity in entities {
            let version: Option<i64> = on_pool!(self, pool => sqlx::query_scalar(
                "SELECT version FROM entity_versions WHERE entity = $1").bind(entity).fetch_optional(pool).await)?;
            if let Some(v) = version {
                versions.insert(entity.clone(), v);
            }
        }
        Ok(versions)
    }
}
