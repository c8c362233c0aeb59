//! The synthetic market generator: determinism, ordering, cadence, schemas the parsers accept,
//! MockPyth update data, boost churn, the crash, and the bundled recording.

use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;

use alloy_sol_types::SolValue;
use bytes::Bytes;
use sluice::model::parse::{ParseContext, parse_envelope};
use sluice::model::{AssetMap, Endpoint, Envelope, Instrument, PriceSource, Record, Source};
use sluice::record::{Codec, Item, RecordingReader, RecordingWriter};
use sluice::synth::{self, SynthOptions, SynthSummary};

alloy_sol_types::sol! {
    struct Price { int64 price; uint64 conf; int32 expo; uint256 publishTime; }
    struct PriceFeed { bytes32 id; Price price; Price emaPrice; }
}

/// A generated recording, read back and parsed.
struct Run {
    bytes: Vec<u8>,
    summary: SynthSummary,
    items: Vec<Item>,
    /// Every envelope with what it parsed to.
    parsed: Vec<(Envelope, Vec<Record>)>,
    opts: SynthOptions,
}

fn opts(minutes: u32, seed: u64) -> SynthOptions {
    SynthOptions {
        minutes,
        seed,
        ..SynthOptions::default()
    }
}

fn write(opts: &SynthOptions) -> (Vec<u8>, SynthSummary) {
    let mut w = RecordingWriter::new(Vec::new(), Codec::None, &synth::meta(opts)).unwrap();
    let summary = synth::generate(opts, &mut w).unwrap();
    (w.finish().unwrap(), summary)
}

fn run(opts: SynthOptions) -> Run {
    let (bytes, summary) = write(&opts);
    let mut reader = RecordingReader::from_bytes(Bytes::from(bytes.clone())).unwrap();
    assert!(reader.meta().synthetic);
    assert_eq!(reader.meta().sources, Source::ALL.to_vec());
    let mut items = Vec::new();
    while let Some(item) = reader.next_item().unwrap() {
        items.push(item);
    }
    let assets = AssetMap::default();
    let ctx = ParseContext {
        assets: &assets,
        max_future_skew_ms: 5_000,
    };
    let parsed = items
        .iter()
        .filter_map(|item| match item {
            Item::Envelope(env) => {
                let mut out = Vec::new();
                parse_envelope(env, &ctx, &mut out);
                Some((env.clone(), out))
            }
            Item::Watermark { .. } => None,
        })
        .collect();
    Run {
        bytes,
        summary,
        items,
        parsed,
        opts,
    }
}

/// The three-minute run most tests share (generated once).
fn three_minutes() -> &'static Run {
    static RUN: OnceLock<Run> = OnceLock::new();
    RUN.get_or_init(|| run(opts(3, 7)))
}

fn envelopes<'a>(
    run: &'a Run,
    endpoint: Endpoint,
) -> impl Iterator<Item = &'a (Envelope, Vec<Record>)> + 'a {
    run.parsed
        .iter()
        .filter(move |(env, _)| env.endpoint == endpoint)
}

#[test]
fn same_options_give_the_same_bytes() {
    let o = opts(2, 7);
    let (a, sa) = write(&o);
    let (b, sb) = write(&o);
    assert_eq!(sa, sb);
    assert!(a == b, "two runs with the same options differ");
}

#[test]
fn different_seeds_give_different_bytes() {
    let (a, _) = write(&opts(2, 7));
    let (b, _) = write(&opts(2, 8));
    assert_ne!(a, b);
}

