-- jbxd schema v3: the indicator index (issue 10). What the stored reports of each analysis say:
-- the indicators they saw (iocs), the signatures that fired, the ATT&CK techniques, the YARA
-- rules and the extracted malware configurations; one view joining indicators to the verdict
-- and the item they came from; and the index state of every stored report. These tables and
-- the view are a public interface like those of 0001: change them only with a new migration.
--
-- The index worker writes all rows of one analysis in one transaction that first deletes the
-- analysis' old rows, so re-indexing (`jbxd index rebuild`) replaces them and never duplicates.
-- `run` is NULL for the server's most relevant run (the report downloaded without `run=`),
-- else the run number. Every row names the report type it was taken from.

-- One row per indicator an analysis (run) saw, in its normal form (README "Finding things").
CREATE TABLE iocs (
    id          INTEGER PRIMARY KEY,
    webid       TEXT NOT NULL REFERENCES analyses (webid),
    run         INTEGER,
    kind        TEXT NOT NULL
                CHECK (kind IN ('domain', 'ip', 'url', 'md5', 'sha1', 'sha256', 'sha512',
                                'file_name')),
    -- hashes lower-case hex; host names lower-case punycode without a trailing dot; IPs as
    -- std::net::IpAddr prints them (IPv4-mapped IPv6 as IPv4); URLs with lower-case scheme
    -- and host, no default port, '/' for an empty path; file names as given.
    value       TEXT NOT NULL,
    malicious   INTEGER CHECK (malicious IN (0, 1)),     -- NULL: the report does not say
    private     INTEGER CHECK (private IN (0, 1)),       -- IPs only: RFC 1918, loopback, ...
    report_type TEXT NOT NULL,                           -- e.g. 'jsonfixed', 'irxml'
    section     TEXT NOT NULL                            -- e.g. 'domaininfo', 'contacted.ips'
);
CREATE UNIQUE INDEX iocs_unique ON iocs (webid, ifnull(run, -1), kind, value);
CREATE INDEX iocs_value ON iocs (value, kind);

-- Signatures that fired (full report: signatureinfo/sig; incident report: signatures).
CREATE TABLE signatures (
    id          INTEGER PRIMARY KEY,
    webid       TEXT NOT NULL REFERENCES analyses (webid),
    run         INTEGER,
    sig_id      TEXT,                                    -- NULL where the report has none
    description TEXT NOT NULL,
    impact      INTEGER,                                 -- NULL where the report has none
    report_type TEXT NOT NULL
);
CREATE UNIQUE INDEX signatures_unique
    ON signatures (webid, ifnull(run, -1), ifnull(sig_id, ''), description);

-- MITRE ATT&CK techniques, upper-case ids ('T1055', 'T1055.001').
CREATE TABLE attack_techniques (
    id          INTEGER PRIMARY KEY,
    webid       TEXT NOT NULL REFERENCES analyses (webid),
    run         INTEGER,
    technique   TEXT NOT NULL,
    tactic      TEXT,
    name        TEXT,
    report_type TEXT NOT NULL
);
CREATE UNIQUE INDEX attack_techniques_unique
    ON attack_techniques (webid, ifnull(run, -1), technique, ifnull(tactic, ''));
CREATE INDEX attack_techniques_technique ON attack_techniques (technique);

-- YARA rules that matched; scope: 'sample', 'droppedfiles', 'memorydumps', 'unpackedpes'.
CREATE TABLE yara_hits (
    id          INTEGER PRIMARY KEY,
    webid       TEXT NOT NULL REFERENCES analyses (webid),
    run         INTEGER,
    rule        TEXT NOT NULL,
    scope       TEXT NOT NULL,
    report_type TEXT NOT NULL
);
CREATE UNIQUE INDEX yara_hits_unique ON yara_hits (webid, ifnull(run, -1), rule, scope);
CREATE INDEX yara_hits_rule ON yara_hits (rule);

-- Extracted malware configurations: the family (threat name) and the config as JSON text.
CREATE TABLE malware_configs (
    id          INTEGER PRIMARY KEY,
    webid       TEXT NOT NULL REFERENCES analyses (webid),
    run         INTEGER,
    family      TEXT,
    config_json TEXT NOT NULL,
    report_type TEXT NOT NULL
);
CREATE INDEX malware_configs_webid ON malware_configs (webid);
CREATE INDEX malware_configs_family ON malware_configs (family);

-- Per stored report: has the index taken what it says?
--   pending        stored, not indexed yet (set when the report becomes 'stored')
--   indexed        its analysis' facts are in the index, taken from this report or from a
--                  preferred report of the same family and run (jsonfixed before xml, ...)
--   failed         it could not be read; index_error says why (other reports still count)
--   not_indexable  a type the index does not read (html, pdf, pcap, the sample, ...)
-- NULL: not stored (yet).
ALTER TABLE reports ADD COLUMN index_state TEXT
    CHECK (index_state IN ('pending', 'indexed', 'failed', 'not_indexable'));
ALTER TABLE reports ADD COLUMN index_error TEXT;
ALTER TABLE reports ADD COLUMN indexed_at TEXT;
CREATE INDEX reports_index_pending ON reports (webid) WHERE index_state = 'pending';
CREATE INDEX reports_index_failed ON reports (indexed_at) WHERE index_state = 'failed';

-- Reports stored before this migration are indexed by the worker once it runs.
UPDATE reports SET index_state = 'pending' WHERE state = 'stored';

-- A report stored (again: a re-download replaces the file) is due for indexing.
CREATE TRIGGER reports_index_when_stored
AFTER UPDATE OF state, sha256 ON reports
WHEN NEW.state = 'stored'
 AND (OLD.state IS NOT 'stored' OR OLD.sha256 IS NOT NEW.sha256)
BEGIN
    UPDATE reports SET index_state = 'pending', index_error = NULL WHERE id = NEW.id;
END;

-- One line per indicator sighting, with the analysis verdict and the item it came from
-- (item columns NULL for analyses jbxd did not submit).
CREATE VIEW ioc_sightings AS
SELECT i.kind,
       i.value,
       i.malicious,
       i.private,
       i.webid,
       i.run,
       i.report_type,
       i.section,
       a.detection,
       a.score,
       a.threatname,
       a.time          AS analysed_at,
       a.recorded_at,
       a.item_id,
       it.source       AS item_source,
       it.name         AS item_name
  FROM iocs i
  JOIN analyses a ON a.webid = i.webid
  LEFT JOIN items it ON it.id = a.item_id;
