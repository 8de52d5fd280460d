//! `jbxd submit`: sample files, directories of samples, URLs and sample URLs.

use std::path::{Path, PathBuf};

use clap::{ArgGroup, Args};
use serde::Serialize;

use crate::api::{ApiError, JoeClient, SampleUpload, SubmissionParams};
use crate::cli::args::SubmissionArgs;
use crate::cli::output::{ItemFailure, finish_items, table};
use crate::cli::progress::Bars;
use crate::cli::{CliError, Context, Outcome};
use crate::intake::url_validate::{self, Schemes, UrlRejection};

use super::{Jobs, for_each};

#[derive(Debug, Args)]
#[command(group(
    ArgGroup::new("targets")
        .required(true)
        .multiple(true)
        .args(["files", "urls", "sample_urls"])
))]
pub struct SubmitArgs {
    /// Sample files; a directory stands for the regular files directly inside it.
    #[arg(value_name = "FILE")]
    pub files: Vec<PathBuf>,

    /// Websites to analyse in a browser.
    #[arg(long = "url", value_name = "URL", num_args = 1..)]
    pub urls: Vec<String>,

    /// URLs of samples for the server to download and analyse.
    #[arg(long = "sample-url", value_name = "URL", num_args = 1..)]
    pub sample_urls: Vec<String>,

    /// Send URLs of any `scheme://host` form (e.g. ftp://), not only http and https. The other
    /// rules of the daemon's URL queue still apply: no credentials, no control characters, a
    /// host, at most intake.max_url_length bytes.
    #[arg(long)]
    pub allow_any_scheme: bool,

    #[command(flatten)]
    pub jobs: Jobs,

    #[command(flatten)]
    pub params: SubmissionArgs,
}

/// One thing to submit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    File(PathBuf),
    Url(String),
    SampleUrl(String),
}

impl Target {
    /// The seed's action name, used in failure lines.
    fn action(&self) -> &'static str {
        match self {
            Self::File(_) => "Submit Sample File",
            Self::Url(_) => "Submit URL",
            Self::SampleUrl(_) => "Submit Sample URL",
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Self::File(_) => "file",
            Self::Url(_) => "url",
            Self::SampleUrl(_) => "sample-url",
        }
    }

    fn text(&self) -> String {
        match self {
            Self::File(path) => path.display().to_string(),
            Self::Url(url) | Self::SampleUrl(url) => url.clone(),
        }
    }
}

/// One created submission, as listed under `data` with `--json`.
#[derive(Debug, Clone, Serialize)]
pub struct Submitted {
    pub target: String,
    pub kind: &'static str,
    pub submission_id: String,
}

pub async fn run(context: &Context, args: SubmitArgs) -> Result<Outcome, CliError> {
    let params = args.params.to_params()?;
    let schemes = if args.allow_any_scheme {
        Schemes::Any
    } else {
        Schemes::HttpOnly
    };
    let urls = checked_urls(&args.urls, "--url", schemes)?;
    let sample_urls = checked_urls(&args.sample_urls, "--sample-url", schemes)?;
    let targets = expand_targets(&args.files, &urls, &sample_urls)?;
    let client = match args.params.encryption_password()? {
        None => context.client()?,
        Some(password) => {
            // The password travels in the client's settings, never in the parameters.
            let mut settings =
                crate::cli::resolve_settings(&context.connection, &crate::config::Env::process())?;
            settings.encrypt_password = Some(password);
            crate::config::client(settings)?
        }
    };
    let (submitted, failures) = submit_all(&client, &params, targets, args.jobs, context).await;
    finish_items(context, &submitted, &failures, |rows| {
        let mut out = table(&["file/URL", "submission id"]);
        for row in rows {
            out.add_row(vec![row.target.clone(), row.submission_id.clone()]);
        }
        out
    })
}

/// Submits every target, `jobs` at a time, and splits the results.
pub async fn submit_all(
    client: &JoeClient,
    params: &SubmissionParams,
    targets: Vec<Target>,
    jobs: Jobs,
    context: &Context,
) -> (Vec<Submitted>, Vec<ItemFailure>) {
    let bars = Bars::new(context.progress);
    let results = for_each(targets, jobs, |target| {
        let bars = bars.clone();
        async move {
            let result = submit_one(client, params, &target, &bars).await;
            (target, result)
        }
    })
    .await;
    let mut submitted = Vec::new();
    let mut failures = Vec::new();
    for (target, result) in results {
        let text = target.text();
        match result {
            Ok(submission_id) => submitted.push(Submitted {
                target: text,
                kind: target.kind(),
                submission_id,
            }),
            Err(error) => failures.push(ItemFailure::new(
                target.action(),
                &format!("{} {text}", target.kind()),
                &text,
                &error,
            )),
        }
    }
    (submitted, failures)
}