#[test]
fn order_watermarks_and_sources() {
    let run = three_minutes();
    let end = run.opts.start_ms + u64::from(run.opts.minutes) * 60_000;
    let mut last_t = 0;
    let mut watermark: BTreeMap<Source, u64> = BTreeMap::new();
    let mut count: BTreeMap<Source, u64> = BTreeMap::new();
    let mut longest_silence: BTreeMap<Source, u64> = BTreeMap::new();
    for item in &run.items {
        match item {
            Item::Envelope(env) => {
                assert!(env.t_ms >= last_t, "envelopes out of order at {}", env.t_ms);
                assert!(env.t_ms >= run.opts.start_ms && env.t_ms < end);
                last_t = env.t_ms;
                let source = env.source();
                let mark = watermark.get(&source).copied().unwrap_or(0);
                assert!(
                    env.t_ms >= mark,
                    "{source} envelope at {} after watermark {mark}",
                    env.t_ms
                );
                *count.entry(source).or_default() += 1;
            }
            Item::Watermark { source, t_ms } => {
                let previous = watermark
                    .insert(*source, *t_ms)
                    .unwrap_or(run.opts.start_ms);
                assert!(*t_ms >= previous, "{source} watermark went back");
                let gap = longest_silence.entry(*source).or_default();
                *gap = (*gap).max(t_ms - previous);
            }
        }
    }
    for source in Source::ALL {
        assert!(
            count.get(&source).copied().unwrap_or(0) > 0,
            "no {source} envelopes"
        );
        assert_eq!(
            watermark.get(&source),
            Some(&end),
            "{source} final watermark"
        );
        // Silence is punctuated by a watermark every 250 ms.
        assert!(
            longest_silence.get(&source).copied().unwrap_or(0) <= 250,
            "{source} silent too long"
        );
    }
    assert_eq!(run.summary.envelopes, count.values().sum::<u64>());
    let bytes: u64 = run.parsed.iter().map(|(e, _)| e.raw.len() as u64).sum();
    assert_eq!(run.summary.bytes, bytes);
    assert!(run.bytes.len() as u64 > bytes);
}

#[test]
fn hermes_streams_every_400_ms_with_one_outage() {
    let run = three_minutes();
    let times: Vec<u64> = envelopes(run, Endpoint::HermesStream)
        .filter(|(e, _)| e.context.is_empty())
        .map(|(e, _)| e.t_ms)
        .collect();
    let mut gaps: Vec<u64> = times.windows(2).map(|w| w[1] - w[0]).collect();
    gaps.sort_unstable();
    let median = gaps[gaps.len() / 2];
    assert!((380..=420).contains(&median), "median gap {median}");
    let in_band = gaps.iter().filter(|g| (360..=440).contains(*g)).count();
    assert!(
        in_band + 1 >= gaps.len(),
        "{} gaps outside 360..=440 ms",
        gaps.len() - in_band
    );
    // One gap of about 20 s, announced by the error event, bridged by REST polls.
    let outage = *gaps.last().unwrap();
    assert!((18_000..=22_000).contains(&outage), "outage {outage}");
    let errors: Vec<&Envelope> = envelopes(run, Endpoint::HermesStream)
        .filter(|(e, _)| e.context == "error")
        .map(|(e, _)| e)
        .collect();
    assert_eq!(errors.len(), 1);
    assert_eq!(&errors[0].raw[..], b"Connection timeout reached (24h)");
    let rest: Vec<u64> = envelopes(run, Endpoint::HermesLatest)
        .map(|(e, _)| e.t_ms)
        .collect();
    assert!((15..=22).contains(&rest.len()), "{} REST polls", rest.len());
    assert!(
        rest.iter()
            .all(|t| *t > errors[0].t_ms && *t < errors[0].t_ms + 21_000)
    );
}

