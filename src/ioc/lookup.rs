//! Lookup forms: what people paste into `--value` / `--ioc` (from a ticket, a chat, a threat
//! report) → the `(kind, normal value)` pairs to look up in `iocs`.
//!
//! Accepted: surrounding whitespace, quotes and angle brackets; defanged indicators
//! (`hxxp://`, `hxxps://`, `fxp://`, `example[.]com`, `example(.)com`, `example{.}com`,
//! `example[dot]com`, `1.2.3[.]4`, `[:]`, `[://]`, `[@]`); upper-case hashes; URLs with or
//! without a trailing slash (both forms are looked up, see [`super::normal`]'s rule). Without
//! a kind every kind the text can be is tried; with one, only that kind.

use super::Kind;
use super::normal::normalize;

/// Undoes the usual defanging and trims what surrounds a pasted value.
pub fn refang(text: &str) -> String {
    let trimmed = trim_wrapping(text);
    let mut out = trimmed.to_owned();
    for (fanged, plain) in [
        ("[://]", "://"),
        ("[:]", ":"),
        ("[.]", "."),
        ("(.)", "."),
        ("{.}", "."),
        ("[dot]", "."),
        ("(dot)", "."),
        ("[@]", "@"),
        ("[/]", "/"),
    ] {
        out = replace_ignore_case(&out, fanged, plain);
    }
    // The defanged schemes, only at the start (a path may well contain "hxxp").
    let lower = out.to_ascii_lowercase();
    for (fanged, plain) in [("hxxps", "https"), ("hxxp", "http"), ("fxp", "ftp")] {
        if lower.starts_with(fanged) && lower[fanged.len()..].starts_with(':') {
            out = format!("{plain}{}", &out[fanged.len()..]);
            break;
        }
    }
    out
}

/// Whitespace, quotes and angle brackets around a pasted value, removed (repeatedly: `"<x>"`).
fn trim_wrapping(text: &str) -> &str {
    let mut text = text.trim();
    loop {
        let inner = [('"', '"'), ('\'', '\''), ('`', '`'), ('<', '>')]
            .iter()
            .find_map(|(open, close)| {
                text.strip_prefix(*open)
                    .and_then(|t| t.strip_suffix(*close))
            });
        match inner {
            Some(inner) => text = inner.trim(),
            None => return text,
        }
    }
}

/// `text` with every ASCII-case-insensitive occurrence of `from` replaced by `to`.
fn replace_ignore_case(text: &str, from: &str, to: &str) -> String {
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut rest = 0;
    // `from` is ASCII, so lower-casing keeps byte offsets and char boundaries.
    for (at, _) in lower.match_indices(from) {
        if at < rest {
            continue;
        }
        out.push_str(&text[rest..at]);
        out.push_str(to);
        rest = at + from.len();
    }
    out.push_str(&text[rest..]);
    out
}

/// The `(kind, normal value)` pairs a pasted value is looked up as; `kind` limits them to one
/// kind. Empty when the text is no indicator of any (or of that) kind.
pub fn lookup_forms(text: &str, kind: Option<Kind>) -> Vec<(Kind, String)> {
    let plain = refang(text);
    let mut out: Vec<(Kind, String)> = Vec::new();
    let mut add = |kind: Kind, value: String| {
        if !out.iter().any(|(k, v)| *k == kind && *v == value) {
            out.push((kind, value));
        }
    };
    let kinds: &[Kind] = match kind {
        Some(ref one) => std::slice::from_ref(one),
        None => Kind::ALL,
    };
    for &kind in kinds {
        match kind {
            Kind::Url => {
                for url in url_forms(&plain) {
                    add(Kind::Url, url);
                }
            }
            // A file name is looked up as pasted (only trimmed): `a[.]exe` is not defanged.
            Kind::FileName => {
                if let Some(n) = normalize(kind, trim_wrapping(text)) {
                    add(kind, n.value);
                }
            }
            _ => {
                if let Some(n) = normalize(kind, &plain) {
                    add(kind, n.value);
                }
            }
        }
    }
    out
}

