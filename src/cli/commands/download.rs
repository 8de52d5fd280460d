//! `jbxd analysis download` and `jbxd analysis sample`: reports and samples, written atomically
//! and only ever inside the output directory.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use clap::Args;
use serde::Serialize;
use tokio::io::AsyncWriteExt;
use tracing::warn;

use crate::api::{ApiError, JoeClient, ReportType};
use crate::cli::output::{ItemFailure, finish_items, table};
use crate::cli::progress::Bars;
use crate::cli::{CliError, Context, Outcome};
use crate::storage::{AtomicFile, safe_file_name};

use super::decrypt::{self, ReportPassword};
use super::{Jobs, for_each};

/// Reports are private to the user; samples are additionally read-only and never executable.
const REPORT_MODE: u32 = 0o600;
const SAMPLE_MODE: u32 = 0o400;

#[derive(Debug, Args)]
pub struct DownloadArgs {
    #[arg(value_name = "WEBID", required = true)]
    pub webids: Vec<String>,

    /// Report types (html, json, irjsonfixed, xml, pdf, pcap, bins, ...), comma-separated or
    /// repeated.
    #[arg(
        long = "type",
        short = 't',
        value_name = "TYPE",
        value_delimiter = ',',
        default_value = "html"
    )]
    pub types: Vec<String>,

    /// Run (0-based position in the analysis's runs); default: the most relevant run.
    #[arg(long, value_name = "N")]
    pub run: Option<u32>,

    /// Directory to write into; created if missing.
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub out: PathBuf,

    /// The report password of an analysis submitted with one (`encrypt-with-password`),
    /// read from this file (mode 0600): its reports arrive as AES zips and are stored
    /// decrypted.
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,

    #[command(flatten)]
    pub jobs: Jobs,
}

#[derive(Debug, Args)]
pub struct SampleArgs {
    #[arg(value_name = "WEBID", required = true)]
    pub webids: Vec<String>,

    /// Directory to write into; created if missing.
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub out: PathBuf,

    #[command(flatten)]
    pub jobs: Jobs,
}

/// One download to make.
#[derive(Debug, Clone)]
pub struct Request {
    pub webid: String,
    pub report_type: String,
    pub run: Option<u32>,
}

impl Request {
    fn is_sample(&self) -> bool {
        ReportType::is_sample(&self.report_type)
    }

    fn action(&self) -> &'static str {
        if self.is_sample() {
            "Download Sample File"
        } else {
            "Download Report"
        }
    }

    /// The name used when the server sends none: `<webid>-<type>[-run<N>].<ext>`, or
    /// `<webid>.sample` for samples. The webid is user input, so it is sanitised too.
    fn fallback_name(&self) -> String {
        let raw = if self.is_sample() {
            format!("{}.sample", self.webid)
        } else {
            let run = self.run.map(|n| format!("-run{n}")).unwrap_or_default();
            format!(
                "{}-{}{run}.{}",
                self.webid,
                self.report_type,
                ReportType::extension(&self.report_type)
            )
        };
        safe_file_name(&raw)
            .unwrap_or_else(|| format!("download.{}", ReportType::extension(&self.report_type)))
    }
}

/// The names taken by this command, so that two downloads with the same server name (the same
/// sample analysed twice, `json` and `irjsonfixed` both called `report-1.json`) do not overwrite
/// each other.
#[derive(Debug, Default)]
pub struct Names {
    taken: Mutex<HashSet<String>>,
}

impl Names {
    /// Takes `preferred`, else `fallback`, else `fallback` with a counter.
    fn claim(&self, preferred: Option<String>, fallback: String) -> String {
        let mut taken = self.taken.lock().unwrap_or_else(|e| e.into_inner());
        let mut candidates = preferred
            .into_iter()
            .chain(std::iter::once(fallback.clone()));
        if let Some(name) = candidates.find(|name| !taken.contains(name)) {
            taken.insert(name.clone());
            return name;
        }
        let (stem, ext) = fallback
            .rsplit_once('.')
            .map_or((fallback.as_str(), ""), |(s, e)| (s, e));
        let name = (2..)
            .map(|n| {
                if ext.is_empty() {
                    format!("{stem}-{n}")
                } else {
                    format!("{stem}-{n}.{ext}")
                }
            })
            .find(|name| !taken.contains(name))
            .expect("an unbounded counter finds a free name");
        taken.insert(name.clone());
        name
    }
}