async fn submit_one(
    client: &JoeClient,
    params: &SubmissionParams,
    target: &Target,
    bars: &Bars,
) -> Result<String, ApiError> {
    match target {
        Target::File(path) => {
            let size = tokio::fs::metadata(path).await.ok().map(|m| m.len());
            let transfer = bars.transfer(&path.display().to_string(), size);
            let upload = SampleUpload {
                name: None,
                progress: transfer.callback(),
            };
            client.submit_sample(path, params, &upload).await
        }
        Target::Url(url) => client.submit_url(url, params).await,
        Target::SampleUrl(url) => client.submit_sample_url(url, params).await,
    }
}

/// The URLs of `flag` in their normalised form, checked with the rules the daemon applies to
/// `url_queue` (RELIABILITY.md case 120): any refusal is a usage error before anything is sent,
/// naming the URL by its position and the rule; the refused text itself is never echoed, since
/// it may carry a password.
pub fn checked_urls(
    urls: &[String],
    flag: &str,
    schemes: Schemes,
) -> Result<Vec<String>, CliError> {
    let max_len = crate::config::IntakeConfig::default().max_url_length;
    let mut refused = Vec::new();
    let mut checked = Vec::with_capacity(urls.len());
    for (i, url) in urls.iter().enumerate() {
        match url_validate::validate_with(url, max_len, schemes) {
            Ok(normalised) => checked.push(normalised),
            Err(reason) => {
                let hint = match reason {
                    UrlRejection::SchemeNotAllowed { .. } => {
                        " (--allow-any-scheme sends it anyway)"
                    }
                    _ => "",
                };
                refused.push(format!("{flag} #{} refused: {reason}{hint}", i + 1));
            }
        }
    }
    if refused.is_empty() {
        Ok(checked)
    } else {
        Err(CliError::Usage(format!(
            "{}; nothing was submitted",
            refused.join("; ")
        )))
    }
}

/// Turns the command line into targets: files as given, a directory as the regular files
/// directly inside it (sorted, like `jbxapi submit DIR` but in a stable order), then the URLs.
pub fn expand_targets(
    files: &[PathBuf],
    urls: &[String],
    sample_urls: &[String],
) -> Result<Vec<Target>, CliError> {
    let mut targets = Vec::new();
    for path in files {
        if path.is_dir() {
            let inside = regular_files_in(path)?;
            if inside.is_empty() {
                return Err(CliError::Usage(format!(
                    "nothing to submit in {}: it has no regular files",
                    path.display()
                )));
            }
            targets.extend(inside.into_iter().map(Target::File));
        } else {
            // A missing file is reported as that item's failure, not as a usage error, so the
            // other targets are still submitted.
            targets.push(Target::File(path.clone()));
        }
    }
    targets.extend(urls.iter().cloned().map(Target::Url));
    targets.extend(sample_urls.iter().cloned().map(Target::SampleUrl));
    Ok(targets)
}

fn regular_files_in(dir: &Path) -> Result<Vec<PathBuf>, CliError> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| CliError::Failed(anyhow::anyhow!("cannot list {}: {e}", dir.display())))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        // `is_file` follows symlinks, like jbxapi's os.path.isfile.
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_expands_to_the_regular_files_directly_inside_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("b.exe"), b"b").unwrap();
        std::fs::write(dir.path().join("a.doc"), b"a").unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub").join("deep.bin"), b"c").unwrap();
        let targets = expand_targets(
            &[dir.path().to_owned()],
            &["https://example.com/".into()],
            &[],
        )
        .unwrap();
        assert_eq!(
            targets,
            vec![
                Target::File(dir.path().join("a.doc")),
                Target::File(dir.path().join("b.exe")),
                Target::Url("https://example.com/".into()),
            ]
        );
    }

    #[test]
    fn an_empty_directory_is_a_usage_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            expand_targets(&[dir.path().to_owned()], &[], &[]),
            Err(CliError::Usage(_))
        ));
    }
}
