//! Deterministic verdicts: what the "sandbox" concludes about a file or URL.
//!
//! Files are classified by marker byte strings found anywhere in their content (scanned while
//! the upload streams in, across chunk boundaries), URLs by keywords. Clean files get a small
//! score derived from their SHA-256 so scores vary but never change for the same content.

use serde::Serialize;

const EICAR: &[u8] = br"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR";
const MALICIOUS_MARKER: &[u8] = b"JBXD-MALICIOUS";
const SUSPICIOUS_MARKER: &[u8] = b"JBXD-SUSPICIOUS";
/// Longest marker minus one: how much of a previous chunk must be kept to catch a marker that
/// straddles two chunks.
const CARRY: usize = max(
    EICAR.len(),
    max(MALICIOUS_MARKER.len(), SUSPICIOUS_MARKER.len()),
) - 1;

const fn max(a: usize, b: usize) -> usize {
    if a > b { a } else { b }
}

/// Detection values, ordered from least to most severe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Detection {
    Unknown,
    Clean,
    Suspicious,
    Malicious,
}

impl Detection {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Detection::Unknown => "unknown",
            Detection::Clean => "clean",
            Detection::Suspicious => "suspicious",
            Detection::Malicious => "malicious",
        }
    }

    pub(crate) fn parse(text: &str) -> Option<Self> {
        match text.to_ascii_lowercase().as_str() {
            "unknown" => Some(Detection::Unknown),
            "clean" => Some(Detection::Clean),
            "suspicious" => Some(Detection::Suspicious),
            "malicious" => Some(Detection::Malicious),
            _ => None,
        }
    }
}

/// The final result of one analysis (all its runs agree).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Verdict {
    pub(crate) detection: Detection,
    pub(crate) score: u32,
    pub(crate) threatname: String,
    /// Set on every run, e.g. for unreachable URLs.
    pub(crate) run_error: Option<String>,
}

impl Verdict {
    fn new(detection: Detection, score: u32, threatname: &str) -> Self {
        Self {
            detection,
            score,
            threatname: threatname.to_owned(),
            run_error: None,
        }
    }

    /// Whether the analysis "dropped" files (decides whether `bins` has content).
    pub(crate) fn dropped_files(&self) -> bool {
        self.detection >= Detection::Suspicious
    }
}

/// Which markers a byte stream contained.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Markers {
    pub(crate) eicar: bool,
    pub(crate) malicious: bool,
    pub(crate) suspicious: bool,
}

/// Incremental marker search over a stream of chunks.
#[derive(Clone, Debug, Default)]
pub(crate) struct MarkerScanner {
    markers: Markers,
    tail: Vec<u8>,
}

impl MarkerScanner {
    pub(crate) fn update(&mut self, chunk: &[u8]) {
        if chunk.is_empty() {
            return;
        }
        // A marker straddling the previous data and this chunk ends within the first CARRY
        // bytes of the chunk: scan that seam separately so the big chunk is never copied.
        if !self.tail.is_empty() {
            let mut seam = self.tail.clone();
            seam.extend_from_slice(&chunk[..chunk.len().min(CARRY)]);
            scan(&seam, &mut self.markers);
        }
        scan(chunk, &mut self.markers);
        // The new tail is the last CARRY bytes of everything seen so far.
        self.tail
            .extend_from_slice(&chunk[chunk.len() - chunk.len().min(CARRY)..]);
        if self.tail.len() > CARRY {
            let excess = self.tail.len() - CARRY;
            self.tail.drain(..excess);
        }
    }

    pub(crate) fn markers(&self) -> Markers {
        self.markers
    }
}

/// Markers are found by looking only at positions holding a marker's first byte, which keeps the
/// scan cheap on large uploads.
fn scan(data: &[u8], found: &mut Markers) {
    for (i, &byte) in data.iter().enumerate() {
        match byte {
            b'X' if !found.eicar => found.eicar |= data[i..].starts_with(EICAR),
            b'J' => {
                let rest = &data[i..];
                found.malicious |= rest.starts_with(MALICIOUS_MARKER);
                found.suspicious |= rest.starts_with(SUSPICIOUS_MARKER);
            }
            _ => {}
        }
    }
}

