//! Fault injection for the venue: the `--faults` spec grammar, its parser, how a spec resolves
//! for one endpoint, and the seeded dice that decide which requests a fault hits.
//!
//! A spec is a `;`-separated list of rules, each `target:key=value,key=value`:
//!
//! ```text
//! dexscreener:error_rate=1,status=503;birdeye:latency=300ms,malformed_rate=0.2;hermes/stream:drop_every=5s
//! ```
//!
//! The SSE-only settings are `drop_every` (cut the connection), `max_stream` (end it as Hermes
//! does after 24 h) and `stall_after` (go silent with the connection held open).
//!
//! Targets are a provider (`dexscreener`, `birdeye`, `hermes`) or one endpoint
//! (`dexscreener/boosts`, `dexscreener/tokens`, `birdeye/multi_price`, `birdeye/price`,
//! `hermes/stream`, `hermes/latest`). For one endpoint, provider rules apply first and endpoint
//! rules override them setting by setting; among rules of the same kind, later ones win.

use std::fmt;
use std::str::FromStr;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};

use crate::model::{Endpoint, Source};

/// The endpoints the venue serves, in the order stats and dice index them.
pub const SERVED_ENDPOINTS: [Endpoint; 6] = [
    Endpoint::DexscreenerBoosts,
    Endpoint::DexscreenerTokens,
    Endpoint::BirdeyeMultiPrice,
    Endpoint::BirdeyePrice,
    Endpoint::HermesStream,
    Endpoint::HermesLatest,
];

/// The venue's name for a served endpoint (`dexscreener/boosts`, ..., `hermes/latest`): the
/// fault-spec target and the key in [`VenueStats`](super::VenueStats). `None` for endpoints
/// the venue does not serve (mesh, chain).
pub fn target_name(endpoint: Endpoint) -> Option<&'static str> {
    Some(match endpoint {
        Endpoint::DexscreenerBoosts => "dexscreener/boosts",
        Endpoint::DexscreenerTokens => "dexscreener/tokens",
        Endpoint::BirdeyeMultiPrice => "birdeye/multi_price",
        Endpoint::BirdeyePrice => "birdeye/price",
        Endpoint::HermesStream => "hermes/stream",
        Endpoint::HermesLatest => "hermes/latest",
        Endpoint::MeshPrice | Endpoint::ChainRead | Endpoint::ChainTx => return None,
    })
}

/// The position of a served endpoint in [`SERVED_ENDPOINTS`].
pub(crate) fn served_index(endpoint: Endpoint) -> Option<usize> {
    SERVED_ENDPOINTS.iter().position(|e| *e == endpoint)
}

/// What a fault rule applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FaultTarget {
    /// Every endpoint of a provider (DEX Screener, Birdeye or Hermes).
    Provider(Source),
    /// One endpoint.
    Endpoint(Endpoint),
}

/// The providers the venue plays.
const PROVIDERS: [Source; 3] = [Source::Dexscreener, Source::Birdeye, Source::Hermes];

impl FaultTarget {
    /// The name used in specs.
    pub fn name(self) -> &'static str {
        match self {
            FaultTarget::Provider(source) => source.name(),
            FaultTarget::Endpoint(endpoint) => target_name(endpoint).unwrap_or("?"),
        }
    }

    /// The target named `name`, if it is one the venue serves.
    pub fn from_name(name: &str) -> Option<FaultTarget> {
        if let Some(source) = PROVIDERS.into_iter().find(|s| s.name() == name) {
            return Some(FaultTarget::Provider(source));
        }
        SERVED_ENDPOINTS
            .into_iter()
            .find(|e| target_name(*e) == Some(name))
            .map(FaultTarget::Endpoint)
    }

    /// True when the rule reaches `endpoint`.
    pub fn covers(self, endpoint: Endpoint) -> bool {
        match self {
            FaultTarget::Provider(source) => endpoint.source() == source,
            FaultTarget::Endpoint(e) => e == endpoint,
        }
    }

    /// True when the target includes the SSE stream (where `drop_every`/`max_stream` apply).
    fn includes_stream(self) -> bool {
        self.covers(Endpoint::HermesStream)
    }

    /// True when the target includes a plain HTTP endpoint (where `slow_body` applies).
    fn includes_plain(self) -> bool {
        SERVED_ENDPOINTS
            .into_iter()
            .any(|e| e != Endpoint::HermesStream && self.covers(e))
    }
}

