//! XPath search over the stored XML reports (`jbxd analysis search --xpath EXPR`).
//!
//! Joe Sandbox's own "Filters" search is not part of the public API, so jbxd evaluates XPath 1.0
//! locally over the XML reports it downloaded (types `xml`, `lightxml`, `irxml`). The
//! expression is evaluated with the report's root element (`<analysis>`) as the context node,
//! so `fileinfo[sha1='…']` or `detection[malicious='true']` select from the top of the report;
//! absolute paths (`/analysis/...`) work too. A report matches when the result is a non-empty
//! node-set, `true`, a non-zero number or a non-empty string.
//!
//! The daemon keeps an encrypted analysis' reports as they came (AES zips); they are opened
//! with the report password (`api::report::open_stored`) and searched like the others. Reports
//! that could not be searched — no password, a password that does not open them, a file that
//! cannot be read or is not well-formed XML — are counted in [`XPathSearch`], never skipped
//! silently.

use std::io::Read;
use std::path::Path;

use sxd_document::dom::Element;
use sxd_xpath::{Context, Factory, Value, XPath};

use crate::api::report::{OpenError, open_stored};
use crate::db::{self, AnalysisRow, Db, DbError};

/// The XML report types searched.
pub const XML_TYPES: &[&str] = &["xml", "lightxml", "irxml"];

