//! Secrets from the user's vault (issue 14) and the report password (issue 10 §4), through the
//! real binary where the contract is the process (exit 78, `config check`, SIGHUP, what leaks)
//! and in-process where it is the health check. The vault is `tests/fixtures/fake-vault.sh`.
//! The sentinel scan extends RELIABILITY.md case 97 (`secrets.rs`) to the command and the
//! report-password paths.

use crate::common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use jbxd::api::{ApiKey, ClientSettings, JoeClient, RetryPolicy};
use jbxd::app::{App, PauseReason};
use jbxd::daemon::health;
use jbxd::db::{self, Db};
use jbxd::simulator::SimConfig;
use jbxd::testing::TestEnv;
use jbxd::testing::{TEST_API_KEY, wait_until};

const VAULT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/fake-vault.sh");
const PASSWORD_SENTINEL: &str = "JBXD-SENTINEL-report-password-5d1e";

#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

async fn jbxd(args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut command = common::jbxd_command();
    command.args(args);
    for (name, value) in env {
        command.env(name, value);
    }
    let output = command.output().await.expect("jbxd runs");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn secret_file(path: &Path, content: &str) -> PathBuf {
    std::fs::write(path, format!("{content}\n")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path.to_owned()
}

fn toml_list(items: &[&str]) -> String {
    let quoted: Vec<String> = items.iter().map(|i| format!("{i:?}")).collect();
    format!("[{}]", quoted.join(", "))
}

/// A configuration in `dir` whose API key comes from the fake vault's `args`.
fn config_with_key_command(dir: &Path, api_url: &str, args: &[&str], extra: &str) -> PathBuf {
    let mut argv = vec![VAULT];
    argv.extend_from_slice(args);
    common::write_config(
        dir,
        &dir.join("data"),
        &dir.join("drop"),
        &format!(
            "[api]\nurl = {api_url:?}\naccept_tac = true\nkey_command = {}\n{extra}",
            toml_list(&argv)
        ),
    )
}

fn check_args(config: &Path) -> [&str; 4] {
    ["--config", config.to_str().unwrap(), "config", "check"]
}

#[tokio::test(flavor = "multi_thread")]
async fn config_check_names_the_source_of_each_secret_and_never_a_value() {
    let dir = tempfile::tempdir().unwrap();
    let key_file = secret_file(&dir.path().join("vault-entry"), TEST_API_KEY);
    let password = secret_file(&dir.path().join("report_password"), PASSWORD_SENTINEL);
    let config = config_with_key_command(
        dir.path(),
        "http://127.0.0.1:9",
        &["rotate", key_file.to_str().unwrap()],
        &format!(
            "[reports]\nencrypt = true\npassword_file = {:?}\n",
            password.to_str().unwrap()
        ),
    );
    let run = jbxd(&check_args(&config), &[]).await;
    assert_eq!(run.code, 0, "{run:?}");
    for expected in [
        "# key = [set from api.key_command (fake-vault.sh)]",
        "# key_command = (runs fake-vault.sh with 2 argument(s), not shown)",
        &format!(
            "# password = [set from reports.password_file {}]",
            password.display()
        ),
        "encrypt = true",
    ] {
        assert!(run.stdout.contains(expected), "{expected}: {run:?}");
    }
    assert!(
        run.stderr
            .contains("API key: from api.key_command (fake-vault.sh)"),
        "{run:?}"
    );
    assert!(
        run.stderr.contains(&format!(
            "report password: from reports.password_file {}",
            password.display()
        )),
        "{run:?}"
    );
    for secret in [TEST_API_KEY, PASSWORD_SENTINEL, key_file.to_str().unwrap()] {
        assert!(!run.stdout.contains(secret), "{secret}: {run:?}");
        assert!(!run.stderr.contains(secret), "{secret}: {run:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_hanging_or_silent_vault_command_is_exit_78_naming_the_key_and_program() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&[&str], &str); 3] = [
        (
            &["fail"],
            "failed (exit status 2): gpg: decryption failed: No secret key",
        ),
        (
            &["hang"],
            "did not finish within 1 s (secrets.command_timeout_secs); it was killed",
        ),
        (&["empty"], "printed nothing on its first line"),
    ];
    for (args, expected) in cases {
        let config = config_with_key_command(
            dir.path(),
            "http://127.0.0.1:9",
            args,
            "[secrets]\ncommand_timeout_secs = 1\n",
        );
        let run = jbxd(&check_args(&config), &[]).await;
        assert_eq!(run.code, 78, "{args:?}: {run:?}");
        assert!(
            run.stderr
                .contains("API key: api.key_command (fake-vault.sh)"),
            "{args:?}: {run:?}"
        );
        assert!(run.stderr.contains(expected), "{args:?}: {run:?}");
        // The decoy the failing mode prints on stdout is never shown.
        assert!(!run.stderr.contains("SENTINEL"), "{args:?}: {run:?}");
        assert!(!run.stdout.contains("SENTINEL"), "{args:?}: {run:?}");
    }
    // `jbxd run` refuses to start the same way, before creating anything.
    let config = config_with_key_command(dir.path(), "http://127.0.0.1:9", &["fail"], "");
    let run = jbxd(&["run", "--config", config.to_str().unwrap()], &[]).await;
    assert_eq!(run.code, 78, "{run:?}");
    assert!(
        run.stderr
            .contains("api.key_command (fake-vault.sh) failed"),
        "{run:?}"
    );
    assert!(!dir.path().join("data").join("jbxd.db").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn encryption_without_a_password_and_a_password_in_the_configuration_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let key = secret_file(&dir.path().join("api_key"), TEST_API_KEY);
    let key_line = format!("[api]\nkey_file = {:?}\n", key.to_str().unwrap());
    for (extra, expected) in [
        ("[reports]\nencrypt = true\n", "`reports.encrypt` ("),
        (
            "[submission.params]\n\"encrypt-with-password\" = \"hunter2-in-clear\"\n",
            "reports.password_file",
        ),
        (
            "[reports]\npassword_file = \"/p\"\npassword_command = [\"pass\"]\n",
            "set only one of reports.password_file",
        ),
    ] {
        let config = common::write_config(
            dir.path(),
            &dir.path().join("data"),
            &dir.path().join("drop"),
            &format!("{key_line}{extra}"),
        );
        let run = jbxd(&check_args(&config), &[]).await;
        assert_eq!(run.code, 78, "{extra}: {run:?}");
        assert!(run.stderr.contains(expected), "{extra}: {run:?}");
        assert!(!run.stderr.contains("hunter2"), "{run:?}");
        if extra.contains("encrypt = true") {
            assert!(run.stderr.contains("needs the report password"), "{run:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn submit_refuses_a_password_in_its_arguments_and_encrypts_with_one_from_a_file() {
    let sim = jbxd::testing::simulator(SimConfig::default()).await;
    let env = [
        ("JBX_API_URL", sim.api_url()),
        ("JBX_API_KEY", TEST_API_KEY.to_owned()),
        ("JBX_ACCEPT_TAC", "1".to_owned()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let old = jbxd(
        &[
            "submit",
            "--encrypt-with-password",
            PASSWORD_SENTINEL,
            "--url",
            "https://example.com/",
        ],
        &env,
    )
    .await;
    assert_eq!(old.code, 2, "{old:?}");
    assert!(
        old.stderr.contains("--encrypt-with-password-file FILE"),
        "{old:?}"
    );
    assert!(!old.stderr.contains(PASSWORD_SENTINEL), "{old:?}");
    assert!(sim.accepted_submissions().is_empty(), "nothing was sent");

    let dir = tempfile::tempdir().unwrap();
    let loose = dir.path().join("loose");
    std::fs::write(&loose, PASSWORD_SENTINEL).unwrap();
    std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o644)).unwrap();
    let refused = jbxd(
        &[
            "submit",
            "--encrypt-with-password-file",
            loose.to_str().unwrap(),
            "--url",
            "https://example.com/",
        ],
        &env,
    )
    .await;
    assert_eq!(refused.code, 78, "{refused:?}");
    assert!(refused.stderr.contains("chmod 600"), "{refused:?}");

    let file = secret_file(&dir.path().join("pw"), PASSWORD_SENTINEL);
    let run = jbxd(
        &[
            "submit",
            "--encrypt-with-password-file",
            file.to_str().unwrap(),
            "--url",
            "https://example.com/",
        ],
        &env,
    )
    .await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(!run.stdout.contains(PASSWORD_SENTINEL) && !run.stderr.contains(PASSWORD_SENTINEL));
    let client = JoeClient::new(ClientSettings::new(
        sim.api_url(),
        ApiKey::new(TEST_API_KEY).unwrap(),
    ))
    .unwrap();
    let ids = sim.accepted_submissions();
    assert_eq!(ids.len(), 1, "{ids:?}");
    let submission = client.submission_info(&ids[0]).await.unwrap();
    let webid = &submission.analyses.as_deref().unwrap_or_default()[0].webid;
    let analysis = client.analysis_info(webid).await.unwrap();
    assert_eq!(analysis.encrypted, Some(true), "{analysis:?}");
}

fn wrong_key_client(app: &App) -> JoeClient {
    let mut s = ClientSettings::new(&app.config.api.url, ApiKey::new("old-key").unwrap());
    s.retry = RetryPolicy::none();
    JoeClient::new(s).unwrap()
}

async fn pause_detail(app: &App, reason: PauseReason) -> Option<String> {
    app.pauses()
        .await
        .unwrap()
        .into_iter()
        .find(|p| p.reason == reason)
        .map(|p| p.detail)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_health_check_rereads_a_rotated_key_after_the_server_rejects_the_old_one() {
    let dir = tempfile::tempdir().unwrap();
    let entry = secret_file(&dir.path().join("vault-entry"), "old-key");
    let argv: Vec<String> = [VAULT, "rotate", entry.to_str().unwrap()]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let env = TestEnv::start(SimConfig::default(), |c| {
        c.api.key_command = Some(argv.clone());
    })
    .await;
    // The daemon started with the key the vault held then, which the server rejects.
    let app = App {
        client: wrong_key_client(&env.app),
        ..env.app.clone()
    };
    let report = health::check_once(&app).await;
    assert_eq!(
        report.get("api_key").unwrap().status,
        health::Status::Failed
    );
    let detail = pause_detail(&app, PauseReason::InvalidApiKey)
        .await
        .expect("paused");
    assert!(
        detail.contains(
            "update the secret that api.key_command (fake-vault.sh) prints; jbxd re-reads it \
             on SIGHUP or at the next health check"
        ),
        "{detail}"
    );
    assert!(!detail.contains("old-key"), "{detail}");
    assert!(!app.may_call_api().await.unwrap());

    // The operator rotates the key in the vault; the next health run picks it up and resumes.
    secret_file(&entry, TEST_API_KEY);
    let report = health::check_once(&app).await;
    assert_eq!(
        report.get("api_key").unwrap().status,
        health::Status::Ok,
        "{report:?}"
    );
    assert_eq!(pause_detail(&app, PauseReason::InvalidApiKey).await, None);
    // Every clone of the client sends the new key.
    let clone = app.client.clone();
    assert!(clone.server_online().await.unwrap());
}

/// A daemon (the real binary) started against the simulator, with the key from the fake
/// vault's `rotate` mode and `extra` configuration.
struct Daemon {
    dir: tempfile::TempDir,
    entry: PathBuf,
    child: tokio::process::Child,
    db: Db,
}

impl Daemon {
    async fn start(api_url: &str, first_key: &str, extra: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let entry = secret_file(&dir.path().join("vault-entry"), first_key);
        std::fs::create_dir_all(dir.path().join("drop")).unwrap();
        let config = config_with_key_command(
            dir.path(),
            api_url,
            &["rotate", entry.to_str().unwrap()],
            &format!(
                "[intake]\nsettle_ms = 200\nurl_poll_ms = 100\n\
                 [pipeline]\nretry_base_secs = 0\nretry_cap_secs = 1\nreconcile_grace_secs = 0\n\
                 [poll]\nexpected_analysis_secs = 0\nmin_interval_secs = 0\nmax_interval_secs = 1\n\
                 {extra}"
            ),
        );
        let child = common::jbxd_command()
            .args(["run", "--config", config.to_str().unwrap()])
            .env("JBXD_LOG", "debug")
            .current_dir(dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let db_path = dir.path().join("data").join("jbxd.db");
        let mut opened = None;
        for _ in 0..1500 {
            if db_path.exists()
                && let Ok(db) = Db::open_existing(&db_path).await
            {
                opened = Some(db);
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let db = opened.expect("the daemon started and migrated its database");
        Self {
            dir,
            entry,
            child,
            db,
        }
    }

    fn pid(&self) -> i32 {
        self.child.id().unwrap() as i32
    }

    fn signal(&self, signal: i32) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.pid(), signal) };
    }

    async fn all_done(&self, count: usize) -> bool {
        let db = self.db.clone();
        wait_until(Duration::from_secs(60), || {
            let db = db.clone();
            async move {
                let items = db::items::list(&db, 10).await.unwrap();
                items.len() == count && items.iter().all(|i| i.state == db::ItemState::Done)
            }
        })
        .await
    }

    async fn stop(self) -> (std::process::Output, tempfile::TempDir) {
        self.db.close().await;
        self.signal(libc::SIGTERM);
        let output = tokio::time::timeout(Duration::from_secs(30), self.child.wait_with_output())
            .await
            .expect("stops after SIGTERM")
            .unwrap();
        (output, self.dir)
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_makes_the_daemon_reread_a_rotated_key_and_resume() {
    let sim = jbxd::testing::simulator(SimConfig::default()).await;
    // A health check that never runs during the test: only SIGHUP can bring the new key.
    let daemon = Daemon::start(
        &sim.api_url(),
        "old-key",
        "[health]\nschedule = \"0 0 0 1 1 *\"\nmin_free_disk_mb = 1\n",
    )
    .await;
    db::url_queue::insert(&daemon.db, "https://example.com/", None)
        .await
        .unwrap();
    // The server rejects the old key: the daemon pauses, using no attempt.
    let db = daemon.db.clone();
    let paused = wait_until(Duration::from_secs(30), || {
        let db = db.clone();
        async move {
            db::health::get_state(&db, "pause:invalid_api_key")
                .await
                .unwrap()
                .is_some()
        }
    })
    .await;
    assert!(paused, "the daemon did not pause on the rejected key");

    secret_file(&daemon.entry, TEST_API_KEY);
    daemon.signal(libc::SIGHUP);
    assert!(
        daemon.all_done(1).await,
        "{:#?}",
        db::items::list(&daemon.db, 10).await
    );
    assert!(
        db::health::get_state(&daemon.db, "pause:invalid_api_key")
            .await
            .unwrap()
            .is_none()
    );
    let (output, _dir) = daemon.stop().await;
    assert_eq!(output.status.code(), Some(0), "SIGHUP did not stop it");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("a new key is in use"), "{stderr}");
}

fn files_below(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            files_below(&path, out);
        } else if kind.is_file() {
            out.push(path);
        }
    }
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// Case 97 for the vault paths: the key from a vault command and the report password from
/// another, the analyses encrypted with it; neither appears in the process's argv or
/// environment, its output with debug logging, the database or any file it left.
#[tokio::test(flavor = "multi_thread")]
async fn the_sentinel_key_and_report_password_from_vault_commands_appear_nowhere() {
    let sim = jbxd::testing::simulator(SimConfig::default()).await;
    let outside = tempfile::tempdir().unwrap();
    let password_entry = secret_file(&outside.path().join("pw-entry"), PASSWORD_SENTINEL);
    let daemon = Daemon::start(
        &sim.api_url(),
        TEST_API_KEY,
        &format!(
            "[health]\nschedule = \"* * * * * *\"\nmin_free_disk_mb = 1\n\
             [reports]\nencrypt = true\npassword_command = {}\n",
            toml_list(&[VAULT, "rotate", password_entry.to_str().unwrap()])
        ),
    )
    .await;
    let drop_dir = daemon.dir.path().join("drop");
    let temp = drop_dir.join(".evil.exe.tmp");
    std::fs::write(&temp, b"MZ payload JBXD-MALICIOUS\n").unwrap();
    std::fs::rename(&temp, drop_dir.join("evil.exe")).unwrap();
    db::url_queue::insert(&daemon.db, "https://example.com/", None)
        .await
        .unwrap();
    let pid = daemon.pid();
    let db = daemon.db.clone();
    let settled = wait_until(Duration::from_secs(60), || {
        let db = db.clone();
        async move {
            let items = db::items::list(&db, 10).await.unwrap();
            items.len() == 2 && items.iter().all(|i| i.state == db::ItemState::Done)
        }
    })
    .await;
    assert!(settled, "{:#?}", db::items::list(&daemon.db, 10).await);
    // Every analysis was asked for encrypted.
    let encrypted: Vec<Option<bool>> = sqlx::query_scalar("SELECT encrypted FROM analyses")
        .fetch_all(daemon.db.pool())
        .await
        .unwrap();
    assert!(
        !encrypted.is_empty() && encrypted.iter().all(|e| *e == Some(true)),
        "{encrypted:?}"
    );

    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    let rows = crate::secrets::dump(&daemon.db).await;
    assert!(rows.contains("example.com"), "the dump has the rows");
    let (output, dir) = daemon.stop().await;
    assert_eq!(output.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("DEBUG"), "debug logging was on");
    assert!(
        stderr.contains("password_source=reports.password_command (fake-vault.sh)"),
        "{stderr}"
    );
    let mut files = Vec::new();
    files_below(dir.path(), &mut files);
    files.retain(|f| !f.ends_with("vault-entry"));
    assert!(files.len() > 3, "{files:?}");
    for secret in [TEST_API_KEY, PASSWORD_SENTINEL] {
        assert!(!contains(&cmdline, secret), "argv");
        assert!(!contains(&environ, secret), "environ");
        assert!(!contains(&output.stdout, secret), "stdout");
        assert!(!contains(&output.stderr, secret), "stderr");
        assert!(!rows.contains(secret), "database rows hold {secret}");
        for file in &files {
            let bytes = std::fs::read(file).unwrap();
            assert!(
                !contains(&bytes, secret),
                "{} holds {secret}",
                file.display()
            );
        }
    }
}
