//! The computations, as pure state machines: no timely, no I/O, no clock.
//!
//! Each one is driven by the dataflow wrappers in [`crate::dataflow`], which hand them the
//! records of one completed time in canonical order; unit and property tests drive them
//! directly and compare them with naive recomputations.

pub mod debounce;
pub mod fusion;
pub mod keeper;
pub mod mesh;
pub mod risk;
pub mod trending;
