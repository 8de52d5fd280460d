//! `cargo bench --bench p10_iocs`: benchmark P10 of BENCHMARKS.md (issue 10 §5). A database
//! with 1,000,000 indicator rows (20,000 analyses × 50 indicators: domains, IPs, URLs, SHA-256
//! hashes, file names), then `jbxd iocs --value X` end to end, the real binary as a child
//! process (start-up, configuration, opening the database, the query, the table), ~50 runs,
//! p50 and p99. Target: p50 ≤ 20 ms.
//!
//! The rows are inserted with one recursive-CTE `INSERT` per kind (the test-sized data of the
//! figure, not what it measures). The looked-up value is seen by 10 analyses, and is pasted
//! defanged and upper-case (`EVIL-0042[.]EXAMPLE`), so the lookup forms are part of the run.
//!
//! Not a test: it is not run by `cargo test` or CI, but it builds under `cargo clippy
//! --all-targets`. `JBXD_BENCH_RUNS` (default 50) sets the number of runs.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use jbxd::db::Db;

const JBXD: &str = env!("CARGO_BIN_EXE_jbxd");
const ANALYSES: i64 = 20_000;
const PER_ANALYSIS: i64 = 50;

/// Per analysis: 10 domains, 10 IPs, 10 URLs, 10 SHA-256, 10 file names (then
/// `evil-0042.example` in analyses 0, 2000, ..., 18000: 10 sightings).
const FILL: &[&str] = &[
    "WITH RECURSIVE n(x) AS (SELECT 0 UNION ALL SELECT x + 1 FROM n WHERE x < 19999)
     INSERT INTO analyses (webid, detection, score, threatname, recorded_at)
     SELECT CAST(x AS TEXT), iif(x % 3 = 0, 'malicious', 'clean'), x % 101, 'Bench',
            strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-' || (x % 365) || ' days')
       FROM n",
    "WITH RECURSIVE n(x) AS (SELECT 0 UNION ALL SELECT x + 1 FROM n WHERE x < 199999)
     INSERT INTO iocs (webid, kind, value, malicious, report_type, section)
     SELECT CAST(x % 20000 AS TEXT), 'domain',
            'host-' || x || '.example', x % 2, 'jsonfixed', 'domaininfo'
       FROM n",
    "WITH RECURSIVE n(x) AS (SELECT 0 UNION ALL SELECT x + 1 FROM n WHERE x < 199999)
     INSERT INTO iocs (webid, kind, value, malicious, private, report_type, section)
     SELECT CAST(x % 20000 AS TEXT), 'ip',
            ((x >> 16) % 256) || '.' || ((x >> 8) % 256) || '.' || (x % 256) || '.' || (x % 7),
            NULL, 0, 'jsonfixed', 'ipinfo'
       FROM n",
    "WITH RECURSIVE n(x) AS (SELECT 0 UNION ALL SELECT x + 1 FROM n WHERE x < 199999)
     INSERT INTO iocs (webid, kind, value, malicious, report_type, section)
     SELECT CAST(x % 20000 AS TEXT), 'url', 'http://host-' || x || '.example/gate.php',
            1, 'jsonfixed', 'urlinfo'
       FROM n",
    "WITH RECURSIVE n(x) AS (SELECT 0 UNION ALL SELECT x + 1 FROM n WHERE x < 199999)
     INSERT INTO iocs (webid, kind, value, malicious, report_type, section)
     SELECT CAST(x % 20000 AS TEXT), 'sha256', printf('%064x', x * 2654435761),
            x % 2, 'jsonfixed', 'droppedinfo'
       FROM n",
    "WITH RECURSIVE n(x) AS (SELECT 0 UNION ALL SELECT x + 1 FROM n WHERE x < 199999)
     INSERT INTO iocs (webid, kind, value, malicious, report_type, section)
     SELECT CAST(x % 20000 AS TEXT), 'file_name', 'dropped-' || x || '.exe',
            NULL, 'jsonfixed', 'droppedinfo'
       FROM n",
];

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

async fn build(data: &Path) {
    let db = Db::open(&data.join("jbxd.db")).await.expect("database");
    let started = Instant::now();
    let mut tx = db.pool().begin().await.expect("transaction");
    for sql in FILL {
        sqlx::query(*sql).execute(&mut *tx).await.expect("fill");
    }
    // The 10 sightings of the looked-up value: analyses 0, 2000, ..., 18000.
    sqlx::query(
        "WITH RECURSIVE n(x) AS (SELECT 0 UNION ALL SELECT x + 1 FROM n WHERE x < 9)
         INSERT INTO iocs (webid, kind, value, malicious, report_type, section)
         SELECT CAST(x * 2000 AS TEXT), 'domain', 'evil-0042.example', 1, 'irjsonfixed',
                'contacted.domains'
           FROM n",
    )
    .execute(&mut *tx)
    .await
    .expect("sightings");
    tx.commit().await.expect("commit");
    sqlx::query("ANALYZE")
        .execute(db.pool())
        .await
        .expect("analyze");
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM iocs")
        .fetch_one(db.pool())
        .await
        .expect("count");
    db.close().await;
    assert_eq!(rows, ANALYSES * PER_ANALYSIS + 10, "the fill's row count");
    eprintln!(
        "P10: {rows} iocs rows inserted in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

fn lookup(config: &Path, value: &str) -> (Duration, String) {
    let started = Instant::now();
    let output = Command::new(JBXD)
        .arg("--config")
        .arg(config)
        .args(["iocs", "--value", value, "--json"])
        .env_remove("JBXD_LOG")
        .output()
        .expect("jbxd runs");
    let took = started.elapsed();
    assert!(
        output.status.success(),
        "jbxd iocs failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    (took, String::from_utf8_lossy(&output.stdout).into_owned())
}

#[tokio::main]
async fn main() {
    let runs: usize = std::env::var("JBXD_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50)
        .max(1);
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).expect("data dir");
    build(&data).await;
    let config = dir.path().join("jbxd.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {:?}\ndrop_dir = {:?}\n",
            data.to_str().unwrap(),
            dir.path().join("drop").to_str().unwrap()
        ),
    )
    .expect("config");

    let pasted = "EVIL-0042[.]EXAMPLE";
    let (_, first) = lookup(&config, pasted);
    let found: serde_json::Value = serde_json::from_str(&first).expect("JSON");
    let sightings = found.as_array().map_or(0, Vec::len);
    assert_eq!(sightings, 10, "the looked-up value's sightings: {first}");
    let mut times: Vec<Duration> = (0..runs).map(|_| lookup(&config, pasted).0).collect();
    times.sort();
    let (p50, p99) = (percentile(&times, 0.5), percentile(&times, 0.99));
    println!(
        "| P10 | `jbxd iocs --value` on 1,000,000 IOC rows (end to end, {runs} runs, {sightings} \
         sightings) | p50 {}, p99 {} | – | – | p50 ≤ 20 ms | {} |",
        ms(p50),
        ms(p99),
        if p50 <= Duration::from_millis(20) {
            "yes"
        } else {
            "NO"
        }
    );
}