impl fmt::Display for FaultTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The settings of one rule; `None` leaves a setting to less specific rules (or the default).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FaultSettings {
    /// Share of requests (0..=1) answered with `status` instead of the recorded payload.
    pub error_rate: Option<f64>,
    /// The status of injected errors (400..=599; default 500).
    pub status: Option<u16>,
    /// A `Retry-After` header (whole seconds, rounded up) on injected errors.
    pub retry_after: Option<Duration>,
    /// Added before every response (wall time).
    pub latency: Option<Duration>,
    /// Share of requests (0..=1) held without an answer for `hold`, so the client times out.
    pub timeout_rate: Option<f64>,
    /// How long a timed-out request is held before the venue gives up with 504 (default 120 s).
    pub hold: Option<Duration>,
    /// Share of responses (0..=1), or of SSE events, whose body is truncated or garbage, with
    /// status 200.
    pub malformed_rate: Option<f64>,
    /// Send plain HTTP bodies in small chunks spread over this duration.
    pub slow_body: Option<Duration>,
    /// SSE: cut the connection (no terminating chunk) this long after it opened.
    pub drop_every: Option<Duration>,
    /// SSE: end the stream this long after it opened as Hermes does at 24 h: `event:error`,
    /// `data:Connection timeout reached (24h)`, then the end of the body.
    pub max_stream: Option<Duration>,
    /// SSE: this long after the stream opened, go silent (no event, no keep-alive) with the
    /// connection held open: the dead-but-open stream a client's watchdog must notice.
    pub stall_after: Option<Duration>,
}

/// One rule of a spec: settings for a target.
#[derive(Clone, Debug, PartialEq)]
pub struct FaultRule {
    /// What the rule applies to.
    pub target: FaultTarget,
    /// What it does there.
    pub settings: FaultSettings,
}

/// A whole fault spec: rules in the order given. The empty spec injects nothing.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FaultSpec {
    /// The rules, in spec order.
    pub rules: Vec<FaultRule>,
}

/// The default status of an injected error.
pub const DEFAULT_ERROR_STATUS: u16 = 500;

/// How long a request hit by `timeout_rate` is held unless the rule says `hold=`.
pub const DEFAULT_HOLD: Duration = Duration::from_secs(120);

/// The faults in force at one endpoint: a spec resolved for it, every setting decided.
#[derive(Clone, Debug, PartialEq)]
pub struct EndpointFaults {
    /// Share of requests answered with `status`.
    pub error_rate: f64,
    /// Status of injected errors.
    pub status: u16,
    /// `Retry-After` on injected errors.
    pub retry_after: Option<Duration>,
    /// Added before every response.
    pub latency: Duration,
    /// Share of requests held unanswered.
    pub timeout_rate: f64,
    /// How long they are held.
    pub hold: Duration,
    /// Share of malformed bodies (or SSE events).
    pub malformed_rate: f64,
    /// Spread plain bodies over this duration.
    pub slow_body: Option<Duration>,
    /// SSE: cut connections after this long.
    pub drop_every: Option<Duration>,
    /// SSE: end streams with Hermes' timeout error after this long.
    pub max_stream: Option<Duration>,
    /// SSE: go silent, connection held open, after this long.
    pub stall_after: Option<Duration>,
}

impl Default for EndpointFaults {
    fn default() -> Self {
        EndpointFaults {
            error_rate: 0.0,
            status: DEFAULT_ERROR_STATUS,
            retry_after: None,
            latency: Duration::ZERO,
            timeout_rate: 0.0,
            hold: DEFAULT_HOLD,
            malformed_rate: 0.0,
            slow_body: None,
            drop_every: None,
            max_stream: None,
            stall_after: None,
        }
    }
}

impl FaultSpec {
    /// No faults.
    pub fn none() -> FaultSpec {
        FaultSpec::default()
    }

