//! The normal forms of indicator values: what `iocs.value` holds (public contract), so that one
//! indicator has one spelling whichever report, section or case it came in.
//!
//! | kind | normal form | not an indicator of that kind |
//! | --- | --- | --- |
//! | `md5` `sha1` `sha256` `sha512` | lower-case hex of exactly 32/40/64/128 digits | any other length, any non-hex character |
//! | `domain` | lower-case, IDN as punycode (`url::Host` parsing), no trailing dot | empty, forbidden characters, an IP address |
//! | `ip` | `std::net::IpAddr` display; brackets and a port stripped, IPv4-mapped IPv6 as IPv4 | anything that does not parse |
//! | `url` | `url` crate serialisation: scheme and host lower-case, default port dropped, an empty path is `/`; a missing scheme is `http://` | no host, does not parse |
//! | `file_name` | trimmed, case kept | empty |
//!
//! Trailing slash rule: a URL keeps the path it was given (`/x/` and `/x` are different
//! resources to a web server), except that an empty path is `/` (the `url` crate's rule for
//! `http` and `https`). Lookups ([`super::lookup`]) try both forms, so either spelling finds
//! the other.

use std::net::IpAddr;

use super::Kind;

/// A value in its normal form, and (for IPs) whether the address is private.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Normal {
    pub value: String,
    /// `Some` for [`Kind::Ip`] only: see [`is_private`].
    pub private: Option<bool>,
}

/// The normal form of `raw` as an indicator of `kind`, or `None` when it is not one.
pub fn normalize(kind: Kind, raw: &str) -> Option<Normal> {
    let text = raw.trim();
    let plain = |value: String| Normal {
        value,
        private: None,
    };
    match kind {
        Kind::Md5 => hash(text, 32).map(plain),
        Kind::Sha1 => hash(text, 40).map(plain),
        Kind::Sha256 => hash(text, 64).map(plain),
        Kind::Sha512 => hash(text, 128).map(plain),
        Kind::Domain => host(text).map(plain),
        Kind::Ip => ip(text).map(|ip| Normal {
            value: ip.to_string(),
            private: Some(is_private(ip)),
        }),
        Kind::Url => url(text).map(plain),
        Kind::FileName => (!text.is_empty()).then(|| plain(text.to_owned())),
    }
}

/// Lower-case hex of exactly `digits` digits.
fn hash(text: &str, digits: usize) -> Option<String> {
    (text.len() == digits && text.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| text.to_ascii_lowercase())
}

/// A host name: lower-case punycode without a trailing dot; addresses are not host names.
fn host(text: &str) -> Option<String> {
    let text = text.strip_suffix('.').unwrap_or(text);
    if text.is_empty() || text.ends_with('.') {
        return None;
    }
    match url::Host::parse(text).ok()? {
        url::Host::Domain(name) if !name.is_empty() => Some(name),
        _ => None,
    }
}

/// An IP address: brackets (`[::1]`) and a port (`1.2.3.4:80`, `[::1]:443`) stripped,
/// IPv4-mapped IPv6 (`::ffff:1.2.3.4`) as the IPv4 address it is.
fn ip(text: &str) -> Option<IpAddr> {
    let parsed = text
        .parse::<IpAddr>()
        .ok()
        .or_else(|| {
            text.strip_prefix('[')
                .and_then(|t| t.strip_suffix(']'))
                .and_then(|t| t.parse().ok())
        })
        .or_else(|| text.parse::<std::net::SocketAddr>().ok().map(|s| s.ip()))?;
    Some(match parsed {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    })
}

/// Whether an address is not on the public internet: RFC 1918, loopback, link-local,
/// unspecified, shared address space (RFC 6598, `100.64.0.0/10`), broadcast; IPv6 loopback,
/// unspecified, unique local (`fc00::/7`) and link-local (`fe80::/10`).
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || (a == 100 && (64..128).contains(&b))
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
        }
    }
}

/// A URL as the `url` crate serialises it; a scheme-less `host/path` is read as `http://`.
fn url(text: &str) -> Option<String> {
    if text.is_empty() || text.chars().any(char::is_whitespace) {
        return None;
    }
    let parsed = match url::Url::parse(text) {
        Ok(parsed) => parsed,
        Err(url::ParseError::RelativeUrlWithoutBase) => {
            url::Url::parse(&format!("http://{text}")).ok()?
        }
        Err(_) => return None,
    };
    match parsed.host() {
        Some(url::Host::Domain("")) | None => None,
        Some(_) => Some(parsed.into()),
    }
}

