//! Helpers shared by the integration-test modules that run the real `jbxd` binary (`use
//! crate::common;`); each uses a different subset.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// Variables that would change what the binary does if the host happened to set them.
pub const HOST_ENV: &[&str] = &[
    "JBX_API_URL",
    "JBX_API_KEY",
    "JBX_ACCEPT_TAC",
    "JBXD_LOG",
    "JBXD_SIM_API_KEY",
    "RUST_LOG",
    "CREDENTIALS_DIRECTORY",
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "no_proxy",
];

/// The binary under test, with the host's variables above removed.
pub fn jbxd_command() -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_jbxd"));
    for name in HOST_ENV {
        command.env_remove(name);
    }
    command
}

/// Writes `dir/jbxd.toml` with these directories (and `extra` lines) and returns its path.
pub fn write_config(dir: &Path, data_dir: &Path, drop_dir: &Path, extra: &str) -> PathBuf {
    let path = dir.join("jbxd.toml");
    std::fs::write(
        &path,
        format!(
            "data_dir = {:?}\ndrop_dir = {:?}\n{extra}",
            data_dir.to_str().unwrap(),
            drop_dir.to_str().unwrap()
        ),
    )
    .unwrap();
    path
}
