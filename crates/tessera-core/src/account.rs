//! Accounts: what a username and a password may be.
//!
//! Usernames are 3–64 characters of `[A-Za-z0-9_.@-]`, stored as given and
//! compared case-insensitively through [`Username::key`]. Passwords are 8–1024
//! characters (Unicode scalar values, not bytes), anything else is free.

use std::fmt;

/// Why a username or password was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AccountError {
    /// The username breaks the length or alphabet rule.
    #[error("username must be 3 to 64 characters of letters, digits, '_', '.', '@' or '-'")]
    InvalidUsername,
    /// The password is shorter than 8 or longer than 1024 characters.
    #[error("password must be between 8 and 1024 characters long")]
    InvalidPassword,
    /// The password is one attackers try first (a common password, a
    /// keyboard pattern, a repetition, the username).
    #[error("password is too easy to guess: {0}")]
    GuessablePassword(String),
}

/// A username that satisfies the rules, kept as the user typed it.
#[derive(Clone, PartialEq, Eq)]
pub struct Username(String);

impl Username {
    /// Shortest allowed username, in characters.
    pub const MIN_LEN: usize = 3;
    /// Longest allowed username, in characters.
    pub const MAX_LEN: usize = 64;

    /// Checks `raw` against the rules.
    ///
    /// ```
    /// use tessera_core::Username;
    /// assert!(Username::parse("Ada.Lovelace@1815").is_ok());
    /// assert!(Username::parse("no spaces").is_err());
    /// assert_eq!(Username::parse("Ada").unwrap().key(), "ada");
    /// ```
    pub fn parse(raw: &str) -> Result<Self, AccountError> {
        let len = raw.chars().count();
        let alphabet_ok = raw
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '@' | '-'));
        if (Self::MIN_LEN..=Self::MAX_LEN).contains(&len) && alphabet_ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(AccountError::InvalidUsername)
        }
    }

    /// The name as given at registration.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The lookup key: the name lowercased, so that `Ada` and `ada` are one user.
    pub fn key(&self) -> String {
        key_of(&self.0)
    }
}

/// The lookup key of any presented name, valid or not (the alphabet is ASCII,
/// so ASCII lowercasing is exact for every valid name).
pub fn key_of(raw: &str) -> String {
    raw.to_ascii_lowercase()
}

impl fmt::Debug for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Username").field(&self.0).finish()
    }
}

/// A password that satisfies the length rule. Its `Debug` never shows it.
#[derive(Clone)]
pub struct Password(String);

impl Password {
    /// Shortest allowed password, in characters.
    pub const MIN_LEN: usize = 8;
    /// Longest allowed password, in characters.
    pub const MAX_LEN: usize = 1024;

    /// Checks the length rule (in characters, so multi-byte letters count once).
    pub fn parse(raw: &str) -> Result<Self, AccountError> {
        let len = raw.chars().count();
        if (Self::MIN_LEN..=Self::MAX_LEN).contains(&len) {
            Ok(Self(raw.to_owned()))
        } else {
            Err(AccountError::InvalidPassword)
        }
    }

    /// How many leading characters the guessability estimate looks at: its
    /// cost grows quickly with length, and a password whose first 64
    /// characters are easy to guess is weak anyway.
    const ESTIMATED_CHARS: usize = 64;

    /// A password someone chooses now (registration, a change): the length
    /// rule, and not one attackers try first (ASVS 6.2.4). The zxcvbn
    /// estimator (Dropbox's, with its lists of common passwords, names and
    /// words, keyboard patterns, repetitions and dates) must put it at
    /// "safely unguessable" for an online attack or better (score 2 of 4:
    /// at least 10^8 guesses), counting `user_inputs` (the username) as
    /// known to the attacker.
    pub fn parse_new(raw: &str, user_inputs: &[&str]) -> Result<Self, AccountError> {
        let password = Self::parse(raw)?;
        let head: String = raw.chars().take(Self::ESTIMATED_CHARS).collect();
        let estimate = zxcvbn::zxcvbn(&head, user_inputs);
        if estimate.score() >= zxcvbn::Score::Two {
            return Ok(password);
        }
        let warning = estimate
            .feedback()
            .and_then(|f| f.warning())
            .map(|w| w.to_string())
            .filter(|w| !w.is_empty())
            .unwrap_or_else(|| "add more words or characters that are less common".to_owned());
        Err(AccountError::GuessablePassword(warning))
    }

    /// The password itself, for hashing.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guessable_passwords_are_refused_for_new_ones() {
        for weak in [
            "password",
            "12345678",
            "        ",
            "qwertyuiop",
            "aaaaaaaaaaaa",
            "whatever123",
            "password123",
            "dave1234",
        ] {
            assert!(
                matches!(
                    Password::parse_new(weak, &["dave"]),
                    Err(AccountError::GuessablePassword(_))
                ),
                "{weak:?}"
            );
            // Logging in with an old weak password still works.
            assert!(Password::parse(weak).is_ok());
        }
        for strong in [
            "correct horse battery",
            "correct horse battery staple",
            "the new password 123",
            "another long password",
            "long enough",
            "wrong and unusual 77q",
            &"x7#kQ".repeat(200),
        ] {
            assert!(Password::parse_new(strong, &["dave"]).is_ok(), "{strong:?}");
        }
        assert_eq!(
            Password::parse_new("short", &[]).err(),
            Some(AccountError::InvalidPassword)
        );
    }

    #[test]
    fn username_length_bounds() {
        assert!(Username::parse("ab").is_err());
        assert!(Username::parse("abc").is_ok());
        assert!(Username::parse(&"a".repeat(64)).is_ok());
        assert!(Username::parse(&"a".repeat(65)).is_err());
    }

    #[test]
    fn username_alphabet() {
        for ok in ["a_b", "a.b", "a@b", "a-b", "AZaz09"] {
            assert!(Username::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["a b", "a/b", "ab\u{e9}", "a\0b", "<script>", "ab;"] {
            assert_eq!(
                Username::parse(bad),
                Err(AccountError::InvalidUsername),
                "{bad}"
            );
        }
    }

    #[test]
    fn username_key_is_case_insensitive() {
        assert_eq!(Username::parse("MiXeD").unwrap().key(), "mixed");
        assert_eq!(Username::parse("MiXeD").unwrap().as_str(), "MiXeD");
    }

    #[test]
    fn password_counts_characters_not_bytes() {
        assert!(Password::parse("1234567").is_err());
        assert!(Password::parse("12345678").is_ok());
        // Eight two-byte characters are eight characters.
        assert!(Password::parse(&"\u{e9}".repeat(8)).is_ok());
        assert!(Password::parse(&"\u{e9}".repeat(1024)).is_ok());
        assert!(Password::parse(&"x".repeat(1025)).is_err());
    }

    #[test]
    fn password_debug_is_redacted() {
        let p = Password::parse("hunter2hunter2").unwrap();
        assert!(!format!("{p:?}").contains("hunter2"));
    }
}
