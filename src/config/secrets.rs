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
//! The vault command runs with stdin closed, stdout and stderr piped, in its own process
//! group, with a clean environment ([`CHILD_ENV`], [`CHILD_ENV_PREFIXES`] and
//! `secrets.command_env`), and is killed (the whole group) after `secrets.command_timeout_secs`.
//! Its first stdout line is the secret; on failure the message shows its exit status and the
//! first line of its stderr (one line, capped), never its stdout.

use std::fmt;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use zeroize::Zeroizing;

use super::error::ConfigError;
use super::layers::Env;
use crate::api::Secret;

/// Variables a vault command gets from jbxd's environment (when they are set): what a login
/// shell needs, and what `pass`, `gopass`, `gpg`, `secret-tool` (the session bus), `op`
/// (1Password), `bw` (Bitwarden) and `vault` (HashiCorp) read. Nothing else: in particular no
/// `JBX_*`/`JBXD_*` variable, so the API key in `JBX_API_KEY` never reaches a child.
pub const CHILD_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "GNUPGHOME",
    "GPG_AGENT_INFO",
    "PASSWORD_STORE_DIR",
    "PASSWORD_STORE_GPG_OPTS",
    "PASSWORD_STORE_UMASK",
    "GOPASS_HOMEDIR",
    "GOPASS_CONFIG",
    "XDG_RUNTIME_DIR",
    "XDG_CONFIG_HOME",
    "XDG_DATA_HOME",
    "DBUS_SESSION_BUS_ADDRESS",
    "BW_SESSION",
    "BITWARDENCLI_APPDATA_DIR",
];
/// Prefixes of further variables vault commands read: `OP_SERVICE_ACCOUNT_TOKEN`,
/// `OP_SESSION_<account>`, `VAULT_ADDR`, `VAULT_TOKEN`, `VAULT_CACERT`, ….
pub const CHILD_ENV_PREFIXES: &[&str] = &["OP_", "VAULT_"];
/// The longest first line of stderr shown in an error, in characters.
const STDERR_SHOWN: usize = 200;
/// The most stdout read from a vault command: a secret is one short line.
const STDOUT_MAX: usize = 64 * 1024;
/// The most stderr read.
const STDERR_MAX: usize = 16 * 1024;

/// How vault commands are run (`[secrets]`).
#[derive(Debug, Clone)]
pub struct CommandOptions {
    pub timeout: Duration,
    /// `secrets.command_env`: further variable names passed through.
    pub extra_env: Vec<String>,
}

impl Default for CommandOptions {
    /// `[secrets]`'s defaults: 10 s, no further variables.
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            extra_env: Vec::new(),
        }
    }
}

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
    fn error(&self, message: String) -> ConfigError {
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
            let secret = run_command(keys, argv, env, options)?;
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

/// The program of a command as shown: its file name only (a path may name a user's home).
fn program_name(argv: &[String]) -> String {
    let program = argv.first().map(String::as_str).unwrap_or_default();
    let name = Path::new(program)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| program.to_owned());
    crate::text::one_line(&name, 64)
}

