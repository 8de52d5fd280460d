//! `submission/chunked-sample`: the data of a `chunked-sample` submission, in numbered chunks
//! (§6 of the API notes). There is no finish call; the last chunk starts the analysis.

use std::io::{Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Bytes;
use axum::response::Response;
use serde_json::json;

use super::required_id;
use crate::simulator::App;
use crate::simulator::envelope::{ApiError, success};
use crate::simulator::form::{Digester, FileContent, FormData, StoredFile};
use crate::simulator::intake::{self, Target};
use crate::simulator::state::{ChunkPlan, ChunkUpload, Phase, SubmissionOptions};

/// What one chunk request claims and carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ChunkRequest {
    pub(crate) plan: ChunkPlan,
    /// 1-based.
    pub(crate) index: u64,
    /// `current-chunk-size` as sent.
    pub(crate) declared: u64,
    /// Bytes actually in the `chunk` part.
    pub(crate) actual: u64,
}

/// Validate a chunk against the upload so far: consistent geometry, strictly in order, exact
/// sizes. Every violation is code 3.
pub(crate) fn check_chunk(
    known_plan: Option<ChunkPlan>,
    next_index: u64,
    chunk: &ChunkRequest,
) -> Result<(), ApiError> {
    let plan = chunk.plan;
    if plan.chunk_size == 0 {
        return Err(ApiError::invalid("Invalid value for parameter chunk-size."));
    }
    if plan.chunk_count != plan.file_size.div_ceil(plan.chunk_size) {
        return Err(ApiError::invalid(
            "Parameter chunk-count does not match file-size and chunk-size.",
        ));
    }
    if known_plan.is_some_and(|known| known != plan) {
        return Err(ApiError::invalid(
            "Parameters file-size, chunk-size and chunk-count changed during the upload.",
        ));
    }
    if chunk.index == 0 || chunk.index > plan.chunk_count {
        return Err(ApiError::invalid(
            "Invalid value for parameter current-chunk-index.",
        ));
    }
    if chunk.index < next_index {
        return Err(ApiError::invalid(format!(
            "Chunk {} was already received.",
            chunk.index
        )));
    }
    if chunk.index > next_index {
        return Err(ApiError::invalid(format!(
            "Chunk {} arrived out of order, expected chunk {next_index}.",
            chunk.index
        )));
    }
    let expected = if chunk.index < plan.chunk_count {
        plan.chunk_size
    } else {
        plan.file_size - (plan.chunk_count - 1) * plan.chunk_size
    };
    if chunk.declared != expected {
        return Err(ApiError::invalid(format!(
            "Parameter current-chunk-size is {}, expected {expected}.",
            chunk.declared
        )));
    }
    if chunk.actual != chunk.declared {
        return Err(ApiError::invalid(format!(
            "The chunk holds {} bytes, but current-chunk-size is {}.",
            chunk.actual, chunk.declared
        )));
    }
    Ok(())
}

fn number(form: &FormData, name: &str) -> Result<u64, ApiError> {
    form.get_nonempty(name)
        .ok_or_else(|| ApiError::missing(name))?
        .trim()
        .parse()
        .map_err(|_| ApiError::invalid(format!("Invalid value for parameter {name}.")))
}

pub(super) async fn chunk(app: &Arc<App>, mut form: FormData) -> Result<Response, ApiError> {
    if !app.config.chunked_upload {
        return Err(ApiError::unknown_endpoint());
    }
    let id = required_id(&form, "submission_id", "Submission not found.")?;
    let plan = ChunkPlan {
        file_size: number(&form, "file-size")?,
        chunk_size: number(&form, "chunk-size")?,
        chunk_count: number(&form, "chunk-count")?,
    };
    let index = number(&form, "current-chunk-index")?;
    let declared = number(&form, "current-chunk-size")?;
    let data = match form.take_file("chunk").map(|part| part.content) {
        Some(FileContent::Memory(data)) => data,
        Some(FileContent::Disk(_)) => return Err(ApiError::internal("The chunk was not kept.")),
        None => return Err(ApiError::missing("chunk")),
    };
    let request = ChunkRequest {
        plan,
        index,
        declared,
        actual: data.len() as u64,
    };

    let (path, digester, received) = reserve(app, id, &request)?;
    let written = tokio::task::spawn_blocking(move || append(path, received, &data, digester))
        .await
        .map_err(|err| ApiError::internal(format!("Cannot store the chunk: {err}")))
        .and_then(|result| result);

    let Some((upload, options)) = commit(app, id, &request, written)? else {
        return Ok(success(json!({}), None));
    };
    let facts = upload.digester.finish();
    if facts.size != plan.file_size {
        return Err(ApiError::invalid(format!(
            "Received {} bytes, but file-size is {}.",
            facts.size, plan.file_size
        )));
    }
    let file = Arc::new(StoredFile {
        path: upload.path,
        facts,
    });
    let target = Target::File {
        name: upload.file_name,
        file: Arc::clone(&file),
    };
    let dir = app.upload_dir.clone();
    let prepared = tokio::task::spawn_blocking(move || intake::prepare(target, &options, &dir))
        .await
        .map_err(|err| ApiError::internal(format!("Analysis preparation failed: {err}")))?;
    let now = app.clock.now();
    let mut store = app.store();
    if store.start_analyses(id, prepared, now, app.analysis_start_time(now)) {
        if let Some(submission) = store.submissions.get_mut(&id) {
            submission.sample = Some(file);
        }
        tracing::info!(submission_id = id, "chunked upload complete");
    }
    Ok(success(json!({}), None))
}

