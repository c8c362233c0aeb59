//! Network I/O shared by the sources: the HTTP layer (rate limits, retries, circuit breakers,
//! stale cache).

pub mod breaker;
pub mod http;
