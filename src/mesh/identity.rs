//! Keys: the node's libp2p identity (a file created 0600 on first run, so the peer id other
//! nodes allowlist stays stable) and the operator's ed25519 signing key (never logged).

use std::io::Write;
use std::path::Path;

use ed25519_dalek::SigningKey;
use libp2p::identity::Keypair;

use crate::config::Secret;

/// Loads the node keypair at `path`, or creates one there (mode 0600).
pub fn load_or_create_identity(path: &Path) -> Result<Keypair, String> {
    match std::fs::read(path) {
        Ok(bytes) => {
            warn_if_readable_by_others(path);
            Keypair::from_protobuf_encoding(&bytes)
                .map_err(|e| format!("node identity {}: not a keypair ({e})", path.display()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let keypair = Keypair::generate_ed25519();
            let bytes = keypair
                .to_protobuf_encoding()
                .map_err(|e| format!("encoding the node identity: {e}"))?;
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)
                    .map_err(|e| format!("creating {}: {e}", dir.display()))?;
            }
            write_private(path, &bytes)
                .map_err(|e| format!("writing node identity {}: {e}", path.display()))?;
            Ok(keypair)
        }
        Err(e) => Err(format!("reading node identity {}: {e}", path.display())),
    }
}

/// Warns when a key file can be read by others than its owner (the path, never the key).
fn warn_if_readable_by_others(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path)
            && meta.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(
                path = %path.display(),
                "a key file is readable by others; make it 0600"
            );
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Creates a new operator signing key at `path` (64 hex digits, mode 0600; an existing file is
/// never overwritten) and returns its public origin.
pub fn create_operator_key(path: &Path) -> Result<String, String> {
    let pair = libp2p::identity::ed25519::Keypair::generate().to_bytes();
    let mut seed = [0u8; 32];
    seed.copy_from_slice(&pair[..32]);
    let key = SigningKey::from_bytes(&seed);
    let text = Secret::new(hex::encode(seed));
    write_private(path, text.expose().as_bytes())
        .map_err(|e| format!("writing operator key {}: {e}", path.display()))?;
    Ok(crate::ops::mesh::signed::origin_hex(&key.verifying_key()))
}

/// The operator key from `file` (64 hex digits) or else `inline`; `None` when neither is set.
/// Errors never contain the key.
pub fn operator_key(file: &str, inline: &Secret) -> Result<Option<SigningKey>, String> {
    let text = if !file.is_empty() {
        warn_if_readable_by_others(Path::new(file));
        Secret::new(
            std::fs::read_to_string(file)
                .map_err(|e| format!("operator key file {file}: {e}"))?
                .trim(),
        )
    } else if !inline.is_empty() {
        inline.clone()
    } else {
        return Ok(None);
    };
    let mut seed = [0u8; 32];
    hex::decode_to_slice(text.expose().trim(), &mut seed)
        .map_err(|_| "operator key: must be 64 hex digits (an ed25519 seed)".to_owned())?;
    Ok(Some(SigningKey::from_bytes(&seed)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_persists_with_private_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("id.key");
        let a = load_or_create_identity(&path).unwrap();
        let b = load_or_create_identity(&path).unwrap();
        assert_eq!(a.public().to_peer_id(), b.public().to_peer_id());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn created_operator_keys_load_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("operator.key");
        let origin = create_operator_key(&path).unwrap();
        let key = operator_key(path.to_str().unwrap(), &Secret::default())
            .unwrap()
            .unwrap();
        assert_eq!(
            crate::ops::mesh::signed::origin_hex(&key.verifying_key()),
            origin
        );
        assert!(create_operator_key(&path).is_err(), "never overwritten");
    }

    #[test]
    fn operator_key_errors_hide_the_key() {
        let err = operator_key("", &Secret::new("zz-secret-zz")).unwrap_err();
        assert!(!err.contains("zz-secret-zz"));
        let key = operator_key("", &Secret::new("07".repeat(32)))
            .unwrap()
            .unwrap();
        assert_eq!(key.to_bytes(), [7u8; 32]);
        assert!(operator_key("", &Secret::default()).unwrap().is_none());
    }
}
