//! The venue: a loopback server that plays a recording back as the real APIs (being written).
