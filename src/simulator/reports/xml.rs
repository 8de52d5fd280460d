//! XML reports. The root `<analysis>` carries `generalinfo`, `fileinfo`, `detection`,
//! `signaturedetections` and `runs`, so XPath filters such as `fileinfo[sha1='…']` or
//! `detection[malicious='true']` select it. Every value is escaped.

use axum::body::Bytes;

use super::ReportInput;
use crate::simulator::verdict::Detection;

/// Escape text for element content and attribute values. Characters XML 1.0 cannot carry at all
/// (most C0 controls) are dropped rather than producing an unparsable document.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => {}
            c => out.push(c),
        }
    }
    out
}

/// A tiny indenting XML writer.
struct Writer {
    out: String,
    depth: usize,
}

impl Writer {
    fn new() -> Self {
        Self {
            out: String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"),
            depth: 0,
        }
    }

    fn indent(&mut self) {
        for _ in 0..self.depth {
            self.out.push_str("  ");
        }
    }

    fn open(&mut self, tag: &str) {
        self.open_attrs(tag, &[]);
    }

    fn open_attrs(&mut self, tag: &str, attrs: &[(&str, &str)]) {
        self.indent();
        self.out.push('<');
        self.out.push_str(tag);
        for (name, value) in attrs {
            self.out.push_str(&format!(" {name}=\"{}\"", escape(value)));
        }
        self.out.push_str(">\n");
        self.depth += 1;
    }

    fn close(&mut self, tag: &str) {
        self.depth = self.depth.saturating_sub(1);
        self.indent();
        self.out.push_str(&format!("</{tag}>\n"));
    }

    fn leaf(&mut self, tag: &str, value: impl ToString) {
        self.indent();
        let value = escape(&value.to_string());
        if value.is_empty() {
            self.out.push_str(&format!("<{tag}/>\n"));
        } else {
            self.out.push_str(&format!("<{tag}>{value}</{tag}>\n"));
        }
    }

    fn finish(self) -> Bytes {
        Bytes::from(self.out)
    }
}

pub(crate) fn report(reporttype: &str, input: &ReportInput) -> Bytes {
    let mut w = Writer::new();
    w.open("analysis");
    general_info(&mut w, reporttype, input);
    if let Some(file) = &input.file {
        w.open("fileinfo");
        w.leaf("filename", &input.filename);
        w.leaf("md5", &file.facts.md5);
        w.leaf("sha1", &file.facts.sha1);
        w.leaf("sha256", &file.facts.sha256);
        w.leaf("filesize", file.facts.size);
        w.leaf("filetype", super::documents::file_type(&file.facts.head));
        w.close("fileinfo");
    }
    detection(&mut w, input);
    signatures(&mut w, input);
    w.open("runs");
    w.open("run");
    w.leaf("index", input.run);
    w.leaf("system", &input.system);
    w.leaf("detection", input.detection().as_str());
    w.leaf("score", input.verdict.score);
    w.leaf("error", input.verdict.run_error.as_deref().unwrap_or(""));
    w.close("run");
    w.close("runs");
    w.close("analysis");
    w.finish()
}

fn general_info(w: &mut Writer, reporttype: &str, input: &ReportInput) {
    w.open("generalinfo");
    w.leaf("id", input.webid);
    w.leaf("version", "40.0.0 Simulated Sapphire");
    w.leaf("product", input.product);
    w.leaf("reporttype", reporttype);
    w.leaf("startdate", input.time.format("%d/%m/%Y"));
    w.leaf("starttime", input.time.format("%H:%M:%S"));
    w.leaf("duration", input.duration_text());
    w.open("target");
    w.leaf(
        "sample",
        if input.url.is_some() {
            ""
        } else {
            &input.filename
        },
    );
    w.leaf("url", input.url.as_deref().unwrap_or(""));
    w.leaf("cookbook", &input.scriptname);
    w.close("target");
    w.leaf("system", &input.system);
    w.leaf("arch", input.arch);
    w.leaf("comments", &input.comments);
    w.open("tags");
    for tag in &input.tags {
        w.leaf("tag", tag);
    }
    w.close("tags");
    w.close("generalinfo");
}