/// A stored download, as listed under `data` with `--json`.
#[derive(Debug, Clone, Serialize)]
pub struct Saved {
    pub webid: String,
    #[serde(rename = "type")]
    pub report_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run: Option<u32>,
    pub path: PathBuf,
    pub bytes: u64,
    pub sha256: String,
}

pub async fn run_reports(context: &Context, args: DownloadArgs) -> Result<Outcome, CliError> {
    // Read before anything is sent: a bad file is a usage error.
    let password = args
        .password_file
        .as_deref()
        .map(ReportPassword::from_file)
        .transpose()?;
    let client = context.client()?;
    let mut requests = Vec::new();
    for webid in &args.webids {
        for report_type in args.types.iter().filter(|t| !t.is_empty()) {
            requests.push(Request {
                webid: webid.clone(),
                report_type: report_type.clone(),
                run: args.run,
            });
        }
    }
    run_requests(context, &client, requests, &args.out, args.jobs, password).await
}

pub async fn run_samples(context: &Context, args: SampleArgs) -> Result<Outcome, CliError> {
    let client = context.client()?;
    let requests = args
        .webids
        .iter()
        .map(|webid| Request {
            webid: webid.clone(),
            report_type: ReportType::SAMPLE.to_owned(),
            run: None,
        })
        .collect();
    run_requests(context, &client, requests, &args.out, args.jobs, None).await
}

async fn run_requests(
    context: &Context,
    client: &JoeClient,
    requests: Vec<Request>,
    out: &Path,
    jobs: Jobs,
    password: Option<ReportPassword>,
) -> Result<Outcome, CliError> {
    create_out_dir(out).await?;
    let (saved, failures) = download_all(
        client,
        requests,
        out,
        jobs,
        context.progress,
        password.as_ref(),
    )
    .await;
    finish_items(context, &saved, &failures, saved_table)
}

/// Creates the output directory (and its parents) if it is missing.
pub async fn create_out_dir(out: &Path) -> Result<(), CliError> {
    tokio::fs::create_dir_all(out).await.map_err(|e| {
        CliError::Failed(anyhow::anyhow!(
            "cannot create the output directory {}: {e}",
            out.display()
        ))
    })
}

/// Makes every download, `jobs` at a time, and splits the results.
pub async fn download_all(
    client: &JoeClient,
    requests: Vec<Request>,
    out: &Path,
    jobs: Jobs,
    progress: bool,
    password: Option<&ReportPassword>,
) -> (Vec<Saved>, Vec<ItemFailure>) {
    let names = Names::default();
    let bars = Bars::new(progress);
    let results = for_each(requests, jobs, |request| {
        let (names, bars) = (&names, &bars);
        async move {
            let result = save(client, &request, out, names, bars, password).await;
            (request, result)
        }
    })
    .await;
    let mut saved = Vec::new();
    let mut failures = Vec::new();
    for (request, result) in results {
        match result {
            Ok(item) => saved.push(item),
            Err(error) => {
                let failure = ItemFailure::new(
                    request.action(),
                    &format!("webid {} ({})", request.webid, request.report_type),
                    &request.webid,
                    &error,
                );
                failures.push(if request.is_sample() {
                    failure
                } else {
                    failure.with_type(&request.report_type)
                });
            }
        }
    }
    (saved, failures)
}

