//! Test support shared by the integration tests and the demo: a temporary data directory and
//! drop folder, the simulator on loopback, a fast configuration, and `wait_until`.
//!
//! Public (not `cfg(test)`) because integration tests and `jbxd demo` link the library as users
//! do; nothing in the daemon uses it.

use std::future::Future;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::api::{ApiKey, ClientSettings, JoeClient, RetryPolicy};
use crate::app::App;
use crate::config::Config;
use crate::db::Db;
use crate::simulator::{SimConfig, Simulator};

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
    c.poll.expected_analysis_secs = 0;
    c.poll.min_interval_secs = 0;
    c.poll.max_interval_secs = 1;
    c.health.schedule = "* * * * * *".into();
    c.health.min_free_disk_mb = 1;
    c
}

/// The API client settings a daemon built from `config` uses, with fast retries.
pub fn client_for(config: &Config) -> JoeClient {
    let mut s = ClientSettings::new(&config.api.url, ApiKey::new(TEST_API_KEY).unwrap());
    s.accept_tac = config.api.accept_tac;
    s.request_timeout = Duration::from_secs(config.api.request_timeout_secs);
    s.max_download_bytes = Some(config.reports.max_size);
    s.retry = RetryPolicy {
        max_attempts: config.api.attempts,
        base: Duration::from_millis(20),
        cap: Duration::from_millis(200),
        max_retry_after: Duration::from_secs(5),
    };
    JoeClient::new(s).expect("client builds")
}

/// A temporary directory, a running simulator and an [`App`] wired to both.
pub struct TestEnv {
    pub dir: tempfile::TempDir,
    pub sim: Simulator,
    pub app: App,
}

impl TestEnv {
    /// Starts the simulator (with the test key) and opens a fresh database; `tweak` adjusts the
    /// fast configuration before anything is created.
    pub async fn start(sim_config: SimConfig, tweak: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let sim = Simulator::start(SimConfig {
            api_key: TEST_API_KEY.into(),
            ..sim_config
        })
        .await
        .expect("simulator starts");
        let mut config = fast_config(dir.path(), &sim.api_url());
        tweak(&mut config);
        std::fs::create_dir_all(&config.drop_dir).expect("drop dir");
        std::fs::create_dir_all(&config.data_dir).expect("data dir");
        let db = Db::open(&config.db_path()).await.expect("db opens");
        let client = client_for(&config);
        let app = App::new(config, db, client);
        app.store.prepare().expect("storage tree");
        Self { dir, sim, app }
    }

    pub fn drop_dir(&self) -> &Path {
        &self.app.config.drop_dir
    }
}

/// Polls `condition` every 20 ms until it holds or `timeout` passes; returns whether it held.
pub async fn wait_until<F, Fut>(timeout: Duration, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if condition().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
