//! Intake's inserts into `items`: staged drop-folder files recorded in one transaction
//! (group commit, with sha256 deduplication), refused entries recorded as `rejected`, and the
//! look-up of sources already recorded (RELIABILITY.md case 112).

use std::collections::HashMap;

use sqlx::{Sqlite, Transaction};

use super::new_item_key;
use crate::db::states::ItemState;
use crate::db::{Db, DbError, now_text};

/// A dropped file, staged into quarantine and hashed, ready to be recorded.
#[derive(Debug, Clone)]
pub struct NewFile {
    pub name: String,
    pub raw_name: Vec<u8>,
    pub sha256: String,
    pub md5: String,
    pub sha1: String,
    pub size: i64,
    pub sample_path: String,
    pub dev: i64,
    pub ino: i64,
    pub mtime_ns: i64,
    /// The source's ctime, part of its identity (RELIABILITY.md case 112).
    pub ctime_ns: i64,
    pub source: &'static str,
    pub params: Option<String>,
    pub force: bool,
}

/// The earlier items new samples duplicate, by sha256 (one query for a batch): same sha256,
/// not themselves duplicates, and not given up on (a rejected or failed item does not stop a
/// new try).
async fn earlier_samples(
    tx: &mut Transaction<'static, Sqlite>,
    files: &[NewFile],
) -> Result<HashMap<String, i64>, DbError> {
    let mut hashes: Vec<&str> = files.iter().map(|f| f.sha256.as_str()).collect();
    hashes.sort_unstable();
    hashes.dedup();
    let json = serde_json::to_string(&hashes).expect("strings serialise");
    let rows: Vec<(String, Option<i64>)> = sqlx::query_as(
        "SELECT j.value,
                (SELECT id FROM items
                  WHERE sha256 = j.value AND kind = 'file'
                    AND state NOT IN ('rejected', 'failed', 'duplicate')
                  ORDER BY id LIMIT 1)
           FROM json_each(?) AS j",
    )
    .bind(json)
    .fetch_all(&mut **tx)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(sha256, id)| Some((sha256, id?)))
        .collect())
}

/// Whether new samples are matched against earlier ones (`dedup.samples`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SampleDedup {
    /// A sample with the sha256 of an earlier item (not given up on) is its `duplicate`,
    /// unless forced.
    BySha256,
    /// Every sample is an item of its own.
    Off,
}

impl SampleDedup {
    /// The setting of `dedup.samples`.
    pub fn configured(samples: bool) -> Self {
        if samples { Self::BySha256 } else { Self::Off }
    }
}

/// Records staged files in one transaction (group commit): each becomes `queued`, or
/// `duplicate` of an earlier item with the same sha256 ([`SampleDedup::BySha256`]) when the
/// file is not forced — an item recorded before, or an earlier file of the same batch. Returns the new ids
/// and states in input order (ids ascend in input order).
///
/// One statement for the whole batch (intake records 100 files at a time; a statement per file
/// was a third of the recording time, BENCHMARKS.md P3). The ids are assigned here, which is
/// safe because the write transaction holds the database's write lock from its start: a file
/// can then name an earlier file of its own batch as the item it duplicates.
pub async fn insert_files(
    db: &Db,
    files: &[NewFile],
    dedup: SampleDedup,
) -> Result<Vec<(i64, ItemState)>, DbError> {
    if files.is_empty() {
        return Ok(Vec::new());
    }
    let dedup = dedup == SampleDedup::BySha256;
    let mut tx = db.begin_write().await?;
    let earlier = if dedup {
        earlier_samples(&mut tx, files).await?
    } else {
        HashMap::new()
    };
    let last: i64 = sqlx::query_scalar("SELECT ifnull(max(id), 0) FROM items")
        .fetch_one(&mut *tx)
        .await?;
    let finished = now_text();
    let mut first_in_batch: HashMap<&str, i64> = HashMap::new();
    let mut out = Vec::with_capacity(files.len());
    let mut rows = Vec::with_capacity(files.len());
    for (f, id) in files.iter().zip(last + 1..) {
        let duplicate_of = if dedup && !f.force {
            let sha256 = f.sha256.as_str();
            earlier
                .get(sha256)
                .or_else(|| first_in_batch.get(sha256))
                .copied()
        } else {
            None
        };
        let state = match duplicate_of {
            Some(_) => ItemState::Duplicate,
            None => {
                first_in_batch.entry(f.sha256.as_str()).or_insert(id);
                ItemState::Queued
            }
        };
        rows.push(serde_json::json!({
            "id": id,
            "source": f.source,
            "item_key": new_item_key(),
            "name": f.name,
            "raw_name": hex::encode(&f.raw_name),
            "sha256": f.sha256,
            "md5": f.md5,
            "sha1": f.sha1,
            "size": f.size,
            "sample_path": f.sample_path,
            "dev": f.dev,
            "ino": f.ino,
            "mtime_ns": f.mtime_ns,
            "ctime_ns": f.ctime_ns,
            "params": f.params,
            "force": i64::from(f.force),
            "state": state.as_str(),
            "duplicate_of": duplicate_of,
            "finished_at": duplicate_of.map(|_| &finished),
        }));
        out.push((id, state));
    }
    let json = serde_json::Value::Array(rows).to_string();
    sqlx::query(
        "INSERT INTO items (id, kind, source, item_key, name, raw_name, sha256, md5, sha1, size,
                            sample_path, source_dev, source_ino, source_mtime_ns,
                            source_ctime_ns, params, force, state, duplicate_of, finished_at)
         SELECT r ->> 'id', 'file', r ->> 'source', r ->> 'item_key', r ->> 'name',
                unhex(r ->> 'raw_name'), r ->> 'sha256', r ->> 'md5', r ->> 'sha1',
                r ->> 'size', r ->> 'sample_path', r ->> 'dev', r ->> 'ino', r ->> 'mtime_ns',
                r ->> 'ctime_ns', r ->> 'params', r ->> 'force', r ->> 'state', r ->> 'duplicate_of',
                r ->> 'finished_at'
           FROM (SELECT value AS r FROM json_each(?))",
    )
    .bind(json)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(out)
}

