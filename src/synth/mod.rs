//! Deterministic synthetic market recordings: every source's real payload shapes, on a script
//! with a rally, a crash, a fast climber, outages, gaps and deliberate faults.
//!
//! [`generate`] streams a run of [`SynthOptions::minutes`] into a [`RecordingWriter`] in
//! ingest-time order, with each source's watermarks, in bounded memory: the same options
//! always give the same bytes, on any machine (ChaCha8 streams, integer arithmetic only).
//!
//! What a run holds, per source:
//!
//! - **Hermes**: an SSE event about every 400 ms carrying every feed (BTC, ETH and SOL with
//!   their real ids, then random ids), now and then a subset; `binary.data` has one MockPyth
//!   update element per feed ([`abi::MockUpdate`]). One outage of about 20 s, announced by an
//!   `event: error`, during which REST `/latest` bodies arrive every second instead.
//! - **DEX Screener**: the boost list every 3 s (churning, with one fast climber from about
//!   rank 25 into the top 3 and one faller) and `/tokens/v1` pairs per chain every 6 s; one
//!   30 s gap in which polls fail.
//! - **Birdeye**: multi_price every 15 s for SOL, USDC and up to 20 listed Solana tokens.
//! - **Chain**: a read round every 5 s of what another keeper pushed (nothing for ~30 s).
//! - **Mesh**: every 30 s from one, later two, providers; one provider is 5 % off for a while.
//!
//! Meme tokens rally mildly from 10 % to 50 % of the run, crash by 33–50 % from about 58 %
//! within a minute or two, then win back part of it. Faults (when enabled) each cost exactly
//! one invalid record when parsed, and [`SynthSummary::malformed`] counts them.

pub mod abi;
mod hermes;
pub mod load;
mod market;
mod mesh;
mod rng;
mod scenario;
mod text;

use std::collections::VecDeque;
use std::io::{self, Write};
use std::path::Path;

use bytes::Bytes;

use crate::model::{Endpoint, Envelope, Source};
use crate::record::{Codec, RecordingMeta, RecordingWriter};

use hermes::{Hermes, Keeper};
use market::{Chain, Market, Quotes};
use mesh::Provider;
use rng::Rng;
use scenario::{Fault, Faults, Timeline};

/// What to generate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SynthOptions {
    /// Length of the run in minutes of ingest time.
    pub minutes: u32,
    /// Pyth feeds Hermes publishes (BTC, ETH, SOL first).
    pub feeds: u32,
    /// Tokens in the DEX Screener pool (at most 30 are listed at a time).
    pub tokens: u32,
    /// The seed: the same options give the same bytes.
    pub seed: u64,
    /// Ingest time of the start, ms since the epoch.
    pub start_ms: u64,
    /// Deliberately malformed payloads, the Hermes outage and the DEX Screener gap.
    pub faults: bool,
}

impl Default for SynthOptions {
    fn default() -> Self {
        // Sized so the bundled recording (zstd) stays around 3.5 MB.
        SynthOptions {
            minutes: 15,
            feeds: 16,
            tokens: 60,
            seed: 7,
            start_ms: 1_795_248_000_000,
            faults: true,
        }
    }
}

/// What a run wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SynthSummary {
    /// Envelopes written.
    pub envelopes: u64,
    /// Prices the parsers will yield: Hermes feed updates, DEX Screener tokens (one per token
    /// per response), Birdeye entries and mesh messages.
    pub price_updates: u64,
    /// Hermes feed updates (stream and REST), malformed ones excluded.
    pub hermes_updates: u64,
    /// Deliberately malformed payloads or items; each parses to exactly one invalid record.
    pub malformed: u64,
    /// Payload bytes written (the envelopes' raw bytes).
    pub bytes: u64,
}

/// The metadata of a synthetic recording made with `opts`.
pub fn meta(opts: &SynthOptions) -> RecordingMeta {
    let faults = if opts.faults { "" } else { ", no faults" };
    RecordingMeta {
        label: format!(
            "synthetic market, seed {}, {} minutes, {} feeds, {} tokens{faults}",
            opts.seed, opts.minutes, opts.feeds, opts.tokens
        ),
        synthetic: true,
        writer: format!("sluice {} synth", env!("CARGO_PKG_VERSION")),
        sources: Source::ALL.to_vec(),
    }
}

