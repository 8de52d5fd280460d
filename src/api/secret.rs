//! The secret types: a value that cannot be printed by accident and whose memory is zeroed
//! when it is dropped.
//!
//! * [`Secret`]: any secret jbxd handles (the report password, later webhook secrets), as
//!   resolved by `config` from a file, a systemd credential or a vault command.
//! * [`ApiKey`]: a [`Secret`] that passed the rules of an API key.
//!
//! Neither has `Display`; `Debug` prints `[REDACTED]`; both hold their bytes in a
//! [`Zeroizing`] buffer, so a clone or a drop leaves no copy of the value in freed memory. The
//! one copy this crate cannot zero is the one handed to the HTTP library when a request is
//! built (reqwest does not zero its request buffers); it lives only as long as the request.

use std::fmt;

use zeroize::Zeroizing;

/// A secret value (UTF-8 text): the report password, a webhook secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    /// Takes ownership of `value` (moved, not copied, so no clear copy stays behind).
    pub fn new(value: String) -> Self {
        Self(Zeroizing::new(value))
    }

    /// The value, for the code that must use it (encrypting a submission, opening an
    /// encrypted download). Never format it, log it or store it; copy it only into a
    /// `zeroize::Zeroizing` buffer.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }

    /// The value as bytes (e.g. the password of an AES zip).
    pub fn expose_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([REDACTED])")
    }
}

/// A Joe Sandbox API key.
///
/// `Debug` prints `ApiKey([REDACTED])` and there is no `Display`, so the key cannot reach a log
/// line, an error message or a panic through formatting. Only the API client reads it, when it
/// builds the `apikey` form field.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(Secret);

/// Why a candidate API key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiKeyError {
    #[error("the API key is empty")]
    Empty,
    #[error("the API key contains whitespace or control characters")]
    BadCharacters,
}

impl ApiKey {
    /// Accepts a key as read from a file, a command or the environment: surrounding
    /// whitespace (a trailing newline from `echo key > file`) is trimmed; an empty key or one
    /// with inner whitespace or control characters is refused, because it can only be a
    /// mistake.
    pub fn new(raw: impl AsRef<str>) -> Result<Self, ApiKeyError> {
        let key = raw.as_ref().trim();
        if key.is_empty() {
            return Err(ApiKeyError::Empty);
        }
        if key.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(ApiKeyError::BadCharacters);
        }
        Ok(Self(Secret::new(key.to_owned())))
    }

    /// [`ApiKey::new`] for a key that arrived as a [`Secret`] (from a vault command or a
    /// credential).
    pub fn from_secret(secret: &Secret) -> Result<Self, ApiKeyError> {
        Self::new(secret.expose_secret())
    }

    /// The key itself. Crate-private on purpose: only the API client sends it.
    pub(crate) fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey([REDACTED])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_contains_the_key() {
        let key = ApiKey::new("JBXD-SENTINEL-7f3c").unwrap();
        let secret = Secret::new("JBXD-SENTINEL-pw".into());
        let printed = format!("{key:?} {:#?} {secret:?} {:?}", Some(&key), Some(&secret));
        assert!(!printed.contains("SENTINEL"), "{printed}");
        assert!(printed.contains("REDACTED"));
    }

    #[test]
    fn trailing_newline_is_trimmed_and_empty_keys_are_refused() {
        assert_eq!(ApiKey::new("abc\n").unwrap().expose(), "abc");
        assert_eq!(ApiKey::new(" \n"), Err(ApiKeyError::Empty));
        assert_eq!(ApiKey::new("ab c"), Err(ApiKeyError::BadCharacters));
        let secret = Secret::new("from-a-vault\n".into());
        assert_eq!(
            ApiKey::from_secret(&secret).unwrap().expose(),
            "from-a-vault"
        );
    }
}
