//! An embedded Joe Sandbox REST API v2 simulator, faithful enough that a client passing against
//! it should pass against the real service, and scriptable enough to test every failure jbxd must
//! survive. It also serves the official Python client (jbxapi 3.25.0).
//!
//! # Protocol
//!
//! Every endpoint is `POST <base>/v2/<group>/<action>` under both bases, `/api` (Cloud) and
//! `/joesandbox/index.php/api` (on-premise); trailing and doubled slashes are tolerated. Bodies
//! are urlencoded or multipart forms; uploaded samples are streamed to disk while being hashed.
//! Replies are `{"data": ...}` (plus `"pagination": {"next": ...}` only while more pages exist)
//! or `{"errors": [{"code", "message"}]}` with an HTTP status ≥ 400.
//!
//! # Decisions where the API notes leave room
//!
//! * **Order of checks**: path → method → body → `apikey` → maintenance → endpoint. A non-POST
//!   request gets HTTP 405 with code 8, an unknown endpoint HTTP 404 with code 8 (before the key
//!   is checked, as routing comes first). A missing key is code 2 (HTTP 400), a wrong key code 4
//!   (HTTP 403). During maintenance `server/online` answers `{"online": false}` and every other
//!   endpoint code 5 with HTTP 503.
//! * **HTTP statuses**: code 1 quota → 429; code 1 terms not accepted (cloud mode without
//!   `accept-tac=1`) → 400 with `You have to agree to the Terms and Conditions!`; code 2 → 400;
//!   code 3 → 400 for bad parameters, but 404 for ids that do not exist or were deleted
//!   (`Submission not found.`, `Analysis not found.`); code 4 → 403; code 5 → 503; code 6 → 500;
//!   code 7 → 403; code 8 → 404.
//! * **Downloads** of an analysis that is not finished: code 3, HTTP 400,
//!   `Analysis is not finished yet.`. Names: `report-<analysisid>.<ext>`, `report-<md5>.xml` for the
//!   `xml` type of file analyses, `class-<md5>.html`, `dump-<md5>.pcap` (`dump-<id>.pcap` for
//!   URLs), `<type>-<webid>.zip` for archives, `<webid>.dontrun` for `sample`, the cookbook name
//!   for `cookbook`. Always `Content-Disposition: attachment; filename="<name>";`.
//! * **Report shapes** follow real reports (see `reports/full.rs` and `reports/incident.rs` for
//!   the trees). Where real ones are not known, the simulator chooses: light reports drop the
//!   per-process call lists; an empty flagged container is `null` in plain `json` too; an IR
//!   report without signatures has `signatures: null`; `classxml`/`clusterxml` are the light
//!   report with their own `reporttype`, and `iocxml`/`iocjson` the indicator sections only.
//! * **Empty input**: a 0-byte `sample`, an archive without files, and a chunked submission that
//!   has received no chunk (jbxapi sends `chunk-count` 0 and nothing else for a 0-byte file)
//!   are `finished` at once with `most_relevant_analysis: null` and `analyses: []`. A first chunk
//!   arriving later still reopens such a submission. A chunked upload that stopped midway stays
//!   `accepted` forever and can be deleted.
//! * **`submission/list`** items are `{"submission_id", "name", "status", "time"}`, newest first,
//!   always paginated. `analysis/list` items are `{"webid"}` stubs, newest first, paginated only
//!   with `pagination=1`. Neither list applies `search_lag`; `analysis/search` does.
//! * **`sample-url`** cannot be fetched: it is analysed like a URL (keyword verdict, empty
//!   hashes) but with `default.jbs`. `command-line` and cookbook-only submissions have empty
//!   hashes too. `systems[]` must name systems from `server/systems` (code 3 otherwise).
//! * **Latency faults** act first and delay the reply, so a client that times out has still
//!   created the submission (the duplicate-submission hazard of jbxapi's retries).
//! * Cookbook endpoints, Joe Lab and Reverser analyses are not simulated (code 8).
//!
//! # Control API
//!
//! On the same listener, outside the API paths, without an API key (JSON in and out):
//!
//! | request | effect |
//! | --- | --- |
//! | `GET /_sim/state` | mode, counts, queue size, clock offset, maintenance flag, active faults |
//! | `GET /_sim/log` | every API request as a [`RequestRecord`] |
//! | `GET /_sim/faults` | the active [`FaultRule`]s |
//! | `POST /_sim/faults` | add a [`FaultRule`], e.g. `{"endpoint": "submission/new", "fault": {"kind": "reset_after_body"}, "times": 1}` |
//! | `DELETE /_sim/faults` | remove every rule |
//! | `POST /_sim/clock` | `{"advance_seconds": N}`: move the virtual clock forward |
//! | `POST /_sim/maintenance` | `{"on": true}` / `{"on": false}` |

