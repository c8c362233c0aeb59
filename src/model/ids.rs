//! Identifiers: Pyth feed ids, chain-qualified token addresses (validated per chain), and assets.
//!
//! ```
//! use sluice::model::{FeedId, TokenRef};
//! let btc: FeedId = "0xE62DF6C8B4A85FE1A67DB44DC12DE5DB330F7AC66B72DC658AFEDF0F4A415B43".parse().unwrap();
//! assert_eq!(btc.to_string(), "e62df6c8b4a85fe1a67db44dc12de5db330f7ac66b72dc658afedf0f4a415b43");
//! assert!(TokenRef::parse("solana", "So11111111111111111111111111111111111111112").is_ok());
//! assert!(TokenRef::parse("solana", "So1111111111111111111111111111111111111111l").is_err());
//! assert!(TokenRef::parse("base", "0x656CF2D133187c8dF95247F2866028De71159B42").is_ok());
//! ```

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A Pyth price feed id: 32 bytes, written as 64 lower-case hex digits without `0x`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FeedId(pub [u8; 32]);

/// Why a feed id does not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not a 32-byte hex feed id: {0:?}")]
pub struct FeedIdError(pub String);

impl FromStr for FeedId {
    type Err = FeedIdError;

    /// Accepts an optional `0x` and either case, as Hermes does.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let hex_part = s
            .strip_prefix("0x")
            .or_else(|| s.strip_prefix("0X"))
            .unwrap_or(s);
        let mut bytes = [0u8; 32];
        if hex_part.len() != 64 {
            return Err(FeedIdError(truncate_for_error(s)));
        }
        hex::decode_to_slice(hex_part, &mut bytes)
            .map_err(|_| FeedIdError(truncate_for_error(s)))?;
        Ok(FeedId(bytes))
    }
}

impl fmt::Display for FeedId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; 64];
        // Infallible: the buffer is exactly twice the input length.
        if hex::encode_to_slice(self.0, &mut buf).is_ok() {
            f.write_str(std::str::from_utf8(&buf).unwrap_or_default())
        } else {
            Err(fmt::Error)
        }
    }
}

impl fmt::Debug for FeedId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FeedId({self})")
    }
}

impl Serialize for FeedId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for FeedId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// How a chain writes token addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddressFormat {
    /// Base58 that decodes to exactly 32 bytes (Solana).
    Base58Key,
    /// `0x` and 40 hex digits; mixed case must be a valid EIP-55 checksum.
    Evm,
    /// A chain whose format we do not know: accepted as an opaque, printable string.
    Opaque,
}

/// DEX Screener chain slugs whose tokens are EVM contracts.
const EVM_CHAINS: &[&str] = &[
    "ethereum",
    "bsc",
    "base",
    "arbitrum",
    "polygon",
    "avalanche",
    "optimism",
    "linea",
    "blast",
    "zksync",
    "fantom",
    "cronos",
    "celo",
    "lisk",
    "monad",
    "lightlink",
    "harmony",
    "pulsechain",
    "hyperevm",
    "sonic",
    "abstract",
    "mantle",
    "scroll",
    "metis",
    "moonbeam",
    "gnosis",
    "unichain",
    "berachain",
    "sei",
    "apechain",
    "worldchain",
    "ink",
    "soneium",
];

/// The address format of a DEX Screener chain slug.
pub fn address_format(chain: &str) -> AddressFormat {
    if chain == "solana" {
        AddressFormat::Base58Key
    } else if EVM_CHAINS.contains(&chain) {
        AddressFormat::Evm
    } else {
        AddressFormat::Opaque
    }
}

/// A token on a chain. EVM addresses are kept lower-case (the key); Solana's are case-sensitive.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TokenRef {
    /// DEX Screener chain slug (`solana`, `base`, ...).
    pub chain: Arc<str>,
    /// The canonical address.
    pub address: Arc<str>,
}

/// Why an address is refused for its chain.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    /// Not base58, or not 32 bytes once decoded.
    #[error("invalid solana address {0:?}: must be base58 of exactly 32 bytes")]
    Solana(String),
    /// Not `0x` + 40 hex digits.
    #[error("invalid EVM address {0:?}: must be 0x and 40 hex digits")]
    Evm(String),
    /// Mixed case that is not the EIP-55 checksum.
    #[error("EVM address {0:?} fails its EIP-55 checksum")]
    Checksum(String),
    /// Empty, too long, or with characters no address has.
    #[error("invalid address {0:?} on chain {1:?}")]
    Opaque(String, String),
    /// The chain slug itself is unusable.
    #[error("invalid chain id {0:?}")]
    Chain(String),
}

impl TokenRef {
    /// Validates `address` for `chain` and returns the canonical token reference.
    pub fn parse(chain: &str, address: &str) -> Result<Self, AddressError> {
        if chain.is_empty()
            || chain.len() > 32
            || !chain
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(AddressError::Chain(truncate_for_error(chain)));
        }
        let canonical = match address_format(chain) {
            AddressFormat::Base58Key => {
                let ok = (32..=44).contains(&address.len())
                    && bs58::decode(address)
                        .into_vec()
                        .is_ok_and(|v| v.len() == 32);
                if !ok {
                    return Err(AddressError::Solana(truncate_for_error(address)));
                }
                Arc::from(address)
            }
            AddressFormat::Evm => Arc::from(validate_evm(address)?.as_str()),
            AddressFormat::Opaque => {
                let ok = !address.is_empty()
                    && address.len() <= 128
                    && address.bytes().all(|b| b.is_ascii_graphic());
                if !ok {
                    return Err(AddressError::Opaque(
                        truncate_for_error(address),
                        chain.to_owned(),
                    ));
                }
                Arc::from(address)
            }
        };
        Ok(TokenRef {
            chain: Arc::from(chain),
            address: canonical,
        })
    }
}

