//! Submitting: `submission/new` for URLs and samples, and the chunked-upload protocol, which
//! lives only here. Never retried blindly (see `request::Repeat`).
//!
//! A sample above `ClientSettings::chunked_threshold` goes in three steps:
//! 1. a `submission/new` naming the sample with `chunked-sample=<name>` creates a submission
//!    that waits for its chunks, and the server answers with its id;
//! 2. the caller's hook records that id ([`JoeClient::submit_sample_recorded`]): the daemon
//!    commits it to the attempt row, so a crash from here on leaves an id reconciliation can
//!    find and delete (RELIABILITY case 116). A hook that fails stops the upload and the
//!    empty submission is deleted;
//! 3. the chunks of [`CHUNK_SIZE`] in order (1-based); there is no finish call, the server
//!    starts when the last chunk arrives. A failed chunk deletes the incomplete submission
//!    (best effort; [`ApiError::ChunkFailed`] says whether it went).
//!
//! A server without chunked upload refuses step 1 ([`ApiError::is_chunked_unsupported`]) and
//! gets the whole sample in one multipart `submission/new` instead.

use std::convert::Infallible;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;

use reqwest::multipart::{Form, Part};
use tracing::{info, warn};
use zeroize::Zeroizing;

use super::client::JoeClient;
use super::endpoints::Endpoint;
use super::error::ApiError;
use super::params::{Param, SubmissionParams};
use super::request::{KeyedForm, Repeat, decode};
use super::transport::{self, Envelope};
use super::types::NewSubmission;
use super::upload::{self, CHUNK_SIZE, Progress};
use super::wire;

/// How a sample is named to the server and who hears of its progress.
#[derive(Clone, Default)]
pub struct SampleUpload {
    /// Name sent to the server; defaults to the file's base name.
    pub name: Option<String>,
    /// Called with the bytes of the sample sent so far (across chunks).
    pub progress: Option<Progress>,
}

/// Why [`JoeClient::submit_sample_recorded`] failed.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError<E> {
    #[error(transparent)]
    Api(#[from] ApiError),
    /// The hook could not record the id of a chunked submission, so no chunk was sent.
    #[error(
        "chunked submission {submission_id} was not recorded, no chunk sent (deleted: {deleted}): {source}"
    )]
    NotRecorded {
        submission_id: String,
        /// Whether the empty submission was deleted from the server.
        deleted: bool,
        source: E,
    },
}

/// A chunked submission created on the server and waiting for its chunks.
struct ChunkedSubmission {
    submission_id: String,
    file_size: u64,
    chunk_count: u64,
}

impl JoeClient {
    /// The fields of a `submission/new` in jbxapi's order: the parameters, the field naming
    /// what to analyse (none for a multipart sample, which is a part), the key, `accept-tac`.
    fn submission_form(
        &self,
        params: &SubmissionParams,
        target: Option<(&str, &str)>,
    ) -> Zeroizing<KeyedForm> {
        let mut form = params.to_form();
        // The configured report password (`ClientSettings::encrypt_password`) asks for an
        // encrypted analysis, unless the parameters already name one.
        if let Some(password) = &self.settings.encrypt_password
            && params.get(Param::EncryptWithPassword.name()).is_none()
        {
            form.push((
                Param::EncryptWithPassword.name().to_owned(),
                password.expose_secret().to_owned(),
            ));
        }
        form.extend(target.map(|(name, value)| (name.to_owned(), value.to_owned())));
        let mut form = self.with_key(form);
        form.push((
            "accept-tac".into(),
            if self.settings.accept_tac { "1" } else { "0" }.into(),
        ));
        form
    }

    /// Sends a `submission/new` built by `send` and reads the new id. Every failure is
    /// classified with `transport::submission_outcome` (a timeout after sending is an unknown
    /// outcome); only a refusal that reached nothing is repeated.
    async fn submit_with<F, Fut>(&self, mut send: F) -> Result<String, ApiError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Envelope, ApiError>>,
    {
        self.with_retries(
            Endpoint::SubmissionNew.as_str(),
            Repeat::NothingReachedTheServer,
            || {
                let reply = send();
                async {
                    let envelope = reply.await.map_err(transport::submission_outcome)?;
                    let created: NewSubmission =
                        decode(envelope.data).map_err(transport::submission_outcome)?;
                    Ok(created.submission_id)
                }
            },
        )
        .await
    }

