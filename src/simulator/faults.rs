//! Fault injection: rules that make chosen API requests misbehave.
//!
//! Rules are checked in insertion order for every API request; the first rule whose endpoint
//! matches (and whose fault makes sense for that endpoint) decides. `skip` lets the first N
//! matching requests through untouched, `times` limits how often the fault fires before the rule
//! retires itself.

use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

/// One way a request can go wrong.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Fault {
    /// Process the request, then wait this long before sending the (normal) reply — like a server
    /// that acted but answers slowly, which is what makes client timeouts dangerous for submits.
    Latency { ms: u64 },
    /// Answer with the Joe JSON error envelope, this HTTP status and code, without acting.
    Error {
        http_status: u16,
        code: i64,
        message: String,
    },
    /// HTTP 429 with a JSON error body (code 1); `Retry-After` is sent verbatim when given.
    RateLimit { retry_after: Option<String> },
    /// An HTML page (for example an nginx 502 page) instead of JSON.
    NonJson { http_status: u16 },
    /// Drop the connection with a TCP reset before reading the body; nothing happens on the server.
    ResetBeforeBody,
    /// Read the whole body and perform the action (e.g. create the submission), then drop the
    /// connection with a TCP reset instead of answering.
    ResetAfterBody,
    /// `analysis/download` only: announce the full `Content-Length` but send only the first
    /// `bytes` bytes, then abort the connection.
    TruncateDownload { bytes: u64 },
    /// `analysis/download` only: send the headers at once, then the body `bytes` bytes at a
    /// time, one piece every `every_ms` (a slowloris server). `bytes: 0` sends no body at all
    /// after the headers: a full stall.
    SlowDownload { bytes: u64, every_ms: u64 },
    /// `analysis/download` only: put this file name verbatim into `Content-Disposition`
    /// (see the module docs for how a full header value or an empty name is treated).
    HostileFilename { filename: String },
}

impl Fault {
    /// Short name used in the request log.
    pub fn kind(&self) -> &'static str {
        match self {
            Fault::Latency { .. } => "latency",
            Fault::Error { .. } => "error",
            Fault::RateLimit { .. } => "rate_limit",
            Fault::NonJson { .. } => "non_json",
            Fault::ResetBeforeBody => "reset_before_body",
            Fault::ResetAfterBody => "reset_after_body",
            Fault::TruncateDownload { .. } => "truncate_download",
            Fault::SlowDownload { .. } => "slow_download",
            Fault::HostileFilename { .. } => "hostile_filename",
        }
    }

    /// Download-shaping faults only make sense where a download is answered.
    fn applies_to(&self, endpoint: &str) -> bool {
        match self {
            Fault::TruncateDownload { .. }
            | Fault::SlowDownload { .. }
            | Fault::HostileFilename { .. } => endpoint == "analysis/download",
            _ => true,
        }
    }
}

/// A fault plus where and how often it applies.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct FaultRule {
    /// Endpoint without base and version, e.g. `"submission/new"`; `None` matches every API
    /// endpoint.
    #[serde(default)]
    pub endpoint: Option<String>,
    pub fault: Fault,
    /// How many times the fault fires; `None` = until cleared.
    #[serde(default)]
    pub times: Option<u32>,
    /// Let this many matching requests through before the fault starts firing.
    #[serde(default)]
    pub skip: u32,
}

impl FaultRule {
    /// A rule that fires on every matching request until cleared.
    pub fn always(endpoint: Option<&str>, fault: Fault) -> Self {
        Self {
            endpoint: endpoint.map(str::to_owned),
            fault,
            times: None,
            skip: 0,
        }
    }

    /// A rule that fires on the next `times` matching requests.
    pub fn times(endpoint: Option<&str>, fault: Fault, times: u32) -> Self {
        Self {
            times: Some(times),
            ..Self::always(endpoint, fault)
        }
    }

    fn matches(&self, endpoint: &str) -> bool {
        let endpoint_ok = self
            .endpoint
            .as_deref()
            .is_none_or(|wanted| wanted.trim_matches('/') == endpoint);
        endpoint_ok && self.fault.applies_to(endpoint)
    }
}

/// The shared, thread-safe set of active fault rules.
#[derive(Clone, Debug, Default)]
pub struct FaultController {
    rules: Arc<Mutex<Vec<FaultRule>>>,
}