    /// True when the spec has no rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The faults in force at `endpoint`: provider rules first, then endpoint rules, each
    /// overriding only the settings it names.
    pub fn for_endpoint(&self, endpoint: Endpoint) -> EndpointFaults {
        let mut out = EndpointFaults::default();
        let providers = self
            .rules
            .iter()
            .filter(|r| matches!(r.target, FaultTarget::Provider(_)));
        let endpoints = self
            .rules
            .iter()
            .filter(|r| matches!(r.target, FaultTarget::Endpoint(_)));
        for rule in providers.chain(endpoints) {
            if !rule.target.covers(endpoint) {
                continue;
            }
            let s = &rule.settings;
            if let Some(v) = s.error_rate {
                out.error_rate = v;
            }
            if let Some(v) = s.status {
                out.status = v;
            }
            if let Some(v) = s.retry_after {
                out.retry_after = Some(v);
            }
            if let Some(v) = s.latency {
                out.latency = v;
            }
            if let Some(v) = s.timeout_rate {
                out.timeout_rate = v;
            }
            if let Some(v) = s.hold {
                out.hold = v;
            }
            if let Some(v) = s.malformed_rate {
                out.malformed_rate = v;
            }
            if let Some(v) = s.slow_body {
                out.slow_body = Some(v);
            }
            if let Some(v) = s.drop_every {
                out.drop_every = Some(v);
            }
            if let Some(v) = s.max_stream {
                out.max_stream = Some(v);
            }
            if let Some(v) = s.stall_after {
                out.stall_after = Some(v);
            }
        }
        out
    }
}

/// Why a fault spec does not parse: the rule, the part of it at fault, and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("bad fault spec: {reason} (at `{part}` in rule `{rule}`)")]
pub struct FaultSpecError {
    /// The whole rule (`target:settings`) the error is in.
    pub rule: String,
    /// The piece of the rule that is wrong (the target, or one `key=value`).
    pub part: String,
    /// What is wrong with it.
    pub reason: String,
}

/// The setting keys, in the order [`FaultSpec`]'s `Display` writes them.
const KEYS: [&str; 11] = [
    "error_rate",
    "status",
    "retry_after",
    "latency",
    "timeout_rate",
    "hold",
    "malformed_rate",
    "slow_body",
    "drop_every",
    "max_stream",
    "stall_after",
];

fn target_list() -> String {
    let mut names: Vec<&str> = PROVIDERS.iter().map(|s| s.name()).collect();
    names.extend(SERVED_ENDPOINTS.iter().filter_map(|e| target_name(*e)));
    names.join(", ")
}

impl FromStr for FaultSpec {
    type Err = FaultSpecError;

    fn from_str(spec: &str) -> Result<FaultSpec, FaultSpecError> {
        let mut rules = Vec::new();
        for rule_text in spec.split(';').map(str::trim) {
            // Empty rules come from a trailing `;` or an empty spec: nothing to inject.
            if rule_text.is_empty() || rule_text == "none" {
                continue;
            }
            rules.push(parse_rule(rule_text)?);
        }
        Ok(FaultSpec { rules })
    }
}

