//! `drop_dir` and `data_dir` must be separate directories, neither inside the other, judged by
//! where they really are (RELIABILITY.md case 113). The scanner submits and then deletes every
//! file of the drop folder, so a drop folder that reaches into `data_dir` would submit
//! `jbxd.db`, its WAL and the lock file and delete them; a `data_dir` inside the drop folder
//! likewise. A lexical comparison is not enough: `drop_dir = "/srv/link-to-data/."` names
//! `data_dir` through a symlink, and a bind mount gives one directory two unrelated paths.
//!
//! So both paths are resolved first ([`resolve`]: symlinks followed and `..` applied to the
//! real parent, as `realpath` does, with the part that does not exist yet kept as written),
//! compared as paths, and, where the directories exist, compared again by `(dev, ino)` against
//! the other's chain of existing ancestors (which catches bind mounts).
//!
//! The check only reads metadata. A component it cannot look at (permission denied, not a
//! directory) ends the resolution there and the rest is taken as written: this is a
//! containment check, not an existence check, and the daemon, which needs access to both
//! directories, makes the same check with its own rights when it starts.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

/// More symlinks than this while resolving one path is a loop (Linux's own limit).
const MAX_SYMLINKS: usize = 40;

/// A path as it really is: the symlink-free absolute path and the `(dev, ino)` of each of its
/// existing ancestors, the path itself first if it exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Resolved {
    pub path: PathBuf,
    /// Whether `path` itself exists.
    pub exists: bool,
    ids: Vec<(u64, u64)>,
}

impl Resolved {
    /// The directory's own `(dev, ino)`, when it exists.
    fn id(&self) -> Option<(u64, u64)> {
        self.exists.then(|| self.ids[0])
    }

    /// Whether `self` is `other` or inside it (as far as either can tell).
    fn within(&self, other: &Resolved) -> bool {
        self.path.starts_with(&other.path) || other.id().is_some_and(|id| self.ids.contains(&id))
    }
}

/// Resolves an absolute path like `realpath`, except that a part that does not exist (or
/// cannot be looked at) is kept as written, with `.` and `..` applied to it lexically (a
/// missing component cannot be a symlink).
pub(super) fn resolve(path: &Path) -> Result<Resolved, String> {
    let mut queue: VecDeque<OsString> = parts(path);
    let mut out = PathBuf::from("/");
    let mut links = 0;
    let mut missing = false;
    while let Some(part) = queue.pop_front() {
        if part == ".." {
            // `out` holds no symlinks: its parent is the real parent.
            out.pop();
            continue;
        }
        let next = out.join(&part);
        if !missing {
            match fs::symlink_metadata(&next) {
                Ok(meta) if meta.file_type().is_symlink() => {
                    links += 1;
                    if links > MAX_SYMLINKS {
                        return Err(format!(
                            "`{}` cannot be resolved: too many levels of symbolic links",
                            path.display()
                        ));
                    }
                    let target = fs::read_link(&next)
                        .map_err(|e| format!("cannot read the symlink {}: {e}", next.display()))?;
                    if target.is_absolute() {
                        out = PathBuf::from("/");
                    }
                    let mut expanded = parts(&target);
                    expanded.extend(queue);
                    queue = expanded;
                    continue;
                }
                Ok(_) => {}
                Err(_) => missing = true,
            }
        }
        out.push(part);
    }
    let mut ids = Vec::new();
    let mut exists = true;
    for ancestor in out.ancestors() {
        match fs::metadata(ancestor) {
            Ok(meta) => ids.push((meta.dev(), meta.ino())),
            Err(_) if ids.is_empty() => exists = false,
            Err(_) => {}
        }
    }
    exists &= !ids.is_empty();
    Ok(Resolved {
        path: out,
        exists,
        ids,
    })
}

/// The components after the root, `.` dropped, `..` kept.
fn parts(path: &Path) -> VecDeque<OsString> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(name) => Some(name.to_owned()),
            Component::ParentDir => Some("..".into()),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect()
}