impl FaultController {
    pub fn add(&self, rule: FaultRule) {
        self.lock().push(rule);
    }

    pub fn clear(&self) {
        self.lock().clear();
    }

    /// The rules still active, with their remaining `times`/`skip` counters.
    pub fn rules(&self) -> Vec<FaultRule> {
        self.lock().clone()
    }

    /// Decide the fault for one request, updating the counters of the rule that matched.
    pub(crate) fn take(&self, endpoint: &str) -> Option<Fault> {
        let mut rules = self.lock();
        let index = rules.iter().position(|rule| rule.matches(endpoint))?;
        let rule = &mut rules[index];
        if rule.skip > 0 {
            rule.skip -= 1;
            return None;
        }
        let fault = rule.fault.clone();
        if let Some(times) = rule.times.as_mut() {
            *times = times.saturating_sub(1);
            if *times == 0 {
                rules.remove(index);
            }
        }
        Some(fault)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<FaultRule>> {
        self.rules.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_fault() -> Fault {
        Fault::Error {
            http_status: 500,
            code: 6,
            message: "Internal error.".into(),
        }
    }

    #[test]
    fn a_rule_with_times_retires_after_firing_that_often() {
        let faults = FaultController::default();
        faults.add(FaultRule::times(Some("submission/new"), error_fault(), 2));
        assert!(faults.take("submission/new").is_some());
        assert!(faults.take("submission/new").is_some());
        assert!(faults.take("submission/new").is_none());
        assert!(faults.rules().is_empty());
    }

    #[test]
    fn skip_lets_the_first_matching_requests_through() {
        let faults = FaultController::default();
        faults.add(FaultRule {
            skip: 1,
            ..FaultRule::times(None, error_fault(), 1)
        });
        assert!(faults.take("server/online").is_none());
        assert!(faults.take("server/online").is_some());
        assert!(faults.take("server/online").is_none());
    }

    #[test]
    fn rules_only_match_their_endpoint_and_download_faults_only_downloads() {
        let faults = FaultController::default();
        faults.add(FaultRule::always(
            Some("analysis/info"),
            Fault::Latency { ms: 5 },
        ));
        faults.add(FaultRule::always(
            None,
            Fault::TruncateDownload { bytes: 10 },
        ));
        assert_eq!(faults.take("server/info"), None);
        assert_eq!(faults.take("analysis/info"), Some(Fault::Latency { ms: 5 }));
        assert_eq!(
            faults.take("analysis/download"),
            Some(Fault::TruncateDownload { bytes: 10 })
        );
    }

    #[test]
    fn a_slow_download_only_shapes_downloads() {
        let faults = FaultController::default();
        let slow = Fault::SlowDownload {
            bytes: 1,
            every_ms: 10_000,
        };
        faults.add(FaultRule::always(None, slow.clone()));
        assert_eq!(faults.take("analysis/info"), None);
        assert_eq!(faults.take("analysis/download"), Some(slow.clone()));
        assert_eq!(slow.kind(), "slow_download");
        let json = r#"{"fault":{"kind":"slow_download","bytes":0,"every_ms":5}}"#;
        let rule: FaultRule = serde_json::from_str(json).expect("valid rule");
        assert_eq!(
            rule.fault,
            Fault::SlowDownload {
                bytes: 0,
                every_ms: 5
            }
        );
    }

    #[test]
    fn rules_are_checked_in_insertion_order() {
        let faults = FaultController::default();
        faults.add(FaultRule::times(None, Fault::ResetBeforeBody, 1));
        faults.add(FaultRule::always(None, Fault::ResetAfterBody));
        assert_eq!(faults.take("x/y"), Some(Fault::ResetBeforeBody));
        assert_eq!(faults.take("x/y"), Some(Fault::ResetAfterBody));
    }

    #[test]
    fn fault_rules_round_trip_through_json() {
        let json = r#"{"endpoint":"submission/new","fault":{"kind":"rate_limit","retry_after":"30"},"times":1}"#;
        let rule: FaultRule = serde_json::from_str(json).expect("valid rule");
        assert_eq!(rule.skip, 0);
        assert_eq!(
            rule.fault,
            Fault::RateLimit {
                retry_after: Some("30".into())
            }
        );
    }
}
