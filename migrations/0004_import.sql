-- jbxd schema v4: analyses brought in by `jbxd import` (submitted elsewhere: the web interface,
-- another tool). They have no item (item_id stays NULL); imported_at says when jbxd first
-- recorded one this way. NULL for every analysis the daemon submitted itself, also when it is
-- imported again afterwards: the column records where a row came from, not the last import.
ALTER TABLE analyses ADD COLUMN imported_at TEXT;