/// Records a dropped entry that was refused (empty, too large, not a regular file, ...).
pub async fn insert_rejected_file(
    db: &Db,
    name: &str,
    raw_name: &[u8],
    size: Option<i64>,
    reason: &str,
) -> Result<i64, DbError> {
    Ok(sqlx::query_scalar(
        "INSERT INTO items (kind, source, item_key, name, raw_name, size, state, error,
                            finished_at)
         VALUES ('file', 'drop', ?, ?, ?, ?, 'rejected', ?, ?)
         RETURNING id",
    )
    .bind(new_item_key())
    .bind(name)
    .bind(raw_name)
    .bind(size)
    .bind(reason)
    .bind(now_text())
    .fetch_one(db.pool())
    .await?)
}

/// Where a dropped file came from: `(dev, ino, size, mtime_ns, ctime_ns)` of the source as
/// `fstat` saw it when it was taken.
pub type SourceIdentity = (i64, i64, i64, i64, i64);

/// A drop-folder file just copied into quarantine: its source identity and the sha256 of the
/// copy.
pub type StagedSource<'a> = (SourceIdentity, &'a str);

/// Which of these freshly staged files are already recorded (one query for a whole batch):
/// after a crash between recording a file and removing it from the drop folder, the rescan
/// finds its item here. File systems recycle inode numbers, and `cp -p`, `rsync -a` and
/// `tar x` preserve mtimes, so a different file can carry an earlier item's
/// `(dev, ino, size, mtime)`; it must become its own item, never be removed as "already
/// recorded" (RELIABILITY.md case 112). So an item matches only with the file's content
/// (sha256) too, and with its ctime, which copy tools cannot set: a new file on a recycled
/// inode has a new one, even with the same content, while a source left behind by a crash
/// keeps the ctime it was taken with (items recorded before `source_ctime_ns` existed have
/// NULL there and match without it). Maps the index of each file found to its newest item.
pub async fn find_recorded_sources(
    db: &Db,
    files: &[StagedSource<'_>],
) -> Result<HashMap<usize, i64>, DbError> {
    if files.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<serde_json::Value> = files
        .iter()
        .map(|((dev, ino, size, mtime_ns, ctime_ns), sha256)| {
            serde_json::json!([dev, ino, size, mtime_ns, sha256, ctime_ns])
        })
        .collect();
    let json = serde_json::Value::Array(rows).to_string();
    let rows: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT j.key, i.id
           FROM json_each(?) AS j
           JOIN items AS i ON i.source_dev = j.value ->> 0 AND i.source_ino = j.value ->> 1
          WHERE i.size = j.value ->> 2 AND i.source_mtime_ns = j.value ->> 3
            AND i.sha256 = j.value ->> 4
            AND ifnull(i.source_ctime_ns = j.value ->> 5, 1)",
    )
    .bind(json)
    .fetch_all(db.pool())
    .await?;
    let mut found = HashMap::new();
    for (index, id) in rows {
        let Ok(index) = usize::try_from(index) else {
            continue;
        };
        let newest = found.entry(index).or_insert(id);
        *newest = (*newest).max(id);
    }
    Ok(found)
}
