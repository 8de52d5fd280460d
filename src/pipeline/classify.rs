//! The one place that decides what a failed API call means for the item (or report) it was
//! made for (RELIABILITY.md group D). Workers never look at an [`ApiError`] themselves: they ask
//! [`classify`] and act on the [`Action`].

use std::time::Duration;

use crate::api::{ApiError, ApiErrorKind};
use crate::app::PauseReason;

/// The shortest delay jbxd ever schedules: a configured 0 means "as fast as this allows".
pub use crate::worker::MIN_DELAY;

/// What kind of call failed; the same error means different things for each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    /// `submission/new` (plain, URL, chunked creation) or a chunk upload: not idempotent.
    Submit,
    /// An idempotent read: search, info, poll.
    Read,
    /// `analysis/download` of one report type.
    Download,
}

/// What to do about a failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Transient: try again after this delay (counts one attempt of the item or report).
    Retry { after: Duration },
    /// A submission may or may not exist: keep the item `submitting` and reconcile (look its
    /// attempt keys up) before ever sending again.
    UnknownOutcome,
    /// The item itself is bad (invalid or missing parameter, not permitted on this account):
    /// terminal `rejected` with the server's message.
    Reject { reason: String },
    /// A global condition (maintenance, invalid key, terms, quota): pause, consume no attempt.
    Pause { reason: PauseReason, detail: String },
    /// Permanent for this report or poll (not available, not found, too large): recorded as
    /// failed with the reason, never retried.
    Fatal { reason: String },
}

/// Per-item backoff (RELIABILITY.md case 63): `min(cap, base·2^attempts)` with full jitter and a
/// floor of [`MIN_DELAY`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub cap: Duration,
}

impl Backoff {
    pub fn from_config(config: &crate::config::PipelineConfig) -> Self {
        Self {
            base: Duration::from_secs(config.retry_base_secs),
            cap: Duration::from_secs(config.retry_cap_secs),
        }
    }

    /// The ceiling of the delay after `attempts` failed attempts (before jitter).
    pub fn ceiling(&self, attempts: u32) -> Duration {
        self.base
            .saturating_mul(2u32.saturating_pow(attempts.min(31)))
            .min(self.cap)
            .max(MIN_DELAY)
    }

    /// A uniformly random delay in `[MIN_DELAY, ceiling(attempts)]`.
    pub fn delay(&self, attempts: u32) -> Duration {
        self.ceiling(attempts)
            .mul_f64(fastrand::f64())
            .max(MIN_DELAY)
    }
}

