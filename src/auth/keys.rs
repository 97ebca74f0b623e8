//! keys: the key Carnet signs its access tokens with (ECDSA P-256, ES256), kept in the data
//! directory and published as a JWKS. RSA is deliberately not used for signing (the `rsa`
//! crate's RUSTSEC-2023-0071); `ring` provides the curve.
//!
//! The key is created on first use, in `DATA_DIR/keys/es256.pk8` (PKCS#8 DER, readable by
//! the owner only). `carnet keys rotate` retires it to `DATA_DIR/keys/retired/` and creates
//! a new one: tokens are signed with the new key from the next start, and those signed with
//! a retired key still verify (and the key stays in the JWKS) for [`RETIRED_KEY_SECONDS`]. Development tokens have their own key, `DATA_DIR/keys/dev-es256.pk8`,
//! shared by `carnet dev-token` and `carnet serve --dev` with the same `--data-dir`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{DecodingKey, EncodingKey};
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

pub struct SigningKey {
    /// Key id: the first 16 characters of the base64url SHA-256 of the public point.
    pub kid: String,
    pub encoding: EncodingKey,
    pub decoding: DecodingKey,
    /// The public key as a JWK.
    pub jwk: Value,
}

impl SigningKey {
    /// Loads the server's key from `data_dir`, creating it if there is none.
    pub fn load_or_create(data_dir: &Path) -> Result<SigningKey, String> {
        Self::load_or_create_at(&key_path(data_dir))
    }

    /// Loads the development key (what `carnet dev-token` signs with, and only
    /// `carnet serve --dev` accepts), creating it if there is none. A separate key: the
    /// server's own key never signs a development token.
    pub fn load_or_create_dev(data_dir: &Path) -> Result<SigningKey, String> {
        Self::load_or_create_at(&data_dir.join("keys").join("dev-es256.pk8"))
    }

    fn load_or_create_at(path: &Path) -> Result<SigningKey, String> {
        let path = path.to_path_buf();
        let der = match std::fs::read(&path) {
            Ok(der) => der,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => create(&path)?,
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        SigningKey::from_pkcs8(&der).map_err(|e| format!("{}: {e}", path.display()))
    }

    fn from_pkcs8(der: &[u8]) -> Result<SigningKey, String> {
        let rng = SystemRandom::new();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der, &rng)
            .map_err(|_| "not an ECDSA P-256 PKCS#8 key".to_string())?;
        // Uncompressed point: 0x04 || x (32 bytes) || y (32 bytes).
        let point = pair.public_key().as_ref();
        if point.len() != 65 || point[0] != 4 {
            return Err("unexpected public key encoding".into());
        }
        let (x, y) = (
            URL_SAFE_NO_PAD.encode(&point[1..33]),
            URL_SAFE_NO_PAD.encode(&point[33..]),
        );
        let digest = ring::digest::digest(&ring::digest::SHA256, point);
        let kid: String = URL_SAFE_NO_PAD
            .encode(digest.as_ref())
            .chars()
            .take(16)
            .collect();
        let decoding = DecodingKey::from_ec_components(&x, &y).map_err(|e| e.to_string())?;
        Ok(SigningKey {
            jwk: json!({"kty": "EC", "crv": "P-256", "x": x, "y": y, "kid": kid,
                "use": "sig", "alg": "ES256"}),
            kid,
            encoding: EncodingKey::from_ec_der(der),
            decoding,
        })
    }

    /// The JWKS document that publishes the public key.
    pub fn jwks(&self) -> Value {
        json!({"keys": [self.jwk]})
    }
}

/// How long a retired key still verifies (and is published): longer than any token it
/// signed can live.
pub const RETIRED_KEY_SECONDS: u64 = 24 * 3600;

fn retired_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("keys").join("retired")
}

/// Retires the current key and creates a new one; returns (retired kid, new kid). Retired
/// keys past [`RETIRED_KEY_SECONDS`] are deleted on the way.
pub fn rotate(data_dir: &Path) -> Result<(String, String), String> {
    let current = SigningKey::load_or_create(data_dir)?;
    let dir = retired_dir(data_dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    for (path, retired_at) in retired_files(data_dir) {
        if now.saturating_sub(retired_at) > RETIRED_KEY_SECONDS {
            let _ = std::fs::remove_file(path);
        }
    }
    let target = dir.join(format!("es256-{now}-{}.pk8", current.kid));
    std::fs::rename(key_path(data_dir), &target)
        .map_err(|e| format!("cannot retire the current key: {e}"))?;
    let new = SigningKey::load_or_create(data_dir)?;
    Ok((current.kid, new.kid))
}

/// The retired key files, with when each was retired (from its name).
fn retired_files(data_dir: &Path) -> Vec<(PathBuf, u64)> {
    let Ok(entries) = std::fs::read_dir(retired_dir(data_dir)) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            let at = name
                .strip_prefix("es256-")?
                .split('-')
                .next()?
                .parse::<u64>()
                .ok()?;
            Some((e.path(), at))
        })
        .collect()
}

/// The retired keys that still verify (retired less than [`RETIRED_KEY_SECONDS`] ago).
pub fn load_retired(data_dir: &Path) -> Result<Vec<SigningKey>, String> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let mut keys = Vec::new();
    for (path, at) in retired_files(data_dir) {
        if now.saturating_sub(at) <= RETIRED_KEY_SECONDS {
            let der =
                std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            keys.push(
                SigningKey::from_pkcs8(&der).map_err(|e| format!("{}: {e}", path.display()))?,
            );
        }
    }
    Ok(keys)
}

fn key_path(data_dir: &Path) -> PathBuf {
    data_dir.join("keys").join("es256.pk8")
}

fn create(path: &Path) -> Result<Vec<u8>, String> {
    let rng = SystemRandom::new();
    let der = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
        .map_err(|_| "cannot generate a signing key".to_string())?;
    let dir = path.parent().expect("key path has a parent");
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    // Written to a temporary file first, then linked into place: `hard_link` fails if the
    // key exists, so when two processes start at the same moment exactly one key wins and
    // the other process reads the winner's back.
    let tmp = dir.join(format!(
        ".es256.{}.{}.tmp",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ));
    write_private(&tmp, der.as_ref())?;
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
        }
        Err(e) => return Err(format!("cannot write {}: {e}", path.display())),
    }
    tracing::info!(path = %path.display(), "created a new token signing key");
    Ok(der.as_ref().to_vec())
}

#[cfg(unix)]
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

#[cfg(not(unix))]
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), String> {
    std::fs::write(path, bytes).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_created_once_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let a = SigningKey::load_or_create(dir.path()).unwrap();
        let b = SigningKey::load_or_create(dir.path()).unwrap();
        assert_eq!(a.kid, b.kid);
        assert_eq!(a.jwks()["keys"][0]["crv"], "P-256");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(key_path(dir.path()))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn rotation_retires_the_key_and_keeps_it_for_verification() {
        let dir = tempfile::tempdir().unwrap();
        let old = SigningKey::load_or_create(dir.path()).unwrap();
        let (retired, new) = rotate(dir.path()).unwrap();
        assert_eq!(retired, old.kid);
        assert_ne!(new, old.kid);
        assert_eq!(SigningKey::load_or_create(dir.path()).unwrap().kid, new);
        let kept: Vec<String> = load_retired(dir.path())
            .unwrap()
            .into_iter()
            .map(|k| k.kid)
            .collect();
        assert_eq!(kept, vec![old.kid]);
    }
}
