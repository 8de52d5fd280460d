//! Properties of the indicator normal forms and lookup forms (`ioc`): normalising is
//! idempotent, a defanged indicator is found again, and no input makes either panic.

use jbxd::ioc::{Kind, lookup_forms, normalize, refang};
use proptest::prelude::*;

fn kind() -> impl Strategy<Value = Kind> {
    proptest::sample::select(Kind::ALL.to_vec())
}

/// Host names of a few labels (letters, digits, hyphens inside), any case, maybe a final dot.
fn host() -> impl Strategy<Value = String> {
    let label = "[a-zA-Z0-9]([a-zA-Z0-9-]{0,8}[a-zA-Z0-9])?";
    (
        proptest::collection::vec(label, 1..4),
        "[a-zA-Z]{2,6}",
        any::<bool>(),
    )
        .prop_map(|(labels, tld, dot)| {
            format!("{}.{tld}{}", labels.join("."), if dot { "." } else { "" })
        })
}

fn ip() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(|o| std::net::Ipv4Addr::from(o).to_string()),
        any::<[u16; 8]>().prop_map(|s| std::net::Ipv6Addr::from(s).to_string()),
    ]
}

fn url() -> impl Strategy<Value = String> {
    (
        prop_oneof![Just("http"), Just("https"), Just("HTTP"), Just("ftp")],
        host(),
        proptest::collection::vec("[a-zA-Z0-9_.~-]{1,8}", 0..3),
        any::<bool>(),
    )
        .prop_map(|(scheme, host, path, slash)| {
            let host = host.trim_end_matches('.').to_owned();
            let mut url = format!("{scheme}://{host}");
            for segment in path {
                url.push('/');
                url.push_str(&segment);
            }
            if slash {
                url.push('/');
            }
            url
        })
}

/// How analysts defang: dots bracketed, schemes with x, the colon bracketed.
fn defang(text: &str) -> String {
    text.replacen("https", "hxxps", 1)
        .replacen("http", "hxxp", 1)
        .replacen("://", "[://]", 1)
        .replace('.', "[.]")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    #[test]
    fn normalising_a_normal_form_changes_nothing(kind in kind(), text in any::<String>()) {
        if let Some(normal) = normalize(kind, &text) {
            prop_assert_eq!(normalize(kind, &normal.value), Some(normal));
        }
    }

    #[test]
    fn normalising_generated_indicators_is_idempotent(
        host in host(), ip in ip(), url in url()
    ) {
        for (kind, text) in [(Kind::Domain, host), (Kind::Ip, ip), (Kind::Url, url)] {
            let normal = normalize(kind, &text);
            prop_assert!(normal.is_some(), "{:?} {} is no indicator", kind, text);
            let normal = normal.unwrap();
            prop_assert_eq!(normalize(kind, &normal.value), Some(normal));
        }
    }

    #[test]
    fn a_defanged_indicator_is_found_as_its_normal_form(
        host in host(), ip in ip(), url in url(), upper in any::<bool>()
    ) {
        for (kind, text) in [(Kind::Domain, host), (Kind::Ip, ip), (Kind::Url, url)] {
            let normal = normalize(kind, &text).unwrap().value;
            let pasted = defang(&text);
            let pasted = if upper && kind != Kind::Url { pasted.to_uppercase() } else { pasted };
            let forms = lookup_forms(&format!(" \"{pasted}\" "), None);
            prop_assert!(
                forms.contains(&(kind, normal.clone())),
                "{} (pasted as {}) not looked up as {:?} {}: {:?}", text, pasted, kind, normal, forms
            );
        }
    }

    #[test]
    fn no_input_makes_the_normalisers_or_lookups_panic(text in any::<String>(), kind in kind()) {
        let _ = normalize(kind, &text);
        let _ = refang(&text);
        let _ = lookup_forms(&text, None);
        let _ = lookup_forms(&text, Some(kind));
        let _ = jbxd::ioc::technique(&text);
    }

    #[test]
    fn no_defang_like_noise_makes_the_lookups_panic(
        text in r"[\[\](){}.:/@a-zA-Zx0-9 \x22'<>%#?\u{e9}\u{4e2d}-]{0,40}"
    ) {
        let _ = lookup_forms(&text, None);
    }
}
