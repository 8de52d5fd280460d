//! Local storage: the only module that creates files for jbxd.
//!
//! * [`AtomicFile`]: write to a temporary name in the target directory, fsync, rename into
//!   place, fsync the directory — a reader never sees a half-written file, and a crash leaves
//!   only a temporary file that is recognisable by its name.
//! * [`ReservedFile`]: the same for a file another program fills (SQLite's `VACUUM INTO` for
//!   `jbxd backup`), published without replacing anything.
//! * [`Store`]: the daemon's tree under `data_dir` (quarantined samples, reports).
//! * [`Store::spot_check`]: stored files verified against their records (case 34).
//! * [`safe_file_name`]: turns a server-provided or user-provided name into one safe path
//!   component, so that no name from outside can point outside the output directory.
//! * [`free_bytes`]: free space on the file system of a path (health check, intake errors).

mod atomic;
mod names;
mod reserved;
mod space;
mod spot_check;
mod store;
mod writes;

pub use atomic::{AtomicFile, AtomicWriter, TEMP_PREFIX, TEMP_SUFFIX};
pub use names::safe_file_name;
pub use reserved::{PublishError, ReservedFile, rename_noreplace};
pub use space::free_bytes;
pub use spot_check::{FileCheck, Recorded};
pub use store::{StagedSample, StagedTemp, Store};
pub use writes::{WriteFailure, WriteLog};
