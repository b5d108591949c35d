//! One way to reach Redis for the budgets, persisted queries and event bus, whether it is one
//! server or a Redis Cluster (`SECURECART_REDIS_CLUSTER`).
//!
//! - **One server:** a reconnecting `ConnectionManager`.
//! - **A cluster:** `REDIS_URL` lists one or more nodes, comma-separated (any one is enough: the
//!   client learns the slots from it). Commands are routed by key; a node that moves or fails
//!   over is followed. Keys that one script touches together carry a hash tag (`{...}`) so they
//!   live in one slot (see `persisted`); the budget script touches one key. The bus uses sharded
//!   pub/sub (`SPUBLISH`/`SSUBSCRIBE`), one channel per event kind, so each kind's traffic stays
//!   on the shard that owns its channel instead of being broadcast to every node.
//!
//! Both connect lazily: the server starts while Redis is down and degrades as documented.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};
use tokio::sync::OnceCell;

/// Where Redis is and how to talk to it.
#[derive(Debug, Clone)]
pub struct RedisTarget {
    /// One URL, or comma-separated node URLs of a cluster.
    pub url: String,
    /// A Redis Cluster.
    pub cluster: bool,
}

impl RedisTarget {
    /// The node URLs (one unless a cluster lists several).
    pub fn nodes(&self) -> Vec<String> {
        self.url.split(',').map(str::trim).filter(|u| !u.is_empty()).map(String::from).collect()
    }
}

/// Timeouts of one connection.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// Connecting.
    pub connect: Duration,
    /// Waiting for an answer.
    pub response: Duration,
}

/// A connection to one server or a cluster; cheap to clone (clones share the connection).
#[derive(Clone)]
pub enum RedisConn {
    /// One server.
    Single(ConnectionManager),
    /// A Redis Cluster, connected on first use.
    Cluster(Arc<LazyCluster>),
}

/// A cluster client whose connection is made on first use (and retried on the next use when it
/// could not be made).
pub struct LazyCluster {
    client: ClusterClient,
    connection: OnceCell<ClusterConnection>,
}

impl LazyCluster {
    /// Connects on first use.
    pub fn new(client: ClusterClient) -> Self {
        Self { client, connection: OnceCell::new() }
    }

    /// The connection, made now if it was not yet.
    pub async fn connection(&self) -> redis::RedisResult<ClusterConnection> {
        self.connection.get_or_try_init(|| self.client.get_async_connection()).await.cloned()
    }
}

/// A cluster client of `target`'s nodes with `timeouts`, adjusted by `configure` (a push sender,
/// RESP3).
pub fn cluster_client(
    target: &RedisTarget,
    timeouts: Timeouts,
    configure: impl FnOnce(ClusterClientBuilder) -> ClusterClientBuilder,
) -> redis::RedisResult<ClusterClient> {
    let builder = ClusterClientBuilder::new(target.nodes())
        .connection_timeout(timeouts.connect)
        .response_timeout(timeouts.response)
        .retries(1);
    configure(builder).build()
}

impl RedisConn {
    /// A lazy connection to `target`.
    pub fn open(target: &RedisTarget, timeouts: Timeouts) -> redis::RedisResult<Self> {
        if target.cluster {
            let client = cluster_client(target, timeouts, |b| b)?;
            Ok(Self::Cluster(Arc::new(LazyCluster::new(client))))
        } else {
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(timeouts.connect))
                .set_response_timeout(Some(timeouts.response))
                .set_number_of_retries(1);
            let url = target.nodes().into_iter().next().unwrap_or_default();
            Ok(Self::Single(ConnectionManager::new_lazy_with_config(redis::Client::open(url)?, config)?))
        }
    }
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(manager) => manager.req_packed_command(cmd),
            Self::Cluster(lazy) => Box::pin(async move { lazy.connection().await?.req_packed_command(cmd).await }),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(manager) => manager.req_packed_commands(pipeline, offset, count),
            Self::Cluster(lazy) => {
                Box::pin(async move { lazy.connection().await?.req_packed_commands(pipeline, offset, count).await })
            }
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(manager) => manager.get_db(),
            Self::Cluster(_) => 0,
        }
    }
}

/// Says once, plainly, at start-up when Redis cannot be reached (it is optional at run time: the
/// server degrades without it rather than stopping).
pub async fn warn_if_unreachable(target: &RedisTarget) {
    let timeouts = Timeouts { connect: Duration::from_secs(2), response: Duration::from_secs(2) };
    let reached = async {
        let mut connection = RedisConn::open(target, timeouts)?;
        redis::cmd("PING").query_async::<String>(&mut connection).await
    };
    let failure = match tokio::time::timeout(Duration::from_secs(3), reached).await {
        Ok(Ok(_)) => return,
        Ok(Err(e)) => e.to_string(),
        Err(_) => "no answer in 3 s".to_string(),
    };
    let place: Vec<String> = target
        .nodes()
        .iter()
        .map(|url| url.rsplit_once('@').map_or(url.as_str(), |(_, host)| host).to_string())
        .collect();
    tracing::warn!(
        redis = %place.join(","),
        cluster = target.cluster,
        error = %failure,
        "Redis (REDIS_URL) is unreachable: serving without it until it answers. Meanwhile events reach only this \
         replica's subscribers, cost budgets are not enforced, and persisted queries are not shared. Start Redis, \
         or unset REDIS_URL for a single instance."
    );
}

#[cfg(test)]
mod tests {
    use super::RedisTarget;

    #[test]
    fn a_cluster_url_lists_its_nodes() {
        let target = RedisTarget { url: "redis://a:1, redis://b:2,".into(), cluster: true };
        assert_eq!(target.nodes(), ["redis://a:1", "redis://b:2"]);
    }
}
