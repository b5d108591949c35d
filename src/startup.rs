//! What a failed start says: the error's chain on one line, then the fix for the causes a new
//! operator meets (a port in use, PostgreSQL not running or missing its database, a refused
//! password, settings that need fixing).

use std::io::ErrorKind;

/// The error as one paragraph: `what: where: cause`, then a line saying how to fix it when the
/// cause is a known one. Never a backtrace, never the database's internal fields.
pub fn explain(e: &anyhow::Error) -> String {
    let mut parts = Vec::new();
    for cause in e.chain() {
        // A database's error by its message alone: sqlx's text repeats it and adds the server's
        // source position ("at line 948"), which helps nobody here.
        if let Some(sqlx::Error::Database(db)) = cause.downcast_ref::<sqlx::Error>() {
            parts.push(db.message().to_string());
            break;
        }
        let text = cause.to_string();
        // sqlx repeats its source's text in its own: say it once.
        if parts.last().is_some_and(|last: &String| last.ends_with(&text)) {
            continue;
        }
        parts.push(text);
    }
    let mut text = parts.join(": ");
    if let Some(hint) = hint(e) {
        text.push_str("\n  ");
        text.push_str(&hint);
    }
    text
}

fn hint(e: &anyhow::Error) -> Option<String> {
    for cause in e.chain() {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            match io.kind() {
                ErrorKind::AddrInUse => {
                    return Some(
                        "Another process holds that port: stop it, or choose another port with SECURECART_LISTEN \
                         (public) or SECURECART_INTERNAL_LISTEN (metrics and health)."
                            .into(),
                    );
                }
                ErrorKind::PermissionDenied => {
                    return Some("Ports below 1024 need privileges: use a port above 1024 (e.g. 8080).".into());
                }
                _ => {}
            }
        }
        if let Some(sql) = cause.downcast_ref::<sqlx::Error>() {
            return database_hint(sql, e.downcast_ref::<crate::store::PgTarget>());
        }
    }
    None
}

fn database_hint(e: &sqlx::Error, target: Option<&crate::store::PgTarget>) -> Option<String> {
    match e {
        sqlx::Error::Database(db) => match db.code().as_deref() {
            Some("3D000") => Some(match target {
                Some(t) => format!(
                    "Create it first: `createdb -h {} -p {} -U {} {}`, then run `securecart migrate` (or start \
                     with SECURECART_AUTO_MIGRATE=true).",
                    t.host, t.port, t.user, t.database
                ),
                None => "Create the database first (`createdb`), then run `securecart migrate`.".into(),
            }),
            Some("28P01" | "28000") => {
                Some("PostgreSQL refused the user or password in DATABASE_URL: check both.".into())
            }
            _ => None,
        },
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut => Some(
            "Is PostgreSQL running and reachable there? Start it, or fix the host and port in DATABASE_URL \
             (leave DATABASE_URL unset to use the embedded SQLite file)."
                .into(),
        ),
        _ => None,
    }
}