/// A MITRE ATT&CK technique id in upper case (`T1055`, `T1055.001`), or `None` when `raw` is
/// not shaped like one.
pub fn technique(raw: &str) -> Option<String> {
    let id = raw.trim().to_ascii_uppercase();
    let digits = id.strip_prefix('T')?;
    let (main, sub) = match digits.split_once('.') {
        Some((main, sub)) => (main, Some(sub)),
        None => (digits, None),
    };
    let all_digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    (all_digits(main, 4) && sub.is_none_or(|s| all_digits(s, 3))).then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(kind: Kind, raw: &str) -> Option<String> {
        normalize(kind, raw).map(|n| n.value)
    }

    #[test]
    fn hashes_are_lower_case_hex_of_their_exact_length() {
        let upper = "D41D8CD98F00B204E9800998ECF8427E";
        assert_eq!(
            value(Kind::Md5, &format!(" {upper} ")).as_deref(),
            Some("d41d8cd98f00b204e9800998ecf8427e")
        );
        assert_eq!(value(Kind::Sha1, upper), None, "an md5 is not a sha1");
        assert_eq!(value(Kind::Md5, "d41d8cd98f00b204e9800998ecf8427g"), None);
        assert_eq!(value(Kind::Sha256, &"A".repeat(64)), Some("a".repeat(64)));
        assert_eq!(value(Kind::Sha512, &"0".repeat(127)), None);
    }

    #[test]
    fn host_names_are_lower_case_punycode_without_the_trailing_dot() {
        assert_eq!(
            value(Kind::Domain, "WWW.Example.COM.").as_deref(),
            Some("www.example.com")
        );
        assert_eq!(
            value(Kind::Domain, "bücher.example").as_deref(),
            Some("xn--bcher-kva.example")
        );
        assert_eq!(value(Kind::Domain, "1.2.3.4"), None);
        assert_eq!(value(Kind::Domain, "exa mple.com"), None);
        assert_eq!(value(Kind::Domain, "."), None);
        assert_eq!(value(Kind::Domain, "a.."), None);
    }

    #[test]
    fn ips_are_canonical_and_mapped_ipv6_is_ipv4() {
        assert_eq!(
            value(Kind::Ip, "[::FFFF:10.0.0.1]").as_deref(),
            Some("10.0.0.1")
        );
        assert_eq!(
            value(Kind::Ip, "2001:DB8:0:0::1").as_deref(),
            Some("2001:db8::1")
        );
        assert_eq!(value(Kind::Ip, "1.2.3.4:8080").as_deref(), Some("1.2.3.4"));
        assert_eq!(value(Kind::Ip, "[fe80::1]:443").as_deref(), Some("fe80::1"));
        assert_eq!(value(Kind::Ip, "unknown"), None);
        assert_eq!(value(Kind::Ip, "1.2.3"), None);
    }

    #[test]
    fn private_ranges_are_private_and_public_ones_are_not() {
        for private in [
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "127.0.0.1",
            "169.254.1.1",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
        ] {
            assert_eq!(
                normalize(Kind::Ip, private).unwrap().private,
                Some(true),
                "{private}"
            );
        }
        for public in ["8.8.8.8", "172.32.0.1", "100.128.0.1", "2001:4860::8888"] {
            assert_eq!(
                normalize(Kind::Ip, public).unwrap().private,
                Some(false),
                "{public}"
            );
        }
    }

    #[test]
    fn urls_get_a_lower_case_scheme_and_host_and_lose_the_default_port() {
        assert_eq!(
            value(Kind::Url, "HTTP://Example.COM:80").as_deref(),
            Some("http://example.com/")
        );
        assert_eq!(
            value(Kind::Url, "https://example.com:443/Path/?q=A").as_deref(),
            Some("https://example.com/Path/?q=A")
        );
        assert_eq!(
            value(Kind::Url, "example.com/x").as_deref(),
            Some("http://example.com/x")
        );
        assert_eq!(value(Kind::Url, "http://"), None);
        assert_eq!(value(Kind::Url, "not a url"), None);
    }

    #[test]
    fn technique_ids_are_upper_case_and_shaped_like_attack_ids() {
        assert_eq!(technique(" t1055.001 ").as_deref(), Some("T1055.001"));
        assert_eq!(technique("T1055").as_deref(), Some("T1055"));
        assert_eq!(technique("T105"), None);
        assert_eq!(technique("T1055.1"), None);
        assert_eq!(technique("Process Injection"), None);
    }
}
