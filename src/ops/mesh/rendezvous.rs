//! Which provider fetches Birdeye in a window: rendezvous (highest-random-weight) hashing of
//! (peer id, window), so every node computes the same order with no coordinator, and a
//! provider's place changes from window to window.

use sha2::{Digest, Sha256};

/// The fetch window holding `now_ms`.
pub fn window(now_ms: i64, interval_ms: i64) -> i64 {
    now_ms.div_euclid(interval_ms.max(1))
}

/// `providers` (peer ids as text) in this window's order: the first fetches, the others stand
/// by in turn.
pub fn order<'a>(providers: &[&'a str], window: i64) -> Vec<&'a str> {
    let mut ranked: Vec<([u8; 32], &str)> = providers
        .iter()
        .map(|p| {
            let mut h = Sha256::new();
            h.update(p.as_bytes());
            h.update(window.to_be_bytes());
            (h.finalize().into(), *p)
        })
        .collect();
    ranked.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
    ranked.dedup_by(|a, b| a.1 == b.1);
    ranked.into_iter().map(|(_, p)| p).collect()
}

/// This provider's place in the window's order (0 = fetches), or `None` if it is not listed.
pub fn rank(me: &str, providers: &[&str], window: i64) -> Option<usize> {
    order(providers, window).iter().position(|p| *p == me)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_order_everywhere_and_it_rotates() {
        let a = order(&["p1", "p2", "p3"], 7);
        let b = order(&["p3", "p1", "p2", "p1"], 7);
        assert_eq!(a, b);
        assert_eq!(a.len(), 3);
        let firsts: std::collections::BTreeSet<&str> =
            (0..64).map(|w| order(&["p1", "p2", "p3"], w)[0]).collect();
        assert_eq!(firsts.len(), 3, "every provider leads some window");
        assert_eq!(window(59_999, 30_000), 1);
        assert_eq!(rank("p9", &["p1"], 0), None);
    }
}
