//! The DEX side of the synthetic market: a pool of meme tokens with boosts, pairs and prices
//! that follow the script (rally, crash, partial recovery, one fast climber), and the bodies
//! DEX Screener (boost lists, token pairs) and Birdeye (multi_price) would return for them.

use std::cmp::Reverse;

use alloy_primitives::Address;

use super::rng::Rng;
use super::scenario::Timeline;
use super::text::{
    pow10, push, push_decimal, push_fixed, push_float, push_hex, push_human_time, push_i128,
    push_json_str, push_u64,
};

/// Wrapped SOL, the quote of most Solana pairs.
pub(crate) const SOL_MINT: &str = "So11111111111111111111111111111111111111112";
/// USDC on Solana.
pub(crate) const USDC_MINT: &str = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v";
/// WETH on Base.
const WETH_BASE: &str = "0x4200000000000000000000000000000000000006";
/// WETH on Ethereum.
const WETH_ETHEREUM: &str = "0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2";

/// Most tokens a boost list (and a `/tokens/v1` request) holds.
pub(crate) const MAX_LISTED: usize = 30;

/// Words token names are made of.
const WORDS: [&str; 48] = [
    "Moon", "Doge", "Pepe", "Cat", "Frog", "Based", "Giga", "Turbo", "Nyan", "Shiba", "Wojak",
    "Chad", "Pump", "Rocket", "Degen", "Sigma", "Kitty", "Bull", "Lambo", "Ape", "Mog", "Wif",
    "Hat", "Inu", "Goat", "Baby", "Mini", "Super", "Hyper", "Quantum", "Neuro", "Pixel", "Ninja",
    "Dragon", "Tiger", "Panda", "Koala", "Otter", "Gnome", "Wizard", "Laser", "Cosmic", "Honk",
    "Bonky", "Zoomer", "Sloth", "Penguin", "Duck",
];

/// A chain the token pool lives on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Chain {
    /// Solana (base58 mints).
    Solana,
    /// Base (EVM).
    Base,
    /// Ethereum (EVM).
    Ethereum,
}

impl Chain {
    /// Every chain, in request order.
    pub(crate) const ALL: [Chain; 3] = [Chain::Solana, Chain::Base, Chain::Ethereum];

    /// The DEX Screener chain slug.
    pub(crate) fn slug(self) -> &'static str {
        match self {
            Chain::Solana => "solana",
            Chain::Base => "base",
            Chain::Ethereum => "ethereum",
        }
    }
}

/// What a pair is quoted in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Quote {
    Sol,
    Usdc,
    Weth(Chain),
}

impl Quote {
    fn token(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Quote::Sol => (SOL_MINT, "Wrapped SOL", "SOL"),
            Quote::Usdc => (USDC_MINT, "USD Coin", "USDC"),
            Quote::Weth(Chain::Ethereum) => (WETH_ETHEREUM, "Wrapped Ether", "WETH"),
            Quote::Weth(_) => (WETH_BASE, "Wrapped Ether", "WETH"),
        }
    }

    /// The quote's USD price, mantissa at expo -8.
    fn usd(self, quotes: &Quotes) -> i64 {
        match self {
            Quote::Sol => quotes.sol,
            Quote::Usdc => quotes.usdc,
            Quote::Weth(_) => quotes.eth,
        }
    }
}

/// USD prices of the quote assets, mantissas at expo -8 (the Pyth feeds' exponent).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Quotes {
    /// SOL/USD.
    pub sol: i64,
    /// ETH/USD.
    pub eth: i64,
    /// USDC/USD.
    pub usdc: i64,
}

/// A JSON field that is a string, `null`, or missing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Presence {
    Text,
    Null,
    Absent,
}

/// One pool a token trades in.
struct Pair {
    address: String,
    lower: String,
    dex: &'static str,
    label: Option<&'static str>,
    quote: Quote,
    created_ms: u64,
    /// Price offset from the token's price, parts per million.
    offset_ppm: i64,
    /// Share of the token's liquidity and volume, parts per million.
    share_ppm: i64,
    has_liquidity: bool,
}

/// One minute of a token's history.
#[derive(Clone, Copy, Default)]
struct Minute {
    price: i64,
    volume_cents: i64,
    buys: u64,
    sells: u64,
}

/// A meme token: identity, page metadata, pairs, boosts and price.
pub(crate) struct Token {
    /// Its chain.
    pub chain: Chain,
    /// Its address as the chain spells it (base58, or EIP-55 checksummed).
    pub address: String,
    name: String,
    symbol: String,
    slug: String,
    description: Presence,
    icon_hash: [u8; 32],
    icon_bare: bool,
    header: Presence,
    header_hash: [u8; 32],
    links: u8,
    profile_ms: u64,
    image_key: [u8; 3],
    has_info: bool,
    boost_head: Vec<u8>,
    pairs: Vec<Pair>,
    /// Total active boosts.
    pub total: u64,
    /// In the boost list's candidate set (has active boosts).
    pub active: bool,
    hold_until: u64,
    walk: i64,
    /// Exponent of the price mantissas.
    pub expo: i32,
    /// Current USD price mantissa (as of the last market tick).
    pub price: i64,
    initial: i64,
    sigma_ppb: i64,
    rally_ppm: i64,
    depth_ppm: i64,
    recover_ppm: i64,
    pump_ppm: i64,
    supply: i64,
    circulating_ppm: i64,
    liquidity0_cents: i64,
    /// Prices 1 h, 6 h and 24 h before the run.
    refs: [i64; 3],
    /// Which `priceChange` keys pairs carry: bit 0 m5, 1 h1, 2 h6, 3 h24.
    change_keys: u8,
    minutes: [Minute; 6],
    minute_pos: usize,
    base_volume: [i64; 3],
    base_txns: [(u64, u64); 3],
    run_volume: i64,
    run_buys: u64,
    run_sells: u64,
    avg_trade_cents: i64,
}

