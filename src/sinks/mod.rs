//! Sinks: where completed, canonically ordered output goes (journal file, state store).

pub mod journal;
pub mod store;
