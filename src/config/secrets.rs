//! Where a secret comes from: the one reusable shape of every secret jbxd handles (the API
//! key, the report password, later webhook secrets), and the resolver that reads it.
//!
//! A secret named `<prefix>` (`api.key`, `reports.password`) may come from
//!
//! * `<prefix>_file`: a file that passes the key-file checks (RELIABILITY.md cases 94 and 95):
//!   a regular file (a symlink is judged by its target), not readable or writable by group or
//!   others (the message says `chmod 600`), owned by this user or root;
//! * `<prefix>_credential`: a systemd credential, `$CREDENTIALS_DIRECTORY/<name>`
//!   (`LoadCredential=` / `LoadCredentialEncrypted=`), read with the same checks;
//! * `<prefix>_command`: a vault command, an argv array run without a shell ([`run_command`]);
//! * an environment variable, where one exists today (`JBX_API_KEY` for the API key only).
//!
//! At most one of the first three may be configured. A default credential (`jbx_api_key`)
//! that is present wins over them, as it always has: the unit's `LoadCredential=` is the
//! deployment's word. The environment variable comes last. The winner is a [`SecretSource`]:
//! what `config check` and the pause message name (the path, the credential, the program,
//! the variable), never the value.
//!
//! How a vault command is run (no shell, stdin closed, a clean environment, a timeout) is
//! `vault_command.rs`'s.

use std::fmt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use super::error::ConfigError;
use super::layers::Env;
pub use super::vault_command::CommandOptions;
use super::vault_command::{program_name, run_command};
use crate::api::Secret;

/// The configured sources of one secret: the reusable shape behind `<prefix>_file`,
/// `<prefix>_credential` and `<prefix>_command`.
#[derive(Debug, Clone, Copy)]
pub struct SecretKeys<'a> {
    /// What it is, for messages: `API key`, `report password`.
    pub label: &'static str,
    /// `<prefix>_file`'s full key, e.g. `api.key_file`.
    pub file_key: &'static str,
    pub credential_key: &'static str,
    pub command_key: &'static str,
    pub file: Option<&'a Path>,
    pub credential: Option<&'a str>,
    pub command: Option<&'a [String]>,
    /// A credential that wins when present even though no key names it (`jbx_api_key`).
    pub default_credential: Option<&'static str>,
    /// The environment variable tried last, where one exists.
    pub env: Option<&'static str>,
}

/// Where a secret came from (shown by `jbxd config check` and in the rejected-key pause,
/// instead of the value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// A command-line flag naming a file (`--api-key-file FILE`).
    Flag { flag: &'static str, path: PathBuf },
    /// `<prefix>_file`.
    File { key: &'static str, path: PathBuf },
    /// `$CREDENTIALS_DIRECTORY/<name>`.
    Credential { name: String, path: PathBuf },
    /// `<prefix>_command`: only the program is kept, never its arguments.
    Command { key: &'static str, program: String },
    /// An environment variable.
    Env(&'static str),
}

impl fmt::Display for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Flag { flag, path } => write!(f, "{flag} {}", path.display()),
            Self::File { key, path } => write!(f, "{key} {}", path.display()),
            Self::Credential { path, .. } => write!(f, "systemd credential {}", path.display()),
            Self::Command { key, program } => write!(f, "{key} ({program})"),
            Self::Env(name) => write!(f, "environment variable {name}"),
        }
    }
}

impl SecretSource {
    /// What an operator updates to change the secret, for the rejected-key pause.
    pub fn what_to_update(&self) -> String {
        match self {
            Self::Flag { path, .. } | Self::File { path, .. } => path.display().to_string(),
            Self::Credential { name, path } => format!(
                "the systemd credential {name} ({}; systemd copies it at start: restart the \
                 service after changing it)",
                path.display()
            ),
            Self::Command { key, program } => {
                format!("the secret that {key} ({program}) prints")
            }
            Self::Env(name) => format!("{name} (the environment needs a restart)"),
        }
    }
}