/// Reads a secret file after checking it cannot be read or changed by others; the value is
/// its content with surrounding whitespace trimmed, and may not be empty.
pub(super) fn read_secret_file(keys: &SecretKeys<'_>, path: &Path) -> Result<Secret, ConfigError> {
    let shown = path.display();
    let cannot_read = |e: std::io::Error| keys.error(format!("cannot read {shown}: {e}"));
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

/// Runs a vault command (no shell) and returns the first line of its stdout.
pub fn run_command(
    keys: &SecretKeys<'_>,
    argv: &[String],
    env: &Env,
    options: &CommandOptions,
) -> Result<Secret, ConfigError> {
    let what = format!("{} ({})", keys.command_key, program_name(argv));
    let Some((program, args)) = argv.split_first() else {
        return Err(keys.error(format!("{} is an empty array", keys.command_key)));
    };
    let mut command = Command::new(program);
    command
        .args(args)
        .env_clear()
        .envs(child_env(env, &options.extra_env))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so that a timeout kills what it started too (a `sh` running
        // `gpg`), and no reader is left waiting on a pipe a grandchild holds.
        .process_group(0);
    let mut child = command
        .spawn()
        .map_err(|e| keys.error(format!("cannot run {what}: {e}")))?;
    let stdout = read_in_background(child.stdout.take(), STDOUT_MAX);
    let stderr = read_in_background(child.stderr.take(), STDERR_MAX);
    let status = match wait_with_timeout(&mut child, options.timeout) {
        Ok(Some(status)) => status,
        Ok(None) => {
            kill_group(&mut child);
            return Err(keys.error(format!(
                "{what} did not finish within {} s (secrets.command_timeout_secs); it was killed",
                options.timeout.as_secs_f64()
            )));
        }
        Err(e) => {
            kill_group(&mut child);
            return Err(keys.error(format!("cannot wait for {what}: {e}")));
        }
    };
    // The command is done; a grandchild still holding the pipes is ended with its group.
    kill_group(&mut child);
    let out = stdout.join().unwrap_or_default();
    let err = stderr.join().unwrap_or_default();
    if !status.success() {
        let code = match status.code() {
            Some(code) => format!("exit status {code}"),
            None => "killed by a signal".to_owned(),
        };
        return Err(keys.error(format!("{what} failed ({code}){}", stderr_line(&err))));
    }
    let first = out.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = std::str::from_utf8(first)
        .map_err(|_| keys.error(format!("{what} printed a first line that is not UTF-8")))?
        .trim();
    if line.is_empty() {
        return Err(keys.error(format!(
            "{what} printed nothing on its first line{}",
            stderr_line(&err)
        )));
    }
    Ok(Secret::new(line.to_owned()))
}

/// `: <first non-empty stderr line>`, escaped and capped, or nothing.
fn stderr_line(err: &[u8]) -> String {
    let text = String::from_utf8_lossy(err);
    match text.lines().map(str::trim).find(|l| !l.is_empty()) {
        Some(line) => format!(": {}", crate::text::one_line(line, STDERR_SHOWN)),
        None => String::new(),
    }
}

/// The child's environment: the listed variables that are set, nothing else.
fn child_env<'a>(env: &'a Env, extra: &'a [String]) -> impl Iterator<Item = (&'a str, &'a str)> {
    env.iter().filter(move |(name, _)| {
        !name.starts_with("JBX")
            && (CHILD_ENV.contains(name)
                || CHILD_ENV_PREFIXES.iter().any(|p| name.starts_with(p))
                || extra.iter().any(|e| e == name))
    })
}

/// Reads up to `max` bytes of a pipe on a thread, into a buffer zeroed on drop; the rest is
/// drained and dropped so the child never blocks on a full pipe.
fn read_in_background<R: Read + Send + 'static>(
    pipe: Option<R>,
    max: usize,
) -> std::thread::JoinHandle<Zeroizing<Vec<u8>>> {
    std::thread::spawn(move || {
        let mut buf = Zeroizing::new(vec![0u8; max]);
        let mut len = 0;
        let Some(mut pipe) = pipe else {
            return Zeroizing::new(Vec::new());
        };
        loop {
            if len == max {
                let mut sink = Zeroizing::new([0u8; 4096]);
                while matches!(pipe.read(&mut sink[..]), Ok(n) if n > 0) {}
                break;
            }
            match pipe.read(&mut buf[len..]) {
                Ok(0) | Err(_) => break,
                Ok(n) => len += n,
            }
        }
        buf.truncate(len);
        buf
    })
}

fn wait_with_timeout(
    child: &mut Child,
    timeout: Duration,
) -> std::io::Result<Option<std::process::ExitStatus>> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// SIGKILL to the child's process group (it leads it), then reaps the child.
fn kill_group(child: &mut Child) {
    if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    }
    let _ = child.kill();
    let _ = child.wait();
}

#[cfg(test)]
mod tests {
    use super::*;

    const VAULT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/fake-vault.sh");

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

    fn argv(args: &[&str]) -> Vec<String> {
        std::iter::once(VAULT)
            .chain(args.iter().copied())
            .map(str::to_owned)
            .collect()
    }

