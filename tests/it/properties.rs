//! Property tests over untrusted input (RELIABILITY.md, "property tests and
//! fuzzing"):
//!
//! * `Content-Disposition` handling: any header value is parsed without panicking, and the name
//!   it yields, once `storage::safe_file_name` has reduced it, always lands inside the output
//!   directory — checked on paths and by creating the file for real (catalog 75's property).
//! * The reply parser: any status and body give a reply or a classified error, never a panic
//!   (the always-run companion of the cargo-fuzz target `fuzz/fuzz_targets/reply.rs`): a
//!   corpus of malformed replies, then random bytes and random JSON.
//!
//! The URL validator's properties live beside it (`src/intake/url_validate.rs`), the file-name
//! sanitiser's in `src/storage/names.rs`.

use std::path::{Component, Path};

use jbxd::api::{ApiErrorKind, parse_content_disposition, parse_reply_for_fuzzing};
use jbxd::storage::{AtomicFile, Store, safe_file_name};
use proptest::prelude::*;
use serde_json::{Value, json};

/// Header values shaped like what hostile or sloppy servers send: a disposition type, then
/// parameters whose values are path tricks, quotes, escapes and percent-encoding.
fn hostile_header() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("../".to_owned()),
        Just("..\\".to_owned()),
        Just("/".to_owned()),
        Just("%2F".to_owned()),
        Just("%2e%2e%2f".to_owned()),
        Just("%00".to_owned()),
        Just("\0".to_owned()),
        Just("\\\"".to_owned()),
        Just("\"".to_owned()),
        Just(";".to_owned()),
        Just(".".to_owned()),
        Just("etc/passwd".to_owned()),
        Just(".bashrc".to_owned()),
        Just("\u{202e}".to_owned()),
        "[a-zA-Z0-9._ -]{0,12}",
        any::<String>(),
    ];
    let value = proptest::collection::vec(piece, 0..8).prop_map(|parts| parts.concat());
    (
        prop_oneof![
            Just("attachment"),
            Just("inline"),
            Just(""),
            Just("form-data")
        ],
        prop_oneof![
            Just("filename=\""),
            Just("filename="),
            Just("filename*=UTF-8''"),
            Just("FILENAME*=iso-8859-1'en'"),
            Just("name=\""),
        ],
        value,
        prop_oneof![Just("\""), Just("\";"), Just(""), Just("; size=3")],
        proptest::option::of("[ -~]{0,30}"),
    )
        .prop_map(|(kind, key, value, close, tail)| {
            format!("{kind}; {key}{value}{close}{}", tail.unwrap_or_default())
        })
}

/// The property for one header value: parse, sanitise, join; the result is one normal
/// component directly inside the root.
fn assert_stays_inside(header: &str) -> Result<(), TestCaseError> {
    let Some(name) = parse_content_disposition(header) else {
        return Ok(());
    };
    let Some(safe) = safe_file_name(&name) else {
        return Ok(());
    };
    let root = Path::new("/srv/jbxd/reports/1234");
    let joined = root.join(&safe);
    prop_assert_eq!(joined.parent(), Some(root), "{:?} -> {:?}", header, safe);
    let components: Vec<_> = Path::new(&safe).components().collect();
    prop_assert_eq!(components.len(), 1);
    prop_assert!(matches!(components[0], Component::Normal(_)), "{:?}", safe);
    prop_assert!(!safe.starts_with('.') && !safe.contains('\0'));
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn any_content_disposition_value_parses_without_panic_and_stays_inside_the_root(
        header in any::<String>()
    ) {
        assert_stays_inside(&header)?;
    }

    #[test]
    fn hostile_content_disposition_names_stay_inside_the_root(header in hostile_header()) {
        assert_stays_inside(&header)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// For real: the daemon's storage creates the file under the sanitised name, and the
    /// only new entry in the whole tree is that file, inside `reports/<webid>/`.
    #[test]
    fn a_sanitised_server_name_creates_exactly_one_file_inside_the_report_directory(
        header in hostile_header(),
        webid in prop_oneof![Just("1234".to_owned()), "[ -~]{1,20}", any::<String>()],
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("data");
        let store = Store::new(&root);
        store.prepare().unwrap();
        let name = parse_content_disposition(&header)
            .and_then(|n| safe_file_name(&n))
            .unwrap_or_else(|| "fallback.bin".to_owned());
        let created = rt.block_on(async {
            let (mut file, rel) = store.create_report(&webid, &name, 0o600).await?;
            use tokio::io::AsyncWriteExt;
            file.file_mut().write_all(b"report").await?;
            file.commit().await?;
            Ok::<_, std::io::Error>(rel)
        });
        // A webid that sanitises to nothing is refused, which is fine: nothing was written.
        let Ok(rel) = created else {
            let mut all = Vec::new();
            walk(dir.path(), &mut all);
            prop_assert!(all.iter().all(|p| p.is_dir()), "{:?}", all);
            return Ok(());
        };
        prop_assert!(rel.starts_with("reports/"), "{}", rel);
        let abs = store.abs(&rel);
        let canonical = abs.canonicalize().unwrap();
        prop_assert!(canonical.starts_with(root.join("reports").canonicalize().unwrap()));
        let mut files = Vec::new();
        walk(dir.path(), &mut files);
        files.retain(|p| !p.is_dir());
        prop_assert_eq!(files, vec![abs]);
    }
}

fn walk(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        out.push(path.clone());
        if entry.file_type().unwrap().is_dir() {
            walk(&path, out);
        }
    }
}