/// Generates the run `opts` describes into `writer` (which the caller finishes).
pub fn generate<W: Write>(
    opts: &SynthOptions,
    writer: &mut RecordingWriter<W>,
) -> io::Result<SynthSummary> {
    Generator::new(opts).run(writer)
}

/// Writes a whole synthetic recording to `path`: header, [`meta`], the run, end marker.
pub fn write_recording(path: &Path, codec: Codec, opts: &SynthOptions) -> io::Result<SynthSummary> {
    let mut writer = RecordingWriter::create(path, codec, &meta(opts))?;
    let summary = generate(opts, &mut writer)?;
    writer.finish()?;
    Ok(summary)
}

/// Watermarks advance this often during a source's silence, as a live source's clock would.
const SILENCE_TICK_MS: u64 = 250;

/// The Hermes error event that precedes the outage.
const STREAM_TIMEOUT: &[u8] = b"Connection timeout reached (24h)";

/// The Birdeye 429 body.
const BIRDEYE_429: &[u8] = br#"{"success":false,"message":"Too many requests"}"#;

// The generator's processes, in the order they run when due at the same ms.
const P_MARKET: usize = 0;
const P_HERMES: usize = 1;
const P_REST: usize = 2;
const P_BOOSTS: usize = 3;
const P_TOKENS: usize = 4;
const P_BIRDEYE: usize = 5;
const P_CHAIN: usize = 6;
const P_MESH: usize = 7;
const PROCESSES: usize = 9;

/// An envelope built ahead of its ingest time (the later requests of one poll round).
struct Pending {
    t: u64,
    endpoint: Endpoint,
    context: &'static str,
    raw: Vec<u8>,
    prices: u64,
    malformed: u64,
}

/// Writes envelopes and watermarks, and keeps the counts.
struct Sink {
    summary: SynthSummary,
    /// When each source's next silence watermark is due.
    watermark_due: [u64; 5],
}

impl Sink {
    fn envelope<W: Write>(
        &mut self,
        w: &mut RecordingWriter<W>,
        endpoint: Endpoint,
        t: u64,
        context: &str,
        raw: &[u8],
    ) -> io::Result<()> {
        w.write_envelope(&Envelope {
            endpoint,
            t_ms: t,
            context: context.to_owned(),
            raw: Bytes::copy_from_slice(raw),
            seq: 0,
        })?;
        let source = endpoint.source();
        w.write_watermark(source, t)?;
        if let Some(due) = self.watermark_due.get_mut(source.index()) {
            *due = t + SILENCE_TICK_MS;
        }
        self.summary.envelopes += 1;
        self.summary.bytes += raw.len() as u64;
        Ok(())
    }
}

struct Generator {
    tl: Timeline,
    faults: Faults,
    hermes: Hermes,
    keeper: Keeper,
    market: Market,
    providers: [Provider; 2],
    /// Rounds left in which the second provider is 5 % off.
    discrepancy_rounds: u32,
    next: [u64; PROCESSES],
    outbox: [VecDeque<Pending>; PROCESSES],
    cadence: Rng,
    buf: Vec<u8>,
    selected: Vec<usize>,
    outage_announced: bool,
    sink: Sink,
}

