-- jbxd schema v1. The tables url_queue, items, analyses and reports (and the views) are a
-- public interface: users query them with sqlite3. Change them only with a new migration.
-- Times are TEXT in UTC, ISO 8601 with milliseconds ('2026-11-28T21:03:04.123Z'), so they sort
-- and compare as text; scheduling columns (next_attempt_at) are INTEGER unix milliseconds.

-- Producers insert URLs here: INSERT INTO url_queue(url) VALUES ('https://...');
-- `url` has no declared type on purpose: a wrong value (NULL, BLOB, number) must be accepted
-- by the insert so that jbxd can reject it with a reason instead of the producer failing.
CREATE TABLE url_queue (
    id            INTEGER PRIMARY KEY,
    url,
    params        TEXT,                     -- optional JSON object of submission parameters
    status        TEXT NOT NULL DEFAULT 'new'
                  CHECK (status IN ('new', 'queued', 'submitting', 'submitted', 'downloading',
                                    'done', 'rejected', 'failed', 'duplicate')),
    error         TEXT,
    submission_id TEXT,
    item_id       INTEGER,
    created_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at    TEXT
);
CREATE INDEX url_queue_new ON url_queue (id) WHERE status = 'new';

-- One row per unit of work: a dropped file or a queued URL.
CREATE TABLE items (
    id              INTEGER PRIMARY KEY,
    kind            TEXT NOT NULL CHECK (kind IN ('file', 'url')),
    source          TEXT NOT NULL CHECK (source IN ('drop', 'url_queue', 'cli')),
    item_key        TEXT NOT NULL UNIQUE,   -- sent as jbxd:<item_key>-<attempt> in comments
    name            TEXT NOT NULL,          -- the original file name (escaped) or the URL
    raw_name        BLOB,                   -- the exact bytes of the dropped file's name
    url             TEXT,                   -- normalised URL (kind = 'url')
    url_queue_id    INTEGER REFERENCES url_queue (id),
    sha256          TEXT,
    md5             TEXT,
    sha1            TEXT,
    size            INTEGER,
    sample_path     TEXT,                   -- relative to data_dir
    source_dev      INTEGER,                -- identity of the dropped file, to recognise it
    source_ino      INTEGER,                -- after a crash between recording and removal
    source_mtime_ns INTEGER,
    params          TEXT,                   -- JSON object of per-item submission parameters
    force           INTEGER NOT NULL DEFAULT 0,
    state           TEXT NOT NULL
                    CHECK (state IN ('queued', 'submitting', 'submitted', 'downloading',
                                     'done', 'rejected', 'failed', 'duplicate')),
    error           TEXT,
    note            TEXT,                   -- e.g. 'no analyses', 'reused analysis from server'
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL DEFAULT 0,
    submission_id   TEXT,
    submitted_at    TEXT,
    poll_count      INTEGER NOT NULL DEFAULT 0,
    duplicate_of    INTEGER REFERENCES items (id),
    created_at      TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at      TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    finished_at     TEXT
);
CREATE INDEX items_due ON items (state, next_attempt_at);
CREATE INDEX items_sha256 ON items (sha256);
CREATE INDEX items_url ON items (url, created_at);
CREATE INDEX items_source_identity ON items (source_dev, source_ino);

-- Every submission attempt, committed before the request is sent (the outbox). The attempt
-- key goes into the submission's comments so an unknown outcome can be looked up.
CREATE TABLE submit_attempts (
    id            INTEGER PRIMARY KEY,
    item_id       INTEGER NOT NULL REFERENCES items (id),
    attempt_key   TEXT NOT NULL UNIQUE,
    started_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    outcome       TEXT CHECK (outcome IN ('accepted', 'unknown', 'refused', 'not_found',
                                          'chunked_pending', 'abandoned')),
    submission_id TEXT,
    detail        TEXT
);
CREATE INDEX submit_attempts_item ON submit_attempts (item_id);

-- The analysis index: one row per analysis (webid), with its verdict.
CREATE TABLE analyses (
    webid          TEXT PRIMARY KEY,
    item_id        INTEGER REFERENCES items (id),
    submission_id  TEXT,
    analysisid     TEXT,
    status         TEXT,
    detection      TEXT,
    score          INTEGER,
    threatname     TEXT,
    classification TEXT,
    filename       TEXT,                    -- sample file name or URL
    md5            TEXT,
    sha1           TEXT,
    sha256         TEXT,
    scriptname     TEXT,
    systems        TEXT,                    -- comma-separated run systems
    time           TEXT,                    -- server time of the analysis
    duration       INTEGER,
    encrypted      INTEGER,
    info_json      TEXT,                    -- the analysis object as the server sent it
    recorded_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at     TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX analyses_item ON analyses (item_id);
CREATE INDEX analyses_sha256 ON analyses (sha256);
CREATE INDEX analyses_md5 ON analyses (md5);
CREATE INDEX analyses_detection ON analyses (detection);
CREATE INDEX analyses_time ON analyses (time);

-- Downloaded (or failed) report files per analysis.
CREATE TABLE reports (
    id              INTEGER PRIMARY KEY,
    webid           TEXT NOT NULL REFERENCES analyses (webid),
    type            TEXT NOT NULL,
    run             INTEGER,                -- NULL: the server's most relevant run
    state           TEXT NOT NULL DEFAULT 'pending'
                    CHECK (state IN ('pending', 'downloading', 'stored', 'failed')),
    path            TEXT,                   -- relative to data_dir
    size            INTEGER,
    sha256          TEXT,
    server_filename TEXT,                   -- the server's name, escaped; never used as a path
    error           TEXT,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL DEFAULT 0,
    downloaded_at   TEXT
);
CREATE UNIQUE INDEX reports_unique ON reports (webid, type, ifnull(run, -1));
CREATE INDEX reports_due ON reports (state, next_attempt_at);

-- Latest result of each health check.
CREATE TABLE health (
    name       TEXT PRIMARY KEY,
    status     TEXT NOT NULL CHECK (status IN ('ok', 'degraded', 'failed')),
    detail     TEXT,
    checked_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

-- Daemon-wide state: the global pause (key 'pause'), the last clean shutdown, ...
CREATE TABLE daemon_state (
    key        TEXT PRIMARY KEY,
    value      TEXT,
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

-- Keep the producer's url_queue row current with its item.
CREATE TRIGGER items_mirror_url_queue
AFTER UPDATE OF state, error, submission_id ON items
WHEN NEW.url_queue_id IS NOT NULL
BEGIN
    UPDATE url_queue
       SET status = NEW.state,
           error = NEW.error,
           submission_id = NEW.submission_id,
           item_id = NEW.id,
           updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
     WHERE id = NEW.url_queue_id;
END;

-- One line per item with its verdict: what most users want.
CREATE VIEW verdicts AS
SELECT i.id            AS item_id,
       i.kind,
       i.name,
       i.sha256,
       i.state,
       i.error,
       i.submission_id,
       a.webid,
       a.detection,
       a.score,
       a.threatname,
       a.time          AS analysed_at,
       i.created_at,
       i.finished_at
  FROM items i
  LEFT JOIN analyses a ON a.item_id = coalesce(i.duplicate_of, i.id);
