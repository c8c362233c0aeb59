//! Trending state in the store: one record per token with its bounded history, and the queries
//! the API and the status page read it with.
//!
//! A record is written whenever its token changes (so it is exact as of its last change: the
//! velocity at a later time follows from it alone), and it outlives the in-memory state, which
//! is dropped a window after the token exits.

use serde::{Deserialize, Serialize};

use super::{StateRecord, StateWrite, Store, StoreError, Tree};
use crate::model::TokenRef;
use crate::ops::trending::{TokenTrend, TrendingMetrics, TrendingParams};

/// What the store keeps per token, under the key `<chain>:<address>` in [`Tree::Trending`].
///
/// ```
/// use sluice::model::TokenRef;
/// use sluice::ops::trending::TokenTrend;
/// use sluice::store::StateRecord;
/// use sluice::store::trending::TrendingRecord;
///
/// let token = TokenRef::parse("solana", "So11111111111111111111111111111111111111112").unwrap();
/// let record = TrendingRecord { token, trend: TokenTrend::default(), updated_ms: 1_000 };
/// let write = record.to_write();
/// assert_eq!(write.key, b"solana:So11111111111111111111111111111111111111112");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrendingRecord {
    /// The token.
    pub token: TokenRef,
    /// Its state, with its bounded history of positions and events.
    pub trend: TokenTrend,
    /// The dataflow time of the last update, in ms.
    pub updated_ms: u64,
}

/// The key of a token's record: `<chain>:<address>`. Chain slugs have no `:`, so a scan by
/// `<chain>:` finds exactly that chain's tokens.
pub fn trending_key(token: &TokenRef) -> Vec<u8> {
    token.to_string().into_bytes()
}

impl StateRecord for TrendingRecord {
    type Key = TokenRef;

    fn state_key(&self) -> Self::Key {
        self.token.clone()
    }

    /// The later update wins; two updates at the same time are ordered by their stored bytes,
    /// so that the winner never depends on arrival order.
    fn supersedes(&self, other: &Self) -> bool {
        match self.updated_ms.cmp(&other.updated_ms) {
            std::cmp::Ordering::Equal => stored_bytes(self) > stored_bytes(other),
            later_or_earlier => later_or_earlier.is_gt(),
        }
    }

    fn to_write(&self) -> StateWrite {
        StateWrite {
            tree: Tree::Trending,
            key: trending_key(&self.token),
            // Serializing plain data with string keys cannot fail; were it to, removing the
            // key is the safe write (the record is rebuilt by the next change) where a partial
            // value would not be.
            value: serde_json::to_vec(self).ok(),
            version: None,
        }
    }
}

/// The JSON the record is stored as, or nothing if it cannot be serialized (it always can).
fn stored_bytes(record: &TrendingRecord) -> Vec<u8> {
    serde_json::to_vec(record).unwrap_or_default()
}

/// Why trending state could not be read.
#[derive(Debug, thiserror::Error)]
pub enum TrendingStoreError {
    /// The store itself failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored value is not a trending record, or not the one its key names.
    #[error("damaged trending record at {key:?}: {reason}")]
    Damaged {
        /// The key, as text.
        key: String,
        /// What is wrong.
        reason: String,
    },
}

