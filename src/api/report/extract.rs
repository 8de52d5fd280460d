//! Where the facts are in a report, and what each record yields: the one table both readers
//! walk by ([`child`]), and the [`Collector`] that turns captured records into
//! [`ReportFacts`] within the caps of `mod.rs`.
//!
//! The full report and the incident report share the root `analysis` but no section name, so
//! one table serves both; the family is decided at the end from what was seen.

use super::node::Node;
use super::{
    MAX_CONFIGS, MAX_ERRORS, MAX_INDICATORS, MAX_KEPT_BYTES, MAX_SIGNATURES, MAX_STRING,
    MAX_TECHNIQUES, MAX_YARA,
};
use super::{
    RawConfig, RawIndicator, RawSignature, RawTechnique, RawYaraHit, ReportFacts, ReportFamily,
    ReportVerdict,
};
use crate::ioc::Kind;

/// A container the readers descend into (its other children are skipped unread).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Place {
    Analysis,
    FileInfo,
    SigDetections,
    SigInfo,
    DomainInfo,
    IpInfo,
    UrlInfo,
    DroppedInfo,
    Mitre,
    Yara,
    /// `yara/<scope>`: the scope is the element's name, kept by the reader.
    YaraScope,
    Configs,
    ErrorInfo,
    Dropped,
    Contacted,
    ContactedIps,
    ContactedDomains,
    ContactedUrls,
    Signatures,
    Errors,
}

/// One value the readers capture whole (bounded) and hand to [`Collector::record`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rec {
    ReportType,
    FileField(Kind),
    Strategy,
    Sig,
    Domain,
    Ip,
    Url,
    DroppedHash,
    Tactic,
    YaraHit,
    Config,
    Error,
    IrDetection,
    IrConfidence,
    IrHashes,
    IrFile,
    IrIp,
    IrDomain,
    IrUrl,
    IrSignature,
}

/// What to do with a child of a [`Place`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Skip,
    Enter(Place),
    Capture(Rec),
}

/// Sections only the full report has, and only the incident report has (family detection).
const FULL_SECTIONS: &[&str] = &[
    "generalinfo",
    "fileinfo",
    "signaturedetections",
    "signatureinfo",
    "domaininfo",
    "ipinfo",
    "urlinfo",
    "droppedinfo",
    "behavior",
    "mitreattack",
];
const INCIDENT_SECTIONS: &[&str] = &[
    "detection",
    "confidence",
    "contacted",
    "dropped",
    "signatures",
];

/// The walk table: what a child named `key` of `place` is.
pub(crate) fn child(place: Place, key: &str) -> Action {
    use Action::{Capture, Enter, Skip};
    match (place, key) {
        (Place::Analysis, "reporttype") => Capture(Rec::ReportType),
        (Place::Analysis, "fileinfo") => Enter(Place::FileInfo),
        (Place::Analysis, "signaturedetections") => Enter(Place::SigDetections),
        (Place::Analysis, "signatureinfo") => Enter(Place::SigInfo),
        (Place::Analysis, "domaininfo") => Enter(Place::DomainInfo),
        (Place::Analysis, "ipinfo") => Enter(Place::IpInfo),
        (Place::Analysis, "urlinfo") => Enter(Place::UrlInfo),
        (Place::Analysis, "droppedinfo") => Enter(Place::DroppedInfo),
        (Place::Analysis, "mitreattack") => Enter(Place::Mitre),
        (Place::Analysis, "yara") => Enter(Place::Yara),
        (Place::Analysis, "malware_configs") => Enter(Place::Configs),
        (Place::Analysis, "errorinfo") => Enter(Place::ErrorInfo),
        (Place::Analysis, "detection") => Capture(Rec::IrDetection),
        (Place::Analysis, "confidence") => Capture(Rec::IrConfidence),
        (Place::Analysis, "hashes") => Capture(Rec::IrHashes),
        (Place::Analysis, "dropped") => Enter(Place::Dropped),
        (Place::Analysis, "contacted") => Enter(Place::Contacted),
        (Place::Analysis, "signatures") => Enter(Place::Signatures),
        (Place::Analysis, "errors") => Enter(Place::Errors),
        (Place::FileInfo, "filename") => Capture(Rec::FileField(Kind::FileName)),
        (Place::FileInfo, "md5") => Capture(Rec::FileField(Kind::Md5)),
        (Place::FileInfo, "sha1") => Capture(Rec::FileField(Kind::Sha1)),
        (Place::FileInfo, "sha256") => Capture(Rec::FileField(Kind::Sha256)),
        (Place::FileInfo, "sha512") => Capture(Rec::FileField(Kind::Sha512)),
        (Place::SigDetections, "strategy") => Capture(Rec::Strategy),
        (Place::SigInfo, "sig") => Capture(Rec::Sig),
        (Place::DomainInfo, "domain") => Capture(Rec::Domain),
        (Place::IpInfo, "ip") => Capture(Rec::Ip),
        (Place::UrlInfo, "url") => Capture(Rec::Url),
        (Place::DroppedInfo, "hash") => Capture(Rec::DroppedHash),
        (Place::Mitre, "tactic") => Capture(Rec::Tactic),
        (Place::Yara, key) if !key.starts_with('@') && key != "$" => Enter(Place::YaraScope),
        (Place::YaraScope, "hit") => Capture(Rec::YaraHit),
        (Place::Configs, "config") => Capture(Rec::Config),
        (Place::ErrorInfo | Place::Errors, "error") => Capture(Rec::Error),
        (Place::Dropped, "file") => Capture(Rec::IrFile),
        (Place::Contacted, "ips") => Enter(Place::ContactedIps),
        (Place::Contacted, "domains") => Enter(Place::ContactedDomains),
        (Place::Contacted, "urls") => Enter(Place::ContactedUrls),
        (Place::ContactedIps, "ip") => Capture(Rec::IrIp),
        (Place::ContactedDomains, "domain") => Capture(Rec::IrDomain),
        (Place::ContactedUrls, "url") => Capture(Rec::IrUrl),
        (Place::Signatures, "signare") => Capture(Rec::IrSignature),
        _ => Skip,
    }
}

