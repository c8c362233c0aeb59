//! Parser stub.
use crate::model::{Envelope, Record};
use super::ParseContext;
/// stub
pub fn parse(_env: &Envelope, _ctx: &ParseContext<'_>, _out: &mut Vec<Record>) {}
