//! `analysis/download`: report files and artefacts as raw bytes with a `Content-Disposition`
//! name (always `attachment; filename="<name>";`: jbxapi slices the name with `[1:-2]`).

use std::io;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use futures_util::stream::{self, BoxStream, Stream, StreamExt};

use super::analysis::visible_analysis;
use super::{RequestCtx, required_id};
use crate::simulator::envelope::ApiError;
use crate::simulator::faults::Fault;
use crate::simulator::form::FormData;
use crate::simulator::reports::{self, Cost, Rendered, ReportInput};
use crate::simulator::state::Progress;
use crate::simulator::{App, SimMode, catalog};

pub(super) async fn download(
    app: &Arc<App>,
    form: &FormData,
    ctx: &RequestCtx,
) -> Result<Response, ApiError> {
    let webid = required_id(form, "webid", "Analysis not found.")?;
    let download_type = form
        .get_nonempty("type")
        .ok_or_else(|| ApiError::missing("type"))?
        .to_owned();
    let run = form
        .get_nonempty("run")
        .map(|run| {
            run.trim()
                .parse::<usize>()
                .map_err(|_| ApiError::invalid("Invalid value for parameter run."))
        })
        .transpose()?;

    let (input, cost, cached, password) = {
        let now = app.clock.now();
        let store = app.store();
        let (analysis, progress) = visible_analysis(&store, webid, now, app.analysis_time())?;
        let cost = reports::cost_of(&download_type)?;
        if progress != Progress::Finished {
            return Err(ApiError::invalid("Analysis is not finished yet."));
        }
        // All runs of an analysis share its verdict, so the most relevant run is the first.
        let run = match run {
            None => 0,
            Some(run) if run < analysis.systems.len() => run,
            Some(run) => {
                return Err(ApiError::invalid(format!(
                    "Invalid value for parameter run: the analysis has no run {run}."
                )));
            }
        };
        let system = analysis
            .systems
            .get(run)
            .cloned()
            .unwrap_or_else(|| catalog::DEFAULT_SYSTEM.to_owned());
        let input = ReportInput {
            webid,
            run,
            arch: catalog::system_arch(&system),
            system,
            filename: analysis.filename.clone(),
            scriptname: analysis.scriptname.clone(),
            url: analysis.url().map(str::to_owned),
            file: match &analysis.subject {
                crate::simulator::state::Subject::File(file) => Some(Arc::clone(file)),
                _ => None,
            },
            facts: match &analysis.subject {
                crate::simulator::state::Subject::File(file) => Some(file.facts.clone()),
                _ => None,
            },
            verdict: analysis.verdict.clone(),
            comments: analysis.comments.clone(),
            tags: analysis.tags.clone(),
            time: analysis.time,
            duration_secs: app.config.analysis_seconds,
            cookbook: analysis.cookbook.clone(),
            product: match app.config.mode {
                SimMode::Cloud => "Cloud",
                SimMode::OnPrem => "Ultimate",
            },
            html_padding: app.config.html_padding_bytes,
        };
        let cached = store
            .download_cache
            .get(&(webid, run, download_type.clone()))
            .cloned();
        (input, cost, cached, analysis.encrypt_password.clone())
    };

    let dir = app.upload_dir.clone();
    let kind = download_type.clone();
    let run = input.run;
    let (rendered, fresh) = tokio::task::spawn_blocking(move || {
        render(&kind, &input, cost, cached, password.as_deref(), &dir)
    })
    .await
    .map_err(|err| ApiError::internal(format!("Rendering failed: {err}")))??;
    if let Some(bytes) = fresh {
        // Keep the first rendering; a concurrent one may have won the race.
        app.store()
            .download_cache
            .entry((webid, run, download_type))
            .or_insert(bytes);
    }
    response(rendered, ctx.fault.as_ref())
}

/// Render (or reuse) the resource and wrap it for encrypted analyses. Blocking. Returns the
/// freshly rendered bytes when they must be cached.
fn render(
    kind: &str,
    input: &ReportInput,
    cost: Cost,
    cached: Option<Bytes>,
    password: Option<&str>,
    dir: &std::path::Path,
) -> Result<(Rendered, Option<Bytes>), ApiError> {
    let mut rendered = reports::render(kind, input)?;
    let mut fresh = None;
    if cost == Cost::RenderOnce {
        let bytes = match cached {
            Some(bytes) => bytes,
            None => {
                let payload =
                    std::mem::replace(&mut rendered.payload, reports::Payload::Bytes(Bytes::new()));
                let bytes = payload
                    .into_bytes()
                    .map_err(|err| ApiError::internal(format!("Rendering failed: {err}")))?;
                fresh = Some(bytes.clone());
                bytes
            }
        };
        rendered.payload = reports::Payload::Bytes(bytes);
    }
    if let Some(password) = password {
        rendered = reports::encrypt(rendered, password, input.seed("encrypt"), &input.time, dir)?;
    }
    Ok((rendered, fresh))
}

fn response(rendered: Rendered, fault: Option<&Fault>) -> Result<Response, ApiError> {
    let length = rendered.payload.len();
    let stream = rendered
        .payload
        .into_stream()
        .map_err(|err| ApiError::internal(format!("Cannot read the resource: {err}")))?;
    let body = match fault {
        Some(Fault::TruncateDownload { bytes }) => Body::from_stream(truncate(stream, *bytes)),
        Some(Fault::SlowDownload { bytes, every_ms }) => {
            Body::from_stream(drip(stream, *bytes, Duration::from_millis(*every_ms)))
        }
        _ => Body::from_stream(stream),
    };
    let disposition = match fault {
        Some(Fault::HostileFilename { filename }) => hostile_disposition(filename),
        _ => Some(format!(
            "attachment; filename=\"{}\";",
            header_safe_name(&rendered.name)
        )),
    };
    let mut response = Response::new(body);
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(rendered.content_type),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    if let Some(value) = disposition.and_then(|d| HeaderValue::from_bytes(d.as_bytes()).ok()) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    Ok(response)
}

