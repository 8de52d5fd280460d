//! URL-queue validation (RELIABILITY.md group E, cases 84–91): pure, no I/O, each rule with its own reason.
//!
//! A URL is either accepted in its normalised form (the `url` crate's WHATWG serialisation:
//! punycode host, canonical percent-escapes, lower-case scheme and host) or rejected with a
//! fixed reason text. Nothing is "fixed": a scheme-less `example.com` or a `http:/x` that a
//! browser would repair is rejected, because guessing what a producer meant submits the wrong
//! thing to a third party. Reasons never quote the input, so a credential in a rejected URL
//! cannot reach the database's `error` column or a log line.

use crate::db::url_queue::UrlValueError;

/// Why a URL was rejected. `Display` is the reason stored in `url_queue.error`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlRejection {
    /// The column held NULL, a number or a BLOB (`found` is the SQLite type).
    #[error("url is not valid UTF-8 text (found {found})")]
    NotText { found: String },
    /// TEXT that is not valid UTF-8.
    #[error("url is not valid UTF-8 text")]
    NotUtf8,
    /// Also decided in SQL before the row is read (`db::url_queue::fetch_new`): an oversize
    /// value is never loaded (RELIABILITY.md case 117).
    #[error("URL too long ({size} bytes > {max})")]
    TooLong { size: u64, max: usize },
    /// Normalisation (punycode, percent-escapes) pushed it over the limit.
    #[error("URL longer than {max} bytes after normalisation")]
    TooLongNormalised { max: usize },
    #[error("URL contains control characters or spaces")]
    ControlOrSpace,
    #[error("URL has no scheme (it must start with http:// or https://)")]
    NoScheme,
    /// Only the scheme is quoted: it is made of `[a-z0-9+.-]` and holds no secret.
    #[error("URL scheme {scheme} is not allowed (only http and https)")]
    SchemeNotAllowed { scheme: String },
    #[error("URL must start with http:// or https://")]
    MissingSlashes,
    #[error("URL has no host")]
    NoHost,
    /// The parser's message is a fixed text (e.g. "invalid port number"), never the input.
    #[error("URL does not parse: {0}")]
    Unparsable(url::ParseError),
    #[error("credentials in URL")]
    Credentials,
    #[error("URL does not normalise to a stable form")]
    Unstable,
}

/// Validates the `url` value of one `url_queue` row; returns the normalised URL.
pub fn validate_value(
    value: &Result<String, UrlValueError>,
    max_len: usize,
) -> Result<String, UrlRejection> {
    match value {
        Ok(text) => validate(text, max_len),
        Err(UrlValueError::NotUtf8) => Err(UrlRejection::NotUtf8),
        Err(UrlValueError::TooLong { size }) => Err(UrlRejection::TooLong {
            size: *size,
            max: max_len,
        }),
        Err(UrlValueError::NotText(found)) => Err(UrlRejection::NotText {
            found: found.clone(),
        }),
    }
}

/// Which schemes a URL may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schemes {
    /// `http` and `https` only: the daemon's rule for `url_queue`, and the CLI's default.
    HttpOnly,
    /// Any scheme of the `scheme://host` form (`ftp://…`), for `jbxd submit --allow-any-scheme`.
    /// Every other rule still applies, so `javascript:…`, `data:…` (no `//`) and `file:///…`
    /// (no host) are refused all the same.
    Any,
}

/// Validates one URL with the daemon's rule (http and https only); returns its normalised form.
pub fn validate(input: &str, max_len: usize) -> Result<String, UrlRejection> {
    validate_with(input, max_len, Schemes::HttpOnly)
}

/// Validates one URL; returns its normalised form.
pub fn validate_with(
    input: &str,
    max_len: usize,
    schemes: Schemes,
) -> Result<String, UrlRejection> {
    if input.len() > max_len {
        return Err(UrlRejection::TooLong {
            size: input.len() as u64,
            max: max_len,
        });
    }
    // Spaces of any kind included: a URL with a raw space was mangled on its way here, and
    // control characters could split log lines or headers.
    if input.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(UrlRejection::ControlOrSpace);
    }
    let scheme = scheme_of(input).ok_or(UrlRejection::NoScheme)?;
    let lower = scheme.to_ascii_lowercase();
    if schemes == Schemes::HttpOnly && lower != "http" && lower != "https" {
        return Err(UrlRejection::SchemeNotAllowed { scheme: lower });
    }
    // The WHATWG parser repairs `http:/x`, `http:\\x` and `http:///x` into `http://x/`; we
    // require the literal `://` and a non-empty authority instead of guessing.
    let rest = &input[scheme.len() + 1..];
    let Some(authority) = rest.strip_prefix("//") else {
        return Err(UrlRejection::MissingSlashes);
    };
    if authority.is_empty() || authority.starts_with(['/', '\\', '?', '#']) {
        return Err(UrlRejection::NoHost);
    }
    let parsed = url::Url::parse(input).map_err(|e| match e {
        url::ParseError::EmptyHost => UrlRejection::NoHost,
        other => UrlRejection::Unparsable(other),
    })?;
    if parsed.host().is_none() {
        return Err(UrlRejection::NoHost);
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(UrlRejection::Credentials);
    }
    let normalised = parsed.as_str();
    if normalised.len() > max_len {
        return Err(UrlRejection::TooLongNormalised { max: max_len });
    }
    // What we store must mean the same thing when parsed again (by us, by Joe Sandbox).
    match url::Url::parse(normalised) {
        Ok(again) if again.as_str() == normalised => {}
        _ => return Err(UrlRejection::Unstable),
    }
    if normalised
        .bytes()
        .any(|b| b.is_ascii_control() || b == b' ')
    {
        return Err(UrlRejection::Unstable);
    }
    Ok(normalised.to_owned())
}

