//! `analysis/info`, `analysis/list`, `analysis/search`, `analysis/delete`.

use std::time::Duration;

use axum::response::Response;
use chrono::NaiveDate;
use serde_json::{Value, json};

use super::{flag, required_id};
use crate::simulator::App;
use crate::simulator::clock::SimInstant;
use crate::simulator::envelope::{ApiError, success};
use crate::simulator::form::FormData;
use crate::simulator::pagination::paginate;
use crate::simulator::reports;
use crate::simulator::state::{Analysis, Progress, Store};
use crate::simulator::verdict::Detection;
use crate::simulator::views;

const NOT_FOUND: &str = "Analysis not found.";

/// An analysis as clients may see it: it exists once its submission left `accepted`.
pub(super) fn visible_analysis(
    store: &Store,
    webid: u64,
    now: SimInstant,
    analysis_time: Duration,
) -> Result<(&Analysis, Progress), ApiError> {
    let analysis = store
        .analyses
        .get(&webid)
        .ok_or_else(|| ApiError::not_found(NOT_FOUND))?;
    let progress = analysis.progress(now, analysis_time);
    if progress == Progress::Accepted {
        return Err(ApiError::not_found(NOT_FOUND));
    }
    Ok((analysis, progress))
}

pub(super) fn info(app: &App, form: &FormData) -> Result<Response, ApiError> {
    let webid = required_id(form, "webid", NOT_FOUND)?;
    let now = app.clock.now();
    let store = app.store();
    let (analysis, progress) = visible_analysis(&store, webid, now, app.analysis_time())?;
    Ok(success(
        views::analysis_json(analysis, progress, app.analysis_time()),
        None,
    ))
}

/// `{"webid"}` stubs, newest first; paginated only with `pagination=1`.
pub(super) fn list(app: &App, form: &FormData) -> Result<Response, ApiError> {
    let paginated = flag(form, "pagination")?;
    flag(form, "include-reverser-analyses")?;
    let now = app.clock.now();
    let store = app.store();
    let items: Vec<(u64, Value)> = store
        .analyses
        .values()
        .rev()
        .filter(|a| a.progress(now, app.analysis_time()) != Progress::Accepted)
        .map(|a| (a.webid, json!({"webid": a.webid.to_string()})))
        .collect();
    if !paginated {
        let all = items.into_iter().map(|(_, item)| item).collect();
        return Ok(success(Value::Array(all), None));
    }
    let page = paginate(items, form.get("pagination_next"), app.config.page_size)?;
    Ok(success(Value::Array(page.items), page.next))
}

pub(super) fn delete(app: &App, form: &FormData) -> Result<Response, ApiError> {
    let webid = required_id(form, "webid", NOT_FOUND)?;
    let now = app.clock.now();
    let mut store = app.store();
    visible_analysis(&store, webid, now, app.analysis_time())?;
    store.delete_analysis(webid);
    tracing::info!(webid, "simulated analysis deleted");
    Ok(success(json!({}), None))
}

/// The search parameters; all given ones must match (AND), case-insensitively.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct SearchQuery {
    q: Option<String>,
    md5: Option<String>,
    sha1: Option<String>,
    sha256: Option<String>,
    filename: Option<String>,
    url: Option<String>,
    tag: Option<String>,
    comments: Option<String>,
    ioc_url: Option<String>,
    ioc_domain: Option<String>,
    ioc_public_ip: Option<String>,
    ioc_dropped_file: Option<String>,
    detection: Option<Detection>,
    threatname: Option<String>,
    before: Option<NaiveDate>,
    after: Option<NaiveDate>,
}

impl SearchQuery {
    pub(crate) fn from_form(form: &FormData) -> Result<Self, ApiError> {
        let text = |name: &str| form.get_nonempty(name).map(str::to_lowercase);
        let date = |name: &str| -> Result<Option<NaiveDate>, ApiError> {
            form.get_nonempty(name)
                .map(|value| {
                    NaiveDate::parse_from_str(value, "%Y-%m-%d").map_err(|_| {
                        ApiError::invalid(format!("Invalid value for parameter {name}."))
                    })
                })
                .transpose()
        };
        let detection = form
            .get_nonempty("detection")
            .map(|value| {
                Detection::parse(value)
                    .ok_or_else(|| ApiError::invalid("Invalid value for parameter detection."))
            })
            .transpose()?;
        let query = SearchQuery {
            q: text("q"),
            md5: text("md5"),
            sha1: text("sha1"),
            sha256: text("sha256"),
            filename: text("filename"),
            url: text("url"),
            tag: text("tag"),
            comments: text("comments"),
            ioc_url: text("ioc-url"),
            ioc_domain: text("ioc-domain"),
            ioc_public_ip: text("ioc-public-ip"),
            ioc_dropped_file: text("ioc-dropped-file"),
            detection,
            threatname: text("threatname"),
            before: date("before-date")?,
            after: date("after-date")?,
        };
        if query == SearchQuery::default() {
            return Err(ApiError::missing("q"));
        }
        Ok(query)
    }