/// What a scalar standing where a container was expected means (`"errors": "text"`).
pub(crate) fn scalar_in(place: Place) -> Option<Rec> {
    (place == Place::Errors || place == Place::ErrorInfo).then_some(Rec::Error)
}

/// Collects facts from records, within the caps; decides the family at the end.
#[derive(Debug, Default)]
pub(crate) struct Collector {
    facts: ReportFacts,
    kept_bytes: usize,
    says_incident: bool,
    saw_full: bool,
    saw_incident: bool,
}

impl Collector {
    /// A child of `analysis` was seen (family detection).
    pub(crate) fn saw_section(&mut self, key: &str) {
        self.saw_full |= FULL_SECTIONS.contains(&key);
        self.saw_incident |= INCIDENT_SECTIONS.contains(&key);
    }

    /// A captured record could not be kept whole (its size budget ran out).
    pub(crate) fn mark_truncated(&mut self) {
        self.facts.truncated = true;
    }

    pub(crate) fn finish(mut self) -> ReportFacts {
        self.facts.family = if self.says_incident {
            Some(ReportFamily::Incident)
        } else if self.saw_full {
            Some(ReportFamily::Full)
        } else if self.saw_incident {
            Some(ReportFamily::Incident)
        } else {
            None
        };
        self.facts
    }

