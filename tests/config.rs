//! Configuration loading: layering, the official client's variables, errors that name the key
//! and its source, API key sources and their checks, and the redacted `config check` output
//! (catalog group F).
//!
//! Every test runs inside `figment::Jail` (a temporary working directory and an environment
//! restored afterwards, one jail at a time), because the environment is process-wide.

// `Jail::expect_with` fixes the closure's error type to `figment::Error`, which is large.
#![allow(clippy::result_large_err)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use figment::Jail;
use jbxd::config::{
    Config, ConfigError, KeySource, LoadOptions, client_settings, load, load_config, redacted_toml,
};

/// The sentinel key of the test suite (the same value as `jbxd::testing::TEST_API_KEY`): any
/// output containing it is a leak.
const SENTINEL: &str = "JBXD-SENTINEL-7f3c9a4e-never-log-me";

fn file_opts(path: PathBuf) -> LoadOptions {
    LoadOptions {
        config_file: Some(path),
        overrides: vec![],
    }
}

/// A minimal valid file rooted in the jail, plus `extra` appended.
fn write_config(jail: &Jail, extra: &str) -> PathBuf {
    let dir = jail.directory();
    let text = format!(
        "data_dir = \"{}\"\ndrop_dir = \"{}\"\n{extra}",
        dir.join("data").display(),
        dir.join("drop").display()
    );
    jail.create_file("jbxd.toml", &text).unwrap();
    dir.join("jbxd.toml")
}

fn write_key(jail: &Jail, name: &str, contents: &str, mode: u32) -> PathBuf {
    jail.create_file(name, contents).unwrap();
    let path = jail.directory().join(name);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path
}

fn error_text(result: Result<impl std::fmt::Debug, ConfigError>) -> String {
    let error = result.expect_err("loading must fail");
    assert_eq!(error.exit_code(), 78);
    error.to_string()
}

#[test]
fn layers_apply_in_order_defaults_file_env_flags() {
    Jail::expect_with(|jail| {
        jail.clear_env();
        let path = write_config(
            jail,
            "[poll]\nmax_interval_secs = 300\nmin_interval_secs = 7\n",
        );
        let loaded = load_config(&file_opts(path.clone())).unwrap();
        assert_eq!(loaded.config.poll.max_interval_secs, 300);
        assert_eq!(loaded.config.poll.min_interval_secs, 7);
        assert_eq!(
            loaded.config.poll.expected_analysis_secs,
            Config::default().poll.expected_analysis_secs
        );
        assert!(loaded.origins["poll.max_interval_secs"].contains("jbxd.toml, line"));

        jail.set_env("JBXD_POLL__MAX_INTERVAL_SECS", "200");
        let loaded = load_config(&file_opts(path.clone())).unwrap();
        assert_eq!(loaded.config.poll.max_interval_secs, 200);
        assert_eq!(loaded.config.poll.min_interval_secs, 7);
        assert_eq!(
            loaded.origins["poll.max_interval_secs"],
            "environment variable JBXD_POLL__MAX_INTERVAL_SECS"
        );

        let mut opts = file_opts(path);
        opts.overrides
            .push(("poll.max_interval_secs".into(), "100".into()));
        let loaded = load_config(&opts).unwrap();
        assert_eq!(loaded.config.poll.max_interval_secs, 100);
        assert_eq!(
            loaded.origins["poll.max_interval_secs"],
            "command-line override --set poll.max_interval_secs"
        );
        Ok(())
    });
}

#[test]
fn env_values_keep_the_type_of_their_key() {
    Jail::expect_with(|jail| {
        jail.clear_env();
        let path = write_config(jail, "");
        // All digits: figment alone would turn this into a number and fail on a string key.
        jail.set_env("JBXD_SUBMISSION__COMMENTS", "12345");
        jail.set_env("JBXD_REPORTS__TYPES", "html,xml");
        jail.set_env("JBXD_DEDUP__SAMPLES", "false");
        jail.set_env("JBXD_LOG__FORMAT", "json");
        jail.set_env("JBXD_SUBMISSION__PARAMS__INTERNET_ACCESS", "1");
        // JBXD_LOG is the log filter, not a section.
        jail.set_env("JBXD_LOG", "debug");
        let loaded = load_config(&file_opts(path)).unwrap();
        let c = &loaded.config;
        assert_eq!(c.submission.comments.as_deref(), Some("12345"));
        assert_eq!(c.reports.types, vec!["html", "xml"]);
        assert!(!c.dedup.samples);
        assert_eq!(c.log.format, jbxd::config::LogFormat::Json);
        assert_eq!(
            c.submission
                .params
                .get("internet_access")
                .map(String::as_str),
            Some("1")
        );
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
        Ok(())
    });
}

