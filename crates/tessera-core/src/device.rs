//! Device cookies: a browser that once logged in to an account is known to it.
//!
//! After a successful login the server hands the browser a device token
//! (OWASP's "device cookie"): a random id and an HMAC-SHA256 over the
//! account's lookup key and that id, keyed by a server secret. On a later
//! login for the same account the token proves the attempt comes from a
//! device where the password was once typed correctly, and the throttle
//! counts that device's failures on their own instead of with everybody's —
//! so a flood of guesses from elsewhere never locks the owner out of their
//! own browser. The token is no credential: it grants nothing but a place
//! in a separate queue, and it is worthless for another account.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::Rng;
use crate::account::key_of;

const LABEL: &[u8] = b"tessera device cookie v1";
const PREFIX: &str = "dv1.";
/// Random bytes in a device id.
const ID_BYTES: usize = 16;

/// The key device tokens are signed with, derived from a server secret that
/// every instance shares.
pub struct DeviceKey([u8; 32]);

impl std::fmt::Debug for DeviceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DeviceKey(..)")
    }
}

fn hmac(key: &[u8]) -> Hmac<Sha256> {
    // HMAC accepts keys of any length, so this cannot fail.
    <Hmac<Sha256> as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"))
}

impl DeviceKey {
    /// The device key that belongs to `server_secret` (a separate key for a
    /// separate purpose: HMAC of the secret over a fixed label).
    pub fn derive(server_secret: &[u8]) -> Self {
        let mut mac = hmac(server_secret);
        mac.update(LABEL);
        Self(mac.finalize().into_bytes().into())
    }

    fn mac(&self, username: &str, id: &[u8]) -> [u8; 32] {
        let account = key_of(username);
        let mut mac = hmac(&self.0);
        mac.update(&(account.len() as u64).to_be_bytes());
        mac.update(account.as_bytes());
        mac.update(id);
        mac.finalize().into_bytes().into()
    }

    /// A fresh device token for the account `username` (any case).
    pub fn issue(&self, username: &str, rng: &mut dyn Rng) -> String {
        let mut id = [0u8; ID_BYTES];
        rng.fill_bytes(&mut id);
        format!(
            "{PREFIX}{}.{}",
            URL_SAFE_NO_PAD.encode(id),
            URL_SAFE_NO_PAD.encode(self.mac(username, &id))
        )
    }

    /// The device id in `token` if it is a token this key issued for the
    /// account `username` (any case); `None` for anything else. Compares the
    /// MAC in constant time.
    pub fn recognise(&self, username: &str, token: &str) -> Option<String> {
        let rest = token.strip_prefix(PREFIX)?;
        let (id, mac) = rest.split_once('.')?;
        // Bounded before decoding: a device token is short.
        if id.len() > 32 || mac.len() > 64 {
            return None;
        }
        let id_bytes = URL_SAFE_NO_PAD.decode(id).ok()?;
        let mac_bytes = URL_SAFE_NO_PAD.decode(mac).ok()?;
        if id_bytes.len() != ID_BYTES {
            return None;
        }
        let good: bool = mac_bytes.ct_eq(&self.mac(username, &id_bytes)).into();
        good.then(|| id.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::OsRng;

    #[test]
    fn a_token_is_known_only_to_its_account_and_key() {
        let key = DeviceKey::derive(b"server secret");
        let token = key.issue("Dave", &mut OsRng);
        let id = key.recognise("dave", &token).expect("own account");
        assert_eq!(key.recognise("DAVE", &token).as_deref(), Some(id.as_str()));
        assert_eq!(key.recognise("eve", &token), None);
        let other = DeviceKey::derive(b"another secret");
        assert_eq!(other.recognise("dave", &token), None);
    }

    #[test]
    fn altered_or_foreign_tokens_are_unknown() {
        let key = DeviceKey::derive(b"server secret");
        let token = key.issue("dave", &mut OsRng);
        let mut altered = token.clone().into_bytes();
        let last = altered.len() - 2;
        altered[last] = if altered[last] == b'A' { b'B' } else { b'A' };
        let altered = String::from_utf8(altered).unwrap();
        for bad in [
            "",
            "dv1.",
            "dv1..",
            "dv2.abc.def",
            "dv1.%%%.&&&",
            &altered,
            &token[..token.len() - 1],
            &format!("{token}.x"),
            &"dv1.".repeat(10_000),
        ] {
            assert_eq!(key.recognise("dave", bad), None, "{bad:.40}");
        }
    }

    #[test]
    fn each_token_has_its_own_id() {
        let key = DeviceKey::derive(b"server secret");
        let a = key.issue("dave", &mut OsRng);
        let b = key.issue("dave", &mut OsRng);
        assert_ne!(key.recognise("dave", &a), key.recognise("dave", &b));
    }
}