/// Record a written chunk (or undo the reservation after a failed write). After the last
/// chunk the upload is taken out of the submission, which moves on to `Preparing`.
fn commit(
    app: &App,
    id: u64,
    request: &ChunkRequest,
    written: Result<Digester, ApiError>,
) -> Result<Option<(ChunkUpload, SubmissionOptions)>, ApiError> {
    let mut store = app.store();
    let submission = store
        .submissions
        .get_mut(&id)
        .ok_or_else(|| ApiError::not_found("Submission not found."))?;
    let Phase::AwaitingChunks(upload) = &mut submission.phase else {
        return Err(ApiError::invalid("Submission is not waiting for chunks."));
    };
    upload.busy = false;
    let digester = match written {
        Ok(digester) => digester,
        Err(error) => {
            if upload.next_index == 1 {
                upload.plan = None;
            }
            return Err(error);
        }
    };
    upload.digester = digester;
    upload.next_index += 1;
    upload.received += request.actual;
    if request.index < request.plan.chunk_count {
        return Ok(None);
    }
    match std::mem::replace(&mut submission.phase, Phase::Preparing) {
        Phase::AwaitingChunks(upload) => Ok(Some((*upload, submission.options.clone()))),
        _ => Err(ApiError::internal("Upload state lost.")),
    }
}

/// Validate and mark the upload busy; returns where to write and the hashing state so far.
fn reserve(
    app: &App,
    id: u64,
    request: &ChunkRequest,
) -> Result<(PathBuf, Digester, u64), ApiError> {
    let mut store = app.store();
    let submission = store
        .submissions
        .get_mut(&id)
        .ok_or_else(|| ApiError::not_found("Submission not found."))?;
    let Phase::AwaitingChunks(upload) = &mut submission.phase else {
        return Err(ApiError::invalid("Submission is not waiting for chunks."));
    };
    if upload.busy {
        return Err(ApiError::invalid(
            "Another chunk of this submission is still being received.",
        ));
    }
    check_chunk(upload.plan, upload.next_index, request)?;
    upload.busy = true;
    upload.plan = Some(request.plan);
    Ok((
        upload.path.to_path_buf(),
        upload.digester.clone(),
        upload.received,
    ))
}

/// Append a chunk at `offset` (dropping anything a failed earlier attempt left behind) and
/// hash it. Blocking.
fn append(
    path: PathBuf,
    offset: u64,
    data: &Bytes,
    mut digester: Digester,
) -> Result<Digester, ApiError> {
    let fail = |err: std::io::Error| ApiError::internal(format!("Cannot store the chunk: {err}"));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .map_err(fail)?;
    file.set_len(offset).map_err(fail)?;
    file.seek(SeekFrom::Start(offset)).map_err(fail)?;
    file.write_all(data).map_err(fail)?;
    file.flush().map_err(fail)?;
    digester.update(data);
    Ok(digester)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB10: u64 = 10 * 1024 * 1024;

    fn plan(file_size: u64) -> ChunkPlan {
        ChunkPlan {
            file_size,
            chunk_size: MIB10,
            chunk_count: file_size.div_ceil(MIB10),
        }
    }

    fn chunk(file_size: u64, index: u64, size: u64) -> ChunkRequest {
        ChunkRequest {
            plan: plan(file_size),
            index,
            declared: size,
            actual: size,
        }
    }

    #[test]
    fn the_official_59_mib_example_is_accepted_in_order() {
        let size = 59 * 1024 * 1024;
        for index in 1..=5 {
            check_chunk(Some(plan(size)), index, &chunk(size, index, MIB10)).expect("full chunk");
        }
        check_chunk(Some(plan(size)), 6, &chunk(size, 6, 9_437_184)).expect("last chunk");
    }

    #[test]
    fn duplicates_and_out_of_order_chunks_are_refused() {
        let size = 25 * 1024 * 1024;
        let duplicate = check_chunk(Some(plan(size)), 2, &chunk(size, 1, MIB10));
        assert!(
            duplicate
                .expect_err("duplicate")
                .message
                .contains("already")
        );
        let early = check_chunk(Some(plan(size)), 1, &chunk(size, 2, MIB10));
        assert!(early.expect_err("early").message.contains("out of order"));
        let beyond = check_chunk(None, 1, &chunk(size, 4, MIB10));
        assert_eq!(beyond.expect_err("beyond").code, 3);
    }

    #[test]
    fn size_mismatches_are_refused() {
        let size = 15 * 1024 * 1024;
        let wrong_last = check_chunk(Some(plan(size)), 2, &chunk(size, 2, MIB10));
        assert!(wrong_last.is_err());
        let mut short = chunk(size, 1, MIB10);
        short.actual -= 1;
        assert!(check_chunk(None, 1, &short).is_err());
        let mut bad_count = chunk(size, 1, MIB10);
        bad_count.plan.chunk_count = 3;
        assert!(check_chunk(None, 1, &bad_count).is_err());
        let changed = check_chunk(Some(plan(size + 1)), 1, &chunk(size, 1, MIB10));
        assert!(changed.is_err());
    }

    #[test]
    fn a_zero_byte_file_has_no_valid_chunk() {
        let error = check_chunk(None, 1, &chunk(0, 1, 0)).expect_err("no chunks");
        assert_eq!(error.code, 3);
    }
}
