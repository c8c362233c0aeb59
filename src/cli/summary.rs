//! The table printed after a replay: what went in, what came out, and how fast.

use sluice::dataflow::run::ReplayReport;
use sluice::store::OpenReport;

/// Prints the replay summary to stdout.
pub fn print_summary(report: &ReplayReport, workers: usize) {
    let stats = &report.stats;
    let secs = report.elapsed.as_secs_f64().max(1e-9);
    let mut rows: Vec<(String, String)> = Vec::new();
    rows.push(("envelopes".into(), stats.total_envelopes().to_string()));
    for (endpoint, n) in &stats.envelopes {
        rows.push((format!("  {endpoint}"), n.to_string()));
    }
    rows.push(("records".into(), stats.records().to_string()));
    rows.push(("  prices".into(), stats.prices.to_string()));
    rows.push(("  boost snapshots".into(), stats.snapshots.to_string()));
    rows.push(("  chain targets".into(), stats.targets.to_string()));
    rows.push(("  source notices".into(), stats.notices.to_string()));
    rows.push(("invalid inputs".into(), stats.invalid.to_string()));
    rows.push((
        "events".into(),
        stats.events.values().sum::<u64>().to_string(),
    ));
    for (kind, n) in &stats.events {
        rows.push((format!("  {kind}"), n.to_string()));
    }
    rows.push(("workers".into(), workers.to_string()));
    rows.push((
        "elapsed".into(),
        format!("{:.3} s", report.elapsed.as_secs_f64()),
    ));
    rows.push((
        "throughput".into(),
        format!(
            "{:.0} envelopes/s, {:.0} price updates/s, {:.1} MB/s",
            stats.total_envelopes() as f64 / secs,
            stats.prices as f64 / secs,
            stats.bytes as f64 / 1e6 / secs
        ),
    ));
    if let Some(path) = &report.journal {
        rows.push(("journal".into(), path.display().to_string()));
    }
    if let Some(OpenReport::Rebuilt { reason }) = &report.store_open {
        rows.push((
            "store".into(),
            format!("rebuilt after corruption: {reason}"),
        ));
    }
    if let Some(offset) = report.truncated_at {
        rows.push(("truncated at".into(), format!("byte {offset}")));
    }
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (key, value) in rows {
        println!("{key:<width$}  {value}");
    }
}

/// The replay summary as one JSON object (for scripts and `sluice bench`).
pub fn summary_json(report: &ReplayReport, workers: usize) -> serde_json::Value {
    let stats = &report.stats;
    let secs = report.elapsed.as_secs_f64().max(1e-9);
    serde_json::json!({
        "workers": workers,
        "elapsed_secs": report.elapsed.as_secs_f64(),
        "envelopes": stats.total_envelopes(),
        "records": stats.records(),
        "price_updates": stats.prices,
        "invalid_inputs": stats.invalid,
        "bytes": stats.bytes,
        "events": stats.events,
        "envelopes_per_sec": stats.total_envelopes() as f64 / secs,
        "price_updates_per_sec": stats.prices as f64 / secs,
        "mb_per_sec": stats.bytes as f64 / 1e6 / secs,
        "peak_rss_mb": peak_rss_mb(),
        "truncated_at": report.truncated_at,
    })
}

/// This process's peak resident set size, in MB (Linux; `None` elsewhere).
pub fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}