impl SecretKeys<'_> {
    pub(super) fn error(&self, message: String) -> ConfigError {
        if self.label == "API key" {
            ConfigError::ApiKey(message)
        } else {
            ConfigError::Secret {
                label: self.label,
                message,
            }
        }
    }

    /// The configured explicit sources, checked to be at most one.
    fn explicit(&self) -> Result<Option<Explicit<'_>>, ConfigError> {
        let mut set = Vec::new();
        if let Some(path) = self.file {
            set.push((self.file_key, Explicit::File(path)));
        }
        if let Some(name) = self.credential {
            set.push((self.credential_key, Explicit::Credential(name)));
        }
        if let Some(argv) = self.command {
            set.push((self.command_key, Explicit::Command(argv)));
        }
        if set.len() > 1 {
            let keys: Vec<&str> = set.iter().map(|(k, _)| *k).collect();
            return Err(self.error(format!(
                "{} are all set; set only one of them",
                keys.join(" and ")
            )));
        }
        Ok(set.pop().map(|(_, e)| e))
    }
}

enum Explicit<'a> {
    File(&'a Path),
    Credential(&'a str),
    Command(&'a [String]),
}

/// Checks what can be checked without reading anything: at most one source, a command with
/// a program. `Err` is (key, why) for `validate.rs`.
pub(super) fn check_keys(keys: &SecretKeys<'_>) -> Result<(), (&'static str, String)> {
    let explicit = [
        keys.file.is_some(),
        keys.credential.is_some(),
        keys.command.is_some(),
    ];
    if explicit.iter().filter(|set| **set).count() > 1 {
        return Err((
            keys.file_key,
            format!(
                "set only one of {}, {} and {}",
                keys.file_key, keys.credential_key, keys.command_key
            ),
        ));
    }
    if let Some(argv) = keys.command
        && argv.first().is_none_or(|p| p.trim().is_empty())
    {
        return Err((
            keys.command_key,
            "must name a program: an argv array such as [\"pass\", \"show\", \"joe/api\"] \
             (it is run without a shell)"
                .into(),
        ));
    }
    if let Some(name) = keys.credential
        && (name.is_empty() || name.contains('/') || name == "." || name == "..")
    {
        return Err((
            keys.credential_key,
            format!("`{name}` is not a credential name (one path component)"),
        ));
    }
    Ok(())
}

/// Finds the secret where `keys` say: the default credential when present, else the one
/// explicit source, else the environment variable. `Ok(None)`: none is configured.
pub fn resolve_secret(
    keys: &SecretKeys<'_>,
    env: &Env,
    options: &CommandOptions,
) -> Result<Option<(Secret, SecretSource)>, ConfigError> {
    if let Some(name) = keys.default_credential
        && let Some(dir) = env.get("CREDENTIALS_DIRECTORY")
    {
        let path = Path::new(dir).join(name);
        if path.exists() {
            let secret = read_secret_file(keys, &path)?;
            let source = SecretSource::Credential {
                name: name.to_owned(),
                path,
            };
            return Ok(Some((secret, source)));
        }
    }
    match keys.explicit()? {
        Some(Explicit::File(path)) => {
            let secret = read_secret_file(keys, path)?;
            let source = SecretSource::File {
                key: keys.file_key,
                path: path.to_owned(),
            };
            return Ok(Some((secret, source)));
        }
        Some(Explicit::Credential(name)) => {
            let Some(dir) = env.get("CREDENTIALS_DIRECTORY") else {
                return Err(keys.error(format!(
                    "{} = {name:?}, but $CREDENTIALS_DIRECTORY is not set (add \
                     LoadCredential={name}:… or LoadCredentialEncrypted={name}:… to the unit)",
                    keys.credential_key
                )));
            };
            let path = Path::new(dir).join(name);
            let secret = read_secret_file(keys, &path)?;
            let source = SecretSource::Credential {
                name: name.to_owned(),
                path,
            };
            return Ok(Some((secret, source)));
        }
        Some(Explicit::Command(argv)) => {
            let what = format!("{} ({})", keys.command_key, program_name(argv));
            let secret = run_command(&what, argv, env, options).map_err(|m| keys.error(m))?;
            let source = SecretSource::Command {
                key: keys.command_key,
                program: program_name(argv),
            };
            return Ok(Some((secret, source)));
        }
        None => {}
    }
    if let Some(name) = keys.env
        && let Some(raw) = env.get(name)
    {
        if raw.trim().is_empty() {
            return Err(keys.error(format!(
                "the {} in environment variable {name} is empty",
                keys.label
            )));
        }
        return Ok(Some((Secret::new(raw.to_owned()), SecretSource::Env(name))));
    }
    Ok(None)
}

/// Reads a secret file after checking it cannot be read or changed by others; the value is
/// its content with surrounding whitespace trimmed, and may not be empty.
pub(super) fn read_secret_file(keys: &SecretKeys<'_>, path: &Path) -> Result<Secret, ConfigError> {
    let shown = path.display();
    let noun = if keys.label == "API key" {
        "key"
    } else {
        keys.label
    };
    let cannot_read =
        |e: std::io::Error| keys.error(format!("cannot read the {noun} file {shown}: {e}"));
    let meta = std::fs::symlink_metadata(path).map_err(cannot_read)?;
    // A symlink is judged by its target (systemd credentials and admins use them); the target
    // must be a regular file.
    let meta = if meta.file_type().is_symlink() {
        std::fs::metadata(path).map_err(cannot_read)?
    } else {
        meta
    };
    if !meta.is_file() {
        return Err(keys.error(format!("{shown} is not a regular file")));
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        let what = match (mode & 0o044 != 0, mode & 0o022 != 0) {
            (true, true) => "readable and writable by group/others",
            (true, false) => "readable by group/others",
            (false, true) => "writable by group/others",
            (false, false) => "accessible by group/others",
        };
        return Err(keys.error(format!(
            "{shown} is {what} (mode {mode:04o}); run chmod 600 {shown}"
        )));
    }
    let euid = rustix::process::geteuid().as_raw();
    if meta.uid() != euid && meta.uid() != 0 {
        return Err(keys.error(format!(
            "{shown} is owned by uid {}, not by this user (uid {euid}) or root; run chown",
            meta.uid()
        )));
    }
    let raw = Zeroizing::new(std::fs::read(path).map_err(cannot_read)?);
    let text = std::str::from_utf8(&raw)
        .map_err(|_| keys.error(format!("{shown} is not UTF-8 text")))?
        .trim();
    if text.is_empty() {
        return Err(keys.error(format!("the {} in {shown} is empty", keys.label)));
    }
    Ok(Secret::new(text.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(argv: &[String]) -> SecretKeys<'_> {
        SecretKeys {
            label: "report password",
            file_key: "reports.password_file",
            credential_key: "reports.password_credential",
            command_key: "reports.password_command",
            file: None,
            credential: None,
            command: Some(argv),
            default_credential: None,
            env: None,
        }
    }

    #[test]
    fn only_one_explicit_source_and_a_program_are_accepted() {
        let empty: Vec<String> = Vec::new();
        assert_eq!(
            check_keys(&keys(&empty)).unwrap_err().0,
            "reports.password_command"
        );
        let argv = vec!["pass".to_owned(), "show".to_owned()];
        let both = SecretKeys {
            file: Some(Path::new("/etc/jbxd/pw")),
            ..keys(&argv)
        };
        let (key, why) = check_keys(&both).unwrap_err();
        assert_eq!(key, "reports.password_file");
        assert!(why.contains("set only one of"), "{why}");
        let bad_name = SecretKeys {
            command: None,
            credential: Some("../x"),
            ..keys(&argv)
        };
        assert_eq!(
            check_keys(&bad_name).unwrap_err().0,
            "reports.password_credential"
        );
    }
}
