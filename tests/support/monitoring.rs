//! The metric names the shipped monitoring files (`config/monitoring/`) query, so tests can
//! check each against a real `/metrics`.

use std::collections::BTreeSet;
use std::path::Path;

/// Every metric name in the PromQL expressions of `files`: `*.yml` alert rules (each `expr:`
/// and its continuation lines) and `*.json` Grafana dashboards (each panel target's `expr`).
pub fn metrics_named(files: &[&str]) -> BTreeSet<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/monitoring");
    let mut exprs = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(dir.join(file)).unwrap();
        if file.ends_with(".json") {
            let dashboard: serde_json::Value = serde_json::from_str(&text).unwrap();
            for panel in dashboard["panels"].as_array().unwrap() {
                for target in panel["targets"].as_array().unwrap() {
                    exprs.push(target["expr"].as_str().unwrap().to_owned());
                }
            }
            continue;
        }
        let mut in_expr = false;
        for line in text.lines() {
            let trimmed = line.trim_start();
            if let Some(rest) = trimmed.strip_prefix("expr:") {
                exprs.push(rest.to_owned());
                in_expr = true;
            } else if in_expr && !trimmed.contains(": ") && !trimmed.ends_with(':') {
                exprs.push(trimmed.to_owned());
            } else {
                in_expr = false;
            }
        }
    }
    let mut names = BTreeSet::new();
    for expr in exprs {
        // Drop quoted label values, then keep identifiers that look like metric names.
        let unquoted: String = expr.split('"').step_by(2).collect::<Vec<_>>().join(" ");
        for token in unquoted.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if token.contains('_') && token != "histogram_quantile" {
                names.insert(token.to_owned());
            }
        }
    }
    assert!(
        names.len() >= 3,
        "too few metrics found in {files:?}: {names:?}"
    );
    names
}