#[test]
fn official_client_variables_set_url_and_terms_acceptance() {
    Jail::expect_with(|jail| {
        jail.clear_env();
        let path = write_config(jail, "");
        jail.set_env(
            "JBX_API_URL",
            "https://joe.example/joesandbox/index.php/api",
        );
        jail.set_env("JBX_ACCEPT_TAC", "1");
        let c = load_config(&file_opts(path.clone())).unwrap().config;
        assert_eq!(c.api.url, "https://joe.example/joesandbox/index.php/api");
        assert!(c.api.accept_tac);

        // Like jbxapi, only "1" means accepted.
        jail.set_env("JBX_ACCEPT_TAC", "true");
        assert!(
            !load_config(&file_opts(path.clone()))
                .unwrap()
                .config
                .api
                .accept_tac
        );

        // The daemon's own name wins over the official client's.
        jail.set_env("JBXD_API__URL", "https://other.example");
        let c = load_config(&file_opts(path)).unwrap().config;
        assert_eq!(c.api.url, "https://other.example");
        Ok(())
    });
}

#[test]
fn unknown_jbxd_variables_are_warned_about_not_fatal() {
    Jail::expect_with(|jail| {
        jail.clear_env();
        let path = write_config(jail, "");
        jail.set_env("JBXD_POLL__MAX_INTERVALL", "5");
        // The simulator's own variables are not configuration and not warned about.
        jail.set_env("JBXD_SIM_API_KEY", "sim-key");
        let loaded = load_config(&file_opts(path)).unwrap();
        assert_eq!(loaded.warnings.len(), 1, "{:?}", loaded.warnings);
        assert!(
            loaded
                .warnings
                .iter()
                .any(|w| w.contains("JBXD_POLL__MAX_INTERVALL")),
            "{:?}",
            loaded.warnings
        );
        Ok(())
    });
}

#[test]
fn case_96_unknown_key_in_the_file_names_key_file_and_line() {
    Jail::expect_with(|jail| {
        jail.clear_env();
        let path = write_config(jail, "\n[api]\nurll = \"https://x.example\"\n");
        let text = error_text(load_config(&file_opts(path.clone())));
        assert!(text.contains("`api.urll`"), "{text}");
        assert!(text.contains(&path.display().to_string()), "{text}");
        assert!(text.contains("line 5"), "{text}");
        assert!(text.contains("unknown key"), "{text}");

        let path = write_config(jail, "[bogus]\nx = 1\n");
        let text = error_text(load_config(&file_opts(path)));
        assert!(text.contains("`bogus`"), "{text}");
        Ok(())
    });
}

#[test]
fn case_96_out_of_range_values_name_key_and_source() {
    Jail::expect_with(|jail| {
        jail.clear_env();
        let path = write_config(jail, "[pipeline]\nsubmit_concurrency = 0\n");
        let text = error_text(load_config(&file_opts(path)));
        assert!(text.contains("pipeline.submit_concurrency"), "{text}");
        assert!(text.contains("jbxd.toml, line 4"), "{text}");

        let path = write_config(
            jail,
            "[poll]\nmin_interval_secs = 60\nmax_interval_secs = 10\n",
        );
        let text = error_text(load_config(&file_opts(path)));
        assert!(text.contains("poll.min_interval_secs"), "{text}");

        let path = write_config(jail, "[reports]\ntypes = []\n");
        assert!(error_text(load_config(&file_opts(path))).contains("reports.types"));

        let path = write_config(jail, "[reports]\ntypes = [\"htlm\"]\n");
        assert!(error_text(load_config(&file_opts(path))).contains("`htlm`"));

        // A negative size is a type error, named with the key and the file.
        let path = write_config(jail, "[intake]\nmax_file_size = -1\n");
        let text = error_text(load_config(&file_opts(path)));
        assert!(text.contains("intake.max_file_size"), "{text}");
        assert!(text.contains("jbxd.toml"), "{text}");

        // Relative paths and a drop folder inside data_dir.
        jail.create_file("rel.toml", "data_dir = \"data\"\n")?;
        let text = error_text(load_config(&file_opts(jail.directory().join("rel.toml"))));
        assert!(
            text.contains("`data_dir`") && text.contains("absolute"),
            "{text}"
        );
        let inside = format!(
            "data_dir = \"{0}/d\"\ndrop_dir = \"{0}/d/drop\"\n",
            jail.directory().display()
        );
        jail.create_file("inside.toml", &inside)?;
        let text = error_text(load_config(&file_opts(
            jail.directory().join("inside.toml"),
        )));
        assert!(text.contains("`drop_dir`"), "{text}");
        Ok(())
    });
}

