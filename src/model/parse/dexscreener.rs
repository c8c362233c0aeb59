//! Parser stub.
use crate::model::{Envelope, Record};
use super::ParseContext;
/// stub
pub fn parse_boosts(_env: &Envelope, _ctx: &ParseContext<'_>, _out: &mut Vec<Record>) {}
/// stub
pub fn parse_pairs(_env: &Envelope, _ctx: &ParseContext<'_>, _out: &mut Vec<Record>) {}
