//! `submission/new`, `submission/info`, `submission/list`, `submission/delete`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::response::Response;
use serde_json::{Value, json};

use super::{RequestCtx, account, required_id};
use crate::simulator::catalog::{self, ParamKind};
use crate::simulator::envelope::{ApiError, success};
use crate::simulator::form::{FileContent, FormData, StoredFile};
use crate::simulator::intake::{self, Target};
use crate::simulator::pagination::paginate;
use crate::simulator::state::{ChunkUpload, Phase, SubmissionOptions};
use crate::simulator::{App, SimMode, views};

/// Parameters the on-premise product does not know (Cloud-only features).
const CLOUD_ONLY: &[&str] = &["delete-after-days", "url-reputation", "proxy-mode-config"];
/// Parameters the Cloud does not know.
const ON_PREM_ONLY: &[&str] = &["priority"];
/// The fields that say what to analyse; exactly one (or a cookbook alone) is allowed.
const TARGETS: &[&str] = &[
    "sample",
    "chunked-sample",
    "sample-url",
    "url",
    "command-line",
];

/// What `submission/new` was asked to analyse, before anything is stored.
enum Requested {
    /// Data follows in `submission/chunked-sample` requests.
    Chunked(String),
    /// Everything needed is in this request.
    Direct(Direct),
}

enum Direct {
    Sample,
    SampleUrl(String),
    Url(String),
    CommandLine(String),
    CookbookOnly,
}

pub(super) async fn new(
    app: &Arc<App>,
    mut form: FormData,
    ctx: &mut RequestCtx,
) -> Result<Response, ApiError> {
    check_parameter_names(app, &form)?;
    check_parameter_values(&form)?;
    if app.config.mode == SimMode::Cloud && form.get("accept-tac") != Some("1") {
        return Err(ApiError::terms_not_accepted());
    }
    let requested = requested_target(&form)?;
    account::check_quota(app, &app.store())?;
    let options = options(&mut form);

    let now = app.clock.now();
    let time = app.clock.wall(now);
    let id = match requested {
        Requested::Chunked(file_name) => {
            let (_, path) = tempfile::Builder::new()
                .prefix("chunked-")
                .tempfile_in(&app.upload_dir)
                .map_err(|err| ApiError::internal(format!("Cannot store the sample: {err}")))?
                .into_parts();
            let upload = ChunkUpload {
                file_name: file_name.clone(),
                path,
                plan: None,
                next_index: 1,
                received: 0,
                digester: Default::default(),
                busy: false,
            };
            let mut store = app.store();
            account::check_quota(app, &store)?;
            store.create_submission(
                file_name,
                options,
                Phase::AwaitingChunks(Box::new(upload)),
                None,
                now,
                time,
            )
        }
        Requested::Direct(direct) => {
            let (name, target, sample) = match direct {
                Direct::Sample => {
                    let (name, file) = take_sample(&mut form)?;
                    let file = Arc::new(file);
                    (
                        name.clone(),
                        Target::File {
                            name,
                            file: Arc::clone(&file),
                        },
                        Some(file),
                    )
                }
                Direct::SampleUrl(url) => (url.clone(), Target::SampleUrl(url), None),
                Direct::Url(url) => (url.clone(), Target::Url(url), None),
                Direct::CommandLine(command) => {
                    (command.clone(), Target::CommandLine(command), None)
                }
                Direct::CookbookOnly => {
                    let name = options
                        .cookbook
                        .as_ref()
                        .map_or_else(|| "cookbook.jbs".to_owned(), |(name, _)| name.clone());
                    (name.clone(), Target::CookbookOnly { name }, None)
                }
            };
            let prepare_options = options.clone();
            let dir = app.upload_dir.clone();
            let prepared = tokio::task::spawn_blocking(move || {
                intake::prepare(target, &prepare_options, &dir)
            })
            .await
            .map_err(|err| ApiError::internal(format!("Analysis preparation failed: {err}")))?;
            let mut store = app.store();
            account::check_quota(app, &store)?;
            let id = store.create_submission(name, options, Phase::Preparing, sample, now, time);
            store.start_analyses(id, prepared, now, app.analysis_start_time(now));
            id
        }
    };
    tracing::info!(submission_id = id, "simulated submission created");
    ctx.created_submission = Some(id.to_string());
    Ok(success(json!({"submission_id": id.to_string()}), None))
}

/// Code 3 `Unknown parameter <name>.` for anything this product does not know.
fn check_parameter_names(app: &App, form: &FormData) -> Result<(), ApiError> {
    for name in form.names() {
        let known = catalog::submission_param_kind(name).is_some();
        let refused = match app.config.mode {
            SimMode::Cloud => ON_PREM_ONLY.contains(&name),
            SimMode::OnPrem => CLOUD_ONLY.contains(&name),
        } || (name == "chunked-sample" && !app.config.chunked_upload);
        if !known || refused {
            return Err(ApiError::unknown_parameter(name));
        }
    }
    Ok(())
}

