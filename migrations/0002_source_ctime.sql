-- jbxd schema v2: the dropped file's ctime joins its source identity.
-- File systems recycle inode numbers, and cp -p, rsync -a and tar x keep mtimes, so a new file
-- can match an earlier item's (dev, ino, size, mtime). Its ctime, which no copy tool can set,
-- is new; the source of a recorded item that a crash left in the drop folder keeps the ctime
-- it had when it was taken. The rescan treats a file as already recorded only when its ctime
-- matches too (NULL: recorded before this column existed; then identity and content decide).
ALTER TABLE items ADD COLUMN source_ctime_ns INTEGER;