impl Generator {
    fn new(opts: &SynthOptions) -> Generator {
        let seed = opts.seed;
        let mut script_rng = Rng::new(seed, 1);
        let tl = Timeline::new(opts.start_ms, opts.minutes, opts.faults, &mut script_rng);
        let per_kind = u64::from(opts.minutes / 3).max(1);
        let faults = Faults::new(&tl, opts.faults, per_kind, &mut script_rng);
        let hermes = Hermes::new(opts.feeds as usize, tl.start, Rng::new(seed, 2));
        let keeper = Keeper::new(
            hermes.feeds.len(),
            tl.start,
            tl.keeper_from,
            Rng::new(seed, 3),
        );
        let sol = hermes
            .feeds
            .get(hermes::SOL)
            .map_or(14_237_123_456, |f| f.price);
        let market = Market::new(opts.tokens as usize, &tl, Rng::new(seed, 4), sol);
        let providers = [
            Provider::new(Rng::new(seed, 5)),
            Provider::new(Rng::new(seed, 6)),
        ];
        let mut cadence = Rng::new(seed, 7);
        let start = tl.start;
        let mut next = [u64::MAX; PROCESSES];
        next[P_MARKET] = start;
        next[P_HERMES] = start + cadence.below(400);
        next[P_BOOSTS] = start + 300 + cadence.below(400);
        next[P_TOKENS] = start + 1_200 + cadence.below(400);
        next[P_BIRDEYE] = start + 2_000 + cadence.below(1_000);
        next[P_CHAIN] = start + 3_000 + cadence.below(1_000);
        next[P_MESH] = start + 4_000 + cadence.below(2_000);
        next[P_MESH + 1] = tl.mesh_second_from + cadence.below(2_000);
        Generator {
            discrepancy_rounds: if opts.faults { 3 } else { 0 },
            tl,
            faults,
            hermes,
            keeper,
            market,
            providers,
            next,
            outbox: Default::default(),
            cadence,
            buf: Vec::with_capacity(1 << 16),
            selected: Vec::new(),
            outage_announced: false,
            sink: Sink {
                summary: SynthSummary::default(),
                watermark_due: [start + SILENCE_TICK_MS; 5],
            },
        }
    }

    fn run<W: Write>(mut self, w: &mut RecordingWriter<W>) -> io::Result<SynthSummary> {
        loop {
            // The earliest due process; ties go to the lower number, watermarks last.
            let mut best = (u64::MAX, usize::MAX);
            for p in 0..PROCESSES {
                let queued = self
                    .outbox
                    .get(p)
                    .and_then(|q| q.front())
                    .map_or(u64::MAX, |e| e.t);
                let due = self.next.get(p).copied().unwrap_or(u64::MAX).min(queued);
                if due < best.0 {
                    best = (due, p);
                }
            }
            for (s, due) in self.sink.watermark_due.iter().enumerate() {
                if *due < best.0 {
                    best = (*due, PROCESSES + s);
                }
            }
            let (t, p) = best;
            if t >= self.tl.end {
                break;
            }
            if p >= PROCESSES {
                let source = Source::from_index(p - PROCESSES).unwrap_or(Source::Hermes);
                w.write_watermark(source, t)?;
                if let Some(due) = self.sink.watermark_due.get_mut(source.index()) {
                    *due = t + SILENCE_TICK_MS;
                }
                continue;
            }
            let queued_first = self
                .outbox
                .get(p)
                .and_then(|q| q.front())
                .is_some_and(|e| e.t <= self.next.get(p).copied().unwrap_or(u64::MAX));
            if queued_first {
                if let Some(e) = self.outbox.get_mut(p).and_then(|q| q.pop_front()) {
                    self.sink.envelope(w, e.endpoint, e.t, e.context, &e.raw)?;
                    self.sink.summary.price_updates += e.prices;
                    self.sink.summary.malformed += e.malformed;
                }
                continue;
            }
            match p {
                P_MARKET => {
                    self.market.tick(t, &self.tl);
                    self.next[P_MARKET] = t + 1000;
                }
                P_HERMES => self.hermes_slot(w, t)?,
                P_REST => self.hermes_rest(w, t)?,
                P_BOOSTS => self.boosts(w, t)?,
                P_TOKENS => self.pairs(t),
                P_BIRDEYE => self.birdeye(w, t)?,
                P_CHAIN => self.chain(w, t)?,
                _ => self.mesh(p - P_MESH, t),
            }
        }
        for source in Source::ALL {
            w.write_watermark(source, self.tl.end)?;
        }
        Ok(self.sink.summary)
    }

