//! Pyth side of the synthetic market: feeds that random-walk, Hermes `PriceUpdate` documents
//! (stream events and REST bodies) carrying MockPyth update data, and the other keeper whose
//! pushes the chain reads show.

use crate::model::parse::chain::{ChainRead, ChainReadRound, to_json};
use crate::model::{FeedId, OnChainPrice};

use super::abi::MockUpdate;
use super::rng::Rng;
use super::text::{push, push_hex, push_i64, push_u64};

/// The real Pyth feed ids of BTC/USD, ETH/USD and SOL/USD (stable channel).
const MAJOR_IDS: [&str; 3] = [
    "e62df6c8b4a85fe1a67db44dc12de5db330f7ac66b72dc658afedf0f4a415b43",
    "ff61491a931112ddf1bd8147cd1b641375f79f5825126d665480874634fd0ace",
    "ef0d8b6fda2ceba41da15d4095d1da392a0d2f8ed0c6c7bc0f4cfac8c280b56d",
];

/// Index of the ETH/USD feed among the feeds.
pub(crate) const ETH: usize = 1;
/// Index of the SOL/USD feed among the feeds.
pub(crate) const SOL: usize = 2;

/// One Pyth feed's state.
pub(crate) struct Feed {
    id: [u8; 32],
    id_hex: [u8; 64],
    /// Exponent of price, conf and the EMAs.
    pub expo: i32,
    /// Price mantissa.
    pub price: i64,
    conf: u64,
    ema: i64,
    ema_conf: u64,
    /// Confidence as parts per million of the price.
    conf_ppm: i64,
    /// Standard deviation of one slot's relative step, parts per billion.
    sigma_ppb: i64,
    /// Chance of a 1–3 % jump per slot, parts per million.
    jump_ppm: u64,
    publish_time: i64,
    prev_publish_time: i64,
}

impl Feed {
    fn new(
        id: [u8; 32],
        expo: i32,
        price: i64,
        conf_ppm: i64,
        sigma_ppb: i64,
        publish_time: i64,
    ) -> Self {
        let mut id_hex = [0u8; 64];
        // Cannot fail: the output is exactly twice the input.
        let _ = hex::encode_to_slice(id, &mut id_hex);
        let conf = (i128::from(price) * i128::from(conf_ppm) / 1_000_000) as u64;
        Feed {
            id,
            id_hex,
            expo,
            price,
            conf,
            ema: price,
            ema_conf: conf,
            conf_ppm,
            sigma_ppb,
            jump_ppm: 800,
            publish_time,
            prev_publish_time: publish_time - 1,
        }
    }

    /// The feed id.
    pub(crate) fn id(&self) -> FeedId {
        FeedId(self.id)
    }

    /// What a contract would store if this state were pushed now.
    pub(crate) fn on_chain(&self) -> OnChainPrice {
        OnChainPrice {
            price: self.price,
            conf: self.conf,
            expo: self.expo,
            publish_time: self.publish_time,
        }
    }

    fn mock_update(&self, negate: bool) -> MockUpdate {
        MockUpdate {
            id: self.id,
            price: if negate { -self.price } else { self.price },
            conf: self.conf,
            expo: self.expo,
            ema_price: self.ema,
            ema_conf: self.ema_conf,
            publish_time: u64::try_from(self.publish_time).unwrap_or(0),
            prev_publish_time: u64::try_from(self.prev_publish_time).unwrap_or(0),
        }
    }
}

/// Every feed, the Pythnet slot, and the writer of `PriceUpdate` documents.
pub(crate) struct Hermes {
    /// All feeds; at least BTC, ETH and SOL, which the DEX quotes need even when fewer feeds
    /// are published.
    pub feeds: Vec<Feed>,
    /// How many feeds (from the first) Hermes publishes.
    pub published: usize,
    slot: u64,
    publish_time: i64,
    rng: Rng,
}

