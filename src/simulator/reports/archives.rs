//! Binary resources: ZIP archives of analysis artefacts and packet captures.

use std::io::{Cursor, Write};

use axum::body::Bytes;
use zip::write::{FileOptions, SimpleFileOptions};

use super::ReportInput;
use super::payload::zip_time;
use crate::simulator::envelope::ApiError;

/// Password of the `bins` and `unpackpe` archives, as on the real service.
pub(crate) const ARTEFACT_PASSWORD: &str = "infected";

/// A 1×1 transparent PNG, for screenshots.
const PNG_1X1: &[u8] = &[
    0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1F, 0x15, 0xC4,
    0x89, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9C, 0x63, 0x00, 0x01, 0x00, 0x00,
    0x05, 0x00, 0x01, 0x0D, 0x0A, 0x2D, 0xB4, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4E, 0x44, 0xAE,
    0x42, 0x60, 0x82,
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ArchiveKind {
    Bins,
    UnpackPe,
    MemDumps,
    Unpack,
    Ida,
    Shoots,
}

impl ArchiveKind {
    /// `bins` and `unpackpe` are ZipCrypto-encrypted with `infected`.
    pub(crate) fn encrypted(self) -> bool {
        matches!(self, ArchiveKind::Bins | ArchiveKind::UnpackPe)
    }
}

/// Member names and contents, derived from the analysis so they are stable.
fn members(kind: ArchiveKind, input: &ReportInput) -> Result<Vec<(String, Vec<u8>)>, ApiError> {
    let seed = input.seed("artefact");
    let stem = safe_name(&input.filename);
    let fake_pe = |label: &str| {
        let mut data = b"MZ\x90\x00\x03\x00\x00\x00".to_vec();
        data.extend_from_slice(format!("jbxd simulator {label} of {}\n", input.webid).as_bytes());
        data.extend_from_slice(&seed);
        data
    };
    Ok(match kind {
        ArchiveKind::Bins => {
            // The files the reports list under `droppedinfo` / `dropped`, named by SHA-256.
            let dropped = super::iocs::iocs(input).dropped;
            if dropped.is_empty() {
                return Err(ApiError::invalid(
                    "The analysis did not drop anything (no dropped files available).",
                ));
            }
            dropped
                .into_iter()
                .map(|file| (file.member, file.content))
                .collect()
        }
        ArchiveKind::UnpackPe => {
            if input.facts.is_none() {
                return Err(ApiError::invalid(
                    "The analysis did not unpack any PE file.",
                ));
            }
            vec![
                (format!("1.0.{stem}.unpack"), fake_pe("unpacked PE")),
                (format!("1.0.{stem}.raw.unpack"), fake_pe("raw unpacked PE")),
            ]
        }
        ArchiveKind::MemDumps => vec![(format!("1_{stem}.dmp"), fake_pe("memory dump"))],
        ArchiveKind::Unpack => vec![(format!("1.0.{stem}.unpack"), fake_pe("unpacked memory"))],
        ArchiveKind::Ida => vec![(
            format!("{stem}.idc"),
            format!(
                "// IDA bridge file for analysis {}\n#include <idc.idc>\n",
                input.webid
            )
            .into_bytes(),
        )],
        ArchiveKind::Shoots => vec![
            ("screen_0.png".to_owned(), PNG_1X1.to_vec()),
            ("screen_1.png".to_owned(), PNG_1X1.to_vec()),
        ],
    })
}

/// A file name safe to use inside an archive: no folders, no control characters.
fn safe_name(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or(name);
    let cleaned: String = base
        .chars()
        .map(|c| if c.is_control() || c == ':' { '_' } else { c })
        .collect();
    if cleaned.is_empty() {
        "sample".to_owned()
    } else {
        cleaned
    }
}

pub(crate) fn zip(kind: ArchiveKind, input: &ReportInput) -> Result<Bytes, ApiError> {
    let members = members(kind, input)?;
    let internal =
        |err: zip::result::ZipError| ApiError::internal(format!("Cannot build the archive: {err}"));
    let base = SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .last_modified_time(zip_time(&input.time));
    let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
    for (name, data) in members {
        if kind.encrypted() {
            use zip::unstable::write::FileOptionsExt;
            let options: FileOptions<'_, '_, ()> = base
                .with_deprecated_encryption(ARTEFACT_PASSWORD.as_bytes())
                .map_err(internal)?;
            writer.start_file(name, options).map_err(internal)?;
        } else {
            writer.start_file(name, base).map_err(internal)?;
        }
        writer
            .write_all(&data)
            .map_err(|err| ApiError::internal(format!("Cannot build the archive: {err}")))?;
    }
    let cursor = writer.finish().map_err(internal)?;
    Ok(Bytes::from(cursor.into_inner()))
}

/// A valid libpcap file with one DNS query per domain the reports say the analysis contacted
/// (the analysed host, or a placeholder, when there is none).
pub(crate) fn pcap(input: &ReportInput) -> Bytes {
    let mut hosts: Vec<String> = super::iocs::iocs(input)
        .domains
        .into_iter()
        .map(|d| d.name)
        .collect();
    if hosts.is_empty() {
        hosts.push(
            input
                .url
                .as_deref()
                .and_then(super::iocs::host_of)
                .unwrap_or_else(|| "sim.jbxd.invalid".to_owned()),
        );
    }
    let mut out = Vec::new();
    out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&0i32.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&65535u32.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes()); // Ethernet
    let seconds = u32::try_from(input.time.timestamp().max(0)).unwrap_or(u32::MAX);
    for (i, host) in hosts.iter().enumerate() {
        let frame = dns_frame((input.webid as u16).wrapping_add(i as u16), host);
        out.extend_from_slice(&seconds.to_le_bytes());
        out.extend_from_slice(&(50_000 * i as u32).to_le_bytes()); // 50 ms apart
        out.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        out.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        out.extend_from_slice(&frame);
    }
    Bytes::from(out)
}

