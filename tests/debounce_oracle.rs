//! Debounce against its oracles: Pyth's own float rule, and a plain loop over the semantics.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use proptest::prelude::*;
use sluice::config::{DebounceConfig, Percent, UnlistedFeeds};
use sluice::dataflow::debounce::{DebounceTiming, FeedTarget, FeedTick, debounce};
use sluice::model::{Decimal, FeedId};
use sluice::ops::debounce::{
    BatchEntry, Decision, EarlyThresholds, FeedRules, PushBatch, Quote, Reason, SourcePrice,
    Thresholds, should_update,
};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::operators::{Input, Inspect, Probe};
use timely::dataflow::{InputHandle, ProbeHandle};

// ---------------------------------------------------------------------------------------------
// 1. The decision rule agrees with Pyth's price pusher away from float rounding at a threshold.

/// The pusher's `shouldUpdate`, transcribed with JS numbers (f64): expo ignored, raw mantissas.
fn pyth_should_update(rule: &FloatRule, source: &Quote, target: Option<&Quote>) -> Decision {
    let Some(target) = target else {
        return Decision::Yes(Reason::Initial);
    };
    if source.publish_time < target.publish_time {
        return Decision::No;
    }
    let time_diff = (source.publish_time - target.publish_time) as f64;
    let dev = (source.price as f64 - target.price as f64).abs() / target.price as f64 * 100.0;
    let conf = (source.conf as f64 / source.price as f64).abs() * 100.0;
    if time_diff >= rule.time as f64 || dev >= rule.dev || conf >= rule.conf {
        return Decision::Yes(Reason::Deviation); // the pusher has no reasons; compare classes
    }
    match &rule.early {
        None => Decision::Early,
        Some((t, d, c)) => {
            let hit = t.is_some_and(|t| time_diff >= t as f64)
                || d.is_some_and(|d| dev >= d)
                || c.is_some_and(|c| conf >= c);
            if hit { Decision::Early } else { Decision::No }
        }
    }
}

#[derive(Clone, Debug)]
struct FloatRule {
    time: u64,
    dev: f64,
    conf: f64,
    early: Option<(Option<u64>, Option<f64>, Option<f64>)>,
}

fn class(d: Decision) -> u8 {
    match d {
        Decision::Yes(_) => 2,
        Decision::Early => 1,
        Decision::No => 0,
    }
}

/// A percentage as both an exact decimal and the JS number parsed from the same text.
fn percent() -> impl Strategy<Value = (Decimal, f64)> {
    (0i64..5000, 0i32..4).prop_map(|(m, scale)| {
        let d = Decimal::new(m, -scale);
        let f: f64 = d.to_string().parse().unwrap();
        (d, f)
    })
}

