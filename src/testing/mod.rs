//! What `jbxd demo` and the tests share: the sentinel API key, a fast configuration and the
//! client a daemon built from it uses. The test harness itself (a temporary environment with the
//! simulator, stepping the workers, the reliability invariant check of the crash tests) is in
//! [`harness`], compiled only for tests (`cfg(test)` or the `test-support` feature, which the
//! integration tests and benchmarks turn on): it is not part of the shipped binary.

use std::path::Path;

use crate::api::{ApiKey, JoeClient};
use crate::config::{self as cfg, Config};

#[cfg(any(test, feature = "test-support"))]
mod harness;
#[cfg(any(test, feature = "test-support"))]
pub use harness::*;

/// The API key every test environment uses: a sentinel, so tests can prove it never leaks.
pub const TEST_API_KEY: &str = "JBXD-SENTINEL-7f3c9a4e-never-log-me";

/// A configuration rooted in `root` (data in `root/data`, drop folder `root/drop`) with timings
/// shrunk for tests: 0 means "as fast as the floor allows" for every delay.
pub fn fast_config(root: &Path, api_url: &str) -> Config {
    let mut c = Config {
        data_dir: root.join("data"),
        drop_dir: root.join("drop"),
        ..Config::default()
    };
    c.api.url = api_url.to_owned();
    c.api.accept_tac = true;
    c.api.attempts = 3;
    c.api.request_timeout_secs = 10;
    c.intake.settle_ms = 200;
    c.intake.scan_interval_secs = 1;
    c.intake.url_poll_ms = 50;
    c.intake.max_file_size = 64 * 1024 * 1024;
    c.pipeline.retry_base_secs = 0;
    c.pipeline.retry_cap_secs = 1;
    c.pipeline.reconcile_grace_secs = 0;
    c.pipeline.reconcile_window_secs = 0;
    c.poll.expected_analysis_secs = 0;
    c.poll.min_interval_secs = 0;
    c.poll.max_interval_secs = 1;
    c.health.schedule = "* * * * * *".into();
    c.health.min_free_disk_mb = 1;
    c
}

/// The API client a daemon built from `config` uses (the same resolver), with fast retries;
/// with `reports.encrypt = true` it asks for encrypted analyses with the configured report
/// password, as `jbxd run`'s client does.
pub fn client_for(config: &Config) -> JoeClient {
    let key = ApiKey::new(TEST_API_KEY).unwrap();
    let mut settings = cfg::settings(
        &config.api,
        key,
        cfg::Pace::Hurried,
        Some(config.reports.max_size),
    );
    if config.reports.encrypt {
        settings.encrypt_password =
            cfg::report_password(config).expect("the test's report password resolves");
    }
    JoeClient::new(settings).expect("client builds")
}