    /// One Pythnet slot: prices move, the other keeper looks, and (unless the stream is down)
    /// an SSE event arrives.
    fn hermes_slot<W: Write>(&mut self, w: &mut RecordingWriter<W>, t: u64) -> io::Result<()> {
        self.next[P_HERMES] = t + self.cadence.jitter(400, 40);
        self.hermes.advance(t);
        self.keeper.observe(t, &self.hermes.feeds);
        if let Some(outage) = self.tl.hermes_outage {
            if !self.outage_announced && t >= outage.from {
                // The server's last word before the stream ends; the fallback poller starts.
                self.outage_announced = true;
                self.next[P_REST] = t + self.cadence.jitter(1000, 150);
                return self
                    .sink
                    .envelope(w, Endpoint::HermesStream, t, "error", STREAM_TIMEOUT);
            }
            if outage.contains(t) {
                return Ok(());
            }
        }
        if self.hermes.published == 0 {
            return Ok(());
        }
        self.hermes.select(&mut self.selected);
        self.buf.clear();
        if self.faults.take(Fault::HermesTruncated, t) {
            self.hermes
                .write_update(&mut self.buf, t, &self.selected, None);
            let len = self.buf.len() as u64;
            let cut = len / 4 + self.cadence.below(len / 2);
            self.buf.truncate(cut as usize);
            self.sink.summary.malformed += 1;
        } else {
            let negate = self
                .faults
                .take(Fault::HermesNegative, t)
                .then(|| self.hermes.pick(self.selected.len()));
            self.hermes
                .write_update(&mut self.buf, t, &self.selected, negate);
            let good = (self.selected.len() - usize::from(negate.is_some())) as u64;
            self.sink.summary.hermes_updates += good;
            self.sink.summary.price_updates += good;
            self.sink.summary.malformed += u64::from(negate.is_some());
        }
        self.sink
            .envelope(w, Endpoint::HermesStream, t, "", &self.buf)
    }

    /// The REST fallback poller, while the stream is down.
    fn hermes_rest<W: Write>(&mut self, w: &mut RecordingWriter<W>, t: u64) -> io::Result<()> {
        let down = self.tl.hermes_outage.is_some_and(|o| o.contains(t));
        if !down {
            self.next[P_REST] = u64::MAX;
            return Ok(());
        }
        self.next[P_REST] = t + self.cadence.jitter(1000, 100);
        self.selected.clear();
        self.selected.extend(0..self.hermes.published);
        self.buf.clear();
        self.hermes
            .write_update(&mut self.buf, t, &self.selected, None);
        let n = self.selected.len() as u64;
        self.sink.summary.hermes_updates += n;
        self.sink.summary.price_updates += n;
        self.sink
            .envelope(w, Endpoint::HermesLatest, t, "", &self.buf)
    }

    /// A boost-list poll: the list changes whether or not the poll gets through.
    fn boosts<W: Write>(&mut self, w: &mut RecordingWriter<W>, t: u64) -> io::Result<()> {
        self.next[P_BOOSTS] = t + self.cadence.jitter(3000, 200);
        self.market.evolve_boosts(t, &self.tl);
        if self.tl.dex_gap.is_some_and(|g| g.contains(t)) {
            return Ok(());
        }
        self.buf.clear();
        if self.faults.take(Fault::EmptyBoosts, t) {
            self.sink.summary.malformed += 1;
        } else {
            let bad = self.faults.take(Fault::BoostBadAddress, t);
            let corrupted = self.market.write_boosts(&mut self.buf, bad);
            self.sink.summary.malformed += u64::from(corrupted);
        }
        self.sink
            .envelope(w, Endpoint::DexscreenerBoosts, t, "", &self.buf)
    }

    /// A pair-price poll: one `/tokens/v1` request per chain with listed tokens, a little
    /// apart.
    fn pairs(&mut self, t: u64) {
        self.next[P_TOKENS] = t + self.cadence.jitter(6000, 300);
        if self.tl.dex_gap.is_some_and(|g| g.contains(t)) {
            return;
        }
        let quotes = self.quotes();
        let mut html = self.faults.take(Fault::DexHtml, t);
        let mut bad_price = self.faults.take(Fault::PairBadPrice, t);
        let mut at = t;
        for chain in Chain::ALL {
            let tokens = self.market.listed_on(chain);
            if tokens.is_empty() {
                continue;
            }
            let mut raw = Vec::with_capacity(4096 * tokens.len());
            let (prices, malformed) = if html {
                html = false;
                cloudflare_page(&mut raw, self.cadence.u64());
                (0, 1)
            } else {
                let bad_pair =
                    bad_price.then(|| self.cadence.index(self.market.pair_count(&tokens)));
                bad_price = false;
                let prices = self
                    .market
                    .write_pairs(&mut raw, &tokens, &quotes, bad_pair);
                (prices, u64::from(bad_pair.is_some()))
            };
            if let Some(queue) = self.outbox.get_mut(P_TOKENS) {
                queue.push_back(Pending {
                    t: at,
                    endpoint: Endpoint::DexscreenerTokens,
                    context: chain.slug(),
                    raw,
                    prices,
                    malformed,
                });
            }
            at += self.cadence.jitter(120, 60);
        }
    }

