//! Deterministic randomness for the generator: ChaCha8 streams and small helpers of our own.
//!
//! Only `ChaCha8Rng::seed_from_u64` and `RngCore::next_u64` are used. Ranges, coin flips and
//! normal-ish deviates are computed here with integer arithmetic, so the output cannot change
//! when `rand`'s distribution algorithms do, and is the same on every machine.

use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};

/// One independent stream of random numbers.
///
/// Every part of the generator draws from its own stream (same seed, different stream
/// number), so adding a draw in one part does not shift the numbers every other part sees.
pub(crate) struct Rng(ChaCha8Rng);

/// The standard deviation of the sum of four uniform `u32` values: `2^32 / sqrt(3)`.
const SUM4_SIGMA: i128 = 2_479_700_525;

impl Rng {
    /// Stream `stream` of `seed`.
    pub(crate) fn new(seed: u64, stream: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(stream);
        Rng(rng)
    }

    /// 64 random bits.
    pub(crate) fn u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Uniform in `0..n` (0 when `n` is 0), by multiply-and-shift: no division, no loop.
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform index into a collection of `len` items (0 when empty).
    pub(crate) fn index(&mut self, len: usize) -> usize {
        self.below(len as u64) as usize
    }

    /// Uniform in `lo..=hi` (`lo` when the range is empty).
    pub(crate) fn range(&mut self, lo: i64, hi: i64) -> i64 {
        if hi <= lo {
            return lo;
        }
        let span = (hi as i128 - lo as i128 + 1) as u64;
        (lo as i128 + i128::from(self.below(span))) as i64
    }

    /// Uniform in `lo..=hi` for unsigned values.
    pub(crate) fn range_u(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            return lo;
        }
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `per_million / 1_000_000`.
    pub(crate) fn chance(&mut self, per_million: u64) -> bool {
        self.below(1_000_000) < per_million
    }

    /// `base` moved by at most `spread` either way (never below zero).
    pub(crate) fn jitter(&mut self, base: u64, spread: u64) -> u64 {
        let offset = self.below(2 * spread + 1);
        (base + offset).saturating_sub(spread)
    }

    /// A normal-ish deviate with standard deviation `sigma` (the Irwin–Hall sum of four
    /// uniforms, rescaled: bell-shaped, bounded at about ±3.5 sigma, integer-only).
    pub(crate) fn normal(&mut self, sigma: i64) -> i64 {
        let (a, b) = (self.u64(), self.u64());
        let sum = i128::from(a as u32)
            + i128::from((a >> 32) as u32)
            + i128::from(b as u32)
            + i128::from((b >> 32) as u32);
        let centered = sum - (2i128 << 32);
        (centered * i128::from(sigma) / SUM4_SIGMA) as i64
    }

    /// 32 random bytes.
    pub(crate) fn bytes32(&mut self) -> [u8; 32] {
        let mut out = [0u8; 32];
        for chunk in out.chunks_exact_mut(8) {
            chunk.copy_from_slice(&self.u64().to_le_bytes());
        }
        out
    }

    /// 20 random bytes (an EVM address).
    pub(crate) fn bytes20(&mut self) -> [u8; 20] {
        let mut out = [0u8; 20];
        let full = self.bytes32();
        out.copy_from_slice(&full[..20]);
        out
    }

    /// An item of `items`, uniformly (`None` when empty).
    pub(crate) fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        let i = self.index(items.len());
        items.get(i)
    }

    /// An index drawn with the given relative weights (0 when they are all zero).
    pub(crate) fn weighted(&mut self, weights: &[u64]) -> usize {
        let total: u64 = weights.iter().sum();
        let mut at = self.below(total);
        for (i, w) in weights.iter().enumerate() {
            if at < *w {
                return i;
            }
            at -= w;
        }
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_reproducible_and_independent() {
        let a: Vec<u64> = (0..4)
            .map({
                let mut r = Rng::new(7, 1);
                move |_| r.u64()
            })
            .collect();
        let b: Vec<u64> = (0..4)
            .map({
                let mut r = Rng::new(7, 1);
                move |_| r.u64()
            })
            .collect();
        let c: Vec<u64> = (0..4)
            .map({
                let mut r = Rng::new(7, 2);
                move |_| r.u64()
            })
            .collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn helpers_stay_in_range() {
        let mut r = Rng::new(1, 0);
        for _ in 0..10_000 {
            assert!((-3..=5).contains(&r.range(-3, 5)));
            assert!(r.below(10) < 10);
            assert!((90..=110).contains(&r.jitter(100, 10)));
        }
        let n = 20_000;
        let sum_sq: i128 = (0..n).map(|_| i128::from(r.normal(1000)).pow(2)).sum();
        let sigma = ((sum_sq / n) as f64).sqrt();
        assert!((950.0..1050.0).contains(&sigma), "{sigma}");
    }
}
