//! bench/history.tsv, shared by the benches: every figure `bash bench/run.sh` recorded, one
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
