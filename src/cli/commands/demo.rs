//! `jbxd demo`: the whole client round trip against an embedded simulator, offline, in seconds.
//! The README's first command, so it must work on a fresh checkout with no configuration.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Args;
use serde::Serialize;

use crate::api::types::{Analysis, Submission};
use crate::api::{ApiKey, ClientSettings, JoeClient, SubmissionParams};
use crate::cli::output::{ItemFailure, print_json, verdict_table};
use crate::cli::{CliError, Context, Outcome};
use crate::simulator::{SimConfig, Simulator};

use super::Jobs;
use super::download::{Request, Saved, create_out_dir, download_all, saved_table};
use super::submit::{Submitted, Target, submit_all};
use super::test_connection::{self, Verdict};

/// Report types the demo fetches for every analysis.
const DEMO_TYPES: &[&str] = &["html", "irjsonfixed", "xml"];
const DEMO_URLS: &[&str] = &["https://example.com/", "http://malware.example/evil"];
const POLL_EVERY: Duration = Duration::from_millis(500);
const DEADLINE: Duration = Duration::from_secs(60);

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Where to put the reports (default: a new directory under the system's temp dir, kept
    /// after the demo so you can open them).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

/// The `--json` document of the demo.
#[derive(Debug, Serialize)]
struct DemoDocument<'a> {
    connection: &'a test_connection::Report,
    submissions: &'a [Submitted],
    analyses: &'a [Analysis],
    reports: &'a [Saved],
    errors: &'a [ItemFailure],
}

pub async fn run(context: &Context, args: DemoArgs) -> Result<Outcome, CliError> {
    Ok(demo(context, args).await?)
}

async fn demo(context: &Context, args: DemoArgs) -> anyhow::Result<Outcome> {
    let scratch = tempfile::Builder::new()
        .prefix("jbxd-demo-")
        .tempdir()
        .context("cannot create a temporary directory")?;
    let config = SimConfig {
        analysis_seconds: 3,
        data_dir: Some(scratch.path().join("simulator")),
        ..SimConfig::default()
    };
    let api_key = config.api_key.clone();
    let sim = Simulator::start(config)
        .await
        .context("cannot start the simulator")?;
    note(
        context,
        &format!("simulator listening on {}", sim.api_url()),
    );

    let mut settings = ClientSettings::new(sim.api_url(), ApiKey::new(&api_key)?);
    settings.accept_tac = true;
    let client = JoeClient::new(settings)?;

    let connection = test_connection::test(&client).await;
    note(context, &connection.message);
    if connection.verdict != Verdict::Ok {
        bail!(
            "the demo cannot reach its own simulator: {}",
            connection.message
        );
    }

    let samples = write_samples(&scratch.path().join("samples"))?;
    let mut targets: Vec<Target> = samples.into_iter().map(Target::File).collect();
    targets.extend(DEMO_URLS.iter().map(|url| Target::Url((*url).to_owned())));
    let jobs = Jobs { jobs: 4 };
    let (submitted, mut errors) =
        submit_all(&client, &SubmissionParams::new(), targets, jobs, context).await;
    for row in &submitted {
        note(
            context,
            &format!(
                "submitted {} as submission {}",
                row.target, row.submission_id
            ),
        );
    }

    note(context, "waiting for the analyses to finish ...");
    let finished = wait_until_finished(&client, &submitted).await?;
    let analyses: Vec<Analysis> = finished
        .iter()
        .flat_map(|s| s.analyses.clone().unwrap_or_default())
        .collect();

    let out = match args.out {
        Some(dir) => dir,
        None => scratch.path().with_file_name(format!(
            "{}-reports",
            scratch
                .path()
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "jbxd-demo".to_owned())
        )),
    };
    create_out_dir(&out).await?;
    let requests = analyses
        .iter()
        .flat_map(|analysis| {
            DEMO_TYPES.iter().map(|report_type| Request {
                webid: analysis.webid.clone(),
                report_type: (*report_type).to_owned(),
                run: None,
            })
        })
        .collect();
    let (reports, download_errors) =
        download_all(&client, requests, &out, jobs, context.progress).await;
    errors.extend(download_errors);

    if context.json {
        print_json(&DemoDocument {
            connection: &connection,
            submissions: &submitted,
            analyses: &analyses,
            reports: &reports,
            errors: &errors,
        })?;
    } else {
        println!("{}", verdict_table(&analyses));
        println!("{}", saved_table(&reports));
        println!("reports are in {}", out.display());
    }
    for error in &errors {
        eprintln!("{}", error.line());
    }
    sim.shutdown().await;
    Ok(if errors.is_empty() {
        Outcome::success()
    } else {
        Outcome::failure()
    })
}

/// Progress notes go to stderr so that stdout holds only the results.
fn note(context: &Context, text: &str) {
    if !context.json {
        eprintln!("{text}");
    }
}

/// One clean file and two that the simulator's verdict rules recognise by their markers.
fn write_samples(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let samples: [(&str, &[u8]); 3] = [
        ("notes.txt", b"Meeting notes: nothing to see here.\n"),
        ("invoice.exe", b"MZ demo payload JBXD-MALICIOUS\n"),
        ("macro.doc", b"document with a macro JBXD-SUSPICIOUS\n"),
    ];
    samples
        .iter()
        .map(|(name, content)| {
            let path = dir.join(name);
            std::fs::write(&path, content)
                .with_context(|| format!("cannot write {}", path.display()))?;
            Ok(path)
        })
        .collect()
}

/// Polls `submission/info` until every submission is finished.
async fn wait_until_finished(
    client: &JoeClient,
    submitted: &[Submitted],
) -> anyhow::Result<Vec<Submission>> {
    let started = Instant::now();
    loop {
        let mut all = Vec::with_capacity(submitted.len());
        for row in submitted {
            all.push(client.submission_info(&row.submission_id).await?);
        }
        if all.iter().all(Submission::is_finished) {
            return Ok(all);
        }
        if started.elapsed() > DEADLINE {
            bail!("the simulator did not finish the analyses within {DEADLINE:?}");
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}