/// Downloads one resource into `out`. A body that breaks off (truncated, connection reset) is
/// discarded and the whole download repeated under the client's retry policy, because a
/// half-read body cannot be resumed. With a `password` (reports only), the body is the
/// analysis' AES zip and the document inside it is stored instead (see `decrypt`).
pub async fn save(
    client: &JoeClient,
    request: &Request,
    out: &Path,
    names: &Names,
    bars: &Bars,
    password: Option<&ReportPassword>,
) -> Result<Saved, ApiError> {
    let password = password.filter(|_| !request.is_sample());
    let mode = if request.is_sample() {
        SAMPLE_MODE
    } else {
        REPORT_MODE
    };
    let mut name: Option<String> = None;
    let mut attempt = 1;
    loop {
        let download = client
            .analysis_download(&request.webid, &request.report_type, request.run)
            .await?;
        // The name is fixed on the first attempt so a retry cannot claim a second one.
        let file_name = name
            .get_or_insert_with(|| {
                let preferred = download.server_filename().and_then(safe_file_name);
                names.claim(preferred, request.fallback_name())
            })
            .clone();
        let label = format!("{} {}", request.webid, request.report_type);
        let transfer = bars.transfer(&label, download.content_length());
        let stored = match password {
            None => store_plain(download, out, &file_name, mode, |b| transfer.set(b)).await,
            Some(password) => {
                let (temp, mut sink) = decrypt::encrypted_temp(out)?;
                match download.write_to(&mut sink, |b| transfer.set(b)).await {
                    Ok(_) => {
                        sink.flush().await.map_err(|e| ApiError::Io {
                            context: format!("cannot write {}", temp.path().display()),
                            source: e,
                        })?;
                        decrypt::store_decrypted(temp.path(), password, out, &file_name, mode).await
                    }
                    Err(error) => Err(error),
                }
            }
        };
        match stored {
            Ok((path, bytes, sha256)) => {
                return Ok(Saved {
                    webid: request.webid.clone(),
                    report_type: request.report_type.clone(),
                    run: request.run,
                    path,
                    bytes,
                    sha256,
                });
            }
            // Local failures (our disk, a wrong password) are not transient: never repeated.
            Err(error) => match client.settings().retry.delay_after(&error, attempt) {
                Some(wait) => {
                    warn!(webid = %request.webid, report_type = %request.report_type,
                          attempt, ?wait, error = %error, "download broke off, repeating it");
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                None => return Err(error),
            },
        }
    }
}

/// Streams the body into `out/name` atomically: (path, bytes, sha256).
async fn store_plain(
    download: crate::api::Download,
    out: &Path,
    file_name: &str,
    mode: u32,
    progress: impl FnMut(u64),
) -> Result<(PathBuf, u64, String), ApiError> {
    let mut file = AtomicFile::create(out, file_name, mode)
        .await
        .map_err(|e| ApiError::Io {
            context: format!("cannot create a file in {}", out.display()),
            source: e,
        })?;
    // On error, dropping the uncommitted file removes the partial body.
    let summary = download.write_to(file.file_mut(), progress).await?;
    let path = file.commit().await.map_err(|e| ApiError::Io {
        context: format!("cannot store {file_name} in {}", out.display()),
        source: e,
    })?;
    Ok((path, summary.bytes, summary.sha256))
}

pub fn saved_table(rows: &[Saved]) -> comfy_table::Table {
    let mut out = table(&["webid", "type", "path", "bytes", "sha256"]);
    for row in rows {
        out.add_row(vec![
            row.webid.clone(),
            row.report_type.clone(),
            row.path.display().to_string(),
            row.bytes.to_string(),
            row.sha256.clone(),
        ]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fallback_names_carry_webid_type_run_and_a_fitting_extension() {
        let request = |t: &str, run| Request {
            webid: "42".into(),
            report_type: t.into(),
            run,
        };
        assert_eq!(request("html", None).fallback_name(), "42-html.html");
        assert_eq!(
            request("irjsonfixed", Some(1)).fallback_name(),
            "42-irjsonfixed-run1.json"
        );
        assert_eq!(request("lightxml", None).fallback_name(), "42-lightxml.xml");
        assert_eq!(
            request("pdfexecutive", None).fallback_name(),
            "42-pdfexecutive.pdf"
        );
        assert_eq!(
            request("pcapslim", None).fallback_name(),
            "42-pcapslim.pcap"
        );
        assert_eq!(request("unpackpe", None).fallback_name(), "42-unpackpe.zip");
        assert_eq!(
            request("memstrings", None).fallback_name(),
            "42-memstrings.bin"
        );
        assert_eq!(request("sample", None).fallback_name(), "42.sample");
    }

    #[test]
    fn a_hostile_webid_cannot_leave_the_output_directory_through_the_fallback_name() {
        let request = Request {
            webid: "../../etc".into(),
            report_type: "html".into(),
            run: None,
        };
        let name = request.fallback_name();
        assert!(!name.contains('/'), "{name}");
    }

    #[test]
    fn a_name_taken_twice_falls_back_and_then_counts() {
        let names = Names::default();
        assert_eq!(
            names.claim(Some("r.json".into()), "1-json.json".into()),
            "r.json"
        );
        assert_eq!(
            names.claim(Some("r.json".into()), "1-irjsonfixed.json".into()),
            "1-irjsonfixed.json"
        );
        assert_eq!(
            names.claim(Some("r.json".into()), "1-irjsonfixed.json".into()),
            "1-irjsonfixed-2.json"
        );
    }
}
