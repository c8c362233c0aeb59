//! The first operator after ingest: parse and validate envelopes into typed record streams.

use std::sync::Arc;

use timely::dataflow::StreamVec;
use timely::dataflow::channels::pact::{Exchange, ParallelizationContract, Pipeline};
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use tracing::info;

use super::route::route;
use super::stats::RunStats;
use crate::model::parse::{ParseContext, parse_envelope};
use crate::model::{
    AssetMap, BoostSnapshot, ChainTarget, Envelope, InvalidInput, PriceTick, Record,
};

/// What parsing needs from the configuration.
#[derive(Clone, Debug, Default)]
pub struct ParseSettings {
    /// Feed ids and tokens to assets.
    pub assets: AssetMap,
    /// How far ahead of ingest a publish time may be (ms).
    pub max_future_skew_ms: i64,
}

/// Parsed records, by kind.
pub struct Parsed<'scope> {
    /// Prices from every source.
    pub prices: StreamVec<'scope, u64, PriceTick>,
    /// Boost-rank snapshots.
    pub boosts: StreamVec<'scope, u64, BoostSnapshot>,
    /// On-chain observations.
    pub targets: StreamVec<'scope, u64, ChainTarget>,
    /// Invalid inputs.
    pub invalid: StreamVec<'scope, u64, InvalidInput>,
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
    let (mut boosts_out, boosts) = builder.new_output::<Vec<BoostSnapshot>>();
    let (mut targets_out, targets) = builder.new_output::<Vec<ChainTarget>>();
    let (mut invalid_out, invalid) = builder.new_output::<Vec<InvalidInput>>();

    builder.build(move |_capabilities| {
        let mut records = Vec::new();
        let (mut p, mut b, mut t, mut i) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        move |_frontiers| {
            let mut prices_out = prices_out.activate();
            let mut boosts_out = boosts_out.activate();
            let mut targets_out = targets_out.activate();
            let mut invalid_out = invalid_out.activate();
            let ctx = ParseContext {
                assets: &settings.assets,
                max_future_skew_ms: settings.max_future_skew_ms,
            };
            input.for_each(|cap, data| {
                let mut notices = 0;
                for env in data.drain(..) {
                    stats.envelope(env.endpoint, env.raw.len());
                    parse_envelope(&env, &ctx, &mut records);
                    for record in records.drain(..) {
                        match record {
                            Record::Price(x) => p.push(x),
                            Record::Boosts(x) => b.push(x),
                            Record::Target(x) => t.push(x),
                            Record::Invalid(x) => i.push(x),
                            Record::Notice(n) => {
                                notices += 1;
                                info!(endpoint = %n.endpoint, text = %n.text, "source notice");
                            }
                        }
                    }
                }
                stats.records(
                    p.len() as u64,
                    b.len() as u64,
                    t.len() as u64,
                    i.len() as u64,
                    notices,
                );
                prices_out.give(&cap, &mut p);
                boosts_out.give(&cap, &mut b);
                targets_out.give(&cap, &mut t);
                invalid_out.give(&cap, &mut i);
                p.clear();
                b.clear();
                t.clear();
                i.clear();
            });
        }
    });

    Parsed {
        prices,
        boosts,
        targets,
        invalid,
    }
}
