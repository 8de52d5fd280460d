//! The `behavior` section: the process tree, each process' `general` facts with its file and
//! registry `call` lists, and the network packets to the contacted addresses. A real report's
//! bulk sits here; [`padded`] streams a big but realistic one for benchmarks.

use chrono::Duration;

use super::ReportInput;
use super::iocs::{Iocs, Process};
use super::tree::{ChildStream, Element};

/// How much of the behaviour a report shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Detail {
    Full,
    /// What Joe's light reports leave out is not documented. Our choice: the per-process file
    /// and registry call lists (the bulk of a real report) go; processes, their tree and the
    /// network packets stay.
    Light,
}

/// The sandbox machine's own address and its resolver, as in the `pcap` download.
const SANDBOX_IP: &str = "192.168.2.100";
const RESOLVER_IP: &str = "192.168.2.1";

pub(crate) fn section(input: &ReportInput, iocs: &Iocs, detail: Detail) -> Element {
    let processes = iocs
        .processes
        .iter()
        .map(|p| process(input, iocs, p, detail))
        .collect();
    Element::new("behavior")
        .child(
            Element::new("system")
                .child(startup_overview(iocs))
                .child(Element::list("processes", "process", processes)),
        )
        .child(network(input, iocs))
}

/// The nested process tree (`startupoverview/process/process`).
fn startup_overview(iocs: &Iocs) -> Element {
    fn node(iocs: &Iocs, p: &Process) -> Element {
        let children = iocs
            .processes
            .iter()
            .filter(|c| c.parentpid == p.pid && c.targetid != p.targetid)
            .map(|c| node(iocs, c));
        Element::new("process")
            .attr("name", &p.name)
            .attr("pid", p.pid)
            .attr("cmdline", &p.cmdline)
            .attr("path", &p.path)
            .attr("targetid", p.targetid)
            .attr("hasexited", p.targetid == 0)
            .children(children)
    }
    Element::new("startupoverview").children(
        iocs.processes
            .iter()
            .filter(|p| p.targetid == 0)
            .map(|p| node(iocs, p)),
    )
}

fn general(input: &ReportInput, p: &Process, md5: &str, offset_secs: i64) -> Element {
    let time = input.time + Duration::seconds(offset_secs);
    Element::new("general")
        .child(Element::leaf("targetid", p.targetid))
        .child(Element::leaf("pid", p.pid))
        .child(Element::leaf("parentpid", p.parentpid))
        .child(Element::leaf("name", &p.name))
        .child(Element::leaf("path", &p.path))
        .child(Element::leaf("cmdline", &p.cmdline))
        .child(Element::leaf("date", time.format("%d/%m/%Y").to_string()))
        .child(Element::leaf("time", time.format("%H:%M:%S").to_string()))
        .child(Element::leaf("md5", md5.to_ascii_uppercase()))
        .child(Element::leaf("reason", "newprocess"))
        .child(Element::leaf("isadmin", false))
        .child(Element::leaf("isdropped", false))
        .child(Element::leaf("wow64", true))
}

fn file_call(path: &str, symbol: &str) -> Element {
    Element::new("call")
        .child(Element::leaf("path", path))
        .child(Element::leaf("count", 1u32))
        .child(Element::leaf("ret", "object name not found"))
        .child(Element::leaf("status", "success or wait"))
        .child(Element::leaf("symbol", symbol))
}

fn registry_call(path: &str, name: &str, data: &str) -> Element {
    Element::new("call")
        .child(Element::leaf("path", path))
        .child(Element::leaf("name", name))
        .child(Element::leaf("type", "unicode"))
        .child(Element::leaf("newdata", data))
        .child(Element::leaf("count", 1u32))
        .child(Element::leaf("status", "success or wait"))
        .child(Element::leaf("symbol", "RegSetValueExW"))
}

fn process(input: &ReportInput, iocs: &Iocs, p: &Process, detail: Detail) -> Element {
    let md5 = if p.targetid == 0 { input.md5() } else { "" };
    let element = Element::new("process").child(general(input, p, md5, i64::from(p.targetid)));
    if detail == Detail::Light {
        return element;
    }
    let mut created = Vec::new();
    let mut read = Vec::new();
    let mut values = Vec::new();
    if p.targetid == 0 {
        read.push(file_call(&p.path, "ReadFile"));
        created.extend(
            iocs.dropped
                .iter()
                .map(|d| file_call(&d.path, "CreateFileW")),
        );
    }
    if p.targetid == 1 {
        values.push(registry_call(
            "HKEY_CURRENT_USER\\Software\\Microsoft\\Windows\\CurrentVersion\\Run",
            "Updater",
            &p.path,
        ));
    }
    element
        .child(
            Element::new("fileactivities")
                .child(Element::list("fileCreated", "call", created))
                .child(Element::list("fileRead", "call", read)),
        )
        .child(Element::new("registryactivities").child(Element::list(
            "keyValueCreated",
            "call",
            values,
        )))
}