/// The metrics of `token` as of `now_ms`, from the store; `None` if it was never seen.
///
/// A damaged value is an error, never a panic.
///
/// ```
/// use sluice::model::{Decimal, TokenRef};
/// use sluice::ops::trending::{RankChange, TokenTrend, TrendingParams};
/// use sluice::store::{StateRecord, Store};
/// use sluice::store::trending::{trending_metrics, TrendingRecord};
///
/// let dir = tempfile::tempdir().unwrap();
/// let (store, _) = Store::open(dir.path()).unwrap();
/// let params = TrendingParams {
///     min_trending_rank: 100,
///     velocity_window_ms: 60_000,
///     high_momentum: Decimal::new(5, 0),
///     rearm: Decimal::new(1, 0),
///     max_history: 10,
/// };
/// let token = TokenRef::parse("solana", "So11111111111111111111111111111111111111112").unwrap();
/// let mut trend = TokenTrend::default();
/// trend.apply(&token, 0, RankChange { old: None, new: Some(4) }, &params);
/// trend.apply(&token, 30_000, RankChange { old: Some(4), new: Some(3) }, &params);
/// let record = TrendingRecord { token: token.clone(), trend, updated_ms: 30_000 };
/// store.apply(&[record.to_write()]).unwrap();
///
/// let metrics = trending_metrics(&store, &token, 40_000, &params).unwrap().unwrap();
/// assert_eq!(metrics.current_rank, Some(3));
/// assert_eq!(metrics.velocity, Decimal::new(1_000, -3));
/// ```
pub fn trending_metrics(
    store: &Store,
    token: &TokenRef,
    now_ms: u64,
    params: &TrendingParams,
) -> Result<Option<TrendingMetrics>, TrendingStoreError> {
    let key = trending_key(token);
    let Some(value) = store.get(Tree::Trending, &key)? else {
        return Ok(None);
    };
    let record = decode(&key, &value)?;
    Ok(Some(record.trend.metrics(now_ms, params)))
}

/// The `n` best-ranked tokens trending as of the store's last updates, best rank first (ties,
/// which only stale records can make, by token), with their metrics as of `now_ms`.
///
/// Any damaged record is an error rather than a silently shorter list.
pub fn trending_top(
    store: &Store,
    n: usize,
    now_ms: u64,
    params: &TrendingParams,
) -> Result<Vec<(TokenRef, TrendingMetrics)>, TrendingStoreError> {
    let mut trending = Vec::new();
    for (key, value) in store.scan(Tree::Trending, b"")? {
        let record = decode(&key, &value)?;
        if let Some(rank) = record.trend.current_rank() {
            trending.push((rank, record));
        }
    }
    trending.sort_by(|(rank_a, a), (rank_b, b)| (rank_a, &a.token).cmp(&(rank_b, &b.token)));
    Ok(trending
        .into_iter()
        .take(n)
        .map(|(_, record)| {
            let metrics = record.trend.metrics(now_ms, params);
            (record.token, metrics)
        })
        .collect())
}

/// Every stored trending record, in key order. For rebuilding in-memory state or listing.
pub fn trending_records(store: &Store) -> Result<Vec<TrendingRecord>, TrendingStoreError> {
    store
        .scan(Tree::Trending, b"")?
        .into_iter()
        .map(|(key, value)| decode(&key, &value))
        .collect()
}

