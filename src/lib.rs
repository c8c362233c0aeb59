//! sluice: a streaming pipeline for crypto market data.
//!
//! It ingests DEX Screener, Pyth Hermes, Birdeye and a signed peer-to-peer price mesh, runs
//! them through a [timely](https://docs.rs/timely) dataflow with embedded state, and acts:
//! trending signals, fused prices, debounced oracle push batches and a paper portfolio sized by
//! drawdown tiers. Every run can be recorded and replayed to identical outputs.
//!
//! The layers, and the one direction data flows through them:
//!
//! - [`model`]: envelopes, exact decimals, identifiers, and the pure parsers.
//! - [`ops`]: the computations as pure state machines (no timely, no I/O, no clock).
//! - [`dataflow`]: thin timely operators that route records, times and capabilities to them.
//! - [`record`], [`sinks`], [`store`]: recordings, the journal and the embedded state.
//! - [`chain`]: the on-chain side: IPyth bindings, RPC failover, the observer and the keeper's
//!   sink (the decisions are [`ops::keeper`]).
//! - [`config`]: the layered configuration.

#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod chain;
pub mod config;
pub mod dataflow;
pub mod live;
pub mod mesh;
pub mod model;
pub mod net;
pub mod ops;
pub mod record;
pub mod serve;
pub mod sinks;
pub mod sources;
pub mod store;
pub mod synth;
pub mod venue;