#[test]
fn binary_elements_are_the_parsed_feeds() {
    let run = three_minutes();
    let mut checked = 0;
    let mut subsets = 0;
    for (env, records) in
        envelopes(run, Endpoint::HermesStream).chain(envelopes(run, Endpoint::HermesLatest))
    {
        if !env.context.is_empty() || records.iter().any(|r| matches!(r, Record::Invalid(_))) {
            continue;
        }
        let doc: serde_json::Value = serde_json::from_slice(&env.raw).unwrap();
        let data = doc["binary"]["data"].as_array().unwrap();
        let feeds = doc["parsed"].as_array().unwrap();
        assert_eq!(data.len(), feeds.len());
        assert_eq!(records.len(), feeds.len());
        if feeds.len() < run.opts.feeds as usize {
            subsets += 1;
        }
        for (i, record) in records.iter().enumerate() {
            let Record::Price(tick) = record else {
                panic!("{record:?}")
            };
            assert_eq!(tick.source, PriceSource::Hermes);
            let hex_text = data[i].as_str().unwrap();
            assert_eq!(tick.update_data.as_deref(), Some(hex_text.as_bytes()));
            let blob = hex::decode(hex_text).unwrap();
            assert_eq!(blob.len(), 320);
            let (feed, prev) = <(PriceFeed, u64)>::abi_decode_params(&blob).unwrap();
            let Instrument::Feed(id) = &tick.instrument else {
                panic!()
            };
            assert_eq!(feed.id.0, id.0);
            assert_eq!(feed.price.price, tick.price.mantissa);
            assert_eq!(feed.price.expo, tick.price.expo);
            assert_eq!(feed.price.conf, tick.conf);
            assert_eq!(
                u64::try_from(feed.price.publishTime).unwrap() * 1000,
                tick.publish_ms as u64
            );
            assert_eq!(feed.emaPrice.publishTime, feed.price.publishTime);
            assert_eq!(
                prev,
                feeds[i]["metadata"]["prev_publish_time"].as_u64().unwrap()
            );
            assert_eq!(
                feed.emaPrice.price.to_string(),
                feeds[i]["ema_price"]["price"].as_str().unwrap()
            );
            checked += 1;
        }
    }
    assert!(checked > 3000, "{checked}");
    assert!(subsets > 0, "no subset events");
    // The first three feeds are the real BTC, ETH and SOL ids.
    let (first, _) = envelopes(run, Endpoint::HermesStream)
        .find(|(e, r)| e.context.is_empty() && r.len() == run.opts.feeds as usize)
        .unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&first.raw).unwrap();
    let ids: Vec<&str> = doc["parsed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids[0],
        "e62df6c8b4a85fe1a67db44dc12de5db330f7ac66b72dc658afedf0f4a415b43"
    );
    assert_eq!(
        ids[1],
        "ff61491a931112ddf1bd8147cd1b641375f79f5825126d665480874634fd0ace"
    );
    assert_eq!(
        ids[2],
        "ef0d8b6fda2ceba41da15d4095d1da392a0d2f8ed0c6c7bc0f4cfac8c280b56d"
    );
}

#[test]
fn everything_parses_except_the_deliberate_faults() {
    let run = three_minutes();
    let mut invalid = Vec::new();
    let (mut prices, mut hermes) = (0, 0);
    for (env, records) in &run.parsed {
        for record in records {
            match record {
                Record::Invalid(i) => invalid.push(format!(
                    "{} {}: {} at {}",
                    env.endpoint, env.t_ms, i.reason, i.at
                )),
                Record::Price(p) => {
                    prices += 1;
                    hermes += u64::from(p.source == PriceSource::Hermes);
                }
                _ => {}
            }
        }
    }
    assert_eq!(invalid.len() as u64, run.summary.malformed, "{invalid:#?}");
    // Every kind of fault is there: nine kinds, the empty body on one endpoint at least.
    assert!(run.summary.malformed >= 9, "{invalid:#?}");
    for needle in [
        "not valid JSON",
        "is not positive",
        "invalid solana address",
        "priceUsd",
        "birdeye error: Too many requests",
        "expected a JSON array of pairs",
        "unsupported mesh message version 2",
        "chain read failed: header not found",
    ] {
        assert!(
            invalid.iter().any(|i| i.contains(needle)),
            "no {needle:?} in {invalid:#?}"
        );
    }
    assert_eq!(prices, run.summary.price_updates);
    assert_eq!(hermes, run.summary.hermes_updates);
}

