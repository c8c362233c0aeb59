//! What a mesh price message must satisfy before a node accepts and relays it.
//!
//! Checked in order, cheapest first: size, shape, origin on the allowlist, signature, content
//! (price, asset, 24-hour change: everything the `mesh_price` parser would refuse, so a
//! message no node could use is not relayed either), publish time (not beyond the skew bound
//! ahead, not older than the maximum age). Whether the
//! id was seen before is the [`super::seen`] cache's call. Each failure has a stable reason
//! label (the `reason` of `mesh_messages_rejected_total`) and a verdict for gossipsub: content
//! that can never be valid is rejected (the sender's score drops); time-dependent failures and
//! unknown origins are ignored (a slow honest relay, or one whose allowlist is newer, is not
//! punished).

use std::collections::HashMap;

use ed25519_dalek::VerifyingKey;

use super::signed::{SignatureCheck, SignatureProblem, verify_many, verify_parts};
use crate::model::parse::mesh::{MESH_VERSION, MeshPriceMessage, SignedParts, split_wire};
use crate::model::{Decimal, TokenRef};

/// Exponents a price may carry.
const EXPO_RANGE: std::ops::RangeInclusive<i32> = -30..=30;

/// Longest symbol an `asset` may be when it is not a token (the parser's bound).
const MAX_SYMBOL_LEN: usize = 64;

/// The bounds a message is checked against.
#[derive(Clone, Debug)]
pub struct Policy {
    /// Allowed operator keys by lower-case hex origin.
    pub origins: HashMap<String, VerifyingKey>,
    /// Larger messages are rejected (bytes).
    pub max_message_bytes: usize,
    /// Publish times further ahead than this are rejected (ms).
    pub max_skew_ms: i64,
    /// Older messages are rejected (ms).
    pub max_age_ms: i64,
}

impl Policy {
    /// A policy from hex public keys; a key that does not decode is returned as the error.
    pub fn new(
        origins: &[String],
        max_message_bytes: usize,
        max_skew_ms: i64,
        max_age_ms: i64,
    ) -> Result<Policy, String> {
        let mut map = HashMap::new();
        for origin in origins {
            let mut bytes = [0u8; 32];
            hex::decode_to_slice(origin, &mut bytes).map_err(|_| origin.clone())?;
            let key = VerifyingKey::from_bytes(&bytes).map_err(|_| origin.clone())?;
            // A small-order key verifies forgeries: never an operator's.
            if key.is_weak() {
                return Err(origin.clone());
            }
            map.insert(origin.to_ascii_lowercase(), key);
        }
        Ok(Policy {
            origins: map,
            max_message_bytes,
            max_skew_ms,
            max_age_ms,
        })
    }

    /// Until when a message published at `publish_ms` could still be accepted: its id must be
    /// remembered that long, and no longer.
    pub fn expiry_ms(&self, publish_ms: i64) -> i64 {
        publish_ms
            .saturating_add(self.max_age_ms)
            .saturating_add(self.max_skew_ms)
    }
}

/// Why a message is not accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Rejection {
    /// Larger than the maximum message size.
    Oversized,
    /// Not a version-1 signed message.
    Malformed,
    /// The origin is not an allowed operator.
    UnknownOrigin,
    /// The signature does not verify under the origin's key.
    BadSignature,
    /// The price is zero or negative (or its exponent out of range), or the asset or 24-hour
    /// change is not one the parser takes.
    BadPrice,
    /// Published beyond the clock-skew bound in the future.
    FutureTimestamp,
    /// Older than the maximum age.
    Stale,
    /// Seen before (also across restarts).
    Replayed,
    /// The sending peer is not on the allowlist (a refused connection).
    PeerNotAllowed,
}

impl Rejection {
    /// Every reason.
    pub const ALL: [Rejection; 9] = [
        Rejection::Oversized,
        Rejection::Malformed,
        Rejection::UnknownOrigin,
        Rejection::BadSignature,
        Rejection::BadPrice,
        Rejection::FutureTimestamp,
        Rejection::Stale,
        Rejection::Replayed,
        Rejection::PeerNotAllowed,
    ];