/// Names from users (cookbooks) may hold quotes or control characters; keep the header valid
/// and the `[1:-2]` slicing of jbxapi correct.
fn header_safe_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c == '"' || c == '\\' || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect()
}

/// The hostile-filename fault: an empty value sends no header at all, a value that already
/// looks like a header (`attachment...` or containing `filename`) is sent as the whole header,
/// anything else becomes `attachment; filename="<value>";`. Bytes HTTP cannot carry (NUL, CR,
/// LF) make the header go missing, which is what a client would see from such a server.
fn hostile_disposition(filename: &str) -> Option<String> {
    if filename.is_empty() {
        None
    } else if filename.starts_with("attachment") || filename.contains("filename") {
        Some(filename.to_owned())
    } else {
        Some(format!("attachment; filename=\"{filename}\";"))
    }
}

/// Yield the body `piece` bytes at a time, sleeping `every` before each piece; `piece == 0`
/// never yields anything (the client sees the headers, then silence until it gives up).
fn drip(
    inner: BoxStream<'static, io::Result<Bytes>>,
    piece: u64,
    every: Duration,
) -> impl Stream<Item = io::Result<Bytes>> + Send + 'static {
    stream::unfold(
        (inner, Bytes::new()),
        move |(mut inner, mut pending)| async move {
            if piece == 0 {
                std::future::pending::<()>().await;
            }
            while pending.is_empty() {
                match inner.next().await {
                    Some(Ok(chunk)) => pending = chunk,
                    Some(Err(error)) => return Some((Err(error), (inner, Bytes::new()))),
                    None => return None,
                }
            }
            tokio::time::sleep(every).await;
            let take = pending
                .len()
                .min(usize::try_from(piece).unwrap_or(usize::MAX));
            let out = pending.split_to(take);
            Some((Ok(out), (inner, pending)))
        },
    )
}

/// Yield the first `limit` bytes, then fail so hyper aborts the connection short of the
/// announced `Content-Length`.
fn truncate(
    inner: BoxStream<'static, io::Result<Bytes>>,
    limit: u64,
) -> impl Stream<Item = io::Result<Bytes>> + Send + 'static {
    stream::unfold(
        (inner, limit, false),
        |(mut inner, remaining, done)| async move {
            if done {
                return None;
            }
            if remaining == 0 {
                // Give hyper a moment to flush what was sent before the abort.
                tokio::time::sleep(Duration::from_millis(50)).await;
                let error = io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    "download truncated by simulator fault",
                );
                return Some((Err(error), (inner, 0, true)));
            }
            match inner.next().await {
                Some(Ok(mut chunk)) => {
                    if chunk.len() as u64 > remaining {
                        chunk.truncate(remaining as usize);
                    }
                    let left = remaining - chunk.len() as u64;
                    Some((Ok(chunk), (inner, left, false)))
                }
                Some(Err(error)) => Some((Err(error), (inner, 0, true))),
                None => None,
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_names_are_sent_as_given() {
        assert_eq!(
            hostile_disposition("../../etc/x").as_deref(),
            Some("attachment; filename=\"../../etc/x\";")
        );
        assert_eq!(
            hostile_disposition("attachment; filename*=UTF-8''..%2Fx").as_deref(),
            Some("attachment; filename*=UTF-8''..%2Fx")
        );
        assert_eq!(hostile_disposition(""), None);
    }

    #[tokio::test]
    async fn a_drip_yields_the_whole_body_in_small_pieces_at_the_given_pace() {
        let body: BoxStream<'static, io::Result<Bytes>> = stream::iter(vec![
            Ok(Bytes::from_static(b"hello")),
            Ok(Bytes::from_static(b"!")),
        ])
        .boxed();
        let started = tokio::time::Instant::now();
        let pieces: Vec<Bytes> = drip(body, 2, Duration::from_millis(30))
            .map(|p| p.expect("piece"))
            .collect()
            .await;
        let expected: Vec<Bytes> = [&b"he"[..], b"ll", b"o", b"!"]
            .into_iter()
            .map(Bytes::from_static)
            .collect();
        assert_eq!(pieces, expected);
        assert!(started.elapsed() >= Duration::from_millis(120));
    }

    #[tokio::test]
    async fn a_drip_of_zero_bytes_is_a_stall() {
        let body: BoxStream<'static, io::Result<Bytes>> =
            stream::iter(vec![Ok(Bytes::from_static(b"x"))]).boxed();
        let mut stalled = Box::pin(drip(body, 0, Duration::from_millis(1)));
        let next = tokio::time::timeout(Duration::from_millis(300), stalled.next()).await;
        assert!(next.is_err(), "nothing is ever sent");
    }

    #[test]
    fn generated_names_cannot_break_the_header() {
        assert_eq!(header_safe_name("a\"b\\c\n.jbs"), "a_b_c_.jbs");
    }

    #[tokio::test]
    async fn truncation_stops_after_the_limit_with_an_error() {
        let inner = stream::iter(vec![
            Ok(Bytes::from_static(b"hello")),
            Ok(Bytes::from_static(b"world")),
        ])
        .boxed();
        let items: Vec<io::Result<Bytes>> = truncate(inner, 7).collect().await;
        assert_eq!(items.len(), 3);
        assert_eq!(items[0].as_ref().ok(), Some(&Bytes::from_static(b"hello")));
        assert_eq!(items[1].as_ref().ok(), Some(&Bytes::from_static(b"wo")));
        assert!(items[2].is_err());
    }
}