    /// A Birdeye multi_price poll.
    fn birdeye<W: Write>(&mut self, w: &mut RecordingWriter<W>, t: u64) -> io::Result<()> {
        self.next[P_BIRDEYE] = t + self.cadence.jitter(15_000, 500);
        self.buf.clear();
        if self.faults.take(Fault::BirdeyeRateLimited, t) {
            self.buf.extend_from_slice(BIRDEYE_429);
            self.sink.summary.malformed += 1;
        } else if self.faults.take(Fault::EmptyBirdeye, t) {
            self.sink.summary.malformed += 1;
        } else {
            let quotes = self.quotes();
            let priced = self.market.write_birdeye(&mut self.buf, t, &quotes);
            self.sink.summary.price_updates += priced;
        }
        self.sink
            .envelope(w, Endpoint::BirdeyeMultiPrice, t, "solana", &self.buf)
    }

    /// A round of on-chain reads.
    fn chain<W: Write>(&mut self, w: &mut RecordingWriter<W>, t: u64) -> io::Result<()> {
        self.next[P_CHAIN] = t + self.cadence.jitter(5000, 150);
        self.keeper.land(t);
        self.buf.clear();
        if self.faults.take(Fault::EmptyChain, t) {
            self.sink.summary.malformed += 1;
        } else {
            let published = self.hermes.published;
            let failed = (published > 0 && self.faults.take(Fault::ChainUnknownError, t))
                .then(|| self.cadence.index(published));
            let json = self
                .keeper
                .read_round(t, &self.hermes.feeds, published, failed);
            self.buf.extend_from_slice(json.as_bytes());
            self.sink.summary.malformed += u64::from(failed.is_some());
        }
        self.sink.envelope(w, Endpoint::ChainRead, t, "", &self.buf)
    }

    /// A mesh provider's round: SOL and the top listed Solana tokens, one message each.
    fn mesh(&mut self, k: usize, t: u64) {
        if let Some(next) = self.next.get_mut(P_MESH + k) {
            *next = t + self.cadence.jitter(30_000, 1_000);
        }
        let off = k == 1 && self.tl.discrepancy_from <= t && self.discrepancy_rounds > 0;
        if off {
            self.discrepancy_rounds -= 1;
        }
        let skew = |m: i128| if off { m * 105 / 100 } else { m };
        let mut version_two = self.faults.take(Fault::MeshV2, t);
        let sol = self.quotes().sol;
        let mut quotes = Vec::new();
        let Some(provider) = self.providers.get_mut(k) else {
            return;
        };
        let lag = provider.range(50, 1_500) as u64;
        quotes.push(mesh::Quote {
            asset: "SOL".into(),
            mantissa: skew(
                i128::from(sol) * i128::from(1_000_000 + provider.range(-500, 500)) / 1_000_000,
            ),
            expo: -8,
            publish_ms: t.saturating_sub(lag),
            change_bp: self.market.sol_change_24h_bp(sol),
        });
        for i in self.market.top_solana(3) {
            let Some(token) = self.market.tokens.get(i) else {
                continue;
            };
            let mantissa = i128::from(token.price)
                * 1000
                * i128::from(1_000_000 + provider.range(-1_000, 1_000))
                / 1_000_000;
            quotes.push(mesh::Quote {
                asset: format!("{}:{}", token.chain.slug(), token.address),
                mantissa: skew(mantissa),
                expo: token.expo - 3,
                publish_ms: t.saturating_sub(lag),
                change_bp: self.market.change_24h_bp(i),
            });
        }
        let mut at = t;
        for quote in quotes {
            let raw = provider.message(quote, version_two);
            let malformed = u64::from(version_two);
            version_two = false;
            if let Some(queue) = self.outbox.get_mut(P_MESH + k) {
                queue.push_back(Pending {
                    t: at,
                    endpoint: Endpoint::MeshPrice,
                    context: "",
                    raw,
                    prices: 1 - malformed,
                    malformed,
                });
            }
            at += self.cadence.range_u(2, 15);
        }
    }

