//! The HTTP layer every source goes through (being written).
