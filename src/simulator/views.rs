//! JSON shapes of submissions and analyses (§8 of the API notes).

use std::time::Duration;

use serde_json::{Value, json};

use super::clock::{SimInstant, iso8601};
use super::state::{Analysis, Progress, Store, Submission};
use super::verdict::Detection;

/// One run per system; all runs of an analysis share its verdict. `yara` says whether the run's
/// report lists YARA hits (it does for malicious and suspicious analyses).
pub(crate) fn runs_json(analysis: &Analysis, progress: Progress) -> Vec<Value> {
    let (detection, score) = analysis.current_verdict(progress);
    let finished = progress == Progress::Finished;
    analysis
        .systems
        .iter()
        .map(|system| {
            json!({
                "detection": detection.as_str(),
                "error": if finished { analysis.verdict.run_error.clone() } else { None },
                "system": system,
                "yara": finished && detection >= Detection::Suspicious,
                "sigma": finished && detection >= Detection::Suspicious,
                "suricata": finished && analysis.url().is_some() && detection == Detection::Malicious,
                "score": score,
            })
        })
        .collect()
}

/// The analysis object of `analysis/info`, `analysis/search` and `submission/info`.
pub(crate) fn analysis_json(
    analysis: &Analysis,
    progress: Progress,
    analysis_time: Duration,
) -> Value {
    let (detection, score) = analysis.current_verdict(progress);
    let finished = progress == Progress::Finished;
    let (md5, sha1, sha256) = match analysis.file() {
        Some(file) => (
            file.facts.md5.as_str(),
            file.facts.sha1.as_str(),
            file.facts.sha256.as_str(),
        ),
        None => ("", "", ""),
    };
    let webid = analysis.webid.to_string();
    json!({
        "webid": webid,
        "analysisid": webid,
        "status": progress.as_str(),
        "time": iso8601(&analysis.time),
        "duration": if finished { Some(analysis_time.as_secs()) } else { None },
        "filename": analysis.filename,
        "scriptname": analysis.scriptname,
        "md5": md5,
        "sha1": sha1,
        "sha256": sha256,
        "comments": analysis.comments,
        "tags": analysis.tags,
        "encrypted": analysis.encrypt_password.is_some(),
        "classification": "",
        "threatname": if finished { analysis.verdict.threatname.as_str() } else { "" },
        "score": score,
        "detection": detection.as_str(),
        // The reports carry a malware configuration exactly for malicious analyses.
        "has_malwareconfig": finished && detection == Detection::Malicious,
        "runs": runs_json(analysis, progress),
    })
}

/// The `submission/info` object. `most_relevant_analysis` and `analyses` are left out while the
/// submission is still `accepted` (they are "present for any status after accepted").
pub(crate) fn submission_json(
    store: &Store,
    submission: &Submission,
    now: SimInstant,
    analysis_time: Duration,
) -> Value {
    let progress = store.submission_progress(submission, now, analysis_time);
    let mut object = json!({
        "submission_id": submission.id.to_string(),
        "name": submission.name,
        "status": progress.as_str(),
        "time": iso8601(&submission.time),
    });
    if progress == Progress::Accepted {
        return object;
    }
    let analyses: Vec<&Analysis> = submission
        .webids
        .iter()
        .filter_map(|webid| store.analyses.get(webid))
        .collect();
    let most_relevant = most_relevant(&analyses, now, analysis_time).map(|analysis| {
        let (detection, score) = analysis.current_verdict(analysis.progress(now, analysis_time));
        json!({"webid": analysis.webid.to_string(), "detection": detection.as_str(), "score": score})
    });
    object["most_relevant_analysis"] = most_relevant.unwrap_or(Value::Null);
    object["analyses"] = Value::Array(
        analyses
            .iter()
            .map(|a| analysis_json(a, a.progress(now, analysis_time), analysis_time))
            .collect(),
    );
    object
}

/// The most severe analysis (detection, then score); ties go to the first one.
pub(crate) fn most_relevant<'a>(
    analyses: &[&'a Analysis],
    now: SimInstant,
    analysis_time: Duration,
) -> Option<&'a Analysis> {
    let mut best: Option<(&Analysis, (Detection, u32))> = None;
    for analysis in analyses {
        let key = analysis.current_verdict(analysis.progress(now, analysis_time));
        if best.is_none_or(|(_, best_key)| key > best_key) {
            best = Some((analysis, key));
        }
    }
    best.map(|(analysis, _)| analysis)
}

/// An item of `submission/list`.
pub(crate) fn submission_list_item(
    store: &Store,
    submission: &Submission,
    now: SimInstant,
    analysis_time: Duration,
) -> Value {
    json!({
        "submission_id": submission.id.to_string(),
        "name": submission.name,
        "status": store.submission_progress(submission, now, analysis_time).as_str(),
        "time": iso8601(&submission.time),
    })
}