fn timestamp(input: &ReportInput, millis: i64) -> String {
    (input.time + Duration::milliseconds(millis))
        .format("%b %d, %Y %H:%M:%S%.6f %Z")
        .to_string()
}

fn network(input: &ReportInput, iocs: &Iocs) -> Element {
    let public: Vec<_> = iocs.ips.iter().filter(|ip| !ip.private).collect();
    let tcp = public
        .iter()
        .enumerate()
        .map(|(i, ip)| {
            Element::new("packet")
                .child(Element::leaf(
                    "timestamp",
                    timestamp(input, 2000 + 150 * i as i64),
                ))
                .child(Element::leaf("srcip", SANDBOX_IP))
                .child(Element::leaf("dstip", &ip.ip))
                .child(Element::leaf("srcport", 49_700 + i as u32))
                .child(Element::leaf(
                    "dstport",
                    if ip.malicious { 8080u32 } else { 443 },
                ))
        })
        .collect();
    let udp = iocs
        .ips
        .iter()
        .filter(|ip| ip.private)
        .enumerate()
        .map(|(i, ip)| {
            Element::new("packet")
                .child(Element::leaf(
                    "timestamp",
                    timestamp(input, 1500 + 10 * i as i64),
                ))
                .child(Element::leaf("srcip", SANDBOX_IP))
                .child(Element::leaf("dstip", &ip.ip))
                .child(Element::leaf("srcport", 55_000 + i as u32))
                .child(Element::leaf("dstport", 137u32))
        })
        .collect();
    let dns = iocs
        .domains
        .iter()
        .enumerate()
        .map(|(i, d)| {
            Element::new("packet")
                .child(Element::leaf(
                    "timestamp",
                    timestamp(input, 1000 + 50 * i as i64),
                ))
                .child(Element::leaf("srcip", SANDBOX_IP))
                .child(Element::leaf("dstip", RESOLVER_IP))
                .child(Element::leaf("name", &d.name))
                .child(Element::leaf("type", "A"))
                .child(Element::leaf("answer", d.ip.as_deref().unwrap_or("")))
        })
        .collect();
    Element::new("network")
        .child(Element::list("tcp", "packet", tcp))
        .child(Element::list("udp", "packet", udp))
        .child(Element::list("dns", "packet", dns))
}

/// Calls per process in a padded report: about 40 KiB of JSON each.
const PADDED_FILE_CALLS: usize = 160;
const PADDED_REGISTRY_CALLS: usize = 80;

/// One bulky process of a padded report: the `n`-th child of the sample, writing files and
/// registry values as an installer or a ransomware would.
pub(crate) fn padded_process(input: &ReportInput, n: u64, detail: Detail) -> Element {
    let pid = 2000 + (n % 60_000) as u32 * 4;
    let name = format!("worker{n}.exe");
    let path = format!("C:\\Users\\user\\AppData\\Roaming\\Sim{n}\\{name}");
    let p = Process {
        targetid: 2 + (n % 1_000_000) as u32,
        pid,
        parentpid: 1000,
        cmdline: format!("\"{path}\" /install /quiet"),
        name,
        path,
    };
    let element = Element::new("process").child(general(input, &p, "", (n % 600) as i64));
    if detail == Detail::Light {
        return element;
    }
    let created = (0..PADDED_FILE_CALLS)
        .map(|i| {
            file_call(
                &format!("C:\\Users\\user\\Documents\\Projects\\{n}\\report_{i:04}.docx.locked"),
                "CreateFileW",
            )
        })
        .collect();
    let values = (0..PADDED_REGISTRY_CALLS)
        .map(|i| {
            registry_call(
                &format!("HKEY_CURRENT_USER\\Software\\Sim{n}\\Settings"),
                &format!("Value{i:03}"),
                &format!("{n:08x}{i:08x}"),
            )
        })
        .collect();
    element
        .child(Element::new("fileactivities").child(Element::list("fileCreated", "call", created)))
        .child(Element::new("registryactivities").child(Element::list(
            "keyValueCreated",
            "call",
            values,
        )))
}

/// A `behavior` section whose processes are produced while rendering: the analysis' own
/// processes, then `count` bulky ones.
pub(crate) fn padded(input: &ReportInput, iocs: &Iocs, detail: Detail, count: u64) -> Element {
    let own: Vec<Element> = iocs
        .processes
        .iter()
        .map(|p| process(input, iocs, p, detail))
        .collect();
    let input_copy = input.clone();
    let bulk = (0..count).map(move |n| padded_process(&input_copy, n, detail));
    let stream: ChildStream = Box::new(own.into_iter().chain(bulk));
    Element::new("behavior")
        .child(
            Element::new("system")
                .child(startup_overview(iocs))
                .child(Element::new("processes").array("process").stream(stream)),
        )
        .child(network(input, iocs))
}
