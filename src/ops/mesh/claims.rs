//! Whose turn it is to fetch Birdeye in a window: the providers' bookkeeping of who fetched and
//! who claimed a window, with no I/O and no clock (times are passed in).
//!
//! Providers are ranked per window by [`super::rendezvous`]; the one ranked `r` may fetch `r`
//! coordination windows into the window. Before fetching, a provider claims the window
//! (`fetching`) and repeats the claim while its fetch runs; when it has published it says
//! `fetched`. A stand-by never fetches a window that is fetched, nor while another provider's
//! claim is live (claimed less than a coordination window ago): a slow Birdeye (retries can
//! take minutes) then still costs one call per window. When a claim lapses (the claimer died or
//! gave up), the stand-bys take over in rank order, starting with the one ranked after the
//! last claimer, one coordination window apart from the lapse.

use std::collections::{BTreeMap, BTreeSet};

use super::rendezvous;

/// Windows remembered (fetched ones, claims): old ones are dropped past this many.
const KEEP_WINDOWS: usize = 16;

/// What a provider should do about a window now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Turn {
    /// Someone (maybe this provider) fetched it, or this provider already tried.
    Done,
    /// Another provider's claim is live: wait for its `fetched`, or for the claim to lapse.
    Defer,
    /// Not yet: this provider's turn comes at this time (ms), if nobody acts before.
    Wait(i64),
    /// Fetch now (claim first).
    Fetch,
}

/// The fetched windows and live claims one provider knows of.
#[derive(Clone, Debug, Default)]
pub struct Coordination {
    coordination_ms: i64,
    done: BTreeSet<i64>,
    /// Window → claimer → when it last claimed (ms, its clock).
    claims: BTreeMap<i64, BTreeMap<String, i64>>,
}

impl Coordination {
    /// Bookkeeping for stand-by delays of `coordination_ms` per rank.
    pub fn new(coordination_ms: i64) -> Coordination {
        Coordination {
            coordination_ms: coordination_ms.max(1),
            ..Coordination::default()
        }
    }

    /// `window` was fetched (or this provider tried it): nobody fetches it again.
    pub fn done(&mut self, window: i64) {
        self.done.insert(window);
        while self.done.len() > KEEP_WINDOWS {
            self.done.pop_first();
        }
    }

    /// True when `window` was fetched or tried.
    pub fn is_done(&self, window: i64) -> bool {
        self.done.contains(&window)
    }

    /// `claimer` claimed `window` at `at_ms`; the latest claim of each claimer counts.
    pub fn claim(&mut self, window: i64, claimer: &str, at_ms: i64) {
        let claims = self.claims.entry(window).or_default();
        let last = claims.entry(claimer.to_owned()).or_insert(at_ms);
        *last = (*last).max(at_ms);
        while self.claims.len() > KEEP_WINDOWS {
            self.claims.pop_first();
        }
    }