/// Verdict for file content with the given markers and SHA-256 (hex).
pub(crate) fn file_verdict(markers: Markers, sha256_hex: &str) -> Verdict {
    if markers.eicar {
        Verdict::new(Detection::Malicious, 100, "EICAR-Test-File")
    } else if markers.malicious {
        Verdict::new(Detection::Malicious, 100, "Sim.Malicious")
    } else if markers.suspicious {
        Verdict::new(Detection::Suspicious, 50, "")
    } else {
        Verdict::new(Detection::Clean, clean_score(sha256_hex), "")
    }
}

/// 0..=20, stable for the same content.
fn clean_score(sha256_hex: &str) -> u32 {
    let first = sha256_hex
        .get(..2)
        .and_then(|h| u32::from_str_radix(h, 16).ok())
        .unwrap_or(0);
    first % 21
}

/// Verdict for a URL (or any text target such as a command line) from keywords.
pub(crate) fn url_verdict(url: &str) -> Verdict {
    let lower = url.to_lowercase();
    let has = |words: &[&str]| words.iter().any(|w| lower.contains(w));
    if has(&["malicious", "malware", "evil"]) {
        Verdict::new(Detection::Malicious, 100, "Sim.Phishing")
    } else if has(&["suspicious", "phish"]) {
        Verdict::new(Detection::Suspicious, 50, "")
    } else if has(&["unreachable"]) {
        Verdict {
            run_error: Some(
                "URL not reachable, check the report for detailed error information".into(),
            ),
            ..Verdict::new(Detection::Clean, 0, "")
        }
    } else {
        Verdict::new(Detection::Clean, 0, "")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan_chunks(chunks: &[&[u8]]) -> Markers {
        let mut scanner = MarkerScanner::default();
        for chunk in chunks {
            scanner.update(chunk);
        }
        scanner.markers()
    }

    #[test]
    fn eicar_anywhere_in_a_file_is_malicious() {
        let mut data = vec![0u8; 1000];
        data.extend_from_slice(EICAR);
        let markers = scan_chunks(&[&data]);
        let verdict = file_verdict(markers, "00");
        assert_eq!(verdict.detection, Detection::Malicious);
        assert_eq!(verdict.score, 100);
        assert_eq!(verdict.threatname, "EICAR-Test-File");
    }

    #[test]
    fn a_marker_split_across_chunks_is_still_found() {
        let markers = scan_chunks(&[b"xxxxJBXD-MAL", b"ICIOUSyyyy"]);
        assert!(markers.malicious);
        let markers = scan_chunks(&[b"J", b"B", b"XD-SUS", b"PICIOUS"]);
        assert!(markers.suspicious);
        assert!(!markers.malicious);
    }

    #[test]
    fn suspicious_marker_gives_score_fifty() {
        let verdict = file_verdict(scan_chunks(&[b"hello JBXD-SUSPICIOUS"]), "ff");
        assert_eq!(verdict.detection, Detection::Suspicious);
        assert_eq!(verdict.score, 50);
    }

    #[test]
    fn clean_scores_are_small_and_stable() {
        let a = file_verdict(Markers::default(), "ab12");
        let b = file_verdict(Markers::default(), "ab12");
        assert_eq!(a, b);
        assert_eq!(a.detection, Detection::Clean);
        assert!(a.score <= 20);
        assert_eq!(a.score, 0xab % 21);
    }

    #[test]
    fn url_keywords_decide_the_verdict() {
        assert_eq!(
            url_verdict("http://EVIL.example").detection,
            Detection::Malicious
        );
        assert_eq!(
            url_verdict("http://phish.example").detection,
            Detection::Suspicious
        );
        let unreachable = url_verdict("http://unreachable.example");
        assert_eq!(unreachable.detection, Detection::Clean);
        assert!(unreachable.run_error.is_some());
        assert_eq!(
            url_verdict("https://example.org").detection,
            Detection::Clean
        );
    }

    #[test]
    fn detections_order_by_severity() {
        assert!(Detection::Malicious > Detection::Suspicious);
        assert!(Detection::Suspicious > Detection::Clean);
        assert!(Detection::Clean > Detection::Unknown);
        assert_eq!(Detection::parse("MALICIOUS"), Some(Detection::Malicious));
        assert_eq!(Detection::parse("bad"), None);
    }
}