mod archive;
mod catalog;
mod clock;
mod conn;
mod control;
mod endpoints;
mod envelope;
mod faults;
mod form;
mod http;
mod intake;
mod pagination;
mod reports;
mod state;
mod verdict;
mod views;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use faults::{Fault, FaultController, FaultRule};
pub use reports::write_report_document;

use clock::SimClock;
use state::Store;

/// Which flavour of the service to imitate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum SimMode {
    /// Joe Sandbox Cloud: quotas, `account/info`, `accept-tac=1` required, no `priority`.
    #[default]
    #[value(name = "cloud")]
    Cloud,
    /// On-premise: no `account/info`, no `delete-after-days`, `url-reputation` or
    /// `proxy-mode-config`.
    #[value(name = "onprem")]
    OnPrem,
}

impl SimMode {
    fn as_str(self) -> &'static str {
        match self {
            SimMode::Cloud => "cloud",
            SimMode::OnPrem => "onprem",
        }
    }
}

/// How the simulator behaves. Build with `..SimConfig::default()`.
#[derive(Clone, Debug)]
pub struct SimConfig {
    pub listen: SocketAddr,
    pub api_key: String,
    pub mode: SimMode,
    /// Seconds (real plus virtual) from complete upload to `finished`; 0 = finished at once.
    pub analysis_seconds: u64,
    /// Where uploaded samples are kept; a temporary directory owned by the simulator if `None`.
    pub data_dir: Option<PathBuf>,
    /// Page size of `submission/list` and paginated `analysis/list`.
    pub page_size: usize,
    /// How long a new submission's analyses stay invisible to `analysis/search`.
    pub search_lag: Duration,
    /// `false` refuses `chunked-sample` with `Unknown parameter chunked-sample.` (code 3), like
    /// older on-premise servers, to exercise the client's fallback to a single upload.
    pub chunked_upload: bool,
    /// Cloud mode: submissions per day; `None` = unlimited.
    pub daily_quota: Option<u64>,
    /// Cloud mode: submissions per month; `None` = unlimited.
    pub monthly_quota: Option<u64>,
    /// Benchmarks: bytes of filler appended (as a stream) to every `html` report.
    pub html_padding_bytes: u64,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            api_key: "sim-api-key".to_owned(),
            mode: SimMode::Cloud,
            analysis_seconds: 0,
            data_dir: None,
            page_size: 100,
            search_lag: Duration::ZERO,
            chunked_upload: true,
            daily_quota: Some(1000),
            monthly_quota: Some(10000),
            html_padding_bytes: 0,
        }
    }
}

/// One API request as the simulator saw it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestRecord {
    /// Position in the log, from 0.
    pub seq: u64,
    /// `group/action` (e.g. `submission/new`), or the raw path for requests outside the API.
    pub endpoint: String,
    pub method: String,
    /// The HTTP status sent; `None` when the connection was reset instead.
    pub http_status: Option<u16>,
    /// The kind of fault applied (`"reset_after_body"`, ...), if any.
    pub fault: Option<String>,
    /// The `comments` field of `submission/new`.
    pub comments: Option<String>,
    /// The submission this request created, if any.
    pub submission_id: Option<String>,
    /// Whether the request body was read to its end.
    pub body_complete: bool,
    /// Body bytes received (for multipart: the parts' content).
    pub body_bytes: u64,
    /// Simulated time of arrival, in milliseconds since the simulator started.
    pub at_ms: u64,
}