#[test]
fn a_wrongly_typed_env_value_names_the_variable() {
    Jail::expect_with(|jail| {
        jail.clear_env();
        let path = write_config(jail, "");
        jail.set_env("JBXD_PIPELINE__SUBMIT_CONCURRENCY", "lots");
        let text = error_text(load_config(&file_opts(path)));
        assert!(text.contains("pipeline.submit_concurrency"), "{text}");
        assert!(text.contains("JBXD_PIPELINE__SUBMIT_CONCURRENCY"), "{text}");
        Ok(())
    });
}

#[test]
fn a_bad_cron_schedule_is_refused_at_load() {
    Jail::expect_with(|jail| {
        jail.clear_env();
        let path = write_config(jail, "");
        // Five fields: the classic crontab form, which needs a seconds field here.
        jail.set_env("JBXD_HEALTH__SCHEDULE", "*/5 * * * *");
        let text = error_text(load_config(&file_opts(path.clone())));
        assert!(text.contains("health.schedule"), "{text}");
        assert!(text.contains("JBXD_HEALTH__SCHEDULE"), "{text}");
        assert!(text.contains("6"), "{text}");

        jail.set_env("JBXD_HEALTH__SCHEDULE", "0 0 25 * * *");
        let text = error_text(load_config(&file_opts(path)));
        assert!(text.contains("not a valid cron expression"), "{text}");
        Ok(())
    });
}

#[test]
fn a_missing_explicit_file_is_an_error_and_a_syntax_error_names_the_file() {
    Jail::expect_with(|jail| {
        jail.clear_env();
        let missing = jail.directory().join("nope.toml");
        let text = error_text(load_config(&file_opts(missing.clone())));
        assert!(text.contains(&missing.display().to_string()), "{text}");
        assert!(text.contains("not found"), "{text}");

        jail.create_file("broken.toml", "[api\nurl = 1\n")?;
        let text = error_text(load_config(&file_opts(
            jail.directory().join("broken.toml"),
        )));
        assert!(text.contains("broken.toml"), "{text}");
        Ok(())
    });
}

#[test]
fn the_shipped_config_file_lists_every_default() {
    Jail::expect_with(|jail| {
        jail.clear_env();
        let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/jbxd.toml");
        let loaded = load_config(&file_opts(shipped.clone())).unwrap();
        assert_eq!(loaded.config, Config::default());

        // Every key of the schema appears in the file (set, or commented out when unset).
        let text = std::fs::read_to_string(&shipped).unwrap();
        let json = serde_json::to_value(Config::default()).unwrap();
        for (section, value) in json.as_object().unwrap() {
            match value.as_object() {
                Some(keys) => {
                    assert!(
                        text.contains(&format!("[{section}]")),
                        "[{section}] missing"
                    );
                    for key in keys.keys() {
                        let set = format!("\n{key} = ");
                        let commented = format!("\n# {key} = ");
                        assert!(
                            text.contains(&set) || text.contains(&commented) || key == "params",
                            "{section}.{key} is missing from config/jbxd.toml"
                        );
                    }
                }
                None => assert!(text.contains(&format!("\n{section} = ")), "{section}"),
            }
        }
        Ok(())
    });
}

#[test]
fn case_94_a_key_file_readable_by_others_is_refused_with_the_fix() {
    Jail::expect_with(|jail| {
        jail.clear_env();
        let key = write_key(jail, "api_key", &format!("{SENTINEL}\n"), 0o644);
        let path = write_config(jail, &format!("[api]\nkey_file = \"{}\"\n", key.display()));
        let text = error_text(load(&file_opts(path.clone())));
        let expected = format!(
            "{} is readable by group/others (mode 0644); run chmod 600",
            key.display()
        );
        assert!(text.contains(&expected), "{text}");
        assert!(!text.contains(SENTINEL));

        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o620)).unwrap();
        assert!(error_text(load(&file_opts(path.clone()))).contains("writable by group/others"));

        // 0600 with a trailing newline: accepted, newline trimmed.
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        let loaded = load(&file_opts(path)).unwrap();
        assert_eq!(
            loaded.key_source,
            KeySource::File {
                key: "api.key_file",
                path: key
            }
        );
        assert_eq!(loaded.api_key, jbxd::api::ApiKey::new(SENTINEL).unwrap());
        Ok(())
    });
}