/// Maps a failed call to what the pipeline does about it. `attempts` is how many attempts
/// the item (or report) has used before this one, for the backoff.
pub fn classify(error: &ApiError, call: Call, attempts: u32, backoff: Backoff) -> Action {
    let retry = || Action::Retry {
        after: error
            .retry_after()
            .map(|d| d.max(MIN_DELAY))
            .unwrap_or_else(|| backoff.delay(attempts)),
    };
    let message = error.server_message();
    if let Some(kind) = error.kind() {
        let pause = |reason| Action::Pause {
            reason,
            detail: message.clone(),
        };
        match kind {
            // Global conditions first: they consume nothing and lift by themselves.
            ApiErrorKind::ServerOffline => return pause(PauseReason::Maintenance),
            ApiErrorKind::InvalidApiKey => return pause(PauseReason::InvalidApiKey),
            ApiErrorKind::TermsNotAccepted => return pause(PauseReason::TermsNotAccepted),
            ApiErrorKind::QuotaExceeded => return pause(PauseReason::QuotaExceeded),
            ApiErrorKind::MissingParameter
            | ApiErrorKind::InvalidParameter
            | ApiErrorKind::PermissionDenied => {
                return match call {
                    Call::Submit => Action::Reject { reason: message },
                    // A poll of an id the server does not know (deleted), or a report type
                    // not available for this analysis or account: retrying cannot help.
                    Call::Read | Call::Download => Action::Fatal { reason: message },
                };
            }
            ApiErrorKind::UnknownEndpoint if call == Call::Download => {
                return Action::Fatal { reason: message };
            }
            _ => {}
        }
    }
    match error {
        // An HTTP 401/403 without the Joe envelope (a proxy or gateway refusing us) is treated
        // like a refused key: every call would fail the same way.
        ApiError::UnexpectedFormat {
            status: 401 | 403, ..
        } => Action::Pause {
            reason: PauseReason::InvalidApiKey,
            detail: message,
        },
        ApiError::UnknownOutcome { .. } if call == Call::Submit => Action::UnknownOutcome,
        ApiError::TooLarge { limit } => Action::Fatal {
            reason: format!("too large (limit {limit})"),
        },
        // The client deleted the incomplete chunked submission (or reports that it could not;
        // the submit worker looks at that itself): nothing is left on the server.
        ApiError::ChunkFailed { .. } => retry(),
        // A garbled 200 on a read is transient; on a submission the client has already turned
        // it into an unknown outcome.
        ApiError::UnexpectedFormat { .. } => retry(),
        _ if error.is_transient() => retry(),
        // Local file errors, unknown codes, odd statuses: retry with backoff until the item's
        // attempts run out; then it is `failed` with this error.
        _ => retry(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(kind: ApiErrorKind, code: i64, status: u16, retry_after: Option<u64>) -> ApiError {
        ApiError::Api {
            kind,
            code,
            message: format!("server says {code}"),
            status,
            retry_after: retry_after.map(Duration::from_secs),
        }
    }

    const FAST: Backoff = Backoff {
        base: Duration::from_secs(30),
        cap: Duration::from_secs(6 * 3600),
    };

    #[derive(Debug, PartialEq)]
    enum Expect {
        Retry,
        RetryAfter(u64),
        Unknown,
        Reject,
        Pause(PauseReason),
        Fatal,
    }

    fn shape(action: &Action) -> Expect {
        match action {
            Action::Retry { after } if after.as_secs() >= 1 && after.subsec_nanos() == 0 => {
                Expect::RetryAfter(after.as_secs())
            }
            Action::Retry { .. } => Expect::Retry,
            Action::UnknownOutcome => Expect::Unknown,
            Action::Reject { .. } => Expect::Reject,
            Action::Pause { reason, .. } => Expect::Pause(*reason),
            Action::Fatal { .. } => Expect::Fatal,
        }
    }

    #[test]
    fn every_error_class_maps_to_its_action_for_each_kind_of_call() {
        use ApiErrorKind as K;
        use Call::*;
        use Expect as E;
        let unreachable = || ApiError::Unreachable {
            url: "u".into(),
            detail: "refused".into(),
        };
        let html200 = || ApiError::UnexpectedFormat {
            status: 200,
            snippet: "<html>".into(),
        };
        let html502 = || ApiError::UnexpectedFormat {
            status: 502,
            snippet: "<html>".into(),
        };
        let unknown = || ApiError::UnknownOutcome {
            detail: "reset".into(),
            status: None,
        };
        #[rustfmt::skip]
        let table: Vec<(ApiError, Call, Expect)> = vec![
            // transport
            (unreachable(), Submit, E::Retry),
            (unreachable(), Read, E::Retry),
            (ApiError::Timeout { after: Duration::from_secs(1) }, Read, E::Retry),
            (ApiError::Transport { detail: "reset".into() }, Download, E::Retry),
            (ApiError::Truncated { expected: 10, received: 5 }, Download, E::Retry),
            (unknown(), Submit, E::Unknown),
            // HTTP statuses
            (api(K::Other, 1, 429, Some(7)), Submit, E::RetryAfter(7)),
            (api(K::Other, 1, 429, Some(7)), Read, E::RetryAfter(7)),
            (api(K::Other, 1, 429, None), Read, E::Retry),
            (api(K::InternalServerError, 6, 500, None), Read, E::Retry),
            (api(K::Other, 0, 503, None), Submit, E::Retry),
            (html200(), Read, E::Retry),
            (html502(), Download, E::Retry),
            // item-permanent
            (api(K::MissingParameter, 2, 400, None), Submit, E::Reject),
            (api(K::InvalidParameter, 3, 400, None), Submit, E::Reject),
            (api(K::PermissionDenied, 7, 403, None), Submit, E::Reject),
            (api(K::InvalidParameter, 3, 404, None), Read, E::Fatal),
            (api(K::InvalidParameter, 3, 400, None), Download, E::Fatal),
            (api(K::PermissionDenied, 7, 403, None), Download, E::Fatal),
            (api(K::UnknownEndpoint, 8, 404, None), Download, E::Fatal),
            (ApiError::TooLarge { limit: 10 }, Download, E::Fatal),
            // global pauses
            (api(K::ServerOffline, 5, 503, None), Submit, E::Pause(PauseReason::Maintenance)),
            (api(K::ServerOffline, 5, 503, None), Read, E::Pause(PauseReason::Maintenance)),
            (api(K::InvalidApiKey, 4, 403, None), Read, E::Pause(PauseReason::InvalidApiKey)),
            (ApiError::UnexpectedFormat { status: 403, snippet: "denied".into() }, Read,
             E::Pause(PauseReason::InvalidApiKey)),
            (api(K::TermsNotAccepted, 1, 400, None), Submit, E::Pause(PauseReason::TermsNotAccepted)),
            (api(K::QuotaExceeded, 1, 429, Some(60)), Submit, E::Pause(PauseReason::QuotaExceeded)),
        ];
        for (error, call, expected) in table {
            let action = classify(&error, call, 0, FAST);
            assert_eq!(
                shape(&action),
                expected,
                "{error} as {call:?} gave {action:?}"
            );
        }
    }

    #[test]
    fn a_rejection_carries_the_servers_message() {
        let error = ApiError::Api {
            kind: ApiErrorKind::PermissionDenied,
            code: 7,
            message: "URL analysis is not allowed for this account".into(),
            status: 403,
            retry_after: None,
        };
        assert_eq!(
            classify(&error, Call::Submit, 0, FAST),
            Action::Reject {
                reason: "URL analysis is not allowed for this account".into()
            }
        );
    }

    #[test]
    fn backoff_grows_exponentially_is_capped_and_never_below_the_floor() {
        let b = Backoff {
            base: Duration::from_secs(30),
            cap: Duration::from_secs(3600),
        };
        assert_eq!(b.ceiling(0), Duration::from_secs(30));
        assert_eq!(b.ceiling(3), Duration::from_secs(240));
        assert_eq!(b.ceiling(20), Duration::from_secs(3600));
        assert_eq!(b.ceiling(u32::MAX), Duration::from_secs(3600));
        for attempts in 0..15 {
            let d = b.delay(attempts);
            assert!(d >= MIN_DELAY && d <= b.ceiling(attempts), "{d:?}");
        }
        let zero = Backoff {
            base: Duration::ZERO,
            cap: Duration::ZERO,
        };
        assert_eq!(zero.delay(5), MIN_DELAY);
    }

    #[test]
    fn retry_after_wins_over_the_backoff() {
        let error = api(ApiErrorKind::Other, 1, 429, Some(42));
        assert_eq!(
            classify(&error, Call::Read, 11, FAST),
            Action::Retry {
                after: Duration::from_secs(42)
            }
        );
    }
}
