//! Every fixture through its parser with concrete expectations, and property tests that no
//! input (random, truncated, mutated, mistyped, huge or deeply nested) makes a parser panic or
//! lose track of what was wrong.

use std::path::PathBuf;

use bytes::Bytes;
use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::Value;
use sluice::model::parse::{self, ParseContext, birdeye, chain, dexscreener, mesh};
use sluice::model::{
    Asset, AssetMap, BoostSnapshot, ChainTarget, Decimal, Endpoint, Envelope, FeedId, Instrument,
    Location, OnChainPrice, PriceSource, PriceTick, Record,
};

/// Ingest time of every test envelope: ten seconds after the fixtures' publish times.
const T_MS: u64 = 1_795_248_010_000;
const SKEW_MS: i64 = 5_000;

const BTC: &str = "e62df6c8b4a85fe1a67db44dc12de5db330f7ac66b72dc658afedf0f4a415b43";
const ETH: &str = "ff61491a931112ddf1bd8147cd1b641375f79f5825126d665480874634fd0ace";
const SOL_FEED: &str = "ef0d8b6fda2ceba41da15d4095d1da392a0d2f8ed0c6c7bc0f4cfac8c280b56d";
const WSOL: &str = "So11111111111111111111111111111111111111112";
const USDC: &str = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v";
const BONK: &str = "DezXAZ8z7PnrnRJjz3wXBoRgixCa6xjnB7YaB1pPB263";
const EXA: &str = "CASi45ub7Qe4ZE36UT5G6cU4ud8Fhhe4deS4F3cwpump";

fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn fixture_text(name: &str) -> String {
    String::from_utf8(fixture(name)).unwrap()
}

fn assets() -> AssetMap {
    let mut assets = AssetMap::default();
    assets.insert(Instrument::Feed(feed(BTC)), Asset::named("BTC"));
    assets
}

fn envelope(endpoint: Endpoint, context: &str, raw: impl Into<Bytes>) -> Envelope {
    Envelope {
        endpoint,
        t_ms: T_MS,
        context: context.to_owned(),
        raw: raw.into(),
        seq: 0,
    }
}

fn parse_env(env: &Envelope) -> Vec<Record> {
    let assets = assets();
    let ctx = ParseContext {
        assets: &assets,
        max_future_skew_ms: SKEW_MS,
    };
    let mut out = Vec::new();
    parse::parse_envelope(env, &ctx, &mut out);
    out
}

fn parse_bytes(endpoint: Endpoint, context: &str, raw: &[u8]) -> Vec<Record> {
    parse_env(&envelope(endpoint, context, Bytes::copy_from_slice(raw)))
}

fn feed(hex: &str) -> FeedId {
    hex.parse().unwrap()
}

fn solana(address: &str) -> Instrument {
    Instrument::Token(sluice::model::TokenRef::parse("solana", address).unwrap())
}

fn prices(records: &[Record]) -> Vec<&PriceTick> {
    records
        .iter()
        .filter_map(|r| match r {
            Record::Price(p) => Some(p),
            _ => None,
        })
        .collect()
}

fn invalids(records: &[Record]) -> Vec<(String, String)> {
    records
        .iter()
        .filter_map(|r| match r {
            Record::Invalid(i) => Some((i.at.to_string(), i.reason.clone())),
            _ => None,
        })
        .collect()
}

fn only_snapshot(records: &[Record]) -> &BoostSnapshot {
    match records {
        [Record::Boosts(snapshot)] => snapshot,
        other => panic!("expected exactly one snapshot, got {other:?}"),
    }
}

fn dec(text: &str) -> Decimal {
    Decimal::parse(text).unwrap()
}

// ---------------------------------------------------------------------------------------------
// DEX Screener

#[test]
fn boosts_top_ranks_every_item() {
    let out = parse_bytes(
        Endpoint::DexscreenerBoosts,
        "",
        &fixture("dexscreener_token_boosts_top.json"),
    );
    let snapshot = only_snapshot(&out);
    let got: Vec<(u32, String, Decimal)> = snapshot
        .entries
        .iter()
        .map(|e| (e.rank, e.token.to_string(), e.total_amount))
        .collect();
    assert_eq!(
        got,
        [
            (1, format!("solana:{EXA}"), dec("1500")),
            (
                2,
                "base:0xeee65f53e9421ce50211670eae679f02e8d28a79".into(),
                dec("1000")
            ),
            (
                3,
                "solana:6KTAb8dLcukC7edhDQ7cn5d4gEYkbUrMWeWQLGsCpump".into(),
                dec("500")
            ),
            (
                4,
                "bsc:0x023c39c200661fccd268a29a0d347301ef56e64d".into(),
                dec("150")
            ),
            (
                5,
                "solana:96dLaYyNoVKf58ZTBqNAYT3j5qcdsyuMNmPfYetWpump".into(),
                dec("100")
            ),
        ]
    );
}

