//! What one run of an analysis "saw": processes, contacted domains, IPs and URLs, dropped files,
//! signatures, ATT&CK techniques, YARA hits and a malware configuration. Every report type that
//! shows indicators (full, light, IR, `ioc`, `stix`, `misp`, `openioc`, the `bins` archive)
//! renders this one set, so they agree with each other and with `analysis/info`.
//!
//! The set is a function of the analysis (seeded without the run, so runs share their IOCs)
//! and of its verdict: malicious and suspicious analyses get indicators, clean and unknown ones
//! none. Runs after the first see one URL fewer, so run 0 (what a download without `run`
//! returns) is the most relevant one. Only safe values are used: RFC 2606 names (`.example`,
//! `.example.net`), RFC 5737 documentation addresses and one private 192.168.x.x address.

use md5::Md5;
use sha1::Sha1;
use sha2::{Digest, Sha256, Sha512};

use super::ReportInput;
use super::findings::{Evidence, MalwareConfig, Signature, Technique, YaraHit, findings};
use crate::simulator::verdict::Detection;

#[derive(Clone, Debug)]
pub(crate) struct Process {
    pub(crate) targetid: u32,
    pub(crate) pid: u32,
    pub(crate) parentpid: u32,
    pub(crate) name: String,
    pub(crate) path: String,
    pub(crate) cmdline: String,
}

#[derive(Clone, Debug)]
pub(crate) struct Domain {
    pub(crate) name: String,
    /// `None` when it did not resolve (the reports then say `unknown`).
    pub(crate) ip: Option<String>,
    pub(crate) malicious: bool,
    pub(crate) targetid: u32,
}

#[derive(Clone, Debug)]
pub(crate) struct Ip {
    pub(crate) ip: String,
    pub(crate) malicious: bool,
    pub(crate) private: bool,
    pub(crate) domain: Option<String>,
    pub(crate) country: &'static str,
    pub(crate) countrycode: &'static str,
    pub(crate) countrycode2l: &'static str,
    pub(crate) asnname: &'static str,
    pub(crate) asnnbr: u32,
    pub(crate) targetid: u32,
}

#[derive(Clone, Debug)]
pub(crate) struct Url {
    pub(crate) name: String,
    pub(crate) ip: Option<String>,
    pub(crate) malicious: bool,
    /// Found in memory only: `targetid` -1 and `currentpath` unknown in the reports.
    pub(crate) from_memory: bool,
    pub(crate) targetid: u32,
}

#[derive(Clone, Debug)]
pub(crate) struct Dropped {
    pub(crate) path: String,
    /// The member name in the `bins` archive.
    pub(crate) member: String,
    pub(crate) content: Vec<u8>,
    pub(crate) md5: String,
    pub(crate) sha1: String,
    pub(crate) sha256: String,
    pub(crate) sha512: String,
    pub(crate) malicious: bool,
    pub(crate) file_type: &'static str,
    pub(crate) targetid: u32,
}

#[derive(Clone, Debug)]
pub(crate) struct Iocs {
    pub(crate) processes: Vec<Process>,
    pub(crate) domains: Vec<Domain>,
    pub(crate) ips: Vec<Ip>,
    pub(crate) urls: Vec<Url>,
    pub(crate) dropped: Vec<Dropped>,
    pub(crate) signatures: Vec<Signature>,
    pub(crate) techniques: Vec<Technique>,
    pub(crate) yara: Vec<YaraHit>,
    pub(crate) config: Option<MalwareConfig>,
}

/// Where things live on the analysis system.
pub(crate) struct Paths {
    pub(crate) desktop: &'static str,
    pub(crate) temp: &'static str,
    pub(crate) system: &'static str,
    pub(crate) browser: &'static str,
    pub(crate) windows: bool,
}

pub(crate) fn paths(arch: &str) -> Paths {
    if arch == "WINDOWS" {
        Paths {
            desktop: "C:\\Users\\user\\Desktop\\",
            temp: "C:\\Users\\user\\AppData\\Local\\Temp\\",
            system: "C:\\Windows\\SysWOW64\\",
            browser: "C:\\Program Files\\Google\\Chrome\\Application\\chrome.exe",
            windows: true,
        }
    } else {
        Paths {
            desktop: "/home/user/",
            temp: "/tmp/",
            system: "/usr/bin/",
            browser: "/usr/bin/firefox",
            windows: false,
        }
    }
}

/// 1..=254 from a seed byte: never a network or broadcast address.
fn octet(byte: u8) -> u8 {
    1 + byte % 254
}

/// The last path component of a sample name, for process names and paths.
fn base_name(name: &str) -> &str {
    name.rsplit(['/', '\\']).next().unwrap_or(name)
}

/// The host part of a URL, without a port or credentials.
pub(crate) fn host_of(url: &str) -> Option<String> {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next()?;
    let host = authority.rsplit('@').next()?;
    let host = host.split(':').next()?;
    (!host.is_empty()).then(|| host.to_ascii_lowercase())
}