#[derive(Debug, thiserror::Error)]
pub enum XPathError {
    /// The message is the one a server gives for a bad search (`<expr> is not a valid XPath
    /// expression.`); `detail` says what the parser found.
    #[error("{expr} is not a valid XPath expression.")]
    Invalid { expr: String, detail: String },
    #[error(transparent)]
    Db(#[from] DbError),
}

/// One analysis whose report matched.
#[derive(Debug, Clone, serde::Serialize)]
pub struct XPathMatch {
    pub analysis: AnalysisRow,
    /// The matching report, relative to `data_dir`.
    pub report_path: String,
    /// What the expression selected, as text (first few nodes).
    pub selected: Vec<String>,
}

fn compile(expr: &str) -> Result<XPath, XPathError> {
    let invalid = |detail: String| XPathError::Invalid {
        expr: expr.to_owned(),
        detail,
    };
    Factory::new()
        .build(expr)
        .map_err(|e| invalid(e.to_string()))?
        .ok_or_else(|| invalid("the expression is empty".into()))
}

/// Checks an expression without evaluating it (a usage error must come before any work).
pub fn compile_check(expr: &str) -> Result<(), XPathError> {
    compile(expr).map(drop)
}

/// What a search found, and what it could not look into.
#[derive(Debug, Default)]
pub struct XPathSearch {
    pub matches: Vec<XPathMatch>,
    /// Encrypted reports not searched because no report password was given.
    pub need_password: usize,
    /// Encrypted reports the given password does not open.
    pub wrong_password: usize,
    /// Reports that could not be read or are not well-formed XML (with the first reason).
    pub unreadable: usize,
    pub first_unreadable: Option<String>,
}

/// The outcome of one report.
enum Looked {
    Matched(Vec<String>),
    NoMatch,
    NeedPassword,
    WrongPassword,
    Unreadable(String),
}

/// Evaluates `xpath` against one XML document; `None` when it does not match, `Err` when
/// the document is not well-formed XML.
fn evaluate(xpath: &XPath, xml: &str) -> Result<Option<Vec<String>>, String> {
    let package =
        sxd_document::parser::parse(xml).map_err(|e| format!("not well-formed XML: {e}"))?;
    Ok(evaluate_document(xpath, &package))
}

fn evaluate_document(xpath: &XPath, package: &sxd_document::Package) -> Option<Vec<String>> {
    let document = package.as_document();
    let root: Element = document
        .root()
        .children()
        .into_iter()
        .find_map(|c| c.element())?;
    let context = Context::new();
    match xpath.evaluate(&context, root).ok()? {
        Value::Nodeset(nodes) if nodes.size() > 0 => Some(
            nodes
                .document_order()
                .iter()
                .take(5)
                .map(|n| n.string_value())
                .collect(),
        ),
        Value::Boolean(true) => Some(vec!["true".into()]),
        Value::Number(n) if n != 0.0 && !n.is_nan() => Some(vec![n.to_string()]),
        Value::String(s) if !s.is_empty() => Some(vec![s]),
        _ => None,
    }
}

/// Opens (decrypting if needed) and searches one stored report. Blocking.
fn look(path: &Path, expr: &str, password: Option<&[u8]>) -> Looked {
    let mut reader = match open_stored(path, password) {
        Ok(reader) => reader,
        Err(OpenError::PasswordNeeded { .. }) => return Looked::NeedPassword,
        Err(OpenError::WrongPassword { .. }) => return Looked::WrongPassword,
        Err(other) => return Looked::Unreadable(other.to_string()),
    };
    let mut xml = String::new();
    if let Err(error) = reader.read_to_string(&mut xml) {
        return Looked::Unreadable(format!(
            "cannot read the report {}: {error}",
            path.display()
        ));
    }
    let Ok(xpath) = compile(expr) else {
        return Looked::NoMatch;
    };
    match evaluate(&xpath, &xml) {
        Ok(Some(selected)) => Looked::Matched(selected),
        Ok(None) => Looked::NoMatch,
        Err(detail) => Looked::Unreadable(format!("the report {}: {detail}", path.display())),
    }
}

/// Searches every stored XML report, opening encrypted ones with `password`; one match per
/// analysis (its first matching report).
pub async fn search_reports(
    db: &Db,
    data_dir: &Path,
    expr: &str,
    password: Option<&[u8]>,
) -> Result<XPathSearch, XPathError> {
    compile_check(expr)?;
    let reports = db::analyses::stored_reports_of_types(db, XML_TYPES).await?;
    let mut found = XPathSearch::default();
    for report in reports {
        if found
            .matches
            .iter()
            .any(|m| m.analysis.webid == report.webid)
        {
            continue;
        }
        let Some(rel) = report.path.clone() else {
            continue;
        };
        let path = data_dir.join(&rel);
        let expr = expr.to_owned();
        let password = password.map(<[u8]>::to_vec);
        // Parsing is CPU-bound; keep it off the async threads.
        let looked = tokio::task::spawn_blocking(move || look(&path, &expr, password.as_deref()))
            .await
            .unwrap_or_else(|e| Looked::Unreadable(format!("the search task failed: {e}")));
        match looked {
            Looked::Matched(selected) => {
                if let Some(analysis) = db::analyses::get(db, &report.webid).await? {
                    found.matches.push(XPathMatch {
                        analysis,
                        report_path: rel,
                        selected,
                    });
                }
            }
            Looked::NoMatch => {}
            Looked::NeedPassword => found.need_password += 1,
            Looked::WrongPassword => found.wrong_password += 1,
            Looked::Unreadable(reason) => {
                found.unreadable += 1;
                found.first_unreadable.get_or_insert(reason);
            }
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPORT: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<analysis>
  <generalinfo><id>1001</id><target><sample>invoice.doc</sample></target></generalinfo>
  <fileinfo><filename>invoice.doc</filename><sha1>aa11</sha1><md5>bb22</md5></fileinfo>
  <detection><malicious>true</malicious><score>100</score></detection>
</analysis>"#;

    fn matches(expr: &str) -> Option<Vec<String>> {
        evaluate(&compile(expr).unwrap(), REPORT).unwrap()
    }

    #[test]
    fn relative_expressions_select_from_the_report_root() {
        assert_eq!(matches("fileinfo[sha1='aa11']").unwrap().len(), 1);
        assert!(matches("fileinfo[sha1='nope']").is_none());
        assert_eq!(
            matches("detection[malicious='true']/score").unwrap(),
            vec!["100".to_string()]
        );
    }

    #[test]
    fn absolute_paths_booleans_and_numbers_work() {
        assert!(matches("/analysis/fileinfo/md5 = 'bb22'").is_some());
        assert!(matches("detection/score > 50").is_some());
        assert!(matches("detection/score > 500").is_none());
        assert!(matches("count(fileinfo)").is_some());
    }

    #[test]
    fn a_broken_expression_is_an_error_in_the_servers_words() {
        let err = compile_check("fileinfo[").unwrap_err();
        assert_eq!(
            err.to_string(),
            "fileinfo[ is not a valid XPath expression."
        );
        assert!(compile_check("").is_err());
    }

    #[test]
    fn a_broken_report_is_an_error_not_a_silent_miss() {
        let err = evaluate(&compile("fileinfo").unwrap(), "<analysis><fileinfo>").unwrap_err();
        assert!(err.contains("not well-formed"), "{err}");
    }

    #[test]
    fn an_encrypted_report_is_searched_with_the_password_and_counted_without_it() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("xml.xml");
        let mut writer = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
        let options = zip::write::FileOptions::<()>::default()
            .with_aes_encryption(zip::AesMode::Aes256, "pw");
        writer.start_file("report.xml", options).unwrap();
        writer.write_all(REPORT.as_bytes()).unwrap();
        writer.finish().unwrap();
        let expr = "fileinfo[sha1='aa11']";
        assert!(matches!(look(&path, expr, Some(b"pw")), Looked::Matched(_)));
        assert!(matches!(
            look(&path, "fileinfo[sha1='x']", Some(b"pw")),
            Looked::NoMatch
        ));
        assert!(matches!(look(&path, expr, None), Looked::NeedPassword));
        assert!(matches!(
            look(&path, expr, Some(b"no")),
            Looked::WrongPassword
        ));
    }
}
