//! Analyses submitted with a report password (`encrypt-with-password`): the simulator serves
//! their reports as single-member AES zips, as the real service does; `jbxd analysis download
//! --password-file` stores the documents inside, and `jbxd analysis search --xpath` searches
//! the stored zips the daemon kept.

use crate::common;

use std::path::Path;
use std::time::Duration;

use jbxd::api::{Param, SubmissionParams};
use jbxd::simulator::SimConfig;
use jbxd::testing::{TEST_API_KEY, TestEnv};

pub const PASSWORD: &str = "correct horse";

#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

pub async fn jbxd(args: &[&str]) -> Run {
    let mut command = common::jbxd_command();
    command.args(args).env("JBX_API_KEY", TEST_API_KEY);
    let output = command.output().await.expect("jbxd runs");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Submits `url` straight to the simulator (as another tool would), optionally with a report
/// password, and returns the webid of its finished analysis.
pub async fn finished_analysis(env: &TestEnv, url: &str, password: Option<&str>) -> String {
    let mut params = SubmissionParams::new();
    if let Some(password) = password {
        params
            .set_param(Param::EncryptWithPassword, password)
            .unwrap();
    }
    let id = env
        .app
        .client
        .submit_url(url, &params)
        .await
        .expect("submitted");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let info = env.app.client.submission_info(&id).await.expect("info");
        if info.status.as_deref() == Some("finished")
            && let Some(a) = info.analyses.unwrap_or_default().first()
        {
            return a.webid.clone();
        }
        assert!(std::time::Instant::now() < deadline, "{url} did not finish");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A secret file as the key-file checks want it: mode 0600.
pub fn secret_file(path: &Path, content: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, content).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread")]
async fn download_with_the_password_file_stores_the_documents_and_a_wrong_one_leaves_nothing() {
    let env = TestEnv::start(SimConfig::default(), |_| {}).await;
    let webid = finished_analysis(&env, "http://evil.example/", Some(PASSWORD)).await;
    let url = env.sim.api_url();
    let dir = env.dir.path();
    let good = dir.join("good.pw");
    secret_file(&good, &format!("{PASSWORD}\n"));
    let wrong = dir.join("wrong.pw");
    secret_file(&wrong, "guess\n");
    let download = |out: &Path, extra: &[&str]| {
        let mut args: Vec<String> = [
            "--url",
            &url,
            "--accept-tac",
            "analysis",
            "download",
            &webid,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(
            ["--type", "xml,irjsonfixed", "--out", out.to_str().unwrap()].map(String::from),
        );
        args.extend(extra.iter().map(|s| s.to_string()));
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            jbxd(&args).await
        }
    };

    // Without the password: the AES zip as it came.
    let raw = dir.join("raw");
    let run = download(&raw, &[]).await;
    assert_eq!(run.code, 0, "{run:?}");
    for name in entries(&raw) {
        let bytes = std::fs::read(raw.join(&name)).unwrap();
        assert!(bytes.starts_with(b"PK\x03\x04"), "{name} is not the zip");
    }

    let plain = dir.join("plain");
    let run = download(
        &plain,
        &["--password-file", good.to_str().unwrap(), "--json"],
    )
    .await;
    assert_eq!(run.code, 0, "{run:?}");
    let names = entries(&plain);
    assert_eq!(
        names,
        entries(&raw),
        "the same file names as without decryption"
    );
    let doc: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    for saved in doc["data"].as_array().unwrap() {
        let path = Path::new(saved["path"].as_str().unwrap());
        let bytes = std::fs::read(path).unwrap();
        assert!(
            !bytes.starts_with(b"PK"),
            "{} is still encrypted",
            path.display()
        );
        assert_eq!(saved["bytes"], bytes.len() as u64);
        let text = String::from_utf8(bytes).unwrap();
        if saved["type"] == "xml" {
            assert!(text.contains("<analysis"), "{text}");
        } else {
            let _: serde_json::Value = serde_json::from_str(&text).expect("JSON document");
        }
    }

    let none = dir.join("none");
    let run = download(&none, &["--password-file", wrong.to_str().unwrap()]).await;
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("does not open"), "{run:?}");
    assert!(
        !run.stderr.contains("guess"),
        "the password is never shown: {run:?}"
    );
    assert!(!run.stderr.contains(PASSWORD));
    assert_eq!(
        entries(&none),
        Vec::<String>::new(),
        "nothing is left behind"
    );

    let empty = dir.join("empty.pw");
    secret_file(&empty, "");
    let run = download(&none, &["--password-file", empty.to_str().unwrap()]).await;
    assert_eq!(
        run.code, 78,
        "a bad secret file is a configuration error: {run:?}"
    );
    assert!(run.stderr.contains("empty.pw"), "{run:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn xpath_searches_encrypted_reports_with_the_password_and_counts_them_without_it() {
    let env = TestEnv::start(SimConfig::default(), |_| {}).await;
    let config = common::write_config(
        env.dir.path(),
        &env.app.config.data_dir,
        &env.app.config.drop_dir,
        &format!("[api]\nurl = {:?}\naccept_tac = true\n", env.sim.api_url()),
    );
    let config = config.to_str().unwrap();
    let evil = finished_analysis(&env, "http://evil.example/", Some(PASSWORD)).await;
    let clean = finished_analysis(&env, "https://example.org/", None).await;
    // The daemon's own download code stores the encrypted reports as they came.
    let imported = jbxd(&["--config", config, "import", &evil, &clean]).await;
    assert_eq!(imported.code, 0, "{imported:?}");
    let dir = env.dir.path();
    let good = dir.join("good.pw");
    secret_file(&good, PASSWORD);
    let wrong = dir.join("wrong.pw");
    secret_file(&wrong, "guess");
    // In the target URL whatever the report's shape; only the encrypted report holds it.
    let expr = "//*[contains(text(), 'evil.example')]";
    let search = |extra: &[&str]| {
        let mut args = vec![
            "--config", config, "--json", "analysis", "search", "--xpath", expr,
        ];
        args.extend_from_slice(extra);
        let args: Vec<String> = args.into_iter().map(String::from).collect();
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            jbxd(&args).await
        }
    };
    let webids = |run: &Run| -> Vec<String> {
        let doc: serde_json::Value =
            serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {run:?}"));
        doc.as_array()
            .unwrap()
            .iter()
            .map(|h| h["webid"].as_str().unwrap().to_owned())
            .collect()
    };

    let without = search(&[]).await;
    assert_eq!(without.code, 0, "{without:?}");
    assert!(webids(&without).is_empty(), "{without:?}");
    assert!(
        without
            .stderr
            .contains("1 encrypted XML report(s) not searched: they need the report password"),
        "never skipped silently: {without:?}"
    );

    let with = search(&["--password-file", good.to_str().unwrap()]).await;
    assert_eq!(with.code, 0, "{with:?}");
    assert_eq!(webids(&with), vec![evil.clone()], "{with:?}");
    assert!(!with.stderr.contains("not searched"), "{with:?}");

    let wrong = search(&["--password-file", wrong.to_str().unwrap()]).await;
    assert!(webids(&wrong).is_empty(), "{wrong:?}");
    assert!(wrong.stderr.contains("does not open them"), "{wrong:?}");

    // The configured report password is used when no --password-file is given.
    let configured = env.dir.path().join("configured.toml");
    std::fs::write(
        &configured,
        format!(
            "{}\n[reports]\npassword_file = {:?}\n",
            std::fs::read_to_string(config).unwrap(),
            good.to_str().unwrap()
        ),
    )
    .unwrap();
    let by_config = jbxd(&[
        "--config",
        configured.to_str().unwrap(),
        "--json",
        "analysis",
        "search",
        "--xpath",
        expr,
    ])
    .await;
    assert_eq!(webids(&by_config), vec![evil.clone()], "{by_config:?}");

    let broken = jbxd(&["--config", config, "analysis", "search", "--xpath", "//a["]).await;
    assert_eq!(broken.code, 2, "{broken:?}");
    assert_eq!(
        broken.stderr.trim_end(),
        "Search failed. Status Code: 400. Message: //a[ is not a valid XPath expression."
    );
}
