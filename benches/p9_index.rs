//! `cargo bench --bench p9_index`: benchmark P9 of BENCHMARKS.md (issue 10 §5): reading the
//! facts out of a ~200 MiB real-shaped `jsonfixed` report, wall time and peak RSS, beside
//! `python3 -c 'import json; json.load(open(F))'` as the anchor, in the same run.
//!
//! The report is generated here, streamed to a file under `target/` (bulk in
//! `behavior.system.processes.process[]` with file and registry call lists, as real reports
//! have it; the fact-bearing sections are small). Both readers run as child processes: jbxd's
//! parser is this bench re-executed with `JBXD_P9_CHILD=<file>`, which reports its own `VmHWM`
//! after parsing (`wait4`'s `ru_maxrss` would carry this process's RSS into the child, see
//! BENCHMARKS.md's method); Python runs under GNU `/usr/bin/time -f %M`. Wall time is taken
//! around each child. `JBXD_BENCH_RUNS` runs each (default 3), medians reported.
//!
//! Not a test: `cargo test` and CI do not run it; `cargo clippy --all-targets` builds it.

use std::fmt::Write as _;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use jbxd::api::report::{ReportFormat, parse};

const CHILD: &str = "JBXD_P9_CHILD";
const TARGET_BYTES: u64 = 200 * 1024 * 1024;

fn main() {
    if let Ok(path) = std::env::var(CHILD) {
        child(Path::new(&path));
        return;
    }
    let runs: usize = std::env::var("JBXD_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
        .max(1);
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/p9");
    std::fs::create_dir_all(&dir).expect("target/p9");
    let path = dir.join("report.jsonfixed.json");
    let started = Instant::now();
    let size = write_report(&path).expect("writing the report");
    println!(
        "P9: wrote {} ({:.1} MiB) in {:.1} s",
        path.display(),
        size as f64 / 1048576.0,
        started.elapsed().as_secs_f64()
    );

    let mut ours = Vec::new();
    let mut anchor = Vec::new();
    for run in 1..=runs {
        ours.push(run_ours(&path));
        anchor.push(run_python(&path));
        println!(
            "P9 run {run}: jbxd {:.2} s / {:.1} MiB, python3 {:.2} s / {:.1} MiB",
            ours[run - 1].0,
            ours[run - 1].1,
            anchor[run - 1].0,
            anchor[run - 1].1
        );
    }
    let (wall, rss) = medians(&ours);
    let (py_wall, py_rss) = medians(&anchor);
    let ratio = py_wall / wall;
    let mut table = String::new();
    writeln!(
        table,
        "| id | what | jbxd | anchor | ratio | target | met? |"
    )
    .unwrap();
    writeln!(table, "| --- | --- | --- | --- | --- | --- | --- |").unwrap();
    writeln!(
        table,
        "| P9 | facts of a {:.0} MiB jsonfixed: wall | {:.2} s | python3 json.load {:.2} s | {ratio:.1}x faster | ≥ 3x faster | {} |",
        size as f64 / 1048576.0,
        wall,
        py_wall,
        yes(ratio >= 3.0)
    )
    .unwrap();
    writeln!(
        table,
        "| P9 | same: peak RSS | {rss:.1} MiB | python3 {py_rss:.1} MiB | – | RSS ≤ 64 MiB | {} |",
        yes(rss <= 64.0)
    )
    .unwrap();
    println!("\nP9 ({runs} runs, medians)\n{table}");
    std::fs::remove_file(&path).ok();
}

fn yes(met: bool) -> &'static str {
    if met { "yes" } else { "NO" }
}

fn medians(samples: &[(f64, f64)]) -> (f64, f64) {
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    (
        median(samples.iter().map(|s| s.0).collect()),
        median(samples.iter().map(|s| s.1).collect()),
    )
}

/// The child: parse the report, check the facts are the generated ones, report `VmHWM`.
fn child(path: &Path) {
    let file = std::fs::File::open(path).expect("the report");
    let facts = parse(file, ReportFormat::Json).expect("the generated report parses");
    let verdict = facts.verdict.as_ref().expect("a verdict");
    assert_eq!(verdict.detection.as_deref(), Some("malicious"));
    assert!(facts.indicators.len() >= 60, "{}", facts.indicators.len());
    assert_eq!(facts.techniques.len(), 3);
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let hwm = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmHWM");
    println!("hwm_kib={hwm} indicators={}", facts.indicators.len());
}

