//! `jbxd analysis search`: free text or structured filters (sent to the server), or `--xpath`
//! (evaluated locally over the XML reports the daemon stored; see `index::xpath`).

use clap::{ArgGroup, Args};

use serde::Serialize;

use crate::api::{SEARCH_FILTERS, SearchQuery};
use crate::cli::output::{cell, failure_line, print_json, table, verdict_table};
use crate::cli::{CliError, Context, Outcome};
use crate::db::AnalysisRow;
use crate::index::xpath::{self as index_xpath, XPathError};

use super::decrypt::ReportPassword;
use super::operator::{absolute, db_failed, open};
use super::single_failure;

/// Structured filters, one flag per `analysis/search` parameter.
const FILTER_ARGS: &[&str] = &[
    "md5",
    "sha1",
    "sha256",
    "filename",
    "url",
    "tag",
    "comments",
    "ioc_url",
    "ioc_dropped_file",
    "detection",
    "threatname",
    "before_date",
    "after_date",
    "ioc_domain",
    "ioc_public_ip",
];

#[derive(Debug, Args)]
#[command(
    override_usage = "jbxd analysis search (--query TEXT | --xpath EXPR | FILTER...) [OPTIONS]"
)]
#[command(group(
    ArgGroup::new("what")
        .required(true)
        .multiple(true)
        .args(["query", "xpath"])
        .args(FILTER_ARGS)
))]
pub struct SearchArgs {
    /// Free text matched against hashes, file names, URLs, comments and ids.
    #[arg(long, short = 'q', value_name = "TEXT", conflicts_with_all = FILTER_ARGS)]
    pub query: Option<String>,

    /// XPath 1.0 over the XML reports the daemon stored, e.g.
    /// `/analysis/domaininfo/domain[@malicious='true']`; reads the daemon's database
    /// (`--config`), not the server.
    #[arg(long, value_name = "EXPR", conflicts_with = "query", conflicts_with_all = FILTER_ARGS)]
    pub xpath: Option<String>,

    /// With --xpath: the report password of encrypted analyses, read from this file (mode
    /// 0600), so their stored reports (AES zips) are searched too; default: the configured
    /// one (`[reports]`).
    #[arg(long, value_name = "FILE", requires = "xpath")]
    pub password_file: Option<std::path::PathBuf>,

    /// Exact MD5 of the sample.
    #[arg(long, value_name = "HASH", help_heading = "Filters (ANDed)")]
    pub md5: Option<String>,
    /// Exact SHA-1 of the sample.
    #[arg(long, value_name = "HASH", help_heading = "Filters (ANDed)")]
    pub sha1: Option<String>,
    /// Exact SHA-256 of the sample.
    #[arg(long, value_name = "HASH", help_heading = "Filters (ANDed)")]
    pub sha256: Option<String>,
    /// Substring of the file name.
    #[arg(long, value_name = "TEXT", help_heading = "Filters (ANDed)")]
    pub filename: Option<String>,
    /// Substring of the analysed URL.
    #[arg(long, value_name = "TEXT", help_heading = "Filters (ANDed)")]
    pub url: Option<String>,
    /// Substring of a tag.
    #[arg(long, value_name = "TAG", help_heading = "Filters (ANDed)")]
    pub tag: Option<String>,
    /// Substring of the comments.
    #[arg(long, value_name = "TEXT", help_heading = "Filters (ANDed)")]
    pub comments: Option<String>,
    /// Substring of a contacted URL.
    #[arg(long, value_name = "TEXT", help_heading = "Filters (ANDed)")]
    pub ioc_url: Option<String>,
    /// Substring of a dropped file's name.
    #[arg(long, value_name = "TEXT", help_heading = "Filters (ANDed)")]
    pub ioc_dropped_file: Option<String>,
    /// The verdict.
    #[arg(long, value_name = "VERDICT", help_heading = "Filters (ANDed)",
          value_parser = ["clean", "suspicious", "malicious", "unknown"])]
    pub detection: Option<String>,
    /// Exact threat name.
    #[arg(long, value_name = "NAME", help_heading = "Filters (ANDed)")]
    pub threatname: Option<String>,
    /// Analyses before this date (YYYY-MM-DD, exclusive).
    #[arg(long, value_name = "DATE", help_heading = "Filters (ANDed)")]
    pub before_date: Option<String>,
    /// Analyses after this date (YYYY-MM-DD, exclusive).
    #[arg(long, value_name = "DATE", help_heading = "Filters (ANDed)")]
    pub after_date: Option<String>,
    /// Contacted domain (exact).
    #[arg(long, value_name = "DOMAIN", help_heading = "Filters (ANDed)")]
    pub ioc_domain: Option<String>,
    /// Contacted public IP (exact).
    #[arg(long, value_name = "IP", help_heading = "Filters (ANDed)")]
    pub ioc_public_ip: Option<String>,
}

impl SearchArgs {
    /// The query to send; clap has already made sure there is exactly one kind of query.
    fn to_query(&self) -> SearchQuery {
        if let Some(text) = &self.query {
            return SearchQuery::Text(text.clone());
        }
        // In the order of `api::SEARCH_FILTERS`, which names them on the wire (the test below
        // keeps the two lists in step).
        let values = [
            &self.md5,
            &self.sha1,
            &self.sha256,
            &self.filename,
            &self.url,
            &self.tag,
            &self.comments,
            &self.ioc_url,
            &self.ioc_dropped_file,
            &self.detection,
            &self.threatname,
            &self.before_date,
            &self.after_date,
            &self.ioc_domain,
            &self.ioc_public_ip,
        ];
        SearchQuery::Filters(
            SEARCH_FILTERS
                .iter()
                .zip(values)
                .filter_map(|(name, value)| value.clone().map(|v| ((*name).to_owned(), v)))
                .collect(),
        )
    }
}

