//! The venue against real HTTP clients on loopback: recorded bytes at the right times, filtering,
//! exact SSE framing, auth, rate limits, every fault kind, live fault changes, the CLI.
//!
//! Every test starts its own venue on port 0 and shuts it down before it ends.

#[path = "support/signal.rs"]
mod signal;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{Stream, StreamExt};
use reqwest::StatusCode;
use serde_json::Value;
use sluice::dataflow::run::RecordingInput;
use sluice::model::{Endpoint, Envelope, Source};
use sluice::record::{Codec, Item, RecordingMeta, RecordingReader, RecordingWriter};
use sluice::venue::{FaultSpec, Venue, VenueOptions};
use tempfile::TempDir;

const T0: u64 = 1_795_248_000_000;
const BTC: &str = "e62df6c8b4a85fe1a67db44dc12de5db330f7ac66b72dc658afedf0f4a415b43";
const ETH: &str = "ff61491a931112ddf1bd8147cd1b641375f79f5825126d665480874634fd0ace";
const SOL_MINT: &str = "So11111111111111111111111111111111111111112";
const USDC_MINT: &str = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v";
const TOKEN_A: &str = "DezXAZ8z7PnrnRJjz3wXBoRgixCa6xjnB7YaB1pPB263";
const TOKEN_B: &str = "CASiKzbMQVRnW2ZqX3VqUsX4qYi1m3z7DbTt8pump";
const TOKEN_C: &str = "Eo89Mxv1twGBcKPTqDuJgfUzaouQhuH6uGdkWRwHeYoR";

// ---------------------------------------------------------------------------------------------
// The hand-made recording: few envelopes at known times.

const BOOSTS_1: &str = r#"[{"chainId":"solana","tokenAddress":"DezXAZ8z7PnrnRJjz3wXBoRgixCa6xjnB7YaB1pPB263","totalAmount":500},{"chainId":"solana","tokenAddress":"CASiKzbMQVRnW2ZqX3VqUsX4qYi1m3z7DbTt8pump","totalAmount":300}]"#;
const BOOSTS_2: &str = r#"[{"chainId":"solana","tokenAddress":"CASiKzbMQVRnW2ZqX3VqUsX4qYi1m3z7DbTt8pump","totalAmount":900},{"chainId":"solana","tokenAddress":"DezXAZ8z7PnrnRJjz3wXBoRgixCa6xjnB7YaB1pPB263","totalAmount":500}]"#;

fn pair(base: &str, price: &str) -> String {
    format!(
        r#"{{"chainId":"solana","dexId":"raydium","pairAddress":"P{base}","baseToken":{{"address":"{base}","name":"T","symbol":"T"}},"quoteToken":{{"address":"{SOL_MINT}","name":"Wrapped SOL","symbol":"SOL"}},"priceNative":"0.001","priceUsd":"{price}","fdv":1.41203118e-05}}"#
    )
}

fn pairs() -> String {
    format!(
        "[{}, {},{}]",
        pair(TOKEN_A, "0.0000141"),
        pair(TOKEN_B, "0.5"),
        pair(TOKEN_C, "12.25")
    )
}

fn birdeye_entry(value: &str, t: u64) -> String {
    format!(
        r#"{{"value":{value},"updateUnixTime":{t},"updateHumanTime":"2026-11-21T08:00:00","priceChange24h":-2.3}}"#
    )
}

fn multi_price() -> String {
    format!(
        r#"{{"success":true,"data":{{"{SOL_MINT}":{},"{USDC_MINT}":{},"{TOKEN_C}":null}}}}"#,
        birdeye_entry("142.37118820455194", 1795248001),
        birdeye_entry("0.9999312", 1795248001)
    )
}

fn single_price() -> String {
    format!(
        r#"{{"data":{},"success":true}}"#,
        birdeye_entry("142.5", 1795248002)
    )
}

/// A Hermes update with one binary element per feed (like the synthetic recordings).
fn hermes_update(feeds: &[(&str, i64)], publish: u64) -> String {
    let binary: Vec<String> = feeds
        .iter()
        .map(|(id, _)| format!("\"504e4155{id}\""))
        .collect();
    let parsed: Vec<String> = feeds
        .iter()
        .map(|(id, price)| {
            format!(
                r#"{{"id":"{id}","price":{{"price":"{price}","conf":"45","expo":-8,"publish_time":{publish}}},"ema_price":{{"price":"{price}","conf":"44","expo":-8,"publish_time":{publish}}},"metadata":{{"slot":279842113,"proof_available_time":{publish},"prev_publish_time":{}}}}}"#,
                publish - 1
            )
        })
        .collect();
    format!(
        r#"{{"binary":{{"encoding":"hex","data":[{}]}},"parsed":[{}]}}"#,
        binary.join(","),
        parsed.join(",")
    )
}

fn update_1() -> String {
    hermes_update(&[(BTC, 9712345678901), (ETH, 341234567890)], 1795248001)
}
fn update_2() -> String {
    hermes_update(&[(BTC, 9712345678999)], 1795248003)
}
fn rest_latest() -> String {
    hermes_update(&[(BTC, 9712000000000), (ETH, 341000000000)], 1795248008)
}
fn update_3() -> String {
    hermes_update(&[(BTC, 9713000000000), (ETH, 342000000000)], 1795248010)
}

const TIMEOUT_24H: &str = "Connection timeout reached (24h)";

fn envelope(endpoint: Endpoint, offset_ms: u64, context: &str, raw: &str) -> Envelope {
    Envelope {
        endpoint,
        t_ms: T0 + offset_ms,
        context: context.to_owned(),
        raw: Bytes::from(raw.to_owned()),
        seq: 0,
    }
}

