//! Reads from a PostgreSQL streaming replica (`DATABASE_READ_URL`), with read-your-writes.
//!
//! - **What may read the replica:** only work run inside [`scope`]: GraphQL queries over HTTP
//!   and REST `GET`s, of a caller who has not written within the window. Everything else
//!   (mutations, subscriptions, WebSocket operations, authentication, every transaction) reads
//!   the primary, so a forgotten path errs on the side of fresh data, never stale.
//! - **Which reads:** the catalog (product pages and counts, vendors, stock), order history and
//!   carts. Reads that fill the catalog cache go to the primary while the cache is on: a row a
//!   lagging replica still holds would otherwise outlive the invalidation of its change.
//! - **Read-your-writes:** a caller who sends a mutation is marked for
//!   `SECURECART_READ_YOUR_WRITES_MS` (default 5000); their reads go to the primary until then.
//!   The mark lives in this process: behind a load balancer, a caller's next request reaching
//!   another replica of SecureCart within the window can read the database replica. Make the
//!   window cover the replica's usual lag, or keep a client on one instance (sticky sessions).
//! - **Health:** a task asks the replica its lag every second; unreachable, or more than
//!   `SECURECART_REPLICA_MAX_LAG_MS` behind (default 2000), it is left out and every read goes
//!   to the primary until it is back (`/readyz` shows `database_read`, metrics
//!   `securecart_db_replica_lag_seconds`). A read the replica fails to serve in between (it was
//!   killed, is shutting down, no connection within 1 s) runs again on the primary; one that
//!   found it gone marks it down at once (`Routing::failed`,
//!   `securecart_db_replica_fallbacks_total`). The check has a connection of its own, so a
//!   busy read pool does not make a healthy replica look down.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

tokio::task_local! {
    static REPLICA_ALLOWED: bool;
}

/// Runs `work` with the replica allowed for its reads (when one is configured and healthy).
pub async fn scope<F: std::future::Future>(work: F) -> F::Output {
    REPLICA_ALLOWED.scope(true, work).await
}

/// Whether the current task runs inside [`scope`].
pub(crate) fn allowed() -> bool {
    REPLICA_ALLOWED.try_with(|a| *a).unwrap_or(false)
}

/// Spawns `work` on the runtime, inside [`scope`] when the spawning task is (the DataLoaders'
/// batches run in tasks of their own, which would otherwise lose the routing).
pub fn spawn<F>(work: F) -> tokio::task::JoinHandle<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    if allowed() { tokio::spawn(REPLICA_ALLOWED.scope(true, work)) } else { tokio::spawn(work) }
}

/// The most callers a process remembers as recent writers; beyond it, expired marks are
/// dropped first and, if none expired, the whole table (those callers read the replica early).
const MAX_WRITERS: usize = 100_000;

/// Who wrote recently, and whether the replica is usable.
pub struct Routing {
    window: Duration,
    max_lag: Duration,
    writers: Mutex<HashMap<String, Instant>>,
    /// The last `ReplicaHealth`, as its index (`Down` until the first check answers).
    health: AtomicU8,
}

impl Routing {
    /// Routing with a read-your-writes `window` and the most lag a usable replica may have.
    pub fn new(window: Duration, max_lag: Duration) -> Self {
        Self { window, max_lag, writers: Mutex::new(HashMap::new()), health: AtomicU8::new(ReplicaHealth::Down as u8) }
    }

    /// `subject` has just written: their reads go to the primary for the window.
    pub fn wrote(&self, subject: &str) {
        let now = Instant::now();
        let mut writers = self.writers.lock().unwrap_or_else(|e| e.into_inner());
        if writers.len() >= MAX_WRITERS && !writers.contains_key(subject) {
            writers.retain(|_, at| now.duration_since(*at) < self.window);
            if writers.len() >= MAX_WRITERS {
                writers.clear();
            }
        }
        writers.insert(subject.to_string(), now);
    }

    /// Whether `subject` wrote within the window.
    pub fn wrote_recently(&self, subject: &str) -> bool {
        let writers = self.writers.lock().unwrap_or_else(|e| e.into_inner());
        writers.get(subject).is_some_and(|at| at.elapsed() < self.window)
    }

    /// Whether reads may go to the replica now (reachable and not too far behind).
    pub fn usable(&self) -> bool {
        self.health() == ReplicaHealth::Ok
    }

