//! Running a vault command (`*_command`, `secrets.rs`): the argv array without a shell, stdin
//! closed, stdout and stderr piped, in its own process group, with a clean environment
//! ([`CHILD_ENV`], [`CHILD_ENV_PREFIXES`] and `secrets.command_env`); killed, with everything
//! it started, after `secrets.command_timeout_secs`. Its first stdout line is the secret; on
//! failure the message shows its exit status and the first line of its stderr (one line,
//! capped), never its stdout. Output is read into buffers zeroed on drop.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use zeroize::Zeroizing;

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

/// The program of a command as shown: its file name only (a path may name a user's home).
pub(super) fn program_name(argv: &[String]) -> String {
    let program = argv.first().map(String::as_str).unwrap_or_default();
    let name = Path::new(program)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| program.to_owned());
    crate::text::one_line(&name, 64)
}

/// Runs a vault command (no shell) and returns the first line of its stdout. `what` names it
/// in the messages (`api.key_command (pass)`); `Err` is the whole message.
pub fn run_command(
    what: &str,
    argv: &[String],
    env: &Env,
    options: &CommandOptions,
) -> Result<Secret, String> {
    let Some((program, args)) = argv.split_first() else {
        return Err(format!("{what} is an empty array"));
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
        .map_err(|e| format!("cannot run {what}: {e}"))?;
    let stdout = read_in_background(child.stdout.take(), STDOUT_MAX);
    let stderr = read_in_background(child.stderr.take(), STDERR_MAX);
    let status = match wait_with_timeout(&mut child, options.timeout) {
        Ok(Some(status)) => status,
        Ok(None) => {
            kill_group(&mut child);
            return Err(format!(
                "{what} did not finish within {} s (secrets.command_timeout_secs); it was killed",
                options.timeout.as_secs_f64()
            ));
        }
        Err(e) => {
            kill_group(&mut child);
            return Err(format!("cannot wait for {what}: {e}"));
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
        return Err(format!("{what} failed ({code}){}", stderr_line(&err)));
    }
    let first = out.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = std::str::from_utf8(first)
        .map_err(|_| format!("{what} printed a first line that is not UTF-8"))?
        .trim();
    if line.is_empty() {
        return Err(format!(
            "{what} printed nothing on its first line{}",
            stderr_line(&err)
        ));
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

    const WHAT: &str = "reports.password_command (fake-vault.sh)";

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

    fn run(args: &[&str], timeout: Duration) -> Result<Secret, String> {
        let argv = argv(args);
        let options = CommandOptions {
            timeout,
            extra_env: Vec::new(),
        };
        run_command(WHAT, &argv, &env(), &options)
    }

    #[test]
    fn the_first_stdout_line_of_a_vault_command_is_the_secret() {
        let secret = run(&["key", "s3cret"], Duration::from_secs(10)).unwrap();
        assert_eq!(secret.expose_secret(), "s3cret");
    }

    #[test]
    fn a_failing_command_names_the_key_program_and_stderr_but_never_stdout() {
        let text = run(&["fail"], Duration::from_secs(10)).unwrap_err();
        assert!(
            text.starts_with("reports.password_command (fake-vault.sh) failed (exit status 2)"),
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
        let text = run(&["hang"], Duration::from_millis(300)).unwrap_err();
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
        let text = run(&["empty"], Duration::from_secs(10)).unwrap_err();
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
        let text = run_command(
            "reports.password_command (vault-tool)",
            &argv,
            &env(),
            &CommandOptions::default(),
        )
        .unwrap_err();
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
}
