//! `jbxd iocs`: the indicator index (`ioc_sightings`) as a table, `--json`, or `--format csv`
//! for spreadsheets and SIEM imports; and the look-up behind `jbxd reports --ioc`.
//!
//! `--value` takes what people paste: upper-case hashes, defanged indicators (`hxxp://`,
//! `example[.]com`), URLs with or without the trailing slash, quoted text (`ioc::lookup`).

use clap::{Args, ValueEnum};

use crate::cli::output::{cell, print_json, table};
use crate::cli::{CliError, Context, Outcome};
use crate::db::indicators::{self, Sighting, SightingFilter};
use crate::ioc::{self, Kind};

use super::operator::{db_failed, open};

#[derive(Debug, Args)]
pub struct IocsArgs {
    /// Only indicators of this kind.
    #[arg(long, value_name = "KIND", value_parser = parse_kind)]
    pub kind: Option<Kind>,
    /// Indicators with this value, as pasted: any case for hashes and host names, defanged
    /// (`hxxp://`, `example[.]com`), with or without a URL's trailing slash.
    #[arg(long, value_name = "VALUE")]
    pub value: Option<String>,
    /// Only indicators the report flags malicious.
    #[arg(long)]
    pub malicious: bool,
    /// One analysis.
    #[arg(long, value_name = "WEBID")]
    pub webid: Option<String>,
    /// Analyses recorded on or after this day (YYYY-MM-DD, UTC).
    #[arg(long, value_name = "DATE", value_parser = parse_day)]
    pub since: Option<chrono::NaiveDate>,
    /// At most this many rows, newest analyses first (0 = all).
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub limit: u32,
    /// Output format (`--json` wins).
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Csv,
}

fn parse_kind(text: &str) -> Result<Kind, String> {
    Kind::parse(text).ok_or_else(|| {
        let kinds: Vec<&str> = Kind::ALL.iter().map(|k| k.as_str()).collect();
        format!("`{text}` is not a kind of indicator ({})", kinds.join(", "))
    })
}

pub(super) fn parse_day(text: &str) -> Result<chrono::NaiveDate, String> {
    chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map_err(|_| format!("`{text}` is not a date of the form YYYY-MM-DD"))
}

/// The lookup forms of a pasted value, or a usage error naming it when it is no indicator.
pub(super) fn lookup(text: &str, kind: Option<Kind>) -> Result<Vec<(Kind, String)>, CliError> {
    let forms = ioc::lookup_forms(text, kind);
    if forms.is_empty() {
        let what = kind.map_or(String::new(), |k| format!(" of kind {}", k.as_str()));
        return Err(CliError::Usage(format!(
            "`{text}` is not an indicator{what}"
        )));
    }
    Ok(forms)
}

pub async fn run(context: &Context, args: IocsArgs) -> Result<Outcome, CliError> {
    let values = match &args.value {
        Some(text) => Some(lookup(text, args.kind)?),
        None => None,
    };
    let filter = SightingFilter {
        values,
        kind: args.kind,
        malicious: args.malicious,
        webid: args.webid.clone(),
        since: args.since.map(|d| d.format("%Y-%m-%d").to_string()),
        limit: i64::from(args.limit),
    };
    let (_config, db) = open(context).await?;
    let found = indicators::sightings(&db, &filter)
        .await
        .map_err(db_failed)?;
    db.close().await;
    if context.json {
        print_json(&found)?;
    } else if args.format == Format::Csv {
        print!("{}", csv(&found));
    } else if found.is_empty() {
        eprintln!("no indicators found");
    } else {
        println!("{}", sightings_table(&found));
    }
    Ok(Outcome::success())
}

const HEADER: &[&str] = &[
    "kind",
    "value",
    "malicious",
    "webid",
    "run",
    "detection",
    "score",
    "threat name",
    "item",
    "recorded",
];

fn flag(value: Option<bool>) -> String {
    match value {
        Some(true) => "yes".into(),
        Some(false) => "no".into(),
        None => String::new(),
    }
}

fn row(s: &Sighting) -> Vec<String> {
    vec![
        s.kind.clone(),
        s.value.clone(),
        flag(s.malicious),
        s.webid.clone(),
        cell(s.run),
        cell(s.detection.as_deref()),
        cell(s.score),
        cell(s.threatname.as_deref()),
        cell(s.item_name.as_deref()),
        s.recorded_at.clone(),
    ]
}

fn sightings_table(found: &[Sighting]) -> comfy_table::Table {
    let mut out = table(HEADER);
    for s in found {
        out.add_row(row(s));
    }
    out
}

/// RFC 4180: a header row, CRLF line ends, fields with `,` `"` CR or LF quoted, quotes doubled.
pub fn csv(found: &[Sighting]) -> String {
    let mut out = String::new();
    let mut line = |fields: Vec<String>| {
        let cells: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
        out.push_str(&cells.join(","));
        out.push_str("\r\n");
    };
    line(HEADER.iter().map(|h| h.replace(' ', "_")).collect());
    for s in found {
        line(row(s));
    }
    out
}

/// One CSV field, safe to open in a spreadsheet: a value a spreadsheet would run as a formula
/// (starting with `=`, `+`, `-`, `@`, tab or CR) gets a leading `'` (OWASP's advice), so an
/// indicator chosen by malware authors cannot become a formula on the analyst's machine.
pub fn csv_field(value: &str) -> String {
    let guarded = if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{value}")
    } else {
        value.to_owned()
    };
    if guarded.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", guarded.replace('"', "\"\""))
    } else {
        guarded
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_per_rfc_4180_and_formulas_are_defused() {
        assert_eq!(csv_field("evil.example"), "evil.example");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("two\nlines"), "\"two\nlines\"");
        assert_eq!(csv_field("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        for formula in ["+1", "-2+3", "@SUM(A1)", "\tx"] {
            assert!(
                csv_field(formula).trim_matches('"').starts_with('\''),
                "{formula}"
            );
        }
    }

    #[test]
    fn the_csv_has_a_header_row_and_one_crlf_line_per_sighting() {
        let s = Sighting {
            kind: "url".into(),
            value: "http://a.example/x,y".into(),
            malicious: Some(true),
            private: None,
            webid: "42".into(),
            run: None,
            report_type: "jsonfixed".into(),
            section: "urlinfo".into(),
            detection: Some("malicious".into()),
            score: Some(90),
            threatname: Some("=cmd".into()),
            analysed_at: None,
            recorded_at: "2026-12-04T10:00:00.000Z".into(),
            item_id: None,
            item_source: None,
            item_name: None,
        };
        let text = csv(&[s]);
        let lines: Vec<&str> = text.split("\r\n").collect();
        assert_eq!(
            lines[0],
            "kind,value,malicious,webid,run,detection,score,threat_name,item,recorded"
        );
        assert_eq!(
            lines[1],
            "url,\"http://a.example/x,y\",yes,42,,malicious,90,'=cmd,,2026-12-04T10:00:00.000Z"
        );
        assert_eq!(lines.len(), 3, "ends with CRLF");
    }

    #[test]
    fn a_value_that_is_no_indicator_is_a_usage_error_naming_it() {
        let error = lookup("   ", None).unwrap_err();
        assert!(matches!(error, CliError::Usage(_)));
        let error = lookup("not-an-ip", Some(Kind::Ip)).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("`not-an-ip` is not an indicator of kind ip"),
            "{error}"
        );
    }
}