impl Token {
    fn new(index: usize, start_ms: u64, rng: &mut Rng) -> Token {
        let chain = match rng.weighted(&[80, 10, 10]) {
            0 => Chain::Solana,
            1 => Chain::Base,
            _ => Chain::Ethereum,
        };
        let address = random_address(chain, rng);
        let first = rng.pick(&WORDS).copied().unwrap_or("Moon");
        let second = rng.pick(&WORDS).copied().unwrap_or("Cat");
        let name = format!("{first} {second}");
        let mut symbol: String = format!("{first}{second}").to_uppercase();
        symbol.truncate(rng.range(3, 8) as usize);
        let slug = format!("{}-{}-{index}", first.to_lowercase(), second.to_lowercase());
        // Prices from 1e-7 to 10 USD, 12 significant digits.
        let decade = match chain {
            Chain::Solana => rng.range(-7, 0),
            _ => rng.range(-6, 1),
        };
        let expo = (decade - 11) as i32;
        let initial = rng.range(100_000_000_000, 999_999_999_999);
        let pump = chain == Chain::Solana && rng.chance(700_000);
        let supply = if pump {
            1_000_000_000
        } else {
            rng.range(100_000_000, 100_000_000_000)
        };
        let circulating_ppm = if pump {
            1_000_000
        } else {
            rng.range(700_000, 1_000_000)
        };
        let fdv_cents = mul_price(supply, initial, expo, 2);
        let liquidity0_cents =
            (fdv_cents * i128::from(rng.range(30_000, 250_000)) / 1_000_000).max(500_000) as i64;
        let change = |rng: &mut Rng, lo: i64, hi: i64| {
            let c = rng.range(lo, hi);
            (i128::from(initial) * 1_000_000 / i128::from(1_000_000 + c)) as i64
        };
        // Meme-like histories: mostly modest moves, a fat tail of multi-baggers.
        let spread =
            |rng: &mut Rng, down: i64, up: i64, moon: i64| match rng.weighted(&[40, 40, 20]) {
                0 => (-down, 0),
                1 => (0, up),
                _ => (up, moon),
            };
        let (lo1, hi1) = spread(rng, 150_000, 200_000, 600_000);
        let (lo6, hi6) = spread(rng, 350_000, 600_000, 3_000_000);
        let (lo24, hi24) = spread(rng, 600_000, 1_500_000, 9_000_000);
        let refs = [
            change(rng, lo1, hi1),
            change(rng, lo6, hi6),
            change(rng, lo24, hi24),
        ];
        let change_keys = match rng.weighted(&[85, 8, 7]) {
            0 => 0b1111,
            1 => 0b1110,
            _ => 0b1100,
        };
        let h1 = liquidity0_cents * rng.range(20, 150) / 100;
        let h6 = h1 * rng.range(3, 6);
        let h24 = h6 * rng.range(2, 4);
        let avg_trade_cents = rng.range(3_000, 30_000);
        let txns = |volume: i64, rng: &mut Rng| {
            let trades = (volume / avg_trade_cents).max(1) as u64;
            let buys = trades * rng.range_u(45, 56) / 100;
            (buys, trades - buys)
        };
        let base_txns = [txns(h1, rng), txns(h6, rng), txns(h24, rng)];
        // Before the run: five quiet minutes near the price 5 minutes ago.
        let five_ago = change(rng, -50_000, 80_000);
        let per_minute = h1 / 60;
        let minute = Minute {
            price: five_ago,
            volume_cents: per_minute,
            buys: (per_minute / avg_trade_cents) as u64 / 2,
            sells: (per_minute / avg_trade_cents) as u64 / 2,
        };
        let mut minutes = [minute; 6];
        minutes[0].price = initial;
        let mut token = Token {
            chain,
            address,
            name,
            symbol,
            slug,
            description: match rng.weighted(&[70, 15, 15]) {
                0 => Presence::Text,
                1 => Presence::Null,
                _ => Presence::Absent,
            },
            icon_hash: rng.bytes32(),
            icon_bare: rng.chance(200_000),
            header: match rng.weighted(&[70, 15, 15]) {
                0 => Presence::Text,
                1 => Presence::Null,
                _ => Presence::Absent,
            },
            header_hash: rng.bytes32(),
            links: match rng.weighted(&[50, 20, 15, 15]) {
                0 => 0b111,
                1 => 0b011,
                2 => 0b010,
                _ => 0,
            },
            profile_ms: start_ms.saturating_sub(rng.range_u(60_000, 86_400_000)),
            image_key: {
                let b = rng.bytes32();
                [b[0], b[1], b[2]]
            },
            has_info: rng.chance(800_000),
            boost_head: Vec::new(),
            pairs: Vec::new(),
            total: 0,
            active: false,
            hold_until: 0,
            walk: initial,
            expo,
            price: initial,
            initial,
            sigma_ppb: rng.range(1_500_000, 5_000_000),
            rally_ppm: rng.range(50_000, 150_000),
            depth_ppm: rng.range(400_000, 600_000),
            recover_ppm: rng.range(300_000, 500_000),
            pump_ppm: 0,
            supply,
            circulating_ppm,
            liquidity0_cents,
            refs,
            change_keys,
            minutes,
            minute_pos: 0,
            base_volume: [h1, h6, h24],
            base_txns,
            run_volume: 0,
            run_buys: 0,
            run_sells: 0,
            avg_trade_cents,
        };
        token.pairs = random_pairs(chain, start_ms, rng);
        token.boost_head = token.boost_head(&token.address);
        token
    }

