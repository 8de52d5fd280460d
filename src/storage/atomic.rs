//! Files that appear complete or not at all.
//!
//! Reports can be gigabytes (BENCHMARKS.md P8), so the writer behind an [`AtomicFile`] is built
//! for throughput: it gathers writes into [`BLOCK`]-sized blocks that a blocking thread writes
//! while the next block fills, and every [`WRITEBACK_STEP`] bytes it asks the kernel to start
//! writing the range out (`sync_file_range`, Linux), so the flush overlaps the transfer and the
//! commit's `fsync` finds little left to do. The `fsync` itself always runs.

use std::fs::{File, OpenOptions};
use std::future::Future;
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::task::JoinHandle;

/// Temporary files start with this prefix and end with [`TEMP_SUFFIX`]; recovery code and the
/// drop-folder scanner recognise and skip them.
pub const TEMP_PREFIX: &str = ".jbxd-";
pub const TEMP_SUFFIX: &str = ".part";

/// Bytes gathered before one `write(2)`: HTTP bodies arrive in pieces of up to ~400 KiB, and
/// one hand-off to the blocking thread per MiB keeps the thread switches negligible. Two blocks
/// are in memory at most (one filling, one being written).
pub const BLOCK: usize = 1 << 20;

/// Every this many bytes written, the kernel is asked to start writing them to disk, and the
/// writer waits for the range before it (so at most about two steps are dirty or in flight).
pub const WRITEBACK_STEP: u64 = 16 << 20;

/// A file being written under a temporary name in its final directory. [`AtomicFile::commit`]
/// makes it durable and visible under its final name; dropping it uncommitted removes the
/// temporary file.
#[derive(Debug)]
pub struct AtomicFile {
    writer: Option<AtomicWriter>,
    temp: PathBuf,
    target: PathBuf,
    mode: u32,
    /// Set once the rename happened: from then on the temporary name is gone.
    renamed: bool,
    /// Where a failed write or commit is noted, and what to call it (reports, case 118).
    observer: Option<(Arc<super::WriteLog>, &'static str)>,
}

impl AtomicFile {
    /// Creates `dir/<temp name>` exclusively (never following a symlink), to become
    /// `dir/name` with permission bits `mode` on commit. `name` must be a single component.
    pub async fn create(dir: &Path, name: &str, mode: u32) -> io::Result<Self> {
        if name.is_empty() || name.contains('/') || name == "." || name == ".." {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("refusing to create a file named {name:?}"),
            ));
        }
        let temp = dir.join(format!(
            "{TEMP_PREFIX}{:016x}{TEMP_SUFFIX}",
            fastrand::u64(..)
        ));
        let path = temp.clone();
        let file = blocking(move || {
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&path)
        })
        .await?;
        Ok(Self {
            writer: Some(AtomicWriter::new(file)),
            temp,
            target: dir.join(name),
            mode,
            renamed: false,
            observer: None,
        })
    }

    /// Notes this file's failed writes, failed commit or successful commit in `log`.
    pub(crate) fn observed_by(mut self, log: Arc<super::WriteLog>, what: &'static str) -> Self {
        self.observer = Some((log, what));
        self
    }

    /// The writer to write the content into.
    pub fn file_mut(&mut self) -> &mut AtomicWriter {
        self.writer.as_mut().expect("writer present until commit")
    }

    /// Where the file will appear.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Flushes, fsyncs, sets the final mode, renames into place (replacing an older file of the
    /// same name) and fsyncs the directory. A file whose writes failed is refused.
    pub async fn commit(mut self) -> io::Result<PathBuf> {
        let observer = self.observer.take();
        let result = self.commit_unobserved().await;
        if let Some((log, what)) = observer {
            match &result {
                Ok(_) => log.succeeded(),
                Err(e) => log.failed(what, &self.target, e),
            }
        }
        result
    }

    async fn commit_unobserved(&mut self) -> io::Result<PathBuf> {
        let mut writer = self.writer.take().expect("writer present until commit");
        // Fails if any write failed, so a file with a hole is never renamed into place.
        writer.flush().await?;
        let file = writer.file;
        let (temp, target, mode) = (self.temp.clone(), self.target.clone(), self.mode);
        blocking(move || {
            file.sync_all()?;
            file.set_permissions(std::fs::Permissions::from_mode(mode))?;
            drop(file);
            std::fs::rename(&temp, &target)
        })
        .await?;
        self.renamed = true;
        if let Some(dir) = self.target.parent() {
            let dir = dir.to_owned();
            blocking(move || File::open(dir)?.sync_all()).await?;
        }
        Ok(std::mem::take(&mut self.target))
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        // Given up after a write failed (the download noticed it and dropped the file).
        if let (Some((log, what)), Some(writer)) = (&self.observer, &self.writer)
            && let Some(kind) = writer.failed
        {
            log.failed(what, &self.target, &io::Error::from(kind));
        }
        if !self.renamed {
            // Not committed: the content is incomplete and must not survive. A write still in
            // flight goes to the unlinked inode, which disappears with its last descriptor.
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}

/// Runs blocking file-system work off the async threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(io::Error::other)?
}