pub(crate) fn iocs(input: &ReportInput) -> Iocs {
    let detection = input.detection();
    let seed = input.analysis_seed("iocs");
    let paths = paths(input.arch);
    let label = hex::encode(&seed[..3]);
    let label2 = hex::encode(&seed[3..6]);
    let pid = 1000 + u32::from(u16::from_le_bytes([seed[6], seed[7]]) % 8000);

    let mut processes = vec![match &input.url {
        Some(url) => Process {
            targetid: 0,
            pid,
            parentpid: 1,
            name: base_name(paths.browser).to_owned(),
            path: paths.browser.to_owned(),
            cmdline: format!("\"{}\" \"{url}\"", paths.browser),
        },
        None => {
            let name = base_name(&input.filename).to_owned();
            let path = format!("{}{name}", paths.desktop);
            Process {
                targetid: 0,
                pid,
                parentpid: 1,
                cmdline: format!("\"{path}\""),
                name,
                path,
            }
        }
    }];
    if detection < Detection::Suspicious {
        return Iocs {
            processes,
            domains: vec![],
            ips: vec![],
            urls: vec![],
            dropped: vec![],
            signatures: vec![],
            techniques: vec![],
            yara: vec![],
            config: None,
        };
    }
    let malicious = detection == Detection::Malicious;
    if malicious {
        let name = if paths.windows { "svchost.exe" } else { "sshd" };
        let path = format!("{}{name}", paths.system);
        processes.push(Process {
            targetid: 1,
            pid: pid + 4 + u32::from(seed[8] % 64) * 4,
            parentpid: pid,
            cmdline: format!("{path} -k netsvcs"),
            name: name.to_owned(),
            path,
        });
    }
    // The process that talks to the network: the injected child when there is one.
    let talker = if malicious { 1 } else { 0 };

    let c2 = format!("c2-{label}.example");
    let cdn = format!("cdn-{label}.example.net");
    let dga = format!("dga-{label2}.example");
    let c2_ip = format!("203.0.113.{}", octet(seed[9]));
    let cdn_ip = format!("198.51.100.{}", octet(seed[10]));
    let private_ip = format!("192.168.2.{}", octet(seed[11]));

    let mut domains = Vec::new();
    let mut ips = Vec::new();
    let mut urls = Vec::new();
    if let Some(url) = &input.url
        && let Some(host) = host_of(url)
    {
        let ip = format!("192.0.2.{}", octet(seed[12]));
        domains.push(Domain {
            name: host.clone(),
            ip: Some(ip.clone()),
            malicious,
            targetid: 0,
        });
        ips.push(Ip {
            ip: ip.clone(),
            malicious,
            private: false,
            domain: Some(host),
            country: "United States",
            countrycode: "USA",
            countrycode2l: "us",
            asnname: "SIM-DOC-NET-1",
            asnnbr: 64496,
            targetid: 0,
        });
        urls.push(Url {
            name: url.clone(),
            ip: Some(ip),
            malicious,
            from_memory: false,
            targetid: 0,
        });
    }
    if malicious {
        domains.push(Domain {
            name: c2.clone(),
            ip: Some(c2_ip.clone()),
            malicious: true,
            targetid: talker,
        });
        ips.push(Ip {
            ip: c2_ip.clone(),
            malicious: true,
            private: false,
            domain: Some(c2.clone()),
            country: "Netherlands",
            countrycode: "NLD",
            countrycode2l: "nl",
            asnname: "SIM-TESTNET-3",
            asnnbr: 64511,
            targetid: talker,
        });
        urls.push(Url {
            name: format!("http://{c2}/gate.php"),
            ip: Some(c2_ip.clone()),
            malicious: true,
            from_memory: false,
            targetid: talker,
        });
    }
    domains.push(Domain {
        name: cdn.clone(),
        ip: Some(cdn_ip.clone()),
        malicious: false,
        targetid: talker,
    });
    domains.push(Domain {
        name: dga.clone(),
        ip: None,
        malicious,
        targetid: talker,
    });
    ips.push(Ip {
        ip: cdn_ip.clone(),
        malicious: false,
        private: false,
        domain: Some(cdn.clone()),
        country: "Germany",
        countrycode: "DEU",
        countrycode2l: "de",
        asnname: "SIM-TESTNET-2",
        asnnbr: 64500,
        targetid: talker,
    });
    ips.push(Ip {
        ip: private_ip,
        malicious: false,
        private: true,
        domain: None,
        country: "unknown",
        countrycode: "unknown",
        countrycode2l: "unknown",
        asnname: "unknown",
        asnnbr: 0,
        targetid: talker,
    });
    if input.run == 0 {
        // Later runs miss this one: the "one IOC fewer" that makes run 0 the most relevant.
        urls.push(Url {
            name: format!("https://{cdn}/lib/jquery.min.js"),
            ip: Some(cdn_ip),
            malicious: false,
            from_memory: false,
            targetid: talker,
        });
    }
    urls.push(Url {
        name: format!("http://{dga}/{}", hex::encode(&seed[13..17])),
        ip: None,
        malicious,
        from_memory: true,
        targetid: 0,
    });

    let dropped = dropped_files(input, &paths, &seed);
    let found = findings(
        input,
        &Evidence {
            sample: &processes[0].name,
            injected: processes.get(1).map(|p| p.path.as_str()),
            dropped: dropped.first().map(|d| d.path.as_str()),
            c2: &c2,
            c2_ip: &c2_ip,
            seed: &seed,
        },
    );
    Iocs {
        processes,
        domains,
        ips,
        urls,
        dropped,
        signatures: found.signatures,
        techniques: found.techniques,
        yara: found.yara,
        config: found.config,
    }
}