#[test]
fn case_95_empty_or_missing_keys_are_refused_naming_the_source() {
    Jail::expect_with(|jail| {
        jail.clear_env();
        let key = write_key(jail, "api_key", " \n", 0o600);
        let path = write_config(jail, &format!("[api]\nkey_file = \"{}\"\n", key.display()));
        let text = error_text(load(&file_opts(path)));
        assert!(text.contains("empty"), "{text}");
        assert!(text.contains(&key.display().to_string()), "{text}");

        let path = write_config(jail, "");
        jail.set_env("JBX_API_KEY", "");
        let text = error_text(load(&file_opts(path.clone())));
        assert!(
            text.contains("JBX_API_KEY") && text.contains("empty"),
            "{text}"
        );

        jail.clear_env();
        let text = error_text(load(&file_opts(path)));
        assert!(text.contains("no API key"), "{text}");

        let missing = jail.directory().join("absent_key");
        let path = write_config(
            jail,
            &format!("[api]\nkey_file = \"{}\"\n", missing.display()),
        );
        assert!(error_text(load(&file_opts(path))).contains("absent_key"));
        Ok(())
    });
}

/// Which source wins is the resolver's unit test (`config::connection`); this one proves that
/// `load` hands it the real environment and reports the source.
#[test]
fn load_reads_the_systemd_credential_and_warns_about_a_key_from_the_environment() {
    Jail::expect_with(|jail| {
        jail.clear_env();
        let creds = jail.create_dir("creds")?;
        let cred = creds.join("jbx_api_key");
        std::fs::write(&cred, "from-credential\n").unwrap();
        std::fs::set_permissions(&cred, std::fs::Permissions::from_mode(0o400)).unwrap();
        let path = write_config(jail, "");
        jail.set_env("CREDENTIALS_DIRECTORY", creds.display());
        let loaded = load(&file_opts(path.clone())).unwrap();
        assert_eq!(
            loaded.key_source,
            KeySource::Credential {
                name: "jbx_api_key".into(),
                path: cred
            }
        );
        assert_eq!(
            loaded.api_key,
            jbxd::api::ApiKey::new("from-credential").unwrap()
        );
        let warned = |loaded: &jbxd::config::LoadedWithKey| {
            loaded
                .loaded
                .warnings
                .iter()
                .any(|w| w.contains("JBX_API_KEY"))
        };
        assert!(!warned(&loaded));

        jail.clear_env();
        jail.set_env("JBX_API_KEY", "from-env");
        let loaded = load(&file_opts(path)).unwrap();
        assert_eq!(loaded.key_source, KeySource::Env("JBX_API_KEY"));
        assert!(warned(&loaded));
        Ok(())
    });
}

