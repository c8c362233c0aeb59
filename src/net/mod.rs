//! Network I/O shared by the sources: the HTTP layer (rate limits, retries, circuit breakers,
//! stale cache).

pub mod breaker;
mod cache;
mod error;
pub mod http;
mod limiter;
mod retry_after;