    /// The metric label.
    pub const fn reason(self) -> &'static str {
        match self {
            Rejection::Oversized => "oversized",
            Rejection::Malformed => "malformed",
            Rejection::UnknownOrigin => "unknown_origin",
            Rejection::BadSignature => "bad_signature",
            Rejection::BadPrice => "bad_price",
            Rejection::FutureTimestamp => "future_timestamp",
            Rejection::Stale => "stale",
            Rejection::Replayed => "replayed",
            Rejection::PeerNotAllowed => "peer_not_allowed",
        }
    }

    /// True when the sender is penalised (gossipsub `Reject`); false for `Ignore`.
    ///
    /// An unknown origin is not penalised: while a new operator is being added, nodes still on
    /// the old allowlist would otherwise graylist the honest peers relaying its prices and
    /// split the mesh. Such a message is still refused, counted and never relayed.
    pub const fn penalises(self) -> bool {
        !matches!(
            self,
            Rejection::Stale | Rejection::Replayed | Rejection::UnknownOrigin
        )
    }
}

/// Checks `wire` received at `now_ms`; the message it states if it passes.
pub fn check(wire: &[u8], now_ms: i64, policy: &Policy) -> Result<MeshPriceMessage, Rejection> {
    let (parts, msg, key) = before_signature(wire, policy)?;
    verify_parts(parts.msg.get().as_bytes(), &parts.sig, key).map_err(signature_rejection)?;
    after_signature(msg, now_ms, policy)
}

/// [`check`] for many messages received at `now_ms`, one verdict per message, in order, with
/// the signatures verified as one batch (about twice as fast as one by one). Every verdict is
/// the one [`check`] gives that message alone.
pub fn check_many(
    wires: &[&[u8]],
    now_ms: i64,
    policy: &Policy,
) -> Vec<Result<MeshPriceMessage, Rejection>> {
    let prepared: Vec<_> = wires
        .iter()
        .map(|wire| before_signature(wire, policy))
        .collect();
    let checks: Vec<SignatureCheck<'_>> = prepared
        .iter()
        .filter_map(|p| p.as_ref().ok())
        .map(|(parts, _, key)| SignatureCheck {
            msg: parts.msg.get().as_bytes(),
            sig_hex: parts.sig.as_ref(),
            key,
        })
        .collect();
    let mut signatures = verify_many(&checks).into_iter();
    prepared
        .into_iter()
        .map(|p| {
            let (_, msg, _) = p?;
            // One signature verdict per prepared message, in the same order.
            signatures
                .next()
                .unwrap_or(Err(SignatureProblem::Invalid))
                .map_err(signature_rejection)?;
            after_signature(msg, now_ms, policy)
        })
        .collect()
}

/// The checks before the signature: size, shape, version, origin.
fn before_signature<'w, 'p>(
    wire: &'w [u8],
    policy: &'p Policy,
) -> Result<(SignedParts<'w>, MeshPriceMessage, &'p VerifyingKey), Rejection> {
    if wire.len() > policy.max_message_bytes {
        return Err(Rejection::Oversized);
    }
    let parts = split_wire(wire).map_err(|_| Rejection::Malformed)?;
    let msg: MeshPriceMessage =
        serde_json::from_str(parts.msg.get()).map_err(|_| Rejection::Malformed)?;
    if msg.v != MESH_VERSION {
        return Err(Rejection::Malformed);
    }
    let key = policy
        .origins
        .get(&msg.origin.to_ascii_lowercase())
        .ok_or(Rejection::UnknownOrigin)?;
    Ok((parts, msg, key))
}

fn signature_rejection(problem: SignatureProblem) -> Rejection {
    match problem {
        SignatureProblem::Malformed => Rejection::Malformed,
        SignatureProblem::Invalid => Rejection::BadSignature,
    }
}