/// (wall seconds, peak RSS MiB) of this bench re-executed as the parsing child.
fn run_ours(path: &Path) -> (f64, f64) {
    let started = Instant::now();
    let out = Command::new(std::env::current_exe().expect("the bench binary"))
        .env(CHILD, path)
        .stderr(Stdio::inherit())
        .output()
        .expect("running the child");
    let wall = started.elapsed().as_secs_f64();
    assert!(out.status.success(), "the parsing child failed");
    let text = String::from_utf8_lossy(&out.stdout);
    let hwm: f64 = text
        .split_whitespace()
        .find_map(|w| w.strip_prefix("hwm_kib="))
        .and_then(|v| v.parse().ok())
        .expect("the child's VmHWM");
    (wall, hwm / 1024.0)
}

/// (wall seconds, peak RSS MiB) of the Python anchor under GNU time.
fn run_python(path: &Path) -> (f64, f64) {
    let rss_file = path.with_extension("rss");
    let started = Instant::now();
    let status = Command::new("/usr/bin/time")
        .arg("-f")
        .arg("%M")
        .arg("-o")
        .arg(&rss_file)
        .arg("python3")
        .arg("-c")
        .arg("import json, sys; json.load(open(sys.argv[1]))")
        .arg(path)
        .status()
        .expect("running /usr/bin/time python3");
    let wall = started.elapsed().as_secs_f64();
    assert!(status.success(), "python3 failed");
    let kib: f64 = std::fs::read_to_string(&rss_file)
        .ok()
        .and_then(|t| t.lines().last().and_then(|l| l.trim().parse().ok()))
        .expect("GNU time's %M");
    (wall, kib / 1024.0)
}

/// A deterministic pseudo-random hex string of `len` digits.
fn hex(rng: &mut fastrand::Rng, len: usize) -> String {
    (0..len)
        .map(|_| {
            char::from_digit(rng.u32(0..16), 16)
                .unwrap()
                .to_ascii_uppercase()
        })
        .collect()
}