    /// Takes what `rec` yields from `node`; `scope` is the `yara/<scope>` name for a YARA hit.
    pub(crate) fn record(&mut self, rec: Rec, node: &Node, scope: &str) {
        match rec {
            Rec::ReportType => {
                self.says_incident |= node.text().is_some_and(|t| t.eq_ignore_ascii_case("IR"))
            }
            Rec::FileField(kind) => {
                if let Some(value) = node.text() {
                    self.indicator(kind, value, None, None, "fileinfo");
                }
            }
            Rec::Strategy => self.strategy(node),
            Rec::Sig => {
                if let Some(description) = node.text_of(&["@desc", "desc"]) {
                    let id = node.text_of(&["@id", "id"]).map(str::to_owned);
                    let impact = node.int_of(&["@impact", "impact"]);
                    self.signature(id, description, impact);
                }
            }
            Rec::Domain => self.host(node, &["@name", "name"], Kind::Domain, "domaininfo"),
            Rec::Ip => {
                if let Some(ip) = node.text_of(&["@ip", "ip"]) {
                    let private = node.flag_of(&["@private", "private"]);
                    let malicious = node.flag_of(&["@malicious", "malicious"]);
                    self.indicator(Kind::Ip, ip, malicious, private, "ipinfo");
                }
            }
            Rec::Url => self.host(node, &["@name", "name"], Kind::Url, "urlinfo"),
            Rec::DroppedHash => self.dropped_hash(node),
            Rec::Tactic => self.tactic(node),
            Rec::YaraHit => {
                let rule = node.text_of(&["rule", "@rule"]).or_else(|| node.text());
                if let Some(rule) = rule {
                    self.yara(rule, scope);
                }
            }
            Rec::Config => self.config(node),
            Rec::Error => {
                if let Some(text) = node.text() {
                    self.error(text);
                }
            }
            Rec::IrDetection => self.ir_detection(node),
            Rec::IrConfidence => {
                if let Some(score) = node.int_of(&["score"]).or_else(|| node.int()) {
                    self.verdict().confidence = Some(score);
                }
            }
            Rec::IrHashes => {
                for (key, kind) in HASH_KEYS {
                    if let Some(value) = node.text_of(&[key]) {
                        self.indicator(*kind, value, None, None, "hashes");
                    }
                }
            }
            Rec::IrFile => {
                let malicious = node.flag_of(&["malicious", "@malicious"]);
                if let Some(name) = node.text_of(&["name", "@name"]) {
                    self.indicator(Kind::FileName, name, malicious, None, "dropped");
                }
                for (key, kind) in HASH_KEYS {
                    if let Some(value) = node.text_of(&[key]) {
                        self.indicator(*kind, value, malicious, None, "dropped");
                    }
                }
            }
            Rec::IrIp => {
                // `{"@malicious": "true", "$": "1.2.3.4"}`, or a bare string (older reports).
                let ip = node.text().or_else(|| node.text_of(&["ip", "name"]));
                if let Some(ip) = ip {
                    let malicious = node.flag_of(&["@malicious", "malicious"]);
                    self.indicator(Kind::Ip, ip, malicious, None, "contacted.ips");
                }
            }
            Rec::IrDomain => {
                // `{name, malicious, ip}` (current), or text + `@malicious` (older).
                self.host(node, &["name", "@name"], Kind::Domain, "contacted.domains")
            }
            Rec::IrUrl => self.host(node, &["name", "@name"], Kind::Url, "contacted.urls"),
            Rec::IrSignature => {
                if let Some(text) = node.text() {
                    self.signature(None, text, None);
                }
            }
        }
    }

    fn verdict(&mut self) -> &mut ReportVerdict {
        self.facts
            .verdict
            .get_or_insert_with(ReportVerdict::default)
    }

    /// `signaturedetections/strategy`: only the one named `empiric` carries the verdict.
    fn strategy(&mut self, node: &Node) {
        if node.text_of(&["@name", "name"]) != Some("empiric") {
            return;
        }
        let detection = node
            .get("detection")
            .and_then(Node::raw)
            .and_then(api_word)
            .or_else(|| first_true(node));
        let score = node.int_of(&["score"]);
        let threatname = node.text_of(&["threatname"]).map(|t| self.kept(t));
        let verdict = self.verdict();
        verdict.detection = detection.map(str::to_owned);
        verdict.score = score;
        verdict.threatname = threatname;
    }

    fn ir_detection(&mut self, node: &Node) {
        let detection = first_true(node)
            .or_else(|| node.get("detection").and_then(Node::raw).and_then(api_word));
        let score = node.int_of(&["score"]);
        let verdict = self.verdict();
        verdict.detection = detection.map(str::to_owned);
        verdict.score = score;
    }

    /// A domain or URL record (full or IR), with the address it resolved to when given.
    fn host(&mut self, node: &Node, name_keys: &[&str], kind: Kind, section: &'static str) {
        let malicious = node.flag_of(&["@malicious", "malicious"]);
        // The older IR form is the element's text: `<domain malicious="true">x</domain>`.
        if let Some(name) = node.text_of(name_keys).or_else(|| node.text()) {
            self.indicator(kind, name, malicious, None, section);
        }
        if let Some(ip) = node.text_of(&["@ip", "ip"]) {
            // The address's own verdict is not the name's: it is not stated here.
            self.indicator(Kind::Ip, ip, None, None, section);
        }
    }

    fn dropped_hash(&mut self, node: &Node) {
        let malicious = node.flag_of(&["@malicious", "malicious"]);
        if let Some(file) = node.text_of(&["@file", "file"]) {
            self.indicator(Kind::FileName, file, malicious, None, "droppedinfo");
        }
        for value in node.all("value") {
            let kind = value.text_of(&["@algo", "algo"]).and_then(hash_kind);
            if let (Some(kind), Some(hash)) = (kind, value.text()) {
                self.indicator(kind, hash, malicious, None, "droppedinfo");
            }
        }
    }

