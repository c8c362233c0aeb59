//! Shared helpers of the integration tests.

pub mod anvil;
pub mod signal;
