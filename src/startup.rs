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

/// Raises this process's open-file limit (`RLIMIT_NOFILE`) from its soft value to its hard one,
/// as servers do: every client connection is a file descriptor, and a soft limit of 1,024 (a
/// common default) would refuse connections long before `SECURECART_MAX_CONNECTIONS`. The hard
/// limit is the operator's: `ulimit -Hn`, systemd's `LimitNOFILE=`, a container's `--ulimit
/// nofile=`; 50,000 WebSocket subscribers need about 50,100. Answers (before, after).
pub fn raise_open_file_limit() -> std::io::Result<(u64, u64)> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit and setrlimit only read or write the struct passed by pointer.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let before = limit.rlim_cur;
    if limit.rlim_cur < limit.rlim_max {
        limit.rlim_cur = limit.rlim_max;
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok((before, limit.rlim_cur))
}

#[cfg(test)]
mod open_files {
    #[test]
    fn the_soft_limit_is_raised_to_the_hard_one() {
        let (_, after) = super::raise_open_file_limit().unwrap();
        let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: getrlimit writes the struct.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) }, 0);
        assert_eq!((after, limit.rlim_cur), (limit.rlim_max, limit.rlim_max));
    }
}
