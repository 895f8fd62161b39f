//! Encryption at rest of the signing keys and server secrets: AES-256-GCM
//! (aws-lc-rs) under the master key (the key-encryption key of `--master-key`).
//!
//! A sealed value is `nonce (12 bytes) ‖ ciphertext ‖ tag`. The associated
//! data names what is sealed (a key id, a secret's name), so a sealed value
//! moved to another row does not open.

use std::fmt;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};

use crate::Rng;

/// Why a master key could not be used or a value could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    /// The master key is not 64 hexadecimal characters.
    #[error("the master key must be 32 bytes written as 64 hexadecimal characters")]
    BadMasterKey,
    /// The master key is well formed but could not have come from a random
    /// source (all zero, one byte repeated, a short pattern).
    #[error(
        "the master key is too predictable (all zero, a repeated byte or pattern); \
         generate one with `openssl rand -hex 32`"
    )]
    WeakMasterKey,
    /// The value was sealed under another master key, or was altered.
    #[error("cannot decrypt: wrong master key, or the stored value was altered")]
    Open,
}

/// The 256-bit key-encryption key. `Debug` never shows it.
pub struct MasterKey(LessSafeKey);

impl MasterKey {
    /// The key from its 64 hexadecimal characters.
    pub fn from_hex(hex: &str) -> Result<Self, SealError> {
        let hex = hex.trim();
        if hex.len() != 64 {
            return Err(SealError::BadMasterKey);
        }
        let mut bytes = [0u8; 32];
        for (i, chunk) in hex.as_bytes().chunks(2).enumerate() {
            let s = std::str::from_utf8(chunk).map_err(|_| SealError::BadMasterKey)?;
            bytes[i] = u8::from_str_radix(s, 16).map_err(|_| SealError::BadMasterKey)?;
        }
        // 32 random bytes have about 30 distinct values; fewer than 16 has a
        // chance below 2^-40. A key that low is typed, not generated.
        let mut seen = [false; 256];
        for b in bytes {
            seen[usize::from(b)] = true;
        }
        if seen.iter().filter(|s| **s).count() < 16 {
            return Err(SealError::WeakMasterKey);
        }
        Self::from_bytes(&bytes)
    }

    /// The key from 32 raw bytes.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, SealError> {
        let key = UnboundKey::new(&AES_256_GCM, bytes).map_err(|_| SealError::BadMasterKey)?;
        Ok(Self(LessSafeKey::new(key)))
    }

    /// A new random master key, as 64 hexadecimal characters.
    pub fn generate_hex(rng: &mut dyn Rng) -> String {
        let mut bytes = [0u8; 32];
        rng.fill_bytes(&mut bytes);
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Encrypts `plaintext`, bound to `label`.
    pub fn seal(&self, label: &str, plaintext: &[u8], rng: &mut dyn Rng) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        rng.fill_bytes(&mut nonce);
        let mut buf = plaintext.to_vec();
        // Sealing fails only for inputs of gigabytes; ours are a few KiB.
        if self
            .0
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(label.as_bytes()),
                &mut buf,
            )
            .is_err()
        {
            return Vec::new();
        }
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        out
    }

    /// Decrypts a value sealed with [`MasterKey::seal`] under the same `label`.
    pub fn open(&self, label: &str, sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        if sealed.len() < NONCE_LEN {
            return Err(SealError::Open);
        }
        let (nonce, ct) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SealError::Open)?;
        let mut buf = ct.to_vec();
        let plain = self
            .0
            .open_in_place(nonce, Aad::from(label.as_bytes()), &mut buf)
            .map_err(|_| SealError::Open)?;
        Ok(plain.to_vec())
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::OsRng;

    #[test]
    fn seal_and_open() {
        let key = MasterKey::from_hex(&MasterKey::generate_hex(&mut OsRng)).unwrap();
        let sealed = key.seal("kid-1", b"private key bytes", &mut OsRng);
        assert!(!sealed.windows(7).any(|w| w == b"private"));
        assert_eq!(key.open("kid-1", &sealed).unwrap(), b"private key bytes");
    }

    #[test]
    fn wrong_key_label_or_tampering_fails() {
        let key =
            MasterKey::from_hex("5e1c9a2f7b3d8e4a0c6f1b9d2e7a3c8f4b0d6e1a9c5f2b7d3e8a4c0f6b1d9e2a")
                .unwrap();
        let other =
            MasterKey::from_hex("c4e8a0f2b6d1e9a3c7f5b2d8e0a4c6f9b1d3e7a5c2f8b0d6e4a9c1f7b3d5e2a8")
                .unwrap();
        let sealed = key.seal("kid-1", b"secret", &mut OsRng);
        assert_eq!(other.open("kid-1", &sealed), Err(SealError::Open));
        assert_eq!(key.open("kid-2", &sealed), Err(SealError::Open));
        let mut altered = sealed.clone();
        *altered.last_mut().unwrap() ^= 1;
        assert_eq!(key.open("kid-1", &altered), Err(SealError::Open));
        assert_eq!(key.open("kid-1", &sealed[..5]), Err(SealError::Open));
    }

    #[test]
    fn master_key_format() {
        assert!(MasterKey::from_hex("abc").is_err());
        assert!(MasterKey::from_hex(&"zz".repeat(32)).is_err());
        assert!(
            MasterKey::from_hex(
                &"5e1c9a2f7b3d8e4a0c6f1b9d2e7a3c8f4b0d6e1a9c5f2b7d3e8a4c0f6b1d9e2a".to_uppercase()
            )
            .is_ok()
        );
        for weak in [
            "00".repeat(32),
            "ab".repeat(32),
            "0123456789abcdef".repeat(4),
        ] {
            assert_eq!(
                MasterKey::from_hex(&weak).err(),
                Some(SealError::WeakMasterKey),
                "{weak}"
            );
        }
        assert_eq!(
            format!(
                "{:?}",
                MasterKey::from_hex(
                    "5e1c9a2f7b3d8e4a0c6f1b9d2e7a3c8f4b0d6e1a9c5f2b7d3e8a4c0f6b1d9e2a"
                )
                .unwrap()
            ),
            "MasterKey(<redacted>)"
        );
    }
}