/// A URL with and without its trailing slash (never without the root path `/`, which the
/// normal form always has); a scheme-less `host/path` also as `https://`.
fn url_forms(plain: &str) -> Vec<String> {
    let mut inputs = vec![plain.to_owned()];
    if !plain.contains("://") {
        // Without a slash it is a host name, not a URL (`example.com` is looked up as a domain).
        if !plain.contains('/') {
            return Vec::new();
        }
        inputs.push(format!("https://{plain}"));
    }
    let mut out = Vec::new();
    for input in inputs {
        let Some(n) = normalize(Kind::Url, &input) else {
            continue;
        };
        // Only a bare path has a trailing-slash twin (after a query or fragment it is data).
        let other = if n.value.contains(['?', '#']) {
            None
        } else {
            match n.value.strip_suffix('/') {
                Some(without) if !without.ends_with('/') && path_is_not_root(&n.value) => {
                    Some(without.to_owned())
                }
                Some(_) => None,
                None => Some(format!("{}/", n.value)),
            }
        };
        out.push(n.value);
        out.extend(other);
    }
    out
}

/// Whether a normalised URL's path is more than the root `/`.
fn path_is_not_root(url: &str) -> bool {
    url::Url::parse(url).is_ok_and(|u| u.path() != "/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defanged_host_names_and_schemes_are_refanged() {
        assert_eq!(
            refang(" \"hxxps[://]evil[.]example(.)com[/]x\" "),
            "https://evil.example.com/x"
        );
        assert_eq!(refang("HXXP://a[DOT]b"), "http://a.b");
        assert_eq!(refang("1.2.3[.]4"), "1.2.3.4");
        assert_eq!(refang("http://a.b/hxxp"), "http://a.b/hxxp");
        assert_eq!(refang("<user[@]mail.example>"), "user@mail.example");
    }

    #[test]
    fn an_upper_case_hash_is_looked_up_in_lower_case_as_its_kind_and_as_a_file_name() {
        let forms = lookup_forms(&"AB".repeat(16), None);
        assert!(forms.contains(&(Kind::Md5, "ab".repeat(16))), "{forms:?}");
        assert!(!forms.iter().any(|(k, _)| *k == Kind::Sha1));
    }

    #[test]
    fn a_url_is_looked_up_with_and_without_its_trailing_slash() {
        let forms = lookup_forms("hxxp://Evil[.]example/a/b", Some(Kind::Url));
        assert_eq!(
            forms,
            vec![
                (Kind::Url, "http://evil.example/a/b".to_owned()),
                (Kind::Url, "http://evil.example/a/b/".to_owned()),
            ]
        );
        let forms = lookup_forms("http://evil.example/a/", Some(Kind::Url));
        assert!(forms.contains(&(Kind::Url, "http://evil.example/a".to_owned())));
        // The root path has one form only.
        let forms = lookup_forms("http://evil.example", Some(Kind::Url));
        assert_eq!(forms, vec![(Kind::Url, "http://evil.example/".to_owned())]);
    }

    #[test]
    fn a_defanged_domain_is_a_domain_and_not_a_url() {
        let forms = lookup_forms("evil[.]Example[.]com", None);
        assert!(forms.contains(&(Kind::Domain, "evil.example.com".to_owned())));
        assert!(!forms.iter().any(|(k, _)| *k == Kind::Url), "{forms:?}");
    }

    #[test]
    fn with_a_kind_only_that_kind_is_looked_up() {
        assert_eq!(
            lookup_forms("8.8.8[.]8", Some(Kind::Ip)),
            vec![(Kind::Ip, "8.8.8.8".to_owned())]
        );
        assert!(lookup_forms("8.8.8.8", Some(Kind::Domain)).is_empty());
        assert!(lookup_forms("   ", None).is_empty());
    }
}
