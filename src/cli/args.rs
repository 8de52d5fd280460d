//! Argument groups shared by several commands.

use std::path::PathBuf;

use clap::Args;

use crate::api::{Param, SubmissionParams};

/// How to reach the server. Environment variables are read by
/// [`resolve_settings`](super::resolve_settings), not by clap, so that error messages can name
/// where a bad value came from. There is deliberately no `--api-key`: secrets do not belong in
/// argv, where every user of the machine can read them.
///
/// `--url` is accepted before the command only (`jbxd --url https://host/api submission list`),
/// because `jbxd submit --url` names a website to analyse. Everything else may follow the
/// command.
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Connection")]
pub struct ConnectionArgs {
    /// Joe Sandbox server or API URL [env: JBX_API_URL] [default: https://jbxcloud.joesecurity.org]
    #[arg(long = "url", value_name = "URL")]
    pub url: Option<String>,

    /// Read the API key from this file (wins over the JBX_API_KEY environment variable).
    #[arg(long, value_name = "FILE", global = true)]
    pub api_key_file: Option<PathBuf>,

    /// Accept the Joe Sandbox Cloud terms and conditions [env: JBX_ACCEPT_TAC=1]
    #[arg(long, global = true)]
    pub accept_tac: bool,

    /// Extra trusted CA certificates (PEM), e.g. for an on-premise server.
    #[arg(long, value_name = "PEM", global = true)]
    pub ca_file: Option<PathBuf>,

    /// HTTP(S) proxy for every API connection.
    #[arg(long, value_name = "URL", global = true)]
    pub proxy: Option<String>,

    /// Deadline of one API request, in seconds.
    #[arg(long, value_name = "SECS", global = true, value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: Option<u64>,

    /// Attempts per read-only request, the first one included (1 = no retries).
    #[arg(long, value_name = "N", global = true, value_parser = clap::value_parser!(u32).range(1..))]
    pub retries: Option<u32>,

    /// Refuse downloads larger than this many bytes.
    #[arg(long, value_name = "BYTES", global = true)]
    pub max_download_size: Option<u64>,
}

/// `jbxd run`'s own flags.
#[derive(Debug, Clone, Default, Args)]
pub struct RunArgs {
    /// Create a new database even though data_dir already holds samples or reports. Without
    /// it, a missing database next to existing storage is refused (exit 78): the database
    /// that knew them is gone, so restore it from a backup instead if you can.
    #[arg(long)]
    pub new_database: bool,
}

/// `submission/new` parameters. The flags cover the common ones; `--param NAME=VALUE` reaches
/// every other parameter, including ones newer than this build.
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Submission parameters")]
pub struct SubmissionArgs {
    /// Analysis systems, comma-separated or repeated (default: the server's choice).
    #[arg(long, value_name = "NAMES", value_delimiter = ',')]
    pub systems: Vec<String>,

    /// Tags, comma-separated or repeated.
    #[arg(long, value_name = "TAGS", value_delimiter = ',')]
    pub tags: Vec<String>,

    /// Free-text comment, searchable later.
    #[arg(long, value_name = "TEXT")]
    pub comments: Option<String>,

    /// Analysis time in seconds.
    #[arg(long, value_name = "SECS")]
    pub analysis_time: Option<u64>,

    /// Let the sample reach the internet.
    #[arg(long)]
    pub internet_access: bool,

    /// Cut the sample off from the internet.
    #[arg(long, conflicts_with = "internet_access")]
    pub no_internet_access: bool,

    /// Reuse an existing report of the same sample or URL.
    #[arg(long)]
    pub report_cache: bool,

    /// Password of the submitted archive (server default: infected).
    #[arg(long, value_name = "PASSWORD")]
    pub archive_password: Option<String>,

    /// Password of the submitted Office or PDF document.
    #[arg(long, value_name = "PASSWORD")]
    pub document_password: Option<String>,

    /// No longer accepted: a password in the arguments is visible in `ps` and the shell's
    /// history. Kept only to say what to use instead (--encrypt-with-password-file).
    #[arg(long, value_name = "PASSWORD", hide = true)]
    pub encrypt_with_password: Option<String>,

    /// Encrypt every report of the analysis with the password in FILE (mode 0600, owned by
    /// you; surrounding whitespace trimmed). Downloads are then AES zips with that password.
    #[arg(long, value_name = "FILE")]
    pub encrypt_with_password_file: Option<PathBuf>,

    /// Browser for URL analyses.
    #[arg(long, value_name = "NAME")]
    pub browser: Option<String>,

    /// Delete the analysis after this many days (Cloud only).
    #[arg(long, value_name = "DAYS")]
    pub delete_after_days: Option<u64>,

    /// Any submission parameter as NAME=VALUE; repeatable. Known names are checked by type,
    /// unknown ones are sent as they are.
    #[arg(long = "param", value_name = "NAME=VALUE")]
    pub params: Vec<String>,
}

/// A flag value that clap accepted but that is unusable (a usage error, exit 2), naming the flag
/// or parameter.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadArgument(pub String);