#[test]
fn boosts_latest_shape_is_accepted() {
    let out = parse_bytes(
        Endpoint::DexscreenerBoosts,
        "",
        &fixture("dexscreener_token_boosts_latest.json"),
    );
    let snapshot = only_snapshot(&out);
    let got: Vec<(u32, Decimal)> = snapshot
        .entries
        .iter()
        .map(|e| (e.rank, e.total_amount))
        .collect();
    assert_eq!(got, [(1, dec("10")), (2, dec("1500")), (3, dec("30"))]);
    assert_eq!(&*snapshot.entries[2].token.chain, "ethereum");
}

#[test]
fn tokens_v1_prices_each_base_token_by_its_most_liquid_pair() {
    let raw = fixture("dexscreener_tokens_v1.json");
    let out = parse_bytes(Endpoint::DexscreenerTokens, "solana", &raw);
    assert!(invalids(&out).is_empty(), "{out:?}");
    let ticks = prices(&out);
    assert_eq!(ticks.len(), 2);
    assert_eq!(ticks[0].instrument, solana(EXA));
    assert_eq!(ticks[0].price, dec("0.00001585"));
    assert_eq!(ticks[0].change_24h, Some(dec("412.8")));
    assert_eq!(ticks[1].instrument, solana(BONK));
    assert_eq!(ticks[1].price, dec("0.00001412"));
    assert_eq!(ticks[1].change_24h, Some(dec("4.12")));
    for tick in &ticks {
        assert_eq!(tick.publish_ms, T_MS as i64);
        assert_eq!(tick.source, PriceSource::Dexscreener);
        assert_eq!(tick.conf, 0);
        assert_eq!(tick.update_data, None);
    }
    // The choice is by liquidity, not by position: reversed, BONK still gets the deep pool.
    let mut pairs: Vec<Value> = serde_json::from_slice(&raw).unwrap();
    pairs.reverse();
    let reversed = serde_json::to_vec(&pairs).unwrap();
    let out = parse_bytes(Endpoint::DexscreenerTokens, "solana", &reversed);
    let bonk = prices(&out)
        .into_iter()
        .find(|t| t.instrument == solana(BONK))
        .unwrap();
    assert_eq!(bonk.price, dec("0.00001412"));
}

#[test]
fn token_pairs_v1_skips_the_pair_without_a_usd_price() {
    let out = parse_bytes(
        Endpoint::DexscreenerTokens,
        "solana",
        &fixture("dexscreener_token_pairs_v1.json"),
    );
    assert!(invalids(&out).is_empty(), "{out:?}");
    let ticks = prices(&out);
    assert_eq!(ticks.len(), 1);
    assert_eq!(
        (ticks[0].instrument.clone(), ticks[0].price),
        (solana(BONK), dec("0.00001412"))
    );
}

#[test]
fn wrapped_pair_responses() {
    let out = parse_bytes(
        Endpoint::DexscreenerTokens,
        "",
        &fixture("dexscreener_pairs.json"),
    );
    let ticks = prices(&out);
    assert_eq!(out.len(), 1);
    assert_eq!(
        (ticks[0].instrument.clone(), ticks[0].price),
        (solana(WSOL), dec("142.37"))
    );

    let out = parse_bytes(
        Endpoint::DexscreenerTokens,
        "",
        &fixture("dexscreener_search.json"),
    );
    let ticks = prices(&out);
    assert_eq!(out.len(), 1);
    assert_eq!(ticks[0].price, dec("142.41"));
    assert_eq!(ticks[0].change_24h, Some(dec("-2.27")));

    let out = parse_bytes(
        Endpoint::DexscreenerTokens,
        "",
        &fixture("dexscreener_latest_dex_tokens.json"),
    );
    let got: Vec<(String, Decimal)> = prices(&out)
        .iter()
        .map(|t| (t.instrument.to_string(), t.price))
        .collect();
    assert_eq!(
        got,
        [
            (format!("solana:{WSOL}"), dec("142.41")),
            (
                "base:0x940181a94a35a4569e4529a3cdfb74e38fd98631".into(),
                dec("0.9713")
            ),
        ]
    );

    let out = parse_bytes(
        Endpoint::DexscreenerTokens,
        "",
        &fixture("dexscreener_pairs_not_found.json"),
    );
    assert!(out.is_empty(), "{out:?}");
}

