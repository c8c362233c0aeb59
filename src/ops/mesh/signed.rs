//! Signing and verifying mesh price messages with an operator's ed25519 key.
//!
//! The signature covers the exact bytes of `msg` as sent, so a verifier never re-serializes:
//! it takes the signed bytes back out of the wire message with [`split_wire`].

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
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
}