impl From<crate::api::ParamError> for BadArgument {
    fn from(error: crate::api::ParamError) -> Self {
        Self(error.to_string())
    }
}

/// Why a report password may not be an argument, and what to do instead.
const PASSWORD_IN_ARGV: &str = "a password in the arguments is visible to every user in `ps` \
     and stays in the shell's history; write it to a file (chmod 600) and pass \
     --encrypt-with-password-file FILE";

impl SubmissionArgs {
    /// The report password from `--encrypt-with-password-file`, read with the key-file checks
    /// (mode 0600, owner, not empty); `None` when the flag is not given.
    pub fn encryption_password(
        &self,
    ) -> Result<Option<crate::api::Secret>, crate::config::ConfigError> {
        self.encrypt_with_password_file
            .as_deref()
            .map(|path| crate::config::secret_from_flag_file("report password", path))
            .transpose()
    }

    /// Builds the typed parameters; a bad value is a usage error naming the parameter.
    pub fn to_params(&self) -> Result<SubmissionParams, BadArgument> {
        if self.encrypt_with_password.is_some() {
            return Err(BadArgument(format!(
                "--encrypt-with-password PASSWORD is no longer accepted: {PASSWORD_IN_ARGV}"
            )));
        }
        let mut params = SubmissionParams::new();
        params.systems = self
            .systems
            .iter()
            .filter(|s| !s.is_empty())
            .cloned()
            .collect();
        params.tags = self
            .tags
            .iter()
            .filter(|s| !s.is_empty())
            .cloned()
            .collect();
        let texts = [
            (Param::Comments, &self.comments),
            (Param::ArchivePassword, &self.archive_password),
            (Param::DocumentPassword, &self.document_password),
            (Param::Browser, &self.browser),
        ];
        for (param, value) in texts {
            if let Some(value) = value {
                params.set_param(param, value)?;
            }
        }
        let numbers = [
            (Param::AnalysisTime, self.analysis_time),
            (Param::DeleteAfterDays, self.delete_after_days),
        ];
        for (param, value) in numbers {
            if let Some(value) = value {
                params.set_param(param, &value.to_string())?;
            }
        }
        let flags = [
            (self.internet_access, Param::InternetAccess, true),
            (self.no_internet_access, Param::InternetAccess, false),
            (self.report_cache, Param::ReportCache, true),
        ];
        for (given, param, value) in flags {
            if given {
                params.set_param_bool(param, value)?;
            }
        }
        // Last, so that an explicit `--param` can refine what a flag set.
        for assignment in &self.params {
            if assignment
                .split_once('=')
                .is_some_and(|(name, _)| name.trim() == Param::EncryptWithPassword.name())
            {
                return Err(BadArgument(format!(
                    "--param {}=… is not accepted: {PASSWORD_IN_ARGV}",
                    Param::EncryptWithPassword.name()
                )));
            }
            params
                .set_assignment(assignment)
                .map_err(|e| BadArgument(format!("--param {assignment}: {e}")))?;
        }
        Ok(params)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ParamValue;

    #[test]
    fn flags_and_params_become_typed_submission_parameters() {
        let args = SubmissionArgs {
            systems: vec!["w10x64".into(), "w7".into()],
            analysis_time: Some(60),
            no_internet_access: true,
            params: vec!["ssl-inspection=yes".into(), "brand-new=x".into()],
            ..Default::default()
        };
        let params = args.to_params().unwrap();
        assert_eq!(params.systems, vec!["w10x64", "w7"]);
        assert_eq!(params.get("analysis-time"), Some(&ParamValue::Int(60)));
        assert_eq!(
            params.get("internet-access"),
            Some(&ParamValue::Bool(false))
        );
        assert_eq!(params.get("ssl-inspection"), Some(&ParamValue::Bool(true)));
        assert!(
            params
                .to_form()
                .contains(&("brand-new".to_owned(), "x".to_owned()))
        );
    }

    #[test]
    fn a_report_password_in_the_arguments_is_a_usage_error_pointing_to_the_file_flag() {
        for args in [
            SubmissionArgs {
                encrypt_with_password: Some("hunter2".into()),
                ..Default::default()
            },
            SubmissionArgs {
                params: vec!["encrypt-with-password=hunter2".into()],
                ..Default::default()
            },
        ] {
            let Err(BadArgument(message)) = args.to_params() else {
                panic!("a password in argv was accepted");
            };
            assert!(
                message.contains("--encrypt-with-password-file FILE"),
                "{message}"
            );
            assert!(!message.contains("hunter2"), "{message}");
        }
    }

    #[test]
    fn a_bad_param_value_is_a_usage_error_naming_the_parameter() {
        let args = SubmissionArgs {
            params: vec!["analysis-time=soon".into()],
            ..Default::default()
        };
        match args.to_params() {
            Err(BadArgument(message)) => assert!(message.contains("analysis-time")),
            other => panic!("expected a usage error, got {other:?}"),
        }
    }
}
