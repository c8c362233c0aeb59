//! The market's script: when the rally, the crash, the fast climber, the outages, the gaps and
//! the deliberate faults happen, laid out as fractions of the run so short runs have them too.

use super::rng::Rng;

/// A half-open interval of ingest times, `from..to` in ms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Window {
    /// First ms inside.
    pub from: u64,
    /// First ms after.
    pub to: u64,
}

impl Window {
    /// True when `t` is inside.
    pub(crate) fn contains(&self, t: u64) -> bool {
        self.from <= t && t < self.to
    }

    /// Where `t` is, from 0 (at or before `from`) to 1_000_000 (at or after `to`).
    pub(crate) fn progress_ppm(&self, t: u64) -> i64 {
        if t <= self.from || self.to <= self.from {
            return if t >= self.to { 1_000_000 } else { 0 };
        }
        if t >= self.to {
            return 1_000_000;
        }
        ((t - self.from) as i128 * 1_000_000 / (self.to - self.from) as i128) as i64
    }
}

/// When everything happens.
#[derive(Clone, Debug)]
pub(crate) struct Timeline {
    /// First ms of the run.
    pub start: u64,
    /// End of the run: nothing at or after it is generated.
    pub end: u64,
    /// Meme tokens rally mildly.
    pub rally: Window,
    /// Meme tokens crash by 30–50 %.
    pub crash: Window,
    /// Then win back part of the loss.
    pub recovery: Window,
    /// The fast climber buys boosts until it is in the top 3.
    pub climb: Window,
    /// A top token's boosts expire in bulk: it moves down.
    pub faller_at: u64,
    /// No Hermes stream events (the REST fallback polls instead), when faults are on.
    pub hermes_outage: Option<Window>,
    /// No DEX Screener polls succeed, when faults are on.
    pub dex_gap: Option<Window>,
    /// The second mesh provider starts publishing.
    pub mesh_second_from: u64,
    /// From here the second mesh provider's next few messages are 5 % off, when faults are on.
    pub discrepancy_from: u64,
    /// The other keeper's first push (so nothing is on chain before it lands).
    pub keeper_from: u64,
}

impl Timeline {
    /// The script for a run of `minutes` from `start`.
    pub(crate) fn new(start: u64, minutes: u32, faults: bool, rng: &mut Rng) -> Self {
        let total = u64::from(minutes) * 60_000;
        let end = start + total;
        let at = |permille: u64| start + total * permille / 1000;
        let crash_len = (total / 8).clamp(20_000, 100_000).min(total / 5);
        let crash_from = at(570 + rng.below(30));
        let crash = Window {
            from: crash_from,
            to: crash_from + crash_len,
        };
        let recovery = Window {
            from: crash.to,
            to: (crash.to + (total / 5).clamp(30_000, 180_000)).min(end.max(crash.to)),
        };
        let climb_from = at(180);
        let climb = Window {
            from: climb_from,
            to: climb_from + (total / 10).clamp(15_000, 50_000),
        };
        let outage_from = at(420);
        let dex_gap_from = at(300);
        Timeline {
            start,
            end,
            rally: Window {
                from: at(100),
                to: at(500),
            },
            crash,
            recovery,
            climb,
            faller_at: at(400),
            hermes_outage: faults.then(|| Window {
                from: outage_from,
                to: outage_from + (total / 6).min(20_000),
            }),
            dex_gap: faults.then(|| Window {
                from: dex_gap_from,
                to: dex_gap_from + (total / 6).min(30_000),
            }),
            mesh_second_from: at(200),
            discrepancy_from: at(450),
            keeper_from: start + 25_000,
        }
    }
}

/// The deliberate faults, each of which costs exactly one invalid record when parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fault {
    /// A Hermes stream event cut short mid-JSON.
    HermesTruncated,
    /// A Hermes stream event with a negative price for one feed.
    HermesNegative,
    /// A boost list item whose Solana address is not base58.
    BoostBadAddress,
    /// A DEX Screener pair with `"priceUsd": "abc"`.
    PairBadPrice,
    /// A Birdeye 429 body.
    BirdeyeRateLimited,
    /// A Cloudflare HTML error page instead of a DEX Screener tokens body.
    DexHtml,
    /// A mesh message of an unknown schema version.
    MeshV2,
    /// A chain read failing with an error other than `PriceFeedNotFound`.
    ChainUnknownError,
    /// An empty Birdeye body.
    EmptyBirdeye,
    /// An empty DEX Screener boosts body.
    EmptyBoosts,
    /// An empty chain read body.
    EmptyChain,
}

const KINDS: usize = 11;

impl Fault {
    fn index(self) -> usize {
        self as usize
    }
}

/// When each fault is due: a fault fires on the first payload of its kind at or after its time.
pub(crate) struct Faults {
    due: [Vec<u64>; KINDS],
    next: [usize; KINDS],
}

impl Faults {
    /// `per_kind` occurrences of each fault (the empty bodies share theirs between three
    /// endpoints), spread over the run; none when `enabled` is false.
    pub(crate) fn new(tl: &Timeline, enabled: bool, per_kind: u64, rng: &mut Rng) -> Self {
        let mut due: [Vec<u64>; KINDS] = Default::default();
        if enabled && per_kind > 0 {
            let total = tl.end - tl.start;
            let times = |rng: &mut Rng| -> Vec<u64> {
                (0..per_kind)
                    .map(|j| {
                        // Somewhere in the middle 60 % of the j-th slice of the run.
                        let permille = 200 + rng.below(600);
                        tl.start + total * (j * 1000 + permille) / (per_kind * 1000)
                    })
                    .collect()
            };
            // Every kind before the empty bodies has its own times.
            for slot in due.iter_mut().take(Fault::EmptyBirdeye.index()) {
                *slot = times(rng);
            }
            let empty = times(rng);
            for (j, t) in empty.into_iter().enumerate() {
                let kind = match j % 3 {
                    0 => Fault::EmptyBirdeye,
                    1 => Fault::EmptyBoosts,
                    _ => Fault::EmptyChain,
                };
                if let Some(list) = due.get_mut(kind.index()) {
                    list.push(t);
                }
            }
        }
        Faults {
            due,
            next: [0; KINDS],
        }
    }

    /// True (once) when a `fault` is due at `t`: the payload being built should carry it.
    pub(crate) fn take(&mut self, fault: Fault, t: u64) -> bool {
        let i = fault.index();
        let (Some(due), Some(next)) = (self.due.get(i), self.next.get_mut(i)) else {
            return false;
        };
        match due.get(*next) {
            Some(at) if *at <= t => {
                *next += 1;
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_and_progress() {
        let w = Window { from: 100, to: 200 };
        assert!(w.contains(100) && !w.contains(200));
        assert_eq!(w.progress_ppm(50), 0);
        assert_eq!(w.progress_ppm(150), 500_000);
        assert_eq!(w.progress_ppm(250), 1_000_000);
    }

    #[test]
    fn short_runs_fit_their_script() {
        let mut rng = Rng::new(7, 0);
        let tl = Timeline::new(0, 2, true, &mut rng);
        assert!(tl.crash.to <= tl.end && tl.climb.to < tl.crash.from);
        assert!(tl.hermes_outage.is_some_and(|w| w.to < tl.end));
        let mut faults = Faults::new(&tl, true, 1, &mut rng);
        assert!(!faults.take(Fault::MeshV2, 0));
        assert!(faults.take(Fault::MeshV2, tl.end));
        assert!(!faults.take(Fault::MeshV2, tl.end));
    }
}
