//! Replaying the bundled recording: identical journals across runs, worker counts and
//! processes; every journal kind present; truncated and foreign recordings handled.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn sluice() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sluice"));
    cmd.env("RUST_LOG", "warn");
    cmd
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("sluice runs");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Replays the bundled recording with `args`; returns the journal's bytes.
fn replay_bundled(dir: &Path, name: &str, args: &[&str]) -> Vec<u8> {
    let out = dir.join(name);
    run(sluice()
        .arg("replay")
        .arg("--quiet")
        .arg("--out")
        .arg(&out)
        .args(args));
    std::fs::read(out.join("journal.jsonl")).expect("journal written")
}

fn kinds(journal: &[u8]) -> BTreeSet<String> {
    String::from_utf8_lossy(journal)
        .lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).expect("journal lines are JSON");
            v["kind"]
                .as_str()
                .expect("every line has a kind")
                .to_owned()
        })
        .collect()
}

#[test]
fn journals_are_identical_across_runs_and_worker_counts() {
    let dir = tempfile::tempdir().unwrap();
    let reference = replay_bundled(dir.path(), "first", &[]);
    assert!(reference.len() > 10_000, "a real journal");
    assert_eq!(
        replay_bundled(dir.path(), "second", &[]),
        reference,
        "a second run"
    );
    for workers in ["1", "2", "4"] {
        let journal = replay_bundled(dir.path(), &format!("w{workers}"), &["--workers", workers]);
        assert!(journal == reference, "--workers {workers} differs");
    }
}

#[test]
fn the_bundled_journal_has_every_kind() {
    let dir = tempfile::tempdir().unwrap();
    let journal = replay_bundled(dir.path(), "j", &[]);
    let found = kinds(&journal);
    for kind in [
        "entry",
        "exit",
        "rank_up",
        "rank_down",
        "high_momentum",
        "price_discrepancy",
        "push_batch",
        "order",
        "fill",
        "order_rejected",
        "tier_change",
        "invalid_input",
    ] {
        assert!(found.contains(kind), "no {kind} in {found:?}");
    }
    let text = String::from_utf8(journal).unwrap();
    assert!(
        text.contains("\"reason\":\"halted\""),
        "Emergency halts new entries"
    );
    assert!(text.contains("\"to\":\"emergency\""));
    // A push batch carries each feed's price, its update data and why it is in the batch.
    let mut reasons = BTreeSet::new();
    for line in text
        .lines()
        .filter(|l| l.contains("\"kind\":\"push_batch\""))
    {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(v["batch"].as_u64().is_some(), "{line}");
        let data = v["update_data"].as_array().expect("update_data");
        assert!(!data.is_empty(), "{line}");
        for feed in v["feeds"].as_array().expect("feeds") {
            assert_eq!(feed["id"].as_str().map(str::len), Some(64), "{line}");
            for key in ["price", "conf", "expo", "publish_time"] {
                assert!(feed[key].is_i64() || feed[key].is_u64(), "{key} in {line}");
            }
            reasons.insert(feed["reason"].as_str().unwrap().to_owned());
        }
    }
    let allowed = ["initial", "deviation", "heartbeat", "confidence", "early"];
    assert!(
        reasons.iter().all(|r| allowed.contains(&r.as_str())),
        "{reasons:?}"
    );
    for reason in ["initial", "early"] {
        assert!(reasons.contains(reason), "no {reason} in {reasons:?}");
    }
    // Inputs are journaled only on request.
    assert!(!found.contains("price"));
    let with_inputs = kinds(&replay_bundled(dir.path(), "inputs", &["--journal-inputs"]));
    for kind in ["price", "boost_snapshot", "chain_target", "mesh_price"] {
        assert!(
            with_inputs.contains(kind),
            "no {kind} with --journal-inputs"
        );
    }
}