/// The async side of an [`AtomicFile`]: see the module documentation. Like a `BufWriter`,
/// `poll_write` may return before the bytes reach the kernel; `flush` (or the commit) waits
/// for all of them. After a failed write every later write, flush and commit fail too, so a
/// file with a hole can never be committed.
pub struct AtomicWriter {
    file: Arc<File>,
    /// Bytes accepted and not yet handed to a write.
    pending: Vec<u8>,
    /// The buffer of the last finished write, cleared, for reuse.
    spare: Vec<u8>,
    /// The write in flight; it hands its buffer back.
    in_flight: Option<JoinHandle<(Vec<u8>, io::Result<()>)>>,
    /// File offset at which `pending` starts.
    offset: u64,
    writeback: Writeback,
    failed: Option<io::ErrorKind>,
}

impl std::fmt::Debug for AtomicWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not the buffers: they hold up to a MiB of content each.
        f.debug_struct("AtomicWriter")
            .field("file", &self.file)
            .field("pending", &self.pending.len())
            .field("in_flight", &self.in_flight.is_some())
            .field("offset", &self.offset)
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

impl AtomicWriter {
    fn new(file: File) -> Self {
        Self {
            file: Arc::new(file),
            pending: Vec::new(),
            spare: Vec::new(),
            in_flight: None,
            offset: 0,
            writeback: Writeback::new(WRITEBACK_STEP),
            failed: None,
        }
    }

    fn check(&self) -> io::Result<()> {
        match self.failed {
            Some(kind) => Err(io::Error::new(kind, "an earlier write to this file failed")),
            None => Ok(()),
        }
    }

    /// Waits for the write in flight, if any, and takes its buffer back.
    fn poll_idle(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(task) = self.in_flight.as_mut() {
            let joined = ready!(Pin::new(task).poll(cx));
            self.in_flight = None;
            let result = match joined {
                Ok((buffer, result)) => {
                    self.spare = buffer;
                    result
                }
                Err(error) => Err(io::Error::other(error)),
            };
            if let Err(error) = result {
                self.failed = Some(error.kind());
                return Poll::Ready(Err(error));
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Hands `pending` to a blocking thread; only called while no write is in flight.
    fn start_write(&mut self) {
        debug_assert!(self.in_flight.is_none());
        let mut block = std::mem::replace(&mut self.pending, std::mem::take(&mut self.spare));
        let offset = self.offset;
        self.offset += block.len() as u64;
        let sync = self.writeback.after_write(self.offset);
        let file = Arc::clone(&self.file);
        self.in_flight = Some(tokio::task::spawn_blocking(move || {
            let result = write_block(&file, &block, offset, sync);
            block.clear();
            (block, result)
        }));
    }
}

impl AsyncWrite for AtomicWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.check()?;
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if this.pending.len() >= BLOCK {
            ready!(this.poll_idle(cx))?;
            this.start_write();
        }
        if this.pending.capacity() == 0 {
            this.pending.reserve_exact(BLOCK);
        }
        let n = data.len().min(BLOCK - this.pending.len());
        this.pending.extend_from_slice(&data[..n]);
        if this.pending.len() >= BLOCK && this.in_flight.is_none() {
            this.start_write();
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.check()?;
        ready!(this.poll_idle(cx))?;
        if !this.pending.is_empty() {
            this.start_write();
            ready!(this.poll_idle(cx))?;
        }
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_flush(cx)
    }
}

/// Writes one block at its offset, then starts and awaits write-back as `sync` says.
fn write_block(file: &File, block: &[u8], offset: u64, sync: Option<SyncRanges>) -> io::Result<()> {
    file.write_all_at(block, offset)?;
    if let Some(sync) = sync {
        // The new range first, so the disk has work queued while the older one is awaited.
        sync_range(file, sync.start.0, sync.start.1, RangeSync::Start)?;
        if let Some((start, len)) = sync.wait {
            sync_range(file, start, len, RangeSync::Wait)?;
            drop_cached(file, start, len);
        }
    }
    Ok(())
}

/// The write-back requests due after a write: start the new range, wait for the one before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SyncRanges {
    /// (offset, length) whose write-back to start.
    start: (u64, u64),
    /// (offset, length) whose write-back to wait for (started by the previous request).
    wait: Option<(u64, u64)>,
}

/// Where the early write-back stands: write-back of everything below `started` has been
/// started, and of everything below `waited` awaited (or is being awaited by the write in
/// flight).
#[derive(Debug, Clone, Copy)]
struct Writeback {
    step: u64,
    started: u64,
    waited: u64,
}

impl Writeback {
    fn new(step: u64) -> Self {
        Self {
            step,
            started: 0,
            waited: 0,
        }
    }

