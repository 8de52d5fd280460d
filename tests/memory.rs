//! Uploads stream from disk: submitting a large file through the real binary keeps its peak
//! memory well below the file's size. (Figures for the benchmark table come from the
//! benchmark command; this only guards the property.)

use std::process::Command;

use jbxd::simulator::{SimConfig, Simulator};

/// Peak resident set size of all waited-for children of this process, in bytes. This test
/// binary contains only this test, so the only child is the one below.
fn children_peak_rss() -> u64 {
    // SAFETY: getrusage only writes into the struct we pass.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    assert_eq!(rc, 0);
    usage.ru_maxrss as u64 * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submitting_a_48_mib_file_keeps_the_cli_under_40_mib_of_memory() {
    let config = SimConfig::default();
    let key = config.api_key.clone();
    let sim = Simulator::start(config).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("large.bin");
    let size = 48 * 1024 * 1024;
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&path).unwrap();
        let block: Vec<u8> = (0..1024 * 1024).map(|i| (i % 253) as u8).collect();
        for _ in 0..48 {
            f.write_all(&block).unwrap();
        }
    }
    let api_url = sim.api_url();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_jbxd"))
            .args(["submit"])
            .arg(&path)
            .env("JBX_API_URL", api_url)
            .env("JBX_API_KEY", key)
            .env("JBX_ACCEPT_TAC", "1")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(sim.accepted_submissions().len(), 1);
    let peak = children_peak_rss();
    eprintln!("peak RSS of `jbxd submit` for a {size}-byte file: {peak} bytes");
    assert!(
        peak < 40 * 1024 * 1024,
        "peak RSS {peak} bytes for a {size}-byte upload"
    );
    sim.shutdown().await;
}
