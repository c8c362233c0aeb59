//! Signing and verifying mesh price messages with an operator's ed25519 key.
//!
//! The signature covers the exact bytes of `msg` as sent, so a verifier never re-serializes:
//! it takes the signed bytes back out of the wire message with [`split_wire`].

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey, verify_batch};
use sha2::{Digest, Sha256};

use crate::model::parse::mesh::{MeshPriceMessage, split_wire, to_wire};

/// A message's id: sha256 of the signed `msg` bytes, the same on every node and build. Only
/// the signed bytes count: a peer re-wrapping a seen message (other whitespace around it, the
/// signature's hex in upper case) must not make it new again. A wire message that does not
/// split is hashed whole (it is rejected anyway).
pub fn message_id(wire: &[u8]) -> [u8; 32] {
    match split_wire(wire) {
        Ok(parts) => Sha256::digest(parts.msg.get().as_bytes()).into(),
        Err(_) => Sha256::digest(wire).into(),
    }
}

/// The lower-case hex of an operator's public key: a message's `origin`.
pub fn origin_hex(key: &VerifyingKey) -> String {
    hex::encode(key.to_bytes())
}

/// The wire bytes of `msg` signed by `key`.
pub fn sign_wire(msg: &MeshPriceMessage, key: &SigningKey) -> String {
    let json = msg.to_json();
    let sig = key.sign(json.as_bytes());
    to_wire(msg, &hex::encode(sig.to_bytes()))
}

/// Why a wire message's signature does not hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignatureProblem {
    /// Not `{"msg":…,"sig":…}`.
    Malformed,
    /// The signature is not 64 bytes of hex, or does not verify.
    Invalid,
}

/// Checks that `wire`'s signature verifies under `key` (strict verification).
pub fn verify_wire(wire: &[u8], key: &VerifyingKey) -> Result<(), SignatureProblem> {
    let parts = split_wire(wire).map_err(|_| SignatureProblem::Malformed)?;
    verify_parts(parts.msg.get().as_bytes(), &parts.sig, key)
}

/// Checks that `sig_hex` signs `msg` under `key` (strict verification).
pub fn verify_parts(msg: &[u8], sig_hex: &str, key: &VerifyingKey) -> Result<(), SignatureProblem> {
    let mut sig = [0u8; 64];
    hex::decode_to_slice(sig_hex.as_bytes(), &mut sig).map_err(|_| SignatureProblem::Invalid)?;
    key.verify_strict(msg, &Signature::from_bytes(&sig))
        .map_err(|_| SignatureProblem::Invalid)
}

/// One signature to check: the signed bytes, the signature's hex and the key it must verify
/// under.
#[derive(Clone, Copy, Debug)]
pub struct SignatureCheck<'a> {
    /// The exact signed bytes.
    pub msg: &'a [u8],
    /// The signature, 128 hex digits.
    pub sig_hex: &'a str,
    /// The key the signature must verify under.
    pub key: &'a VerifyingKey,
}

