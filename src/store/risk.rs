//! The paper portfolio in the store: one JSON record under `portfolio` in [`Tree::Risk`], the
//! latest cash, positions, peak equity and tier, for operators and tools to read.
//!
//! A run does not resume from it: every run starts from `risk.initial_capital`, because a run's
//! journal must be what a replay of its recording gives, and the recording starts empty. The
//! record round-trips exactly (`Portfolio::from_record`), so a tool can pick a portfolio up.
//!
//! Amounts are [`Fixed`] decimal strings, exact. Assets keep their serde form (`{"Named":"SOL"}`)
//! rather than their display form, because the display form does not always parse back
//! unambiguously. Convert with [`Portfolio::to_record`](crate::ops::risk::Portfolio::to_record)
//! and [`Portfolio::from_record`](crate::ops::risk::Portfolio::from_record).

use serde::{Deserialize, Serialize};

use super::{StateRecord, StateWrite, Store, StoreError, Tree};
use crate::model::Asset;
use crate::ops::risk::{Fixed, Tier};

/// The key of the portfolio record in [`Tree::Risk`].
pub const PORTFOLIO_KEY: &str = "portfolio";

/// A snapshot of the paper portfolio.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortfolioRecord {
    /// The dataflow time (ms) of the last step the snapshot includes.
    pub updated_ms: u64,
    /// Cash (USD).
    pub cash: Fixed,
    /// Equity: cash plus Σ qty × mark (rounded half to even per position).
    pub equity: Fixed,
    /// Peak equity.
    pub peak: Fixed,
    /// The drawdown tier.
    pub tier: Tier,
    /// The id the next order gets.
    pub next_order: u64,
    /// Held positions, in asset order.
    pub positions: Vec<PositionRecord>,
    /// The latest mark of every asset seen, in asset order.
    pub marks: Vec<MarkRecord>,
}

/// A held position in a [`PortfolioRecord`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PositionRecord {
    /// The asset.
    pub asset: Asset,
    /// Token quantity.
    pub qty: Fixed,
    /// Entry price.
    pub entry: Fixed,
    /// Latest mark.
    pub mark: Fixed,
    /// Highest mark since entry.
    pub high: Fixed,
}

/// The latest mark of an asset in a [`PortfolioRecord`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MarkRecord {
    /// The asset.
    pub asset: Asset,
    /// Its latest usable price.
    pub price: Fixed,
}

impl StateRecord for PortfolioRecord {
    type Key = &'static str;

    fn state_key(&self) -> Self::Key {
        PORTFOLIO_KEY
    }

    fn supersedes(&self, other: &Self) -> bool {
        // There is one portfolio, so two records at one time only happen if the dataflow is
        // miswired; ordering by the bytes keeps the winner independent of arrival order anyway.
        (self.updated_ms, serde_json::to_vec(self).ok())
            > (other.updated_ms, serde_json::to_vec(other).ok())
    }

    fn to_write(&self) -> StateWrite {
        StateWrite {
            tree: Tree::Risk,
            key: PORTFOLIO_KEY.as_bytes().to_vec(),
            // Plain data with string keys: serialization cannot fail.
            value: serde_json::to_vec(self).ok(),
            version: None,
        }
    }
}

/// Why the stored portfolio could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LoadPortfolioError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The record is not a portfolio (written by another version, or damaged).
    #[error("stored portfolio does not decode: {0}")]
    Decode(#[from] serde_json::Error),
}

/// The stored portfolio, if any. A record that does not decode is an error, so the caller can
/// say so before starting afresh from the initial capital.
pub fn load_portfolio(store: &Store) -> Result<Option<PortfolioRecord>, LoadPortfolioError> {
    match store.get(Tree::Risk, PORTFOLIO_KEY.as_bytes())? {
        Some(bytes) => Ok(Some(serde_json::from_slice(&bytes)?)),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Decimal;
    use crate::ops::risk::{Portfolio, RiskParams};

    fn fx(s: &str) -> Fixed {
        Fixed::parse(s).unwrap()
    }

    fn params() -> RiskParams {
        RiskParams {
            initial_capital: fx("10000"),
            base_position_percent: fx("5"),
            max_positions: 8,
            max_position_percent: fx("20"),
            stop_loss_percent: fx("15"),
            trailing_stop_percent: fx("10"),
            drawdown_thresholds: [fx("5"), fx("10"), fx("20")],
            recovery_hysteresis_percent: fx("1"),
            tier_multipliers: [fx("1"), fx("0.5"), fx("0.25"), fx("0")],
            entry_wait_ms: 0,
            min_order: Fixed::ZERO,
        }
    }

    fn portfolio() -> Portfolio {
        let mut p = Portfolio::new(params());
        let sol = Asset::named("SOL");
        let pepe = Asset::named("PEPE");
        let marks = vec![
            (pepe.clone(), Decimal::parse("0.00001585").unwrap()),
            (sol.clone(), Decimal::parse("142.41").unwrap()),
        ];
        p.step(1_000, &marks, &[], &[pepe, sol.clone()]);
        p.step(2_000, &[(sol, Decimal::parse("150.5").unwrap())], &[], &[]);
        p
    }

    #[test]
    fn stores_and_restores_the_portfolio() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(&dir.path().join("state")).unwrap();
        assert!(load_portfolio(&store).unwrap().is_none());
        let p = portfolio();
        let record = p.to_record();
        store.apply(&[record.to_write()]).unwrap();
        let loaded = load_portfolio(&store).unwrap().unwrap();
        assert_eq!(loaded, record);
        let restored = Portfolio::from_record(params(), &loaded).unwrap();
        assert_eq!(restored.equity(), p.equity());
        assert_eq!(restored.cash(), p.cash());
        assert_eq!(restored.to_record(), record);
        assert_eq!(loaded.state_key(), "portfolio");
    }

    #[test]
    fn stored_form_is_exact_decimal_strings() {
        let text = String::from_utf8(portfolio().to_record().to_write().value.unwrap()).unwrap();
        assert!(
            text.starts_with(r#"{"updated_ms":2000,"cash":"9000.000000000000000099","#),
            "{text}"
        );
        assert!(text.contains(r#"{"asset":{"Named":"PEPE"},"qty":"31545741.324921135646687697","entry":"0.00001585","mark":"0.00001585","high":"0.00001585"}"#), "{text}");
        assert!(text.contains(r#""tier":"normal""#), "{text}");
    }

    #[test]
    fn later_records_supersede_and_ties_are_ordered() {
        let a = portfolio().to_record();
        let mut b = a.clone();
        b.updated_ms += 1;
        assert!(b.supersedes(&a) && !a.supersedes(&b));
        let mut c = a.clone();
        c.next_order += 1;
        assert!(c.supersedes(&a) != a.supersedes(&c));
        assert!(!a.supersedes(&a.clone()));
    }

    #[test]
    fn undecodable_records_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(&dir.path().join("state")).unwrap();
        store
            .apply(&[StateWrite {
                tree: Tree::Risk,
                key: PORTFOLIO_KEY.as_bytes().to_vec(),
                value: Some(b"{\"cash\":1}".to_vec()),
                version: None,
            }])
            .unwrap();
        assert!(matches!(
            load_portfolio(&store),
            Err(LoadPortfolioError::Decode(_))
        ));
    }
}
