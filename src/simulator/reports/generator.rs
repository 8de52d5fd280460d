//! Real-shaped reports of any size, for benchmarks: the full report of a malicious file
//! analysis whose `behavior` section holds as many bulky processes (file and registry `call`
//! lists) as it takes to reach the requested size. Written as a stream: memory stays at one
//! process however large the document.

use std::io::{self, BufWriter, Write};

use chrono::{DateTime, Local};

use super::ReportInput;
use super::behavior::{self, Detail};
use super::full;
use super::iocs::iocs;
use super::render::{json_bytes, write_json, write_xml, xml_bytes};
use super::tree::Element;
use crate::simulator::form::Digester;
use crate::simulator::verdict::file_verdict;

/// Writes a `report_type` report (`xml`, `lightxml`, `json`, `jsonfixed`, `lightjson` or
/// `lightjsonfixed`) of a malicious analysis, padded with realistic processes to about
/// `padding_bytes` more than its unpadded size, and returns the number of bytes written.
/// The same arguments always give the same bytes. The light types drop the call lists, so
/// they need many more (small) processes for the same size.
pub fn write_report_document(
    report_type: &str,
    padding_bytes: u64,
    out: &mut impl Write,
) -> io::Result<u64> {
    let (reporttype, detail, fixed) = match report_type {
        "xml" => ("full", Detail::Full, None),
        "lightxml" => ("light", Detail::Light, None),
        "json" => ("full", Detail::Full, Some(false)),
        "jsonfixed" => ("full", Detail::Full, Some(true)),
        "lightjson" => ("light", Detail::Light, Some(false)),
        "lightjsonfixed" => ("light", Detail::Light, Some(true)),
        other => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "cannot generate a padded `{other}` report: the generator writes xml, \
                     lightxml, json, jsonfixed, lightjson or lightjsonfixed"
                ),
            ));
        }
    };
    let input = sample_input();
    let iocs = iocs(&input);
    // Every bulky process has the same shape, so one rendered sample gives the count.
    let probe = || Element::new("p").child(behavior::padded_process(&input, 0, detail));
    let per_process = match fixed {
        Some(fixed) => json_bytes(probe(), fixed).len(),
        None => xml_bytes(probe()).len(),
    }
    .max(1) as u64;
    let count = padding_bytes / per_process;
    let behavior = behavior::padded(&input, &iocs, detail, count);
    let root = full::document(&input, &iocs, reporttype, behavior);
    let mut counted = Counted {
        inner: out,
        written: 0,
    };
    {
        let mut buffered = BufWriter::with_capacity(256 * 1024, &mut counted);
        match fixed {
            Some(fixed) => write_json(root, fixed, &mut buffered)?,
            None => write_xml(root, &mut buffered)?,
        }
        buffered.flush()?;
    }
    Ok(counted.written)
}

/// The analysed sample: a small PE carrying the malicious marker, analysed at a fixed time.
fn sample_input() -> ReportInput {
    let content = b"MZ\x90\x00\x03\x00\x00\x00 jbxd benchmark sample JBXD-MALICIOUS";
    let mut digester = Digester::default();
    digester.update(content);
    let facts = digester.finish();
    let time = DateTime::from_timestamp(1_767_225_600, 0)
        .unwrap_or_default()
        .with_timezone(&Local);
    ReportInput {
        webid: 4_000_001,
        run: 0,
        system: crate::simulator::catalog::DEFAULT_SYSTEM.to_owned(),
        arch: "WINDOWS",
        filename: "invoice_2026.exe".into(),
        scriptname: "default.jbs".into(),
        url: None,
        file: None,
        verdict: file_verdict(facts.markers, &facts.sha256),
        facts: Some(facts),
        comments: String::new(),
        tags: vec![],
        time,
        duration_secs: 212,
        cookbook: None,
        product: "Cloud",
        html_padding: 0,
    }
}

struct Counted<'a, W: Write> {
    inner: &'a mut W,
    written: u64,
}

impl<W: Write> Write for Counted<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