    /// An urlencoded `submission/new` naming what to analyse with `target`.
    async fn submit_form(
        &self,
        params: &SubmissionParams,
        target: (&str, &str),
    ) -> Result<String, ApiError> {
        let form = self.submission_form(params, Some(target));
        self.submit_with(|| self.post_once(Endpoint::SubmissionNew.as_str(), &form, false))
            .await
    }

    /// Submits a URL for website analysis (`url=`).
    pub async fn submit_url(
        &self,
        url: &str,
        params: &SubmissionParams,
    ) -> Result<String, ApiError> {
        self.submit_form(params, ("url", url)).await
    }

    /// Submits a URL the server downloads and analyses as a sample (`sample-url=`).
    pub async fn submit_sample_url(
        &self,
        url: &str,
        params: &SubmissionParams,
    ) -> Result<String, ApiError> {
        self.submit_form(params, ("sample-url", url)).await
    }

    /// Submits a sample file, streamed from disk, chunked above the threshold (see the module
    /// documentation), for callers with nothing to record before the chunks.
    pub async fn submit_sample(
        &self,
        path: &Path,
        params: &SubmissionParams,
        upload: &SampleUpload,
    ) -> Result<String, ApiError> {
        let nothing_to_record = |_| async { Ok::<(), Infallible>(()) };
        self.submit_sample_recorded(path, params, upload, nothing_to_record)
            .await
            .map_err(|error| match error {
                SubmitError::Api(error) => error,
                SubmitError::NotRecorded { source, .. } => match source {},
            })
    }

    /// Submits a sample file, streamed from disk. Above the chunked threshold the server
    /// assigns the submission id before the sample is sent: `record` gets it then, and no
    /// chunk goes out unless it returns `Ok` (see the module documentation). `record` is not
    /// called for a plain upload, whose id arrives with the finished request.
    pub async fn submit_sample_recorded<E, F, Fut>(
        &self,
        path: &Path,
        params: &SubmissionParams,
        upload: &SampleUpload,
        record: F,
    ) -> Result<String, SubmitError<E>>
    where
        F: FnOnce(String) -> Fut,
        Fut: Future<Output = Result<(), E>>,
    {
        let size = tokio::fs::metadata(path)
            .await
            .map_err(|e| ApiError::io(format!("cannot read {}", path.display()), e))?
            .len();
        let name = upload
            .name
            .clone()
            .unwrap_or_else(|| upload::default_name(path));
        if size > self.settings.chunked_threshold {
            match self.begin_chunked(&name, size, params).await {
                Ok(chunked) => {
                    return self
                        .send_chunks(&chunked, path, upload.progress.clone(), record)
                        .await;
                }
                Err(error) if error.is_chunked_unsupported() => {
                    info!("server has no chunked upload; sending the sample in one request");
                }
                Err(error) => return Err(error.into()),
            }
        }
        Ok(self
            .submit_sample_plain(path, &name, size, params, upload.progress.clone())
            .await?)
    }

    /// One multipart `submission/new` with the whole file as the `sample` part.
    async fn submit_sample_plain(
        &self,
        path: &Path,
        name: &str,
        size: u64,
        params: &SubmissionParams,
        progress: Option<Progress>,
    ) -> Result<String, ApiError> {
        let url = self.endpoint_url(Endpoint::SubmissionNew.as_str());
        let timeout = upload::transfer_timeout(size);
        let fields = self.submission_form(params, None);
        self.submit_with(|| async {
            let body = upload::file_body(path, 0, size, progress.clone()).await?;
            let mut form = Form::new().percent_encode_noop();
            for (k, v) in fields.iter() {
                form = form.text(k.clone(), v.clone());
            }
            let part = Part::stream_with_length(body, size).file_name(upload::wire_file_name(name));
            form = form.part("sample", part);
            let response = self
                .send(self.http.post(&url).multipart(form), &url, timeout, false)
                .await?;
            self.read_reply(response).await
        })
        .await
    }