#[test]
fn the_journal_is_in_time_order_and_canonical_within_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let journal = String::from_utf8(replay_bundled(dir.path(), "j", &[])).unwrap();
    let mut previous: Option<(u64, String)> = None;
    for line in journal.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let t = v["t"].as_u64().unwrap();
        let rest = line.split_once(',').unwrap().1.to_owned();
        if let Some((pt, prest)) = &previous {
            assert!(
                *pt < t || (*pt == t && *prest <= rest),
                "out of order:\n{prest}\n{rest}"
            );
        }
        previous = Some((t, rest));
    }
}

fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<std::net::TcpListener> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

/// Kills the children if a test fails midway, so no process outlives the test.
struct Reaper(Vec<Child>);

impl Drop for Reaper {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[test]
fn two_processes_write_the_same_journal_as_one() {
    let dir = tempfile::tempdir().unwrap();
    let reference = replay_bundled(dir.path(), "single", &[]);
    let hostfile: PathBuf = dir.path().join("hosts");
    let ports = free_ports(2);
    std::fs::write(
        &hostfile,
        ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}\n"))
            .collect::<String>(),
    )
    .unwrap();
    let mut reaper = Reaper(Vec::new());
    for process in 0..2 {
        let child = sluice()
            .args([
                "replay",
                "--quiet",
                "--workers",
                "2",
                "--processes",
                "2",
                "--process",
            ])
            .arg(process.to_string())
            .arg("--hostfile")
            .arg(&hostfile)
            .arg("--out")
            .arg(dir.path().join(format!("p{process}")))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        reaper.0.push(child);
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    for child in &mut reaper.0 {
        loop {
            match child.try_wait().unwrap() {
                Some(status) => {
                    assert!(status.success(), "a process failed");
                    break;
                }
                None if Instant::now() > deadline => panic!("the cluster did not finish"),
                None => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }
    let journal = std::fs::read(dir.path().join("p0").join("journal.jsonl")).unwrap();
    assert!(
        journal == reference,
        "the two-process journal differs from the single-process one"
    );
    assert!(
        !dir.path().join("p1").join("journal.jsonl").exists(),
        "only process 0 writes the journal"
    );
}

#[test]
fn a_truncated_recording_replays_its_prefix_and_warns() {
    let dir = tempfile::tempdir().unwrap();
    let whole = dir.path().join("whole.rec");
    run(sluice()
        .args([
            "synth",
            "--minutes",
            "2",
            "--feeds",
            "3",
            "--tokens",
            "20",
            "--codec",
            "none",
            "--out",
        ])
        .arg(&whole));
    let bytes = std::fs::read(&whole).unwrap();
    let cut = dir.path().join("cut.rec");
    std::fs::write(&cut, &bytes[..bytes.len() * 2 / 3]).unwrap();
    let out = run(sluice()
        .arg("replay")
        .arg(&cut)
        .arg("--out")
        .arg(dir.path().join("o"))
        .arg("--journal-inputs"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("truncated at byte offset"), "{stderr}");
    let journal = std::fs::read_to_string(dir.path().join("o").join("journal.jsonl")).unwrap();
    assert!(
        journal.lines().count() > 100,
        "the intact prefix was replayed"
    );
}

#[test]
fn a_corrupt_frame_in_the_middle_is_an_error_naming_its_offset() {
    let dir = tempfile::tempdir().unwrap();
    let whole = dir.path().join("whole.rec");
    run(sluice()
        .args([
            "synth",
            "--minutes",
            "1",
            "--feeds",
            "2",
            "--tokens",
            "10",
            "--codec",
            "none",
            "--out",
        ])
        .arg(&whole));
    let mut bytes = std::fs::read(&whole).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x55;
    let bad = dir.path().join("bad.rec");
    std::fs::write(&bad, &bytes).unwrap();
    let out = sluice()
        .arg("replay")
        .arg(&bad)
        .arg("--out")
        .arg(dir.path().join("o"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("corrupt frame at byte offset"), "{stderr}");
}

#[test]
fn a_file_that_is_not_a_recording_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.txt");
    std::fs::write(&path, "just some text, long enough to have a header").unwrap();
    let out = sluice().arg("replay").arg(&path).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not a sluice recording"), "{stderr}");
}

#[test]
fn dump_and_import_are_inverses() {
    let dir = tempfile::tempdir().unwrap();
    let original = dir.path().join("a.rec");
    run(sluice()
        .args([
            "synth",
            "--minutes",
            "1",
            "--feeds",
            "2",
            "--tokens",
            "10",
            "--codec",
            "none",
            "--out",
        ])
        .arg(&original));
    let dump = run(sluice().arg("dump").arg(&original)).stdout;
    let dump_path = dir.path().join("a.jsonl");
    std::fs::write(&dump_path, &dump).unwrap();
    let back = dir.path().join("b.rec");
    run(sluice()
        .args(["import", "--format", "dump", "--codec", "none", "--out"])
        .arg(&back)
        .arg(&dump_path));
    assert_eq!(
        std::fs::read(&back).unwrap(),
        std::fs::read(&original).unwrap(),
        "byte-identical"
    );
}

/// The store after a replay is the same whatever the worker count: keys written from several
/// workers end with their newest value.
#[test]
fn the_store_holds_the_same_latest_prices_on_any_worker_count() {
    let dir = tempfile::tempdir().unwrap();
    let mut trees = Vec::new();
    for workers in ["1", "2"] {
        let out = dir.path().join(format!("w{workers}"));
        run(sluice()
            .args(["replay", "--quiet", "--workers", workers, "--out"])
            .arg(&out));
        let (store, _) = sluice::store::Store::open(&out.join("store")).unwrap();
        let prices = store.scan(sluice::store::Tree::Prices, b"").unwrap();
        assert!(prices.len() > 20, "latest prices are stored");
        // Each row is the seed's mesh_price_cache row.
        for (key, value) in &prices {
            let row: serde_json::Value = serde_json::from_slice(value).unwrap();
            let key = String::from_utf8_lossy(key);
            for field in [
                "asset",
                "price",
                "chain",
                "timestamp",
                "source",
                "change_24h",
            ] {
                assert!(row.get(field).is_some(), "no {field} in {key}: {row}");
            }
            assert_eq!(
                key,
                format!(
                    "{}|{}",
                    row["asset"].as_str().unwrap(),
                    row["source"].as_str().unwrap()
                )
            );
            assert!(
                row["timestamp"].as_i64().unwrap() > 1_700_000_000_000,
                "{row}"
            );
        }
        let risk = store.scan(sluice::store::Tree::Risk, b"").unwrap();
        assert_eq!(risk.len(), 1, "the portfolio is stored");
        let trending = store.scan(sluice::store::Tree::Trending, b"").unwrap();
        assert!(!trending.is_empty(), "trending state is stored");
        trees.push((prices, risk, trending));
    }
    assert!(
        trees[0] == trees[1],
        "the store differs between 1 and 2 workers"
    );
}

/// The `data` JSON of each event of the captured Hermes stream fixture, one per line.
fn hermes_data_lines() -> Vec<String> {
    let sse = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hermes_stream.sse"),
    )
    .unwrap();
    sse.lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(|d| d.trim().to_owned())
        // The stream's last `data` is its 24-hour close notice, not an update.
        .filter(|d| d.starts_with('{'))
        .collect()
}

/// The envelopes of a recording, as `sluice dump` prints them.
fn dumped_envelopes(recording: &Path) -> Vec<serde_json::Value> {
    let dump = run(sluice().arg("dump").arg(recording)).stdout;
    String::from_utf8(dump)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v.get("endpoint").is_some())
        .collect()
}

/// Captured payloads become a recording: times from a field of each payload (in seconds) or
/// a fixed cadence, the bytes exactly as captured, and the recording replays like any other.
#[test]
fn captured_payloads_import_with_times_from_a_field_or_a_cadence() {
    let dir = tempfile::tempdir().unwrap();
    let lines = hermes_data_lines();
    assert!(lines.len() >= 3, "the fixture has several events");
    let input = dir.path().join("hermes.jsonl");
    // A blank line in the capture is skipped, not an error.
    std::fs::write(&input, format!("{}\n\n", lines.join("\n"))).unwrap();

    let by_field = dir.path().join("field.rec");
    run(sluice()
        .args(["import", "--source", "hermes", "--time-field"])
        .arg("/parsed/0/price/publish_time")
        .args(["--time-unit", "s", "--out"])
        .arg(&by_field)
        .arg(&input));
    let envelopes = dumped_envelopes(&by_field);
    assert_eq!(envelopes.len(), lines.len());
    for (env, line) in envelopes.iter().zip(&lines) {
        let payload: serde_json::Value = serde_json::from_str(line).unwrap();
        let publish = payload["parsed"][0]["price"]["publish_time"]
            .as_u64()
            .unwrap();
        assert_eq!(env["endpoint"], "hermes_stream");
        assert_eq!(env["t_ms"].as_u64(), Some(publish * 1000), "{env}");
        assert_eq!(
            env["raw"].as_str(),
            Some(line.as_str()),
            "bytes as captured"
        );
    }

    let by_cadence = dir.path().join("cadence.rec");
    run(sluice()
        .args([
            "import",
            "--source",
            "hermes_stream",
            "--start-ms",
            "1000",
            "--cadence-ms",
            "250",
            "--out",
        ])
        .arg(&by_cadence)
        .arg(&input));
    let times: Vec<u64> = dumped_envelopes(&by_cadence)
        .iter()
        .map(|e| e["t_ms"].as_u64().unwrap())
        .collect();
    let expected: Vec<u64> = (0..lines.len() as u64).map(|i| 1000 + 250 * i).collect();
    assert_eq!(times, expected);

    // Timed by its publish times, the imported recording replays: every feed of every event
    // is a price in the journal. (Timed from 1970, the same payloads would be from the future.)
    let out = dir.path().join("replayed");
    run(sluice()
        .args(["replay", "--quiet", "--journal-inputs", "--out"])
        .arg(&out)
        .arg(&by_field));
    let journal = std::fs::read_to_string(out.join("journal.jsonl")).unwrap();
    let feeds: usize = lines
        .iter()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["parsed"]
                .as_array()
                .unwrap()
                .len()
        })
        .sum();
    let prices = journal
        .lines()
        .filter(|l| l.contains("\"kind\":\"price\""))
        .count();
    assert_eq!(prices, feeds, "{journal}");
}

