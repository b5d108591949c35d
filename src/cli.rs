//! The command line: `securecart [serve|migrate|seed|schema]`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::auth::Role;

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
        #[arg(long, conflicts_with = "if_empty")]
        reset: bool,
        /// Seed only an empty database: one that has a catalog is left alone, and the command
        /// succeeds (for deployment steps that run on every start).
        #[arg(long)]
        if_empty: bool,
    },
    /// Print the GraphQL schema (SDL) to stdout.
    Schema,
    /// Print a development token signed with the configured HS256 secret (refused in production).
    ///
    /// Paste it into GraphiQL's Headers tab as {"Authorization": "Bearer <token>"}.
    Token {
        /// The subject (`sub`): for customers, the customer record's key (demo: alice, bob).
        #[arg(long)]
        sub: String,
        /// A role to grant: customer, vendor or admin (repeat for several).
        #[arg(long = "role", required = true, value_parser = parse_role)]
        roles: Vec<Role>,
        /// For vendors: the vendor id (a Vendor global id or its number) put in the vendor claim.
        #[arg(long)]
        vendor: Option<String>,
        /// Lifetime, e.g. 30m, 1h, 7d.
        #[arg(long, default_value = "1h", value_parser = parse_ttl)]
        ttl: Duration,
    },
}

fn parse_role(text: &str) -> Result<Role, String> {
    match text {
        "customer" => Ok(Role::Customer),
        "vendor" => Ok(Role::Vendor),
        "admin" => Ok(Role::Admin),
        other => Err(format!("`{other}` is not a role: customer, vendor or admin")),
    }
}

fn parse_ttl(text: &str) -> Result<Duration, String> {
    let bad = || format!("`{text}` is not a duration like 30m, 1h or 7d");
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (n, unit) = text.split_at(split);
    let n: u64 = n.parse().map_err(|_| bad())?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => return Err(bad()),
    };
    if secs == 0 { Err(bad()) } else { Ok(Duration::from_secs(secs)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_and_roles_parse() {
        assert_eq!(parse_ttl("90m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_ttl("7d"), Ok(Duration::from_secs(604_800)));
        assert!(parse_ttl("1y").is_err() && parse_ttl("h").is_err() && parse_ttl("0s").is_err());
        assert_eq!(parse_role("vendor"), Ok(Role::Vendor));
        assert!(parse_role("root").is_err());
    }
}