    /// The quote assets' USD prices now.
    fn quotes(&self) -> Quotes {
        let price =
            |i: usize, fallback: i64| self.hermes.feeds.get(i).map_or(fallback, |f| f.price);
        Quotes {
            sol: price(hermes::SOL, 14_237_123_456),
            eth: price(hermes::ETH, 341_234_567_890),
            usdc: self.market.usdc,
        }
    }
}

/// A Cloudflare rate-limit page (error 1015), as DEX Screener's edge returns it instead of
/// JSON when a client is throttled.
fn cloudflare_page(buf: &mut Vec<u8>, ray: u64) {
    text::push(
        buf,
        "<!DOCTYPE html>\n<!--[if lt IE 7]> <html class=\"no-js ie6 oldie\" lang=\"en-US\"> <![endif]-->\n\
         <html class=\"no-js\" lang=\"en-US\">\n<head>\n<title>Access denied | api.dexscreener.com used Cloudflare to restrict access</title>\n\
         <meta charset=\"UTF-8\" />\n<meta http-equiv=\"Content-Type\" content=\"text/html; charset=UTF-8\" />\n\
         <meta http-equiv=\"X-UA-Compatible\" content=\"IE=Edge\" />\n<meta name=\"robots\" content=\"noindex, nofollow\" />\n\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\" />\n\
         <link rel=\"stylesheet\" id=\"cf_styles-css\" href=\"/cdn-cgi/styles/main.css\" />\n</head>\n<body>\n\
         <div id=\"cf-wrapper\">\n<div id=\"cf-error-details\" class=\"p-0\">\n<header class=\"mx-auto pt-10 lg:pt-6 lg:px-8 w-240 lg:w-full mb-8\">\n\
         <h1 class=\"inline-block sm:block sm:mb-2 font-light text-60 lg:text-4xl text-black-dark leading-tight mr-2\">\n\
         <span class=\"inline-block\">Error</span>\n<span class=\"code-label\">Error code 1015</span>\n</h1>\n\
         <h2 class=\"text-gray-600 leading-1.3 text-3xl font-light\">You are being rate limited</h2>\n</header>\n\
         <section class=\"w-240 lg:w-full mx-auto mb-8 lg:px-8\">\n<div id=\"what-happened-section\" class=\"w-1/2 md:w-full\">\n\
         <h2 class=\"text-3xl leading-tight font-normal mb-4 text-black-dark antialiased\">What happened?</h2>\n\
         <p>The owner of this website (api.dexscreener.com) has banned you temporarily from accessing this website.</p>\n\
         </div>\n</section>\n<div class=\"cf-error-footer cf-wrapper w-240 lg:w-full py-10 sm:py-4 sm:px-8 mx-auto text-center sm:text-left border-solid border-0 border-t border-gray-300\">\n\
         <p class=\"text-13\">\n<span class=\"cf-footer-item sm:block sm:mb-1\">Cloudflare Ray ID: <strong class=\"font-semibold\">",
    );
    text::push_hex(buf, &ray.to_be_bytes());
    text::push(
        buf,
        "</strong></span>\n<span class=\"cf-footer-separator sm:hidden\">&bull;</span>\n\
         <span class=\"cf-footer-item sm:block sm:mb-1\">Performance &amp; security by <a rel=\"noopener noreferrer\" href=\"https://www.cloudflare.com/5xx-error-landing\" target=\"_blank\">Cloudflare</a></span>\n\
         </p>\n</div>\n</div>\n</div>\n</body>\n</html>\n",
    );
}