fn check_parameter_values(form: &FormData) -> Result<(), ApiError> {
    let invalid = |name: &str| ApiError::invalid(format!("Invalid value for parameter {name}."));
    for (name, value) in &form.fields {
        match catalog::submission_param_kind(name) {
            Some(ParamKind::Bool) if value != "0" && value != "1" => return Err(invalid(name)),
            Some(ParamKind::Int) if value.trim().parse::<u64>().is_err() => {
                return Err(invalid(name));
            }
            Some(ParamKind::Date)
                if chrono::NaiveDate::parse_from_str(value, "%Y-%m-%d").is_err() =>
            {
                return Err(invalid(name));
            }
            _ => {}
        }
        if name == "systems[]" && !catalog::is_known_system(value) {
            return Err(ApiError::invalid(format!("Unknown system {value}.")));
        }
        if name == "sample" || name == "cookbook" {
            return Err(ApiError::invalid(format!(
                "Parameter {name} must be a file upload."
            )));
        }
    }
    Ok(())
}

/// Exactly one thing to analyse (or a cookbook alone), else code 2.
fn requested_target(form: &FormData) -> Result<Requested, ApiError> {
    let present: Vec<&str> = TARGETS.iter().copied().filter(|t| form.has(t)).collect();
    if present.len() > 1 {
        return Err(ApiError::missing_msg(format!(
            "Exactly one of sample, chunked-sample, sample-url, url or command-line is allowed, got {}.",
            present.join(", ")
        )));
    }
    let text = |name: &str| {
        form.get_nonempty(name)
            .map(str::to_owned)
            .ok_or_else(|| ApiError::invalid(format!("Invalid value for parameter {name}.")))
    };
    Ok(match present.first() {
        Some(&"sample") => Requested::Direct(Direct::Sample),
        Some(&"chunked-sample") => Requested::Chunked(text("chunked-sample")?),
        Some(&"sample-url") => Requested::Direct(Direct::SampleUrl(text("sample-url")?)),
        Some(&"url") => Requested::Direct(Direct::Url(text("url")?)),
        Some(&"command-line") => Requested::Direct(Direct::CommandLine(text("command-line")?)),
        _ if form.file("cookbook").is_some() => Requested::Direct(Direct::CookbookOnly),
        _ => {
            return Err(ApiError::missing_msg(
                "Missing parameter sample (or chunked-sample, sample-url, url, command-line, cookbook).",
            ));
        }
    })
}

fn options(form: &mut FormData) -> SubmissionOptions {
    let mut systems: Vec<String> = Vec::new();
    for system in form.all("systems[]") {
        if !systems.iter().any(|s| s == system) {
            systems.push(system.to_owned());
        }
    }
    if systems.is_empty() {
        systems.push(catalog::DEFAULT_SYSTEM.to_owned());
    }
    let cookbook = form.take_file("cookbook").map(|part| {
        let name = if part.file_name.is_empty() {
            "cookbook.jbs".to_owned()
        } else {
            part.file_name
        };
        let content = match part.content {
            FileContent::Memory(bytes) => bytes,
            FileContent::Disk(_) => Bytes::new(),
        };
        (name, content)
    });
    SubmissionOptions {
        systems,
        tags: form.all("tags[]").into_iter().map(str::to_owned).collect(),
        comments: form.get("comments").unwrap_or_default().to_owned(),
        encrypt_password: form
            .get_nonempty("encrypt-with-password")
            .map(str::to_owned),
        archive_password: form
            .get_nonempty("archive-password")
            .unwrap_or("infected")
            .to_owned(),
        archive_no_unpack: form.get("archive-no-unpack") == Some("1"),
        cookbook,
    }
}

fn take_sample(form: &mut FormData) -> Result<(String, StoredFile), ApiError> {
    let part = form
        .take_file("sample")
        .ok_or_else(|| ApiError::missing("sample"))?;
    let name = if part.file_name.is_empty() {
        "sample".to_owned()
    } else {
        part.file_name
    };
    match part.content {
        FileContent::Disk(file) => Ok((name, file)),
        // The form parser always streams `sample` to disk.
        FileContent::Memory(_) => Err(ApiError::internal("The sample was not stored.")),
    }
}

pub(super) fn info(app: &App, form: &FormData) -> Result<Response, ApiError> {
    let id = required_id(form, "submission_id", "Submission not found.")?;
    let now = app.clock.now();
    let store = app.store();
    let submission = store
        .submissions
        .get(&id)
        .ok_or_else(|| ApiError::not_found("Submission not found."))?;
    Ok(success(
        views::submission_json(&store, submission, now, app.analysis_time()),
        None,
    ))
}

pub(super) fn list(app: &App, form: &FormData) -> Result<Response, ApiError> {
    let now = app.clock.now();
    let store = app.store();
    let items: Vec<(u64, Value)> = store
        .submissions
        .values()
        .rev()
        .map(|s| {
            (
                s.id,
                views::submission_list_item(&store, s, now, app.analysis_time()),
            )
        })
        .collect();
    let page = paginate(items, form.get("pagination_next"), app.config.page_size)?;
    Ok(success(Value::Array(page.items), page.next))
}

pub(super) fn delete(app: &App, form: &FormData) -> Result<Response, ApiError> {
    let id = required_id(form, "submission_id", "Submission not found.")?;
    if app.store().delete_submission(id) {
        tracing::info!(submission_id = id, "simulated submission deleted");
        Ok(success(json!({}), None))
    } else {
        Err(ApiError::not_found("Submission not found."))
    }
}
