//! What the sandbox concluded about a malicious or suspicious run: the signatures that fired
//! (with their impact and evidence), the ATT&CK techniques, the YARA hits and the malware
//! configuration. Part of the indicator set of [`super::iocs`]; its facts come in as
//! [`Evidence`] so the two files do not depend on each other both ways.

use super::ReportInput;
use crate::simulator::verdict::Detection;

#[derive(Clone, Debug)]
pub(crate) struct Signature {
    pub(crate) id: u32,
    pub(crate) desc: String,
    /// 0–3; 2 and above is "high".
    pub(crate) impact: u32,
    pub(crate) op: &'static str,
    pub(crate) evidence: String,
    pub(crate) targetid: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Technique {
    pub(crate) tactic_id: &'static str,
    pub(crate) tactic: &'static str,
    pub(crate) id: &'static str,
    pub(crate) name: &'static str,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct YaraHit {
    /// `sample` | `droppedfiles` | `memorydumps` | `unpackedpes`.
    pub(crate) scope: &'static str,
    pub(crate) rule: String,
}

#[derive(Clone, Debug)]
pub(crate) struct MalwareConfig {
    pub(crate) threatname: String,
    pub(crate) c2: Vec<String>,
    pub(crate) botnet: String,
    pub(crate) version: &'static str,
}

/// A file name usable inside a path and a YARA rule name (`Sim.Malicious` → `Sim_Malicious`).
pub(crate) fn rule_name(threatname: &str) -> String {
    let cleaned: String = threatname
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("JoeSecurity_{cleaned}")
}

/// What the run saw that the findings refer to.
pub(crate) struct Evidence<'a> {
    /// The sample's process name.
    pub(crate) sample: &'a str,
    /// The path of the process the sample injected into, if any.
    pub(crate) injected: Option<&'a str>,
    /// The path of the first dropped file, if any.
    pub(crate) dropped: Option<&'a str>,
    pub(crate) c2: &'a str,
    pub(crate) c2_ip: &'a str,
    pub(crate) seed: &'a [u8; 32],
}

pub(crate) struct Findings {
    pub(crate) signatures: Vec<Signature>,
    pub(crate) techniques: Vec<Technique>,
    pub(crate) yara: Vec<YaraHit>,
    pub(crate) config: Option<MalwareConfig>,
}

/// The findings of a malicious or suspicious run (callers give clean runs none).
pub(crate) fn findings(input: &ReportInput, evidence: &Evidence<'_>) -> Findings {
    let malicious = input.detection() == Detection::Malicious;
    let threatname = input.verdict.threatname.clone();
    let mut signatures = Vec::new();
    let mut sig = |id: u32, desc: String, impact: u32, op: &'static str, evidence: String| {
        signatures.push(Signature {
            id,
            desc,
            impact,
            op,
            evidence,
            targetid: 0,
        });
    };
    if malicious {
        if input.url.is_none() {
            sig(
                1095,
                "Antivirus detection for submitted file".into(),
                3,
                "Antivirus",
                format!("{}: {threatname}", evidence.sample),
            );
        }
        if !threatname.is_empty() {
            sig(
                2101,
                format!("Yara detected {threatname}"),
                3,
                "Yara match",
                rule_name(&threatname),
            );
        }
        sig(
            1474,
            "Injects a PE file into a foreign processes".into(),
            3,
            "Memory written",
            evidence.injected.unwrap_or("unknown").to_owned(),
        );
        sig(
            1377,
            "Creates an autostart registry key".into(),
            2,
            "Key value created",
            "HKEY_CURRENT_USER\\Software\\Microsoft\\Windows\\CurrentVersion\\Run".into(),
        );
        if let Some(dropped) = evidence.dropped {
            sig(
                1208,
                "Drops PE files".into(),
                2,
                "File created",
                dropped.to_owned(),
            );
        }
        sig(
            1017,
            "Performs DNS lookups".into(),
            1,
            "DNS query",
            evidence.c2.to_owned(),
        );
    } else if input.url.is_some() {
        sig(
            1620,
            "Page contains a suspicious login form".into(),
            1,
            "HTML parsed",
            "form action=login.php".into(),
        );
    } else {
        sig(
            1520,
            "Sample contains suspicious strings".into(),
            1,
            "Section loaded",
            evidence.sample.to_owned(),
        );
    }

    let techniques = if malicious {
        vec![
            Technique {
                tactic_id: "TA0003",
                tactic: "Persistence",
                id: "T1547.001",
                name: "Registry Run Keys / Startup Folder",
            },
            Technique {
                tactic_id: "TA0005",
                tactic: "Defense Evasion",
                id: "T1055",
                name: "Process Injection",
            },
            Technique {
                tactic_id: "TA0007",
                tactic: "Discovery",
                id: "T1082",
                name: "System Information Discovery",
            },
            Technique {
                tactic_id: "TA0011",
                tactic: "Command and Control",
                id: "T1071",
                name: "Application Layer Protocol",
            },
        ]
    } else {
        vec![Technique {
            tactic_id: "TA0007",
            tactic: "Discovery",
            id: "T1082",
            name: "System Information Discovery",
        }]
    };

    let mut yara = Vec::new();
    if malicious {
        let rule = rule_name(if threatname.is_empty() {
            "Generic"
        } else {
            &threatname
        });
        yara.push(YaraHit {
            scope: "memorydumps",
            rule: rule.clone(),
        });
        if input.url.is_none() {
            yara.push(YaraHit {
                scope: "unpackedpes",
                rule,
            });
        }
        if evidence.dropped.is_some() {
            yara.push(YaraHit {
                scope: "droppedfiles",
                rule: "Embedded_PE".into(),
            });
        }
    } else {
        yara.push(YaraHit {
            scope: "sample",
            rule: "SUSP_Obfuscated_Strings".into(),
        });
    }

    let config = malicious.then(|| MalwareConfig {
        threatname: threatname.clone(),
        c2: vec![
            format!("{}:443", evidence.c2),
            format!("{}:8080", evidence.c2_ip),
        ],
        botnet: format!("sim-{}", hex::encode(&evidence.seed[17..19])),
        // Three parts, as malware versions usually are (and so text in every rendering: a
        // converter that types element text would make "2.1" a number in the XML).
        version: "2.1.4",
    });

    Findings {
        signatures,
        techniques,
        yara,
        config,
    }
}
