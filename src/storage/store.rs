//! The daemon's storage tree under `data_dir`:
//!
//! ```text
//! data_dir/
//!   jbxd.db                      the database (owned by `db`)
//!   quarantine/incoming/         samples being copied in (temporary names)
//!   quarantine/samples/<sha256>  samples, content-addressed, mode 0400
//!   reports/<webid>/<file>       downloaded reports
//! ```
//!
//! Directories are 0700. Every file appears by rename after fsync (intake batches: after one
//! `syncfs` for the whole batch, see [`Store::publish`]); paths stored in the database
//! are relative to `data_dir`.

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use md5::Md5;
use sha1::Sha1;
use sha2::{Digest, Sha256};

use super::atomic::{AtomicFile, TEMP_PREFIX, TEMP_SUFFIX};
use super::names::safe_file_name;
use super::writes::{WriteFailure, WriteLog};

const INCOMING: &str = "quarantine/incoming";
const SAMPLES: &str = "quarantine/samples";
const REPORTS: &str = "reports";

const COPY_BUFFER_SIZE: usize = 256 * 1024;

/// What each kind of write is called in a noted failure.
const STAGING: &str = "copying a sample into quarantine";
const PUBLISHING: &str = "making staged samples durable in";
const REPORTING: &str = "writing the report";

thread_local! {
    /// The copy buffer of this (blocking) thread, allocated once.
    static COPY_BUFFER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A sample copied into quarantine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagedSample {
    pub sha256: String,
    pub md5: String,
    pub sha1: String,
    pub size: u64,
    /// `quarantine/samples/<sha256>`, relative to `data_dir`.
    pub rel_path: String,
}

/// A copy in `quarantine/incoming` that is complete and hashed but not yet durable nor
/// published (see [`Store::stage_unsynced`]). Dropped unpublished, it is deleted.
#[derive(Debug)]
pub struct StagedTemp {
    sample: StagedSample,
    file: fs::File,
    /// `None` once renamed into place or deleted.
    path: Option<PathBuf>,
}

impl StagedTemp {
    /// What the copy will be recorded as once published.
    pub fn sample(&self) -> &StagedSample {
        &self.sample
    }

    /// Renames the (already durable) copy to its content address, or deletes it when that
    /// sample is already stored (every stored sample is durable: it got there this way).
    fn rename_into_place(mut self, store: &Store) -> io::Result<StagedSample> {
        let temp = self.path.take().expect("an unpublished copy has its path");
        let target = store.root.join(&self.sample.rel_path);
        let result = if target.exists() {
            fs::remove_file(&temp)
        } else {
            fs::rename(&temp, &target)
        };
        if result.is_err() {
            let _ = fs::remove_file(&temp);
        }
        result.map(|()| self.sample.clone())
    }
}

impl Drop for StagedTemp {
    fn drop(&mut self) {
        if let Some(path) = self.path.take() {
            let _ = fs::remove_file(path);
        }
    }
}

/// `mkdir -p` with mode 0700 for every directory it creates (existing ones keep theirs).
fn create_private_dir(path: &Path) -> io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
}

/// `syncfs(2)`: writes back every dirty page and inode of the file system holding `file` and
/// commits its journal; reports write-back errors since `file` was opened.
fn syncfs(file: &fs::File) -> io::Result<()> {
    Ok(rustix::fs::syncfs(file)?)
}

/// The storage tree of one `data_dir`.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
    /// The outcome of the last write, shared by every clone (RELIABILITY.md case 118).
    writes: std::sync::Arc<WriteLog>,
}

