//! Parser stub.
use crate::model::{Envelope, Record};
use super::ParseContext;
/// stub
pub fn parse_stream_event(_env: &Envelope, _ctx: &ParseContext<'_>, _out: &mut Vec<Record>) {}
/// stub
pub fn parse_latest(_env: &Envelope, _ctx: &ParseContext<'_>, _out: &mut Vec<Record>) {}