#[tokio::test]
async fn an_atomic_file_refuses_names_that_are_not_one_component() {
    let dir = tempfile::tempdir().unwrap();
    for bad in ["", ".", "..", "a/b", "../x", "/etc/passwd"] {
        assert!(
            AtomicFile::create(dir.path(), bad, 0o600).await.is_err(),
            "{bad:?}"
        );
    }
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

// ---- reply parsing ------------------------------------------------------------------------

/// Replies real and broken servers have sent or could send.
fn corpus() -> Vec<(u16, Vec<u8>)> {
    let mut out: Vec<(u16, Vec<u8>)> = Vec::new();
    let bodies: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b" ".to_vec(),
        b"null".to_vec(),
        b"[]".to_vec(),
        b"{}".to_vec(),
        b"{".to_vec(),
        b"{\"data\":".to_vec(),
        b"{\"data\": null}".to_vec(),
        b"{\"data\": {}}".to_vec(),
        b"{\"data\": []}".to_vec(),
        b"{\"data\": [null, 1, \"x\", {}]}".to_vec(),
        b"{\"data\": {\"submission_id\": null}}".to_vec(),
        b"{\"data\": {\"submission_id\": 1e400}}".to_vec(),
        b"{\"data\": {\"submission_id\": -0}}".to_vec(),
        b"{\"data\": {\"submission_id\": [1]}}".to_vec(),
        b"{\"data\": {\"submission_id\": \"1\", \"analyses\": 5}}".to_vec(),
        b"{\"data\": {\"submission_id\": \"1\", \"analyses\": [{\"webid\": {}}]}}".to_vec(),
        b"{\"data\": {\"quota\": {\"daily\": {\"remaining\": \"many\"}}}}".to_vec(),
        b"{\"data\": {\"quota\": [1,2]}}".to_vec(),
        b"{\"data\": [{\"webid\": 1, \"runs\": [{\"detection\": 7, \"snort\": \"x\"}]}]}".to_vec(),
        b"{\"data\": 1, \"pagination\": {\"next\": {}}}".to_vec(),
        b"{\"data\": 1, \"pagination\": {\"next\": 1e308}}".to_vec(),
        b"{\"data\": 1, \"pagination\": 7}".to_vec(),
        b"{\"errors\": []}".to_vec(),
        b"{\"errors\": {}}".to_vec(),
        b"{\"errors\": [null]}".to_vec(),
        b"{\"errors\": [{\"code\": \"4\"}]}".to_vec(),
        b"{\"errors\": [{\"code\": 99999999999999999999, \"message\": 1}]}".to_vec(),
        b"{\"errors\": [{\"code\": -9223372036854775808, \"message\": \"\\u0000\"}]}".to_vec(),
        b"{\"errors\": [{\"code\": 4, \"message\": \"Invalid API key.\"}]}".to_vec(),
        b"<html><body>Captive portal</body></html>".to_vec(),
        b"\xff\xfe\x00{\"data\":1}".to_vec(),
        b"{\"data\": \"\xff\"}".to_vec(),
        b"{\"data\": \"\\ud800\"}".to_vec(),
        "{\"data\": 1}".repeat(3).into_bytes(),
        format!("{}1{}", "[".repeat(200), "]".repeat(200)).into_bytes(),
        format!("{{\"data\": {}1{}}}", "[".repeat(127), "]".repeat(127)).into_bytes(),
        format!("{{\"data\": \"{}\"}}", "é".repeat(10_000)).into_bytes(),
    ];
    for status in [
        0u16,
        100,
        200,
        201,
        204,
        301,
        399,
        400,
        401,
        403,
        404,
        429,
        500,
        503,
        999,
        u16::MAX,
    ] {
        for body in &bodies {
            out.push((status, body.clone()));
        }
    }
    out
}

