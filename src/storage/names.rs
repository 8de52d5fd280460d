//! Safe file names from untrusted text.

/// Longest name we create, in bytes (ext4 allows 255; leave room for the temporary suffix).
const MAX_NAME: usize = 200;

/// Derives one safe file name component from untrusted text (a `Content-Disposition` name, a
/// sample's original name), or `None` when nothing usable is left.
///
/// Only the last path component counts (both `/` and `\` separate); control characters and
/// characters that are awkward in shells or on other systems become `_`; leading dots are
/// removed so that the result is never hidden, `.` or `..`; the length is capped at 200 bytes
/// keeping a short extension. The result never contains a separator, so joining it to a
/// directory always stays inside that directory.
pub fn safe_file_name(untrusted: &str) -> Option<String> {
    let last = untrusted
        .rsplit(['/', '\\'])
        .find(|part| !part.trim().is_empty())?;
    let mapped: String = last
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || matches!(c, '.' | '-' | '_' | '+' | '(' | ')' | ',' | '@') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let trimmed = mapped
        .trim_start_matches(['.', '_', '-'])
        .trim_end_matches('.');
    if trimmed.is_empty() || trimmed.chars().all(|c| c == '_') {
        return None;
    }
    Some(crate::text::truncate_keeping_extension(trimmed, MAX_NAME))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ordinary_report_names_are_kept() {
        assert_eq!(
            safe_file_name("report-771703.json").as_deref(),
            Some("report-771703.json")
        );
        assert_eq!(
            safe_file_name("dump-6efca10c.pcap").as_deref(),
            Some("dump-6efca10c.pcap")
        );
    }

    #[test]
    fn path_tricks_are_reduced_to_the_last_component() {
        assert_eq!(
            safe_file_name("../../../../etc/cron.d/x").as_deref(),
            Some("x")
        );
        assert_eq!(safe_file_name("/etc/passwd").as_deref(), Some("passwd"));
        assert_eq!(
            safe_file_name("..\\..\\boot.ini").as_deref(),
            Some("boot.ini")
        );
        assert_eq!(safe_file_name(".bashrc").as_deref(), Some("bashrc"));
        assert_eq!(safe_file_name(".."), None);
        assert_eq!(safe_file_name("../"), None);
        assert_eq!(safe_file_name(""), None);
    }

    #[test]
    fn control_characters_and_nul_become_underscores() {
        assert_eq!(
            safe_file_name("a\0b\nc\x1b[31m.txt").as_deref(),
            Some("a_b_c__31m.txt")
        );
    }

    #[test]
    fn long_names_are_capped_keeping_the_extension() {
        let name = safe_file_name(&format!("{}.html", "x".repeat(4096))).unwrap();
        assert!(name.len() <= MAX_NAME);
        assert!(name.ends_with(".html"));
    }

    proptest! {
        #[test]
        fn any_name_stays_one_component_inside_the_root(raw in any::<String>()) {
            if let Some(name) = safe_file_name(&raw) {
                prop_assert!(!name.contains('/') && !name.contains('\\') && !name.contains('\0'));
                prop_assert!(!name.starts_with('.'));
                prop_assert!(name.len() <= MAX_NAME);
                let root = std::path::Path::new("/root-dir");
                let joined = root.join(&name);
                prop_assert_eq!(joined.parent(), Some(root));
            }
        }
    }
}