/// Poll bodies import too: a Birdeye `multi_price` body and a DEX Screener boosts list, each
/// captured twice, become a recording whose replay journals their prices and snapshots.
#[test]
fn captured_poll_bodies_import_and_replay() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = |name: &str| {
        let text = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures")
                .join(name),
        )
        .unwrap();
        // One payload per line: the same JSON, compact.
        serde_json::to_string(&serde_json::from_str::<serde_json::Value>(&text).unwrap()).unwrap()
    };
    let birdeye = fixture("birdeye_multi_price.json");
    let tokens = serde_json::from_str::<serde_json::Value>(&birdeye).unwrap()["data"]
        .as_object()
        .unwrap()
        .values()
        .filter(|v| v["value"].is_number())
        .count();
    let newest = serde_json::from_str::<serde_json::Value>(&birdeye).unwrap()["data"]
        .as_object()
        .unwrap()
        .values()
        .filter_map(|v| v["updateUnixTime"].as_u64())
        .max()
        .unwrap();
    let mut recordings = Vec::new();
    for (source, context, body) in [
        ("birdeye_multi_price", "solana", birdeye),
        (
            "dexscreener_boosts",
            "",
            fixture("dexscreener_token_boosts_top.json"),
        ),
    ] {
        let input = dir.path().join(format!("{source}.jsonl"));
        std::fs::write(&input, format!("{body}\n{body}\n")).unwrap();
        let recording = dir.path().join(format!("{source}.rec"));
        run(sluice()
            .args(["import", "--source", source, "--context", context])
            .args(["--start-ms", &(newest * 1000 + 2_000).to_string()])
            .args(["--cadence-ms", "3000", "--out"])
            .arg(&recording)
            .arg(&input));
        let envelopes = dumped_envelopes(&recording);
        assert_eq!(envelopes.len(), 2, "{source}");
        assert_eq!(envelopes[0]["endpoint"], source);
        assert_eq!(envelopes[0]["raw"].as_str(), Some(body.as_str()));
        recordings.push(recording);
    }
    let journal_of = |recording: &Path, name: &str| {
        let out = dir.path().join(name);
        run(sluice()
            .args(["replay", "--quiet", "--journal-inputs", "--out"])
            .arg(&out)
            .arg(recording));
        std::fs::read_to_string(out.join("journal.jsonl")).unwrap()
    };
    let birdeye_journal = journal_of(&recordings[0], "birdeye");
    let prices = birdeye_journal
        .lines()
        .filter(|l| l.contains("\"kind\":\"price\"") && l.contains("birdeye"))
        .count();
    assert_eq!(prices, 2 * tokens, "{birdeye_journal}");
    let boosts_journal = journal_of(&recordings[1], "boosts");
    let snapshots = boosts_journal
        .lines()
        .filter(|l| l.contains("\"kind\":\"boost_snapshot\""))
        .count();
    assert_eq!(snapshots, 2, "{boosts_journal}");
}

