//! The price mesh's decisions, pure: what a message must satisfy, which ids count as seen,
//! and which provider fetches in a window (its rank, and the claims of the others). No I/O and no clock: times are passed in.

pub mod claims;
pub mod rendezvous;
pub mod rules;
pub mod seen;
pub mod signed;
