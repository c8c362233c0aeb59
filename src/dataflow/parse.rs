//! The first operator after ingest: parse and validate envelopes into typed record streams.

use std::sync::Arc;

use timely::dataflow::StreamVec;
use timely::dataflow::channels::pact::{Exchange, ParallelizationContract, Pipeline};
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use tracing::info;

use super::debounce::FeedTick;
use super::route::route;
use super::stats::RunStats;
use super::trending::PolledSnapshot;
use crate::model::parse::{ParseContext, parse_envelope};
use crate::model::{
    Asset, AssetMap, ChainTarget, ChainTx, Envelope, InvalidInput, PricePoint, PriceTick, Record,
};
use crate::ops::debounce::FeedRules;

/// What parsing needs from the configuration.
#[derive(Clone, Debug)]
pub struct ParseSettings {
    /// Feed ids and tokens to assets.
    pub assets: AssetMap,
    /// How far ahead of ingest a publish time may be (ms).
    pub max_future_skew_ms: i64,
    /// The feeds the keeper pushes: their Hermes prices also go to the debounce.
    pub feed_rules: Arc<FeedRules>,
    /// Keep whole price ticks too (for journaling inputs); otherwise only their parts.
    pub keep_ticks: bool,
}

/// Parsed records, by kind. Each price becomes the parts its consumers need, made once here
/// rather than copied whole for every consumer downstream.
pub struct Parsed<'scope> {
    /// Whole price ticks, only when [`ParseSettings::keep_ticks`] asks for them.
    pub prices: StreamVec<'scope, u64, PriceTick>,
    /// Prices of assets more than one source can price (configured assets, tokens), reduced
    /// for fusion and the store.
    pub points: StreamVec<'scope, u64, PricePoint>,
    /// Prices of unmapped Pyth feeds: only Hermes prices those, so there is nothing to fuse,
    /// compare or mark, and they only go to the store — from whichever worker parsed them.
    pub solo_points: StreamVec<'scope, u64, PricePoint>,
    /// Hermes prices of the feeds the keeper pushes.
    pub feed_ticks: StreamVec<'scope, u64, FeedTick>,
    /// Boost-rank snapshots.
    pub boosts: StreamVec<'scope, u64, PolledSnapshot>,
    /// On-chain observations.
    pub targets: StreamVec<'scope, u64, ChainTarget>,
    /// Invalid inputs.
    pub invalid: StreamVec<'scope, u64, InvalidInput>,
    /// Keeper outcomes.
    pub chain_txs: StreamVec<'scope, u64, ChainTx>,
}

/// Parses envelopes where they are (`spread == false`: a replay already spread them), or
/// first spreads them over workers by (source, seq) (a live source runs on one worker).
pub fn parse<'scope>(
    envelopes: StreamVec<'scope, u64, Envelope>,
    settings: Arc<ParseSettings>,
    spread: bool,
    stats: Arc<RunStats>,
) -> Parsed<'scope> {
    if spread {
        let pact = Exchange::new(|env: &Envelope| route(&(env.source(), env.seq)));
        parse_with(envelopes, pact, settings, stats)
    } else {
        parse_with(envelopes, Pipeline, settings, stats)
    }
}

fn parse_with<'scope, P>(
    envelopes: StreamVec<'scope, u64, Envelope>,
    pact: P,
    settings: Arc<ParseSettings>,
    stats: Arc<RunStats>,
) -> Parsed<'scope>
where
    P: ParallelizationContract<u64, Vec<Envelope>>,
{
    let mut builder = OperatorBuilder::new("Parse".to_owned(), envelopes.scope());
    let mut input = builder.new_input(envelopes, pact);
    builder.set_notify_for(0, timely::progress::operate::FrontierInterest::Never);
    let (mut prices_out, prices) = builder.new_output::<Vec<PriceTick>>();
    let (mut points_out, points) = builder.new_output::<Vec<PricePoint>>();
    let (mut solo_out, solo_points) = builder.new_output::<Vec<PricePoint>>();
    let (mut feeds_out, feed_ticks) = builder.new_output::<Vec<FeedTick>>();
    let (mut boosts_out, boosts) = builder.new_output::<Vec<PolledSnapshot>>();
    let (mut targets_out, targets) = builder.new_output::<Vec<ChainTarget>>();
    let (mut invalid_out, invalid) = builder.new_output::<Vec<InvalidInput>>();
    let (mut txs_out, chain_txs) = builder.new_output::<Vec<ChainTx>>();

    builder.build(move |_capabilities| {
        let mut records = Vec::new();
        let (mut p, mut b, mut t, mut i) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let (mut points, mut solo, mut feeds) = (Vec::new(), Vec::new(), Vec::new());
        let mut txs = Vec::new();
        move |_frontiers| {
            let mut prices_out = prices_out.activate();
            let mut points_out = points_out.activate();
            let mut solo_out = solo_out.activate();
            let mut feeds_out = feeds_out.activate();
            let mut boosts_out = boosts_out.activate();
            let mut targets_out = targets_out.activate();
            let mut invalid_out = invalid_out.activate();
            let mut txs_out = txs_out.activate();
            let ctx = ParseContext {
                assets: &settings.assets,
                max_future_skew_ms: settings.max_future_skew_ms,
            };
            input.for_each(|cap, data| {
                let (mut notices, mut prices) = (0, 0);
                for env in data.drain(..) {
                    stats.envelope(env.endpoint, env.raw.len());
                    parse_envelope(&env, &ctx, &mut records);
                    for record in records.drain(..) {
                        match record {
                            Record::Price(x) => {
                                prices += 1;
                                if let Some(feed) = FeedTick::of(&x, &settings.feed_rules) {
                                    feeds.push(feed);
                                }
                                let point = if settings.keep_ticks {
                                    let point = PricePoint::from(x.clone());
                                    p.push(x);
                                    point
                                } else {
                                    PricePoint::from(x)
                                };
                                match point.asset {
                                    Asset::Feed(_) => solo.push(point),
                                    _ => points.push(point),
                                }
                            }
                            Record::Boosts(snapshot) => b.push(PolledSnapshot {
                                seq: env.seq,
                                snapshot,
                            }),
                            Record::Target(x) => t.push(x),
                            Record::Invalid(x) => i.push(x),
                            Record::ChainTx(x) => txs.push(x),
                            Record::Notice(n) => {
                                notices += 1;
                                info!(endpoint = %n.endpoint, text = %n.text, "source notice");
                            }
                        }
                    }
                }
                stats.records(
                    prices,
                    b.len() as u64,
                    t.len() as u64,
                    i.len() as u64,
                    notices,
                );
                prices_out.give(&cap, &mut p);
                points_out.give(&cap, &mut points);
                solo_out.give(&cap, &mut solo);
                feeds_out.give(&cap, &mut feeds);
                boosts_out.give(&cap, &mut b);
                targets_out.give(&cap, &mut t);
                invalid_out.give(&cap, &mut i);
                txs_out.give(&cap, &mut txs);
                p.clear();
                points.clear();
                solo.clear();
                feeds.clear();
                b.clear();
                t.clear();
                i.clear();
                txs.clear();
            });
        }
    });

    Parsed {
        prices,
        points,
        solo_points,
        feed_ticks,
        boosts,
        targets,
        invalid,
        chain_txs,
    }
}