/// The checks after the signature: price, then publish time against `now_ms`.
fn after_signature(
    msg: MeshPriceMessage,
    now_ms: i64,
    policy: &Policy,
) -> Result<MeshPriceMessage, Rejection> {
    if msg.mantissa <= 0 || !EXPO_RANGE.contains(&msg.expo) {
        return Err(Rejection::BadPrice);
    }
    let change_ok = msg
        .change_24h
        .as_deref()
        .is_none_or(|c| Decimal::parse(c).is_ok());
    if !asset_ok(&msg.asset) || !change_ok {
        return Err(Rejection::BadPrice);
    }
    if msg.publish_ms > now_ms.saturating_add(policy.max_skew_ms) {
        return Err(Rejection::FutureTimestamp);
    }
    if msg.publish_ms < now_ms.saturating_sub(policy.max_age_ms) {
        return Err(Rejection::Stale);
    }
    Ok(msg)
}

/// True when `asset` is one the `mesh_price` parser takes: `<chain>:<address>` valid for its
/// chain, or a symbol of 1 to 64 printable ASCII characters. Something shaped like a token
/// reference whose address fails its chain's rules is not a symbol either (it would print
/// exactly like the token it failed to be).
fn asset_ok(asset: &str) -> bool {
    if let Some((chain, address)) = asset.split_once(':')
        && looks_like_chain(chain)
    {
        return TokenRef::parse(chain, address).is_ok();
    }
    !asset.is_empty()
        && asset.len() <= MAX_SYMBOL_LEN
        && asset.bytes().all(|b| b.is_ascii_graphic())
}

