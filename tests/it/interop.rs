//! Interoperability: the official Python client (jbxapi 3.25.0) against the simulator.
//!
//! Needs a Python with jbxapi installed, named by `JBXD_INTEROP_PYTHON` (`.ci/run` creates
//! `.venv` and sets it). Without it the test says so and passes, unless
//! `JBXD_REQUIRE_INTEROP=1` (set in CI), where a missing interpreter is a failure.

use std::process::Command;

use jbxd::simulator::{SimConfig, Simulator};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_python_client_works_against_the_simulator() {
    let Some(python) = std::env::var_os("JBXD_INTEROP_PYTHON") else {
        assert!(
            std::env::var("JBXD_REQUIRE_INTEROP").as_deref() != Ok("1"),
            "JBXD_REQUIRE_INTEROP=1 but JBXD_INTEROP_PYTHON is not set"
        );
        eprintln!("skipped: set JBXD_INTEROP_PYTHON to a python with jbxapi==3.25.0");
        return;
    };
    let config = SimConfig {
        analysis_seconds: 5,
        page_size: 2,
        ..SimConfig::default()
    };
    let key = config.api_key.clone();
    let sim = Simulator::start(config).await.expect("simulator starts");
    let work = tempfile::tempdir().unwrap();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/interop/jbxapi_interop.py"
    );
    let output = tokio::task::spawn_blocking({
        let api_url = sim.api_url();
        let control = format!("http://{}", sim.addr());
        let work = work.path().to_owned();
        move || {
            Command::new(python)
                .arg(script)
                .env("JBX_API_URL", api_url)
                .env("JBX_API_KEY", key)
                .env("JBXD_SIM_CONTROL", control)
                .env("JBXD_WORK", work)
                .output()
                .expect("python runs")
        }
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "jbxapi interop failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    assert!(stdout.contains("all checks passed"), "{stdout}");
    sim.shutdown().await;
}
