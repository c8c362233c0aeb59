//! The times an operator still has to process, each holding a capability per output.
//!
//! Operators here act on a time only once every input frontier has passed it (all its data is
//! in), and in time order. Besides times with data there are timers (a debounce window's end,
//! a price going stale). Timers fire when the frontier passes them while input is still open;
//! once every input has ended, remaining timers are dropped, never fired. Sources hold their
//! final watermark until everything before it is done (see `ingest`), so the frontier always
//! passes the final watermark before it empties: a timer fires in every run or in none,
//! whatever the batching.

use std::collections::BTreeMap;

use timely::dataflow::operators::{Capability, InputCapability};
use timely::progress::frontier::MutableAntichain;

/// Pending times with one capability per output port.
pub struct Agenda {
    ports: usize,
    times: BTreeMap<u64, (Vec<Capability<u64>>, bool)>,
}

impl Agenda {
    /// An agenda for an operator with `ports` outputs.
    pub fn new(ports: usize) -> Agenda {
        Agenda {
            ports: ports.max(1),
            times: BTreeMap::new(),
        }
    }

    /// Marks the input capability's time as having data.
    pub fn data(&mut self, cap: &InputCapability<u64>) {
        let ports = self.ports;
        let slot = self
            .times
            .entry(*cap.time())
            .or_insert_with(|| ((0..ports).map(|port| cap.retain(port)).collect(), true));
        slot.1 = true;
    }

    /// Marks `time` as having data that arrived under `cap` (records that carry their own
    /// time, like differential updates, may be later than their capability).
    pub fn data_for(&mut self, time: u64, cap: &InputCapability<u64>) {
        let ports = self.ports;
        let slot = self.times.entry(time).or_insert_with(|| {
            (
                (0..ports).map(|port| cap.delayed(&time, port)).collect(),
                true,
            )
        });
        slot.1 = true;
    }

    /// Sets a timer at `time` (at or after the capabilities in `from`).
    pub fn timer(&mut self, time: u64, from: &[Capability<u64>]) {
        self.times
            .entry(time)
            .or_insert_with(|| (from.iter().map(|c| c.delayed(&time)).collect(), false));
    }

    /// The earliest time every frontier has passed, with its capabilities, removed from the
    /// agenda. Once all frontiers are empty, only times with data come out; timers are
    /// dropped.
    pub fn next(
        &mut self,
        frontiers: &[&MutableAntichain<u64>],
    ) -> Option<(u64, Vec<Capability<u64>>)> {
        let ended = frontiers.iter().all(|f| f.is_empty());
        loop {
            let entry = self.times.first_entry()?;
            let time = *entry.key();
            if frontiers.iter().any(|f| f.less_equal(&time)) {
                return None;
            }
            let (caps, has_data) = entry.remove();
            if ended && !has_data {
                continue;
            }
            return Some((time, caps));
        }
    }
}
