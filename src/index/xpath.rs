//! XPath search over the stored XML reports (`jbxd analysis search --xpath EXPR`).
//!
//! Joe Sandbox's own "Filters" search is not part of the public API, so jbxd evaluates XPath 1.0
//! locally over the XML reports it downloaded (types `xml`, `lightxml`, `irxml`). The
//! expression is evaluated with the report's root element (`<analysis>`) as the context node,
//! so `fileinfo[sha1='…']` or `detection[malicious='true']` select from the top of the report;
//! absolute paths (`/analysis/...`) work too. A report matches when the result is a non-empty
//! node-set, `true`, a non-zero number or a non-empty string.

use std::path::Path;

use sxd_document::dom::Element;
use sxd_xpath::{Context, Factory, Value, XPath};

use crate::db::{self, AnalysisRow, Db, DbError};

/// The XML report types searched.
pub const XML_TYPES: &[&str] = &["xml", "lightxml", "irxml"];

#[derive(Debug, thiserror::Error)]
pub enum XPathError {
    #[error("invalid XPath expression `{expr}`: {detail}")]
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

/// Evaluates `xpath` against one XML document; `None` when it does not match or the report is
/// not well-formed XML (a broken report is skipped, not fatal).
fn evaluate(xpath: &XPath, xml: &str) -> Option<Vec<String>> {
    let package = sxd_document::parser::parse(xml).ok()?;
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

/// Searches every stored XML report; one match per analysis (its first matching report).
pub async fn search_reports(
    db: &Db,
    data_dir: &Path,
    expr: &str,
) -> Result<Vec<XPathMatch>, XPathError> {
    compile_check(expr)?;
    let reports = db::analyses::stored_reports_of_types(db, XML_TYPES).await?;
    let mut matches: Vec<XPathMatch> = Vec::new();
    for report in reports {
        if matches.iter().any(|m| m.analysis.webid == report.webid) {
            continue;
        }
        let Some(rel) = report.path.clone() else {
            continue;
        };
        let path = data_dir.join(&rel);
        let expr = expr.to_owned();
        // Parsing is CPU-bound; keep it off the async threads.
        let selected = tokio::task::spawn_blocking(move || {
            let xml = std::fs::read_to_string(&path).ok()?;
            let xpath = compile(&expr).ok()?;
            evaluate(&xpath, &xml)
        })
        .await
        .ok()
        .flatten();
        if let Some(selected) = selected
            && let Some(analysis) = db::analyses::get(db, &report.webid).await?
        {
            matches.push(XPathMatch {
                analysis,
                report_path: rel,
                selected,
            });
        }
    }
    Ok(matches)
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
        evaluate(&compile(expr).unwrap(), REPORT)
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
    fn a_broken_expression_is_an_error_naming_it() {
        let err = compile_check("fileinfo[").unwrap_err();
        assert!(err.to_string().contains("fileinfo["), "{err}");
        assert!(compile_check("").is_err());
    }

    #[test]
    fn a_broken_report_does_not_match() {
        assert!(evaluate(&compile("fileinfo").unwrap(), "<analysis><fileinfo>").is_none());
    }
}
