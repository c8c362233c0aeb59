//! Control-topic messages sealed with the sending node's libp2p key.
//!
//! gossipsub runs anonymous (it signs nothing): price messages carry the operator's signature
//! already, and a second, per-message envelope signature would halve what a node can validate.
//! The control topic is the one place where the author matters (providers rank each other by
//! peer id), so its messages say who sent them and prove it here.
//!
//! Wire: `1`, the public key's length (u16, big-endian) and protobuf bytes, the signature's
//! length (u16) and bytes, then the body. The signature covers [`DOMAIN`] followed by the body,
//! so no other signed bytes of this key can pass as a control message.
//!
//! ```
//! use libp2p::identity::Keypair;
//! use sluice::mesh::control::{open, seal};
//!
//! let key = Keypair::generate_ed25519();
//! let wire = seal(&key, b"{\"kind\":\"announce\",\"at_ms\":1}").unwrap();
//! let (author, body) = open(&wire).unwrap();
//! assert_eq!(author, key.public().to_peer_id());
//! assert_eq!(body, b"{\"kind\":\"announce\",\"at_ms\":1}");
//! ```

use libp2p::PeerId;
use libp2p::identity::{Keypair, PublicKey};

/// The wire version.
const VERSION: u8 = 1;

/// What a control signature signs ahead of the body.
pub const DOMAIN: &[u8] = b"sluice/mesh/control/v1\0";

/// Why control bytes were refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    /// Not a version-1 sealed message, or cut short.
    #[error("not a sealed control message")]
    Malformed,
    /// The signature does not verify under the key it names.
    #[error("control signature does not verify")]
    BadSignature,
}

/// Seals `body` as a control message of `key`'s node.
pub fn seal(key: &Keypair, body: &[u8]) -> Result<Vec<u8>, String> {
    let public = key.public().encode_protobuf();
    let signature = key
        .sign(&signed_bytes(body))
        .map_err(|e| format!("signing a control message: {e}"))?;
    let mut wire = Vec::with_capacity(5 + public.len() + signature.len() + body.len());
    wire.push(VERSION);
    for part in [&public, &signature] {
        let len = u16::try_from(part.len()).map_err(|_| "control key or signature too long")?;
        wire.extend_from_slice(&len.to_be_bytes());
        wire.extend_from_slice(part);
    }
    wire.extend_from_slice(body);
    Ok(wire)
}

/// Opens sealed control bytes: their author and body, or why not.
pub fn open(wire: &[u8]) -> Result<(PeerId, &[u8]), ControlError> {
    let rest = match wire.split_first() {
        Some((&VERSION, rest)) => rest,
        _ => return Err(ControlError::Malformed),
    };
    let (public, rest) = field(rest)?;
    let (signature, body) = field(rest)?;
    let public = PublicKey::try_decode_protobuf(public).map_err(|_| ControlError::Malformed)?;
    if !public.verify(&signed_bytes(body), signature) {
        return Err(ControlError::BadSignature);
    }
    Ok((public.to_peer_id(), body))
}

/// A u16-length-prefixed field, and what follows it.
fn field(bytes: &[u8]) -> Result<(&[u8], &[u8]), ControlError> {
    let (len, rest) = bytes.split_at_checked(2).ok_or(ControlError::Malformed)?;
    let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
    rest.split_at_checked(len).ok_or(ControlError::Malformed)
}

fn signed_bytes(body: &[u8]) -> Vec<u8> {
    [DOMAIN, body].concat()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_message_opens_to_its_author_and_body() {
        let key = Keypair::generate_ed25519();
        let wire = seal(&key, b"hello").unwrap();
        assert_eq!(open(&wire), Ok((key.public().to_peer_id(), &b"hello"[..])));
        assert_eq!(open(&seal(&key, b"").unwrap()).unwrap().1, b"");
    }

    #[test]
    fn a_changed_body_or_borrowed_signature_is_refused() {
        let key = Keypair::generate_ed25519();
        let mut wire = seal(&key, b"window 7").unwrap();
        *wire.last_mut().unwrap() = b'8';
        assert_eq!(open(&wire), Err(ControlError::BadSignature));
        // Another node's key with this node's signature: the key decides the author.
        let other = Keypair::generate_ed25519();
        let theirs = seal(&other, b"window 7").unwrap();
        let mine = seal(&key, b"window 7").unwrap();
        let key_len = 2 + other.public().encode_protobuf().len();
        let forged = [&theirs[..1 + key_len], &mine[1 + key_len..]].concat();
        assert_eq!(open(&forged), Err(ControlError::BadSignature));
        // A plain signature over the body alone (no domain) does not pass either.
        let bare = key.sign(b"window 7").unwrap();
        let public = key.public().encode_protobuf();
        let mut wire = vec![VERSION];
        wire.extend_from_slice(&(public.len() as u16).to_be_bytes());
        wire.extend_from_slice(&public);
        wire.extend_from_slice(&(bare.len() as u16).to_be_bytes());
        wire.extend_from_slice(&bare);
        wire.extend_from_slice(b"window 7");
        assert_eq!(open(&wire), Err(ControlError::BadSignature));
    }

    #[test]
    fn every_cut_of_a_sealed_message_is_refused_without_a_panic() {
        let key = Keypair::generate_ed25519();
        let wire = seal(&key, b"{\"kind\":\"announce\"}").unwrap();
        for end in 0..wire.len() {
            assert!(open(&wire[..end]).is_err(), "cut at {end}");
        }
        assert_eq!(
            open(b"{\"kind\":\"announce\"}"),
            Err(ControlError::Malformed)
        );
        let mut wrong_version = wire.clone();
        wrong_version[0] = 2;
        assert_eq!(open(&wrong_version), Err(ControlError::Malformed));
    }
}