    /// Whether a read that failed on the replica with `e` should run again on the primary.
    /// - The replica is gone (the connection broke, the server is shutting down): run again,
    ///   and leave it out until its next check finds it back.
    /// - No connection came free, or could be opened, within the pool's 1 s (`PoolTimedOut`):
    ///   run again, but leave the verdict to the health check. The pool cannot tell a busy
    ///   replica from an unreachable one (a connection being opened holds its slot while it
    ///   retries), and the check, on a connection of its own, can.
    /// - Hot standby cancelled the statement to replay (SQLSTATE 40001, a conflict with
    ///   recovery): run again; only this read moves.
    ///
    /// A statement that failed on its own merits (a timeout, bad input, a protocol error)
    /// would fail on the primary too, and is not run again.
    pub(crate) fn failed(&self, e: &sqlx::Error) -> bool {
        let code = match e {
            sqlx::Error::Database(db) => db.code(),
            _ => None,
        };
        // Connection failures (class 08, less `08P01` protocol_violation, a client's bug) and
        // the server going away (57P01 admin, 57P02 crash, 57P04 database dropped shutdowns).
        // sqlx retries 57P03 and 53300, met while connecting, until the acquire timeout.
        let lost = code.as_deref().is_some_and(|c| {
            matches!(c, "08000" | "08001" | "08003" | "08004" | "08006" | "57P01" | "57P02" | "57P04")
        });
        let reason = if matches!(e, sqlx::Error::PoolTimedOut) {
            "pool_timeout"
        } else if lost || crate::error::unreachable(e) {
            "unavailable"
        } else if code.as_deref() == Some("40001") {
            "recovery_conflict"
        } else {
            return false;
        };
        metrics::counter!(crate::telemetry::metrics::REPLICA_FALLBACKS, "reason" => reason).increment(1);
        if reason == "unavailable" {
            if self.usable() {
                tracing::warn!(error = %e, "a read found the read replica gone; it runs again on the primary");
            }
            self.observed(None);
        } else {
            tracing::debug!(error = %e, reason, "a read the replica could not serve runs again on the primary");
        }
        true
    }

    /// What the last health check found.
    pub fn health(&self) -> ReplicaHealth {
        match self.health.load(Ordering::Relaxed) {
            2 => ReplicaHealth::Ok,
            1 => ReplicaHealth::Lagging,
            _ => ReplicaHealth::Down,
        }
    }

    /// Records the replica's state after a health check: `lag` `None` when it did not answer.
    pub(crate) fn observed(&self, lag: Option<Duration>) -> ReplicaHealth {
        let health = match lag {
            None => ReplicaHealth::Down,
            Some(lag) if lag > self.max_lag => ReplicaHealth::Lagging,
            Some(_) => ReplicaHealth::Ok,
        };
        if self.health.swap(health as u8, Ordering::Relaxed) != health as u8 {
            match health {
                ReplicaHealth::Ok => tracing::info!("the read replica is back; catalog reads use it again"),
                ReplicaHealth::Lagging => {
                    tracing::warn!(?lag, "the read replica lags too far behind; reads go to the primary")
                }
                ReplicaHealth::Down => tracing::warn!("the read replica does not answer; reads go to the primary"),
            }
        }
        health
    }
}

/// The replica as the last health check found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicaHealth {
    /// Not answering.
    Down = 0,
    /// Answering, but further behind than allowed.
    Lagging = 1,
    /// Answering, within the allowed lag.
    Ok = 2,
}

impl ReplicaHealth {
    /// The name `/readyz` shows.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Lagging => "lagging",
            Self::Down => "down",
        }
    }
}

/// How far the replica's replay is behind, in seconds: infinite when it is not streaming from
/// its primary (a broken stream would otherwise look current, its replay caught up with what it
/// received), zero when it has replayed all it received, else the age of the last transaction
/// it replayed (which overstates the lag when the primary is idle, so an idle replica is never
/// reported behind). A server that is not in recovery (a primary named as the replica) is 0.
pub(crate) const LAG: &str = "SELECT CASE \
     WHEN NOT pg_is_in_recovery() THEN 0::float8 \
     WHEN NOT EXISTS (SELECT 1 FROM pg_stat_wal_receiver WHERE status = 'streaming') THEN 'Infinity'::float8 \
     WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0::float8 \
     ELSE COALESCE(EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()), 0)::float8 END";

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_scope_reaches_spawned_tasks_and_nothing_else() {
        assert!(!allowed());
        assert!(scope(async { allowed() }).await);
        assert!(scope(async { spawn(async { allowed() }).await.unwrap() }).await);
        assert!(!spawn(async { allowed() }).await.unwrap());
    }

    #[test]
    fn a_writer_reads_the_primary_for_the_window_only() {
        let routing = Routing::new(Duration::from_millis(50), Duration::from_secs(1));
        routing.wrote("alice");
        assert!(routing.wrote_recently("alice"));
        assert!(!routing.wrote_recently("bob"));
        std::thread::sleep(Duration::from_millis(60));
        assert!(!routing.wrote_recently("alice"));
        assert_eq!(routing.observed(Some(Duration::from_secs(2))), ReplicaHealth::Lagging);
        assert!(!routing.usable());
        assert_eq!(routing.observed(Some(Duration::ZERO)), ReplicaHealth::Ok);
        assert!(routing.usable());
        assert_eq!(routing.observed(None), ReplicaHealth::Down);
        assert!(!routing.usable());
    }

    #[test]
    fn a_read_the_replica_could_not_serve_moves_to_the_primary_and_leaves_it_out() {
        let routing = Routing::new(Duration::from_secs(5), Duration::from_secs(1));
        routing.observed(Some(Duration::ZERO));
        // A statement's own failure would fail on the primary too: not run again.
        assert!(!routing.failed(&sqlx::Error::RowNotFound));
        assert!(routing.usable());
        // No connection within the pool's timeout: run again; the health check decides.
        assert!(routing.failed(&sqlx::Error::PoolTimedOut));
        assert!(routing.usable());
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert!(routing.failed(&sqlx::Error::Io(reset)));
        assert_eq!(routing.health(), ReplicaHealth::Down);
    }
}
