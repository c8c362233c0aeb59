//! Which tokens the price pollers ask about: the configured ones, and whatever DEX Screener's
//! boost list currently ranks highly.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock};

use crate::model::TokenRef;

/// The tokens to price, shared between the boost poller (which updates the trending part) and
/// the price pollers (which read it).
#[derive(Clone, Debug, Default)]
pub struct TrackedTokens {
    inner: Arc<RwLock<Tracked>>,
}

#[derive(Debug, Default)]
struct Tracked {
    fixed: BTreeSet<TokenRef>,
    trending: BTreeSet<TokenRef>,
}

impl TrackedTokens {
    /// Tokens that are always priced.
    pub fn with_fixed(tokens: impl IntoIterator<Item = TokenRef>) -> Self {
        let tracked = TrackedTokens::default();
        if let Ok(mut inner) = tracked.inner.write() {
            inner.fixed = tokens.into_iter().collect();
        }
        tracked
    }

    /// Replaces the trending part with the tokens of the latest boost list.
    pub fn set_trending(&self, tokens: impl IntoIterator<Item = TokenRef>) {
        let trending = tokens.into_iter().collect();
        let mut inner = self.inner.write().unwrap_or_else(|p| p.into_inner());
        inner.trending = trending;
    }

    /// Every tracked token, by chain, each chain's addresses sorted (so request batches stay
    /// the same from one poll to the next, and the stale cache can answer for them).
    pub fn by_chain(&self, include_trending: bool) -> BTreeMap<Arc<str>, Vec<TokenRef>> {
        let inner = self.inner.read().unwrap_or_else(|p| p.into_inner());
        let mut all: BTreeSet<&TokenRef> = inner.fixed.iter().collect();
        if include_trending {
            all.extend(inner.trending.iter());
        }
        let mut out: BTreeMap<Arc<str>, Vec<TokenRef>> = BTreeMap::new();
        for token in all {
            out.entry(Arc::clone(&token.chain))
                .or_default()
                .push(token.clone());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trending_tokens_join_and_leave_while_fixed_ones_stay() {
        let sol = TokenRef::parse("solana", "So11111111111111111111111111111111111111112").unwrap();
        let base = TokenRef::parse("base", "0x833589fcd6edb6e08f4c7c32d4f71b54bda02913").unwrap();
        let tracked = TrackedTokens::with_fixed([sol.clone()]);
        tracked.set_trending([base.clone()]);
        let all = tracked.by_chain(true);
        assert_eq!(all.len(), 2);
        assert_eq!(all["base"], vec![base]);
        assert_eq!(tracked.by_chain(false).len(), 1);
        tracked.set_trending([]);
        assert_eq!(tracked.by_chain(true)["solana"], vec![sol]);
    }
}
