//! The update data MockPyth's `updatePriceFeeds` accepts, so synthetic Hermes events can be
//! pushed to a local MockPyth contract as they are.
//!
//! Each element is `abi.encode(PythStructs.PriceFeed, uint64 prevPublishTime)`: 320 bytes,
//! exactly what MockPyth's `createPriceFeedUpdateData` returns. Real Hermes binaries (PNAU
//! accumulator updates) would not verify on MockPyth, and MockPyth's bytes would not verify on
//! the real contract; a synthetic recording is for the mock.

use alloy_primitives::{B256, U256};
use alloy_sol_types::SolValue;

alloy_sol_types::sol! {
    /// `PythStructs.Price`: a price with its confidence, exponent and publish time.
    #[derive(Debug, PartialEq, Eq)]
    struct Price {
        /// Price mantissa.
        int64 price;
        /// Confidence interval, same exponent.
        uint64 conf;
        /// Exponent: the value is `price × 10^expo`.
        int32 expo;
        /// Publish time, Unix seconds.
        uint256 publishTime;
    }

    /// `PythStructs.PriceFeed`: a feed id with its price and EMA price.
    #[derive(Debug, PartialEq, Eq)]
    struct PriceFeed {
        /// The Pyth feed id.
        bytes32 id;
        /// The price.
        Price price;
        /// The exponentially-weighted moving average price.
        Price emaPrice;
    }
}

/// Length of one update element: nine words of `PriceFeed` and one of `prevPublishTime`.
pub const UPDATE_LEN: usize = 320;

/// The values of one MockPyth update, in the order of `createPriceFeedUpdateData`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MockUpdate {
    /// The feed id.
    pub id: [u8; 32],
    /// Price mantissa.
    pub price: i64,
    /// Confidence.
    pub conf: u64,
    /// Exponent of price, conf, EMA price and EMA conf.
    pub expo: i32,
    /// EMA price mantissa.
    pub ema_price: i64,
    /// EMA confidence.
    pub ema_conf: u64,
    /// Publish time of both prices, seconds.
    pub publish_time: u64,
    /// The feed's previous publish time, seconds.
    pub prev_publish_time: u64,
}

impl MockUpdate {
    /// `abi.encode(PriceFeed, uint64 prevPublishTime)`: the 320 bytes MockPyth accepts.
    pub fn encode(&self) -> Vec<u8> {
        let publish_time = U256::from(self.publish_time);
        let feed = PriceFeed {
            id: B256::from(self.id),
            price: Price {
                price: self.price,
                conf: self.conf,
                expo: self.expo,
                publishTime: publish_time,
            },
            emaPrice: Price {
                price: self.ema_price,
                conf: self.ema_conf,
                expo: self.expo,
                publishTime: publish_time,
            },
        };
        (feed, self.prev_publish_time).abi_encode_params()
    }

    /// Decodes an element back (for checks and tools).
    pub fn decode(data: &[u8]) -> Option<MockUpdate> {
        let (feed, prev) = <(PriceFeed, u64)>::abi_decode_params(data).ok()?;
        Some(MockUpdate {
            id: feed.id.0,
            price: feed.price.price,
            conf: feed.price.conf,
            expo: feed.price.expo,
            ema_price: feed.emaPrice.price,
            ema_conf: feed.emaPrice.conf,
            publish_time: u64::try_from(feed.price.publishTime).ok()?,
            prev_publish_time: prev,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_320_bytes_and_round_trips() {
        let update = MockUpdate {
            id: [0xe6; 32],
            price: -9_712_345_678_901,
            conf: 4_512_345_678,
            expo: -8,
            ema_price: 9_709_876_543_210,
            ema_conf: 4_398_765_432,
            publish_time: 1_795_248_001,
            prev_publish_time: 1_795_248_000,
        };
        let bytes = update.encode();
        assert_eq!(bytes.len(), UPDATE_LEN);
        // Word 0 is the id; word 1 the sign-extended int64 price; word 9 the prev time.
        assert_eq!(bytes[..32], [0xe6; 32]);
        assert!(bytes[32..56].iter().all(|b| *b == 0xff));
        assert_eq!(bytes[312..320], 1_795_248_000u64.to_be_bytes());
        assert_eq!(MockUpdate::decode(&bytes), Some(update));
    }
}
