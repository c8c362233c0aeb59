//! The timely dataflow: ingest operators, parsing, the computations' thin wrappers, and sinks.
//!
//! Every operator here is a thin wrapper: it routes records, times and capabilities, and
//! leaves the deciding to the pure state machines in [`crate::ops`].

pub mod graph;
pub mod ingest;
pub mod journal;
pub mod parse;
pub mod replay;
mod route;
pub mod run;
pub mod state;
pub mod stats;

pub use route::{route, tick_of};
