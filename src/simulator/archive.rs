//! Unpacking ZIP samples: the service analyses every file inside an archive separately.

use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;

use zip::ZipArchive;

use super::form::{Digester, StoredFile};

/// `PK\x03\x04`, the local file header that starts every non-empty ZIP file.
pub(crate) const ZIP_MAGIC: &[u8] = b"PK\x03\x04";
/// An empty ZIP file is only an end-of-central-directory record.
const EMPTY_ZIP_MAGIC: &[u8] = b"PK\x05\x06";

pub(crate) fn looks_like_zip(head: &[u8]) -> bool {
    head.starts_with(ZIP_MAGIC) || head.starts_with(EMPTY_ZIP_MAGIC)
}

#[derive(Debug)]
pub(crate) enum Unpacked {
    /// Not readable as an archive with the given password: analyse the file itself.
    NotAnArchive,
    /// `(member file name, extracted member)`, possibly none for an empty archive.
    Members(Vec<(String, StoredFile)>),
}

/// Extract every file member of the ZIP at `path` into `dir`, hashing as it goes. Blocking.
pub(crate) fn unpack(path: &Path, password: &str, dir: &Path) -> Unpacked {
    match try_unpack(path, password, dir) {
        Ok(members) => Unpacked::Members(members),
        Err(err) => {
            tracing::debug!(error = %err, "sample is not an unpackable archive");
            Unpacked::NotAnArchive
        }
    }
}

fn try_unpack(
    path: &Path,
    password: &str,
    dir: &Path,
) -> anyhow::Result<Vec<(String, StoredFile)>> {
    let mut archive = ZipArchive::new(File::open(path)?)?;
    let mut members = Vec::new();
    for index in 0..archive.len() {
        let mut entry = if archive.by_index_data(index)?.encrypted() {
            archive.by_index_decrypt(index, password.as_bytes())?
        } else {
            archive.by_index(index)?
        };
        if !entry.is_file() {
            continue;
        }
        // The service names an extracted analysis after the member, without its folder.
        let raw_name = entry.name()?.into_owned();
        let name = raw_name
            .rsplit(['/', '\\'])
            .find(|part| !part.is_empty())
            .unwrap_or("member")
            .to_owned();
        let (mut file, temp_path) = tempfile::Builder::new()
            .prefix("member-")
            .tempfile_in(dir)?
            .into_parts();
        let mut digester = Digester::default();
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            let read = entry.read(&mut buffer)?;
            if read == 0 {
                break;
            }
            digester.update(&buffer[..read]);
            file.write_all(&buffer[..read])?;
        }
        file.flush()?;
        members.push((
            name,
            StoredFile {
                path: temp_path,
                facts: digester.finish(),
            },
        ));
    }
    Ok(members)
}

#[cfg(test)]
mod tests {
    use super::*;
    use zip::write::SimpleFileOptions;

    fn write_zip(
        dir: &Path,
        members: &[(&str, &[u8])],
        password: Option<&str>,
    ) -> std::path::PathBuf {
        let path = dir.join("sample.zip");
        let mut writer = zip::ZipWriter::new(File::create(&path).expect("create zip"));
        for (name, data) in members {
            let options = SimpleFileOptions::default();
            match password {
                Some(password) => writer
                    .start_file(
                        *name,
                        options.with_aes_encryption(zip::AesMode::Aes256, password),
                    )
                    .expect("start"),
                None => writer.start_file(*name, options).expect("start"),
            }
            writer.write_all(data).expect("write member");
        }
        writer.finish().expect("finish zip");
        path
    }

    #[test]
    fn every_member_is_extracted_with_its_own_hashes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = write_zip(
            dir.path(),
            &[("a/one.txt", b"abc"), ("two.exe", b"JBXD-MALICIOUS")],
            None,
        );
        let Unpacked::Members(members) = unpack(&path, "infected", dir.path()) else {
            panic!("expected members");
        };
        assert_eq!(members.len(), 2);
        assert_eq!(members[0].0, "one.txt");
        assert_eq!(
            members[0].1.facts.sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(members[1].1.facts.markers.malicious);
    }

    #[test]
    fn encrypted_members_use_the_archive_password() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = write_zip(dir.path(), &[("x.bin", b"secret")], Some("infected"));
        assert!(matches!(
            unpack(&path, "infected", dir.path()),
            Unpacked::Members(m) if m.len() == 1
        ));
        assert!(matches!(
            unpack(&path, "wrong", dir.path()),
            Unpacked::NotAnArchive
        ));
    }

    #[test]
    fn an_empty_archive_has_no_members() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = write_zip(dir.path(), &[], None);
        let head = std::fs::read(&path).expect("read");
        assert!(looks_like_zip(&head));
        assert!(matches!(
            unpack(&path, "infected", dir.path()),
            Unpacked::Members(m) if m.is_empty()
        ));
    }
}