/// Files "dropped" by a file analysis that is at least suspicious: their bytes are the members
/// of the `bins` archive, so the hashes the reports show are the hashes of those members.
fn dropped_files(input: &ReportInput, paths: &Paths, seed: &[u8; 32]) -> Vec<Dropped> {
    if input.facts.is_none() || !input.verdict.dropped_files() {
        return vec![];
    }
    let count = if input.detection() == Detection::Malicious {
        2
    } else {
        1
    };
    (0..count)
        .map(|i| {
            let mut content = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff".to_vec();
            content.extend_from_slice(
                format!("jbxd simulator dropped file {i} of {}\n", input.webid).as_bytes(),
            );
            content.extend_from_slice(seed);
            let sha256 = hex::encode(Sha256::digest(&content));
            let stem = if i == 0 {
                format!("{}.exe", hex::encode(&seed[20..24]))
            } else {
                format!("~DF{}.tmp", hex::encode(&seed[24..26]).to_ascii_uppercase())
            };
            Dropped {
                path: format!("{}{stem}", paths.temp),
                member: sha256.clone(),
                md5: hex::encode(Md5::digest(&content)),
                sha1: hex::encode(Sha1::digest(&content)),
                sha512: hex::encode(Sha512::digest(&content)),
                sha256,
                content,
                malicious: i == 0 && input.detection() == Detection::Malicious,
                file_type: if i == 0 {
                    "PE32 executable (GUI) Intel 80386, for MS Windows"
                } else {
                    "data"
                },
                targetid: 0,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulator::reports::tests::{file_input, url_input};

    #[test]
    fn a_malicious_file_sees_a_few_of_everything_with_one_private_ip_and_one_unresolved_domain() {
        let dir = tempfile::tempdir().expect("tempdir");
        let input = file_input(dir.path(), "a.exe", b"MZ JBXD-MALICIOUS");
        let iocs = iocs(&input);
        assert_eq!(iocs.domains.len(), 3);
        assert_eq!(iocs.ips.iter().filter(|ip| ip.private).count(), 1);
        assert_eq!(iocs.domains.iter().filter(|d| d.ip.is_none()).count(), 1);
        assert_eq!(iocs.urls.iter().filter(|u| u.from_memory).count(), 1);
        assert_eq!(iocs.dropped.len(), 2);
        assert_eq!(
            iocs.config.as_ref().map(|c| c.threatname.as_str()),
            Some("Sim.Malicious")
        );
        assert!(iocs.signatures.iter().any(|s| s.impact >= 2));
        for domain in &iocs.domains {
            assert!(
                domain.name.ends_with(".example") || domain.name.ends_with(".example.net"),
                "{}",
                domain.name
            );
        }
        for ip in &iocs.ips {
            assert!(
                ["192.0.2.", "198.51.100.", "203.0.113.", "192.168."]
                    .iter()
                    .any(|p| ip.ip.starts_with(p)),
                "{}",
                ip.ip
            );
        }
    }

    #[test]
    fn a_clean_url_sees_nothing() {
        let iocs = iocs(&url_input("https://example.org"));
        assert!(iocs.domains.is_empty() && iocs.ips.is_empty() && iocs.urls.is_empty());
        assert!(iocs.signatures.is_empty() && iocs.yara.is_empty() && iocs.config.is_none());
    }

    #[test]
    fn a_malicious_url_contacts_its_own_host_first() {
        let iocs = iocs(&url_input("http://evil.example/x"));
        assert_eq!(iocs.domains[0].name, "evil.example");
        assert_eq!(iocs.urls[0].name, "http://evil.example/x");
        assert!(iocs.dropped.is_empty(), "URL analyses drop nothing");
    }

    #[test]
    fn hosts_are_taken_from_the_authority() {
        assert_eq!(
            host_of("https://u:p@Example.org:8443/a?b").as_deref(),
            Some("example.org")
        );
        assert_eq!(host_of("example.org/x").as_deref(), Some("example.org"));
        assert_eq!(host_of("http:///x"), None);
    }
}