    /// Whether a visible analysis matches; `detection` is the one currently shown.
    pub(crate) fn matches(&self, analysis: &Analysis, detection: Detection) -> bool {
        let contains = |haystack: &str, needle: &Option<String>| {
            needle
                .as_ref()
                .is_none_or(|n| haystack.to_lowercase().contains(n.as_str()))
        };
        let equals = |value: &str, wanted: &Option<String>| {
            wanted
                .as_ref()
                .is_none_or(|w| value.eq_ignore_ascii_case(w))
        };
        let (md5, sha1, sha256) = analysis.file().map_or(("", "", ""), |f| {
            (
                f.facts.md5.as_str(),
                f.facts.sha1.as_str(),
                f.facts.sha256.as_str(),
            )
        });
        let url = analysis.url().unwrap_or("");
        let webid = analysis.webid.to_string();
        let free_text_ok = self.q.as_ref().is_none_or(|q| {
            [
                md5,
                sha1,
                sha256,
                &analysis.filename,
                &analysis.comments,
                url,
                &analysis.scriptname,
                &webid,
            ]
            .iter()
            .any(|field| field.to_lowercase().contains(q.as_str()))
        });
        let host = reports::host_of(url).unwrap_or_default();
        let date = analysis.time.date_naive();
        free_text_ok
            && equals(md5, &self.md5)
            && equals(sha1, &self.sha1)
            && equals(sha256, &self.sha256)
            && contains(&analysis.filename, &self.filename)
            && contains(url, &self.url)
            && contains(&analysis.comments, &self.comments)
            && self.tag.as_ref().is_none_or(|tag| {
                analysis
                    .tags
                    .iter()
                    .any(|t| t.to_lowercase().contains(tag.as_str()))
            })
            && contains(url, &self.ioc_url)
            && equals(&host, &self.ioc_domain)
            // The simulator records no contacted IPs and no dropped-file hashes.
            && self.ioc_public_ip.is_none()
            && self.ioc_dropped_file.is_none()
            && self.detection.is_none_or(|d| d == detection)
            && equals(shown_threatname(analysis, detection), &self.threatname)
            && self.before.is_none_or(|before| date < before)
            && self.after.is_none_or(|after| date > after)
    }
}

/// The threat name shown right now (empty until finished).
fn shown_threatname(analysis: &Analysis, shown: Detection) -> &str {
    if shown == Detection::Unknown {
        ""
    } else {
        &analysis.verdict.threatname
    }
}

/// Full analysis objects, newest first. New submissions stay invisible for `search_lag`.
pub(super) fn search(app: &App, form: &FormData) -> Result<Response, ApiError> {
    let query = SearchQuery::from_form(form)?;
    flag(form, "include-reverser-analyses")?;
    let now = app.clock.now();
    let analysis_time = app.analysis_time();
    let lag = app.config.search_lag;
    let store = app.store();
    let results: Vec<Value> = store
        .analyses
        .values()
        .rev()
        .filter(|a| {
            store
                .submissions
                .get(&a.submission_id)
                .is_some_and(|s| now.saturating_sub(s.created) >= lag)
        })
        .filter_map(|a| {
            let progress = a.progress(now, analysis_time);
            if progress == Progress::Accepted {
                return None;
            }
            let (detection, _) = a.current_verdict(progress);
            query
                .matches(a, detection)
                .then(|| views::analysis_json(a, progress, analysis_time))
        })
        .collect();
    Ok(success(Value::Array(results), None))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(fields: &[(&str, &str)]) -> FormData {
        FormData {
            fields: fields
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            files: vec![],
        }
    }

    #[test]
    fn a_search_needs_at_least_one_criterion() {
        let error =
            SearchQuery::from_form(&form(&[("apikey", "k"), ("q", "")])).expect_err("empty");
        assert_eq!(error.code, 2);
        assert!(SearchQuery::from_form(&form(&[("sha256", "AB")])).is_ok());
    }

    #[test]
    fn bad_dates_and_detections_are_invalid_parameters() {
        let error =
            SearchQuery::from_form(&form(&[("before-date", "2026-13-01")])).expect_err("date");
        assert_eq!(error.code, 3);
        let error = SearchQuery::from_form(&form(&[("detection", "evil")])).expect_err("detection");
        assert_eq!(error.code, 3);
    }
}
