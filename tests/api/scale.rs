//! Scaling out on the engines operators run: a PostgreSQL streaming replica for reads. Each test
//! starts its own servers on free ports (the shared PostgreSQL and Redis are never touched) and
//! stops them when it ends.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::token;
use securecart::auth::Role;

/// The PostgreSQL server binaries of the machine (`pg_config --bindir`).
fn pg_bin(tool: &str) -> PathBuf {
    let out = Command::new("pg_config").arg("--bindir").output().expect("pg_config (PostgreSQL) must be installed");
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()).join(tool)
}

/// Runs a PostgreSQL tool as the `postgres` OS user when the tests run as root (initdb and
/// postgres refuse root), as the current user otherwise.
fn pg_command(tool: &str) -> Command {
    let root = Command::new("id").arg("-u").output().map(|o| o.stdout.starts_with(b"0\n")).unwrap_or(false);
    if root {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(pg_bin(tool));
        command
    } else {
        Command::new(pg_bin(tool))
    }
}

fn run(mut command: Command, what: &str) {
    let out = command.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(out.status.success(), "{what} failed: {}", String::from_utf8_lossy(&out.stderr));
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A PostgreSQL server of the test's own in a temporary directory, stopped (immediately) and
/// removed when dropped.
struct PgInstance {
    dir: PathBuf,
    port: u16,
}

impl PgInstance {
    /// A new primary that accepts streaming replicas from loopback (initdb's trust lines).
    fn primary(base: &Path) -> Self {
        let dir = base.join("primary");
        std::fs::create_dir_all(&dir).unwrap();
        chown_to_postgres(base);
        let mut initdb = pg_command("initdb");
        initdb.arg("-D").arg(&dir).args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"]);
        run(initdb, "initdb");
        let instance = Self { port: free_port(), dir };
        instance.configure("wal_level = replica\nmax_wal_senders = 4\nfsync = off\nfull_page_writes = off\n");
        instance.start();
        instance
    }

    /// A streaming replica of `primary` (`pg_basebackup -R`), started.
    fn replica_of(primary: &PgInstance, base: &Path) -> Self {
        let dir = base.join("replica");
        let mut backup = pg_command("pg_basebackup");
        backup.arg("-D").arg(&dir).args(["-h", "127.0.0.1", "-p", &primary.port.to_string()]);
        // A fast checkpoint: the default spreads it over minutes.
        backup.args(["-U", "postgres", "-R", "-X", "stream", "--no-sync", "--checkpoint=fast"]);
        run(backup, "pg_basebackup");
        let instance = Self { port: free_port(), dir };
        instance.configure("hot_standby = on\n");
        instance.start();
        instance
    }

    fn configure(&self, extra: &str) {
        use std::io::Write;
        let mut conf = std::fs::OpenOptions::new().append(true).open(self.dir.join("postgresql.conf")).unwrap();
        write!(
            conf,
            "\nport = {}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\nshared_buffers = 16MB\n{extra}",
            self.port,
            self.dir.display()
        )
        .unwrap();
    }

    fn start(&self) {
        let mut start = pg_command("pg_ctl");
        start.arg("-D").arg(&self.dir).arg("-l").arg(self.dir.join("log")).args(["-w", "-t", "30", "start"]);
        run(start, "pg_ctl start");
    }

    fn stop(&self) {
        let mut stop = pg_command("pg_ctl");
        stop.arg("-D").arg(&self.dir).args(["-m", "immediate", "-w", "stop"]);
        let _ = stop.output();
    }

    /// Shuts the server down at once (SIGQUIT to the postmaster, as `pg_ctl -m immediate`),
    /// returning once the postmaster and so every backend are gone: without `pg_ctl`'s start-up
    /// and its 100 ms polls, for a test that must act within a second of the last health check.
    fn kill_now(&self) {
        let pid_file = std::fs::read_to_string(self.dir.join("postmaster.pid")).unwrap();
        let pid: i32 = pid_file.lines().next().unwrap().trim().parse().unwrap();
        // SAFETY: a signal to the postmaster this test started.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGQUIT) }, 0, "SIGQUIT to the postmaster");
        let started = Instant::now();
        // Gone, or a zombie no one has reaped yet (its children exit before it does).
        while std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|stat| stat.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with('Z')))
        {
            assert!(started.elapsed() < Duration::from_secs(10), "the postmaster did not exit");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }
}

impl Drop for PgInstance {
    fn drop(&mut self) {
        self.stop();
    }
}