    fn env() -> Env {
        Env::from_pairs([
            ("PATH", "/usr/bin:/bin"),
            ("JBX_API_KEY", "JBXD-SENTINEL-env-key"),
            ("PASSWORD_STORE_DIR", "/store"),
            ("VAULT_ADDR", "https://vault.example"),
            ("OTHER", "not-for-children"),
        ])
    }

    fn run(args: &[&str], timeout: Duration) -> Result<Secret, ConfigError> {
        let argv = argv(args);
        let options = CommandOptions {
            timeout,
            extra_env: Vec::new(),
        };
        run_command(&keys(&argv), &argv, &env(), &options)
    }

    #[test]
    fn the_first_stdout_line_of_a_vault_command_is_the_secret() {
        let secret = run(&["key", "s3cret"], Duration::from_secs(10)).unwrap();
        assert_eq!(secret.expose_secret(), "s3cret");
    }

    #[test]
    fn a_failing_command_names_the_key_program_and_stderr_but_never_stdout() {
        let text = run(&["fail"], Duration::from_secs(10))
            .unwrap_err()
            .to_string();
        assert!(
            text.starts_with(
                "report password: reports.password_command (fake-vault.sh) failed (exit status 2)"
            ),
            "{text}"
        );
        assert!(
            text.contains("gpg: decryption failed: No secret key"),
            "{text}"
        );
        assert!(
            !text.contains("second stderr line"),
            "one line only: {text}"
        );
        assert!(!text.contains("SENTINEL"), "stdout shown: {text}");
    }

    #[test]
    fn a_command_that_hangs_is_killed_with_what_it_started_after_the_timeout() {
        let started = Instant::now();
        let text = run(&["hang"], Duration::from_millis(300))
            .unwrap_err()
            .to_string();
        assert!(
            text.contains("did not finish within 0 s") || text.contains("did not finish within"),
            "{text}"
        );
        assert!(text.contains("it was killed"), "{text}");
        // The child `sleep 30` held the pipes: without the group kill this would wait for it.
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn a_command_that_prints_nothing_is_an_error_naming_the_key() {
        let text = run(&["empty"], Duration::from_secs(10))
            .unwrap_err()
            .to_string();
        assert!(
            text.contains("reports.password_command (fake-vault.sh) printed nothing"),
            "{text}"
        );
    }

    #[test]
    fn a_command_gets_a_clean_environment_and_a_closed_stdin() {
        let seen = run(&["env"], Duration::from_secs(10)).unwrap();
        assert_eq!(
            seen.expose_secret(),
            "jbx=unset|store=/store|vault=https://vault.example|other=unset"
        );
        let stdin = run(&["stdin"], Duration::from_secs(10)).unwrap();
        assert_eq!(stdin.expose_secret(), "stdin-closed");
    }

    #[test]
    fn a_program_that_does_not_exist_is_named() {
        let argv = vec!["/nonexistent/vault-tool".to_owned()];
        let text = run_command(&keys(&argv), &argv, &env(), &CommandOptions::default())
            .unwrap_err()
            .to_string();
        assert!(
            text.contains("cannot run reports.password_command (vault-tool)"),
            "{text}"
        );
    }

    #[test]
    fn a_rotated_secret_is_what_the_next_run_prints() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("current");
        std::fs::write(&file, "first\n").unwrap();
        let path = file.to_str().unwrap();
        assert_eq!(
            run(&["rotate", path], Duration::from_secs(10))
                .unwrap()
                .expose_secret(),
            "first"
        );
        std::fs::write(&file, "second\n").unwrap();
        assert_eq!(
            run(&["rotate", path], Duration::from_secs(10))
                .unwrap()
                .expose_secret(),
            "second"
        );
    }

    #[test]
    fn only_one_explicit_source_and_a_program_are_accepted() {
        let empty: Vec<String> = Vec::new();
        assert_eq!(
            check_keys(&keys(&empty)).unwrap_err().0,
            "reports.password_command"
        );
        let argv = argv(&["key", "x"]);
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