/// Checks many signatures at once, one verdict per item, in order.
///
/// Batch verification costs about half of checking each signature on its own; when the batch
/// fails, each signature is checked on its own (strictly) to find the bad ones, so a forger
/// gains nothing but a slower batch. A signature the batch accepts is a signature of the key's
/// holder: batch and single verification differ only on signatures with small-order
/// components, which only that holder can produce, and a message's id hashes the signed bytes
/// only, so such a signature cannot make a seen message new.
pub fn verify_many(items: &[SignatureCheck<'_>]) -> Vec<Result<(), SignatureProblem>> {
    let mut verdicts = vec![Ok(()); items.len()];
    let mut msgs = Vec::with_capacity(items.len());
    let mut sigs = Vec::with_capacity(items.len());
    let mut keys = Vec::with_capacity(items.len());
    let mut which = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let mut sig = [0u8; 64];
        if hex::decode_to_slice(item.sig_hex.as_bytes(), &mut sig).is_err() {
            verdicts[i] = Err(SignatureProblem::Invalid);
            continue;
        }
        msgs.push(item.msg);
        sigs.push(Signature::from_bytes(&sig));
        keys.push(*item.key);
        which.push(i);
    }
    // A batch of one is no cheaper than a single check; a failed batch needs them anyway.
    if which.len() > 1 && verify_batch(&msgs, &sigs, &keys).is_ok() {
        return verdicts;
    }
    for (j, &i) in which.iter().enumerate() {
        verdicts[i] = keys[j]
            .verify_strict(msgs[j], &sigs[j])
            .map_err(|_| SignatureProblem::Invalid);
    }
    verdicts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(origin: String) -> MeshPriceMessage {
        MeshPriceMessage {
            v: 1,
            asset: "SOL".into(),
            mantissa: 14_237,
            expo: -2,
            chain: None,
            publish_ms: 1_000,
            change_24h: None,
            origin,
            seq: 1,
        }
    }

    #[test]
    fn a_rewrapped_message_keeps_its_id() {
        let key = SigningKey::from_bytes(&[7u8; 32]);
        let wire = sign_wire(&message(origin_hex(&key.verifying_key())), &key);
        let (head, sig) = wire.rsplit_once("\"sig\":\"").unwrap();
        let rewrapped = format!(
            "{{ \"msg\" : {}\"sig\":\"{}",
            &head[7..],
            sig.to_uppercase()
        );
        assert_ne!(rewrapped, wire);
        assert!(split_wire(rewrapped.as_bytes()).is_ok(), "{rewrapped}");
        assert_eq!(
            message_id(rewrapped.as_bytes()),
            message_id(wire.as_bytes())
        );
        let mut other = message(origin_hex(&key.verifying_key()));
        other.seq = 2;
        assert_ne!(
            message_id(sign_wire(&other, &key).as_bytes()),
            message_id(wire.as_bytes())
        );
        assert_ne!(message_id(b"not json"), message_id(b"not json either"));
    }

    #[test]
    fn signed_messages_verify_and_tampering_breaks_them() {
        let key = SigningKey::from_bytes(&[7u8; 32]);
        let wire = sign_wire(&message(origin_hex(&key.verifying_key())), &key);
        assert_eq!(verify_wire(wire.as_bytes(), &key.verifying_key()), Ok(()));
        let tampered = wire.replace("14237", "14238");
        assert_eq!(
            verify_wire(tampered.as_bytes(), &key.verifying_key()),
            Err(SignatureProblem::Invalid)
        );
        let other = SigningKey::from_bytes(&[8u8; 32]);
        assert_eq!(
            verify_wire(wire.as_bytes(), &other.verifying_key()),
            Err(SignatureProblem::Invalid)
        );
        assert_eq!(
            verify_wire(b"nope", &key.verifying_key()),
            Err(SignatureProblem::Malformed)
        );
        assert_eq!(message_id(wire.as_bytes()), message_id(wire.as_bytes()));
        assert_ne!(message_id(wire.as_bytes()), message_id(tampered.as_bytes()));
    }

    #[test]
    fn a_batch_finds_its_bad_signatures() {
        let key = SigningKey::from_bytes(&[7u8; 32]);
        let other = SigningKey::from_bytes(&[8u8; 32]);
        let origin = origin_hex(&key.verifying_key());
        let wires: Vec<String> = (0..8)
            .map(|seq| {
                let mut msg = message(origin.clone());
                msg.seq = seq;
                // Messages 2 and 5 are signed by a key that is not the origin's.
                let signer = if seq == 2 || seq == 5 { &other } else { &key };
                sign_wire(&msg, signer)
            })
            .collect();
        let mut wires: Vec<String> = wires;
        wires[6] = wires[6].replace("\"sig\":\"", "\"sig\":\"zz");
        let parts: Vec<_> = wires
            .iter()
            .map(|w| split_wire(w.as_bytes()).unwrap())
            .collect();
        let verifying = key.verifying_key();
        let items: Vec<SignatureCheck<'_>> = parts
            .iter()
            .map(|p| SignatureCheck {
                msg: p.msg.get().as_bytes(),
                sig_hex: p.sig.as_ref(),
                key: &verifying,
            })
            .collect();
        let verdicts = verify_many(&items);
        let singles: Vec<_> = wires
            .iter()
            .map(|w| verify_wire(w.as_bytes(), &verifying))
            .collect();
        assert_eq!(verdicts, singles);
        let bad: Vec<usize> = (0..8).filter(|&i| verdicts[i].is_err()).collect();
        assert_eq!(bad, vec![2, 5, 6]);
        // All good: the batch alone decides.
        let good: Vec<_> = [0, 1, 3, 4, 7].iter().map(|&i| items[i]).collect();
        assert!(verify_many(&good).iter().all(|v| v.is_ok()));
        assert!(verify_many(&[]).is_empty());
        assert_eq!(
            verify_many(&items[2..3]),
            vec![Err(SignatureProblem::Invalid)]
        );
    }
}