fn parse_rule(rule: &str) -> Result<FaultRule, FaultSpecError> {
    let error = |part: &str, reason: String| FaultSpecError {
        rule: rule.to_owned(),
        part: part.to_owned(),
        reason,
    };
    let Some((target_text, settings_text)) = rule.split_once(':') else {
        return Err(error(
            rule,
            format!(
                "expected `target:key=value,...` (targets: {})",
                target_list()
            ),
        ));
    };
    let target_text = target_text.trim();
    let target = FaultTarget::from_name(target_text).ok_or_else(|| {
        error(
            target_text,
            format!(
                "unknown target `{target_text}`; expected one of {}",
                target_list()
            ),
        )
    })?;
    let mut settings = FaultSettings::default();
    let mut seen: Vec<&str> = Vec::new();
    for part in settings_text.split(',').map(str::trim) {
        if part.is_empty() {
            continue;
        }
        let Some((key, value)) = part.split_once('=') else {
            return Err(error(part, "expected `key=value`".to_owned()));
        };
        let (key, value) = (key.trim(), value.trim());
        if seen.contains(&key) {
            return Err(error(part, format!("`{key}` is given twice in one rule")));
        }
        let bad = |reason: String| error(part, reason);
        match key {
            "error_rate" => settings.error_rate = Some(parse_rate(key, value).map_err(bad)?),
            "timeout_rate" => settings.timeout_rate = Some(parse_rate(key, value).map_err(bad)?),
            "malformed_rate" => {
                settings.malformed_rate = Some(parse_rate(key, value).map_err(bad)?)
            }
            "status" => settings.status = Some(parse_status(value).map_err(bad)?),
            "retry_after" => {
                settings.retry_after = Some(duration_setting(key, value).map_err(bad)?)
            }
            "latency" => settings.latency = Some(duration_setting(key, value).map_err(bad)?),
            "hold" => settings.hold = Some(duration_setting(key, value).map_err(bad)?),
            "slow_body" | "drop_every" | "max_stream" | "stall_after" => {
                let d = duration_setting(key, value).map_err(bad)?;
                if d.is_zero() {
                    return Err(bad(format!("`{key}` must be longer than 0")));
                }
                match key {
                    "slow_body" => {
                        if !target.includes_plain() {
                            return Err(bad(format!(
                                "`slow_body` applies to plain HTTP bodies, not to the SSE stream `{target}`"
                            )));
                        }
                        settings.slow_body = Some(d);
                    }
                    _ => {
                        if !target.includes_stream() {
                            return Err(bad(format!(
                                "`{key}` applies to SSE streams only (targets hermes, hermes/stream), not to `{target}`"
                            )));
                        }
                        match key {
                            "drop_every" => settings.drop_every = Some(d),
                            "max_stream" => settings.max_stream = Some(d),
                            _ => settings.stall_after = Some(d),
                        }
                    }
                }
            }
            _ => {
                return Err(bad(format!(
                    "unknown setting `{key}`; expected one of {}",
                    KEYS.join(", ")
                )));
            }
        }
        seen.push(key);
    }
    if seen.is_empty() {
        return Err(error(
            rule,
            format!(
                "no settings for `{target}`; expected `key=value` with keys {}",
                KEYS.join(", ")
            ),
        ));
    }
    Ok(FaultRule { target, settings })
}

fn duration_setting(key: &str, value: &str) -> Result<Duration, String> {
    parse_duration(value).map_err(|reason| format!("`{key}` {reason}"))
}

fn parse_rate(key: &str, value: &str) -> Result<f64, String> {
    match value.parse::<f64>() {
        Ok(rate) if rate.is_finite() && (0.0..=1.0).contains(&rate) => Ok(rate),
        _ => Err(format!(
            "`{key}` must be a number from 0 to 1, got `{value}`"
        )),
    }
}

fn parse_status(value: &str) -> Result<u16, String> {
    match value.parse::<u16>() {
        Ok(status) if (400..=599).contains(&status) => Ok(status),
        _ => Err(format!(
            "`status` must be an HTTP error status from 400 to 599, got `{value}`"
        )),
    }
}

/// Parses a duration written with a unit: `250ms`, `2s`, `1.5s`, `2m`, `1h` (`us` too).
///
/// The error says what was expected and what was given.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let unit_at = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(unit_at);
    let expected = || format!("must be a duration like 300ms, 2s, 1.5s or 1m, got `{text}`");
    let value: f64 = number.parse().map_err(|_| expected())?;
    let seconds_per_unit = match unit.trim() {
        "us" => 1e-6,
        "ms" => 1e-3,
        "s" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        _ => return Err(expected()),
    };
    Duration::try_from_secs_f64(value * seconds_per_unit).map_err(|_| expected())
}

/// Writes a duration the way [`parse_duration`] reads it back.
fn write_duration(f: &mut fmt::Formatter<'_>, d: Duration) -> fmt::Result {
    if d.subsec_nanos() == 0 {
        write!(f, "{}s", d.as_secs())
    } else if d.subsec_nanos().is_multiple_of(1_000_000) {
        write!(f, "{}ms", d.as_millis())
    } else {
        write!(f, "{}us", d.as_micros())
    }
}

