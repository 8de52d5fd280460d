//! Static data: analysis systems, countries, locales and the submission parameters the service
//! knows (the union of what jbxapi 3.25.0 can send).

use serde_json::{Value, json};

/// The system used when a submission names none.
pub(crate) const DEFAULT_SYSTEM: &str = "w10x64_office";

/// `(name, description, arch)`; the HTML in descriptions is real (see the API notes, §4.1).
const SYSTEMS: &[(&str, &str, &str)] = &[
    (
        "w10x64_office",
        "Windows 10 64 bit (version 1803) with <b>Office 2016</b> Adobe Reader DC 19, Chrome 104, Firefox 63, Java 8.171 and 11.0.2, 7-Zip",
        "WINDOWS",
    ),
    (
        "w10x64",
        "Windows 10 64 bit (version 1803) Adobe Reader DC 19, Chrome 104, Firefox 63, Java 8.171",
        "WINDOWS",
    ),
    (
        "w10x64_21h1_office",
        "Windows 10 64 bit (version 21H1) with <b>Office 2019</b>, Chrome 117, Firefox 118",
        "WINDOWS",
    ),
    (
        "w11x64",
        "Windows 11 64 bit (version 23H2) with <b>Office 2021</b>, Edge 128, Chrome 128",
        "WINDOWS",
    ),
    (
        "w7x64",
        "Windows 7 64 bit (SP1) with <b>Office 2010 SP2</b>, Adobe Reader DC 19, IE 11",
        "WINDOWS",
    ),
    (
        "w7x64_office",
        "Windows 7 64 bit (SP1) with <b>Office 2016</b>, Adobe Reader DC 19, Chrome 76",
        "WINDOWS",
    ),
    (
        "w7_1",
        "Windows 7 32 bit (SP1) with Office 2010, Adobe Reader 11, IE 8",
        "WINDOWS",
    ),
    (
        "lnxubuntu20",
        "Ubuntu Linux 20.04 x64 (Kernel 5.4), Python 3.8, OpenJDK 11",
        "LINUX",
    ),
    (
        "lnxubuntu22",
        "Ubuntu Linux 22.04 x64 (Kernel 5.15), Python 3.10, OpenJDK 17",
        "LINUX",
    ),
    (
        "android",
        "Android 10 (Q) on a physical device, Google Play Services",
        "ANDROID",
    ),
    (
        "mac14",
        "macOS Sonoma 14 (Apple Silicon) with Safari 17",
        "MAC",
    ),
    ("ios17", "iOS 17 (iPhone) with Safari", "IOS"),
];

const COUNTRIES: &[&str] = &[
    "Argentina",
    "Australia",
    "Austria",
    "Belgium",
    "Brazil",
    "Canada",
    "China",
    "Czech Republic",
    "Denmark",
    "Finland",
    "France",
    "Germany",
    "Hungary",
    "Iceland",
    "India",
    "Israel",
    "Italy",
    "Japan",
    "Lithuania",
    "Netherlands",
    "Norway",
    "Poland",
    "Qatar",
    "Romania",
    "Russia",
    "South Africa",
    "Spain",
    "Sweden",
    "Switzerland",
    "Thailand",
    "Turkey",
    "Ukraine",
    "United Kingdom",
    "United States of America",
    "Vietnam",
];

const LANGUAGES: &[&str] = &[
    "Arabic - Egypt",
    "Chinese - PRC",
    "Dutch - Netherlands",
    "English - Australia",
    "English - United Kingdom",
    "English - United States",
    "French - France",
    "German - Germany",
    "German - Switzerland",
    "Italian - Italy",
    "Japanese - Japan",
    "Korean - Korea",
    "Polish - Poland",
    "Portuguese - Brazil",
    "Russian - Russia",
    "Spanish - Spain",
    "Turkish - Turkey",
];

pub(crate) fn systems_json() -> Value {
    Value::Array(
        SYSTEMS
            .iter()
            .enumerate()
            .map(|(i, (name, description, arch))| {
                json!({"name": name, "description": description, "arch": arch, "count": 8 - (i % 4)})
            })
            .collect(),
    )
}

pub(crate) fn countries_json() -> Value {
    Value::Array(COUNTRIES.iter().map(|name| json!({"name": name})).collect())
}

pub(crate) fn languages_json() -> Value {
    Value::Array(LANGUAGES.iter().map(|name| json!({"name": name})).collect())
}

pub(crate) fn is_known_system(name: &str) -> bool {
    SYSTEMS.iter().any(|(known, _, _)| *known == name)
}

