//! Mesh providers: peers that republish the prices they fetch as signed mesh messages.
//!
//! Signatures are random hex of the right length: the network layer verifies them before an
//! envelope exists, so a recording only needs their shape.

use crate::model::parse::mesh::{MESH_VERSION, MeshPriceMessage, to_wire};

use super::rng::Rng;
use super::text::{pow10, push_fixed, push_hex};

/// One publishing peer.
pub(crate) struct Provider {
    origin: String,
    seq: u64,
    rng: Rng,
}

/// What one message states.
pub(crate) struct Quote {
    /// `SOL` or `<chain>:<address>`.
    pub asset: String,
    /// Price mantissa (any number of digits; rounded to 10 significant ones).
    pub mantissa: i128,
    /// Price exponent.
    pub expo: i32,
    /// Publish time, ms.
    pub publish_ms: u64,
    /// 24 h change, hundredths of a percent.
    pub change_bp: i128,
}

impl Provider {
    /// A provider with an origin key drawn from `rng`.
    pub(crate) fn new(mut rng: Rng) -> Provider {
        let mut origin = Vec::with_capacity(64);
        push_hex(&mut origin, &rng.bytes32());
        Provider {
            origin: String::from_utf8(origin).unwrap_or_default(),
            seq: 0,
            rng,
        }
    }

    /// A uniform draw in `lo..=hi` from this provider's stream.
    pub(crate) fn range(&mut self, lo: i64, hi: i64) -> i64 {
        self.rng.range(lo, hi)
    }

    /// The wire bytes of a message stating `quote`; with `version_two`, a message of a schema
    /// version no parser here understands (a deliberate fault).
    pub(crate) fn message(&mut self, quote: Quote, version_two: bool) -> Vec<u8> {
        self.seq += 1;
        let (mantissa, expo) = round_to_i64(quote.mantissa, quote.expo, 10);
        let mut change = Vec::with_capacity(8);
        push_fixed(&mut change, quote.change_bp, 2);
        let msg = MeshPriceMessage {
            v: if version_two { 2 } else { MESH_VERSION },
            asset: quote.asset,
            mantissa,
            expo,
            chain: Some("solana".into()),
            publish_ms: i64::try_from(quote.publish_ms).unwrap_or(i64::MAX),
            change_24h: Some(String::from_utf8(change).unwrap_or_default()),
            origin: self.origin.clone(),
            seq: self.seq,
        };
        let mut sig = Vec::with_capacity(128);
        push_hex(&mut sig, &self.rng.bytes32());
        push_hex(&mut sig, &self.rng.bytes32());
        to_wire(&msg, &String::from_utf8(sig).unwrap_or_default()).into_bytes()
    }
}

/// `m × 10^expo` with at most `sig` significant digits, as an i64 mantissa.
fn round_to_i64(m: i128, expo: i32, sig: u32) -> (i64, i32) {
    let (mut m, mut expo) = (m.max(1), expo);
    let digits = m.unsigned_abs().checked_ilog10().unwrap_or(0) + 1;
    if digits > sig {
        let drop = digits - sig;
        let div = pow10(drop);
        m = (m + div / 2) / div;
        expo += drop as i32;
    }
    (i64::try_from(m).unwrap_or(i64::MAX), expo)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mantissas_are_rounded() {
        assert_eq!(
            round_to_i64(142_371_188_204_552, -12, 10),
            (1_423_711_882, -7)
        );
        assert_eq!(round_to_i64(1585, -8, 10), (1585, -8));
    }
}
