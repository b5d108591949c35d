//! - Rebuild when a migration is added: `sqlx::migrate!` embeds the folder at compile time.
//! - Tests that need PostgreSQL or Redis are marked ignored (`cfg(no_test_database)`,
//!   `cfg(no_test_redis)`) when `TEST_DATABASE_URL` or `TEST_REDIS_URL` is unset, so `cargo test`
//!   says "N ignored" and names them, instead of counting skipped variants as passed. Setting or
//!   clearing either variable rebuilds the crate once.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
    println!("cargo:rerun-if-env-changed=TEST_DATABASE_URL");
    println!("cargo:rerun-if-env-changed=TEST_REDIS_URL");
    println!("cargo:rustc-check-cfg=cfg(no_test_database)");
    println!("cargo:rustc-check-cfg=cfg(no_test_redis)");
    if std::env::var_os("TEST_DATABASE_URL").is_none() {
        println!("cargo:rustc-cfg=no_test_database");
    }
    if std::env::var_os("TEST_REDIS_URL").is_none() {
        println!("cargo:rustc-cfg=no_test_redis");
    }
}
