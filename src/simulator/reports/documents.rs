//! Human-oriented resources: HTML and PDF reports, strings, YARA rules and cookbooks.

use axum::body::Bytes;

use super::ReportInput;
use crate::simulator::clock::iso8601;
use crate::simulator::verdict::Detection;

/// A `file`-style description of the leading bytes.
pub(crate) fn file_type(head: &[u8]) -> &'static str {
    if head.starts_with(b"MZ") {
        "PE32 executable (GUI) Intel 80386, for MS Windows"
    } else if head.starts_with(b"\x7fELF") {
        "ELF 64-bit LSB executable, x86-64"
    } else if head.starts_with(b"%PDF") {
        "PDF document"
    } else if head.starts_with(b"PK\x03\x04") {
        "Zip archive data"
    } else if head.starts_with(b"\xd0\xcf\x11\xe0") {
        "Composite Document File V2 Document"
    } else if !head.is_empty()
        && head
            .iter()
            .all(|b| b.is_ascii_graphic() || b.is_ascii_whitespace())
    {
        "ASCII text"
    } else {
        "data"
    }
}

/// The signatures that "fired" with their impact, as the reports list them.
pub(crate) fn signatures(input: &ReportInput) -> Vec<(String, u32)> {
    super::iocs::iocs(input)
        .signatures
        .into_iter()
        .map(|s| (s.desc, s.impact))
        .collect()
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// The page split where benchmark padding goes (inside an HTML comment before `</body>`).
pub(crate) fn html(title: &str, download_type: &str, input: &ReportInput) -> (String, String) {
    let rows = [
        ("Analysis ID", input.webid.to_string()),
        ("Report type", download_type.to_owned()),
        ("Sample / URL", input.filename.clone()),
        ("MD5", input.md5().to_owned()),
        ("SHA1", input.sha1().to_owned()),
        ("SHA256", input.sha256().to_owned()),
        ("Detection", input.detection().as_str().to_owned()),
        ("Score", input.verdict.score.to_string()),
        ("Threat name", input.verdict.threatname.clone()),
        ("System", input.system.clone()),
        ("Cookbook", input.scriptname.clone()),
        ("Start time", iso8601(&input.time)),
        ("Duration", input.duration_text()),
        ("Comments", input.comments.clone()),
        ("Tags", input.tags.join(", ")),
    ];
    let mut head = format!(
        "<!DOCTYPE html>\n<html>\n<head>\n<meta charset=\"utf-8\">\n\
         <title>Joe Sandbox Simulator - {} {}</title>\n</head>\n<body>\n<h1>{}</h1>\n<table>\n",
        html_escape(title),
        input.webid,
        html_escape(title)
    );
    for (label, value) in rows {
        head.push_str(&format!(
            "<tr><th>{}</th><td>{}</td></tr>\n",
            html_escape(label),
            html_escape(&value)
        ));
    }
    head.push_str("</table>\n<h2>Signatures</h2>\n<ul>\n");
    for (name, impact) in signatures(input) {
        head.push_str(&format!(
            "<li>{} (impact {impact})</li>\n",
            html_escape(&name)
        ));
    }
    head.push_str("</ul>\n<!--");
    (head, "-->\n</body>\n</html>\n".to_owned())
}

/// A one-page PDF with the key facts, with a correct cross-reference table.
pub(crate) fn pdf(title: &str, input: &ReportInput) -> Bytes {
    let lines = [
        format!("Joe Sandbox Simulator - {title}"),
        format!("Analysis ID: {}", input.webid),
        format!("Target: {}", input.filename),
        format!("SHA256: {}", input.sha256()),
        format!(
            "Detection: {} (score {})",
            input.detection().as_str(),
            input.verdict.score
        ),
        format!("System: {}", input.system),
        format!("Start time: {}", iso8601(&input.time)),
    ];
    let mut content = String::from("BT /F1 12 Tf 50 780 Td 16 TL\n");
    for line in &lines {
        content.push_str(&format!("({}) Tj T*\n", pdf_text(line)));
    }
    content.push_str("ET\n");
    let objects = [
        "<< /Type /Catalog /Pages 2 0 R >>".to_owned(),
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_owned(),
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R \
         /Resources << /Font << /F1 5 0 R >> >> >>"
            .to_owned(),
        format!(
            "<< /Length {} >>\nstream\n{content}endstream",
            content.len()
        ),
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>".to_owned(),
    ];
    let mut out = String::from("%PDF-1.4\n");
    let mut offsets = Vec::with_capacity(objects.len());
    for (i, body) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.push_str(&format!("{} 0 obj\n{body}\nendobj\n", i + 1));
    }
    let xref = out.len();
    out.push_str(&format!(
        "xref\n0 {}\n0000000000 65535 f \n",
        objects.len() + 1
    ));
    for offset in offsets {
        out.push_str(&format!("{offset:010} 00000 n \n"));
    }
    out.push_str(&format!(
        "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
        objects.len() + 1
    ));
    Bytes::from(out)
}