#[test]
fn without_faults_nothing_is_invalid() {
    let run = run(SynthOptions {
        faults: false,
        ..opts(2, 11)
    });
    assert_eq!(run.summary.malformed, 0);
    let invalid: Vec<&Record> = run
        .parsed
        .iter()
        .flat_map(|(_, r)| r)
        .filter(|r| matches!(r, Record::Invalid(_)))
        .collect();
    assert!(invalid.is_empty(), "{invalid:#?}");
    assert!(envelopes(&run, Endpoint::HermesLatest).next().is_none());
}

#[test]
fn boost_lists_are_ranked_and_churn() {
    let run = three_minutes();
    let mut previous: Option<Vec<String>> = None;
    let (mut entries, mut exits, mut snapshots) = (0, 0, 0);
    // Token -> (time, rank) of every appearance.
    let mut ranks: HashMap<String, Vec<(u64, usize)>> = HashMap::new();
    for (env, records) in envelopes(run, Endpoint::DexscreenerBoosts) {
        let Ok(serde_json::Value::Array(items)) =
            serde_json::from_slice::<serde_json::Value>(&env.raw)
        else {
            continue;
        };
        // At most 30, plus the deliberately malformed extra item when that fault is due.
        let invalid = records
            .iter()
            .filter(|r| matches!(r, Record::Invalid(_)))
            .count();
        assert!(items.len() <= 30 + invalid, "{} items", items.len());
        let totals: Vec<f64> = items
            .iter()
            .map(|i| i["totalAmount"].as_f64().unwrap())
            .collect();
        assert!(
            totals.windows(2).all(|w| w[0] >= w[1]),
            "not sorted: {totals:?}"
        );
        for item in &items {
            let url = item["url"].as_str().unwrap();
            assert_eq!(url, url.to_lowercase());
            assert!(item.get("amount").is_none());
        }
        let Some(Record::Boosts(snapshot)) =
            records.iter().find(|r| matches!(r, Record::Boosts(_)))
        else {
            panic!("no snapshot")
        };
        let tokens: Vec<String> = snapshot
            .entries
            .iter()
            .map(|e| e.token.to_string())
            .collect();
        for e in &snapshot.entries {
            ranks
                .entry(e.token.to_string())
                .or_default()
                .push((env.t_ms, e.rank as usize));
        }
        if let Some(prev) = &previous {
            entries += tokens.iter().filter(|t| !prev.contains(t)).count();
            exits += prev.iter().filter(|t| !tokens.contains(t)).count();
        }
        previous = Some(tokens);
        snapshots += 1;
    }
    assert!(snapshots >= 45, "{snapshots} snapshots");
    assert!(
        entries >= 3 && exits >= 3,
        "entries {entries}, exits {exits}"
    );
    // The fast climber: from rank 20 or worse into the top 3 within a minute.
    let climbers: Vec<&String> = ranks
        .iter()
        .filter(|(_, seen)| {
            seen.iter().any(|(t0, r0)| {
                *r0 >= 20
                    && seen
                        .iter()
                        .any(|(t1, r1)| *r1 <= 3 && *t1 > *t0 && t1 - t0 <= 60_000)
            })
        })
        .map(|(token, _)| token)
        .collect();
    assert!(!climbers.is_empty(), "no fast climber");
    // And some move down.
    let fallers = ranks
        .values()
        .filter(|seen| {
            seen.iter()
                .any(|(t0, r0)| *r0 <= 5 && seen.iter().any(|(t1, r1)| *t1 > *t0 && *r1 >= r0 + 5))
        })
        .count();
    assert!(fallers >= 1);
    // Addresses are valid per chain (the parser validated every one that is not a fault);
    // about a fifth of the pool is on EVM chains.
    let evm = ranks.keys().filter(|t| !t.starts_with("solana:")).count();
    assert!(evm >= 1, "no EVM tokens listed");
}

