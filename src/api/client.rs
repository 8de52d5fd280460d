//! [`JoeClient`]: the handle every caller holds. Its methods live by concern:
//!
//! * `settings.rs`: [`ClientSettings`], the API base, the HTTP client;
//! * `request.rs`: request plumbing (hold-off, sending, reading the envelope, the one retry
//!   helper, paging);
//! * `submission.rs`: `submission/new` and the chunked-upload protocol;
//! * `endpoints.rs`: the endpoint names ([`super::Endpoint`]) and one method per read or
//!   delete endpoint, download start included;
//! * `lookup.rs`: finding an attempt's submission by its marker.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use url::Url;

use super::error::ApiError;
use super::secret::ApiKey;
use super::settings::{ClientSettings, api_base, http_client};
use super::throttle::Throttle;

/// The Joe Sandbox API v2 client: the only code that knows the vendor's URLs, field names and
/// JSON. Cheap to clone; clones share the connection pool and the throttle (a `Retry-After`
/// holds back every clone, and failures are counted across them).
#[derive(Clone)]
pub struct JoeClient {
    pub(super) http: reqwest::Client,
    pub(super) base: Url,
    /// The key every clone sends: shared, so that a rotated key re-read by the daemon
    /// ([`Self::replace_key`]) takes effect for every worker at once.
    pub(super) key: Arc<RwLock<ApiKey>>,
    pub(super) settings: Arc<ClientSettings>,
    pub(super) throttle: Arc<Throttle>,
}

impl std::fmt::Debug for JoeClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoeClient")
            .field("base", &self.base.as_str())
            .finish_non_exhaustive()
    }
}

impl JoeClient {
    pub fn new(settings: ClientSettings) -> Result<Self, ApiError> {
        let base = api_base(&settings.server_url)?;
        let http = http_client(&settings)?;
        Ok(Self {
            http,
            base,
            key: Arc::new(RwLock::new(settings.api_key.clone())),
            settings: Arc::new(settings),
            throttle: Arc::default(),
        })
    }

    /// Requests that failed in a row (unreachable, timed out, reset, 5xx, not the API),
    /// across every clone; any answer from the server resets it. The daemon's circuit breaker
    /// opens on it.
    pub fn consecutive_failures(&self) -> u32 {
        self.throttle.consecutive_failures()
    }

    /// The last failure counted by [`Self::consecutive_failures`].
    pub fn last_failure(&self) -> Option<String> {
        self.throttle.last_failure()
    }

    /// How long every request is still held back by a server's `Retry-After`.
    pub fn hold_off_remaining(&self) -> Option<Duration> {
        self.throttle.hold_off_remaining()
    }

    /// The `Retry-After` hold-off in force, with the HTTP status that imposed it.
    pub fn hold_off(&self) -> Option<super::throttle::HoldOff> {
        self.throttle.hold_off_info()
    }

    /// A receiver that changes whenever a hold-off starts or is extended.
    pub fn hold_off_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.throttle.hold_off_changes()
    }

    /// Time since any clone last sent a request.
    pub fn since_last_request(&self) -> Option<Duration> {
        self.throttle.since_last_request()
    }

    /// Requests sent so far by every clone (attempts, not calls).
    pub fn requests_sent(&self) -> u64 {
        self.throttle.requests()
    }

    /// The API base in use (ends in `/api`).
    pub fn api_base(&self) -> &Url {
        &self.base
    }

    pub fn settings(&self) -> &ClientSettings {
        &self.settings
    }

    /// Sends `key` from now on, from every clone (the daemon re-read a rotated key after the
    /// server rejected the old one, or on SIGHUP). Returns whether it differs from the key in
    /// use. `settings().api_key` keeps the key the client was built with.
    pub fn replace_key(&self, key: ApiKey) -> bool {
        let mut current = self.key.write().unwrap_or_else(|e| e.into_inner());
        if *current == key {
            return false;
        }
        *current = key;
        true
    }

    /// A copy of the key in use, for the form of one request (zeroed when the form is).
    pub(super) fn key_text(&self) -> zeroize::Zeroizing<String> {
        let key = self.key.read().unwrap_or_else(|e| e.into_inner());
        zeroize::Zeroizing::new(key.expose().to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_of_the_client_has_no_key() {
        let key = ApiKey::new("JBXD-SENTINEL-debug").unwrap();
        let client = JoeClient::new(ClientSettings::new("http://127.0.0.1:9", key)).unwrap();
        let printed = format!("{client:?} {:?}", client.settings());
        assert!(!printed.contains("SENTINEL"), "{printed}");
    }

    #[test]
    fn a_replaced_key_is_sent_by_every_clone_and_an_equal_key_is_no_change() {
        let old = ApiKey::new("old-key").unwrap();
        let client =
            JoeClient::new(ClientSettings::new("http://127.0.0.1:9", old.clone())).unwrap();
        let clone = client.clone();
        assert!(!client.replace_key(old));
        assert!(client.replace_key(ApiKey::new("new-key").unwrap()));
        assert_eq!(clone.key_text().as_str(), "new-key");
        let form = clone.with_key(vec![("a".into(), "b".into())]);
        assert_eq!(form.last().unwrap().1, "new-key");
    }
}