impl TokenRef {
    /// The address as APIs want it in requests: EIP-55 checksummed on EVM chains (Birdeye
    /// asks for that), as stored elsewhere.
    pub fn request_address(&self) -> String {
        match address_format(&self.chain) {
            AddressFormat::Evm => self
                .address
                .parse::<alloy_primitives::Address>()
                .map(|a| a.to_checksum(None))
                .unwrap_or_else(|_| self.address.to_string()),
            AddressFormat::Base58Key | AddressFormat::Opaque => self.address.to_string(),
        }
    }
}

/// Checks an EVM address and returns it lower-cased.
fn validate_evm(address: &str) -> Result<String, AddressError> {
    let hex_part = address
        .strip_prefix("0x")
        .filter(|h| h.len() == 40 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(|| AddressError::Evm(truncate_for_error(address)))?;
    let has_upper = hex_part.bytes().any(|b| b.is_ascii_uppercase());
    let has_lower = hex_part.bytes().any(|b| b.is_ascii_lowercase());
    if has_upper && has_lower {
        let lower = hex_part.to_ascii_lowercase();
        let hash = alloy_primitives::keccak256(lower.as_bytes());
        let valid = hex_part.bytes().enumerate().all(|(i, c)| {
            if !c.is_ascii_alphabetic() {
                return true;
            }
            let nibble = (hash[i / 2] >> (if i % 2 == 0 { 4 } else { 0 })) & 0x0f;
            c.is_ascii_uppercase() == (nibble >= 8)
        });
        if !valid {
            return Err(AddressError::Checksum(address.to_owned()));
        }
    }
    Ok(format!("0x{}", hex_part.to_ascii_lowercase()))
}

impl fmt::Display for TokenRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.chain, self.address)
    }
}

impl fmt::Debug for TokenRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenRef({self})")
    }
}

/// What a price is a price of, as the configuration names it.
///
/// Configured assets have a name (`SOL`); anything else is keyed by its source identifier, so
/// an unmapped feed or token still has a stable, readable key.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Asset {
    /// A configured asset (`SOL`, `BTC`).
    Named(Arc<str>),
    /// An unmapped Pyth feed.
    Feed(FeedId),
    /// An unmapped token.
    Token(TokenRef),
}

impl Asset {
    /// A configured asset name.
    pub fn named(name: &str) -> Self {
        Asset::Named(Arc::from(name))
    }
}

impl fmt::Display for Asset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Asset::Named(n) => f.write_str(n),
            Asset::Feed(id) => write!(f, "pyth:{id}"),
            Asset::Token(t) => write!(f, "{t}"),
        }
    }
}

impl fmt::Debug for Asset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Asset({self})")
    }
}

/// Keeps error messages short when the offending input is huge.
pub(crate) fn truncate_for_error(s: &str) -> String {
    const MAX: usize = 80;
    if s.len() <= MAX {
        return s.to_owned();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feed_ids_accept_hermes_spellings() {
        let plain = "ff61491a931112ddf1bd8147cd1b641375f79f5825126d665480874634fd0ace";
        let a: FeedId = plain.parse().unwrap();
        let b: FeedId = format!("0x{}", plain.to_uppercase()).parse().unwrap();
        assert_eq!(a, b);
        assert_eq!(a.to_string(), plain);
        assert!("ff61".parse::<FeedId>().is_err());
        assert!(format!("{}zz", &plain[..62]).parse::<FeedId>().is_err());
    }

    #[test]
    fn solana_addresses_must_decode_to_32_bytes() {
        for ok in [
            "So11111111111111111111111111111111111111112",
            "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v",
            "CASi45ub7Qe4ZE36UT5G6cU4ud8Fhhe4deS4F3cwpump",
            "11111111111111111111111111111111",
        ] {
            assert!(TokenRef::parse("solana", ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "So1111111111111111111111111111111111111111O",
            "0x656CF2D133187c8dF95247F2866028De71159B42",
            "abc",
            "so11111111111111111111111111111111111111112xxxxxxxxxxxxxxxxxx",
        ] {
            assert!(TokenRef::parse("solana", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn evm_addresses_are_checksummed_and_lowercased() {
        let t = TokenRef::parse("base", "0x656CF2D133187c8dF95247F2866028De71159B42").unwrap();
        assert_eq!(&*t.address, "0x656cf2d133187c8df95247f2866028de71159b42");
        assert!(TokenRef::parse("base", "0x656cf2d133187c8df95247f2866028de71159b42").is_ok());
        assert!(matches!(
            TokenRef::parse("base", "0x656CF2D133187c8dF95247F2866028De71159b42"),
            Err(AddressError::Checksum(_))
        ));
        assert!(TokenRef::parse("ethereum", "0x1234").is_err());
        assert!(TokenRef::parse("ethereum", "656CF2D133187c8dF95247F2866028De71159B42").is_err());
    }

    #[test]
    fn unknown_chains_pass_printable_addresses() {
        assert!(TokenRef::parse("sui", "0x2::sui::SUI").is_ok());
        assert!(TokenRef::parse("ton", "bad address").is_err());
        assert!(TokenRef::parse("Not A Chain", "x").is_err());
    }
}