/// An import that cannot be done says why and where, and writes no recording.
#[test]
fn a_bad_import_names_its_problem() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    let lines = hermes_data_lines();
    std::fs::write(&input, format!("{}\nnot json\n", lines[0])).unwrap();
    let fail = |args: &[&str]| {
        let out = dir.path().join("out.rec");
        let output = sluice()
            .arg("import")
            .args(args)
            .arg("--out")
            .arg(&out)
            .arg(&input)
            .output()
            .unwrap();
        assert!(!output.status.success(), "{args:?} should fail");
        assert!(!out.exists(), "{args:?} left a partial recording");
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    let no_time = fail(&["--source", "hermes"]);
    assert!(
        no_time.contains("--time-field") || no_time.contains("--start-ms"),
        "{no_time}"
    );
    let not_json = fail(&[
        "--source",
        "hermes",
        "--time-field",
        "/parsed/0/price/publish_time",
    ]);
    assert!(
        not_json.contains("line 2") && not_json.contains("not JSON"),
        "{not_json}"
    );
    let no_field = fail(&["--source", "hermes", "--time-field", "/nowhere"]);
    assert!(
        no_field.contains("line 1") && no_field.contains("/nowhere"),
        "{no_field}"
    );
    let unknown = fail(&["--source", "nasdaq", "--start-ms", "0"]);
    assert!(unknown.contains("unknown --source"), "{unknown}");
}

