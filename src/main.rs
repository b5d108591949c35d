//! The `securecart` binary: parse the CLI, load settings, start telemetry, run the command.

use anyhow::Context;
use clap::Parser;
use securecart::app::App;
use securecart::cli::{Cli, Command};
use securecart::config::Settings;
use securecart::store::Store;
use securecart::store::seed::SeedSize;

// mimalloc: the server allocates many small, short-lived objects per request (futures, JSON
// values); glibc malloc and free were a third of the CPU profile under load (bench/RESULTS.md).
// The `system-allocator` feature leaves it out, so heaptrack, which hooks malloc, sees every
// allocation (bench/SUBSCRIBERS.md).
#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Runs the command; a failure is printed as one paragraph (what, where, how to fix it) and
/// exits 1. `main` does not return the error itself: that would print its `Debug` form, with a
/// backtrace whenever `RUST_BACKTRACE` is set, which buries the one line that matters.
#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("securecart: {}", securecart::startup::explain(&e));
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let command = cli.command.unwrap_or(Command::Serve { listen: None });
    if let Command::Schema = command {
        print!("{}", securecart::graphql::sdl());
        return Ok(());
    }
    let mut settings = Settings::load(cli.config.as_deref())?;
    // Held to the end of main: dropping it flushes spans still waiting for export.
    let _telemetry = securecart::telemetry::init(&settings);
    match command {
        Command::Serve { listen } => {
            if let Some(listen) = listen {
                settings.server.listen = listen;
            }
            match securecart::startup::raise_open_file_limit() {
                Ok((before, after)) => {
                    let wanted = (settings.server.max_connections + 100) as u64;
                    if after < wanted {
                        tracing::warn!(
                            open_files = after,
                            max_connections = settings.server.max_connections,
                            "the open-file limit is below SECURECART_MAX_CONNECTIONS: raise the hard limit \
                             (ulimit -Hn, systemd LimitNOFILE=, docker --ulimit nofile=)"
                        );
                    } else if after > before {
                        tracing::info!(before, after, "raised the open-file limit");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "could not raise the open-file limit"),
            }
            App::build(settings).await?.run().await
        }
        Command::Migrate => {
            let store = Store::connect(settings.database.url(), 1).await?;
            store.migrate().await?;
            tracing::info!("migrations applied");
            Ok(())
        }
        Command::Seed { products, vendors, customers, orders, reset, if_empty } => {
            let store = Store::connect(settings.database.url(), 2).await?;
            store.migrate().await?;
            if if_empty && !store.catalog_is_empty().await? {
                println!("the database already has a catalog; nothing seeded (--if-empty)");
                return Ok(());
            }
            let started = std::time::Instant::now();
            let report =
                store.seed(SeedSize { products, vendors, customers, orders }, reset).await.context("seeding")?;
            println!(
                "seeded {} vendors, {} products, {} customers, {} orders ({} lines) in {:.1} s",
                report.vendors,
                report.products,
                report.customers,
                report.orders,
                report.order_items,
                started.elapsed().as_secs_f64()
            );
            Ok(())
        }
        Command::Token { sub, roles, vendor, ttl } => {
            if settings.environment.is_production() {
                anyhow::bail!(
                    "`securecart token` refuses to run in production; tokens come from the identity provider"
                );
            }
            let token = securecart::auth::jwt::issue_dev_token(&settings.auth, &sub, &roles, vendor.as_deref(), ttl)?;
            println!("{token}");
            Ok(())
        }
        Command::Schema => unreachable!("handled above"),
    }
}