    /// Step 1: creates the submission, which then waits for its chunks.
    async fn begin_chunked(
        &self,
        name: &str,
        file_size: u64,
        params: &SubmissionParams,
    ) -> Result<ChunkedSubmission, ApiError> {
        let wire_name = upload::wire_file_name(name);
        let submission_id = self
            .submit_form(params, (wire::CHUNKED_SAMPLE, &wire_name))
            .await?;
        Ok(ChunkedSubmission {
            submission_id,
            file_size,
            chunk_count: file_size.div_ceil(CHUNK_SIZE),
        })
    }

    /// Steps 2 and 3: the id recorded, then every chunk; whatever fails, the submission is
    /// deleted again.
    async fn send_chunks<E, F, Fut>(
        &self,
        chunked: &ChunkedSubmission,
        path: &Path,
        progress: Option<Progress>,
        record: F,
    ) -> Result<String, SubmitError<E>>
    where
        F: FnOnce(String) -> Fut,
        Fut: Future<Output = Result<(), E>>,
    {
        let id = &chunked.submission_id;
        if let Err(source) = record(id.clone()).await {
            // Without the id on record no chunk may go out.
            let deleted = self.delete_incomplete(id).await;
            return Err(SubmitError::NotRecorded {
                submission_id: id.clone(),
                deleted,
                source,
            });
        }
        if let Err((chunk, error)) = self.upload_chunks(chunked, path, progress).await {
            return Err(ApiError::ChunkFailed {
                submission_id: id.clone(),
                chunk,
                deleted: self.delete_incomplete(id).await,
                source: Box::new(transport::submission_outcome(error)),
            }
            .into());
        }
        Ok(id.clone())
    }

    /// Deletes a chunked submission whose chunks will not come; whether it went.
    async fn delete_incomplete(&self, submission_id: &str) -> bool {
        self.submission_delete(submission_id)
            .await
            .inspect_err(|e| warn!(%submission_id, error = %e, "could not delete the incomplete chunked submission"))
            .is_ok()
    }

    /// Step 3: every chunk in order (1-based); `Err` names the chunk that failed.
    async fn upload_chunks(
        &self,
        chunked: &ChunkedSubmission,
        path: &Path,
        progress: Option<Progress>,
    ) -> Result<(), (u64, ApiError)> {
        let url = self.endpoint_url(Endpoint::SubmissionChunkedSample.as_str());
        for index in 1..=chunked.chunk_count {
            let offset = (index - 1) * CHUNK_SIZE;
            let len = CHUNK_SIZE.min(chunked.file_size - offset);
            let timeout = upload::transfer_timeout(len);
            let chunk_progress = progress
                .clone()
                .map(|p| -> Progress { Arc::new(move |n| p(offset + n)) });
            let result = async {
                let body = upload::file_body(path, offset, len, chunk_progress).await?;
                let fields: [(&str, String); 7] = [
                    // Moved into reqwest's form, which we cannot zero (see `secret.rs`).
                    (wire::KEY, self.key_text().to_string()),
                    ("submission_id", chunked.submission_id.clone()),
                    ("file-size", chunked.file_size.to_string()),
                    ("chunk-size", CHUNK_SIZE.to_string()),
                    ("chunk-count", chunked.chunk_count.to_string()),
                    ("current-chunk-index", index.to_string()),
                    ("current-chunk-size", len.to_string()),
                ];
                let mut form = Form::new();
                for (k, v) in fields {
                    form = form.text(k, v);
                }
                form = form.part(
                    "chunk",
                    Part::stream_with_length(body, len).file_name("chunk"),
                );
                let response = self
                    .send(self.http.post(&url).multipart(form), &url, timeout, false)
                    .await?;
                self.read_reply(response).await
            }
            .await;
            result.map_err(|error| (index, error))?;
        }
        Ok(())
    }
}
