//! Named crash points for the crash tests (RELIABILITY.md group A).
//!
//! [`hit`] marks a place in the item's life where a crash is interesting. In a normal build
//! (without the `fault-injection` cargo feature) it is an empty `#[inline(always)]` function:
//! the calls compile to nothing. Built with `--features fault-injection`, the process reads
//! `JBXD_CRASHPOINT=name[:nth]` once, counts the hits of that name, and at the `nth` hit
//! (default 1) kills itself with `SIGKILL` — no log line, no unwinding, no destructors, no
//! flush: exactly what a `kill -9` or an OOM kill at that instant would leave behind.
//!
//! `tests/it/crash_points.rs` runs the real binary with each point, restarts it without the
//! variable and checks the invariants (`testing::check_invariants`).
//!
//! | point | where | reliability catalog case |
//! | --- | --- | --- |
//! | `mid_copy` | `storage::Store::stage_unsynced` (also behind `stage_sample`), after the first block was written to the temporary copy in `quarantine/incoming` (counts per block) | 3 |
//! | `after_stage` | `intake::scanner` flush: the batch's samples are published (`Store::publish`: one `syncfs`, renamed into `quarantine/samples`, directory synced), before the items insert | 4 (and 2) |
//! | `after_record` | `intake::scanner` flush: items committed, before the sources are unlinked | 5 |
//! | `after_url_claim` | `intake::urls::run_once`: the `url_queue` batch was applied (items queued) | – |
//! | `after_submit_intent` | `pipeline::submit::run_once`: `claim_for_submit` committed (`submitting`, attempt key), before any request | 6 |
//! | `after_submit_response` | `pipeline::submit`: the server accepted the submission, before `mark_submitted` | 7 |
//! | `after_chunked_create` | `pipeline::submit`: the chunked submission id is recorded (`chunked_pending`), before the first chunk | 10 |
//! | `mid_upload` | `pipeline::submit`: the first chunk of a chunked upload was accepted and the second is being sent (upload progress past one chunk) | 9 |
//! | `after_poll_finished` | `pipeline::poll`: a poll saw the analyses finished, before `record_finished` | 11 |
//! | `mid_download` | `pipeline::download`: the first bytes of a report were written to its temporary file (download progress; counts per piece) | 12 |
//! | `after_report_rename` | `pipeline::download`: the report file was committed (renamed into place), before `report_stored` | 13 |
//! | `during_shutdown` | `daemon::run`: after SIGTERM, the workers were told to stop and are finishing their steps | 16 |

/// A crash point named `name` (a no-op unless built with `fault-injection`).
#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub fn hit(_name: &'static str) {}

/// A crash point named `name`: kills the process with SIGKILL at the configured hit.
#[cfg(feature = "fault-injection")]
pub fn hit(name: &'static str) {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};

    static TARGET: OnceLock<Option<(String, u64)>> = OnceLock::new();
    static HITS: AtomicU64 = AtomicU64::new(0);

    let target = TARGET.get_or_init(|| parse(std::env::var("JBXD_CRASHPOINT").ok().as_deref()));
    let Some((wanted, nth)) = target else {
        return;
    };
    // Only the configured point is counted: the other names never matter.
    if wanted == name && HITS.fetch_add(1, Ordering::SeqCst) + 1 == *nth {
        // SAFETY: raise(2) with a valid signal number; SIGKILL cannot be caught, so this
        // does not return.
        unsafe {
            libc::raise(libc::SIGKILL);
        }
    }
}

/// `name[:nth]` → (name, nth ≥ 1); empty or malformed values disable every point.
#[cfg(any(feature = "fault-injection", test))]
fn parse(value: Option<&str>) -> Option<(String, u64)> {
    let value = value?.trim();
    let (name, nth) = match value.split_once(':') {
        Some((name, nth)) => (name, nth.trim().parse().ok().filter(|n| *n >= 1)?),
        None => (value, 1),
    };
    (!name.is_empty()).then(|| (name.to_owned(), nth))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_variable_names_a_point_and_optionally_its_hit() {
        assert_eq!(parse(None), None);
        assert_eq!(parse(Some("")), None);
        assert_eq!(parse(Some("mid_copy")), Some(("mid_copy".into(), 1)));
        assert_eq!(parse(Some("mid_copy:3")), Some(("mid_copy".into(), 3)));
        assert_eq!(parse(Some("mid_copy:0")), None);
        assert_eq!(parse(Some("mid_copy:x")), None);
        assert_eq!(parse(Some(":2")), None);
    }

    #[test]
    fn a_point_that_is_not_configured_returns() {
        // The test process has no JBXD_CRASHPOINT (or one naming another point).
        hit("a_point_no_test_configures");
    }
}