/// The scheme (RFC 3986 §3.1: ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )) before the first
/// `:`, if the input starts with one.
fn scheme_of(input: &str) -> Option<&str> {
    let end = input.find(':')?;
    let scheme = &input[..end];
    let mut chars = scheme.chars();
    let first = chars.next()?;
    if !first.is_ascii_alphabetic()
        || !chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    {
        return None;
    }
    Some(scheme)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MAX: usize = 8000;

    fn reason(input: &str) -> String {
        validate(input, MAX).unwrap_err().to_string()
    }

    #[test]
    fn case_84_only_http_and_https_are_accepted_each_refusal_with_its_own_reason() {
        assert_eq!(
            reason("javascript:alert(1)"),
            "URL scheme javascript is not allowed (only http and https)"
        );
        assert_eq!(
            reason("data:text/html,x"),
            "URL scheme data is not allowed (only http and https)"
        );
        assert_eq!(
            reason("file:///etc/passwd"),
            "URL scheme file is not allowed (only http and https)"
        );
        assert_eq!(
            reason("ftp://x"),
            "URL scheme ftp is not allowed (only http and https)"
        );
        assert_eq!(
            reason("mailto:a@b"),
            "URL scheme mailto is not allowed (only http and https)"
        );
        assert_eq!(
            reason("example.com"),
            "URL has no scheme (it must start with http:// or https://)"
        );
        assert_eq!(
            reason("example.com/a:b"),
            "URL has no scheme (it must start with http:// or https://)"
        );
        assert_eq!(reason("http:/x"), "URL must start with http:// or https://");
        assert_eq!(
            reason("http:\\\\x"),
            "URL must start with http:// or https://"
        );
        assert_eq!(reason("http:///x"), "URL has no host");
        assert_eq!(reason("https://"), "URL has no host");
        assert_eq!(
            validate("http://example.com", MAX).unwrap(),
            "http://example.com/"
        );
        assert_eq!(
            validate("HTTPS://Example.COM/a?b=c#d", MAX).unwrap(),
            "https://example.com/a?b=c#d"
        );
    }

    #[test]
    fn case_120_any_scheme_still_needs_an_authority_and_refuses_credentials() {
        let any = |u: &str| validate_with(u, 8000, Schemes::Any);
        assert_eq!(
            any("FTP://Files.Example/x").unwrap(),
            "ftp://files.example/x"
        );
        assert_eq!(
            any("javascript:alert(1)"),
            Err(UrlRejection::MissingSlashes)
        );
        assert_eq!(any("data:text/html,x"), Err(UrlRejection::MissingSlashes));
        assert_eq!(any("file:///etc/passwd"), Err(UrlRejection::NoHost));
        assert_eq!(any("ftp://u:p@h/"), Err(UrlRejection::Credentials));
        assert!(matches!(
            validate("ftp://h/", 8000),
            Err(UrlRejection::SchemeNotAllowed { .. })
        ));
    }

    #[test]
    fn case_85_an_8000_byte_url_is_accepted_and_8001_bytes_are_rejected() {
        let prefix = "https://example.com/";
        let exact = format!("{prefix}{}", "a".repeat(MAX - prefix.len()));
        assert_eq!(exact.len(), MAX);
        assert_eq!(validate(&exact, MAX).unwrap(), exact);
        let over = format!("{exact}a");
        assert_eq!(reason(&over), "URL too long (8001 bytes > 8000)");
        // Percent-encoding can push an accepted length over the limit.
        let grows = format!("{prefix}{}", "\"".repeat(MAX - prefix.len()));
        assert_eq!(grows.len(), MAX);
        assert_eq!(
            reason(&grows),
            "URL longer than 8000 bytes after normalisation"
        );
    }

    #[test]
    fn case_86_control_characters_and_spaces_are_rejected() {
        for bad in [
            "http://x/a\rb",
            "http://x/a\nb",
            "http://x/a\tb",
            "http://x/a\0b",
            "http://x/a b",
            "http://x/a\x7fb",
            "http://x/a\u{85}b",
            "http://x/a\u{a0}b",
            " http://x/",
            "http://x/\n",
        ] {
            let r = reason(bad);
            assert_eq!(r, "URL contains control characters or spaces", "{bad:?}");
            assert!(!r.contains('\n'));
        }
    }

    #[test]
    fn case_87_credentials_are_rejected_and_never_quoted() {
        for bad in [
            "http://user:pass@host/",
            "http://user@host/",
            "https://:pass@host/",
        ] {
            let r = reason(bad);
            assert_eq!(r, "credentials in URL");
            assert!(!r.contains("pass") && !r.contains("user"));
        }
        // An empty userinfo carries nothing; the serialisation drops it.
        assert_eq!(validate("http://@host/", MAX).unwrap(), "http://host/");
    }

    #[test]
    fn case_88_idn_hosts_and_escapes_are_normalised() {
        assert_eq!(
            validate("https://bücher.example/ä?q=ü", MAX).unwrap(),
            "https://xn--bcher-kva.example/%C3%A4?q=%C3%BC"
        );
        assert_eq!(
            validate("http://EXAMPLE.com:80/a/../b/%7e", MAX).unwrap(),
            "http://example.com/b/%7e"
        );
        assert_eq!(
            validate("http://example.com/\"<>`", MAX).unwrap(),
            "http://example.com/%22%3C%3E%60"
        );
        assert!(reason("http://exa mple.com/").contains("control characters or spaces"));
        assert!(reason("http://[::1/").starts_with("URL does not parse"));
        assert!(reason("http://example.com:99999/").starts_with("URL does not parse"));
    }

    #[test]
    fn case_89_the_same_url_normalises_to_one_form() {
        let forms = [
            "http://Example.com",
            "HTTP://example.com/",
            "http://example.com:80/",
            "http://example.com/./",
        ];
        for f in forms {
            assert_eq!(validate(f, MAX).unwrap(), "http://example.com/");
        }
    }

    #[test]
    fn case_90_sql_metacharacters_are_ordinary_url_text() {
        assert_eq!(
            validate("http://x/'); DROP TABLE url_queue;--", MAX).unwrap_err(),
            UrlRejection::ControlOrSpace
        );
        assert_eq!(
            validate("http://x/');DROP%20TABLE%20url_queue;--", MAX).unwrap(),
            "http://x/');DROP%20TABLE%20url_queue;--"
        );
        assert_eq!(
            validate("http://x/%25\\\"", MAX).unwrap(),
            "http://x/%25/%22"
        );
    }

    #[test]
    fn case_91_values_that_are_not_utf8_text_are_rejected() {
        for found in ["null", "integer", "real", "blob"] {
            let r = validate_value(&Err(UrlValueError::NotText(found.into())), MAX).unwrap_err();
            assert!(r.to_string().starts_with("url is not valid UTF-8 text"));
            assert!(r.to_string().contains(found));
        }
        assert_eq!(
            validate_value(&Err(UrlValueError::NotUtf8), MAX)
                .unwrap_err()
                .to_string(),
            "url is not valid UTF-8 text"
        );
        assert_eq!(
            validate_value(&Ok("https://a.example/".into()), MAX).unwrap(),
            "https://a.example/"
        );
    }

    fn check_accepted(input: &str) {
        if let Ok(out) = validate(input, MAX) {
            assert!(out.len() <= MAX);
            assert_eq!(url::Url::parse(&out).unwrap().as_str(), out);
            assert!(!out.bytes().any(|b| b.is_ascii_control() || b == b' '));
            assert!(out.starts_with("http://") || out.starts_with("https://"));
            // Validation is idempotent on its own output.
            assert_eq!(validate(&out, MAX).unwrap(), out);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn arbitrary_text_never_panics_and_accepted_urls_are_stable(input in ".{0,200}") {
            check_accepted(&input);
        }

        #[test]
        fn url_shaped_text_never_panics_and_accepted_urls_are_stable(
            scheme in prop::sample::select(vec!["http", "https", "HTTP", "ftp", "javascript", ""]),
            sep in prop::sample::select(vec!["://", ":/", ":", ":///", "//"]),
            userinfo in prop::option::of("[a-z:@%]{0,6}"),
            host in "[a-zA-Z0-9.\\-\\[\\]:%\u{e4}\u{fc}\u{4e2d}\u{200b}]{0,20}",
            port in prop::option::of(0u32..100_000),
            path in "[ -~\u{80}-\u{ff}\u{4e2d}\u{1f600}]{0,40}",
        ) {
            let mut s = format!("{scheme}{sep}");
            if let Some(u) = userinfo {
                s.push_str(&u);
                s.push('@');
            }
            s.push_str(&host);
            if let Some(p) = port {
                s.push_str(&format!(":{p}"));
            }
            s.push_str(&path);
            check_accepted(&s);
        }
    }
}