/// Refuses a `drop_dir` equal to or inside `data_dir` and a `data_dir` inside `drop_dir`;
/// returns the key to blame and a message naming both keys with their values and resolved
/// paths. Both paths must be absolute (checked before).
pub(super) fn check_separate(
    data_dir: &Path,
    drop_dir: &Path,
) -> Result<(), (&'static str, String)> {
    let data = resolve(data_dir).map_err(|m| ("data_dir", m))?;
    let drop = resolve(drop_dir).map_err(|m| ("drop_dir", m))?;
    let shown = |key: &str, value: &Path, resolved: &Resolved| {
        if value == resolved.path {
            format!("{key} `{}`", value.display())
        } else {
            format!(
                "{key} `{}` (resolved: `{}`)",
                value.display(),
                resolved.path.display()
            )
        }
    };
    let (drop_shown, data_shown) = (
        shown("drop_dir", drop_dir, &drop),
        shown("data_dir", data_dir, &data),
    );
    let why = "the scanner submits and deletes every file of the drop folder, which would \
               include jbxd.db; use two separate directories, neither inside the other";
    let (drop_in_data, data_in_drop) = (drop.within(&data), data.within(&drop));
    if drop_in_data && data_in_drop {
        return Err((
            "drop_dir",
            format!("{drop_shown} is the same directory as {data_shown}: {why}"),
        ));
    }
    if drop_in_data {
        return Err((
            "drop_dir",
            format!("{drop_shown} is inside {data_shown}: {why}"),
        ));
    }
    if data_in_drop {
        return Err((
            "data_dir",
            format!("{data_shown} is inside {drop_shown}: {why}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlinks_and_dot_dots_resolve_to_the_real_directory_and_missing_parts_stay_as_written() {
        let dir = tempfile::tempdir().unwrap();
        let root = fs::canonicalize(dir.path()).unwrap();
        fs::create_dir(root.join("real")).unwrap();
        std::os::unix::fs::symlink(root.join("real"), root.join("link")).unwrap();
        std::os::unix::fs::symlink("real/../real", root.join("relative")).unwrap();

        let r = resolve(&root.join("link/.")).unwrap();
        assert_eq!(
            (r.path.as_path(), r.exists),
            (root.join("real").as_path(), true)
        );
        let r = resolve(&root.join("relative/new/../newer")).unwrap();
        assert_eq!(r.path, root.join("real/newer"));
        assert!(!r.exists);
        // `..` after a symlink goes to the parent of its target, as the kernel does.
        fs::create_dir_all(root.join("deep/inner")).unwrap();
        std::os::unix::fs::symlink(root.join("deep/inner"), root.join("jump")).unwrap();
        assert_eq!(
            resolve(&root.join("jump/..")).unwrap().path,
            root.join("deep")
        );
    }

    #[test]
    fn a_symlink_loop_is_an_error_naming_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        std::os::unix::fs::symlink(dir.path().join("b"), &a).unwrap();
        std::os::unix::fs::symlink(&a, dir.path().join("b")).unwrap();
        let error = resolve(&a.join("x")).unwrap_err();
        assert!(error.contains("too many levels"), "{error}");
        assert!(error.contains(a.to_str().unwrap()), "{error}");
    }

    #[test]
    fn a_bind_mount_of_data_dir_is_caught_by_dev_and_ino() {
        let dir = tempfile::tempdir().unwrap();
        let (data, alias) = (dir.path().join("data"), dir.path().join("alias"));
        fs::create_dir(&data).unwrap();
        fs::create_dir(&alias).unwrap();
        let mounted = std::process::Command::new("mount")
            .arg("--bind")
            .arg(&data)
            .arg(&alias)
            .output()
            .is_ok_and(|out| out.status.success());
        if !mounted {
            eprintln!("not applicable here: cannot bind-mount (needs root)");
            return;
        }
        let drop_inside = check_separate(&data, &alias.join("incoming"));
        let same = check_separate(&data, &alias);
        let _ = std::process::Command::new("umount").arg(&alias).status();
        let (key, message) = drop_inside.unwrap_err();
        assert_eq!(key, "drop_dir");
        assert!(message.contains("is inside data_dir"), "{message}");
        assert!(same.unwrap_err().1.contains("the same directory"));
    }

    #[test]
    fn separate_and_sibling_directories_pass() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("data")).unwrap();
        // `data2` starts with `data` as text but is not inside it.
        assert_eq!(
            check_separate(&dir.path().join("data"), &dir.path().join("data2")),
            Ok(())
        );
        assert_eq!(
            check_separate(&dir.path().join("new/data"), &dir.path().join("new/drop")),
            Ok(())
        );
    }
}