/// PDF string literal content: ASCII only, with `\`, `(` and `)` escaped.
fn pdf_text(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\\' | '(' | ')' => format!("\\{c}"),
            c if c.is_ascii() && !c.is_ascii_control() => c.to_string(),
            _ => "?".to_owned(),
        })
        .collect()
}

/// Printable strings "found" in the sample's leading bytes and in memory.
pub(crate) fn strings(which: &str, input: &ReportInput) -> Bytes {
    let mut out = format!(
        "# Joe Sandbox Simulator {which} strings of analysis {}\n",
        input.webid
    );
    if let Some(facts) = &input.facts {
        let mut current = String::new();
        for &byte in &facts.head {
            if byte.is_ascii_graphic() || byte == b' ' {
                current.push(char::from(byte));
            } else {
                if current.len() >= 4 {
                    out.push_str(&current);
                    out.push('\n');
                }
                current.clear();
            }
        }
        if current.len() >= 4 {
            out.push_str(&current);
            out.push('\n');
        }
    }
    if let Some(url) = &input.url {
        out.push_str(url);
        out.push('\n');
    }
    for common in [
        "kernel32.dll",
        "GetProcAddress",
        "LoadLibraryA",
        "VirtualAlloc",
    ] {
        out.push_str(common);
        out.push('\n');
    }
    Bytes::from(out)
}

pub(crate) fn yara(input: &ReportInput) -> Bytes {
    let condition = match &input.facts {
        Some(facts) => format!("filesize == {}", facts.size),
        None => "any of them".to_owned(),
    };
    let marker = match input.detection() {
        Detection::Malicious | Detection::Suspicious => "JBXD-",
        _ => "jbxd-simulator",
    };
    Bytes::from(format!(
        "rule JoeSandbox_Sim_{webid}\n{{\n  meta:\n    author = \"Joe Sandbox Simulator\"\n    \
         sha256 = \"{sha256}\"\n    detection = \"{detection}\"\n  strings:\n    $a = \"{marker}\"\n  \
         condition:\n    {condition}\n}}\n",
        webid = input.webid,
        sha256 = input.sha256(),
        detection = input.detection().as_str(),
    ))
}

/// The cookbook the analysis ran: the uploaded one, or a generated default.
pub(crate) fn cookbook(input: &ReportInput) -> Bytes {
    if let Some((_, content)) = &input.cookbook {
        return content.clone();
    }
    let target = match &input.url {
        Some(url) => format!("_JBBrowseUrl(\"{}\")", url.replace('"', "%22")),
        None => "_JBLoadProvidedBin()".to_owned(),
    };
    Bytes::from(format!(
        "// {name}: generated by the Joe Sandbox Simulator\n\
         _JBSetSystem(\"{system}\")\n_JBStartAnalysis()\n{target}\n\
         Sleep({ms})\n_JBStopAnalysis()\n",
        name = input.scriptname,
        system = input.system,
        ms = input.duration_secs.max(1) * 1000,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulator::reports::tests::file_input;

    #[test]
    fn pdf_cross_reference_offsets_point_at_objects() {
        let dir = tempfile::tempdir().expect("tempdir");
        let input = file_input(dir.path(), "a (1).exe", b"abc");
        let pdf = pdf("Full Report", &input);
        let text = String::from_utf8(pdf.to_vec()).expect("ascii");
        assert!(text.starts_with("%PDF-1.4"));
        assert!(text.contains("(Target: a \\(1\\).exe) Tj"));
        let xref_at: usize = text
            .rsplit("startxref\n")
            .next()
            .and_then(|rest| rest.lines().next())
            .and_then(|n| n.parse().ok())
            .expect("startxref");
        assert!(text[xref_at..].starts_with("xref"));
        let first_offset: usize = text[xref_at..]
            .lines()
            .nth(3)
            .and_then(|line| line.split(' ').next())
            .and_then(|n| n.parse().ok())
            .expect("offset of object 1");
        assert!(text[first_offset..].starts_with("1 0 obj"));
    }

    #[test]
    fn html_values_are_escaped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let input = file_input(dir.path(), "<script>.exe", b"abc");
        let (head, tail) = html("Full Report", "html", &input);
        assert!(head.contains("&lt;script&gt;.exe"));
        assert!(!head.contains("<script>"));
        assert!(tail.ends_with("</html>\n"));
    }

    #[test]
    fn file_types_are_sniffed_from_magic_bytes() {
        assert!(file_type(b"MZ\x90\x00").starts_with("PE32"));
        assert_eq!(file_type(b"hello world"), "ASCII text");
        assert_eq!(file_type(b"\x00\x01"), "data");
    }
}