/// The script, by recording offset (ms): 0 mesh (the clock's origin); 1000 boosts 1 and Hermes
/// update 1 (BTC, ETH); 2000 pairs (solana) and multi_price (solana); 2500 /defi/price of SOL;
/// 3000 update 2 (BTC only); 5000 boosts 2; 6000 Hermes `event: error`; 8000 a REST /latest
/// body (outage); 10000 update 3; 12000 mesh (the end).
fn script() -> Vec<Envelope> {
    vec![
        envelope(Endpoint::MeshPrice, 0, "", "{}"),
        envelope(Endpoint::DexscreenerBoosts, 1000, "", BOOSTS_1),
        envelope(Endpoint::HermesStream, 1000, "", &update_1()),
        envelope(Endpoint::DexscreenerTokens, 2000, "solana", &pairs()),
        envelope(Endpoint::BirdeyeMultiPrice, 2000, "solana", &multi_price()),
        envelope(
            Endpoint::BirdeyePrice,
            2500,
            &format!("solana/{SOL_MINT}"),
            &single_price(),
        ),
        envelope(Endpoint::HermesStream, 3000, "", &update_2()),
        envelope(Endpoint::DexscreenerBoosts, 5000, "", BOOSTS_2),
        envelope(Endpoint::HermesStream, 6000, "error", TIMEOUT_24H),
        envelope(Endpoint::HermesLatest, 8000, "", &rest_latest()),
        envelope(Endpoint::HermesStream, 10000, "", &update_3()),
        envelope(Endpoint::MeshPrice, 12000, "", "{}"),
    ]
}

const END: u64 = T0 + 12_000;

fn write_script(dir: &Path) -> PathBuf {
    let path = dir.join("script.rec");
    let meta = RecordingMeta {
        label: "venue test script".into(),
        synthetic: true,
        writer: "tests/venue.rs".into(),
        sources: Source::ALL.to_vec(),
    };
    let mut writer = RecordingWriter::create(&path, Codec::None, &meta).unwrap();
    for env in script() {
        writer.write_envelope(&env).unwrap();
        writer.write_watermark(env.source(), env.t_ms).unwrap();
    }
    writer.finish().unwrap();
    path
}

/// A venue playing the script from a file.
async fn venue(options: VenueOptions) -> (Venue, TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = write_script(dir.path());
    let listen = "127.0.0.1:0".parse().unwrap();
    let venue = Venue::start(RecordingInput::File(path), listen, options)
        .await
        .unwrap();
    (venue, dir)
}

fn options(speed: f64) -> VenueOptions {
    VenueOptions {
        speed,
        ..VenueOptions::default()
    }
}

/// The options at `speed` with a keep-alive every 40 ms, as the SSE tests want them.
fn sse_options(speed: f64) -> VenueOptions {
    VenueOptions {
        keepalive: Duration::from_millis(40),
        ..options(speed)
    }
}

/// A venue at `speed` with a keep-alive every 40 ms and the faults `spec`.
async fn sse_venue_with_faults(spec: &str, speed: f64) -> (Venue, TempDir) {
    venue(VenueOptions {
        faults: faults(spec),
        ..sse_options(speed)
    })
    .await
}

/// The URL of `venue`'s Hermes stream of BTC alone.
fn btc_stream_url(venue: &Venue) -> String {
    format!("{}/v2/updates/price/stream?ids[]={BTC}", venue.hermes_url())
}

fn faults(spec: &str) -> FaultSpec {
    spec.parse().unwrap()
}

fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder().build().unwrap()
}