pub async fn run(context: &Context, args: SearchArgs) -> Result<Outcome, CliError> {
    if let Some(expr) = &args.xpath {
        return xpath(context, expr, args.password_file.as_deref()).await;
    }
    let client = context.client()?;
    match client.analysis_search(&args.to_query()).await {
        Ok(hits) => {
            if context.json {
                print_json(&hits)?;
            } else if hits.is_empty() {
                eprintln!("no analyses found");
            } else {
                println!("{}", verdict_table(&hits));
            }
            Ok(Outcome::success())
        }
        Err(error) => Ok(single_failure("Search", &error)),
    }
}

/// One analysis whose stored XML report matched (`--json`).
#[derive(Debug, Serialize)]
struct XPathHit {
    #[serde(flatten)]
    analysis: AnalysisRow,
    /// The matching report, absolute.
    report: String,
    /// What the expression selected, as text (the first few nodes).
    selected: Vec<String>,
}

/// `--xpath`: local, needs the daemon's database, never the server or the API key. A broken
/// expression is a usage error (exit 2) in the shape a server gives it, found before anything
/// is opened. Reports that could not be searched are counted on stderr.
async fn xpath(
    context: &Context,
    expr: &str,
    password_file: Option<&std::path::Path>,
) -> Result<Outcome, CliError> {
    let refused = |error: &XPathError| {
        CliError::Refused(failure_line("Search", Some(400), &error.to_string()))
    };
    index_xpath::compile_check(expr).map_err(|e| refused(&e))?;
    let password = password_file.map(ReportPassword::from_file).transpose()?;
    let (config, db) = open(context).await?;
    let password = match password {
        Some(password) => Some(password),
        None => ReportPassword::configured(&config)?,
    };
    let found = index_xpath::search_reports(
        &db,
        &config.data_dir,
        expr,
        password.as_ref().map(ReportPassword::as_bytes),
    )
    .await;
    db.close().await;
    let found = match found {
        Ok(found) => found,
        Err(error @ XPathError::Invalid { .. }) => return Err(refused(&error)),
        Err(XPathError::Db(error)) => return Err(db_failed(error)),
    };
    if found.need_password > 0 {
        eprintln!(
            "{} encrypted XML report(s) not searched: they need the report password \
             (--password-file FILE, or configure [reports] password_file)",
            found.need_password
        );
    }
    if found.wrong_password > 0 {
        eprintln!(
            "{} encrypted XML report(s) not searched: the report password does not open them",
            found.wrong_password
        );
    }
    if let Some(reason) = &found.first_unreadable {
        eprintln!(
            "{} XML report(s) not searched: they cannot be read (first: {reason})",
            found.unreadable
        );
    }
    let hits: Vec<XPathHit> = found
        .matches
        .into_iter()
        .map(|m| XPathHit {
            report: absolute(&config.data_dir, &m.report_path)
                .display()
                .to_string(),
            analysis: m.analysis,
            selected: m.selected,
        })
        .collect();
    if context.json {
        print_json(&hits)?;
    } else if hits.is_empty() {
        eprintln!("no stored XML report matches");
    } else {
        let mut out = table(&[
            "webid",
            "detection",
            "score",
            "threat name",
            "file/URL",
            "report",
        ]);
        for hit in &hits {
            out.add_row(vec![
                hit.analysis.webid.clone(),
                cell(hit.analysis.detection.as_deref()),
                cell(hit.analysis.score),
                cell(hit.analysis.threatname.as_deref()),
                cell(hit.analysis.filename.as_deref()),
                hit.report.clone(),
            ]);
        }
        println!("{out}");
    }
    Ok(Outcome::success())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Command {
        #[command(flatten)]
        search: SearchArgs,
    }

    fn query(args: &[&str]) -> SearchQuery {
        let argv = std::iter::once("search").chain(args.iter().copied());
        Command::try_parse_from(argv).unwrap().search.to_query()
    }

    #[test]
    fn every_filter_flag_is_sent_under_the_filter_of_its_position() {
        assert_eq!(FILTER_ARGS.len(), SEARCH_FILTERS.len());
        for (flag, filter) in FILTER_ARGS.iter().zip(SEARCH_FILTERS) {
            let long = format!("--{}", flag.replace('_', "-"));
            let value = if *flag == "detection" {
                "malicious"
            } else {
                "x"
            };
            let sent = query(&[&long, value]);
            assert_eq!(
                sent,
                SearchQuery::Filters(vec![((*filter).to_owned(), value.to_owned())]),
                "{long}"
            );
        }
    }

    #[test]
    fn filters_are_anded_and_free_text_is_sent_as_text() {
        assert_eq!(
            query(&["--sha256", "ab", "--ioc-public-ip", "1.2.3.4"]),
            SearchQuery::Filters(vec![
                ("sha256".to_owned(), "ab".to_owned()),
                ("ioc-public-ip".to_owned(), "1.2.3.4".to_owned()),
            ])
        );
        assert_eq!(query(&["-q", "evil"]), SearchQuery::Text("evil".to_owned()));
    }
}