    /// The boost list item up to and including `"totalAmount":`, for `address` (which differs
    /// from the token's own only in the malformed-address fault).
    fn boost_head(&self, address: &str) -> Vec<u8> {
        let mut b = Vec::with_capacity(800);
        let chain = self.chain.slug();
        push(&mut b, r#"{"url":"https://dexscreener.com/"#);
        push(&mut b, chain);
        b.push(b'/');
        push(&mut b, &address.to_lowercase());
        push(&mut b, r#"","chainId":""#);
        push(&mut b, chain);
        push(&mut b, r#"","tokenAddress":""#);
        push(&mut b, address);
        b.push(b'"');
        match self.description {
            Presence::Text => {
                push(&mut b, r#","description":"#);
                let text = format!(
                    "{} ({}) - synthetic token generated by sluice, not a real project. \
                     Community driven, {} holders and counting.",
                    self.name,
                    self.symbol,
                    1000 + u32::from(self.icon_hash[0]) * 37
                );
                push_json_str(&mut b, &text);
            }
            Presence::Null => push(&mut b, r#","description":null"#),
            Presence::Absent => {}
        }
        push(&mut b, r#","icon":""#);
        if self.icon_bare {
            push_hex(&mut b, &self.icon_hash);
        } else {
            push(&mut b, "https://cdn.dexscreener.com/cms/images/");
            push_hex(&mut b, &self.icon_hash);
            push(
                &mut b,
                "?width=64&height=64&fit=crop&quality=95&format=auto",
            );
        }
        b.push(b'"');
        match self.header {
            Presence::Text => {
                push(
                    &mut b,
                    r#","header":"https://cdn.dexscreener.com/cms/images/"#,
                );
                push_hex(&mut b, &self.header_hash);
                push(
                    &mut b,
                    r#"?width=600&height=200&fit=crop&quality=95&format=auto""#,
                );
            }
            Presence::Null => push(&mut b, r#","header":null"#),
            Presence::Absent => {}
        }
        push(
            &mut b,
            r#","openGraph":"https://cdn.dexscreener.com/token-images/og/"#,
        );
        push(&mut b, chain);
        b.push(b'/');
        push(&mut b, address);
        push(&mut b, "?timestamp=");
        push_u64(&mut b, self.profile_ms);
        b.push(b'"');
        if self.links != 0 || self.description == Presence::Text {
            push(&mut b, r#","links":["#);
            self.push_links(&mut b, true);
            b.push(b']');
        }
        push(&mut b, r#","totalAmount":"#);
        b
    }

    /// The website and social links; boost lists mix `label` and `type` items in one list.
    fn push_links(&self, b: &mut Vec<u8>, website: bool) {
        let mut first = true;
        let mut item = |b: &mut Vec<u8>, key: &str, value: &str, url: &str| {
            if !first {
                b.push(b',');
            }
            first = false;
            push(b, "{\"");
            push(b, key);
            push(b, "\":\"");
            push(b, value);
            push(b, "\",\"url\":\"");
            push(b, url);
            push(b, "\"}");
        };
        let handle = self.slug.replace('-', "_");
        if website && self.links & 0b100 != 0 {
            item(
                b,
                "label",
                "Website",
                &format!("https://{}.example", self.slug),
            );
        }
        if self.links & 0b010 != 0 {
            item(b, "type", "twitter", &format!("https://x.com/{handle}"));
        }
        if self.links & 0b001 != 0 {
            item(b, "type", "telegram", &format!("https://t.me/{handle}"));
        }
    }

    /// The token's current liquidity: AMM pools hold less value when the price falls.
    fn liquidity_cents(&self) -> i64 {
        let (p, p0) = (i128::from(self.price), i128::from(self.initial.max(1)));
        (i128::from(self.liquidity0_cents) * (p0 + p) / (2 * p0)) as i64
    }

    /// Percent change from `reference` to now, in hundredths of a percent.
    fn change_bp(&self, reference: i64) -> i128 {
        let r = i128::from(reference.max(1));
        (i128::from(self.price) - r) * 10_000 / r
    }

    /// Percent change from `reference` to now, in billionths of a percent.
    fn change_pct9(&self, reference: i64) -> i128 {
        let r = i128::from(reference.max(1));
        (i128::from(self.price) - r) * 100_000_000_000 / r
    }

    /// Volume in cents and (buys, sells) over the window `w`: 0 = m5, 1 = h1, 2 = h6, 3 = h24.
    fn window(&self, w: usize) -> (i64, u64, u64) {
        let oldest = (self.minute_pos + 1) % self.minutes.len();
        let (mut v, mut b, mut s) = (0, 0, 0);
        for (i, m) in self.minutes.iter().enumerate() {
            if i != oldest {
                v += m.volume_cents;
                b += m.buys;
                s += m.sells;
            }
        }
        match w {
            0 => (v, b, s),
            _ => {
                let k = (w - 1).min(2);
                let (bb, bs) = self.base_txns.get(k).copied().unwrap_or((0, 0));
                let base = self.base_volume.get(k).copied().unwrap_or(0);
                (
                    (base + self.run_volume).max(v),
                    (bb + self.run_buys).max(b),
                    (bs + self.run_sells).max(s),
                )
            }
        }
    }
}

/// A valid random address for `chain`: base58 of 32 bytes, or an EIP-55 checksummed address.
fn random_address(chain: Chain, rng: &mut Rng) -> String {
    match chain {
        Chain::Solana => bs58::encode(rng.bytes32()).into_string(),
        Chain::Base | Chain::Ethereum => Address::from(rng.bytes20()).to_checksum(None),
    }
}

/// One or two pools for a token.
fn random_pairs(chain: Chain, start_ms: u64, rng: &mut Rng) -> Vec<Pair> {
    let created_ms = start_ms.saturating_sub(rng.range_u(3_600_000, 30 * 86_400_000));
    let (dex, label, quote) = match chain {
        Chain::Solana => {
            let quote = if rng.chance(850_000) {
                Quote::Sol
            } else {
                Quote::Usdc
            };
            match rng.weighted(&[35, 35, 10, 20]) {
                0 => ("pumpswap", None, quote),
                1 => (
                    "raydium",
                    if rng.chance(500_000) {
                        Some("CPMM")
                    } else {
                        None
                    },
                    quote,
                ),
                2 => ("orca", None, quote),
                _ => ("meteora", Some("DLMM"), quote),
            }
        }
        Chain::Base => {
            if rng.chance(500_000) {
                ("aerodrome", None, Quote::Weth(chain))
            } else {
                ("uniswap", Some("v2"), Quote::Weth(chain))
            }
        }
        Chain::Ethereum => ("uniswap", Some("v2"), Quote::Weth(chain)),
    };
    let primary_share = if rng.chance(250_000) {
        rng.range(650_000, 900_000)
    } else {
        1_000_000
    };
    let address = random_address(chain, rng);
    let mut pairs = vec![Pair {
        lower: address.to_lowercase(),
        address,
        dex,
        label,
        quote,
        created_ms,
        offset_ppm: 0,
        share_ppm: primary_share,
        has_liquidity: true,
    }];
    if primary_share < 1_000_000 {
        let (dex, label, quote) = match chain {
            Chain::Solana => ("raydium", Some("CLMM"), Quote::Usdc),
            _ => ("uniswap", Some("v3"), Quote::Weth(chain)),
        };
        let address = random_address(chain, rng);
        pairs.push(Pair {
            lower: address.to_lowercase(),
            address,
            dex,
            label,
            quote,
            created_ms: created_ms + rng.range_u(60_000, 3_600_000),
            offset_ppm: rng.range(-3_000, 3_000),
            share_ppm: 1_000_000 - primary_share,
            has_liquidity: !rng.chance(150_000),
        });
    }
    pairs
}

/// `supply × (m × 10^expo)` in units of `10^-decimals`.
fn mul_price(supply: i64, m: i64, expo: i32, decimals: i32) -> i128 {
    let v = i128::from(supply) * i128::from(m);
    let shift = expo + decimals;
    if shift >= 0 {
        v * pow10(shift as u32)
    } else {
        v / pow10((-shift) as u32)
    }
}

/// `(m1 × 10^e1) / (m2 × 10^-8)` as a mantissa and exponent with plenty of digits.
fn ratio(m1: i64, e1: i32, m2_e8: i64) -> (i128, i32) {
    let r = i128::from(m1) * pow10(18) / i128::from(m2_e8.max(1));
    (r, e1 - 18 + 8)
}

/// Significant digits DEX Screener shows for a price: 4 below 1, else at least 2 decimals.
fn display_digits(m: i128, expo: i32) -> u32 {
    let digits = m.unsigned_abs().checked_ilog10().unwrap_or(0) as i32 + 1;
    let lead = digits - 1 + expo;
    if lead < 0 {
        4
    } else {
        (lead + 1 + (4 - lead).max(2)) as u32
    }
}

/// The token pool and the bodies about it.
pub(crate) struct Market {
    /// Every token of the pool.
    pub tokens: Vec<Token>,
    /// The current boost list: token indices in rank order (at most [`MAX_LISTED`]).
    pub listed: Vec<usize>,
    /// The token that climbs from about rank 25 into the top 3.
    pub climber: Option<usize>,
    faller_done: bool,
    walk_rng: Rng,
    boost_rng: Rng,
    body_rng: Rng,
    /// USDC/USD, mantissa at expo -8.
    pub usdc: i64,
    /// A Solana address Birdeye does not know (its entry is `null`).
    unknown: String,
    /// SOL/USD 24 h before the run, expo -8.
    sol_ref24: i64,
    scratch: Vec<usize>,
}

impl Market {
    /// A pool of `count` tokens as of `tl.start`.
    pub(crate) fn new(count: usize, tl: &Timeline, mut rng: Rng, sol_price: i64) -> Market {
        let mut tokens: Vec<Token> = (0..count)
            .map(|i| Token::new(i, tl.start, &mut rng))
            .collect();
        // About two thirds of the pool starts with boosts; a heavy tail of totals.
        let initially = (count * 2 / 3).min(40);
        for token in tokens.iter_mut().take(initially) {
            token.active = true;
            token.total = random_total(&mut rng);
        }
        let sol_ref24 = (i128::from(sol_price) * 1_000_000
            / i128::from(1_000_000 + rng.range(-40_000, 40_000))) as i64;
        let unknown = bs58::encode(rng.bytes32()).into_string();
        let mut market = Market {
            tokens,
            listed: Vec::new(),
            climber: None,
            faller_done: false,
            walk_rng: Rng::new(rng.u64(), 1),
            boost_rng: Rng::new(rng.u64(), 2),
            body_rng: Rng::new(rng.u64(), 3),
            usdc: 99_990_000 + rng.range(0, 20_000),
            unknown,
            sol_ref24,
            scratch: Vec::new(),
        };
        market.rank();
        // The climber starts around rank 25 and keeps its boosts until after the crash.
        let at = 24.min(market.listed.len().saturating_sub(1));
        market.climber = market.listed.get(at).copied();
        if let Some(token) = market.climber.and_then(|c| market.tokens.get_mut(c)) {
            token.hold_until = tl.recovery.to;
            token.pump_ppm = 300_000;
        }
        market
    }

    /// Moves prices one second forward to `t` (walks, the script, volumes).
    pub(crate) fn tick(&mut self, t: u64, tl: &Timeline) {
        let new_minute = t > tl.start && (t - tl.start).is_multiple_of(60_000);
        let crashing = tl.crash.contains(t);
        let rng = &mut self.walk_rng;
        for token in &mut self.tokens {
            let step = rng.normal(token.sigma_ppb);
            let moved = i128::from(token.walk) * i128::from(step) / 1_000_000_000;
            token.walk = (i128::from(token.walk) + moved).max(1000) as i64;
            let factor = i128::from(scenario_ppm(token, tl, t))
                * i128::from(1_000_000 + token.pump_ppm * tl.climb.progress_ppm(t) / 1_000_000);
            let before = token.price;
            token.price = (i128::from(token.walk) * factor / 1_000_000_000_000).max(1) as i64;
            if new_minute {
                token.minute_pos = (token.minute_pos + 1) % token.minutes.len();
                if let Some(m) = token.minutes.get_mut(token.minute_pos) {
                    *m = Minute {
                        price: token.price,
                        ..Minute::default()
                    };
                }
            }
            // Trading: a share of the pool per second, heavier while it crashes.
            let turnover = rng.range(0, 600) * if crashing { 4 } else { 1 };
            let volume = token.liquidity_cents() * turnover / 1_000_000;
            let trades = (volume / token.avg_trade_cents) as u64;
            let buy_ppm = if token.price >= before {
                560_000
            } else {
                440_000
            };
            let buys = trades * buy_ppm / 1_000_000;
            let sells = trades - buys;
            token.run_volume += volume;
            token.run_buys += buys;
            token.run_sells += sells;
            if let Some(m) = token.minutes.get_mut(token.minute_pos) {
                m.volume_cents += volume;
                m.buys += buys;
                m.sells += sells;
            }
        }
        self.usdc = (self.usdc + rng.range(-300, 300)).clamp(99_950_000, 100_030_000);
    }

    /// One boost-list poll's worth of change at `t`: purchases, new boosts, expiries, the fast
    /// climber and the faller. Happens whether or not the poll succeeds.
    pub(crate) fn evolve_boosts(&mut self, t: u64, tl: &Timeline) {
        let n = self.tokens.len();
        if n == 0 {
            return;
        }
        let lo = (n * 55 / 100).clamp(1, 34);
        let hi = (n * 75 / 100).clamp(lo, 46);
        if let Some(c) = self.climber
            && tl.climb.contains(t)
        {
            // Buy enough boosts to pass the third of the others before the window closes.
            let mut others: Vec<u64> = self
                .tokens
                .iter()
                .enumerate()
                .filter(|(i, tok)| *i != c && tok.active)
                .map(|(_, tok)| tok.total)
                .collect();
            others.sort_unstable_by_key(|total| Reverse(*total));
            let third = others.get(2).or(others.last()).copied().unwrap_or(0);
            let target = third + third * 15 / 100 + 50;
            let polls_left = ((tl.climb.to - t) / 3000).max(1);
            if let Some(token) = self.tokens.get_mut(c)
                && token.total < target
            {
                let add = (target - token.total).div_ceil(polls_left).div_ceil(10) * 10;
                token.total += add;
                token.active = true;
            }
        }
        let rng = &mut self.boost_rng;
        if !self.faller_done && t >= tl.faller_at {
            // A top token's big boosts expire together: it falls below rank 12.
            self.faller_done = true;
            let faller = self
                .listed
                .iter()
                .copied()
                .find(|i| Some(*i) != self.climber);
            let floor = self
                .listed
                .get(11)
                .or(self.listed.last())
                .and_then(|i| self.tokens.get(*i))
                .map_or(10, |tok| tok.total);
            if let Some(token) = faller.and_then(|i| self.tokens.get_mut(i)) {
                token.total = (floor * rng.range_u(50, 90) / 100).max(10).div_ceil(10) * 10;
                token.hold_until = 0;
            }
        }
        self.scratch.clear();
        self.scratch
            .extend((0..n).filter(|i| self.tokens.get(*i).is_some_and(|t| t.active)));
        let active = self.scratch.len();
        if rng.chance(300_000)
            && let Some(token) = rng
                .pick(&self.scratch)
                .and_then(|i| self.tokens.get_mut(*i))
        {
            const AMOUNTS: [u64; 6] = [10, 30, 50, 100, 250, 500];
            let k = rng.weighted(&[30, 25, 20, 15, 6, 4]);
            token.total += AMOUNTS.get(k).copied().unwrap_or(10);
        }
        if active < lo || (active < hi && rng.chance(150_000)) {
            let inactive: Vec<usize> = (0..n)
                .filter(|i| self.tokens.get(*i).is_some_and(|t| !t.active))
                .collect();
            if let Some(token) = rng.pick(&inactive).and_then(|i| self.tokens.get_mut(*i)) {
                token.active = true;
                // Whoever buys a fresh boost wants to be seen: at least 100.
                token.total = random_total(rng).max(100);
                token.hold_until = t + 60_000;
            }
        }
        if active > hi || rng.chance(200_000) {
            let expirable: Vec<usize> = self
                .scratch
                .iter()
                .copied()
                .filter(|i| self.tokens.get(*i).is_some_and(|tok| tok.hold_until <= t))
                .collect();
            if let Some(token) = rng.pick(&expirable).and_then(|i| self.tokens.get_mut(*i)) {
                let cut = (token.total * rng.range_u(20, 100) / 100).div_ceil(10) * 10;
                token.total = token.total.saturating_sub(cut);
                if token.total < 10 {
                    token.total = 0;
                    token.active = false;
                }
            }
        }
        self.rank();
    }

    /// Recomputes the boost list: active tokens by total descending (ties by pool order).
    fn rank(&mut self) {
        self.listed.clear();
        self.listed.extend(
            (0..self.tokens.len()).filter(|i| self.tokens.get(*i).is_some_and(|t| t.active)),
        );
        let tokens = &self.tokens;
        self.listed
            .sort_by_key(|i| (Reverse(tokens.get(*i).map_or(0, |t| t.total)), *i));
        self.listed.truncate(MAX_LISTED);
    }

    /// Writes the `/token-boosts/top/v1` body. With `bad_address`, the last Solana item's
    /// address is corrupted (a `0`, which base58 lacks): one invalid item.
    pub(crate) fn write_boosts(&self, buf: &mut Vec<u8>, bad_address: bool) -> bool {
        buf.push(b'[');
        let mut last_total = None;
        for (rank, i) in self.listed.iter().enumerate() {
            let Some(token) = self.tokens.get(*i) else {
                continue;
            };
            if rank > 0 {
                buf.push(b',');
            }
            buf.extend_from_slice(&token.boost_head);
            push_u64(buf, token.total);
            buf.push(b'}');
            last_total = Some(token.total);
        }
        // The malformed item is an extra one at the end, a mangled copy of a listed Solana
        // token: the real tokens keep their ranks, so a bad item never looks like an exit.
        let template = self
            .listed
            .iter()
            .rev()
            .filter_map(|i| self.tokens.get(*i))
            .find(|t| t.chain == Chain::Solana);
        let corrupt = match (bad_address, template) {
            (true, Some(token)) => {
                let address: String = token
                    .address
                    .chars()
                    .enumerate()
                    .map(|(i, c)| if i == 5 { '0' } else { c })
                    .collect();
                if !self.listed.is_empty() {
                    buf.push(b',');
                }
                buf.extend_from_slice(&token.boost_head(&address));
                push_u64(buf, last_total.unwrap_or(10).min(10));
                buf.push(b'}');
                true
            }
            _ => false,
        };
        buf.push(b']');
        corrupt
    }

    /// The listed tokens on `chain`, in rank order.
    pub(crate) fn listed_on(&self, chain: Chain) -> Vec<usize> {
        self.listed
            .iter()
            .copied()
            .filter(|i| self.tokens.get(*i).is_some_and(|t| t.chain == chain))
            .collect()
    }

    /// Pairs in a `/tokens/v1/{chain}/{addresses}` body for `tokens`.
    pub(crate) fn pair_count(&self, tokens: &[usize]) -> usize {
        tokens
            .iter()
            .filter_map(|i| self.tokens.get(*i))
            .map(|t| t.pairs.len())
            .sum()
    }

    /// Writes the `/tokens/v1/{chain}/{addresses}` body for `tokens` (one chain). The pair at
    /// position `bad_pair` (if any) says `"priceUsd":"abc"`. Returns how many tokens come out
    /// priced (those with at least one good pair).
    pub(crate) fn write_pairs(
        &self,
        buf: &mut Vec<u8>,
        tokens: &[usize],
        quotes: &Quotes,
        bad_pair: Option<usize>,
    ) -> u64 {
        buf.push(b'[');
        let mut position = 0;
        let mut priced = 0;
        for token in tokens.iter().filter_map(|i| self.tokens.get(*i)) {
            let mut good = false;
            for pair in &token.pairs {
                if position > 0 {
                    buf.push(b',');
                }
                let bad = bad_pair == Some(position);
                good |= !bad;
                write_pair(buf, token, pair, quotes, bad);
                position += 1;
            }
            priced += u64::from(good);
        }
        buf.push(b']');
        priced
    }

    /// Writes a Birdeye `/defi/multi_price` body at `t` for SOL, USDC, up to 20 listed Solana
    /// tokens and one address Birdeye does not know. Returns the number of priced entries.
    pub(crate) fn write_birdeye(&mut self, buf: &mut Vec<u8>, t: u64, quotes: &Quotes) -> u64 {
        let rng = &mut self.body_rng;
        push(buf, r#"{"success":true,"data":{"#);
        let sol = quotes.sol;
        // SOL: the Pyth SOL price, give or take a few hundredths of a percent.
        let value = noisy(i128::from(sol) * 100_000, rng, 300);
        let entry = BirdeyeEntry {
            value: (value, -13),
            update_s: update_time(t, rng),
            native: (1, 0),
            change_pct9: (i128::from(sol) - i128::from(self.sol_ref24)) * 100_000_000_000
                / i128::from(self.sol_ref24.max(1)),
            liquidity_cents: 871_234_512_355 + i128::from(rng.range(-1_000_000, 1_000_000)),
        };
        write_birdeye_entry(buf, SOL_MINT, &entry);
        buf.push(b',');
        let usdc = noisy(i128::from(self.usdc) * 100_000, rng, 100);
        let entry = BirdeyeEntry {
            value: (usdc, -13),
            update_s: update_time(t, rng),
            native: ratio_i128(usdc, -13, sol),
            change_pct9: i128::from(rng.range(-50_000_000, 50_000_000)),
            liquidity_cents: 250_123_456_710 + i128::from(rng.range(-1_000_000, 1_000_000)),
        };
        write_birdeye_entry(buf, USDC_MINT, &entry);
        let mut priced = 2;
        for i in self.listed.iter().copied() {
            if priced >= 22 {
                break;
            }
            let Some(token) = self.tokens.get(i) else {
                continue;
            };
            if token.chain != Chain::Solana {
                continue;
            }
            // Birdeye agrees with DEX Screener to within about 0.15 %.
            let value = noisy(i128::from(token.price) * 1000, rng, 1_500);
            let (native, native_expo) = ratio_i128(value, token.expo - 3, sol);
            let entry = BirdeyeEntry {
                value: (value, token.expo - 3),
                update_s: update_time(t, rng),
                native: (native, native_expo),
                change_pct9: token.change_pct9(token.refs[2]),
                liquidity_cents: i128::from(token.liquidity_cents()),
            };
            buf.push(b',');
            write_birdeye_entry(buf, &token.address, &entry);
            priced += 1;
        }
        buf.push(b',');
        push_json_str(buf, &self.unknown);
        push(buf, ":null}}");
        priced
    }

    /// The first `n` listed Solana tokens (what a mesh provider republishes).
    pub(crate) fn top_solana(&self, n: usize) -> Vec<usize> {
        let mut out = self.listed_on(Chain::Solana);
        out.truncate(n);
        out
    }

    /// A token's 24 h change in hundredths of a percent.
    pub(crate) fn change_24h_bp(&self, i: usize) -> i128 {
        self.tokens.get(i).map_or(0, |t| t.change_bp(t.refs[2]))
    }

    /// SOL's 24 h change in hundredths of a percent at `sol` (expo -8).
    pub(crate) fn sol_change_24h_bp(&self, sol: i64) -> i128 {
        (i128::from(sol) - i128::from(self.sol_ref24)) * 10_000 / i128::from(self.sol_ref24.max(1))
    }
}

/// A boost total from a heavy-tailed distribution, in tens (as boost packs are sold).
fn random_total(rng: &mut Rng) -> u64 {
    let (lo, hi) = match rng.weighted(&[30, 35, 25, 10]) {
        0 => (1, 10),
        1 => (10, 50),
        2 => (50, 150),
        _ => (150, 500),
    };
    rng.range_u(lo, hi) * 10
}

/// The script's factor on a token's price at `t`, parts per million: a mild rally, a crash,
/// then part of the loss won back. The crash is a rug: three quarters of the fall comes in the
/// first twentieth of the window — between two polls, faster than any stop can act — and the
/// rest drifts down.
fn scenario_ppm(token: &Token, tl: &Timeline, t: u64) -> i64 {
    let peak = 1_000_000 + token.rally_ppm;
    let bottom = peak * (1_000_000 - token.depth_ppm) / 1_000_000;
    let recovered = bottom + (peak - bottom) * token.recover_ppm / 1_000_000;
    if t < tl.crash.from {
        1_000_000 + token.rally_ppm * tl.rally.progress_ppm(t) / 1_000_000
    } else if t < tl.crash.to {
        let progress = tl.crash.progress_ppm(t);
        let fall = if progress < 50_000 {
            progress * 15
        } else {
            750_000 + (progress - 50_000) * 250_000 / 950_000
        };
        peak + (bottom - peak) * fall / 1_000_000
    } else {
        bottom + (recovered - bottom) * tl.recovery.progress_ppm(t) / 1_000_000
    }
}

/// `v` moved by a uniform relative amount of up to `ppm` parts per million either way.
fn noisy(v: i128, rng: &mut Rng, ppm: i64) -> i128 {
    v * i128::from(1_000_000_000 + rng.range(-ppm * 1000, ppm * 1000)) / 1_000_000_000
}

/// `(m1 × 10^e1) / (m2 × 10^-8)` for a wide `m1`.
fn ratio_i128(m1: i128, e1: i32, m2_e8: i64) -> (i128, i32) {
    // Keep the quotient inside i128: m1 has at most about 16 digits here.
    let r = m1 * pow10(16) / i128::from(m2_e8.max(1));
    (r, e1 - 16 + 8)
}

/// When Birdeye last updated a price: a few seconds before the request.
fn update_time(t: u64, rng: &mut Rng) -> i64 {
    (t.saturating_sub(rng.range_u(0, 8_000)) / 1000) as i64
}

struct BirdeyeEntry {
    value: (i128, i32),
    update_s: i64,
    native: (i128, i32),
    /// 24 h change in 1e-9 percent.
    change_pct9: i128,
    liquidity_cents: i128,
}

fn write_birdeye_entry(buf: &mut Vec<u8>, address: &str, e: &BirdeyeEntry) {
    push_json_str(buf, address);
    push(buf, r#":{"isScaledUiToken":false,"value":"#);
    push_float(buf, e.value.0, e.value.1, 15);
    push(buf, r#","updateUnixTime":"#);
    push_i128(buf, i128::from(e.update_s));
    push(buf, r#","updateHumanTime":""#);
    push_human_time(buf, e.update_s);
    push(buf, r#"","priceInNative":"#);
    push_float(buf, e.native.0, e.native.1, 12);
    push(buf, r#","priceChange24h":"#);
    push_fixed(buf, e.change_pct9, 9);
    push(buf, r#","liquidity":"#);
    push_fixed(buf, e.liquidity_cents, 2);
    buf.push(b'}');
}

/// One Pair object, in the field order DEX Screener uses.
fn write_pair(buf: &mut Vec<u8>, token: &Token, pair: &Pair, quotes: &Quotes, bad_price: bool) {
    let chain = token.chain.slug();
    push(buf, r#"{"chainId":""#);
    push(buf, chain);
    push(buf, r#"","dexId":""#);
    push(buf, pair.dex);
    push(buf, r#"","url":"https://dexscreener.com/"#);
    push(buf, chain);
    buf.push(b'/');
    push(buf, &pair.lower);
    push(buf, r#"","pairAddress":""#);
    push(buf, &pair.address);
    buf.push(b'"');
    if let Some(label) = pair.label {
        push(buf, r#","labels":[""#);
        push(buf, label);
        push(buf, "\"]");
    }
    push(buf, r#","baseToken":{"address":""#);
    push(buf, &token.address);
    push(buf, r#"","name":"#);
    push_json_str(buf, &token.name);
    push(buf, r#","symbol":"#);
    push_json_str(buf, &token.symbol);
    let (q_address, q_name, q_symbol) = pair.quote.token();
    push(buf, r#"},"quoteToken":{"address":""#);
    push(buf, q_address);
    push(buf, r#"","name":""#);
    push(buf, q_name);
    push(buf, r#"","symbol":""#);
    push(buf, q_symbol);
    let usd = i128::from(token.price) * i128::from(1_000_000 + pair.offset_ppm) / 1_000_000;
    let usd_m = usd.clamp(1, i128::from(i64::MAX)) as i64;
    let (native, native_expo) = ratio(usd_m, token.expo, pair.quote.usd(quotes));
    push(buf, r#""},"priceNative":""#);
    push_decimal(
        buf,
        native,
        native_expo,
        display_digits(native, native_expo),
    );
    push(buf, r#"","priceUsd":""#);
    if bad_price {
        push(buf, "abc");
    } else {
        push_decimal(buf, usd, token.expo, display_digits(usd, token.expo));
    }
    push(buf, r#"","txns":{"#);
    let share = |v: u64| v * pair.share_ppm as u64 / 1_000_000;
    for (w, key) in ["m5", "h1", "h6", "h24"].iter().enumerate() {
        let (_, buys, sells) = token.window(w);
        if w > 0 {
            buf.push(b',');
        }
        buf.push(b'"');
        push(buf, key);
        push(buf, r#"":{"buys":"#);
        push_u64(buf, share(buys));
        push(buf, r#","sells":"#);
        push_u64(buf, share(sells));
        buf.push(b'}');
    }
    push(buf, r#"},"volume":{"#);
    for (k, w) in [3usize, 2, 1, 0].iter().enumerate() {
        let (volume, _, _) = token.window(*w);
        if k > 0 {
            buf.push(b',');
        }
        buf.push(b'"');
        push(
            buf,
            ["m5", "h1", "h6", "h24"].get(*w).copied().unwrap_or("h24"),
        );
        push(buf, "\":");
        push_fixed(
            buf,
            i128::from(volume) * i128::from(pair.share_ppm) / 1_000_000,
            2,
        );
    }
    push(buf, r#"},"priceChange":{"#);
    let changes = [
        token
            .minutes
            .get((token.minute_pos + 1) % token.minutes.len())
            .map_or(token.initial, |m| m.price),
        token.refs[0],
        token.refs[1],
        token.refs[2],
    ];
    let mut first = true;
    for (w, (key, reference)) in ["m5", "h1", "h6", "h24"].iter().zip(changes).enumerate() {
        if token.change_keys & (1 << w) == 0 {
            continue;
        }
        if !first {
            buf.push(b',');
        }
        first = false;
        buf.push(b'"');
        push(buf, key);
        push(buf, "\":");
        push_fixed(buf, token.change_bp(reference), 2);
    }
    buf.push(b'}');
    if pair.has_liquidity {
        let usd_cents =
            i128::from(token.liquidity_cents()) * i128::from(pair.share_ppm) / 1_000_000;
        let half = usd_cents / 2;
        push(buf, r#","liquidity":{"usd":"#);
        push_fixed(buf, usd_cents, 2);
        push(buf, r#","base":"#);
        // Token units: half the pool's value over the price.
        let base = half * pow10(16) / i128::from(usd_m);
        push_float(buf, base, -2 - token.expo - 16, 10);
        push(buf, r#","quote":"#);
        let quote = half * pow10(16) / i128::from(pair.quote.usd(quotes).max(1));
        push_float(buf, quote, -2 + 8 - 16, 10);
        buf.push(b'}');
    }
    let fdv = mul_price(token.supply, token.price, token.expo, 0);
    push(buf, r#","fdv":"#);
    push_i128(buf, fdv);
    push(buf, r#","marketCap":"#);
    push_i128(buf, fdv * i128::from(token.circulating_ppm) / 1_000_000);
    push(buf, r#","pairCreatedAt":"#);
    push_u64(buf, pair.created_ms);
    if token.has_info {
        let (chain, address) = (token.chain.slug(), token.address.as_str());
        push(
            buf,
            r#","info":{"imageUrl":"https://dd.dexscreener.com/ds-data/tokens/"#,
        );
        push(buf, chain);
        buf.push(b'/');
        push(buf, address);
        push(buf, ".png?key=");
        push_hex(buf, &token.image_key);
        buf.push(b'"');
        if token.header == Presence::Text {
            push(
                buf,
                r#","header":"https://dd.dexscreener.com/ds-data/tokens/"#,
            );
            push(buf, chain);
            buf.push(b'/');
            push(buf, address);
            push(buf, "/header.png?key=");
            push_hex(buf, &token.image_key);
            buf.push(b'"');
            push(
                buf,
                r#","openGraph":"https://cdn.dexscreener.com/token-images/og/"#,
            );
            push(buf, chain);
            buf.push(b'/');
            push(buf, address);
            push(buf, "?timestamp=");
            push_u64(buf, token.profile_ms);
            buf.push(b'"');
        }
        push(buf, r#","websites":["#);
        if token.links & 0b100 != 0 {
            push(buf, r#"{"label":"Website","url":"https://"#);
            push(buf, &token.slug);
            push(buf, r#".example"}"#);
        }
        push(buf, r#"],"socials":["#);
        token.push_links(buf, false);
        push(buf, "]}");
    }
    if token.active {
        push(buf, r#","boosts":{"active":"#);
        push_u64(buf, token.total);
        buf.push(b'}');
    }
    buf.push(b'}');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_digits_follow_dexscreener() {
        assert_eq!(display_digits(1585, -8), 4);
        assert_eq!(display_digits(14237, -2), 5);
        assert_eq!(display_digits(12345, -4), 5);
        assert_eq!(display_digits(9712345, -2), 7);
    }

    #[test]
    fn ratios_and_products() {
        // 0.00001585 USD over 142.37 USD/SOL.
        let (m, e) = ratio(1585, -8, 14_237_000_000);
        let mut buf = Vec::new();
        push_decimal(&mut buf, m, e, 4);
        assert_eq!(buf, b"0.0000001113");
        assert_eq!(mul_price(1_000_000_000, 1585, -8, 0), 15_850);
    }
}
