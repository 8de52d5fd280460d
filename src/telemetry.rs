//! Logging of the daemon: tracing to stderr (the journal under systemd), text or JSON, plus
//! optional daily-rotated files.
//!
//! The filter is `log.level`, overridden by `JBXD_LOG`; noisy dependencies are held at `warn`
//! unless the filter names them. Nothing here ever sees the API key: it lives in `ApiKey`,
//! whose `Debug` is redacted, and no request form is logged.
//!
//! Every event is one line: in the text format the fields (the message included) are rendered
//! by [`OneLineFields`], which escapes control characters, so a server message or a parameter
//! name carrying CR LF cannot forge a second log line (RELIABILITY.md case 119); the JSON
//! format escapes them by construction.

use std::path::PathBuf;

use tracing_appender::non_blocking::WorkerGuard;
use tracing_appender::rolling::{RollingFileAppender, Rotation};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::FormatFields;
use tracing_subscriber::fmt::format::{DefaultFields, Writer};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

use crate::config::{LogConfig, LogFormat};

/// Directives added to every filter: the cron scheduler logs each tick at info, sqlx each
/// slow statement.
const QUIET: &[&str] = &["tokio_cron_scheduler=warn", "sqlx=warn"];

/// Keeps the file writer's background thread alive; dropping it flushes buffered lines. Hold
/// it in `main` until the process returns (`std::process::exit` would skip the flush).
#[must_use = "dropping the guard stops file logging"]
pub struct TelemetryGuard {
    _file: Option<WorkerGuard>,
    /// Whether this call installed the global subscriber (false: one was installed before,
    /// e.g. by an earlier test).
    pub installed: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("log.level: not a tracing filter: {0}")]
    Filter(String),
    #[error("log.dir {dir}: cannot create the log files: {message}")]
    Dir { dir: PathBuf, message: String },
}

/// The filter: `JBXD_LOG` when set, else `level`, plus the quiet directives for targets the
/// filter does not mention.
pub fn filter(level: &str) -> Result<EnvFilter, TelemetryError> {
    let spec = std::env::var("JBXD_LOG")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| level.to_owned());
    let mut filter = EnvFilter::builder()
        .parse(&spec)
        .map_err(|e| TelemetryError::Filter(format!("`{spec}`: {e}")))?;
    // Only ever quieter: with a filter of `error`, `sqlx=warn` would make sqlx louder.
    let verbose = filter
        .max_level_hint()
        .is_none_or(|max| max > tracing::level_filters::LevelFilter::WARN);
    for directive in QUIET {
        let target = directive.split('=').next().unwrap_or_default();
        if verbose && !spec.contains(target) {
            filter = filter.add_directive(directive.parse().expect("static directive"));
        }
    }
    Ok(filter)
}

/// The text format's fields, rendered like `DefaultFields` (without its ANSI styling) and then
/// with every control character escaped. The event formatter adds the line's own newline
/// after the fields, so it is the only one left.
#[derive(Debug, Default)]
pub struct OneLineFields(DefaultFields);

impl<'writer> FormatFields<'writer> for OneLineFields {
    fn format_fields<R: RecordFields>(
        &self,
        mut writer: Writer<'writer>,
        fields: R,
    ) -> std::fmt::Result {
        let mut rendered = String::new();
        self.0.format_fields(Writer::new(&mut rendered), fields)?;
        writer.write_str(&crate::text::escape_controls(&rendered))
    }
}

type BoxedLayer = Box<dyn Layer<Registry> + Send + Sync>;

fn format_layer<W>(format: LogFormat, writer: W, ansi: bool) -> BoxedLayer
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .fmt_fields(OneLineFields::default())
            .with_writer(writer)
            .with_ansi(ansi)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(false)
            .with_writer(writer)
            .boxed(),
    }
}

/// Builds the subscriber (stderr, plus files when `log.dir` is set) without installing it.
pub fn build(
    log: &LogConfig,
) -> Result<
    (
        impl tracing::Subscriber + Send + Sync + 'static,
        Option<WorkerGuard>,
    ),
    TelemetryError,
