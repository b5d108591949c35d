//! The command line: `securecart [serve|migrate|seed|schema]`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// SecureCart API: a GraphQL API server for an e-commerce platform.
///
/// Configuration comes from an optional TOML file and the environment (DATABASE_URL,
/// REDIS_URL, SECURECART_LISTEN, SECURECART_ENV, ...); see README.md for the full table.
#[derive(Debug, Parser)]
#[command(name = "securecart", version, about)]
pub struct Cli {
    /// A TOML config file (also `SECURECART_CONFIG`); environment variables override it.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// What to do (default: serve).
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the GraphQL API (the default).
    Serve {
        /// Listen on this address instead of SECURECART_LISTEN (default 127.0.0.1:8080).
        #[arg(long, value_name = "ADDR")]
        listen: Option<SocketAddr>,
    },
    /// Apply pending database migrations and exit.
    Migrate,
    /// Fill the database with the deterministic demo catalog (applies migrations first).
    Seed {
        /// Products to create.
        #[arg(long, default_value_t = 1_000)]
        products: u32,
        /// Vendors to create (products are spread over them).
        #[arg(long, default_value_t = 25)]
        vendors: u32,
        /// Customers to create (the first two are `alice` and `bob`).
        #[arg(long, default_value_t = 200)]
        customers: u32,
        /// Orders to create, with 1 to 5 lines each.
        #[arg(long, default_value_t = 500)]
        orders: u32,
        /// Delete all existing data first (otherwise a non-empty database is refused).
        #[arg(long)]
        reset: bool,
    },
    /// Print the GraphQL schema (SDL) to stdout.
    Schema,
}