impl Hermes {
    /// `published` feeds (BTC, ETH, SOL, then random ids) as of `start_ms`.
    pub(crate) fn new(published: usize, start_ms: u64, mut rng: Rng) -> Self {
        let publish_time = (start_ms / 1000) as i64 - 1;
        let mut feeds = Vec::with_capacity(published.max(3));
        let majors: [(i64, i64, i64); 3] = [
            // (price at expo -8, conf ppm, sigma ppb per slot)
            (9_712_345_678_901, 460, 60_000),
            (341_234_567_890, 550, 80_000),
            (14_237_123_456, 640, 120_000),
        ];
        for (hex_id, (price, conf_ppm, sigma)) in MAJOR_IDS.iter().zip(majors) {
            let mut id = [0u8; 32];
            // The ids are constants of the right length; a failure would leave zeros.
            let _ = hex::decode_to_slice(hex_id, &mut id);
            let price = price + price * rng.range(-20_000, 20_000) / 1_000_000;
            feeds.push(Feed::new(id, -8, price, conf_ppm, sigma, publish_time));
        }
        while feeds.len() < published {
            let id = rng.bytes32();
            let (expo, digits) = match rng.weighted(&[70, 15, 15]) {
                0 => (-8, rng.range(6, 13)),
                1 => (-5, rng.range(4, 9)),
                _ => (-10, rng.range(6, 11)),
            };
            let low = super::text::pow10(digits as u32 - 1) as i64;
            let price = rng.range(low, low * 10 - 1);
            let conf_ppm = rng.range(100, 1000);
            let sigma = rng.range(50_000, 250_000);
            feeds.push(Feed::new(id, expo, price, conf_ppm, sigma, publish_time));
        }
        Hermes {
            feeds,
            published,
            slot: 279_842_113 + rng.below(1_000_000),
            publish_time,
            rng,
        }
    }

    /// Moves every feed one Pythnet slot forward, as Hermes would see it at `t_ms`.
    pub(crate) fn advance(&mut self, t_ms: u64) {
        let rng = &mut self.rng;
        // Now and then a slot is skipped.
        self.slot += if rng.chance(30_000) { 2 } else { 1 };
        // Prices are published a few hundred ms before Hermes streams them.
        let lag = rng.range_u(250, 700);
        let publish_time = (t_ms.saturating_sub(lag) / 1000) as i64;
        self.publish_time = self.publish_time.max(publish_time);
        for feed in &mut self.feeds {
            let mut step = rng.normal(feed.sigma_ppb);
            if rng.chance(feed.jump_ppm) {
                let size = rng.range(10_000_000, 30_000_000);
                step += if rng.u64() & 1 == 0 { size } else { -size };
            }
            let moved = i128::from(feed.price) * i128::from(step) / 1_000_000_000;
            feed.price = (i128::from(feed.price) + moved).max(1) as i64;
            let conf_ppm = feed.conf_ppm * rng.range(800, 1200) / 1000;
            feed.conf = (i128::from(feed.price) * i128::from(conf_ppm) / 1_000_000).max(1) as u64;
            // An EMA over about 64 slots; Pyth's is longer, but the shape is what matters.
            feed.ema += (feed.price - feed.ema) / 64;
            feed.ema_conf =
                (feed.ema_conf as i64 + (feed.conf as i64 - feed.ema_conf as i64) / 64) as u64;
            feed.prev_publish_time = feed.publish_time;
            feed.publish_time = self.publish_time;
        }
    }

    /// Picks the published feeds an event carries into `out`: all of them, or now and then
    /// (about 2 % of events) a random subset, as when some feeds had no update in a slot.
    pub(crate) fn select(&mut self, out: &mut Vec<usize>) {
        out.clear();
        if self.published > 1 && self.rng.chance(20_000) {
            for i in 0..self.published {
                if self.rng.u64() & 1 == 0 {
                    out.push(i);
                }
            }
            if out.is_empty() {
                out.push(self.rng.index(self.published));
            }
        } else {
            out.extend(0..self.published);
        }
    }

    /// A random position in a selection of `len` feeds.
    pub(crate) fn pick(&mut self, len: usize) -> usize {
        self.rng.index(len)
    }