    /// Called with the end offset of the bytes written so far.
    fn after_write(&mut self, end: u64) -> Option<SyncRanges> {
        if end < self.started + self.step {
            return None;
        }
        let wait = (self.started > self.waited).then(|| (self.waited, self.started - self.waited));
        let start = (self.started, end - self.started);
        self.waited = self.started;
        self.started = end;
        Some(SyncRanges { start, wait })
    }
}

#[derive(Debug, Clone, Copy)]
enum RangeSync {
    /// Start write-back of the dirty pages in the range; returns without waiting.
    Start,
    /// Wait for write-back of the range to finish (and start any still-dirty page first).
    Wait,
}

/// `sync_file_range(2)` (raw `libc`: rustix does not offer it). Its errors are returned, never dropped: waiting on a range consumes a
/// write-back error that the final `fsync` would then no longer report. A file system or kernel
/// that does not support the call (`EINVAL`, `ENOSYS`, `ESPIPE`, `EOPNOTSUPP`) only loses the
/// head start: the commit's `fsync` does all the work then.
#[cfg(target_os = "linux")]
fn sync_range(file: &File, offset: u64, len: u64, how: RangeSync) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let flags = match how {
        RangeSync::Start => libc::SYNC_FILE_RANGE_WRITE,
        RangeSync::Wait => {
            libc::SYNC_FILE_RANGE_WAIT_BEFORE
                | libc::SYNC_FILE_RANGE_WRITE
                | libc::SYNC_FILE_RANGE_WAIT_AFTER
        }
    };
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return Ok(());
    };
    // SAFETY: a plain system call on a descriptor this process owns; no memory is passed.
    let rc = unsafe { libc::sync_file_range(file.as_raw_fd(), offset, len, flags) };
    if rc == 0 {
        return Ok(());
    }
    let error = io::Error::last_os_error();
    match error.raw_os_error() {
        Some(libc::EINVAL | libc::ENOSYS | libc::ESPIPE | libc::EOPNOTSUPP) => Ok(()),
        _ => Err(error),
    }
}

/// Drops the (clean, just awaited) pages of the range from the page cache. A report is written
/// once and rarely read back soon, and pages that are freed here are reused at once by the next
/// writes: a gigabyte download then needs a few dozen MiB of page cache instead of a gigabyte of
/// fresh pages (each a page fault in a virtual machine whose free memory went back to the host),
/// and does not evict the cache of everything else on the machine. A hint: errors are ignored,
/// and unlike `sync_file_range` it never consumes a write-back error.
#[cfg(target_os = "linux")]
fn drop_cached(file: &File, offset: u64, len: u64) {
    let Some(len) = std::num::NonZeroU64::new(len) else {
        return;
    };
    let _ = rustix::fs::fadvise(file, offset, Some(len), rustix::fs::Advice::DontNeed);
}

