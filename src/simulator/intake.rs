//! Turning what was submitted into the analyses the service would run: one per analysed file
//! (archives are unpacked), with deterministic verdicts.

use std::path::Path;
use std::sync::Arc;

use super::archive::{self, Unpacked};
use super::form::StoredFile;
use super::state::{PreparedAnalysis, Subject, SubmissionOptions};
use super::verdict::{self, Detection, Verdict};

/// The thing a submission asks to analyse.
#[derive(Debug)]
pub(crate) enum Target {
    File {
        name: String,
        file: Arc<StoredFile>,
    },
    /// `url`: a website analysis in a browser.
    Url(String),
    /// `sample-url`: the service downloads the file itself. The simulator cannot, so the URL
    /// stands in for the file (keyword verdict, no hashes).
    SampleUrl(String),
    CommandLine(String),
    /// A cookbook alone decides what happens.
    CookbookOnly {
        name: String,
    },
}

/// Build the analyses for a target. Blocking (archive extraction); run it off the runtime.
pub(crate) fn prepare(
    target: Target,
    options: &SubmissionOptions,
    upload_dir: &Path,
) -> Vec<PreparedAnalysis> {
    match target {
        Target::File { name, file } => prepare_file(name, file, options, upload_dir),
        Target::Url(url) | Target::SampleUrl(url) => vec![PreparedAnalysis {
            filename: url.clone(),
            verdict: verdict::url_verdict(&url),
            subject: Subject::Url(url),
            extracted_from: None,
        }],
        Target::CommandLine(command) => vec![PreparedAnalysis {
            verdict: text_verdict(&command),
            filename: command,
            subject: Subject::Other,
            extracted_from: None,
        }],
        Target::CookbookOnly { name } => {
            let text = options
                .cookbook
                .as_ref()
                .map(|(_, content)| String::from_utf8_lossy(content).into_owned())
                .unwrap_or_default();
            vec![PreparedAnalysis {
                verdict: text_verdict(&text),
                filename: name,
                subject: Subject::Other,
                extracted_from: None,
            }]
        }
    }
}

fn prepare_file(
    name: String,
    file: Arc<StoredFile>,
    options: &SubmissionOptions,
    upload_dir: &Path,
) -> Vec<PreparedAnalysis> {
    // An empty sample has nothing to analyse: the submission finishes without analyses.
    if file.facts.size == 0 {
        return Vec::new();
    }
    if !options.archive_no_unpack && archive::looks_like_zip(&file.facts.head) {
        let password = if options.archive_password.is_empty() {
            "infected"
        } else {
            &options.archive_password
        };
        if let Unpacked::Members(members) = archive::unpack(&file.path, password, upload_dir) {
            return members
                .into_iter()
                .map(|(member_name, member)| PreparedAnalysis {
                    verdict: verdict::file_verdict(member.facts.markers, &member.facts.sha256),
                    filename: member_name,
                    subject: Subject::File(Arc::new(member)),
                    extracted_from: Some(name.clone()),
                })
                .collect();
        }
    }
    vec![PreparedAnalysis {
        verdict: verdict::file_verdict(file.facts.markers, &file.facts.sha256),
        filename: name,
        subject: Subject::File(file),
        extracted_from: None,
    }]
}

/// Command lines and cookbooks: file markers first, then URL keywords.
fn text_verdict(text: &str) -> Verdict {
    let mut scanner = verdict::MarkerScanner::default();
    scanner.update(text.as_bytes());
    let by_markers = verdict::file_verdict(scanner.markers(), "00");
    if by_markers.detection > Detection::Clean {
        by_markers
    } else {
        verdict::url_verdict(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines_with_markers_are_malicious() {
        assert_eq!(
            text_verdict("cmd /c echo JBXD-MALICIOUS").detection,
            Detection::Malicious
        );
        assert_eq!(text_verdict("cmd /c dir").detection, Detection::Clean);
    }

    #[test]
    fn urls_become_one_analysis_named_after_the_url() {
        let dir = tempfile::tempdir().expect("tempdir");
        let analyses = prepare(
            Target::Url("http://evil.example".into()),
            &SubmissionOptions::default(),
            dir.path(),
        );
        assert_eq!(analyses.len(), 1);
        assert_eq!(analyses[0].filename, "http://evil.example");
        assert_eq!(analyses[0].verdict.detection, Detection::Malicious);
    }
}