fn detection(w: &mut Writer, input: &ReportInput) {
    let d = input.detection();
    w.open("detection");
    w.leaf("malicious", d == Detection::Malicious);
    w.leaf("suspicious", d == Detection::Suspicious);
    w.leaf("clean", d == Detection::Clean);
    w.leaf("unknown", d == Detection::Unknown);
    w.leaf("score", input.verdict.score);
    w.leaf("minscore", 0);
    w.leaf("maxscore", 100);
    w.leaf("threatname", &input.verdict.threatname);
    w.close("detection");
}

fn signatures(w: &mut Writer, input: &ReportInput) {
    w.open("signaturedetections");
    w.open_attrs("strategy", &[("name", "empiric")]);
    for (name, score) in super::documents::signatures(input) {
        w.open("sig");
        w.leaf("name", name);
        w.leaf("score", score);
        w.close("sig");
    }
    w.close("strategy");
    w.close("signaturedetections");
}

/// An OpenIOC 1.1 document with the sample hashes or the URL.
pub(crate) fn openioc(input: &ReportInput) -> Bytes {
    let mut w = Writer::new();
    w.open_attrs(
        "OpenIOC",
        &[
            ("xmlns", "http://openioc.org/schemas/OpenIOC_1.1"),
            ("id", &format!("jbxsim-{}", input.webid)),
        ],
    );
    w.open("metadata");
    w.leaf(
        "short_description",
        format!("Joe Sandbox analysis {}", input.webid),
    );
    w.leaf("authored_by", "Joe Sandbox Simulator");
    w.close("metadata");
    w.open("criteria");
    w.open_attrs("Indicator", &[("operator", "OR")]);
    let items: Vec<(&str, &str)> = match &input.url {
        Some(url) => vec![("UrlHistoryItem/URL", url.as_str())],
        None => vec![
            ("FileItem/Md5sum", input.md5()),
            ("FileItem/Sha1sum", input.sha1()),
            ("FileItem/Sha256sum", input.sha256()),
        ],
    };
    for (search, value) in items {
        w.open_attrs("IndicatorItem", &[("condition", "is")]);
        w.leaf("Context", search);
        w.leaf("Content", value);
        w.close("IndicatorItem");
    }
    w.close("Indicator");
    w.close("criteria");
    w.close("OpenIOC");
    w.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulator::reports::tests::{file_input, url_input};

    #[test]
    fn escaping_covers_markup_quotes_and_control_characters() {
        assert_eq!(escape("a<b>&\"c'\u{1}\n"), "a&lt;b&gt;&amp;&quot;c&apos;\n");
    }

    #[test]
    fn file_reports_carry_hashes_and_detection_elements() {
        let dir = tempfile::tempdir().expect("tempdir");
        let input = file_input(dir.path(), "x<y>.exe", b"JBXD-MALICIOUS");
        let text = String::from_utf8(report("full", &input).to_vec()).expect("utf-8");
        assert!(text.contains(&format!("<sha1>{}</sha1>", input.sha1())));
        assert!(text.contains("<malicious>true</malicious>"));
        assert!(text.contains("<filename>x&lt;y&gt;.exe</filename>"));
        assert!(text.contains("<comments>c &lt;&amp;&gt;</comments>"));
        assert!(text.trim_end().ends_with("</analysis>"));
    }

    #[test]
    fn url_reports_have_the_url_and_no_fileinfo() {
        let text =
            String::from_utf8(report("IR", &url_input("http://a.example/?q=1&b=2")).to_vec())
                .expect("utf-8");
        assert!(!text.contains("<fileinfo>"));
        assert!(text.contains("<url>http://a.example/?q=1&amp;b=2</url>"));
    }
}