/// `sluice bench RECORDING --json` prints one object of the documented shape, each figure a
/// positive rate, with the price updates counted the same by the floor and every replay.
#[test]
fn bench_json_has_the_documented_shape() {
    let dir = tempfile::tempdir().unwrap();
    let recording = dir.path().join("small.rec");
    run(sluice()
        .args([
            "synth",
            "--minutes",
            "1",
            "--feeds",
            "4",
            "--tokens",
            "20",
            "--out",
        ])
        .arg(&recording));
    let out = run(sluice()
        .args(["bench", "--json", "--rounds", "1", "--dir"])
        .arg(dir.path().join("bench"))
        .arg(&recording));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON object");
    let rate = |v: &serde_json::Value, path: &str| {
        let x = v.pointer(path).and_then(|x| x.as_f64());
        assert!(x.is_some_and(|x| x > 0.0), "{path} in {report}");
    };
    rate(&report, "/parse_floor/price_updates_per_sec");
    for workers in ["1", "2"] {
        for figure in ["price_updates_per_sec", "envelopes_per_sec", "mb_per_sec"] {
            rate(&report, &format!("/workers/{workers}/{figure}"));
        }
    }
    let all = report["price_updates"].as_u64().unwrap();
    let hermes = report["hermes_price_updates"].as_u64().unwrap();
    assert!(hermes > 0 && hermes < all, "{report}");
    // Resident memory sampled over each run (a one-minute recording may end within a sample
    // or two, so only the shape is held here).
    for workers in ["1", "2"] {
        let quarters = report["workers"][workers]["rss_mb_by_quarter"]
            .as_array()
            .unwrap();
        assert!(quarters.is_empty() || quarters.len() == 4, "{report}");
        assert!(
            quarters
                .iter()
                .all(|q| q.as_f64().is_some_and(|mb| mb > 1.0)),
            "{report}"
        );
    }
}

