//! Small pure text helpers shared by modules that must not depend on each other.

/// Cuts `name` to at most `max` bytes at a character boundary, keeping a short extension
/// (up to 16 bytes) so that a long file name still ends in `.docx`.
pub fn truncate_keeping_extension(name: &str, max: usize) -> String {
    if name.len() <= max {
        return name.to_owned();
    }
    let ext = name
        .rsplit_once('.')
        .map(|(_, e)| e)
        .filter(|e| !e.is_empty() && e.len() <= 16 && e.len() < max);
    let keep = max - ext.map_or(0, |e| e.len() + 1);
    let mut cut = keep;
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    match ext {
        Some(ext) => format!("{}.{ext}", &name[..cut]),
        None => name[..cut].to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_names_keep_their_extension_and_utf8_boundaries() {
        let cut = truncate_keeping_extension(&format!("{}.docx", "ä".repeat(300)), 255);
        assert!(cut.len() <= 255);
        assert!(cut.ends_with(".docx"));
        assert_eq!(truncate_keeping_extension("short.txt", 255), "short.txt");
        assert_eq!(truncate_keeping_extension("abcdef", 3), "abc");
    }
}
