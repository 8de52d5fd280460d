//! XML exports that are not Joe's own report shape: OpenIOC 1.1. It shows the same indicators
//! as the reports ([`super::iocs`]).

use axum::body::Bytes;

use super::ReportInput;
use super::iocs::iocs;
use super::render::xml_bytes;
use super::tree::Element;

/// An OpenIOC 1.1 document: the sample hashes (or the URL), then every indicator the analysis
/// saw (domains, public IPs, URLs, dropped files' MD5).
pub(crate) fn openioc(input: &ReportInput) -> Bytes {
    let mut items: Vec<(&str, String)> = match &input.url {
        Some(url) => vec![("UrlHistoryItem/URL", url.clone())],
        None => vec![
            ("FileItem/Md5sum", input.md5().to_owned()),
            ("FileItem/Sha1sum", input.sha1().to_owned()),
            ("FileItem/Sha256sum", input.sha256().to_owned()),
        ],
    };
    let iocs = iocs(input);
    items.extend(
        iocs.domains
            .iter()
            .map(|d| ("DnsEntryItem/Host", d.name.clone())),
    );
    items.extend(
        iocs.ips
            .iter()
            .filter(|ip| !ip.private)
            .map(|ip| ("PortItem/remoteIP", ip.ip.clone())),
    );
    items.extend(
        iocs.urls
            .iter()
            .filter(|u| Some(&u.name) != input.url.as_ref())
            .map(|u| ("UrlHistoryItem/URL", u.name.clone())),
    );
    items.extend(
        iocs.dropped
            .iter()
            .map(|f| ("FileItem/Md5sum", f.md5.clone())),
    );
    let indicator =
        Element::new("Indicator")
            .attr("operator", "OR")
            .children(items.into_iter().map(|(search, value)| {
                Element::new("IndicatorItem")
                    .attr("condition", "is")
                    .child(Element::leaf("Context", search))
                    .child(Element::leaf("Content", value))
            }));
    let root = Element::new("OpenIOC")
        .attr("xmlns", "http://openioc.org/schemas/OpenIOC_1.1")
        .attr("id", format!("jbxsim-{}", input.webid))
        .child(
            Element::new("metadata")
                .child(Element::leaf(
                    "short_description",
                    format!("Joe Sandbox analysis {}", input.webid),
                ))
                .child(Element::leaf("authored_by", "Joe Sandbox Simulator")),
        )
        .child(Element::new("criteria").child(indicator));
    Bytes::from(xml_bytes(root))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulator::reports::tests::{file_input, url_input};

    #[test]
    fn openioc_lists_the_sample_hashes_and_what_the_analysis_contacted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let input = file_input(dir.path(), "a.exe", b"JBXD-MALICIOUS");
        let text = String::from_utf8(openioc(&input).to_vec()).expect("utf-8");
        assert!(text.contains(&format!("<Content>{}</Content>", input.sha256())));
        for domain in iocs(&input).domains {
            assert!(text.contains(&format!("<Content>{}</Content>", domain.name)));
        }
        let url = String::from_utf8(openioc(&url_input("http://a.example/?q=1&b=2")).to_vec())
            .expect("utf-8");
        assert!(url.contains("<Content>http://a.example/?q=1&amp;b=2</Content>"));
    }
}