/// A chain slug's shape: lower-case letters, digits and dashes.
fn looks_like_chain(chain: &str) -> bool {
    !chain.is_empty()
        && chain
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::SigningKey;

    use super::super::signed::{origin_hex, sign_wire};
    use super::*;

    const NOW: i64 = 1_800_000_000_000;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn policy() -> Policy {
        Policy::new(&[origin_hex(&key(1).verifying_key())], 1024, 5_000, 60_000).unwrap()
    }

    fn message(signer: &SigningKey) -> MeshPriceMessage {
        MeshPriceMessage {
            v: 1,
            asset: "SOL".into(),
            mantissa: 14_237,
            expo: -2,
            chain: Some("solana".into()),
            publish_ms: NOW - 1_000,
            change_24h: None,
            origin: origin_hex(&signer.verifying_key()),
            seq: 1,
        }
    }

    fn verdict(
        edit: impl FnOnce(&mut MeshPriceMessage),
        signer: &SigningKey,
    ) -> Result<(), Rejection> {
        let mut msg = message(signer);
        edit(&mut msg);
        check(sign_wire(&msg, signer).as_bytes(), NOW, &policy()).map(|_| ())
    }

    #[test]
    fn every_rule() {
        let good = key(1);
        assert_eq!(verdict(|_| {}, &good), Ok(()));
        assert_eq!(verdict(|m| m.mantissa = 0, &good), Err(Rejection::BadPrice));
        assert_eq!(
            verdict(|m| m.mantissa = -5, &good),
            Err(Rejection::BadPrice)
        );
        assert_eq!(
            verdict(|m| m.publish_ms = NOW + 5_001, &good),
            Err(Rejection::FutureTimestamp)
        );
        assert_eq!(verdict(|m| m.publish_ms = NOW + 5_000, &good), Ok(()));
        assert_eq!(
            verdict(|m| m.publish_ms = NOW - 60_001, &good),
            Err(Rejection::Stale)
        );
        assert_eq!(
            verdict(|m| m.asset = "X".repeat(2000), &good),
            Err(Rejection::Oversized)
        );
        assert_eq!(verdict(|_| {}, &key(2)), Err(Rejection::UnknownOrigin));
        // Claims the allowed origin, signed by another key: a forgery.
        let forged = sign_wire(&message(&good), &key(2));
        assert_eq!(
            check(forged.as_bytes(), NOW, &policy()),
            Err(Rejection::BadSignature)
        );
        assert_eq!(check(b"{}", NOW, &policy()), Err(Rejection::Malformed));
        assert!(Rejection::BadSignature.penalises() && !Rejection::Replayed.penalises());
    }

    /// What the `mesh_price` parser makes of `wire`: true when it yields a price.
    fn parser_takes(wire: &str) -> bool {
        use crate::model::parse::parse_raw_with;
        use crate::model::{Endpoint, Record};
        let out = parse_raw_with(Endpoint::MeshPrice, "", NOW as u64, wire, 0);
        matches!(out.as_slice(), [Record::Price(_)])
    }

    /// A named change to a message.
    type Edit = (&'static str, Box<dyn Fn(&mut MeshPriceMessage)>);

    #[test]
    fn what_the_parser_refuses_is_not_relayed() {
        let good = key(1);
        let sol = "solana:So11111111111111111111111111111111111111112";
        let cases: Vec<Edit> = vec![
            ("a symbol", Box::new(|_| {})),
            ("a token", Box::new(move |m| m.asset = sol.into())),
            (
                "a change",
                Box::new(|m| m.change_24h = Some("-2.31".into())),
            ),
            ("an empty asset", Box::new(|m| m.asset = String::new())),
            ("a long symbol", Box::new(|m| m.asset = "S".repeat(65))),
            ("a space", Box::new(|m| m.asset = "SO L".into())),
            ("a control byte", Box::new(|m| m.asset = "SOL\u{7}".into())),
            ("non-ASCII", Box::new(|m| m.asset = "SOLé".into())),
            (
                "a bad address",
                Box::new(|m| m.asset = "solana:not-base58-0OIl".into()),
            ),
            (
                "a text change",
                Box::new(|m| m.change_24h = Some("lots".into())),
            ),
            (
                "an empty change",
                Box::new(|m| m.change_24h = Some(String::new())),
            ),
        ];
        let mut refused = 0;
        for (what, edit) in cases {
            let mut msg = message(&good);
            edit(&mut msg);
            let wire = sign_wire(&msg, &good);
            let relayed = check(wire.as_bytes(), NOW, &policy()).is_ok();
            assert_eq!(relayed, parser_takes(&wire), "{what}: {wire}");
            if !relayed {
                refused += 1;
                assert_eq!(
                    check(wire.as_bytes(), NOW, &policy()),
                    Err(Rejection::BadPrice),
                    "{what}"
                );
            }
        }
        assert!(refused >= 7, "only {refused} refused");
    }

    #[test]
    fn a_batch_gives_every_message_its_own_verdict() {
        let good = key(1);
        let forger = key(2);
        let mut wires: Vec<String> = Vec::new();
        for seq in 0..40u64 {
            let mut msg = message(&good);
            msg.seq = seq;
            let signer = match seq % 10 {
                3 => {
                    // Claims the allowed origin, signed by another key.
                    &forger
                }
                5 => {
                    msg.mantissa = -1;
                    &good
                }
                7 => {
                    msg.publish_ms = NOW - 90_000;
                    &good
                }
                _ => &good,
            };
            let mut wire = sign_wire(&msg, signer);
            if seq % 10 == 9 {
                wire = format!("{wire}x");
            }
            if seq == 11 {
                wire = "X".repeat(2_000);
            }
            if seq == 13 {
                wire = sign_wire(&message(&forger), &forger);
            }
            wires.push(wire);
        }
        let refs: Vec<&[u8]> = wires.iter().map(|w| w.as_bytes()).collect();
        let batch = check_many(&refs, NOW, &policy());
        let alone: Vec<_> = refs.iter().map(|w| check(w, NOW, &policy())).collect();
        assert_eq!(batch, alone);
        let count = |r: Rejection| batch.iter().filter(|v| **v == Err(r)).count();
        assert_eq!(count(Rejection::BadSignature), 3);
        assert_eq!(count(Rejection::BadPrice), 4);
        assert_eq!(count(Rejection::Stale), 4);
        assert_eq!(count(Rejection::Malformed), 4);
        assert_eq!(count(Rejection::Oversized), 1);
        assert_eq!(count(Rejection::UnknownOrigin), 1);
        assert_eq!(batch.iter().filter(|v| v.is_ok()).count(), 23);
    }

    #[test]
    fn a_small_order_key_is_no_operator() {
        // The identity point: every signature with R = identity and s = 0 verifies under it.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let weak = hex::encode(identity);
        assert_eq!(
            Policy::new(std::slice::from_ref(&weak), 1024, 5_000, 60_000).map(|_| ()),
            Err(weak)
        );
    }
}
