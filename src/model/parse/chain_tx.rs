//! Keeper outcomes: our own JSON schema for what the on-chain keeper did or saw happen to its
//! transactions, so that it is recorded and journaled like any other observation.
//!
//! One JSON object per event, tagged by `kind`:
//!
//! ```text
//! {"kind":"tx_confirmed","batches":[3],"hash":"0x…","block":42,"gas_used":61234,"fee_paid":"123"}
//! ```
//!
//! `kind` is one of [`KINDS`]; the other fields are those of the keeper's event of that kind
//! (see `chain::sink::SinkEvent`). The journal gets the event as it is, in a canonical form:
//! `kind` first, then the other fields in key order, so the same bytes always give the same
//! line.

use serde_json::{Map, Value};

use super::support::decode_object;
use super::{ParseContext, invalid};
use crate::model::{ChainTx, Envelope, Location, Record};

/// Every kind of keeper event.
pub const KINDS: [&str; 8] = [
    "tx_planned",
    "tx_submitted",
    "tx_replaced",
    "tx_confirmed",
    "tx_failed",
    "tx_skipped",
    "gas_cap_exceeded",
    "low_balance",
];

/// Parses one keeper event. Anything but a JSON object with a known `kind` (and no `t`,
/// which the journal adds) is invalid.
pub fn parse(env: &Envelope, _ctx: &ParseContext<'_>, out: &mut Vec<Record>) {
    let mut fields: Map<String, Value> = match decode_object(&env.raw) {
        Ok(fields) => fields,
        Err(err) => {
            out.push(invalid(env, err.reason(), err.location("")));
            return;
        }
    };
    let kind = match fields.remove("kind") {
        Some(Value::String(kind)) if KINDS.contains(&kind.as_str()) => kind,
        Some(Value::String(kind)) => {
            let shown = crate::model::ids::truncate_for_error(&kind);
            let reason = format!("unknown keeper event kind {shown:?}");
            out.push(invalid(env, reason, Location::Path("kind".into())));
            return;
        }
        Some(_) => {
            let reason = "keeper event kind is not a string";
            out.push(invalid(env, reason, Location::Path("kind".into())));
            return;
        }
        None => {
            out.push(invalid(env, "missing field `kind`", Location::Offset(0)));
            return;
        }
    };
    if fields.contains_key("t") {
        let reason = "a keeper event carries no `t`: the journal adds it";
        out.push(invalid(env, reason, Location::Path("t".into())));
        return;
    }
    let mut json = String::from("{\"kind\":");
    json.push_str(&Value::String(kind.clone()).to_string());
    // `Map` keeps its keys sorted (no `preserve_order`): the canonical order.
    for (key, value) in &fields {
        json.push(',');
        json.push_str(&Value::String(key.clone()).to_string());
        json.push(':');
        json.push_str(&value.to_string());
    }
    json.push('}');
    out.push(Record::ChainTx(ChainTx { kind, json }));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Endpoint, InvalidInput};

    fn run(raw: &str) -> Vec<Record> {
        super::super::parse_raw(Endpoint::ChainTx, raw, 4)
    }

    fn invalid_at(out: &[Record]) -> (&str, &Location) {
        match out {
            [
                Record::Invalid(InvalidInput {
                    endpoint: Endpoint::ChainTx,
                    seq: 4,
                    reason,
                    at,
                }),
            ] => (reason.as_str(), at),
            _ => panic!("{out:?}"),
        }
    }

    #[test]
    fn an_event_becomes_its_canonical_line() {
        let out = run(
            r#" {"kind":"tx_confirmed","batches":[3,4],"hash":"0xab","block":42,
                "gas_used":61234,"fee_paid":"123"}"#,
        );
        assert_eq!(
            out,
            [Record::ChainTx(ChainTx {
                kind: "tx_confirmed".into(),
                json: r#"{"kind":"tx_confirmed","batches":[3,4],"block":42,"fee_paid":"123","gas_used":61234,"hash":"0xab"}"#
                    .into(),
            })]
        );
        // Field order and whitespace do not matter: the same event, the same line.
        let again = run(
            r#"{"hash":"0xab","fee_paid":"123","gas_used":61234,"block":42,"batches":[3,4],"kind":"tx_confirmed"}"#,
        );
        assert_eq!(again, out);
    }

    #[test]
    fn every_kind_is_accepted() {
        for kind in KINDS {
            let out = run(&format!(r#"{{"kind":"{kind}","batches":[1]}}"#));
            assert!(
                matches!(&out[..], [Record::ChainTx(tx)] if tx.kind == kind),
                "{out:?}"
            );
        }
    }

    #[test]
    fn malformed_events_are_invalid() {
        let out = run(r#"{"kind":"tx_submitted","#);
        let (reason, at) = invalid_at(&out);
        assert!(reason.starts_with("not valid JSON"), "{reason}");
        assert!(matches!(at, Location::Offset(_)), "{at:?}");

        let out = run(r#"["tx_submitted"]"#);
        let (reason, _) = invalid_at(&out);
        assert!(reason.contains("expected a JSON object"), "{reason}");

        let out = run(r#"{"batches":[1]}"#);
        assert_eq!(invalid_at(&out).0, "missing field `kind`");

        let out = run(r#"{"kind":7}"#);
        assert_eq!(invalid_at(&out).1, &Location::Path("kind".into()));

        let out = run(r#"{"kind":"price","price":"1"}"#);
        let (reason, at) = invalid_at(&out);
        assert!(reason.contains("unknown keeper event kind"), "{reason}");
        assert_eq!(at, &Location::Path("kind".into()));

        let out = run(r#"{"t":5,"kind":"tx_failed","batches":[1],"reason":"x"}"#);
        assert_eq!(invalid_at(&out).1, &Location::Path("t".into()));

        let out = run("");
        assert!(invalid_at(&out).0.starts_with("not valid JSON"));
    }
}