#[test]
fn meme_tokens_crash_then_recover_partly() {
    let run = three_minutes();
    let mut series: HashMap<String, Vec<(u64, f64)>> = HashMap::new();
    for (env, records) in envelopes(run, Endpoint::DexscreenerTokens) {
        assert!(["solana", "base", "ethereum"].contains(&env.context.as_str()));
        for record in records {
            if let Record::Price(p) = record {
                let price = p.price.mantissa as f64 * 10f64.powi(p.price.expo);
                series
                    .entry(p.instrument.to_string())
                    .or_default()
                    .push((env.t_ms, price));
            }
        }
    }
    let crashed = series
        .values()
        .filter(|s| {
            s.iter().enumerate().any(|(i, (t0, p0))| {
                s[i..]
                    .iter()
                    .any(|(t1, p1)| t1 - t0 <= 120_000 && *p1 <= p0 * 0.70)
            })
        })
        .count();
    assert!(
        crashed >= 3,
        "only {crashed} tokens crashed by 30 % within 2 minutes"
    );
}

#[test]
fn birdeye_sol_follows_pyth_and_chain_reads_follow_the_keeper() {
    let run = three_minutes();
    let sol_feed = "ef0d8b6fda2ceba41da15d4095d1da392a0d2f8ed0c6c7bc0f4cfac8c280b56d";
    let mut pyth_sol: Vec<(u64, f64)> = Vec::new();
    let hermes =
        envelopes(run, Endpoint::HermesStream).chain(envelopes(run, Endpoint::HermesLatest));
    for (env, records) in hermes {
        for record in records {
            if let Record::Price(p) = record
                && p.instrument.to_string() == sol_feed
            {
                pyth_sol.push((env.t_ms, p.price.mantissa as f64 * 1e-8));
            }
        }
    }
    pyth_sol.sort_by_key(|(t, _)| *t);
    let mut compared = 0;
    for (env, records) in envelopes(run, Endpoint::BirdeyeMultiPrice) {
        for record in records {
            if let Record::Price(p) = record
                && p.instrument.to_string() == "solana:So11111111111111111111111111111111111111112"
            {
                // Against the Pyth SOL prices around it (an event may lack SOL, or be a fault).
                let value = p.price.mantissa as f64 * 10f64.powi(p.price.expo);
                let closest = pyth_sol
                    .iter()
                    .filter(|(t, _)| t.abs_diff(env.t_ms) <= 1_500)
                    .map(|(_, hermes)| (value / hermes - 1.0).abs())
                    .fold(f64::MAX, f64::min);
                assert!(closest < 0.005, "{value} is {closest} off Pyth");
                compared += 1;
            }
        }
    }
    assert!(compared >= 8, "{compared}");
    // Nothing on chain for the first ~25 s, then every feed.
    let mut first_found = None;
    let mut last_round_all_found = false;
    for (env, records) in envelopes(run, Endpoint::ChainRead) {
        let targets: Vec<_> = records
            .iter()
            .filter_map(|r| {
                if let Record::Target(t) = r {
                    Some(t)
                } else {
                    None
                }
            })
            .collect();
        if targets.iter().any(|t| t.price.is_some()) && first_found.is_none() {
            first_found = Some(env.t_ms - run.opts.start_ms);
        }
        last_round_all_found =
            targets.len() == run.opts.feeds as usize && targets.iter().all(|t| t.price.is_some());
    }
    let first = first_found.unwrap();
    assert!(
        (25_000..=35_000).contains(&first),
        "first on-chain price after {first} ms"
    );
    assert!(last_round_all_found);
}