/// The `arch` of a system, for reports.
pub(crate) fn system_arch(name: &str) -> &'static str {
    SYSTEMS
        .iter()
        .find(|(known, _, _)| *known == name)
        .map_or("WINDOWS", |(_, _, arch)| arch)
}

/// The description of a system (with its HTML), for the reports' `systemdescription`; an
/// unknown name describes itself.
pub(crate) fn system_description(name: &str) -> &str {
    SYSTEMS
        .iter()
        .find(|(known, _, _)| *known == name)
        .map_or(name, |(_, description, _)| description)
}

/// How a submission parameter's value is checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ParamKind {
    /// `"0"` or `"1"`.
    Bool,
    /// Decimal integer.
    Int,
    /// `YYYY-MM-DD`.
    Date,
    /// Anything (text or a file part).
    Text,
}

/// Every parameter `submission/new` accepts, with the kind of value it takes. Mode-specific
/// refusals (cloud vs on-prem) are applied on top of this list by the endpoint.
pub(crate) const SUBMISSION_PARAMS: &[(&str, ParamKind)] = &[
    ("apikey", ParamKind::Text),
    ("accept-tac", ParamKind::Bool),
    ("sample", ParamKind::Text),
    ("chunked-sample", ParamKind::Text),
    ("sample-url", ParamKind::Text),
    ("url", ParamKind::Text),
    ("command-line", ParamKind::Text),
    ("cookbook", ParamKind::Text),
    ("systems[]", ParamKind::Text),
    ("tags[]", ParamKind::Text),
    ("comments", ParamKind::Text),
    ("analysis-time", ParamKind::Int),
    ("office-files-password", ParamKind::Text),
    ("document-password", ParamKind::Text),
    ("archive-password", ParamKind::Text),
    ("command-line-argument", ParamKind::Text),
    ("localized-internet-country", ParamKind::Text),
    ("language-and-locale", ParamKind::Text),
    ("encrypt-with-password", ParamKind::Text),
    ("browser", ParamKind::Text),
    ("proxy-mode-config", ParamKind::Text),
    ("system-date", ParamKind::Date),
    ("delete-after-days", ParamKind::Int),
    ("priority", ParamKind::Int),
    ("analyze-on-reverser", ParamKind::Bool),
    ("internet-access", ParamKind::Bool),
    ("internet-simulation", ParamKind::Bool),
    ("report-cache", ParamKind::Bool),
    ("hybrid-code-analysis", ParamKind::Bool),
    ("hybrid-decompilation", ParamKind::Bool),
    ("ssl-inspection", ParamKind::Bool),
    ("vba-instrumentation", ParamKind::Bool),
    ("js-instrumentation", ParamKind::Bool),
    ("java-jar-tracing", ParamKind::Bool),
    ("apk-instrumentation", ParamKind::Bool),
    ("amsi-unpacking", ParamKind::Bool),
    ("dotnet-tracing", ParamKind::Bool),
    ("email-notification", ParamKind::Bool),
    ("start-as-normal-user", ParamKind::Bool),
    ("archive-no-unpack", ParamKind::Bool),
    ("hypervisor-based-inspection", ParamKind::Bool),
    ("fast-mode", ParamKind::Bool),
    ("secondary-results", ParamKind::Bool),
    ("powershell-logging", ParamKind::Bool),
    ("disable-chained-runs", ParamKind::Bool),
    ("live-interaction", ParamKind::Bool),
    ("url-reputation", ParamKind::Bool),
    ("anti-evasion-date", ParamKind::Bool),
    ("remote-assistance", ParamKind::Bool),
    ("remote-assistance-view-only", ParamKind::Bool),
    ("static-only", ParamKind::Bool),
    ("export-to-jbxview", ParamKind::Bool),
];

pub(crate) fn submission_param_kind(name: &str) -> Option<ParamKind> {
    SUBMISSION_PARAMS
        .iter()
        .find(|(known, _)| *known == name)
        .map(|(_, kind)| *kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_system_is_listed_and_has_html_in_its_description() {
        assert!(is_known_system(DEFAULT_SYSTEM));
        let systems = systems_json();
        let first = &systems[0];
        assert_eq!(first["name"], DEFAULT_SYSTEM);
        assert!(
            first["description"]
                .as_str()
                .is_some_and(|d| d.contains("<b>"))
        );
    }

    #[test]
    fn every_parameter_name_is_listed_once() {
        let mut names: Vec<_> = SUBMISSION_PARAMS.iter().map(|(n, _)| *n).collect();
        names.sort_unstable();
        let before = names.len();
        names.dedup();
        assert_eq!(before, names.len());
        assert_eq!(countries_json().as_array().map(Vec::len), Some(35));
    }
}
