//! Configuration through the command line: a file and the environment override the compiled-in
//! defaults, the seed tools' variable names work, and an unknown key or a bad value is an error
//! that names the key and where it was set.

use std::process::{Command, Output};

/// `sluice check` with `env` set (and nothing of the caller's `SLUICE__` environment).
fn check(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sluice"));
    cmd.arg("check").args(args).env("RUST_LOG", "warn");
    for (key, _) in std::env::vars() {
        if key.starts_with("SLUICE__") {
            cmd.env_remove(key);
        }
    }
    for (key, value) in env {
        cmd.env(key, value);
    }
    cmd.output().expect("sluice runs")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The effective configuration `sluice check` prints, as TOML.
fn effective(out: &Output) -> toml::Table {
    assert!(out.status.success(), "{}", stderr(out));
    let text = String::from_utf8_lossy(&out.stdout);
    let config = text.split("\n# pipeline").next().unwrap_or_default();
    config.parse().expect("check prints TOML")
}

fn value<'a>(table: &'a toml::Table, section: &str, key: &str) -> &'a toml::Value {
    table
        .get(section)
        .and_then(|s| s.get(key))
        .unwrap_or_else(|| panic!("{section}.{key} missing"))
}

/// The number a printed value holds, whether TOML wrote it as a number or a decimal string.
fn number(value: &toml::Value) -> f64 {
    match value {
        toml::Value::Integer(i) => *i as f64,
        toml::Value::Float(f) => *f,
        toml::Value::String(s) => s.parse().unwrap_or_else(|_| panic!("{s:?} is no number")),
        other => panic!("{other} is no number"),
    }
}

#[test]
fn the_environment_overrides_the_defaults_with_sluice_and_seed_names() {
    let defaults = effective(&check(&[], &[]));
    assert_ne!(number(value(&defaults, "risk", "initial_capital")), 5000.0);
    let out = check(
        &[],
        &[
            ("SLUICE__RISK__INITIAL_CAPITAL", "5000"),
            ("MIN_PRICE_CHANGE_PERCENT", "0.7"),
            ("FORCE_UPDATE_INTERVAL_MS", "45000"),
            ("MAX_STALENESS", "20"),
            ("DEBOUNCE_MS", "250"),
        ],
    );
    let config = effective(&out);
    assert_eq!(number(value(&config, "risk", "initial_capital")), 5000.0);
    let debounce = |key| number(value(&config, "debounce", key));
    assert_eq!(debounce("min_price_change_percent"), 0.7);
    assert_eq!(debounce("force_update_interval_ms"), 45000.0);
    assert_eq!(debounce("max_staleness_secs"), 20.0);
    assert_eq!(debounce("debounce_ms"), 250.0);
}

#[test]
fn a_file_overrides_the_defaults_and_the_environment_overrides_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sluice.toml");
    std::fs::write(
        &file,
        "[risk]\ninitial_capital = \"7500\"\n[debounce]\ndebounce_ms = 300\n",
    )
    .unwrap();
    let path = file.to_str().unwrap();
    let config = effective(&check(&["--config", path], &[]));
    assert_eq!(number(value(&config, "risk", "initial_capital")), 7500.0);
    assert_eq!(number(value(&config, "debounce", "debounce_ms")), 300.0);
    let config = effective(&check(
        &["--config", path],
        &[("SLUICE__DEBOUNCE__DEBOUNCE_MS", "400")],
    ));
    assert_eq!(number(value(&config, "debounce", "debounce_ms")), 400.0);
    assert_eq!(number(value(&config, "risk", "initial_capital")), 7500.0);
}

#[test]
fn an_unknown_key_names_itself_and_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("typo.toml");
    std::fs::write(&file, "[risk]\ninitial_capitl = \"5000\"\n").unwrap();
    let out = check(&["--config", file.to_str().unwrap()], &[]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("initial_capitl"), "{err}");
    assert!(err.contains("typo.toml"), "names the file: {err}");
    assert!(!err.contains("panicked"), "{err}");

    let out = check(&[], &[("SLUICE__RISK__INITIAL_CAPITL", "5000")]);
    assert!(
        !out.status.success(),
        "an unknown key in the environment is an error too"
    );
    let err = stderr(&out);
    assert!(err.contains("initial_capitl"), "{err}");
}

#[test]
fn a_bad_value_names_its_key_and_where_it_came_from() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, "[dataflow]\ntick_ms = \"fast\"\n").unwrap();
    let out = check(&["--config", file.to_str().unwrap()], &[]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("tick_ms") && err.contains("bad.toml"), "{err}");

    let out = check(&[], &[("SLUICE__DEBOUNCE__DEBOUNCE_MS", "3")]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("debounce.debounce_ms"), "{err}");
    assert!(
        err.contains("environment"),
        "says it came from the environment: {err}"
    );

    let out = check(&[], &[("SLUICE__RISK__INITIAL_CAPITAL", "-5")]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("risk.initial_capital"), "{err}");

    let out = check(&["--config", "/nonexistent/sluice.toml"], &[]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("no such file"), "{}", stderr(&out));
}

/// Negative thresholds would make Pyth's rule say YES on every price: refused, each under its
/// own name, for the defaults and for one feed's own and `early_update` values.
#[test]
fn negative_debounce_thresholds_are_refused_by_name() {
    let out = check(&[], &[("SLUICE__DEBOUNCE__CONFIDENCE_RATIO_PERCENT", "-1")]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("debounce.confidence_ratio_percent"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let feed = |extra: &str| {
        format!(
            "[[debounce.feeds]]\nalias = \"BTC/USD\"\n\
             id = \"e62df6c8b4a85fe1a67db44dc12de5db330f7ac66b72dc658afedf0f4a415b43\"\n{extra}"
        )
    };
    let good = dir.path().join("good.toml");
    std::fs::write(&good, feed("price_deviation = 0.2\n")).unwrap();
    assert!(
        check(&["--config", good.to_str().unwrap()], &[])
            .status
            .success()
    );
    for (name, extra) in [
        ("price_deviation", "price_deviation = -0.2\n"),
        (
            "early_update.confidence_ratio",
            "[debounce.feeds.early_update]\nconfidence_ratio = -3\n",
        ),
    ] {
        let file = dir.path().join("bad.toml");
        std::fs::write(&file, feed(extra)).unwrap();
        let out = check(&["--config", file.to_str().unwrap()], &[]);
        assert!(!out.status.success(), "{name} accepted");
        let err = stderr(&out);
        assert!(
            err.contains("BTC/USD") && err.contains(name) && err.contains("bad.toml"),
            "{err}"
        );
    }
}