    fn tactic(&mut self, node: &Node) {
        let tactic = node.text_of(&["name", "@name"]).map(|t| self.kept(t));
        for technique in node.all("technique") {
            let Some(id) = technique
                .text_of(&["id", "@id"])
                .or_else(|| technique.text())
            else {
                continue;
            };
            if !self.room(self.facts.techniques.len(), MAX_TECHNIQUES, id.len() + 64) {
                return;
            }
            let name = technique.text_of(&["name", "@name"]).map(|n| self.kept(n));
            let id = self.kept(id);
            self.facts.techniques.push(RawTechnique {
                id,
                name,
                tactic: tactic.clone(),
            });
        }
    }

    fn config(&mut self, node: &Node) {
        let json = node.to_json();
        if !self.room(self.facts.configs.len(), MAX_CONFIGS, json.len()) {
            return;
        }
        let threatname = node
            .text_of(&["@threatname", "threatname"])
            .map(|t| self.kept(t));
        self.facts.configs.push(RawConfig { threatname, json });
    }

    fn indicator(
        &mut self,
        kind: Kind,
        value: &str,
        malicious: Option<bool>,
        private: Option<bool>,
        section: &'static str,
    ) {
        if self.room(
            self.facts.indicators.len(),
            MAX_INDICATORS,
            value.len() + 48,
        ) {
            let value = self.kept(value);
            self.facts.indicators.push(RawIndicator {
                kind,
                value,
                malicious,
                private,
                section,
            });
        }
    }

    fn signature(&mut self, id: Option<String>, description: &str, impact: Option<i64>) {
        if self.room(
            self.facts.signatures.len(),
            MAX_SIGNATURES,
            description.len() + 64,
        ) {
            let description = self.kept(description);
            self.facts.signatures.push(RawSignature {
                id,
                description,
                impact,
            });
        }
    }

    fn yara(&mut self, rule: &str, scope: &str) {
        if self.room(
            self.facts.yara.len(),
            MAX_YARA,
            rule.len() + scope.len() + 48,
        ) {
            let rule = self.kept(rule);
            let scope = self.kept(scope);
            self.facts.yara.push(RawYaraHit { rule, scope });
        }
    }

    fn error(&mut self, text: &str) {
        if self.room(self.facts.errors.len(), MAX_ERRORS, text.len() + 24) {
            let text = self.kept(text);
            self.facts.errors.push(text);
        }
    }

    /// Whether one more fact of `bytes` fits beside `count` kept of at most `max`; marks the
    /// facts truncated when not.
    fn room(&mut self, count: usize, max: usize, bytes: usize) -> bool {
        if count >= max || self.kept_bytes + bytes > MAX_KEPT_BYTES {
            self.facts.truncated = true;
            return false;
        }
        self.kept_bytes += bytes;
        true
    }

    /// A kept string, cut to [`MAX_STRING`] bytes (on a character boundary).
    fn kept(&self, text: &str) -> String {
        truncate(text, MAX_STRING).to_owned()
    }
}

/// `text` cut to at most `max` bytes, on a character boundary.
pub(crate) fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

const HASH_KEYS: &[(&str, Kind)] = &[
    ("md5", Kind::Md5),
    ("sha1", Kind::Sha1),
    ("sha256", Kind::Sha256),
    ("sha512", Kind::Sha512),
];

/// `droppedinfo/hash/value/@algo` → the hash kind.
fn hash_kind(algo: &str) -> Option<Kind> {
    match algo.to_ascii_uppercase().replace('_', "-").as_str() {
        "MD5" => Some(Kind::Md5),
        "SHA" | "SHA1" | "SHA-1" => Some(Kind::Sha1),
        "SHA256" | "SHA-256" => Some(Kind::Sha256),
        "SHA512" | "SHA-512" => Some(Kind::Sha512),
        _ => None,
    }
}

/// The report's detection word (`MAL`, `SUS`, `CLEAN`, `UNKNOWN`, or already the API's word).
fn api_word(word: &str) -> Option<&'static str> {
    match word.to_ascii_uppercase().as_str() {
        "MAL" | "MALICIOUS" => Some("malicious"),
        "SUS" | "SUSPICIOUS" => Some("suspicious"),
        "CLEAN" => Some("clean"),
        "UNKNOWN" => Some("unknown"),
        _ => None,
    }
}

/// The first true of the booleans `malicious` > `suspicious` > `clean` > `unknown`.
fn first_true(node: &Node) -> Option<&'static str> {
    ["malicious", "suspicious", "clean", "unknown"]
        .into_iter()
        .find(|word| node.flag_of(&[word]) == Some(true))
}