#[test]
fn config_check_output_shows_the_key_source_never_the_key() {
    Jail::expect_with(|jail| {
        jail.clear_env();
        let key = write_key(jail, "api_key", SENTINEL, 0o600);
        let path = write_config(
            jail,
            &format!(
                "[api]\nkey_file = \"{}\"\n[poll]\nmax_interval_secs = 60\n",
                key.display()
            ),
        );
        jail.set_env("JBXD_LOG__LEVEL", "debug");
        let loaded = load(&file_opts(path.clone())).unwrap();
        let text = redacted_toml(&loaded.loaded, Some(&loaded.key_source), None);
        assert!(!text.contains(SENTINEL), "{text}");
        assert!(
            text.contains(&format!(
                "# key = [set from api.key_file {}]",
                key.display()
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!("# file: {}", path.display())),
            "{text}"
        );
        assert!(
            text.contains("level = \"debug\"  # from environment variable JBXD_LOG__LEVEL"),
            "{text}"
        );
        assert!(text.contains("max_interval_secs = 60  # from"), "{text}");
        // Values at their default carry no annotation.
        assert!(text.contains("\nattempts = 3\n"), "{text}");
        assert_eq!(text.matches("# from").count(), 5, "{text}");
        // The printed configuration is itself a valid configuration file.
        jail.create_file("printed.toml", &text)?;
        let back = load_config(&file_opts(jail.directory().join("printed.toml"))).unwrap();
        assert_eq!(back.config, loaded.loaded.config);

        // `check` (what `jbxd config check` prints), with the key from the environment.
        let plain = write_config(jail, "");
        jail.set_env("JBX_API_KEY", SENTINEL);
        let printed = jbxd::config::check(&file_opts(plain)).unwrap();
        assert!(!printed.contains(SENTINEL), "{printed}");
        assert!(
            printed.contains("# key = [set from environment variable JBX_API_KEY]"),
            "{printed}"
        );
        assert!(printed.contains("# warning: the API key comes from the environment"));

        // Nor does the client's Debug output contain it.
        let settings = client_settings(&loaded.loaded.config, loaded.api_key.clone());
        assert!(!format!("{settings:?}").contains(SENTINEL));
        Ok(())
    });
}

#[test]
fn client_settings_follow_the_configuration() {
    let mut c = Config::default();
    c.api.attempts = 5;
    c.api.read_timeout_secs = 7;
    c.api.accept_tac = true;
    c.reports.max_size = 1234;
    let s = client_settings(&c, jbxd::api::ApiKey::new("k").unwrap());
    assert_eq!(s.retry.max_attempts, 5);
    assert_eq!(s.retry.base, std::time::Duration::from_secs(1));
    assert_eq!(s.retry.cap, std::time::Duration::from_secs(60));
    assert_eq!(
        s.retry.max_retry_after,
        std::time::Duration::from_secs(3600)
    );
    assert_eq!(s.read_timeout, std::time::Duration::from_secs(7));
    assert_eq!(s.max_download_bytes, Some(1234));
    assert!(s.accept_tac);
}

/// The report password (issue 10 §4) goes through the same sources and checks as the key, and
/// the daemon's client settings carry it only when `reports.encrypt` asks for encryption.
#[test]
fn the_report_password_is_loaded_with_the_key_checks_and_sent_only_when_encrypt_is_on() {
    Jail::expect_with(|jail| {
        jail.clear_env();
        jail.set_env("PATH", "/usr/bin:/bin");
        let key = write_key(jail, "api_key", SENTINEL, 0o600);
        let password = write_key(jail, "report_password", "pw-from-file\n", 0o600);
        let base = format!("[api]\nkey_file = \"{}\"\n", key.display());

        let path = write_config(
            jail,
            &format!(
                "{base}[reports]\npassword_file = \"{}\"\n",
                password.display()
            ),
        );
        let loaded = load(&file_opts(path)).unwrap();
        let (secret, source) = loaded.report_password.clone().expect("a password");
        assert_eq!(secret.expose_secret(), "pw-from-file");
        assert_eq!(
            source.to_string(),
            format!("reports.password_file {}", password.display())
        );
        assert!(
            loaded.client_settings().encrypt_password.is_none(),
            "encrypt is off"
        );
        assert_eq!(
            jbxd::config::report_password(&loaded.loaded.config)
                .unwrap()
                .unwrap()
                .expose_secret(),
            "pw-from-file"
        );

        let vault = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/fake-vault.sh");
        let entry = write_key(jail, "vault-entry", "pw-from-vault\n", 0o600);
        let path = write_config(
            jail,
            &format!(
                "{base}[reports]\nencrypt = true\npassword_command = [\"{vault}\", \"rotate\", \"{}\"]\n",
                entry.display()
            ),
        );
        let loaded = load(&file_opts(path)).unwrap();
        let settings = loaded.client_settings();
        assert_eq!(
            settings.encrypt_password.unwrap().expose_secret(),
            "pw-from-vault"
        );
        assert!(
            !format!("{loaded:?}").contains("pw-from-vault"),
            "Debug leaks it"
        );

        // A password file others can read is refused like a key file.
        std::fs::set_permissions(&password, std::fs::Permissions::from_mode(0o640)).unwrap();
        let path = write_config(
            jail,
            &format!(
                "{base}[reports]\npassword_file = \"{}\"\n",
                password.display()
            ),
        );
        let text = error_text(load(&file_opts(path)));
        assert!(text.starts_with("report password: "), "{text}");
        assert!(text.contains("chmod 600"), "{text}");
        Ok(())
    });
}