impl fmt::Display for FaultSpec {
    /// The canonical spec: parses back to an equal [`FaultSpec`]. Empty for no faults.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, rule) in self.rules.iter().enumerate() {
            if i > 0 {
                f.write_str(";")?;
            }
            write!(f, "{}:", rule.target)?;
            let s = &rule.settings;
            let mut first = true;
            let mut sep = |f: &mut fmt::Formatter<'_>| -> fmt::Result {
                if !std::mem::take(&mut first) {
                    f.write_str(",")?;
                }
                Ok(())
            };
            if let Some(v) = s.error_rate {
                sep(f)?;
                write!(f, "error_rate={v}")?;
            }
            if let Some(v) = s.status {
                sep(f)?;
                write!(f, "status={v}")?;
            }
            let durations = [("retry_after", s.retry_after), ("latency", s.latency)];
            for (key, value) in durations {
                if let Some(d) = value {
                    sep(f)?;
                    write!(f, "{key}=")?;
                    write_duration(f, d)?;
                }
            }
            if let Some(v) = s.timeout_rate {
                sep(f)?;
                write!(f, "timeout_rate={v}")?;
            }
            if let Some(d) = s.hold {
                sep(f)?;
                f.write_str("hold=")?;
                write_duration(f, d)?;
            }
            if let Some(v) = s.malformed_rate {
                sep(f)?;
                write!(f, "malformed_rate={v}")?;
            }
            let durations = [
                ("slow_body", s.slow_body),
                ("drop_every", s.drop_every),
                ("max_stream", s.max_stream),
                ("stall_after", s.stall_after),
            ];
            for (key, value) in durations {
                if let Some(d) = value {
                    sep(f)?;
                    write!(f, "{key}=")?;
                    write_duration(f, d)?;
                }
            }
        }
        Ok(())
    }
}

/// Which random decision a draw is for: each has its own stream per endpoint, so changing one
/// setting (or adding traffic to another endpoint) does not shift the others' sequences.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Die {
    Timeout = 0,
    Error = 1,
    Malformed = 2,
    /// Truncated or garbage, once a body is malformed.
    MalformedKind = 3,
}

const DICE_PER_ENDPOINT: usize = 4;

/// Seeded ChaCha8 streams, one per (endpoint, decision).
pub(crate) struct FaultDice {
    streams: Mutex<Vec<ChaCha8Rng>>,
}

impl FaultDice {
    /// Streams of `seed`; the same seed and request sequence give the same faults.
    pub(crate) fn new(seed: u64) -> FaultDice {
        let streams = (0..SERVED_ENDPOINTS.len() * DICE_PER_ENDPOINT)
            .map(|stream| {
                let mut rng = ChaCha8Rng::seed_from_u64(seed);
                rng.set_stream(stream as u64);
                rng
            })
            .collect();
        FaultDice {
            streams: Mutex::new(streams),
        }
    }