/// Writes a real-shaped `jsonfixed` report of about [`TARGET_BYTES`]; returns its size.
fn write_report(path: &Path) -> std::io::Result<u64> {
    let mut rng = fastrand::Rng::with_seed(9);
    let mut out = Counting {
        inner: BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?),
        written: 0,
    };
    write!(
        out,
        r#"{{"analysis": {{"generalinfo": {{"id": 9, "version": "40.0.0", "reporttype": "full", "arch": "WINDOWS",
 "target": {{"sample": "big.exe", "url": "", "cookbook": "default.jbs"}}}},
 "fileinfo": {{"filename": "big.exe", "filesize": 409600, "md5": "{}", "sha1": "{}", "sha256": "{}", "sha512": "{}"}},
 "signaturedetections": {{"strategy": [{{"@count": "3", "@name": "atleastonemalicioussig", "$": "true"}},
   {{"@name": "empiric", "detection": "MAL", "score": 100, "minScore": 0, "maxScore": 100, "malicious": true,
    "suspicious": false, "clean": false, "unknown": false, "threatname": "AgentTesla"}}]}},
 "signatureinfo": {{"sig": ["#,
        hex(&mut rng, 32).to_lowercase(),
        hex(&mut rng, 40).to_lowercase(),
        hex(&mut rng, 64).to_lowercase(),
        hex(&mut rng, 128).to_lowercase()
    )?;
    for i in 0..40 {
        let comma = if i == 0 { "" } else { "," };
        write!(
            out,
            r#"{comma}{{"@id": "{}", "@desc": "Signature number {i}", "@impact": "{}", "sources": {{"source": [{{"@op": "x", "$": "evidence"}}]}}}}"#,
            1000 + i,
            i % 3
        )?;
    }
    out.write_all(b"]},\n \"domaininfo\": {\"domain\": [")?;
    for i in 0..20 {
        let comma = if i == 0 { "" } else { "," };
        write!(
            out,
            r#"{comma}{{"@name": "host{i}.example.com", "@ip": "203.0.113.{i}", "@active": "true", "@malicious": "{}", "sighits": {{"sig": [{{"@desc": "x", "@impact": "2"}}]}}}}"#,
            i % 2 == 0
        )?;
    }
    out.write_all(b"]},\n \"ipinfo\": {\"ip\": [")?;
    for i in 0..20 {
        let comma = if i == 0 { "" } else { "," };
        write!(
            out,
            r#"{comma}{{"@ip": "203.0.113.{i}", "@country": "United States", "@private": "false", "@malicious": "{}"}}"#,
            i % 2 == 0
        )?;
    }
    out.write_all(b"]},\n \"urlinfo\": {\"url\": [")?;
    for i in 0..10 {
        let comma = if i == 0 { "" } else { "," };
        write!(
            out,
            r#"{comma}{{"@name": "http://host{i}.example.com/gate.php", "@malicious": "true", "@targetid": "-1"}}"#
        )?;
    }
    out.write_all(b"]},\n \"droppedinfo\": {\"hash\": [")?;
    for i in 0..10 {
        let comma = if i == 0 { "" } else { "," };
        write!(
            out,
            r#"{comma}{{"@file": "C:\\Users\\user\\AppData\\Local\\Temp\\drop{i}.tmp", "@malicious": "false", "value": [{{"@algo": "MD5", "$": "{}"}}, {{"@algo": "SHA-256", "$": "{}"}}]}}"#,
            hex(&mut rng, 32),
            hex(&mut rng, 64)
        )?;
    }
    out.write_all(b"]},\n \"behavior\": {\"system\": {\"processes\": {\"process\": [")?;
    // The bulk: processes with their file and registry calls, until the target size.
    let mut pid = 1000;
    while out.written < TARGET_BYTES - 64 * 1024 {
        if pid > 1000 {
            out.write_all(b",")?;
        }
        write!(
            out,
            r#"{{"general": {{"targetid": {pid}, "pid": {pid}, "parentpid": 2272, "name": "proc{pid}.exe", "path": "C:\\Windows\\SysWOW64\\proc{pid}.exe", "cmdline": "\"C:\\Windows\\SysWOW64\\proc{pid}.exe\" /s", "date": "28/01/2019", "time": "08:17:04", "md5": "{}", "reason": "newprocess", "isadmin": false, "wow64": true}},
 "fileactivities": {{"fileCreated": {{"call": ["#,
            hex(&mut rng, 32)
        )?;
        for c in 0..200 {
            let comma = if c == 0 { "" } else { "," };
            write!(
                out,
                r#"{comma}{{"path": "C:\\Users\\user\\AppData\\Local\\Temp\\{}.tmp", "count": 1, "ret": "0x{:x}", "status": "success or wait", "symbol": "CreateFileW"}}"#,
                hex(&mut rng, 12),
                rng.u32(..)
            )?;
        }
        out.write_all(b"]}, \"fileRead\": {\"call\": [")?;
        for c in 0..100 {
            let comma = if c == 0 { "" } else { "," };
            write!(
                out,
                r#"{comma}{{"path": "C:\\Windows\\System32\\{}.dll", "count": {}, "ret": "0x1", "status": "success", "symbol": "ReadFile"}}"#,
                hex(&mut rng, 8),
                rng.u32(1..9)
            )?;
        }
        out.write_all(b"]}},\n \"registryactivities\": {\"keyCreated\": {\"call\": [")?;
        for c in 0..100 {
            let comma = if c == 0 { "" } else { "," };
            write!(
                out,
                r#"{comma}{{"path": "HKEY_CURRENT_USER\\Software\\Microsoft\\Windows\\CurrentVersion\\{}", "id": "b_{:08x}", "count": 1, "ret": "0x0", "status": "success", "symbol": "RegCreateKeyExW", "threadid": {}}}"#,
                hex(&mut rng, 10),
                rng.u32(..),
                rng.u32(1000..9000)
            )?;
        }
        out.write_all(b"]}, \"keyValueModified\": {\"call\": [")?;
        for c in 0..100 {
            let comma = if c == 0 { "" } else { "," };
            write!(
                out,
                r#"{comma}{{"path": "HKEY_CURRENT_USER\\Software\\Microsoft\\Internet Explorer\\Main", "name": "Value{c}", "type": "dword", "olddata": "{}", "newdata": "{}", "newdataascii": "\u00e9t\u00e9"}}"#,
                rng.u32(..),
                rng.u32(..)
            )?;
        }
        out.write_all(b"]}}}")?;
        pid += 1;
    }
    out.write_all(b"]}},\n \"network\": {\"tcp\": {\"packet\": [")?;
    for i in 0..100 {
        let comma = if i == 0 { "" } else { "," };
        write!(
            out,
            r#"{comma}{{"timestamp": "Jan 28, 2019 08:17:04.123456789 CET", "srcip": "192.168.2.1", "dstip": "203.0.113.{}", "srcport": {}, "dstport": 443}}"#,
            i % 20,
            49152 + i
        )?;
    }
    write!(
        out,
        r#"]}}}}}},
 "mitreattack": {{"tactic": [{{"name": "Persistence", "technique": [{{"id": "T1547", "name": "Boot or Logon Autostart Execution"}}]}},
   {{"name": "Defense Evasion", "technique": [{{"id": "T1055", "name": "Process Injection"}}, {{"id": "T1027", "name": "Obfuscated Files or Information"}}]}}]}},
 "yara": {{"sample": {{"hit": [{{"rule": "Embedded_PE"}}]}}, "memorydumps": {{"hit": [{{"rule": "AgentTesla_1"}}]}}}},
 "malware_configs": {{"config": [{{"@threatname": "AgentTesla", "host": "smtp.example.com", "port": 587}}]}},
 "errorinfo": null}}}}
"#
    )?;
    out.flush()?;
    Ok(out.written)
}

/// A writer that counts what it wrote (the generator stops at the target size).
struct Counting<W> {
    inner: W,
    written: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
