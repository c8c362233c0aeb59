//! The timely dataflow: ingest operators, parsing, the computations' thin wrappers, and sinks.
//!
//! Every operator here is a thin wrapper: it routes records, times and capabilities, and
//! leaves the deciding to the pure state machines in [`crate::ops`].

mod agenda;
pub mod chain;
pub mod channel;
pub mod debounce;
pub mod fusion;
pub mod graph;
pub mod ingest;
pub mod journal;
pub mod parse;
pub mod replay;
pub mod risk;
mod route;
pub mod run;
pub mod state;
pub mod stats;
pub mod trending;

pub use route::{route, tick_of};