/// The parser's contract on one input: it returns; an error status is never a success; a
/// success carried `data`.
fn check_reply(status: u16, body: &[u8]) -> Result<(), TestCaseError> {
    match parse_reply_for_fuzzing(status, body) {
        Ok(decoded) => {
            prop_assert!(status < 400, "status {} accepted", status);
            prop_assert!(decoded <= 5);
            let json: Value = serde_json::from_slice(body).expect("accepted replies are JSON");
            prop_assert!(json.get("data").is_some());
        }
        Err(error) => {
            // Rendering and classifying the error must not panic either, and the snippet of a
            // garbled body stays one line. (A Joe error's message is the server's own text,
            // shown as sent; callers escape it before storing it.)
            let text = error.to_string();
            if !matches!(error, jbxd::api::ApiError::Api { .. }) {
                prop_assert!(!text.contains('\n'), "{}", text);
            }
            let _ = error.kind().unwrap_or(ApiErrorKind::Other);
        }
    }
    Ok(())
}

#[test]
fn a_corpus_of_malformed_replies_never_panics_the_parser() {
    let corpus = corpus();
    assert!(corpus.len() > 500);
    for (status, body) in &corpus {
        check_reply(*status, body).unwrap_or_else(|e| panic!("{status} {body:?}: {e}"));
    }
    // Known shapes keep their meaning.
    assert!(matches!(
        parse_reply_for_fuzzing(200, br#"{"data": {"submission_id": "42"}}"#),
        Ok(n) if n >= 1
    ));
    let error = parse_reply_for_fuzzing(
        403,
        br#"{"errors": [{"code": 4, "message": "Invalid API key."}]}"#,
    )
    .unwrap_err();
    assert_eq!(error.kind(), Some(ApiErrorKind::InvalidApiKey));
}

/// Any JSON value, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        any::<String>().prop_map(Value::String),
        prop_oneof![
            Just("submission_id"),
            Just("webid"),
            Just("finished"),
            Just("malicious")
        ]
        .prop_map(|s| Value::String(s.to_owned())),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map(
                prop_oneof![
                    Just("submission_id".to_owned()),
                    Just("webid".to_owned()),
                    Just("analyses".to_owned()),
                    Just("runs".to_owned()),
                    Just("status".to_owned()),
                    Just("detection".to_owned()),
                    Just("quota".to_owned()),
                    Just("daily".to_owned()),
                    Just("remaining".to_owned()),
                    Just("most_relevant_analysis".to_owned()),
                    "[a-z_]{1,10}",
                ],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic_the_reply_parser(
        status in any::<u16>(),
        body in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        check_reply(status, &body)?;
    }

    #[test]
    fn random_json_envelopes_never_panic_the_decoders(
        status in prop_oneof![Just(200u16), Just(400u16), Just(403u16), Just(429u16), Just(503u16), any::<u16>()],
        data in json_value(),
        errors in json_value(),
        shape in 0u8..4,
    ) {
        let body = match shape {
            0 => json!({ "data": data }),
            1 => json!({ "errors": [errors] }),
            2 => json!({ "data": data, "pagination": { "next": errors } }),
            _ => data,
        };
        check_reply(status, body.to_string().as_bytes())?;
    }
}