> {
    use std::io::IsTerminal;
    let mut layers: Vec<BoxedLayer> = Vec::new();
    // journald adds its own timestamps, but a terminal or a file wants them: keep them.
    let ansi = std::io::stderr().is_terminal();
    layers.push(format_layer(log.format, std::io::stderr, ansi));

    let mut guard = None;
    if let Some(dir) = &log.dir {
        let appender = RollingFileAppender::builder()
            .rotation(Rotation::DAILY)
            .filename_prefix("jbxd")
            .filename_suffix("log")
            .max_log_files(log.max_files.max(1))
            .build(dir)
            .map_err(|e| TelemetryError::Dir {
                dir: dir.clone(),
                message: e.to_string(),
            })?;
        // Lossy by default: past 128k queued lines, lines are dropped rather than blocking a
        // runtime thread.
        let (writer, worker) = tracing_appender::non_blocking(appender);
        guard = Some(worker);
        layers.push(format_layer(log.format, writer, false));
    }
    let subscriber = tracing_subscriber::registry().with(layers.with_filter(filter(&log.level)?));
    Ok((subscriber, guard))
}

/// Installs the global subscriber. Safe to call more than once: later calls leave the first
/// subscriber in place and report `installed: false`.
pub fn init(log: &LogConfig) -> Result<TelemetryGuard, TelemetryError> {
    let (subscriber, guard) = build(log)?;
    let installed = subscriber.try_init().is_ok();
    Ok(TelemetryGuard {
        _file: guard,
        installed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quiet_directives_do_not_override_explicit_ones() {
        let f = filter("info").unwrap().to_string();
        assert!(f.contains("tokio_cron_scheduler=warn"), "{f}");
        let f = filter("info,tokio_cron_scheduler=debug")
            .unwrap()
            .to_string();
        assert!(!f.contains("tokio_cron_scheduler=warn"), "{f}");
        let f = filter("error").unwrap().to_string();
        assert!(!f.contains("sqlx=warn"), "{f}");
        assert!(filter("info,=[").is_err());
    }

    #[test]
    fn files_are_written_when_a_log_dir_is_set() {
        let dir = tempfile::tempdir().unwrap();
        let log = LogConfig {
            dir: Some(dir.path().to_owned()),
            format: LogFormat::Json,
            ..LogConfig::default()
        };
        let (subscriber, guard) = build(&log).unwrap();
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(item = 7, "telemetry test line");
        });
        drop(guard);
        let files: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(files.len(), 1, "{files:?}");
        let text = std::fs::read_to_string(&files[0]).unwrap();
        assert!(
            text.contains("\"item\":7") && text.contains("telemetry test line"),
            "{text}"
        );
    }

    #[test]
    fn a_field_or_message_with_cr_lf_stays_on_one_text_line() {
        let dir = tempfile::tempdir().unwrap();
        let log = LogConfig {
            dir: Some(dir.path().to_owned()),
            format: LogFormat::Text,
            ..LogConfig::default()
        };
        let (subscriber, guard) = build(&log).unwrap();
        let hostile = "bad\r\nINFO jbxd: forged line\u{1b}[31m";
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(parameter = %hostile, "rejected {hostile}");
            let span = tracing::info_span!("item", name = %hostile);
            let _entered = span.enter();
            tracing::warn!("inside the span");
        });
        drop(guard);
        let file = std::fs::read_dir(dir.path())
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        let text = std::fs::read_to_string(file).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(!text.contains('\r') && !text.contains('\u{1b}'), "{text:?}");
        assert!(
            lines[0].contains("parameter=bad\\r\\nINFO jbxd: forged line\\u{1b}[31m"),
            "{text}"
        );
        assert!(lines[0].contains("rejected bad\\r\\n"), "{text}");
        assert!(lines[1].contains("name=bad\\r\\n"), "{text}");
    }

    #[test]
    fn init_twice_is_harmless() {
        // Level "off": the lib's other tests stay quiet whichever call installs it.
        let log = LogConfig {
            level: "off".into(),
            ..LogConfig::default()
        };
        let _first = init(&log).unwrap();
        let second = init(&log).unwrap();
        assert!(!second.installed);
    }
}