    /// What `me`, one of the `live` providers, should do about `window` (which starts at
    /// `window_start`) at `now`.
    pub fn turn(&self, me: &str, live: &[&str], window: i64, window_start: i64, now: i64) -> Turn {
        if self.is_done(window) {
            return Turn::Done;
        }
        let coordination = self.coordination_ms;
        let order = rendezvous::order(live, window);
        let Some(rank) = order.iter().position(|p| *p == me) else {
            return Turn::Defer;
        };
        let mut deadline = window_start.saturating_add(rank as i64 * coordination);
        let claims = self
            .claims
            .get(&window)
            .into_iter()
            .flatten()
            .filter(|(claimer, _)| claimer.as_str() != me);
        let mut lapsed_at = None;
        for (_, at) in claims.clone() {
            let until = at.saturating_add(coordination);
            if until > now {
                return Turn::Defer;
            }
            lapsed_at = lapsed_at.max(Some(until));
        }
        if let Some(lapsed_at) = lapsed_at {
            // After a lapse: the providers ranked after the last claimer first, then the
            // earlier ones that did not claim; lapsed claimers are out.
            let claimed = |p: &str| claims.clone().any(|(c, _)| c == p);
            let last = order.iter().rposition(|p| claimed(p));
            let (before, after) = match last {
                Some(i) => (&order[..i], &order[i + 1..]),
                None => (&order[..0], &order[..]),
            };
            let position = after
                .iter()
                .chain(before)
                .filter(|p| !claimed(p))
                .position(|p| *p == me);
            let Some(position) = position else {
                return Turn::Defer;
            };
            deadline = deadline.max(lapsed_at.saturating_add(position as i64 * coordination));
        }
        if now >= deadline {
            Turn::Fetch
        } else {
            Turn::Wait(deadline)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COORD: i64 = 1_000;
    const W: i64 = 3;
    const START: i64 = 30_000;

    /// The providers of window `W` in rank order.
    fn ranked() -> Vec<&'static str> {
        rendezvous::order(&["pa", "pb", "pc"], W)
    }

    #[test]
    fn without_claims_each_waits_its_rank() {
        let c = Coordination::new(COORD);
        let order = ranked();
        for (rank, me) in order.iter().enumerate() {
            let at = START + rank as i64 * COORD;
            assert_eq!(c.turn(me, &order, W, START, at), Turn::Fetch, "{me}");
            if rank > 0 {
                assert_eq!(c.turn(me, &order, W, START, at - 1), Turn::Wait(at));
            }
        }
        let mut c = c;
        c.done(W);
        assert_eq!(
            c.turn(order[1], &order, W, START, START + 9_999),
            Turn::Done
        );
    }

    #[test]
    fn a_live_claim_holds_every_stand_by_however_slow_the_fetch() {
        let mut c = Coordination::new(COORD);
        let order = ranked();
        // The first claims at the start and keeps claiming while its fetch is slow.
        for t in (0..20).map(|k| START + k * 300) {
            c.claim(W, order[0], t);
            for me in &order[1..] {
                assert_eq!(
                    c.turn(me, &order, W, START, t + 200),
                    Turn::Defer,
                    "{me} at {t}"
                );
            }
        }
        // Its own claims do not hold it back (it is fetching anyway).
        assert_eq!(c.turn(order[0], &order, W, START, START), Turn::Fetch);
    }

    #[test]
    fn a_lapsed_claim_hands_over_in_rank_order() {
        let mut c = Coordination::new(COORD);
        let order = ranked();
        // The first claims, then falls silent at +1.5 s: its claim lapses at +2.5 s.
        c.claim(W, order[0], START);
        c.claim(W, order[0], START + 1_500);
        let lapse = START + 2_500;
        assert_eq!(c.turn(order[1], &order, W, START, lapse - 1), Turn::Defer);
        assert_eq!(c.turn(order[1], &order, W, START, lapse), Turn::Fetch);
        assert_eq!(
            c.turn(order[2], &order, W, START, lapse),
            Turn::Wait(lapse + COORD)
        );
        // The second claims in turn and dies too: the third goes next, one window later.
        c.claim(W, order[1], lapse);
        assert_eq!(c.turn(order[2], &order, W, START, lapse + 500), Turn::Defer);
        let lapse2 = lapse + COORD;
        assert_eq!(c.turn(order[2], &order, W, START, lapse2), Turn::Fetch);
    }

    #[test]
    fn a_claim_by_a_stand_by_whose_elders_are_dead_passes_on_past_them() {
        let mut c = Coordination::new(COORD);
        let order = ranked();
        // The first never claims (dead, not yet known to be); the second claims and lapses.
        c.claim(W, order[1], START + COORD);
        let lapse = START + 2 * COORD;
        // The third is next, not the dead first.
        assert_eq!(c.turn(order[2], &order, W, START, lapse - 1), Turn::Defer);
        assert_eq!(c.turn(order[2], &order, W, START, lapse), Turn::Fetch);
        assert_eq!(
            c.turn(order[0], &order, W, START, lapse),
            Turn::Wait(lapse + COORD)
        );
    }

    #[test]
    fn memory_is_bounded() {
        let mut c = Coordination::new(COORD);
        for w in 0..100 {
            c.done(w);
            c.claim(w, "pa", w);
        }
        assert!(c.done.len() <= KEEP_WINDOWS && c.claims.len() <= KEEP_WINDOWS);
        assert!(c.is_done(99) && !c.is_done(0));
    }
}