/// An Ethernet frame with a DNS `A` query for `host` from the sandbox to its resolver.
fn dns_frame(transaction: u16, host: &str) -> Vec<u8> {
    let mut dns = Vec::new();
    dns.extend_from_slice(&transaction.to_be_bytes());
    dns.extend_from_slice(&[0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0]); // RD, 1 question
    for label in host.split('.').filter(|l| !l.is_empty()) {
        let label = &label.as_bytes()[..label.len().min(63)];
        dns.push(label.len() as u8);
        dns.extend_from_slice(label);
    }
    dns.extend_from_slice(&[0, 0x00, 0x01, 0x00, 0x01]); // end, type A, class IN

    let udp_len = 8 + dns.len();
    let mut udp = Vec::with_capacity(udp_len);
    udp.extend_from_slice(&49152u16.to_be_bytes());
    udp.extend_from_slice(&53u16.to_be_bytes());
    udp.extend_from_slice(&(udp_len as u16).to_be_bytes());
    udp.extend_from_slice(&[0, 0]); // checksum optional over IPv4
    udp.extend_from_slice(&dns);

    let total_len = 20 + udp.len();
    let mut ip = vec![
        0x45, 0x00, // version 4, IHL 5
    ];
    ip.extend_from_slice(&(total_len as u16).to_be_bytes());
    ip.extend_from_slice(&[0x00, 0x01, 0x00, 0x00, 64, 17, 0, 0]); // id, flags, TTL, UDP, checksum
    ip.extend_from_slice(&[192, 168, 2, 100]);
    ip.extend_from_slice(&[192, 168, 2, 1]);
    let checksum = ipv4_checksum(&ip);
    ip[10..12].copy_from_slice(&checksum.to_be_bytes());
    ip.extend_from_slice(&udp);

    let mut frame = vec![
        0x00, 0x50, 0x56, 0x00, 0x00, 0x01, 0x00, 0x50, 0x56, 0x00, 0x00, 0x02,
    ];
    frame.extend_from_slice(&[0x08, 0x00]);
    frame.extend_from_slice(&ip);
    frame
}

fn ipv4_checksum(header: &[u8]) -> u16 {
    let mut sum: u32 = header
        .chunks(2)
        .map(|pair| u32::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulator::reports::tests::{file_input, url_input};
    use std::io::Read;

    #[test]
    fn bins_of_a_malicious_file_open_with_the_password_infected() {
        let dir = tempfile::tempdir().expect("tempdir");
        let input = file_input(dir.path(), "a.exe", b"JBXD-MALICIOUS");
        let bytes = zip(ArchiveKind::Bins, &input).expect("bins");
        let mut archive = zip::ZipArchive::new(Cursor::new(bytes)).expect("zip");
        let dropped = crate::simulator::reports::iocs::iocs(&input).dropped;
        assert_eq!(archive.len(), dropped.len());
        for (i, file) in dropped.iter().enumerate() {
            let mut member = archive.by_index_decrypt(i, b"infected").expect("decrypt");
            assert_eq!(
                member.name().expect("name"),
                file.sha256.as_str(),
                "members are named by their SHA-256"
            );
            let mut data = Vec::new();
            member.read_to_end(&mut data).expect("read");
            assert!(data.starts_with(b"MZ"));
            use sha2::{Digest, Sha256};
            assert_eq!(hex::encode(Sha256::digest(&data)), file.sha256);
        }
    }

    #[test]
    fn bins_of_a_clean_file_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let input = file_input(dir.path(), "a.txt", b"hello");
        let error = zip(ArchiveKind::Bins, &input).expect_err("nothing dropped");
        assert_eq!(error.code, 3);
    }

    #[test]
    fn plain_archives_are_reproducible() {
        let input = url_input("http://example.org");
        let a = zip(ArchiveKind::Shoots, &input).expect("shoots");
        let b = zip(ArchiveKind::Shoots, &input).expect("shoots again");
        assert_eq!(a, b);
    }

    #[test]
    fn pcap_has_a_valid_header_and_ip_checksum() {
        let bytes = pcap(&url_input("http://a.example.org/x"));
        assert_eq!(&bytes[..4], &[0xd4, 0xc3, 0xb2, 0xa1]);
        let ip = &bytes[24 + 16 + 14..24 + 16 + 14 + 20];
        assert_eq!(ipv4_checksum(ip), 0, "checksum over a valid header is zero");
    }

    #[test]
    fn the_pcap_asks_for_every_domain_the_reports_list() {
        let input = url_input("http://evil.example/x");
        let bytes = pcap(&input);
        for domain in crate::simulator::reports::iocs::iocs(&input).domains {
            let mut wire = Vec::new();
            for label in domain.name.split('.') {
                wire.push(label.len() as u8);
                wire.extend_from_slice(label.as_bytes());
            }
            assert!(
                bytes.windows(wire.len()).any(|w| w == wire.as_slice()),
                "{}",
                domain.name
            );
        }
    }

    #[test]
    fn archive_member_names_never_contain_folders() {
        assert_eq!(safe_name("C:\\x\\evil.exe"), "evil.exe");
        assert_eq!(safe_name("../../etc/passwd"), "passwd");
        assert_eq!(safe_name(""), "sample");
    }
}