#[test]
fn mesh_messages_come_from_two_providers_and_one_is_off() {
    let run = three_minutes();
    let mut origins: BTreeMap<String, Vec<(u64, String, f64)>> = BTreeMap::new();
    for (env, records) in envelopes(run, Endpoint::MeshPrice) {
        for record in records {
            if let Record::Price(p) = record {
                let PriceSource::Mesh(origin) = &p.source else {
                    panic!()
                };
                let value = p.price.mantissa as f64 * 10f64.powi(p.price.expo);
                origins.entry(origin.to_string()).or_default().push((
                    env.t_ms,
                    p.instrument.to_string(),
                    value,
                ));
            }
        }
    }
    assert_eq!(origins.len(), 2);
    let sol: Vec<Vec<(u64, f64)>> = origins
        .values()
        .map(|m| {
            m.iter()
                .filter(|(_, a, _)| a == "SOL")
                .map(|(t, _, v)| (*t, *v))
                .collect()
        })
        .collect();
    // Some message of the second provider is ~5 % above the first's nearest SOL price.
    let off = sol[1].iter().any(|(t, v)| {
        sol[0]
            .iter()
            .min_by_key(|(t0, _)| t0.abs_diff(*t))
            .is_some_and(|(_, v0)| v / v0 > 1.04)
    }) || sol[0].iter().any(|(t, v)| {
        sol[1]
            .iter()
            .min_by_key(|(t1, _)| t1.abs_diff(*t))
            .is_some_and(|(_, v1)| v / v1 > 1.04)
    });
    assert!(off, "no discrepancy: {sol:?}");
}

#[test]
fn tiny_and_empty_runs_work() {
    for (minutes, feeds, tokens) in [(0, 8, 60), (1, 0, 0), (1, 1, 3), (1, 2, 1)] {
        let run = run(SynthOptions {
            minutes,
            feeds,
            tokens,
            ..opts(1, 3)
        });
        let invalid = run
            .parsed
            .iter()
            .flat_map(|(_, r)| r)
            .filter(|r| matches!(r, Record::Invalid(_)))
            .count();
        assert_eq!(
            invalid as u64, run.summary.malformed,
            "{minutes} min, {feeds} feeds, {tokens} tokens"
        );
        let finals = run
            .items
            .iter()
            .rev()
            .take(5)
            .filter(|i| matches!(i, Item::Watermark { .. }))
            .count();
        assert_eq!(finals, 5);
    }
}

/// Writes `pipelines/bundled.rec`, the recording `sluice replay` uses without an argument.
#[test]
#[ignore = "writes pipelines/bundled.rec; run on purpose"]
fn write_bundled_recording() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines/bundled.rec");
    let opts = SynthOptions::default();
    let summary = synth::write_recording(&path, Codec::Zstd, &opts).unwrap();
    let size = std::fs::metadata(&path).unwrap().len();
    println!("{}: {size} bytes, {opts:?}, {summary:?}", path.display());
    assert!(size <= 5 << 20, "{size} bytes");
}

/// The committed bundled recording is what the generator writes with its defaults — so it
/// stays in step with the generator — within the 5 MB budget, and labelled synthetic.
#[test]
fn the_bundled_recording_is_the_generators_and_labelled_synthetic() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines/bundled.rec");
    let committed = std::fs::read(&path).unwrap();
    assert!(committed.len() <= 5 << 20, "{} bytes", committed.len());
    let reader = RecordingReader::from_bytes(Bytes::from(committed.clone())).unwrap();
    assert!(reader.meta().synthetic, "{:?}", reader.meta());
    assert!(
        reader.meta().label.to_lowercase().contains("synthetic"),
        "{:?}",
        reader.meta()
    );
    let dir = tempfile::tempdir().unwrap();
    let fresh = dir.path().join("bundled.rec");
    synth::write_recording(&fresh, Codec::Zstd, &SynthOptions::default()).unwrap();
    assert!(
        std::fs::read(&fresh).unwrap() == committed,
        "pipelines/bundled.rec differs from the generator's output: rewrite it with \
         `cargo test --test synth write_bundled_recording -- --ignored`"
    );
}