    /// Writes a `PriceUpdate` document for the feeds at `selected` into `buf`: one MockPyth
    /// update element per feed in `binary.data`, in the order of `parsed`. The feed at
    /// position `negate` (if any) gets a negated price, a deliberate fault.
    pub(crate) fn write_update(
        &self,
        buf: &mut Vec<u8>,
        t_ms: u64,
        selected: &[usize],
        negate: Option<usize>,
    ) {
        push(buf, r#"{"binary":{"encoding":"hex","data":["#);
        for (pos, &i) in selected.iter().enumerate() {
            let Some(feed) = self.feeds.get(i) else {
                continue;
            };
            if pos > 0 {
                buf.push(b',');
            }
            buf.push(b'"');
            push_hex(buf, &feed.mock_update(negate == Some(pos)).encode());
            buf.push(b'"');
        }
        push(buf, r#"]},"parsed":["#);
        let proof_available_time = t_ms / 1000;
        for (pos, &i) in selected.iter().enumerate() {
            let Some(feed) = self.feeds.get(i) else {
                continue;
            };
            if pos > 0 {
                buf.push(b',');
            }
            push(buf, r#"{"id":""#);
            buf.extend_from_slice(&feed.id_hex);
            push(buf, r#"","price":{"price":""#);
            if negate == Some(pos) {
                buf.push(b'-');
            }
            push_i64(buf, feed.price);
            push(buf, r#"","conf":""#);
            push_u64(buf, feed.conf);
            push(buf, r#"","expo":"#);
            push_i64(buf, i64::from(feed.expo));
            push(buf, r#","publish_time":"#);
            push_i64(buf, feed.publish_time);
            push(buf, r#"},"ema_price":{"price":""#);
            push_i64(buf, feed.ema);
            push(buf, r#"","conf":""#);
            push_u64(buf, feed.ema_conf);
            push(buf, r#"","expo":"#);
            push_i64(buf, i64::from(feed.expo));
            push(buf, r#","publish_time":"#);
            push_i64(buf, feed.publish_time);
            push(buf, r#"},"metadata":{"slot":"#);
            push_u64(buf, self.slot);
            push(buf, r#","proof_available_time":"#);
            push_u64(buf, proof_available_time);
            push(buf, r#","prev_publish_time":"#);
            push_i64(buf, feed.prev_publish_time);
            push(buf, "}}");
        }
        push(buf, "]}");
    }
}

/// Another party's keeper, emulated: it pushes a feed when it moved ≥ 0.5 % or 60 s passed,
/// and its transactions land a few seconds later. The chain reads show what has landed.
pub(crate) struct Keeper {
    from_ms: u64,
    landed: Vec<Option<OnChainPrice>>,
    in_flight: Vec<Option<(u64, OnChainPrice)>>,
    rng: Rng,
    block0: u64,
    start_ms: u64,
}

impl Keeper {
    /// A keeper for `feeds` feeds that starts pushing at `from_ms`.
    pub(crate) fn new(feeds: usize, start_ms: u64, from_ms: u64, mut rng: Rng) -> Self {
        let block0 = 38_000_000 + rng.below(1_000_000);
        Keeper {
            from_ms,
            landed: vec![None; feeds],
            in_flight: vec![None; feeds],
            rng,
            block0,
            start_ms,
        }
    }

    /// Lets the keeper look at the feeds at `t_ms` and push what it should.
    pub(crate) fn observe(&mut self, t_ms: u64, feeds: &[Feed]) {
        if t_ms < self.from_ms {
            return;
        }
        let lands_at = t_ms + self.rng.range_u(2_000, 5_000);
        for ((feed, landed), in_flight) in feeds.iter().zip(&self.landed).zip(&mut self.in_flight) {
            if in_flight.is_some() {
                continue;
            }
            let due = match landed {
                None => true,
                Some(on_chain) => {
                    let moved = (i128::from(feed.price) - i128::from(on_chain.price)).abs() * 1000;
                    feed.publish_time >= on_chain.publish_time + 60
                        || moved >= 5 * i128::from(on_chain.price).abs()
                }
            };
            if due {
                *in_flight = Some((lands_at, feed.on_chain()));
            }
        }
    }

    /// Lands every push whose transaction is mined by `t_ms`.
    pub(crate) fn land(&mut self, t_ms: u64) {
        for (landed, in_flight) in self.landed.iter_mut().zip(&mut self.in_flight) {
            if let Some((at, price)) = *in_flight
                && at <= t_ms
            {
                // MockPyth keeps only strictly newer publish times.
                if landed.is_none_or(|old| old.publish_time < price.publish_time) {
                    *landed = Some(price);
                }
                *in_flight = None;
            }
        }
    }

    /// One round of reads of the first `published` feeds at `t_ms`, as chain-read JSON. The
    /// read at position `failed` (if any) fails with an error the parser does not accept.
    pub(crate) fn read_round(
        &self,
        t_ms: u64,
        feeds: &[Feed],
        published: usize,
        failed: Option<usize>,
    ) -> String {
        // Base-like 2 s blocks.
        let block = self.block0 + (t_ms - self.start_ms) / 2000;
        let reads = feeds
            .iter()
            .zip(&self.landed)
            .take(published)
            .enumerate()
            .map(|(i, (feed, landed))| match landed {
                _ if failed == Some(i) => ChainRead::failed(feed.id(), "header not found"),
                Some(price) => ChainRead::found(feed.id(), *price),
                None => ChainRead::not_found(feed.id()),
            })
            .collect();
        to_json(&ChainReadRound::new(Some(block), reads))
    }
}