impl Store {
    pub fn new(data_dir: &Path) -> Self {
        Self {
            root: data_dir.to_owned(),
            writes: std::sync::Arc::default(),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Absolute path of a stored file from its database path.
    pub fn abs(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// The last storage write's failure, if the last write failed (RELIABILITY.md case 118).
    pub fn last_write_failure(&self) -> Option<WriteFailure> {
        self.writes.last_failure()
    }

    /// Creates `data_dir` itself (0700, with any missing parents) and nothing in it: the
    /// bootstrap needs it for the instance lock before the database is opened.
    pub fn create_root(&self) -> io::Result<()> {
        create_private_dir(&self.root)
    }

    /// Creates the tree (0700 directories).
    pub fn prepare(&self) -> io::Result<()> {
        for dir in ["", INCOMING, SAMPLES, REPORTS] {
            create_private_dir(&self.root.join(dir))?;
        }
        Ok(())
    }

    /// Copies one file (already opened without following links) into quarantine while hashing
    /// it and makes it durable and visible as `quarantine/samples/<sha256>` (mode 0400): a
    /// batch of one through [`Store::stage_unsynced`] and [`Store::publish`]. A sample that is
    /// already stored is not stored twice. Blocking: run it on a blocking thread.
    pub fn stage_sample(&self, source: &mut fs::File) -> io::Result<StagedSample> {
        let temp = self.stage_unsynced(source)?;
        Ok(self.publish(vec![temp])?.remove(0))
    }

    /// Copies `source` into `quarantine/incoming` under a temporary name while hashing it, and
    /// makes the copy read-only — without any fsync: the copy is not durable and not visible
    /// under `quarantine/samples` until it goes through [`Store::publish`]. Dropping the
    /// returned [`StagedTemp`] deletes the copy. Each one holds its descriptor open until it is
    /// published or dropped. Blocking: run it on a blocking thread.
    pub fn stage_unsynced(&self, source: &mut fs::File) -> io::Result<StagedTemp> {
        let temp = self.root.join(INCOMING).join(format!(
            "{TEMP_PREFIX}{:016x}{TEMP_SUFFIX}",
            fastrand::u64(..)
        ));
        let mut out = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&temp)
            .inspect_err(|e| self.writes.failed(STAGING, &temp, e))?;
        // Only our side's failures are noted: a source that cannot be read is not storage.
        let wrote = |e: io::Error| {
            self.writes.failed(STAGING, &temp, &e);
            e
        };
        let result = (|| {
            let mut sha256 = Sha256::new();
            let mut md5 = Md5::new();
            let mut sha1 = Sha1::new();
            let mut size = 0u64;
            COPY_BUFFER.with_borrow_mut(|buf| -> io::Result<()> {
                // The buffer is reused: zeroing a fresh 256 KiB per file cost more than copying
                // a small sample (BENCHMARKS.md P3).
                buf.resize(COPY_BUFFER_SIZE, 0);
                loop {
                    let n = source.read(buf)?;
                    if n == 0 {
                        return Ok(());
                    }
                    sha256.update(&buf[..n]);
                    md5.update(&buf[..n]);
                    sha1.update(&buf[..n]);
                    out.write_all(&buf[..n]).map_err(wrote)?;
                    size += n as u64;
                    crate::crashpoint::hit("mid_copy");
                }
            })?;
            out.set_permissions(fs::Permissions::from_mode(0o400))
                .map_err(wrote)?;
            let sha256 = hex::encode(sha256.finalize());
            Ok(StagedSample {
                rel_path: format!("{SAMPLES}/{sha256}"),
                sha256,
                md5: hex::encode(md5.finalize()),
                sha1: hex::encode(sha1.finalize()),
                size,
            })
        })();
        match result {
            Ok(sample) => Ok(StagedTemp {
                sample,
                file: out,
                path: Some(temp),
            }),
            Err(e) => {
                let _ = fs::remove_file(&temp);
                Err(e)
            }
        }
    }

    /// Publishes a batch of [`Store::stage_unsynced`] copies: makes all their contents durable
    /// at once (one `syncfs` of the `data_dir` file system; one `fsync` for a single copy), then
    /// renames each to `quarantine/samples/<sha256>` (or deletes it when that sample is
    /// already stored), then fsyncs `quarantine/samples` once. On success every returned sample
    /// is durable and may be recorded; on error none may be (the copies not yet renamed are
    /// deleted). Blocking: run it on a blocking thread.
    pub fn publish(&self, batch: Vec<StagedTemp>) -> io::Result<Vec<StagedSample>> {
        let result = self.publish_unobserved(batch);
        match &result {
            Ok(_) => self.writes.succeeded(),
            Err(e) => self.writes.failed(PUBLISHING, &self.root.join(SAMPLES), e),
        }
        result
    }

    fn publish_unobserved(&self, batch: Vec<StagedTemp>) -> io::Result<Vec<StagedSample>> {
        match batch.as_slice() {
            [] => return Ok(Vec::new()),
            [one] => one.file.sync_all()?,
            // The descriptor of the first copy was opened before any of the batch's data was
            // written, so `syncfs` through it reports every write-back error since then
            // (Linux ≥ 5.8).
            [first, ..] => syncfs(&first.file)?,
        }
        let samples = batch
            .into_iter()
            .map(|temp| temp.rename_into_place(self))
            .collect::<io::Result<Vec<_>>>()?;
        self.sync_samples_dir()?;
        Ok(samples)
    }

    /// Makes the renames into `quarantine/samples` durable.
    fn sync_samples_dir(&self) -> io::Result<()> {
        fs::File::open(self.root.join(SAMPLES))?.sync_all()
    }

    /// Starts writing a report of analysis `webid` under the (already safe) `file_name`;
    /// returns the atomic file and the path to record.
    pub async fn create_report(
        &self,
        webid: &str,
        file_name: &str,
        mode: u32,
    ) -> io::Result<(AtomicFile, String)> {
        let webid_dir = safe_file_name(webid).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("webid {webid:?} is not usable as a directory name"),
            )
        })?;
        let rel_dir = format!("{REPORTS}/{webid_dir}");
        let dir = self.root.join(&rel_dir);
        let created = async {
            tokio::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
                .await?;
            AtomicFile::create(&dir, file_name, mode).await
        }
        .await;
        let file =
            created.inspect_err(|e| self.writes.failed(REPORTING, &dir.join(file_name), e))?;
        // Its writes and its commit are noted by the file itself.
        let file = file.observed_by(self.writes.clone(), REPORTING);
        Ok((file, format!("{rel_dir}/{file_name}")))
    }

    /// Start-up recovery: removes temporary files left by a crash (partial copies and
    /// downloads). Returns how many were removed.
    pub fn remove_temporaries(&self) -> io::Result<usize> {
        let mut removed = 0;
        let mut dirs = vec![self.root.join(INCOMING)];
        if let Ok(entries) = fs::read_dir(self.root.join(REPORTS)) {
            dirs.extend(entries.flatten().map(|e| e.path()).filter(|p| p.is_dir()));
        }
        for dir in dirs {
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name();
                let name = name.to_string_lossy();
                if name.starts_with(TEMP_PREFIX) && name.ends_with(TEMP_SUFFIX) {
                    fs::remove_file(entry.path())?;
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }

    /// How many samples (`quarantine/samples`) and report files (`reports/<webid>/`) are
    /// stored, temporaries not counted: what a database created now would know nothing about
    /// (the daemon refuses to start a new database next to them, RELIABILITY.md case 29).
    /// Missing directories count as empty. Read-only.
    pub fn stored_counts(&self) -> io::Result<(usize, usize)> {
        fn files_in(dir: &Path) -> io::Result<usize> {
            let entries = match fs::read_dir(dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
                Err(e) => return Err(e),
            };
            let mut n = 0;
            for entry in entries {
                let entry = entry?;
                let name = entry.file_name();
                let name = name.to_string_lossy();
                if !(name.starts_with(TEMP_PREFIX) && name.ends_with(TEMP_SUFFIX))
                    && entry.file_type()?.is_file()
                {
                    n += 1;
                }
            }
            Ok(n)
        }
        let samples = files_in(&self.root.join(SAMPLES))?;
        let mut reports = 0;
        match fs::read_dir(self.root.join(REPORTS)) {
            Ok(entries) => {
                for entry in entries {
                    let entry = entry?;
                    if entry.file_type()?.is_dir() {
                        reports += files_in(&entry.path())?;
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        Ok((samples, reports))
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_staged_sample_is_content_addressed_read_only_and_stored_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        store.prepare().unwrap();
        let src = dir.path().join("in.bin");
        fs::write(&src, b"hello").unwrap();
        let a = store
            .stage_sample(&mut fs::File::open(&src).unwrap())
            .unwrap();
        let b = store
            .stage_sample(&mut fs::File::open(&src).unwrap())
            .unwrap();
        assert_eq!(a, b);
        assert_eq!(
            a.sha256,
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert_eq!(a.md5, "5d41402abc4b2a76b9719d911017c592");
        let path = store.abs(&a.rel_path);
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o400
        );
        assert!(store.verify(&a.rel_path, 5, &a.sha256).unwrap());
        assert_eq!(fs::read_dir(dir.path().join(INCOMING)).unwrap().count(), 0);
    }

    #[test]
    fn a_published_batch_is_stored_once_per_content_and_an_unpublished_copy_is_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        store.prepare().unwrap();
        let stage = |content: &[u8]| {
            let src = dir.path().join("in.bin");
            fs::write(&src, content).unwrap();
            store
                .stage_unsynced(&mut fs::File::open(&src).unwrap())
                .unwrap()
        };
        let incoming = || fs::read_dir(dir.path().join(INCOMING)).unwrap().count();
        let samples = || fs::read_dir(dir.path().join(SAMPLES)).unwrap().count();
        // Dropped unpublished: deleted, nothing visible.
        drop(stage(b"abandoned"));
        assert_eq!((incoming(), samples()), (0, 0));
        let batch = vec![stage(b"one"), stage(b"two"), stage(b"one")];
        assert_eq!(
            (incoming(), samples()),
            (3, 0),
            "not visible before publish"
        );
        let published = store.publish(batch).unwrap();
        assert_eq!(published.len(), 3);
        assert_eq!(published[0], published[2]);
        assert_eq!((incoming(), samples()), (0, 2));
        for s in &published {
            assert!(store.verify(&s.rel_path, 3, &s.sha256).unwrap());
            let mode = fs::metadata(store.abs(&s.rel_path))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o400);
        }
        // Already stored: a later copy of the same content is dropped, not stored twice.
        let again = store.publish(vec![stage(b"two")]).unwrap();
        assert_eq!(again[0], published[1]);
        assert_eq!((incoming(), samples()), (0, 2));
    }

    #[tokio::test]
    async fn reports_land_under_their_webid_and_temporaries_are_recovered() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        store.prepare().unwrap();
        let (mut file, rel) = store
            .create_report("1234", "html.html", 0o600)
            .await
            .unwrap();
        use tokio::io::AsyncWriteExt;
        file.file_mut().write_all(b"<html/>").await.unwrap();
        file.commit().await.unwrap();
        assert_eq!(rel, "reports/1234/html.html");
        // A crash mid-download leaves a temporary file, which recovery removes.
        let (mut partial, _) = store.create_report("1234", "xml.xml", 0o600).await.unwrap();
        partial.file_mut().write_all(b"<a").await.unwrap();
        std::mem::forget(partial);
        assert_eq!(store.remove_temporaries().unwrap(), 1);
        assert!(store.abs(&rel).exists());
        assert!(
            store
                .create_report("../x", "a", 0o600)
                .await
                .is_ok_and(|(_, r)| r == "reports/x/a")
        );
    }
}