    /// True with probability `rate`. Rates of 0 and 1 decide without drawing.
    pub(crate) fn roll(&self, endpoint: Endpoint, die: Die, rate: f64) -> bool {
        if rate <= 0.0 {
            return false;
        }
        if rate >= 1.0 {
            return true;
        }
        let Some(slot) = served_index(endpoint).map(|i| i * DICE_PER_ENDPOINT + die as usize)
        else {
            return false;
        };
        let mut streams = self.streams.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(rng) = streams.get_mut(slot) else {
            return false;
        };
        // 53 random bits: every f64 in [0, 1) this can produce is exact.
        let draw = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        draw < rate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_example_spec() {
        let spec: FaultSpec = "dexscreener:error_rate=1,status=503;birdeye:latency=300ms,malformed_rate=0.2;hermes/stream:drop_every=5s;dexscreener/tokens:timeout_rate=0.5"
            .parse()
            .unwrap();
        assert_eq!(spec.rules.len(), 4);
        let tokens = spec.for_endpoint(Endpoint::DexscreenerTokens);
        assert_eq!(tokens.error_rate, 1.0);
        assert_eq!(tokens.status, 503);
        assert_eq!(tokens.timeout_rate, 0.5);
        let boosts = spec.for_endpoint(Endpoint::DexscreenerBoosts);
        assert_eq!(boosts.timeout_rate, 0.0);
        let price = spec.for_endpoint(Endpoint::BirdeyePrice);
        assert_eq!(price.latency, Duration::from_millis(300));
        assert_eq!(price.malformed_rate, 0.2);
        let stream = spec.for_endpoint(Endpoint::HermesStream);
        assert_eq!(stream.drop_every, Some(Duration::from_secs(5)));
        assert_eq!(
            spec.for_endpoint(Endpoint::HermesLatest),
            EndpointFaults::default()
        );
    }

    #[test]
    fn endpoint_rules_override_provider_rules_whatever_the_order() {
        let spec: FaultSpec = "birdeye/price:error_rate=0;birdeye:error_rate=1,status=502"
            .parse()
            .unwrap();
        assert_eq!(spec.for_endpoint(Endpoint::BirdeyePrice).error_rate, 0.0);
        assert_eq!(spec.for_endpoint(Endpoint::BirdeyePrice).status, 502);
        assert_eq!(
            spec.for_endpoint(Endpoint::BirdeyeMultiPrice).error_rate,
            1.0
        );
    }

    #[test]
    fn display_round_trips() {
        let text = "hermes:error_rate=0.25,status=429,retry_after=2s,latency=150ms,timeout_rate=0.1,hold=3s,malformed_rate=0.5,drop_every=5s,max_stream=1m,stall_after=2s;dexscreener/boosts:slow_body=1500ms";
        let spec: FaultSpec = text.parse().unwrap();
        let again: FaultSpec = spec.to_string().parse().unwrap();
        assert_eq!(spec, again);
        assert_eq!(
            spec.to_string(),
            "hermes:error_rate=0.25,status=429,retry_after=2s,latency=150ms,timeout_rate=0.1,hold=3s,malformed_rate=0.5,drop_every=5s,max_stream=60s,stall_after=2s;dexscreener/boosts:slow_body=1500ms"
        );
        assert!(FaultSpec::from_str("").unwrap().is_empty());
        assert!(FaultSpec::from_str(" none ; ").unwrap().is_empty());
    }

    #[test]
    fn errors_name_the_bad_part() {
        let cases = [
            ("dexscreenr:error_rate=1", "dexscreenr", "unknown target"),
            ("dexscreener:error_rate=2", "error_rate=2", "from 0 to 1"),
            ("dexscreener:status=200", "status=200", "400 to 599"),
            ("birdeye:latency=300", "latency=300", "duration like"),
            ("birdeye:latncy=3s", "latncy=3s", "unknown setting `latncy`"),
            ("birdeye:latency", "latency", "key=value"),
            ("birdeye", "birdeye", "target:key=value"),
            ("birdeye:", "birdeye:", "no settings"),
            ("birdeye:drop_every=5s", "drop_every=5s", "SSE streams only"),
            (
                "hermes/stream:slow_body=1s",
                "slow_body=1s",
                "not to the SSE stream",
            ),
            ("hermes:latency=1s,latency=2s", "latency=2s", "twice"),
            ("hermes:drop_every=0s", "drop_every=0s", "longer than 0"),
            (
                "birdeye:stall_after=2s",
                "stall_after=2s",
                "SSE streams only",
            ),
        ];
        for (spec, part, reason) in cases {
            let err = FaultSpec::from_str(spec).unwrap_err();
            assert_eq!(err.part, part, "{spec}: {err}");
            assert!(err.reason.contains(reason), "{spec}: {err}");
            assert!(err.to_string().contains(part), "{err}");
        }
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("300ms"), Ok(Duration::from_millis(300)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("s").is_err());
    }

    #[test]
    fn dice_are_deterministic_and_near_their_rate() {
        let a = FaultDice::new(9);
        let b = FaultDice::new(9);
        let draws = |d: &FaultDice| {
            (0..2000)
                .map(|_| d.roll(Endpoint::BirdeyePrice, Die::Error, 0.3))
                .collect::<Vec<_>>()
        };
        let (xs, ys) = (draws(&a), draws(&b));
        assert_eq!(xs, ys);
        let hits = xs.iter().filter(|x| **x).count();
        assert!((500..700).contains(&hits), "{hits}");
        assert!(!a.roll(Endpoint::BirdeyePrice, Die::Error, 0.0));
        assert!(a.roll(Endpoint::BirdeyePrice, Die::Error, 1.0));
    }
}
