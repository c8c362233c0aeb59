//! The data model: envelopes as received, exact decimals, identifiers, and the parsed records.
//!
//! Nothing here does I/O or reads a clock. Parsing ([`parse`]) is a pure function from an
//! envelope to records, so a replay exercises exactly the code a live run does.

mod assets;
pub mod decimal;
mod envelope;
mod ids;
pub mod journal;
pub mod parse;
mod record;
mod source;

pub use assets::AssetMap;
pub use decimal::{Decimal, DecimalError, pow10};
pub use envelope::{Envelope, Ingest};
pub use ids::{AddressError, AddressFormat, Asset, FeedId, FeedIdError, TokenRef, address_format};
pub use record::{
    BoostEntry, BoostSnapshot, ChainTarget, ChainTx, Instrument, InvalidInput, Location,
    OnChainPrice, PricePoint, PriceSource, PriceTick, Record, SourceNotice,
};
pub use source::{Endpoint, Source};