/// True when a float metric sits so close to its threshold that rounding could flip it.
fn near(metric: f64, threshold: f64) -> bool {
    metric.is_finite() && (metric - threshold).abs() <= 1e-9 * threshold.abs().max(1.0)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]
    #[test]
    fn agrees_with_pyths_float_rule(
        sp in -2_000_000i64..2_000_000_000,
        tp in -2_000_000i64..2_000_000_000,
        sc in 0u64..50_000_000,
        st in 0i64..400,
        tt in 0i64..400,
        expo in -10i32..0,
        time in 0u64..120,
        (dev_d, dev_f) in percent(),
        (conf_d, conf_f) in percent(),
        early in proptest::option::of((proptest::option::of(0u64..120), proptest::option::of(percent()), proptest::option::of(percent()))),
        known in any::<bool>(),
    ) {
        let source = Quote { price: sp, conf: sc, expo, publish_time: st };
        let target = Quote { price: tp, conf: 0, expo, publish_time: tt };
        let exact = Thresholds {
            time_difference_s: time,
            price_deviation: dev_d,
            confidence_ratio: conf_d,
            early: early.as_ref().map(|(t, d, c)| EarlyThresholds {
                time_difference_s: *t,
                price_deviation: d.map(|p| p.0),
                confidence_ratio: c.map(|p| p.0),
            }),
        };
        let float = FloatRule {
            time,
            dev: dev_f,
            conf: conf_f,
            early: early.as_ref().map(|(t, d, c)| (*t, d.map(|p| p.1), c.map(|p| p.1))),
        };
        let dev = (sp as f64 - tp as f64).abs() / tp as f64 * 100.0;
        let conf = (sc as f64 / sp as f64).abs() * 100.0;
        let mut thresholds = vec![dev_f, conf_f];
        if let Some((_, d, c)) = &early {
            thresholds.extend(d.map(|p| p.1));
            thresholds.extend(c.map(|p| p.1));
        }
        prop_assume!(!thresholds.iter().any(|th| near(dev, *th) || near(conf, *th)));
        let target = known.then_some(&target);
        prop_assert_eq!(
            class(should_update(&exact, &source, target)),
            class(pyth_should_update(&float, &source, target)),
            "source {:?} target {:?} rule {:?}", source, target, float
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 2. The timely operator equals a plain loop over the semantics, on any worker count and any
//    batching of the input.

const TICK: u64 = 10;

#[derive(Clone, Debug)]
enum Event {
    Price(u64, FeedTick),
    Read(u64, FeedTarget),
}

impl Event {
    fn time(&self) -> u64 {
        match self {
            Event::Price(t, _) | Event::Read(t, _) => *t,
        }
    }
}

fn feed(i: u8) -> FeedId {
    FeedId([i; 32])
}

fn config(debounce_ms: u64, early_for_feed_2: bool) -> DebounceConfig {
    let mut feeds = Vec::new();
    if early_for_feed_2 {
        feeds.push(sluice::config::FeedConfig {
            alias: "two".into(),
            id: feed(2).to_string(),
            time_difference: None,
            price_deviation: None,
            confidence_ratio: None,
            early_update: Some(sluice::config::EarlyUpdate {
                time_difference: Some(20),
                price_deviation: None,
                confidence_ratio: None,
            }),
        });
    }
    DebounceConfig {
        min_price_change_percent: Percent::parse("0.5").unwrap(),
        force_update_interval_ms: 30_000,
        confidence_ratio_percent: Percent::parse("5").unwrap(),
        max_staleness_secs: 60,
        debounce_ms,
        receipt_timeout_ms: 3_000,
        unlisted_feeds: UnlistedFeeds::Defaults,
        feeds,
    }
}

fn inputs() -> impl Strategy<Value = Vec<Event>> {
    // A few feeds random-walking, chain reads now and then; times on ticks.
    proptest::collection::vec(
        (
            0u8..4,
            0u64..3,
            -40i64..40,
            0u64..30,
            any::<bool>(),
            0u8..10,
        ),
        1..120,
    )
    .prop_map(|steps| {
        let mut t = 1_000_000u64;
        let mut price = [100_000i64; 4];
        let mut publish = [1_000i64; 4];
        let mut out = Vec::new();
        for (f, gap_ticks, step, conf, read, kind) in steps {
            t += gap_ticks * 50 * TICK;
            let i = f as usize;
            if kind < 8 {
                price[i] += step * 30;
                publish[i] += (gap_ticks as i64) + 1;
                out.push(Event::Price(
                    t,
                    FeedTick {
                        feed: feed(f),
                        quote: Quote {
                            price: price[i],
                            conf: conf * 100,
                            expo: -5,
                            publish_time: publish[i],
                        },
                        update_data: Some(bytes::Bytes::from(format!("{f:02x}{:08x}", publish[i]))),
                    },
                ));
            } else {
                let price = read.then_some(Quote {
                    price: price[i] - 500,
                    conf: 1,
                    expo: -5,
                    publish_time: publish[i] - 3,
                });
                out.push(Event::Read(
                    t,
                    FeedTarget {
                        feed: feed(f),
                        price,
                    },
                ));
            }
        }
        out
    })
}

/// One feed as the issue states it, written out here without the operator's types: the
/// latest source price (never backwards, none older than `max_staleness`), the last chain
/// read (never backwards) and the last batch, which counts until a read shows it landed or a
/// read after its receipt deadline shows it did not.
#[derive(Default)]
struct NaiveFeed {
    source: Option<SourcePrice>,
    chain: Option<Quote>,
    /// The pushed quote and its receipt deadline.
    pushed: Option<(Quote, u64)>,
}

impl NaiveFeed {
    fn offer(&mut self, price: SourcePrice, now_ms: u64, max_staleness_ms: u64) {
        if price.quote.publish_time * 1000 < now_ms as i64 - max_staleness_ms as i64 {
            return;
        }
        let order = |q: &Quote| (q.publish_time, q.price, q.conf);
        if self
            .source
            .as_ref()
            .is_some_and(|s| order(&price.quote) <= order(&s.quote))
        {
            return;
        }
        self.source = Some(price);
    }

    fn observe(&mut self, read: Option<Quote>, now_ms: u64) {
        if let Some(q) = read
            && self.chain.is_none_or(|c| q.publish_time >= c.publish_time)
        {
            self.chain = Some(q);
        }
        if let Some((quote, deadline)) = self.pushed {
            let landed = self
                .chain
                .is_some_and(|c| c.publish_time >= quote.publish_time);
            if landed || now_ms >= deadline {
                self.pushed = None;
            }
        }
    }

    fn target(&self) -> Option<Quote> {
        match (self.chain, self.pushed) {
            (Some(c), Some((p, _))) if p.publish_time > c.publish_time => Some(p),
            (Some(c), _) => Some(c),
            (None, pushed) => pushed.map(|(p, _)| p),
        }
    }

    fn decide(&self, rule: &Thresholds) -> Decision {
        match &self.source {
            Some(s) => should_update(rule, &s.quote, self.target().as_ref()),
            None => Decision::No,
        }
    }
}

/// The semantics in a plain loop: time by time, one worker, no notices.
fn naive(inputs: &[Event], config: &DebounceConfig, final_watermark: u64) -> Vec<(u64, PushBatch)> {
    let rules = FeedRules::from_config(config);
    let mut by_time: BTreeMap<u64, Vec<Event>> = BTreeMap::new();
    for input in inputs {
        by_time.entry(input.time()).or_default().push(input.clone());
    }
    let mut times: BTreeSet<u64> = by_time.keys().copied().collect();
    let mut feeds: BTreeMap<FeedId, NaiveFeed> = BTreeMap::new();
    // The open window's end, if one is open, and the ends still to come.
    let mut open_until: Option<u64> = None;
    let mut closes: BTreeSet<u64> = BTreeSet::new();
    let mut commits: BTreeMap<u64, Vec<BatchEntry>> = BTreeMap::new();
    let mut out = Vec::new();
    let mut batches = 0;
    while let Some(t) = times.pop_first() {
        if t >= final_watermark {
            break;
        }
        if let Some(entries) = commits.remove(&t) {
            for e in &entries {
                let quote = Quote {
                    price: e.price,
                    conf: e.conf,
                    expo: e.expo,
                    publish_time: e.publish_time,
                };
                feeds.get_mut(&e.id).unwrap().pushed = Some((quote, t + config.receipt_timeout_ms));
            }
            batches += 1;
            out.push((t, PushBatch::new(batches, entries)));
        }
        if closes.remove(&t) {
            let mut entries = Vec::new();
            let mut any_yes = false;
            for (id, state) in &feeds {
                let Some(rule) = rules.get(id) else { continue };
                let reason = match state.decide(rule) {
                    Decision::Yes(r) => {
                        any_yes = true;
                        r
                    }
                    Decision::Early => Reason::Early,
                    Decision::No => continue,
                };
                let s = state.source.as_ref().unwrap();
                entries.push(BatchEntry {
                    id: *id,
                    price: s.quote.price,
                    conf: s.quote.conf,
                    expo: s.quote.expo,
                    publish_time: s.quote.publish_time,
                    reason,
                    update_data: s.update_data.clone(),
                });
            }
            if any_yes {
                commits.insert(t + TICK, entries);
                times.insert(t + TICK);
            }
        }
        let mut batch = by_time.remove(&t).unwrap_or_default();
        batch.sort_by_key(|i| match i {
            Event::Read(_, r) => (
                0,
                r.feed,
                r.price.map(|p| p.publish_time).unwrap_or(-1),
                0,
                0,
            ),
            Event::Price(_, p) => (1, p.feed, p.quote.publish_time, p.quote.price, p.quote.conf),
        });
        let mut changed = BTreeSet::new();
        for input in batch {
            match input {
                Event::Read(_, r) => {
                    feeds.entry(r.feed).or_default().observe(r.price, t);
                    changed.insert(r.feed);
                }
                Event::Price(_, p) => {
                    let price = SourcePrice {
                        quote: p.quote,
                        update_data: p.update_data,
                    };
                    feeds.entry(p.feed).or_default().offer(
                        price,
                        t,
                        config.max_staleness_secs * 1000,
                    );
                    changed.insert(p.feed);
                }
            }
        }
        let yes = changed
            .iter()
            .any(|id| matches!(feeds[id].decide(rules.get(id).unwrap()), Decision::Yes(_)));
        // The first YES outside an open window opens one.
        if yes && open_until.is_none_or(|end| t >= end) {
            let close = t + config.debounce_ms;
            open_until = Some(close);
            closes.insert(close);
            times.insert(close);
        }
    }
    out
}

/// The operator on `workers` workers, inputs advanced `batch` ticks at a time.
fn dataflow(
    inputs: &[Event],
    config: &DebounceConfig,
    final_watermark: u64,
    workers: usize,
    batch: u64,
) -> Vec<(u64, PushBatch)> {
    let out: Arc<Mutex<Vec<(u64, PushBatch)>>> = Arc::default();
    let sink = Arc::clone(&out);
    let inputs = inputs.to_vec();
    let config = config.clone();
    timely::execute(timely::Config::process(workers), move |worker| {
        let index = worker.index();
        let mut prices: InputHandle<u64, CapacityContainerBuilder<Vec<FeedTick>>> =
            InputHandle::new();
        let mut reads: InputHandle<u64, CapacityContainerBuilder<Vec<FeedTarget>>> =
            InputHandle::new();
        let probe = ProbeHandle::new();
        let sink = Arc::clone(&sink);
        let rules = Arc::new(FeedRules::from_config(&config));
        let timing = DebounceTiming {
            debounce_ms: config.debounce_ms,
            receipt_timeout_ms: config.receipt_timeout_ms,
            max_staleness_ms: config.max_staleness_secs * 1000,
            tick_ms: TICK,
        };
        worker.dataflow::<u64, _, _>(|scope| {
            debounce(
                scope.input_from(&mut prices),
                scope.input_from(&mut reads),
                rules,
                timing,
            )
            .inspect_time(move |t, b| sink.lock().unwrap().push((*t, b.clone())))
            .probe_with(&probe);
        });
        // Spread the inputs over the workers by position, to exercise routing.
        let mut next = 0;
        let mut time = 0u64;
        for (position, input) in inputs.iter().enumerate() {
            if input.time() >= time + batch * TICK {
                time = input.time();
                prices.advance_to(time);
                reads.advance_to(time);
                worker.step_while(|| probe.less_than(&time));
            }
            if position % worker.peers() == index {
                prices.advance_to(input.time());
                reads.advance_to(input.time());
                match input {
                    Event::Price(_, p) => prices.send(p.clone()),
                    Event::Read(_, r) => reads.send(r.clone()),
                }
            }
            next = position;
        }
        let _ = next;
        // The final watermark is part of the input: everything before it completes first.
        prices.advance_to(final_watermark);
        reads.advance_to(final_watermark);
        worker.step_while(|| probe.less_than(&final_watermark));
    })
    .unwrap();
    let mut v = std::mem::take(&mut *out.lock().unwrap());
    v.sort_by_key(|(t, b)| (*t, b.batch));
    v
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn operator_equals_the_plain_loop(
        inputs in inputs(),
        debounce_ticks in 1u64..60,
        early in any::<bool>(),
        workers in prop_oneof![Just(1usize), Just(2), Just(4)],
        batch in prop_oneof![Just(1u64), Just(7), Just(1000)],
    ) {
        let config = config(debounce_ticks * TICK, early);
        let last = inputs.iter().map(Event::time).max().unwrap_or(0);
        let final_watermark = last + 500 * TICK;
        let expected = naive(&inputs, &config, final_watermark);
        let got = dataflow(&inputs, &config, final_watermark, workers, batch);
        prop_assert_eq!(&got, &expected);
    }
}

#[test]
fn a_quiet_feed_joins_a_moving_feeds_batch_early() {
    let config = config(100, false);
    let tick = |t: u64, f: u8, price: i64, publish: i64| {
        Event::Price(
            t,
            FeedTick {
                feed: feed(f),
                quote: Quote {
                    price,
                    conf: 1,
                    expo: -5,
                    publish_time: publish,
                },
                update_data: None,
            },
        )
    };
    let inputs = vec![
        tick(1_000, 1, 100_000, 1),
        tick(1_000, 2, 200_000, 1),
        // Both are new: one initial batch. Then feed 1 moves 1 %, feed 2 barely.
        tick(5_000, 1, 101_000, 5),
        tick(5_000, 2, 200_010, 5),
    ];
    let batches = naive(&inputs, &config, 20_000);
    assert_eq!(batches.len(), 2, "{batches:?}");
    assert!(
        batches[0]
            .1
            .feeds
            .iter()
            .all(|f| f.reason == Reason::Initial)
    );
    let second = &batches[1].1;
    assert_eq!(
        batches[1].0,
        5_000 + 100 + TICK,
        "window end plus the verdict tick"
    );
    let reasons: Vec<Reason> = second.feeds.iter().map(|f| f.reason).collect();
    assert_eq!(reasons, vec![Reason::Deviation, Reason::Early]);
    for workers in [1, 2, 4] {
        assert_eq!(dataflow(&inputs, &config, 20_000, workers, 1), batches);
    }
}