async fn until_venue_time(venue: &Venue, t_ms: u64) {
    while venue.venue_time_ms() < t_ms {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn get(client: &reqwest::Client, url: &str) -> (StatusCode, String) {
    let response = client.get(url).send().await.unwrap();
    let status = response.status();
    (status, response.text().await.unwrap())
}

// ---------------------------------------------------------------------------------------------
// A small SSE reader that keeps the exact bytes.

type BodyStream = Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>;

#[derive(Debug, PartialEq)]
enum Frame {
    /// One frame's text without its closing blank line (`:` for a keep-alive).
    Text(String),
    /// The body ended cleanly.
    End,
    /// The connection broke mid-body.
    Broken,
}

struct SseReader {
    body: BodyStream,
    buffer: Vec<u8>,
    /// Every byte received, for framing checks.
    transcript: Vec<u8>,
}

impl SseReader {
    fn new(response: reqwest::Response) -> SseReader {
        SseReader {
            body: Box::pin(response.bytes_stream()),
            buffer: Vec::new(),
            transcript: Vec::new(),
        }
    }

    async fn next(&mut self, within: Duration) -> Frame {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(at) = self.buffer.windows(2).position(|w| w == b"\n\n") {
                let frame: Vec<u8> = self.buffer.drain(..at + 2).collect();
                return Frame::Text(String::from_utf8_lossy(&frame[..at]).into_owned());
            }
            match tokio::time::timeout_at(deadline, self.body.next()).await {
                Err(_) => panic!("no SSE frame within {within:?}"),
                Ok(None) => return Frame::End,
                Ok(Some(Err(_))) => return Frame::Broken,
                Ok(Some(Ok(chunk))) => {
                    self.transcript.extend_from_slice(&chunk);
                    self.buffer.extend_from_slice(&chunk);
                }
            }
        }
    }

    /// The next frame that is not a keep-alive, and how many keep-alives came before it.
    async fn next_event(&mut self, within: Duration) -> (Frame, usize) {
        let mut keepalives = 0;
        loop {
            match self.next(within).await {
                Frame::Text(text) if text == ":" => keepalives += 1,
                other => return (other, keepalives),
            }
        }
    }
}

async fn open_stream(client: &reqwest::Client, url: &str) -> SseReader {
    let response = client.get(url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let headers = response.headers();
    assert_eq!(headers["content-type"], "text/event-stream");
    assert_eq!(headers["cache-control"], "no-cache");
    SseReader::new(response)
}

fn data_of(frame: &Frame) -> &str {
    match frame {
        Frame::Text(text) => text
            .strip_prefix("data:")
            .unwrap_or_else(|| panic!("not a data frame: {text:?}")),
        other => panic!("expected a data frame, got {other:?}"),
    }
}

fn parsed_ids(update: &str) -> Vec<String> {
    let value: Value = serde_json::from_str(update).unwrap();
    value["parsed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap().to_owned())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Recorded state at the right times.

#[tokio::test]
async fn endpoints_serve_the_recorded_bytes_as_time_passes() {
    let (venue, _dir) = venue(options(4.0)).await;
    let client = client();
    let base = venue.base_url();
    let boosts = format!("{base}/dexscreener/token-boosts/top/v1");
    // Venue time starts at the first envelope (offset 0); the first boosts are due at 1000.
    assert!(venue.venue_time_ms() < T0 + 1000);
    let (status, body) = get(&client, &boosts).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "[]"));
    let (_, body) = get(
        &client,
        &format!("{base}/dexscreener/tokens/v1/solana/{TOKEN_A}"),
    )
    .await;
    assert_eq!(body, "[]");

    until_venue_time(&venue, T0 + 1000).await;
    let response = client.get(&boosts).send().await.unwrap();
    assert_eq!(response.headers()["content-type"], "application/json");
    assert_eq!(response.text().await.unwrap(), BOOSTS_1);

    until_venue_time(&venue, T0 + 5000).await;
    assert_eq!(get(&client, &boosts).await.1, BOOSTS_2);

    let stats = venue.stats();
    assert_eq!(stats.endpoint(Endpoint::DexscreenerBoosts).requests, 3);
    assert_eq!(stats.endpoint(Endpoint::DexscreenerBoosts).status(200), 3);
    assert_eq!(stats.endpoint(Endpoint::DexscreenerTokens).requests, 1);
    venue.shutdown().await;
}

#[tokio::test]
async fn past_the_end_the_last_state_stays() {
    let (venue, _dir) = venue(options(1000.0)).await;
    until_venue_time(&venue, END + 1000).await;
    let client = client();
    let base = venue.base_url();
    assert_eq!(
        get(&client, &format!("{base}/dexscreener/token-boosts/top/v1"))
            .await
            .1,
        BOOSTS_2
    );
    let (status, body) = get(
        &client,
        &format!("{base}/hermes/v2/updates/price/latest?ids[]={BTC}&ids[]={ETH}"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, update_3());
    venue.shutdown().await;
}

#[tokio::test]
async fn dexscreener_tokens_are_filtered_by_base_address() {
    let (venue, _dir) = venue(options(1000.0)).await;
    until_venue_time(&venue, END).await;
    let client = client();
    let tokens = format!("{}/dexscreener/tokens/v1", venue.base_url());

    // Every recorded pair requested: the recorded bytes, untouched (spacing included).
    let all = get(
        &client,
        &format!("{tokens}/solana/{TOKEN_A},{TOKEN_B},{TOKEN_C}"),
    )
    .await;
    assert_eq!(all, (StatusCode::OK, pairs()));

    let (status, body) = get(&client, &format!("{tokens}/solana/{TOKEN_C},{TOKEN_A}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        format!(
            "[{},{}]",
            pair(TOKEN_A, "0.0000141"),
            pair(TOKEN_C, "12.25")
        )
    );
    assert!(
        body.contains("1.41203118e-05"),
        "numbers keep their recorded spelling"
    );

    assert_eq!(
        get(&client, &format!("{tokens}/solana/unknown")).await.1,
        "[]"
    );
    assert_eq!(
        get(&client, &format!("{tokens}/base/{TOKEN_A}")).await.1,
        "[]"
    );
    let too_many: Vec<String> = (0..31).map(|i| format!("addr{i}")).collect();
    let (status, _) = get(&client, &format!("{tokens}/solana/{}", too_many.join(","))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    venue.shutdown().await;
}

#[tokio::test]
async fn dexscreener_can_require_the_optional_key() {
    let (venue, _dir) = venue(options(1.0)).await;
    let client = client();
    let boosts = format!("{}/token-boosts/top/v1", venue.dexscreener_url());
    let tokens = format!("{}/tokens/v1/solana/{TOKEN_A}", venue.dexscreener_url());
    let with_key = |url: &str, key: &str| client.get(url).header("X-API-KEY", key).send();

    // The public API needs none: not required unless asked.
    assert_eq!(get(&client, &boosts).await.0, StatusCode::OK);

    venue.require_dexscreener_key(Some("dex-key-1".into()));
    let (status, body) = get(&client, &boosts).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body.contains("Unauthorized"), "{body}");
    assert_eq!(get(&client, &tokens).await.0, StatusCode::UNAUTHORIZED);
    let wrong = with_key(&boosts, "dex-key-2").await.unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    for url in [&boosts, &tokens] {
        let right = with_key(url, "dex-key-1").await.unwrap();
        assert_eq!(right.status(), StatusCode::OK, "{url}");
    }

    venue.require_dexscreener_key(None);
    assert_eq!(get(&client, &boosts).await.0, StatusCode::OK);
    let stats = venue.stats();
    assert_eq!(stats.endpoint(Endpoint::DexscreenerBoosts).status(401), 2);
    assert_eq!(stats.endpoint(Endpoint::DexscreenerTokens).status(401), 1);
    venue.shutdown().await;
}

#[tokio::test]
async fn birdeye_prices_by_address_and_chain_with_key() {
    let (venue, _dir) = venue(VenueOptions {
        birdeye_api_key: Some("secret".into()),
        ..options(1000.0)
    })
    .await;
    until_venue_time(&venue, END).await;
    let client = client();
    let base = venue.birdeye_url();
    let multi = format!("{base}/defi/multi_price?list_address={USDC_MINT},nope");

    for key in [None, Some("wrong")] {
        let mut request = client.get(&multi);
        if let Some(key) = key {
            request = request.header("X-API-KEY", key);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            response.text().await.unwrap(),
            r#"{"success":false,"message":"Unauthorized. Authentication required."}"#
        );
    }

    let body = client
        .get(&multi)
        .header("X-API-KEY", "secret")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        body,
        format!(
            r#"{{"success":true,"data":{{"{USDC_MINT}":{},"nope":null}}}}"#,
            birdeye_entry("0.9999312", 1795248001)
        )
    );

    // POST with a JSON body; and a chain with nothing recorded.
    let posted: Value = client
        .post(format!("{base}/defi/multi_price"))
        .header("X-API-KEY", "secret")
        .json(&serde_json::json!({ "list_address": format!("{SOL_MINT},{TOKEN_C}") }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(posted["data"][SOL_MINT]["value"], 142.37118820455194);
    assert!(posted["data"][TOKEN_C].is_null());
    let other_chain: Value = client
        .get(&multi)
        .header("X-API-KEY", "secret")
        .header("x-chain", "ethereum")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(other_chain["data"][USDC_MINT].is_null());

    // /defi/price: SOL from its own (newer) /defi/price body, USDC from multi_price.
    let price = |address: &str| {
        client
            .get(format!("{base}/defi/price?address={address}"))
            .header("X-API-KEY", "secret")
            .send()
    };
    assert_eq!(
        price(SOL_MINT).await.unwrap().text().await.unwrap(),
        single_price()
    );
    let usdc: Value = price(USDC_MINT).await.unwrap().json().await.unwrap();
    assert_eq!(
        (usdc["success"].clone(), usdc["data"]["value"].clone()),
        (true.into(), 0.9999312.into())
    );
    let unknown: Value = price("nope").await.unwrap().json().await.unwrap();
    assert!(unknown["data"].is_null());
    let missing = client
        .get(format!("{base}/defi/price"))
        .header("X-API-KEY", "secret")
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::BAD_REQUEST);

    let stats = venue.stats().endpoint(Endpoint::BirdeyeMultiPrice);
    assert_eq!((stats.status(401), stats.status(200)), (2, 3));
    venue.shutdown().await;
}

#[tokio::test]
async fn hermes_latest_filters_ids_and_checks_the_bearer() {
    let (venue, _dir) = venue(VenueOptions {
        hermes_api_key: Some("pyth-key".into()),
        ..options(4.0)
    })
    .await;
    let client = client();
    let latest = format!("{}/v2/updates/price/latest", venue.hermes_url());
    let authed = |url: String| client.get(url).bearer_auth("pyth-key").send();

    let response = client
        .get(format!("{latest}?ids[]={BTC}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let wrong = client
        .get(format!("{latest}?ids[]={BTC}"))
        .bearer_auth("nope")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);

    // Nothing recorded yet.
    let early = authed(format!("{latest}?ids[]={BTC}")).await.unwrap();
    assert_eq!(early.status(), StatusCode::NOT_FOUND);

    until_venue_time(&venue, T0 + 1000).await;
    // Encoded brackets, `0x` and upper case are all the same id.
    let url = format!("{latest}?ids%5B%5D=0x{}", ETH.to_uppercase());
    let body = authed(url).await.unwrap().text().await.unwrap();
    let value: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(parsed_ids(&body), [ETH]);
    assert_eq!(
        value["binary"]["data"],
        serde_json::json!([format!("504e4155{ETH}")])
    );
    // The token as a query parameter works too.
    let both = client
        .get(format!(
            "{latest}?ids[]={BTC}&ids[]={ETH}&ACCESS_TOKEN=pyth-key"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(both.text().await.unwrap(), update_1());

    let unknown = "00000000000000000000000000000000000000000000000000000000000000ab";
    let response = authed(format!("{latest}?ids[]={BTC}&ids[]={unknown}"))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    assert_eq!(
        response.text().await.unwrap(),
        format!("Price ids not found: {unknown}")
    );
    let ignored = authed(format!(
        "{latest}?ids[]={BTC}&ids[]={unknown}&ignore_invalid_price_ids=true"
    ))
    .await
    .unwrap();
    assert_eq!(parsed_ids(&ignored.text().await.unwrap()), [BTC]);

    // Update 2 carries BTC only: ETH comes from update 1.
    until_venue_time(&venue, T0 + 3000).await;
    let body = authed(format!("{latest}?ids[]={ETH}&ids[]={BTC}"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(parsed_ids(&body), [ETH, BTC]);
    let value: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(value["parsed"][1]["price"]["price"], "9712345678999");
    assert_eq!(value["parsed"][0]["price"]["price"], "341234567890");
    venue.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// SSE.

#[tokio::test]
async fn sse_framing_keepalives_and_the_error_event_ending_the_stream() {
    let (venue, _dir) = venue(sse_options(10.0)).await;
    let client = client();
    let url = format!(
        "{}/v2/updates/price/stream?ids[]={BTC}&ids[]={ETH}&parsed=true",
        venue.hermes_url()
    );
    let mut sse = open_stream(&client, &url).await;
    let wait = Duration::from_secs(3);

    // Update 1 is due 100 ms after the start: keep-alives come first.
    let (first, keepalives_1) = sse.next_event(wait).await;
    assert_eq!(data_of(&first), update_1());
    assert!(keepalives_1 >= 1, "keep-alives before the first event");
    let (second, keepalives_2) = sse.next_event(wait).await;
    assert_eq!(data_of(&second), update_2());
    assert!(keepalives_2 >= 2);
    let (error, _) = sse.next_event(wait).await;
    assert_eq!(
        error,
        Frame::Text(format!("event:error\ndata:{TIMEOUT_24H}"))
    );
    assert_eq!(sse.next(wait).await, Frame::End);

    let transcript = String::from_utf8(sse.transcript.clone()).unwrap();
    assert!(transcript.starts_with(":\n\n"));
    assert!(transcript.contains(&format!(":\n\ndata:{}\n\n", update_1())));
    assert!(transcript.ends_with(&format!("\n\nevent:error\ndata:{TIMEOUT_24H}\n\n")));
    assert!(!transcript.contains("data: "), "no space after data:");

    let stats = venue.stats().endpoint(Endpoint::HermesStream);
    assert_eq!(
        (stats.sse_opened, stats.events_sent, stats.error_events_sent),
        (1, 2, 1)
    );
    assert_eq!(stats.sse_ended, 1);
    assert!(stats.keepalives_sent >= 3);
    venue.shutdown().await;
}

#[tokio::test]
async fn sse_keeps_only_requested_feeds() {
    let (venue, _dir) = venue(sse_options(10.0)).await;
    let client = client();
    let url = format!("{}/v2/updates/price/stream?ids[]={ETH}", venue.hermes_url());
    let mut sse = open_stream(&client, &url).await;
    let wait = Duration::from_secs(3);
    let (first, _) = sse.next_event(wait).await;
    let data = data_of(&first);
    assert_eq!(parsed_ids(data), [ETH]);
    let value: Value = serde_json::from_str(data).unwrap();
    assert_eq!(
        value["binary"]["data"],
        serde_json::json!([format!("504e4155{ETH}")])
    );
    // Update 2 holds BTC only: not sent; the error event is next.
    let (next, _) = sse.next_event(wait).await;
    assert_eq!(
        next,
        Frame::Text(format!("event:error\ndata:{TIMEOUT_24H}"))
    );

    let unknown = client
        .get(format!(
            "{}/v2/updates/price/stream?ids[]={}",
            venue.hermes_url(),
            "11".repeat(32)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    assert!(
        unknown
            .text()
            .await
            .unwrap()
            .starts_with("Price ids not found: 1111")
    );
    venue.shutdown().await;
}

#[tokio::test]
async fn sse_is_silent_during_the_outage_and_stays_open_past_the_end() {
    let (venue, _dir) = venue(sse_options(10.0)).await;
    let client = client();
    // After the recorded error (6000), before update 3 (10000): the outage.
    until_venue_time(&venue, T0 + 6500).await;
    let url = format!(
        "{}/v2/updates/price/stream?ids[]={BTC}&ids[]={ETH}",
        venue.hermes_url()
    );
    let mut sse = open_stream(&client, &url).await;
    let (event, keepalives) = sse.next_event(Duration::from_secs(3)).await;
    assert_eq!(data_of(&event), update_3());
    assert!(
        keepalives >= 3,
        "only keep-alives in the outage, got {keepalives}"
    );
    // The recording ends at 12000; the stream stays open with keep-alives.
    until_venue_time(&venue, END + 500).await;
    for _ in 0..3 {
        assert_eq!(
            sse.next(Duration::from_secs(2)).await,
            Frame::Text(":".into())
        );
    }
    assert_eq!(venue.stats().endpoint(Endpoint::HermesStream).sse_active, 1);
    drop(sse);
    venue.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Rate limits.

#[tokio::test]
async fn dexscreener_and_birdeye_limits_answer_429() {
    let (venue, _dir) = venue(VenueOptions {
        birdeye_rps: 5,
        ..options(1.0)
    })
    .await;
    let client = client();
    let boosts = format!("{}/token-boosts/top/v1", venue.dexscreener_url());
    for i in 0..60 {
        assert_eq!(get(&client, &boosts).await.0, StatusCode::OK, "request {i}");
    }
    let (status, body) = get(&client, &boosts).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(body, r#"{"error":"rate limited"}"#);
    // The token endpoints have their own bucket.
    let tokens = format!("{}/tokens/v1/solana/{TOKEN_A}", venue.dexscreener_url());
    assert_eq!(get(&client, &tokens).await.0, StatusCode::OK);

    let price = format!("{}/defi/price?address={SOL_MINT}", venue.birdeye_url());
    let mut statuses = Vec::new();
    for _ in 0..7 {
        statuses.push(get(&client, &price).await);
    }
    assert!(statuses[..5].iter().all(|(s, _)| *s == StatusCode::OK));
    assert_eq!(
        statuses[5],
        (
            StatusCode::TOO_MANY_REQUESTS,
            r#"{"success":false,"message":"Too many requests"}"#.to_owned()
        )
    );
    assert_eq!(
        venue
            .stats()
            .endpoint(Endpoint::DexscreenerBoosts)
            .status(429),
        1
    );
    venue.shutdown().await;
}

#[tokio::test]
async fn hermes_overflow_blocks_for_the_scaled_penalty() {
    // At 30x: 30 requests per 333 ms of wall time, then 429 for 2 s.
    let (venue, _dir) = venue(options(30.0)).await;
    let client = client();
    let latest = format!("{}/v2/updates/price/latest?ids[]={BTC}", venue.hermes_url());
    until_venue_time(&venue, T0 + 1000).await;
    let burst = futures::future::join_all((0..40).map(|_| client.get(&latest).send())).await;
    let overflow_at = Instant::now();
    let ok = burst
        .iter()
        .filter(|r| r.as_ref().unwrap().status() == StatusCode::OK)
        .count();
    assert!((30..40).contains(&ok), "{ok} admitted");
    // Past the 10 s window (333 ms) but inside the 60 s penalty (2 s): still refused.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(get(&client, &latest).await.0, StatusCode::TOO_MANY_REQUESTS);
    tokio::time::sleep(Duration::from_millis(2100).saturating_sub(overflow_at.elapsed())).await;
    assert_eq!(get(&client, &latest).await.0, StatusCode::OK);
    venue.shutdown().await;
}

#[tokio::test]
async fn limits_off_admits_everything() {
    let (venue, _dir) = venue(VenueOptions {
        rate_limits: false,
        ..options(1.0)
    })
    .await;
    let client = client();
    let boosts = format!("{}/token-boosts/top/v1", venue.dexscreener_url());
    for _ in 0..80 {
        assert_eq!(get(&client, &boosts).await.0, StatusCode::OK);
    }
    venue.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Faults.

#[tokio::test]
async fn injected_errors_carry_status_body_and_retry_after() {
    let (venue, _dir) = venue(VenueOptions {
        faults: faults(
            "dexscreener:error_rate=1,status=503;birdeye:error_rate=1,status=429,retry_after=1500ms",
        ),
        ..options(1.0)
    })
    .await;
    let client = client();
    let (status, body) = get(
        &client,
        &format!("{}/token-boosts/top/v1", venue.dexscreener_url()),
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body, r#"{"error":"Service Unavailable"}"#);
    let tokens = get(
        &client,
        &format!("{}/tokens/v1/solana/{TOKEN_A}", venue.dexscreener_url()),
    )
    .await;
    assert_eq!(tokens.0, StatusCode::SERVICE_UNAVAILABLE);

    let response = client
        .get(format!(
            "{}/defi/multi_price?list_address={SOL_MINT}",
            venue.birdeye_url()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(response.headers()["retry-after"], "2");
    assert_eq!(
        response.text().await.unwrap(),
        r#"{"success":false,"message":"Too many requests"}"#
    );
    // Hermes is untouched.
    let hermes = get(
        &client,
        &format!("{}/v2/updates/price/latest?ids[]={BTC}", venue.hermes_url()),
    )
    .await;
    assert_ne!(hermes.0, StatusCode::SERVICE_UNAVAILABLE);
    venue.shutdown().await;
}

#[tokio::test]
async fn latency_is_added_before_responding() {
    let (venue, _dir) = venue(VenueOptions {
        faults: faults("birdeye/price:latency=300ms"),
        ..options(1.0)
    })
    .await;
    let client = client();
    let started = Instant::now();
    let (status, _) = get(
        &client,
        &format!("{}/defi/price?address={SOL_MINT}", venue.birdeye_url()),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
    venue.shutdown().await;
}

#[tokio::test]
async fn timeouts_outlast_the_client_and_end_at_shutdown() {
    let (venue, _dir) = venue(VenueOptions {
        faults: faults("dexscreener/tokens:timeout_rate=1"),
        ..options(1.0)
    })
    .await;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let started = Instant::now();
    let error = impatient
        .get(format!(
            "{}/tokens/v1/solana/{TOKEN_A}",
            venue.dexscreener_url()
        ))
        .send()
        .await
        .unwrap_err();
    assert!(error.is_timeout(), "{error}");
    assert!(started.elapsed() >= Duration::from_millis(300));
    // A patient client is still being held when the venue shuts down: shutdown ends it.
    let patient = client();
    let url = format!("{}/tokens/v1/solana/{TOKEN_A}", venue.dexscreener_url());
    let held = tokio::spawn(async move { patient.get(url).send().await.map(|r| r.status()) });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(venue.stats().endpoint(Endpoint::DexscreenerTokens).held, 2);
    // Other endpoints answer meanwhile.
    assert_eq!(
        get(
            &client(),
            &format!("{}/token-boosts/top/v1", venue.dexscreener_url())
        )
        .await
        .0,
        StatusCode::OK
    );
    let stopping = Instant::now();
    venue.shutdown().await;
    assert!(stopping.elapsed() < Duration::from_secs(3));
    let answered = tokio::time::timeout(Duration::from_secs(3), held)
        .await
        .unwrap()
        .unwrap();
    assert!(answered.is_err() || answered.is_ok_and(|s| s.is_server_error()));
}

#[tokio::test]
async fn malformed_bodies_fail_json_parsing() {
    let (venue, _dir) = venue(VenueOptions {
        faults: faults("hermes/latest:malformed_rate=1;dexscreener/boosts:malformed_rate=1"),
        seed: 3,
        ..options(1000.0)
    })
    .await;
    until_venue_time(&venue, END).await;
    let client = client();
    let urls = [
        format!("{}/v2/updates/price/latest?ids[]={BTC}", venue.hermes_url()),
        format!("{}/token-boosts/top/v1", venue.dexscreener_url()),
    ];
    let mut kinds = std::collections::BTreeSet::new();
    for url in &urls {
        for _ in 0..6 {
            let (status, body) = get(&client, url).await;
            assert_eq!(status, StatusCode::OK);
            assert!(serde_json::from_str::<Value>(&body).is_err(), "{body}");
            kinds.insert(body.starts_with("<html>"));
        }
    }
    assert_eq!(kinds.len(), 2, "both truncated and garbage bodies");
    assert_eq!(venue.stats().endpoint(Endpoint::HermesLatest).malformed, 6);
    venue.shutdown().await;
}

#[tokio::test]
async fn slow_bodies_arrive_over_the_duration() {
    let (venue, _dir) = venue(VenueOptions {
        faults: faults("dexscreener/boosts:slow_body=600ms"),
        ..options(4.0)
    })
    .await;
    until_venue_time(&venue, T0 + 1000).await;
    let client = client();
    let started = Instant::now();
    let response = client
        .get(format!("{}/token-boosts/top/v1", venue.dexscreener_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let headers_after = started.elapsed();
    let mut body = response.bytes_stream();
    let mut chunks = 0;
    let mut bytes = Vec::new();
    while let Some(chunk) = body.next().await {
        chunks += 1;
        bytes.extend_from_slice(&chunk.unwrap());
    }
    assert!(
        headers_after < Duration::from_millis(300),
        "{headers_after:?}"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(550),
        "{:?}",
        started.elapsed()
    );
    assert!(chunks > 4, "{chunks} chunks");
    assert_eq!(String::from_utf8(bytes).unwrap(), BOOSTS_1);
    venue.shutdown().await;
}

#[tokio::test]
async fn sse_drop_every_cuts_and_max_stream_ends_with_hermes_error() {
    let (venue, _dir) = sse_venue_with_faults("hermes/stream:drop_every=250ms", 1.0).await;
    let client = client();
    let url = btc_stream_url(&venue);
    let started = Instant::now();
    let mut sse = open_stream(&client, &url).await;
    let (end, keepalives) = sse.next_event(Duration::from_secs(3)).await;
    assert_eq!(end, Frame::Broken);
    assert!(keepalives >= 2);
    assert!(started.elapsed() >= Duration::from_millis(250));
    assert_eq!(
        venue.stats().endpoint(Endpoint::HermesStream).sse_dropped,
        1
    );

    venue.set_faults(faults("hermes:max_stream=200ms"));
    let mut sse = open_stream(&client, &url).await;
    let (end, _) = sse.next_event(Duration::from_secs(3)).await;
    assert_eq!(end, Frame::Text(format!("event:error\ndata:{TIMEOUT_24H}")));
    assert_eq!(sse.next(Duration::from_secs(1)).await, Frame::End);
    venue.shutdown().await;
}

#[tokio::test]
async fn a_drop_every_set_later_cuts_a_stream_already_open() {
    let (venue, _dir) = venue(sse_options(1.0)).await;
    let client = client();
    let url = btc_stream_url(&venue);
    let mut sse = open_stream(&client, &url).await;
    // Healthy for a while: keep-alives, no cut.
    let healthy = Instant::now();
    while healthy.elapsed() < Duration::from_millis(300) {
        assert_ne!(sse.next(Duration::from_secs(1)).await, Frame::Broken);
    }
    // Older than 100 ms already: the new fault cuts it at its next write.
    venue.set_faults(faults("hermes/stream:drop_every=100ms"));
    let (end, _) = sse.next_event(Duration::from_secs(3)).await;
    assert_eq!(end, Frame::Broken);
    assert_eq!(
        venue.stats().endpoint(Endpoint::HermesStream).sse_dropped,
        1
    );
    venue.shutdown().await;
}

#[tokio::test]
async fn sse_stall_after_goes_silent_with_the_connection_held_open() {
    let (venue, _dir) = sse_venue_with_faults("hermes/stream:stall_after=200ms", 1.0).await;
    let client = client();
    let url = btc_stream_url(&venue);
    let started = Instant::now();
    let mut sse = open_stream(&client, &url).await;
    // Keep-alives until the stall, then nothing at all: not a byte, not the end.
    let silence = Duration::from_millis(500);
    let mut frames = 0;
    loop {
        match tokio::time::timeout(silence, sse.next(Duration::from_secs(10))).await {
            Ok(Frame::Text(_)) => frames += 1,
            Ok(other) => panic!("the stalled stream ended: {other:?}"),
            Err(_) => break,
        }
    }
    let silent_from = started.elapsed() - silence;
    assert!(frames >= 2, "{frames} frames before the stall");
    assert!(
        silent_from >= Duration::from_millis(150) && silent_from < Duration::from_millis(400),
        "silent from {silent_from:?}"
    );
    assert!(
        tokio::time::timeout(
            Duration::from_millis(300),
            sse.next(Duration::from_secs(10))
        )
        .await
        .is_err(),
        "still silent"
    );
    let stream = venue.stats().endpoint(Endpoint::HermesStream);
    assert_eq!(
        (stream.sse_stalled, stream.sse_active),
        (1, 1),
        "{stream:?}"
    );
    assert_eq!(stream.sse_dropped, 0);
    // Shutting down ends it.
    venue.shutdown().await;
}

#[tokio::test]
async fn sse_events_can_be_malformed() {
    let (venue, _dir) = sse_venue_with_faults("hermes/stream:malformed_rate=1", 10.0).await;
    let client = client();
    let url = btc_stream_url(&venue);
    let mut sse = open_stream(&client, &url).await;
    let (event, _) = sse.next_event(Duration::from_secs(3)).await;
    let Frame::Text(text) = event else {
        panic!("expected an event, got {event:?}");
    };
    let data: String = text
        .lines()
        .map(|line| line.strip_prefix("data:").unwrap())
        .collect();
    assert!(serde_json::from_str::<Value>(&data).is_err(), "{data}");
    venue.shutdown().await;
}

#[tokio::test]
async fn set_faults_changes_behaviour_live() {
    let (venue, _dir) = venue(options(1.0)).await;
    let client = client();
    let boosts = format!("{}/token-boosts/top/v1", venue.dexscreener_url());
    assert_eq!(get(&client, &boosts).await.0, StatusCode::OK);
    // A 5xx burst, then recovery.
    venue.set_faults(faults("dexscreener:error_rate=1,status=502"));
    for _ in 0..3 {
        assert_eq!(get(&client, &boosts).await.0, StatusCode::BAD_GATEWAY);
    }
    venue.set_faults(FaultSpec::none());
    assert_eq!(get(&client, &boosts).await.0, StatusCode::OK);

    // The same over HTTP, for people staging.
    let control = format!("{}/_venue/faults", venue.base_url());
    let bad = client
        .post(&control)
        .body("dexscreener:error_rate=7")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    let message = bad.text().await.unwrap();
    assert!(
        message.contains("error_rate=7") && message.contains("0 to 1"),
        "{message}"
    );
    let good = client
        .post(&control)
        .body("dexscreener/boosts:error_rate=1,status=504")
        .send()
        .await
        .unwrap();
    assert_eq!(good.status(), StatusCode::OK);
    assert_eq!(get(&client, &boosts).await.0, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(
        get(&client, &control).await.1.trim(),
        "dexscreener/boosts:error_rate=1,status=504"
    );
    let stats: Value = serde_json::from_str(
        &get(&client, &format!("{}/_venue/stats", venue.base_url()))
            .await
            .1,
    )
    .unwrap();
    let counts = &stats["endpoints"]["dexscreener/boosts"];
    assert_eq!(counts["requests"], 6);
    assert_eq!(counts["statuses"]["502"], 3);
    assert_eq!(counts["statuses"]["504"], 1);
    assert_eq!(counts["statuses"]["200"], 2);
    venue.shutdown().await;
}

#[tokio::test]
async fn fault_dice_follow_the_seed() {
    async fn statuses(seed: u64) -> Vec<u16> {
        let (venue, _dir) = venue(VenueOptions {
            faults: faults("dexscreener/boosts:error_rate=0.5"),
            seed,
            ..options(1.0)
        })
        .await;
        let client = client();
        let boosts = format!("{}/token-boosts/top/v1", venue.dexscreener_url());
        let mut out = Vec::new();
        for _ in 0..30 {
            out.push(get(&client, &boosts).await.0.as_u16());
        }
        venue.shutdown().await;
        out
    }
    let first = statuses(42).await;
    assert_eq!(first, statuses(42).await);
    assert!(first.contains(&200) && first.contains(&500), "{first:?}");
    assert_ne!(first, statuses(43).await);
}

#[test]
fn spec_errors_name_the_bad_part() {
    let err = "dexscreener:error_rate=1;birdeye:latency=fast"
        .parse::<FaultSpec>()
        .unwrap_err();
    assert_eq!(err.part, "latency=fast");
    assert_eq!(err.rule, "birdeye:latency=fast");
    assert!(err.to_string().contains("duration like 300ms"), "{err}");
    let err = "hermes/strem:drop_every=5s"
        .parse::<FaultSpec>()
        .unwrap_err();
    assert!(
        err.to_string().contains("unknown target `hermes/strem`"),
        "{err}"
    );
    assert!(
        err.to_string().contains("hermes/stream"),
        "lists the valid targets: {err}"
    );
    let err = "dexscreener/tokens:drop_every=5s"
        .parse::<FaultSpec>()
        .unwrap_err();
    assert!(err.to_string().contains("SSE streams only"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// A synthetic recording end to end, and the CLI.

fn synth_recording(dir: &Path) -> (PathBuf, Vec<Envelope>) {
    let path = dir.join("synth.rec");
    let opts = sluice::synth::SynthOptions {
        minutes: 1,
        feeds: 4,
        tokens: 12,
        faults: false,
        ..sluice::synth::SynthOptions::default()
    };
    sluice::synth::write_recording(&path, Codec::Zstd, &opts).unwrap();
    let mut reader = RecordingReader::open(&path).unwrap();
    let mut envelopes = Vec::new();
    while let Some(item) = reader.next_item().unwrap() {
        if let Item::Envelope(env) = item {
            envelopes.push(env);
        }
    }
    (path, envelopes)
}

#[tokio::test]
async fn synthetic_recording_plays_back_as_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let (path, envelopes) = synth_recording(dir.path());
    let venue = Venue::start(
        RecordingInput::File(path),
        "127.0.0.1:0".parse().unwrap(),
        VenueOptions {
            keepalive: Duration::from_millis(200),
            ..options(40.0)
        },
    )
    .await
    .unwrap();
    let client = client();
    let updates: Vec<&Envelope> = envelopes
        .iter()
        .filter(|e| e.endpoint == Endpoint::HermesStream && e.context.is_empty())
        .collect();
    let last = |endpoint: Endpoint, context: &str| {
        envelopes
            .iter()
            .rev()
            .find(|e| e.endpoint == endpoint && e.context == context)
            .unwrap()
    };

    // The stream, unfiltered: the recorded events byte for byte, in order, none skipped.
    let mut sse = open_stream(
        &client,
        &format!("{}/v2/updates/price/stream", venue.hermes_url()),
    )
    .await;
    let mut received = Vec::new();
    while received.len() < 20 {
        let (frame, _) = sse.next_event(Duration::from_secs(3)).await;
        received.push(data_of(&frame).to_owned());
    }
    drop(sse);
    let start = updates
        .iter()
        .position(|e| e.raw == received[0].as_bytes())
        .expect("first event is a recorded one");
    for (i, data) in received.iter().enumerate() {
        assert_eq!(data.as_bytes(), &updates[start + i].raw[..], "event {i}");
    }

    // Past the end: the last recorded state of each endpoint.
    until_venue_time(&venue, envelopes.last().unwrap().t_ms + 1).await;
    let boosts = get(
        &client,
        &format!("{}/token-boosts/top/v1", venue.dexscreener_url()),
    )
    .await;
    assert_eq!(
        boosts.1.as_bytes(),
        &last(Endpoint::DexscreenerBoosts, "").raw[..]
    );

    let recorded_pairs = &last(Endpoint::DexscreenerTokens, "solana").raw;
    let pairs: Vec<Value> = serde_json::from_slice(recorded_pairs).unwrap();
    let mut bases: Vec<&str> = pairs
        .iter()
        .map(|p| p["baseToken"]["address"].as_str().unwrap())
        .collect();
    bases.dedup();
    let url = format!(
        "{}/tokens/v1/solana/{}",
        venue.dexscreener_url(),
        bases.join(",")
    );
    assert_eq!(get(&client, &url).await.1.as_bytes(), &recorded_pairs[..]);
    let one = format!("{}/tokens/v1/solana/{}", venue.dexscreener_url(), bases[0]);
    let kept: Vec<Value> = serde_json::from_str(&get(&client, &one).await.1).unwrap();
    assert!(!kept.is_empty() && kept.iter().all(|p| p["baseToken"]["address"] == bases[0]));

    let multi: Value =
        serde_json::from_slice(&last(Endpoint::BirdeyeMultiPrice, "solana").raw).unwrap();
    let addresses: Vec<&String> = multi["data"].as_object().unwrap().keys().collect();
    let url = format!(
        "{}/defi/multi_price?list_address={}",
        venue.birdeye_url(),
        addresses
            .iter()
            .map(|a| a.as_str())
            .collect::<Vec<_>>()
            .join(",")
    );
    let served: Value = serde_json::from_str(&get(&client, &url).await.1).unwrap();
    assert_eq!(served["data"], multi["data"]);

    let ids: Vec<String> = venue
        .timeline()
        .hermes_feed_ids()
        .map(str::to_owned)
        .collect();
    assert_eq!(ids.len(), 4);
    let query: Vec<String> = ids.iter().map(|id| format!("ids[]={id}")).collect();
    let url = format!(
        "{}/v2/updates/price/latest?{}",
        venue.hermes_url(),
        query.join("&")
    );
    let latest = get(&client, &url).await.1;
    let mut served_ids = parsed_ids(&latest);
    served_ids.sort();
    assert_eq!(served_ids, ids);
    venue.shutdown().await;
}

#[test]
fn cli_prints_the_base_url_first_and_stops_on_ctrl_c() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = synth_recording(dir.path());
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["venue", "--speed", "50", "--faults", "birdeye:latency=1ms"])
        .arg(&path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    let base = first.trim().to_owned();
    let mut second = String::new();
    stdout.read_line(&mut second).unwrap();
    let outcome = std::panic::catch_unwind(|| {
        assert!(base.starts_with("http://127.0.0.1:"), "{base}");
        assert_eq!(
            second.trim(),
            format!("SLUICE__DEXSCREENER__BASE_URL={base}/dexscreener")
        );
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let (status, _) = get(
                &client(),
                &format!("{base}/dexscreener/token-boosts/top/v1"),
            )
            .await;
            assert_eq!(status, StatusCode::OK);
        });
    });
    // Ctrl-C, as a person would; the process must exit cleanly and soon.
    signal::send(&child, "INT");
    let deadline = Instant::now() + Duration::from_secs(10);
    let exit = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
    assert!(
        exit.is_some_and(|s| s.success()),
        "venue did not stop on SIGINT: {exit:?}"
    );
}

/// `--faults` with a typo: the command refuses and names the part.
#[test]
fn cli_refuses_a_bad_fault_spec() {
    let output = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["venue", "--faults", "birdeye:latency=3"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("latency=3"), "{stderr}");
}