impl RequestRecord {
    /// Whether this request went to `endpoint`: how code outside `api` and the simulator
    /// reads the log without naming the vendor's paths.
    pub fn is(&self, endpoint: crate::api::Endpoint) -> bool {
        self.endpoint == endpoint.as_str()
    }
}

/// A submission present on the simulated server (see [`Simulator::live_submissions`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveSubmission {
    pub submission_id: String,
    /// The file name (or URL) it was made with.
    pub name: String,
    /// Its `comments` parameter (jbxd's attempt marker).
    pub comments: String,
    /// How many analyses it has (0 for a chunked upload still waiting for its chunks).
    pub analyses: usize,
}

/// State shared by every request handler.
#[derive(Debug)]
pub(crate) struct App {
    pub(crate) config: SimConfig,
    pub(crate) clock: SimClock,
    pub(crate) faults: FaultController,
    pub(crate) upload_dir: PathBuf,
    store: Mutex<Store>,
    maintenance: AtomicBool,
    log: Mutex<Vec<RequestRecord>>,
    next_seq: AtomicU64,
    /// Keeps the default data directory alive as long as the app.
    _temp_dir: Option<tempfile::TempDir>,
}

impl App {
    fn new(config: SimConfig) -> std::io::Result<Self> {
        let (upload_dir, temp_dir) = match &config.data_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir)?;
                (dir.clone(), None)
            }
            None => {
                let dir = tempfile::Builder::new().prefix("jbxd-sim-").tempdir()?;
                (dir.path().to_path_buf(), Some(dir))
            }
        };
        Ok(Self {
            config,
            clock: SimClock::new(),
            faults: FaultController::default(),
            upload_dir,
            store: Mutex::new(Store::default()),
            maintenance: AtomicBool::new(false),
            log: Mutex::new(Vec::new()),
            next_seq: AtomicU64::new(0),
            _temp_dir: temp_dir,
        })
    }

    /// The store lock. Never held across an `.await`; a poisoned lock is still usable because
    /// every mutation leaves the store consistent.
    pub(crate) fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn analysis_time(&self) -> Duration {
        Duration::from_secs(self.config.analysis_seconds)
    }

    /// The `time` shown on analyses whose data was complete at `started`: when the sandbox
    /// picked them up (the move to `submitted`), at most 5 s later, so the submission time
    /// precedes the analysis time by a few seconds as on the real service.
    pub(crate) fn analysis_start_time(
        &self,
        started: clock::SimInstant,
    ) -> chrono::DateTime<chrono::Local> {
        let pickup = (self.analysis_time() / 10).min(Duration::from_secs(5));
        self.clock.wall(started + pickup)
    }

    pub(crate) fn in_maintenance(&self) -> bool {
        self.maintenance.load(Ordering::SeqCst)
    }

    pub(crate) fn set_maintenance(&self, on: bool) {
        self.maintenance.store(on, Ordering::SeqCst);
    }

    pub(crate) fn next_seq(&self) -> u64 {
        self.next_seq.fetch_add(1, Ordering::SeqCst)
    }

    pub(crate) fn push_record(&self, record: RequestRecord) {
        let mut log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        // Requests finish out of order; keep the log ordered by arrival.
        let at = log.partition_point(|existing| existing.seq < record.seq);
        log.insert(at, record);
    }

    pub(crate) fn request_log(&self) -> Vec<RequestRecord> {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// A running simulator. Dropping it stops the server; [`Simulator::shutdown`] waits for that.
pub struct Simulator {
    app: Arc<App>,
    addr: SocketAddr,
    cancel: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl Simulator {
    /// Bind the listener and serve in a background task; returns as soon as it is listening.
    pub async fn start(config: SimConfig) -> std::io::Result<Simulator> {
        let listener = tokio::net::TcpListener::bind(config.listen).await?;
        let addr = listener.local_addr()?;
        let app = Arc::new(App::new(config)?);
        let cancel = CancellationToken::new();
        let router = http::router(Arc::clone(&app));
        let shutdown = cancel.clone();
        let task = tokio::spawn(async move {
            let service = router.into_make_service_with_connect_info::<conn::ConnHandle>();
            let served = axum::serve(conn::KillableListener::new(listener), service)
                .with_graceful_shutdown(async move { shutdown.cancelled().await })
                .await;
            if let Err(err) = served {
                tracing::error!(error = %err, "simulator server failed");
            }
        });
        tracing::info!(%addr, mode = app.config.mode.as_str(), "simulator started");
        Ok(Simulator {
            app,
            addr,
            cancel,
            task: Some(task),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The Cloud-style base URL, `http://127.0.0.1:PORT/api`.
    pub fn api_url(&self) -> String {
        format!("http://{}/api", self.addr)
    }

    /// The on-premise-style base URL, `http://127.0.0.1:PORT/joesandbox/index.php/api`.
    pub fn onprem_api_url(&self) -> String {
        format!("http://{}/joesandbox/index.php/api", self.addr)
    }

    pub fn faults(&self) -> &FaultController {
        &self.app.faults
    }

    /// Move the virtual clock forward: states progress as if this much time had passed.
    pub fn advance_clock(&self, by: Duration) {
        self.app.clock.advance(by);
    }

    pub fn set_maintenance(&self, on: bool) {
        self.app.set_maintenance(on);
    }

    pub fn request_log(&self) -> Vec<RequestRecord> {
        self.app.request_log()
    }

    /// Ids of every submission created, in order (deleted ones included).
    pub fn accepted_submissions(&self) -> Vec<String> {
        self.app.store().accepted_submissions()
    }

    /// Every submission that exists now (deleted ones are gone), oldest first: what a test
    /// counts to prove "at most one live submission per item".
    pub fn live_submissions(&self) -> Vec<LiveSubmission> {
        let store = self.app.store();
        store
            .submissions
            .values()
            .map(|s| LiveSubmission {
                submission_id: s.id.to_string(),
                name: s.name.clone(),
                comments: s.options.comments.clone(),
                analyses: s.webids.len(),
            })
            .collect()
    }

    /// Stop serving and wait (up to 5 s) for open connections to finish.
    pub async fn shutdown(mut self) {
        self.cancel.cancel();
        if let Some(task) = self.task.take() {
            let abort = task.abort_handle();
            if tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
        tracing::info!(addr = %self.addr, "simulator stopped");
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// `jbxd simulate`: start, announce the address on stdout, serve until `cancel`, shut down.
pub async fn run(config: SimConfig, cancel: CancellationToken) -> anyhow::Result<()> {
    let listen = config.listen;
    let simulator = Simulator::start(config)
        .await
        .map_err(|err| anyhow::anyhow!("cannot start the simulator on {listen}: {err}"))?;
    let app = &simulator.app;
    println!(
        "jbxd simulator listening on {} (mode {}, api key {})",
        simulator.api_url(),
        app.config.mode.as_str(),
        app.config.api_key
    );
    let base = match app.config.mode {
        SimMode::Cloud => simulator.api_url(),
        SimMode::OnPrem => simulator.onprem_api_url(),
    };
    println!(
        "jbxapi: export JBX_API_URL={base} JBX_API_KEY={} JBX_ACCEPT_TAC=1, then e.g. `jbxapi server online`",
        app.config.api_key
    );
    cancel.cancelled().await;
    simulator.shutdown().await;
    Ok(())
}
