//! The API key as a secret type: it cannot be printed by accident.

use std::fmt;

/// A Joe Sandbox API key.
///
/// `Debug` prints `ApiKey([REDACTED])` and there is no `Display`, so the key cannot reach a log
/// line, an error message or a panic through formatting. Only the API client reads it, when it
/// builds the `apikey` form field.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

/// Why a candidate API key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiKeyError {
    #[error("the API key is empty")]
    Empty,
    #[error("the API key contains whitespace or control characters")]
    BadCharacters,
}

impl ApiKey {
    /// Accepts a key as read from a file or the environment: surrounding whitespace (a trailing
    /// newline from `echo key > file`) is trimmed; an empty key or one with inner whitespace or
    /// control characters is refused, because it can only be a mistake.
    pub fn new(raw: impl AsRef<str>) -> Result<Self, ApiKeyError> {
        let key = raw.as_ref().trim();
        if key.is_empty() {
            return Err(ApiKeyError::Empty);
        }
        if key.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(ApiKeyError::BadCharacters);
        }
        Ok(Self(key.to_owned()))
    }

    /// The key itself. Crate-private on purpose: only the API client sends it.
    pub(crate) fn expose(&self) -> &str {
        &self.0
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
        let printed = format!("{key:?} {:#?}", Some(&key));
        assert!(!printed.contains("SENTINEL"), "{printed}");
        assert!(printed.contains("REDACTED"));
    }

    #[test]
    fn trailing_newline_is_trimmed_and_empty_keys_are_refused() {
        assert_eq!(ApiKey::new("abc\n").unwrap().expose(), "abc");
        assert_eq!(ApiKey::new(" \n"), Err(ApiKeyError::Empty));
        assert_eq!(ApiKey::new("ab c"), Err(ApiKeyError::BadCharacters));
    }
}