/// The summary after a replay counts what the journal holds, and a store damaged between two
/// runs is rebuilt, reported in the summary, and written again.
#[test]
fn the_summary_counts_the_journal_and_a_damaged_store_is_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let replay = || run(sluice().args(["replay", "--out"]).arg(&out));
    let first = replay();
    let table = String::from_utf8_lossy(&first.stdout).into_owned();
    let rows: Vec<(String, String)> = table
        .lines()
        .filter_map(|line| {
            // Keys may be indented (kinds under "events"); the value follows two spaces.
            let body = line.trim_start();
            let indent = &line[..line.len() - body.len()];
            let (key, value) = body.trim_end().split_once("  ")?;
            Some((format!("{indent}{key}"), value.trim().to_owned()))
        })
        .collect();
    let row = |key: &str| {
        rows.iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("no {key:?} row in\n{table}"))
    };
    let journal = std::fs::read_to_string(out.join("journal.jsonl")).unwrap();
    let mut by_kind: std::collections::BTreeMap<String, u64> = Default::default();
    for line in journal.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        *by_kind
            .entry(v["kind"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    assert_eq!(
        row("invalid inputs"),
        by_kind["invalid_input"].to_string(),
        "{table}"
    );
    assert!(row("envelopes").parse::<u64>().unwrap() > 1_000, "{table}");
    assert!(row("throughput").contains("price updates/s"), "{table}");
    for kind in ["push_batch", "entry", "tier_change", "price_discrepancy"] {
        assert_eq!(
            row(&format!("  {kind}")),
            by_kind[kind].to_string(),
            "{kind} in\n{table}"
        );
    }
    assert!(!table.contains("rebuilt"), "{table}");

    // Damage every file of the store, then replay into the same directory.
    let mut files = vec![out.join("store")];
    while let Some(path) = files.pop() {
        if path.is_dir() {
            files.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        } else {
            let len = std::fs::metadata(&path).unwrap().len().max(64) as usize;
            std::fs::write(
                &path,
                (0..len).map(|i| (i * 7 + 3) as u8).collect::<Vec<u8>>(),
            )
            .unwrap();
        }
    }
    let second = replay();
    let table = String::from_utf8_lossy(&second.stdout);
    assert!(
        table.contains("rebuilt after corruption"),
        "{table}\n{}",
        String::from_utf8_lossy(&second.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(out.join("journal.jsonl")).unwrap(),
        journal,
        "the journal does not depend on the store"
    );
    let (store, _) = sluice::store::Store::open(&out.join("store")).unwrap();
    assert!(
        store.scan(sluice::store::Tree::Prices, b"").unwrap().len() > 20,
        "the rebuilt store is written again"
    );
}