/// Reads a stored record and checks that it is the one its key names.
fn decode(key: &[u8], value: &[u8]) -> Result<TrendingRecord, TrendingStoreError> {
    let damaged = |reason: String| TrendingStoreError::Damaged {
        key: String::from_utf8_lossy(key).into_owned(),
        reason,
    };
    let record: TrendingRecord =
        serde_json::from_slice(value).map_err(|e| damaged(e.to_string()))?;
    if trending_key(&record.token) != key {
        return Err(damaged(format!("holds the record of {}", record.token)));
    }
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Decimal;
    use crate::ops::trending::{RankChange, TrendingEvent};

    fn change(old: Option<u32>, new: Option<u32>) -> RankChange {
        RankChange { old, new }
    }

    fn params() -> TrendingParams {
        TrendingParams {
            min_trending_rank: 100,
            velocity_window_ms: 60_000,
            high_momentum: Decimal::new(2, 0),
            rearm: Decimal::new(1, 0),
            max_history: 4,
        }
    }

    fn sol(n: u8) -> TokenRef {
        TokenRef::parse("solana", &bs58::encode([n; 32]).into_string()).unwrap()
    }

    fn base(n: u8) -> TokenRef {
        TokenRef::parse("base", &format!("0x{}", hex::encode([n; 20]))).unwrap()
    }

    fn open() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(&dir.path().join("state")).unwrap();
        (dir, store)
    }

    /// A record for a token that went through `moves` (time, change).
    fn record(token: &TokenRef, moves: &[(u64, Option<u32>, Option<u32>)]) -> TrendingRecord {
        let mut trend = TokenTrend::default();
        let mut updated_ms = 0;
        for &(t, old, new) in moves {
            trend.apply(token, t, change(old, new), &params());
            updated_ms = t;
        }
        TrendingRecord {
            token: token.clone(),
            trend,
            updated_ms,
        }
    }

    #[test]
    fn records_round_trip_and_answer_queries() {
        let (_dir, store) = open();
        let p = params();
        let (a, b, c, d) = (sol(1), sol(2), base(3), base(4));
        let ra = record(&a, &[(0, None, Some(9)), (30_000, Some(9), Some(2))]);
        let rb = record(&b, &[(0, None, Some(1)), (30_000, Some(1), Some(3))]);
        let rc = record(&c, &[(0, None, Some(5))]);
        let rd = record(&d, &[(0, None, Some(4)), (10_000, Some(4), None)]);
        let writes: Vec<StateWrite> = [&ra, &rb, &rc, &rd].iter().map(|r| r.to_write()).collect();
        store.apply(&writes).unwrap();

        let stored = store
            .get(Tree::Trending, &trending_key(&a))
            .unwrap()
            .unwrap();
        assert_eq!(
            serde_json::from_slice::<TrendingRecord>(&stored).unwrap(),
            ra
        );
        assert_eq!(trending_records(&store).unwrap().len(), 4);

        let metrics = trending_metrics(&store, &a, 40_000, &p).unwrap().unwrap();
        assert_eq!(metrics, ra.trend.metrics(40_000, &p));
        assert_eq!(metrics.current_rank, Some(2));
        // 9 → 2 within the minute: 7 ranks per minute, which fired.
        assert_eq!(metrics.velocity, Decimal::new(7_000, -3));
        assert!(matches!(
            metrics.recent_events.last().map(|e| &e.event),
            Some(TrendingEvent::HighMomentum { .. })
        ));
        // Exited tokens keep their record but are not trending.
        let gone = trending_metrics(&store, &d, 40_000, &p).unwrap().unwrap();
        assert!(!gone.is_trending);
        assert_eq!(gone.velocity, Decimal::new(0, -3));
        assert_eq!(trending_metrics(&store, &sol(9), 40_000, &p).unwrap(), None);

        let top = trending_top(&store, 2, 40_000, &p).unwrap();
        let tokens: Vec<&TokenRef> = top.iter().map(|(t, _)| t).collect();
        assert_eq!(tokens, vec![&a, &b]);
        let all = trending_top(&store, 10, 40_000, &p).unwrap();
        let ranks: Vec<Option<u32>> = all.iter().map(|(_, m)| m.current_rank).collect();
        assert_eq!(ranks, vec![Some(2), Some(3), Some(5)]);
    }

    #[test]
    fn damaged_values_are_errors() {
        let (_dir, store) = open();
        let p = params();
        let a = sol(1);
        let bad = StateWrite {
            tree: Tree::Trending,
            key: trending_key(&a),
            value: Some(b"{\"token\":".to_vec()),
            version: None,
        };
        store.apply(&[bad]).unwrap();
        assert!(matches!(
            trending_metrics(&store, &a, 0, &p),
            Err(TrendingStoreError::Damaged { .. })
        ));
        assert!(trending_top(&store, 5, 0, &p).is_err());

        // A valid record under another token's key is damage too.
        let b = sol(2);
        let mut misplaced = record(&b, &[(0, None, Some(1))]).to_write();
        misplaced.key = trending_key(&a);
        store.apply(&[misplaced]).unwrap();
        assert!(trending_metrics(&store, &a, 0, &p).is_err());
    }

    #[test]
    fn supersedes_is_a_total_order() {
        let a = sol(1);
        let early = record(&a, &[(0, None, Some(5))]);
        let late = record(&a, &[(0, None, Some(5)), (1_000, Some(5), Some(4))]);
        assert!(late.supersedes(&early));
        assert!(!early.supersedes(&late));
        // Same time, different content: exactly one wins, either way round.
        let mut other = early.clone();
        other.trend = record(&a, &[(0, None, Some(6))]).trend;
        assert_ne!(other.supersedes(&early), early.supersedes(&other));
        assert!(!early.supersedes(&early.clone()));
        assert_eq!(early.state_key(), a);
    }
}
