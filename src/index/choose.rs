//! Which stored report the index reads, per report family and run: the JSON reports before the
//! XML ones (a JSON document needs no attribute/element guessing and parses faster), the
//! `*fixed` variants (lists always lists) before the plain ones, the full report before its
//! `light` cut:
//!
//! | family | preference, best first |
//! | --- | --- |
//! | full report | `jsonfixed`, `json`, `lightjsonfixed`, `lightjson`, `xml`, `lightxml` |
//! | incident report | `irjsonfixed`, `irjson`, `irxml` |
//!
//! When the best one cannot be read, the next one of the same family and run is tried; a
//! type in neither list (html, pdf, pcap, the sample, archives...) is not indexable.

use crate::api::report::ReportFamily;

const FULL: &[&str] = &[
    "jsonfixed",
    "json",
    "lightjsonfixed",
    "lightjson",
    "xml",
    "lightxml",
];
const INCIDENT: &[&str] = &["irjsonfixed", "irjson", "irxml"];

/// The family of a report type the index reads, and its rank in that family (0 = best).
pub fn preference(report_type: &str) -> Option<(ReportFamily, usize)> {
    let t = report_type.to_ascii_lowercase();
    let rank = |list: &[&str]| list.iter().position(|name| *name == t);
    rank(FULL)
        .map(|r| (ReportFamily::Full, r))
        .or_else(|| rank(INCIDENT).map(|r| (ReportFamily::Incident, r)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_comes_before_xml_and_fixed_before_plain_within_each_family() {
        let rank = |t| preference(t).unwrap();
        assert!(rank("jsonfixed").1 < rank("json").1);
        assert!(rank("json").1 < rank("lightjsonfixed").1);
        assert!(rank("lightjson").1 < rank("xml").1);
        assert!(rank("xml").1 < rank("lightxml").1);
        assert!(rank("irjsonfixed").1 < rank("irjson").1 && rank("irjson").1 < rank("irxml").1);
        assert_eq!(rank("irxml").0, ReportFamily::Incident);
        assert_eq!(rank("XML").0, ReportFamily::Full);
        for other in ["html", "pdf", "sample", "bins", "iocjson", "stix"] {
            assert_eq!(preference(other), None, "{other}");
        }
    }
}