#[cfg(not(target_os = "linux"))]
fn drop_cached(_file: &File, _offset: u64, _len: u64) {}

/// Elsewhere there is no portable way to start write-back early; the `fsync` does it all.
#[cfg(not(target_os = "linux"))]
fn sync_range(_file: &File, _offset: u64, _len: u64, _how: RangeSync) -> io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_committed_file_appears_with_its_mode_and_no_temporary_is_left() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = AtomicFile::create(dir.path(), "report.html", 0o400)
            .await
            .unwrap();
        f.file_mut().write_all(b"<html/>").await.unwrap();
        let path = f.commit().await.unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"<html/>");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o400);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[tokio::test]
    async fn an_uncommitted_file_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut f = AtomicFile::create(dir.path(), "x.bin", 0o600)
                .await
                .unwrap();
            f.file_mut().write_all(b"partial").await.unwrap();
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[tokio::test]
    async fn names_with_separators_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        for bad in ["../x", "a/b", "..", ""] {
            assert!(
                AtomicFile::create(dir.path(), bad, 0o600).await.is_err(),
                "{bad}"
            );
        }
    }

    /// `len` bytes of a pattern that differs at every offset modulo a prime, so a block written
    /// at the wrong place or twice shows up.
    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    #[tokio::test]
    async fn writes_of_any_size_across_blocks_and_write_back_steps_land_intact() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = AtomicFile::create(dir.path(), "big.bin", 0o600)
            .await
            .unwrap();
        // A small step, so the early write-back and the page-cache hint run several times.
        f.file_mut().writeback = Writeback::new(3 * BLOCK as u64 / 2);
        let content = pattern(5 * BLOCK + 12_345);
        let mut rest = &content[..];
        for size in [1, 4093, BLOCK - 4094, 3 * BLOCK, 65_537]
            .into_iter()
            .cycle()
        {
            if rest.is_empty() {
                break;
            }
            let n = size.min(rest.len());
            f.file_mut().write_all(&rest[..n]).await.unwrap();
            rest = &rest[n..];
        }
        let path = f.commit().await.unwrap();
        let stored = std::fs::read(&path).unwrap();
        assert_eq!(stored.len(), content.len());
        assert!(
            stored == content,
            "the stored bytes differ from the written ones"
        );
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn write_back_starts_each_step_and_waits_for_the_step_before() {
        let mut wb = Writeback::new(16);
        assert_eq!(wb.after_write(10), None);
        assert_eq!(
            wb.after_write(20),
            Some(SyncRanges {
                start: (0, 20),
                wait: None
            })
        );
        assert_eq!(wb.after_write(30), None);
        assert_eq!(
            wb.after_write(40),
            Some(SyncRanges {
                start: (20, 20),
                wait: Some((0, 20))
            })
        );
        assert_eq!(
            wb.after_write(100),
            Some(SyncRanges {
                start: (40, 60),
                wait: Some((20, 20))
            })
        );
    }

    #[tokio::test]
    async fn after_a_failed_write_the_file_is_never_committed_and_nothing_is_left() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = AtomicFile::create(dir.path(), "report.html", 0o600)
            .await
            .unwrap();
        // A read-only descriptor of the same file: every write to it fails (EBADF).
        f.file_mut().file = Arc::new(File::open(&f.temp).unwrap());
        let writer = f.file_mut();
        let mut first_error = None;
        // Writes are buffered: the failure shows on the write that waits for the failed one.
        for _ in 0..4 {
            if let Err(error) = writer.write_all(&pattern(BLOCK)).await {
                first_error = Some(error);
                break;
            }
        }
        assert!(
            first_error.is_some(),
            "a write to a read-only descriptor failed"
        );
        assert!(writer.write_all(b"more").await.is_err());
        assert!(f.commit().await.is_err());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[tokio::test]
    async fn a_file_dropped_with_a_write_in_flight_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut f = AtomicFile::create(dir.path(), "x.bin", 0o600)
                .await
                .unwrap();
            f.file_mut().write_all(&pattern(BLOCK + 1)).await.unwrap();
            assert!(f.file_mut().in_flight.is_some());
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
