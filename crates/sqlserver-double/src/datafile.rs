//! `<data dir>/double.mdf`: the double's stand-in for a database file. It proves that data
//! survives a pod restart: the id and creation time are written once, the start counter grows by
//! one at every start. Text, `key=value` lines; rewritten atomically (temporary file, fsync,
//! rename), so a kill mid-write leaves the previous version.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

pub const FILE_NAME: &str = "double.mdf";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataFile {
    /// 16 lowercase hex characters, random, chosen at the first start.
    pub database_id: String,
    /// Unix time of the first start.
    pub created_unix: u64,
    /// How many times the server started on this data, this start included.
    pub starts: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum DataFileError {
    #[error("cannot create the data directory {path}: {source}")]
    CreateDir { path: PathBuf, source: io::Error },
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("{path} is damaged: {what}")]
    Damaged { path: PathBuf, what: String },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("cannot draw a random database id: {0}")]
    Random(String),
}

impl DataFile {
    pub fn render(&self) -> String {
        format!(
            "database_id={}\ncreated_unix={}\nstarts={}\n",
            self.database_id, self.created_unix, self.starts
        )
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let (mut id, mut created, mut starts) = (None, None, None);
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let (key, value) = line
                .split_once('=')
                .ok_or_else(|| format!("line {line:?} is not key=value"))?;
            let number = || {
                value
                    .parse::<u64>()
                    .map_err(|_| format!("{key}={value:?} is not a number"))
            };
            match key {
                "database_id" => {
                    if value.len() != 16 || !value.bytes().all(|b| b.is_ascii_hexdigit()) {
                        return Err(format!("database_id={value:?} is not 16 hex characters"));
                    }
                    id = Some(value.to_owned());
                }
                "created_unix" => created = Some(number()?),
                "starts" => starts = Some(number()?),
                _ => return Err(format!("unknown key {key:?}")),
            }
        }
        match (id, created, starts) {
            (Some(database_id), Some(created_unix), Some(starts)) => Ok(Self {
                database_id,
                created_unix,
                starts,
            }),
            _ => Err("database_id, created_unix or starts is missing".into()),
        }
    }
}

/// Reads (or, at the first start, creates) the data file in `dir`, counts this start, and writes
/// it back atomically. Returns what it wrote.
pub fn record_start(dir: &Path) -> Result<DataFile, DataFileError> {
    fs::create_dir_all(dir).map_err(|source| DataFileError::CreateDir {
        path: dir.to_owned(),
        source,
    })?;
    let path = dir.join(FILE_NAME);
    let mut data = match fs::read_to_string(&path) {
        Ok(text) => DataFile::parse(&text).map_err(|what| DataFileError::Damaged {
            path: path.clone(),
            what,
        })?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => DataFile {
            database_id: random_id()?,
            created_unix: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or_default(),
            starts: 0,
        },
        Err(source) => return Err(DataFileError::Read { path, source }),
    };
    data.starts += 1;
    write_atomically(&path, data.render().as_bytes())
        .map_err(|source| DataFileError::Write { path, source })?;
    Ok(data)
}

/// Writes `bytes` to `path` so that a kill at any moment leaves either the old or the new
/// content: a temporary file beside it, fsynced, renamed over it, the directory fsynced.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    let temporary = PathBuf::from(temporary);
    write_synced(&temporary, bytes)?;
    rename_synced(&temporary, path)
}

/// The first half of [`write_atomically`]: `bytes` in `temporary`, fsynced.
pub(crate) fn write_synced(temporary: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = fs::File::create(temporary)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// The second half of [`write_atomically`]: `temporary` renamed over `path`.
pub(crate) fn rename_synced(temporary: &Path, path: &Path) -> io::Result<()> {
    fs::rename(temporary, path)?;
    // The rename itself is durable once the directory is synced.
    if let Some(parent) = path.parent() {
        fs::File::open(parent)?.sync_all()?;
    }
    Ok(())
}

fn random_id() -> Result<String, DataFileError> {
    let mut bytes = [0u8; 8];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|e| DataFileError::Random(e.to_string()))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_and_parse_round_trip() {
        let data = DataFile {
            database_id: "0123456789abcdef".into(),
            created_unix: 1_700_000_000,
            starts: 3,
        };
        assert_eq!(
            data.render(),
            "database_id=0123456789abcdef\ncreated_unix=1700000000\nstarts=3\n"
        );
        assert_eq!(DataFile::parse(&data.render()).unwrap(), data);
    }

    #[test]
    fn damage_is_reported() {
        assert!(
            DataFile::parse("database_id=xyz\n")
                .unwrap_err()
                .contains("16 hex")
        );
        assert!(
            DataFile::parse("starts=1\n")
                .unwrap_err()
                .contains("missing")
        );
        assert!(
            DataFile::parse("starts=one\n")
                .unwrap_err()
                .contains("not a number")
        );
        assert!(
            DataFile::parse("garbage\n")
                .unwrap_err()
                .contains("not key=value")
        );
    }

    #[test]
    fn a_second_start_counts_and_keeps_the_id() {
        let dir = std::env::temp_dir().join(format!(
            "sqlserver-double-datafile-{}-{}",
            std::process::id(),
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        let data_dir = dir.join("data"); // created by record_start
        let first = record_start(&data_dir).unwrap();
        assert_eq!(first.starts, 1);
        let second = record_start(&data_dir).unwrap();
        assert_eq!(second.starts, 2);
        assert_eq!(
            (second.database_id.as_str(), second.created_unix),
            (first.database_id.as_str(), first.created_unix)
        );
        assert!(!data_dir.join("double.mdf.tmp").exists());
        fs::remove_dir_all(&dir).unwrap();
    }
}