fn chown_to_postgres(path: &Path) {
    if Command::new("id").arg("-u").output().map(|o| o.stdout.starts_with(b"0\n")).unwrap_or(false) {
        run(
            {
                let mut c = Command::new("chown");
                c.args(["-R", "postgres:postgres"]).arg(path);
                c
            },
            "chown",
        );
    }
}

/// A directory removed when dropped (declared before the servers in it, so dropped after them).
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("securecart-pg-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs one statement.
async fn exec(url: &str, statement: &'static str) {
    let pool = sqlx::PgPool::connect(url).await.unwrap();
    sqlx::query(statement).execute(&pool).await.unwrap();
    pool.close().await;
}

/// The one row of a query, as JSON (`null` for none).
async fn sql(url: &str, statement: &'static str) -> Value {
    let pool = sqlx::PgPool::connect(url).await.unwrap();
    let row: Option<String> =
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT to_json(x)::text FROM ({statement}) x")))
            .fetch_optional(&pool)
            .await
            .unwrap();
    pool.close().await;
    row.map(|r| serde_json::from_str(&r).unwrap()).unwrap_or(Value::Null)
}

async fn graphql(client: &reqwest::Client, address: &str, bearer: Option<&str>, query: &str) -> Value {
    let mut request = client.post(format!("{address}/graphql")).json(&json!({ "query": query }));
    if let Some(t) = bearer {
        request = request.bearer_auth(t);
    }
    let body: Value = request.send().await.unwrap().json().await.unwrap();
    assert!(body.get("errors").is_none(), "{body}");
    body
}

async fn wait_for(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < Duration::from_secs(20), "{what} within 20 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// When the replica's health check last finished: its connection went idle after asking the lag.
const LAST_CHECK: &str = "SELECT extract(epoch FROM max(state_change))::float8 FROM pg_stat_activity \
     WHERE state = 'idle' AND query LIKE '%pg_is_in_recovery%' AND pid <> pg_backend_pid()";

/// The newest product (the default order).
const FIRST_NAME: &str = "{ products(first: 1) { edges { node { id name } } } }";

/// Catalog reads of queries go to the replica (a change the paused replica has not replayed is
/// not seen), while a customer who just wrote reads the primary: their cart shows the line they
/// added at once, and their catalog reads are fresh too. When the replica stops, reads go back
/// to the primary at once: the first read to find it gone runs again there.
#[tokio::test]
#[cfg_attr(no_test_database, ignore = "needs TEST_DATABASE_URL (PostgreSQL)")]
async fn catalog_reads_use_the_replica_and_a_writer_reads_their_own_writes() {
    if std::env::var("TEST_DATABASE_URL").is_err() {
        assert!(std::env::var("CI").is_err(), "TEST_DATABASE_URL is unset under CI: this test must run");
        eprintln!("skipping catalog_reads_use_the_replica…: TEST_DATABASE_URL is unset");
        return;
    }
    let base = Scratch::new();
    let primary = PgInstance::primary(&base.0);
    exec(&primary.url("postgres"), "CREATE DATABASE shop").await;
    let replica = PgInstance::replica_of(&primary, &base.0);
    let (primary_url, replica_url) = (primary.url("shop"), replica.url("shop"));

    let server = crate::helpers::start_binary(
        &std::env::temp_dir(),
        &[
            ("DATABASE_URL", primary_url.as_str()),
            ("DATABASE_READ_URL", replica_url.as_str()),
            // Long enough that this test never outlasts it with the replica paused (and the window
            // at least the allowed lag + 3 s, as the settings require).
            ("SECURECART_REPLICA_MAX_LAG_MS", "60000"),
            ("SECURECART_READ_YOUR_WRITES_MS", "63000"),
            // The cache sends its fills to the primary; off, product reads show the routing too.
            ("SECURECART_CACHE_TTL_SECS", "0"),
        ],
    )
    .await;
    let client = reqwest::Client::new();
    let ready = async || -> Value {
        client.get(format!("{}/readyz", server.internal)).send().await.unwrap().json().await.unwrap()
    };
    wait_for("the replica is in use", async || ready().await["checks"]["database_read"] == "ok").await;
    // The demo catalog, seeded on the primary at start-up, has reached the replica.
    let seeded = sql(&primary_url, "SELECT count(*) AS n FROM products").await["n"].clone();
    assert!(seeded.as_i64().unwrap() > 0);
    wait_for("the replica replays the seed", async || {
        sql(&replica_url, "SELECT count(*) AS n FROM products").await["n"] == seeded
    })
    .await;
    let before = graphql(&client, &server.address, None, FIRST_NAME).await;
    let name = |body: &Value| body["data"]["products"]["edges"][0]["node"]["name"].as_str().unwrap().to_string();
    let product_id = before["data"]["products"]["edges"][0]["node"]["id"].as_str().unwrap().to_string();
    let old_name = name(&before);

    // The replica stops replaying; the primary renames the product.
    exec(&replica_url, "SELECT pg_wal_replay_pause()").await;
    wait_for("replay pauses", async || {
        sql(&replica_url, "SELECT pg_get_wal_replay_pause_state() AS state").await["state"] == "paused"
    })
    .await;
    exec(&primary_url, "UPDATE products SET name = 'Renamed on the primary' WHERE id = (SELECT max(id) FROM products)")
        .await;
    let anonymous = graphql(&client, &server.address, None, FIRST_NAME).await;
    assert_eq!(name(&anonymous), old_name, "an anonymous catalog read comes from the (paused) replica");
    let rest: Value =
        client.get(format!("{}/v1/products?first=1", server.address)).send().await.unwrap().json().await.unwrap();
    assert!(rest.to_string().contains(&old_name), "REST reads the replica too: {rest}");

    // A customer writes: their next reads, cart and catalog alike, see the primary.
    let alice = token("alice", &[Role::Customer], None);
    let add =
        format!("mutation {{ addCartItem(productId: \"{product_id}\", quantity: 2) {{ userErrors {{ code }} }} }}");
    let added = graphql(&client, &server.address, Some(&alice), &add).await;
    assert_eq!(added["data"]["addCartItem"]["userErrors"], json!([]), "{added}");
    let cart = graphql(&client, &server.address, Some(&alice), "{ cart { totalQuantity } }").await;
    assert_eq!(cart["data"]["cart"]["totalQuantity"], 2, "the writer sees their own cart change at once: {cart}");
    let fresh = graphql(&client, &server.address, Some(&alice), FIRST_NAME).await;
    assert_eq!(name(&fresh), "Renamed on the primary", "the writer's catalog reads go to the primary too");
    // Someone who did not write still reads the replica.
    let bob = token("bob", &[Role::Customer], None);
    let other = graphql(&client, &server.address, Some(&bob), FIRST_NAME).await;
    assert_eq!(name(&other), old_name);

    // Replay resumes: the replica catches up and everyone sees the change.
    exec(&replica_url, "SELECT pg_wal_replay_resume()").await;
    wait_for("the replica replays the rename", async || {
        name(&graphql(&client, &server.address, None, FIRST_NAME).await) == "Renamed on the primary"
    })
    .await;

    // The replica dies between two health checks: a read that reaches it runs again on the
    // primary (no error for the client), and leaves the replica out at once. It is killed just
    // after a check (the checker's connection goes idle), so the next check, a second later,
    // is not what notices: the read is. One connection watches, polling every 5 ms.
    let watcher = sqlx::PgPool::connect(&replica_url).await.unwrap();
    let last_check = async || -> Option<f64> { sqlx::query_scalar(LAST_CHECK).fetch_one(&watcher).await.unwrap() };
    let seen = last_check().await;
    let started = Instant::now();
    // NULL (the check running: its connection is active) sorts below any time: keep waiting.
    while last_check().await <= seen {
        assert!(started.elapsed() < Duration::from_secs(20), "no health check of the replica within 20 s");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    drop(watcher);
    replica.kill_now();
    let after = graphql(&client, &server.address, None, FIRST_NAME).await;
    assert_eq!(name(&after), "Renamed on the primary");
    // A pooled connection broke (`unavailable`), or a new one could not be opened in time
    // (`pool_timeout`), depending on what the pool held.
    let mut fell_back = 0.0;
    for reason in ["unavailable", "pool_timeout"] {
        let name = format!("securecart_db_replica_fallbacks_total{{reason=\"{reason}\"}}");
        fell_back += crate::helpers::metric(&client, &server.internal, &name).await.unwrap_or(0.0);
    }
    assert!(fell_back >= 1.0, "the read ran again on the primary");
    wait_for("the replica is reported down", async || ready().await["checks"]["database_read"] == "down").await;
    let rest = client.get(format!("{}/v1/products?first=1", server.address)).send().await.unwrap();
    assert_eq!(rest.status(), 200);
    assert!(rest.text().await.unwrap().contains("Renamed on the primary"), "REST reads the primary too");
    drop(server);
}
