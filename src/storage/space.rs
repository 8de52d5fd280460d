//! Free space on the file system that holds a path: what the health check compares with
//! `health.min_free_disk_mb`, and what intake names when a copy into quarantine runs out of
//! room. It lives here, with the code that writes files, so that `intake` and `daemon` both
//! depend downwards on `storage` rather than on each other.

use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Free space for unprivileged users (`f_bavail × f_frsize`) in the file system of `path`, in
/// bytes. Blocking (one `statvfs`).
pub fn free_bytes(path: &Path) -> io::Result<u64> {
    // rustix would refuse it with a bare EINVAL; say what is wrong instead.
    if path.as_os_str().as_bytes().contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} contains a NUL byte", path.display()),
        ));
    }
    let stat = rustix::fs::statvfs(path)?;
    Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_bytes_agrees_with_the_file_system_and_names_a_bad_path() {
        let dir = tempfile::tempdir().unwrap();
        let stat = rustix::fs::statvfs(dir.path()).unwrap();
        let free = free_bytes(dir.path()).unwrap();
        // Other processes write to the same disk meanwhile: compare within 1 GiB, not exactly.
        let expected = stat.f_bavail * stat.f_frsize;
        assert!(free.abs_diff(expected) < 1 << 30, "{free} vs {expected}");
        assert!(free > 0);

        let missing = free_bytes(&dir.path().join("missing")).unwrap_err();
        assert_eq!(missing.kind(), io::ErrorKind::NotFound);
        let nul = free_bytes(Path::new("a\0b")).unwrap_err();
        assert_eq!(nul.kind(), io::ErrorKind::InvalidInput);
        assert!(nul.to_string().contains("NUL byte"), "{nul}");
    }
}
