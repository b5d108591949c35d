//! What the cargo benches share: the server binary they run, a process's CPU time, and
//! bench/history.tsv, every figure `bash bench/run.sh` recorded, one
//! `date commit metric value` row each, oldest first. A bench prints its figures as
//! `METRIC <name> <value>` lines on stderr (run.sh records them) and shows the last recorded figure of
//! each beside its own, so a regression is visible in the run that causes it.

/// The last recorded figure of `metric`: `"<value> (<date>, <commit>)"`, or `-` when none.
pub fn previous(metric: &str) -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/bench/history.tsv");
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .rev()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f.len() == 4 && f[2] == metric).then(|| format!("{} ({}, {})", f[3], f[0], f[1]))
        })
        .unwrap_or_else(|| "-".into())
}

/// Prints one figure for run.sh to record, on stderr (stdout keeps the Markdown table whole).
pub fn record(metric: &str, value: f64) {
    eprintln!("METRIC {metric} {value:.3}");
}

/// The server binary to bench: `BENCH_BIN` (another build, for an A/B; run.sh passes the one it
/// built), or this checkout's, built here.
pub fn server_binary() -> String {
    let root = env!("CARGO_MANIFEST_DIR");
    std::env::var("BENCH_BIN").unwrap_or_else(|_| {
        let status = std::process::Command::new("cargo")
            .args(["build", "--release", "--quiet", "--bin", "securecart"])
            .current_dir(root)
            .status()
            .unwrap();
        assert!(status.success(), "release build failed");
        format!("{root}/target/release/securecart")
    })
}

/// The user + system CPU ticks (1/100 s: SC_CLK_TCK on Linux) a process has used.
pub fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = &stat[stat.rfind(')').map(|i| i + 2).unwrap_or(0)..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 here.
    fields.get(11).and_then(|u| u.parse::<u64>().ok()).unwrap_or(0)
        + fields.get(12).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0)
}