#[test]
fn profiles_and_orders_parse_through_their_types() {
    let profiles =
        dexscreener::parse_token_profiles(&fixture("dexscreener_token_profiles_latest.json"))
            .unwrap();
    assert_eq!(profiles.len(), 2);
    assert_eq!(
        profiles[0].token_address,
        "H6BVScJy9uUxcJnTPkyRFA6CAFjF1YveCHK1ATbQpump"
    );
    assert_eq!(
        (profiles[0].cto, profiles[1].cto),
        (Some(false), Some(true))
    );
    assert_eq!(profiles[1].header, None);
    let links = profiles[0].links.as_ref().unwrap();
    assert_eq!(
        (links[0].label.as_deref(), links[1].kind.as_deref()),
        (Some("Website"), Some("twitter"))
    );

    let orders = dexscreener::parse_orders(&fixture("dexscreener_orders.json")).unwrap();
    let got: Vec<(&str, &str, i64)> = orders
        .iter()
        .map(|o| (o.kind.as_str(), o.status.as_str(), o.payment_timestamp))
        .collect();
    assert_eq!(
        got,
        [
            ("tokenProfile", "approved", 1795161600123),
            ("tokenAd", "processing", 1795240012456)
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// Birdeye

#[test]
fn birdeye_multi_price_gives_three_sorted_ticks_and_skips_the_unknown_token() {
    let out = parse_bytes(
        Endpoint::BirdeyeMultiPrice,
        "",
        &fixture("birdeye_multi_price.json"),
    );
    let got: Vec<(Instrument, Decimal, i64, Option<Decimal>)> = prices(&out)
        .iter()
        .map(|t| (t.instrument.clone(), t.price, t.publish_ms, t.change_24h))
        .collect();
    assert_eq!(
        got,
        [
            (
                solana(BONK),
                Decimal::new(141203118, -13),
                1_795_247_988_000,
                Some(dec("4.1207731"))
            ),
            (
                solana(USDC),
                dec("0.9999312"),
                1_795_247_990_000,
                Some(dec("0.0041"))
            ),
            (
                solana(WSOL),
                dec("142.371188204552"),
                1_795_247_993_000,
                Some(dec("-2.310412873301"))
            ),
        ]
    );
    assert_eq!(out.len(), 3);
    assert!(
        prices(&out)
            .iter()
            .all(|t| t.source == PriceSource::Birdeye)
    );
}

#[test]
fn birdeye_price_takes_its_address_from_the_context() {
    let out = parse_bytes(
        Endpoint::BirdeyePrice,
        &format!("solana/{WSOL}"),
        &fixture("birdeye_price.json"),
    );
    let ticks = prices(&out);
    assert_eq!(out.len(), 1);
    assert_eq!(ticks[0].instrument, solana(WSOL));
    assert_eq!(ticks[0].price, dec("142.371188204552"));
    assert_eq!(ticks[0].publish_ms, 1_795_247_993_000);
}

#[test]
fn birdeye_error_bodies_are_one_invalid_record() {
    for (name, message) in [
        (
            "birdeye_error_400.json",
            "Invalid request parameters or payload.",
        ),
        (
            "birdeye_error_401.json",
            "Unauthorized. Authentication required.",
        ),
        ("birdeye_error_429.json", "Too many requests"),
    ] {
        for (endpoint, context) in [
            (Endpoint::BirdeyeMultiPrice, "solana".to_owned()),
            (Endpoint::BirdeyePrice, format!("solana/{WSOL}")),
        ] {
            let out = parse_bytes(endpoint, &context, &fixture(name));
            assert_eq!(
                invalids(&out),
                [("message".into(), format!("birdeye error: {message}"))],
                "{name}"
            );
            assert_eq!(out.len(), 1);
        }
    }
}

#[test]
fn birdeye_websocket_fixtures() {
    let assets = assets();
    let ctx = ParseContext {
        assets: &assets,
        max_future_skew_ms: SKEW_MS,
    };
    let text = fixture_text("birdeye_ws_price_data.json");
    let tick = birdeye::parse_ws_message(&text, "solana", T_MS, &ctx)
        .unwrap()
        .unwrap();
    assert_eq!(tick.instrument, solana(WSOL));
    assert_eq!(tick.price, dec("142.37118"));
    assert_eq!(tick.publish_ms, 1_795_247_940_000);
    let simple =
        birdeye::parse_ws_subscribe(&fixture_text("birdeye_ws_subscribe_price.json")).unwrap();
    assert_eq!(
        (simple.kind.as_str(), simple.data.address.as_deref()),
        ("SUBSCRIBE_PRICE", Some(WSOL))
    );
    let complex =
        birdeye::parse_ws_subscribe(&fixture_text("birdeye_ws_subscribe_price_multi.json"))
            .unwrap();
    assert_eq!(complex.data.query_type, "complex");
    assert!(complex.data.query.unwrap().contains(BONK));
    // A subscription is not a price message.
    assert_eq!(
        birdeye::parse_ws_message(
            &fixture_text("birdeye_ws_subscribe_price.json"),
            "",
            T_MS,
            &ctx
        ),
        Ok(None)
    );
}

// ---------------------------------------------------------------------------------------------
// Hermes

/// One SSE event: its type (empty for unnamed events) and its data lines joined.
struct SseEvent {
    event: String,
    data: String,
}

/// SSE framing as the HTML spec defines it: `field:value` lines (one optional space after the
/// colon), `:` comments, events ended by a blank line; events without data are not dispatched.
fn sse_events(stream: &str) -> Vec<SseEvent> {
    let mut events = Vec::new();
    let mut event = String::new();
    let mut data: Vec<&str> = Vec::new();
    for line in stream.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            if !data.is_empty() {
                events.push(SseEvent {
                    event: std::mem::take(&mut event),
                    data: data.join("\n"),
                });
            }
            event.clear();
            data.clear();
            continue;
        }
        if line.starts_with(':') {
            continue;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "data" => data.push(value),
            "event" => event = value.to_owned(),
            _ => {}
        }
    }
    events
}

#[test]
fn hermes_latest_gives_three_ticks_sharing_one_zero_copy_blob() {
    let raw = Bytes::from(fixture("hermes_latest.json"));
    let env = envelope(Endpoint::HermesLatest, "", raw.clone());
    let out = parse_env(&env);
    let ticks = prices(&out);
    assert_eq!(out.len(), 3);
    let got: Vec<(Instrument, Asset, i64, i32, u64, i64)> = ticks
        .iter()
        .map(|t| {
            (
                t.instrument.clone(),
                t.asset.clone(),
                t.price.mantissa,
                t.price.expo,
                t.conf,
                t.publish_ms,
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (
                Instrument::Feed(feed(BTC)),
                Asset::named("BTC"),
                9712345678901,
                -8,
                4512345678,
                1_795_248_000_000
            ),
            (
                Instrument::Feed(feed(ETH)),
                Asset::Feed(feed(ETH)),
                341234567890,
                -8,
                189123456,
                1_795_248_000_000
            ),
            (
                Instrument::Feed(feed(SOL_FEED)),
                Asset::Feed(feed(SOL_FEED)),
                14237123456,
                -8,
                9123456,
                1_795_248_000_000
            ),
        ]
    );
    let doc: Value = serde_json::from_slice(&raw).unwrap();
    let blob = doc["binary"]["data"][0].as_str().unwrap();
    let start = raw.as_ptr().addr();
    for tick in &ticks {
        assert_eq!(tick.source, PriceSource::Hermes);
        assert_eq!(tick.change_24h, None);
        let data = tick.update_data.as_ref().unwrap();
        assert_eq!(&data[..], blob.as_bytes());
        assert!(
            (start..start + raw.len()).contains(&data.as_ptr().addr()),
            "update data was copied"
        );
    }
}

#[test]
fn hermes_stream_events_give_3_3_1_ticks_and_one_notice() {
    let events = sse_events(&fixture_text("hermes_stream.sse"));
    assert_eq!(events.len(), 4);
    let per_event: Vec<Vec<Record>> = events
        .iter()
        .map(|e| parse_bytes(Endpoint::HermesStream, &e.event, e.data.as_bytes()))
        .collect();
    let counts: Vec<usize> = per_event.iter().map(|out| prices(out).len()).collect();
    assert_eq!(counts, [3, 3, 1, 0]);
    assert!(
        per_event
            .iter()
            .flatten()
            .all(|r| !matches!(r, Record::Invalid(_)))
    );
    let first: Vec<(i64, i64)> = prices(&per_event[0])
        .iter()
        .map(|t| (t.price.mantissa, t.publish_ms))
        .collect();
    assert_eq!(
        first,
        [
            (9712346678901, 1_795_248_001_000),
            (341234617890, 1_795_248_001_000),
            (14237125556, 1_795_248_001_000)
        ]
    );
    let last = prices(&per_event[2]);
    assert_eq!(
        (last[0].instrument.clone(), last[0].publish_ms),
        (Instrument::Feed(feed(SOL_FEED)), 1_795_248_003_000)
    );
    assert!(
        last[0]
            .update_data
            .as_ref()
            .is_some_and(|d| d.starts_with(b"504e4155"))
    );
    match per_event[3].as_slice() {
        [Record::Notice(notice)] => {
            assert_eq!(notice.text, "Connection timeout reached (24h)");
            assert_eq!(notice.endpoint, Endpoint::HermesStream);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn hermes_404_text_is_the_reason() {
    let raw = fixture("hermes_404_price_ids_not_found.txt");
    let out = parse_bytes(Endpoint::HermesLatest, "", &raw);
    let text = String::from_utf8(raw).unwrap();
    assert_eq!(invalids(&out), [("byte 0".into(), text.trim().to_owned())]);
    assert_eq!(out.len(), 1);
}

// ---------------------------------------------------------------------------------------------
// Our own schemas

fn mesh_message() -> mesh::MeshPriceMessage {
    mesh::MeshPriceMessage {
        v: mesh::MESH_VERSION,
        asset: "SOL".into(),
        mantissa: 14_237_123_456,
        expo: -8,
        chain: Some("solana".into()),
        publish_ms: 1_795_248_000_123,
        change_24h: Some("-2.31".into()),
        origin: "7d4f2a0c9e8b1a3f5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b".into(),
        seq: 42,
    }
}

fn mesh_wire() -> String {
    mesh::to_wire(&mesh_message(), &"c0".repeat(64))
}

fn chain_round() -> String {
    let price = OnChainPrice {
        price: 9_712_345_678_901,
        conf: 4_512_345_678,
        expo: -8,
        publish_time: 1_795_248_000,
    };
    chain::to_json(&chain::ChainReadRound::new(
        Some(12345),
        vec![
            chain::ChainRead::found(feed(BTC), price),
            chain::ChainRead::not_found(feed(ETH)),
        ],
    ))
}

#[test]
fn mesh_wire_parses_and_keeps_its_signed_bytes() {
    let wire = mesh_wire();
    let out = parse_bytes(Endpoint::MeshPrice, "", wire.as_bytes());
    let ticks = prices(&out);
    assert_eq!(out.len(), 1);
    assert_eq!(ticks[0].instrument, Instrument::Symbol("SOL".into()));
    assert_eq!(ticks[0].price, Decimal::new(14_237_123_456, -8));
    assert_eq!(ticks[0].change_24h, Some(dec("-2.31")));
    assert_eq!(ticks[0].source.family(), "mesh");
    let parts = mesh::split_wire(wire.as_bytes()).unwrap();
    assert_eq!(parts.msg.get(), mesh_message().to_json());
}

#[test]
fn chain_round_parses_to_targets() {
    let out = parse_bytes(Endpoint::ChainRead, "", chain_round().as_bytes());
    let targets: Vec<&ChainTarget> = out
        .iter()
        .filter_map(|r| match r {
            Record::Target(t) => Some(t),
            _ => None,
        })
        .collect();
    assert_eq!(targets.len(), 2);
    assert_eq!(targets[0].price.map(|p| p.price), Some(9_712_345_678_901));
    assert_eq!(
        (targets[1].feed, targets[1].price, targets[1].block),
        (feed(ETH), None, Some(12345))
    );
}

// ---------------------------------------------------------------------------------------------
// Robustness

/// Every ingestible payload, with the endpoint and context it arrives with.
fn corpus() -> Vec<(Endpoint, String, Vec<u8>)> {
    let mut corpus = Vec::new();
    let mut add = |endpoint: Endpoint, context: &str, raw: Vec<u8>| {
        corpus.push((endpoint, context.to_owned(), raw))
    };
    for name in [
        "dexscreener_token_boosts_top.json",
        "dexscreener_token_boosts_latest.json",
    ] {
        add(Endpoint::DexscreenerBoosts, "", fixture(name));
    }
    for name in [
        "dexscreener_tokens_v1.json",
        "dexscreener_token_pairs_v1.json",
        "dexscreener_pairs.json",
        "dexscreener_pairs_not_found.json",
        "dexscreener_search.json",
        "dexscreener_latest_dex_tokens.json",
    ] {
        add(Endpoint::DexscreenerTokens, "solana", fixture(name));
    }
    for name in [
        "birdeye_multi_price.json",
        "birdeye_error_400.json",
        "birdeye_error_401.json",
        "birdeye_error_429.json",
    ] {
        add(Endpoint::BirdeyeMultiPrice, "solana", fixture(name));
    }
    add(
        Endpoint::BirdeyePrice,
        &format!("solana/{WSOL}"),
        fixture("birdeye_price.json"),
    );
    add(Endpoint::HermesLatest, "", fixture("hermes_latest.json"));
    add(
        Endpoint::HermesLatest,
        "",
        fixture("hermes_404_price_ids_not_found.txt"),
    );
    for event in sse_events(&fixture_text("hermes_stream.sse")) {
        add(
            Endpoint::HermesStream,
            &event.event,
            event.data.into_bytes(),
        );
    }
    add(Endpoint::MeshPrice, "", mesh_wire().into_bytes());
    add(Endpoint::ChainRead, "", chain_round().into_bytes());
    add(
        Endpoint::ChainTx,
        "",
        br#"{"kind":"tx_confirmed","batches":[3],"hash":"0xab","block":42,"gas_used":61234,"fee_paid":"123"}"#
            .to_vec(),
    );
    // Payloads sluice does not ingest still must not upset any parser.
    for name in [
        "dexscreener_token_profiles_latest.json",
        "dexscreener_orders.json",
        "birdeye_ws_price_data.json",
        "birdeye_ws_subscribe_price.json",
        "birdeye_ws_subscribe_price_multi.json",
    ] {
        add(Endpoint::DexscreenerBoosts, "", fixture(name));
    }
    corpus
}

/// Every fixture file is in the corpus or checked by a typed parser above; a new one fails here
/// until it is.
#[test]
fn every_fixture_is_exercised() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let used = "dexscreener_token_boosts_top.json dexscreener_token_boosts_latest.json dexscreener_tokens_v1.json \
        dexscreener_token_pairs_v1.json dexscreener_pairs.json dexscreener_pairs_not_found.json dexscreener_search.json \
        dexscreener_latest_dex_tokens.json dexscreener_token_profiles_latest.json dexscreener_orders.json \
        birdeye_multi_price.json birdeye_price.json birdeye_error_400.json birdeye_error_401.json birdeye_error_429.json \
        birdeye_ws_price_data.json birdeye_ws_subscribe_price.json birdeye_ws_subscribe_price_multi.json \
        hermes_latest.json hermes_stream.sse hermes_404_price_ids_not_found.txt";
    for entry in std::fs::read_dir(dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        assert!(
            used.split_whitespace().any(|u| u == name),
            "fixture {name} is not exercised"
        );
    }
}

/// The properties every parse must have, whatever the input.
fn check(endpoint: Endpoint, context: &str, raw: &[u8]) -> Result<Vec<Record>, TestCaseError> {
    let out = parse_bytes(endpoint, context, raw);
    let mut snapshots = 0;
    for record in &out {
        match record {
            Record::Invalid(i) => {
                prop_assert!(!i.reason.trim().is_empty(), "empty reason in {i:?}");
                prop_assert_eq!(i.endpoint, endpoint);
                match &i.at {
                    Location::Offset(o) => {
                        prop_assert!(*o <= raw.len() as u64, "offset {o} past the end")
                    }
                    Location::Path(p) => prop_assert!(!p.is_empty(), "empty path in {i:?}"),
                }
            }
            Record::Price(p) => {
                prop_assert!(p.price.is_positive(), "non-positive price {p:?}");
                prop_assert!(p.publish_ms <= T_MS as i64 + SKEW_MS, "future price {p:?}");
            }
            Record::Boosts(b) => {
                snapshots += 1;
                prop_assert!(
                    b.entries.windows(2).all(|w| w[0].rank < w[1].rank),
                    "ranks out of order"
                );
            }
            Record::ChainTx(tx) => {
                prop_assert!(
                    tx.json.starts_with(&format!("{{\"kind\":\"{}\"", tx.kind)),
                    "kind not first in {tx:?}"
                );
                prop_assert!(serde_json::from_str::<Value>(&tx.json).is_ok(), "{tx:?}");
            }
            Record::Target(_) | Record::Notice(_) => {}
        }
    }
    prop_assert!(snapshots <= 1);
    let is_json = serde_json::from_slice::<serde::de::IgnoredAny>(raw).is_ok();
    let is_notice = endpoint == Endpoint::HermesStream && context == "error";
    if !is_json && !is_notice {
        prop_assert!(
            out.iter().any(|r| matches!(r, Record::Invalid(_))),
            "not JSON, yet no invalid record: {:?}",
            String::from_utf8_lossy(raw)
        );
    }
    Ok(out)
}

/// Runs `raw` through its own endpoint and every other one.
fn check_everywhere(own: Endpoint, context: &str, raw: &[u8]) -> Result<(), TestCaseError> {
    check(own, context, raw)?;
    for endpoint in Endpoint::ALL {
        if endpoint != own {
            check(endpoint, "", raw)?;
        }
    }
    Ok(())
}

/// JSON pointers to every node of `value`, the root included.
fn pointers(value: &Value, at: String, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                let key = key.replace('~', "~0").replace('/', "~1");
                pointers(child, format!("{at}/{key}"), out);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                pointers(child, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
    out.push(at);
}

/// A value of another JSON type than `value`.
fn other_kind(value: &Value, pick: usize) -> Value {
    let choices: Vec<Value> = [
        Value::Null,
        Value::Bool(true),
        serde_json::json!(5),
        serde_json::json!(-1.5),
        serde_json::json!("5"),
        serde_json::json!(""),
        serde_json::json!([]),
        serde_json::json!([1, "x"]),
        serde_json::json!({}),
        serde_json::json!({"price": "1"}),
    ]
    .into_iter()
    .filter(|c| std::mem::discriminant(c) != std::mem::discriminant(value))
    .collect();
    choices[pick % choices.len()].clone()
}

const MARKER: &str = "__sluice_substitute__";

/// The JSON document with the node at `pointer` replaced by raw text.
fn substitute(doc: &Value, pointer: &str, raw: &str) -> Vec<u8> {
    let mut doc = doc.clone();
    if let Some(node) = doc.pointer_mut(pointer) {
        *node = Value::String(MARKER.into());
    }
    serde_json::to_string(&doc)
        .unwrap()
        .replacen(&format!("\"{MARKER}\""), raw, 1)
        .into_bytes()
}

const HUGE: [&str; 7] = [
    "1e999999",
    "-1e999999",
    "1e-999999",
    "1234567890123456789012345678901234567890",
    "-1234567890123456789012345678901234567890",
    "18446744073709551616",
    "0.00000000000000000000000000000000000000001",
];

fn deep(levels: usize, closed: bool) -> String {
    let mut text = "[".repeat(levels);
    if closed {
        text.push_str(&"]".repeat(levels));
    }
    text
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    // serde_json itself stops at 128 levels when it builds values...
    let err = serde_json::from_str::<Value>(&deep(10_000, true)).unwrap_err();
    assert!(
        err.to_string().contains("recursion limit exceeded"),
        "{err}"
    );
    // ...and the parsers, which never build values, refuse what they do not expect.
    for endpoint in Endpoint::ALL {
        for closed in [true, false] {
            let raw = deep(10_000, closed);
            let out = parse_bytes(endpoint, "", raw.as_bytes());
            assert!(
                out.iter().any(|r| matches!(r, Record::Invalid(_))),
                "{endpoint}: {out:?}"
            );
        }
    }
}

#[test]
fn empty_and_blank_payloads_are_invalid() {
    for endpoint in Endpoint::ALL {
        for raw in ["", " ", "\n\n", "null", "0", "\"\"", "true"] {
            let out = parse_bytes(endpoint, "", raw.as_bytes());
            assert!(
                out.iter().any(|r| matches!(r, Record::Invalid(_))),
                "{endpoint} {raw:?}: {out:?}"
            );
        }
    }
}

fn corpus_entry() -> impl Strategy<Value = (Endpoint, String, Vec<u8>)> {
    let corpus = corpus();
    (0..corpus.len()).prop_map(move |i| corpus[i].clone())
}

/// A corpus entry that is a JSON document, parsed.
fn json_entry() -> impl Strategy<Value = (Endpoint, String, Value)> {
    let docs: Vec<(Endpoint, String, Value)> = corpus()
        .into_iter()
        .filter_map(|(e, c, raw)| serde_json::from_slice(&raw).ok().map(|v| (e, c, v)))
        .collect();
    (0..docs.len()).prop_map(move |i| docs[i].clone())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_bytes(raw in proptest::collection::vec(any::<u8>(), 0..300), context in prop::sample::select(vec!["", "error", "solana", "solana/x"])) {
        for endpoint in Endpoint::ALL {
            check(endpoint, context, &raw)?;
        }
    }

    #[test]
    fn random_json_like_text(raw in r#"[\[\]{}":,0-9a-z .eE+\-\\]{0,200}"#) {
        for endpoint in Endpoint::ALL {
            check(endpoint, "", raw.as_bytes())?;
        }
    }

    #[test]
    fn truncated_fixtures((endpoint, context, raw) in corpus_entry(), cut in any::<Index>()) {
        let cut = cut.index(raw.len() + 1);
        check_everywhere(endpoint, &context, &raw[..cut])?;
    }

    #[test]
    fn mutated_fixtures((endpoint, context, mut raw) in corpus_entry(), edits in proptest::collection::vec((any::<Index>(), any::<u8>()), 1..8)) {
        for (at, byte) in edits {
            if !raw.is_empty() {
                let i = at.index(raw.len());
                raw[i] = byte;
            }
        }
        check_everywhere(endpoint, &context, &raw)?;
    }

    #[test]
    fn wrong_types_in_fields((endpoint, context, doc) in json_entry(), node in any::<Index>(), pick in any::<usize>()) {
        let mut all = Vec::new();
        pointers(&doc, String::new(), &mut all);
        let pointer = &all[node.index(all.len())];
        let mut changed = doc.clone();
        if let Some(target) = changed.pointer_mut(pointer) {
            *target = other_kind(target, pick);
        }
        check_everywhere(endpoint, &context, &serde_json::to_vec(&changed).unwrap())?;
    }

    #[test]
    fn huge_numbers_in_fields((endpoint, context, doc) in json_entry(), node in any::<Index>(), huge in prop::sample::select(HUGE.to_vec())) {
        let mut all = Vec::new();
        pointers(&doc, String::new(), &mut all);
        let raw = substitute(&doc, &all[node.index(all.len())], huge);
        check_everywhere(endpoint, &context, &raw)?;
    }

    #[test]
    fn deep_nesting_in_fields((endpoint, context, doc) in json_entry(), node in any::<Index>(), closed in any::<bool>()) {
        let mut all = Vec::new();
        pointers(&doc, String::new(), &mut all);
        let raw = substitute(&doc, &all[node.index(all.len())], &deep(10_000, closed));
        check_everywhere(endpoint, &context, &raw)?;
    }

    /// Whatever parser a payload goes through, a field given a value of the wrong type either
    /// costs nothing or is reported: good records are never lost silently. (`null` and `[]`
    /// are left out: many fields are nullable, and an empty list of items is a valid answer.)
    #[test]
    fn wrong_types_never_drop_good_records_silently((endpoint, context, doc) in json_entry(), node in any::<Index>(), pick in any::<usize>()) {
        let good = |records: &[Record]| -> usize {
            records
                .iter()
                .map(|r| match r {
                    Record::Boosts(b) => b.entries.len(),
                    Record::Invalid(_) => 0,
                    _ => 1,
                })
                .sum()
        };
        let before = good(&parse_bytes(endpoint, &context, &serde_json::to_vec(&doc).unwrap()));
        let mut all = Vec::new();
        pointers(&doc, String::new(), &mut all);
        let pointer = &all[node.index(all.len())];
        let mut changed = doc.clone();
        if let Some(target) = changed.pointer_mut(pointer) {
            let allowed = |v: &Value| !v.is_null() && *v != Value::Array(Vec::new());
            let Some(replacement) = (0..3).map(|k| other_kind(target, pick + k)).find(allowed)
            else {
                return Ok(());
            };
            *target = replacement;
        }
        let out = check(endpoint, &context, &serde_json::to_vec(&changed).unwrap())?;
        let reported = out.iter().any(|r| matches!(r, Record::Invalid(_)));
        prop_assert!(
            good(&out) >= before || reported,
            "{:?} lost {} good record(s) silently when {} became {}",
            endpoint,
            before - good(&out),
            pointer,
            changed.pointer(pointer).map(|v| v.to_string()).unwrap_or_default()
        );
    }

    /// One broken feed never costs the others their ticks.
    #[test]
    fn one_bad_feed_spares_the_rest(broken in 0usize..3, node in any::<Index>(), pick in any::<usize>()) {
        let doc: Value = serde_json::from_slice(&fixture("hermes_latest.json")).unwrap();
        let mut inside = Vec::new();
        pointers(&doc["parsed"][broken], format!("/parsed/{broken}"), &mut inside);
        let pointer = &inside[node.index(inside.len())];
        let mut changed = doc.clone();
        if let Some(target) = changed.pointer_mut(pointer) {
            *target = other_kind(target, pick);
        }
        let out = check(Endpoint::HermesLatest, "", &serde_json::to_vec(&changed).unwrap())?;
        let ticked: Vec<FeedId> = prices(&out)
            .iter()
            .filter_map(|t| match t.instrument { Instrument::Feed(id) => Some(id), _ => None })
            .collect();
        for (i, id) in [BTC, ETH, SOL_FEED].iter().enumerate() {
            if i != broken {
                prop_assert!(ticked.contains(&feed(id)), "feed {i} lost when {pointer} broke: {out:?}");
            }
        }
        let reported = out.iter().any(|r| matches!(r, Record::Invalid(_)));
        prop_assert!(ticked.len() == 3 || reported, "feed {broken} dropped silently when {pointer} broke");
        prop_assert!(prices(&out).iter().all(|t| t.update_data.is_some()));
    }

    /// One broken boost keeps every other entry at its own rank.
    #[test]
    fn one_bad_boost_spares_the_rest(broken in 0usize..5, node in any::<Index>(), pick in any::<usize>()) {
        let doc: Value = serde_json::from_slice(&fixture("dexscreener_token_boosts_top.json")).unwrap();
        let mut inside = Vec::new();
        pointers(&doc[broken], format!("/{broken}"), &mut inside);
        let pointer = &inside[node.index(inside.len())];
        let mut changed = doc.clone();
        if let Some(target) = changed.pointer_mut(pointer) {
            *target = other_kind(target, pick);
        }
        let out = check(Endpoint::DexscreenerBoosts, "", &serde_json::to_vec(&changed).unwrap())?;
        let snapshot = out.iter().find_map(|r| match r { Record::Boosts(b) => Some(b), _ => None });
        prop_assert!(snapshot.is_some());
        let ranks: Vec<u32> = snapshot.map(|s| s.entries.iter().map(|e| e.rank).collect()).unwrap_or_default();
        let reported = out.iter().any(|r| matches!(r, Record::Invalid(_)));
        prop_assert!(ranks.len() == 5 || reported, "boost {broken} dropped silently when {pointer} broke");
        for rank in 1..=5u32 {
            if rank as usize != broken + 1 {
                prop_assert!(ranks.contains(&rank), "rank {rank} lost when {pointer} broke");
            }
        }
    }

    #[test]
    fn mesh_wire_round_trips(mantissa in 1i64.., expo in -30i32..=30, seq in any::<u64>(), asset in "[A-Z]{1,8}(/[A-Z]{1,4})?", change in proptest::option::of("-?[0-9]{1,6}\\.[0-9]{1,6}")) {
        let msg = mesh::MeshPriceMessage { mantissa, expo, seq, asset: asset.clone(), change_24h: change, ..mesh_message() };
        prop_assert_eq!(msg.to_json(), serde_json::to_string(&msg).unwrap());
        let out = check(Endpoint::MeshPrice, "", mesh::to_wire(&msg, &"0f".repeat(64)).as_bytes())?;
        prop_assert!(matches!(&out[..], [Record::Price(p)] if p.price == Decimal::new(mantissa, expo) && p.instrument == Instrument::Symbol(asset.as_str().into())), "{:?}", out);
    }

    #[test]
    fn chain_round_trips(price in any::<i64>(), conf in any::<u64>(), expo in any::<i32>(), publish_time in any::<i64>(), block in proptest::option::of(any::<u64>()), error in "[ -~]{0,20}") {
        let read = OnChainPrice { price, conf, expo, publish_time };
        let round = chain::ChainReadRound::new(block, vec![chain::ChainRead::found(feed(BTC), read), chain::ChainRead::failed(feed(ETH), &error)]);
        let text = chain::to_json(&round);
        prop_assert_eq!(&text, &serde_json::to_string(&round).unwrap());
        let out = check(Endpoint::ChainRead, "", text.as_bytes())?;
        prop_assert_eq!(&out[0], &Record::Target(ChainTarget { feed: feed(BTC), price: Some(read), block }));
        if error == chain::FEED_NOT_FOUND {
            prop_assert!(matches!(&out[1], Record::Target(t) if t.price.is_none()));
        } else {
            prop_assert!(matches!(&out[1], Record::Invalid(i) if i.at == Location::Path("reads[1].error".into())));
        }
    }
}
