//! User databases: each one a file `<data dir>/databases/<hex of the name>.json` holding its
//! recovery model, whether it has a full backup, a change counter (its log sequence number) and
//! its tables of `BIGINT` keys. A change is hardened (written to a temporary file, fsynced,
//! renamed) before it is acknowledged. There is no transaction log: a database is its latest
//! image.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::datafile::{rename_synced, write_atomically, write_synced};
use crate::errors::{self, SqlError};

/// One user table with a single BIGINT primary-key column.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Table {
    /// As created (`dbo.t`).
    pub name: String,
    pub column: String,
    pub keys: BTreeSet<i64>,
}

/// A database's content.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Database {
    pub name: String,
    /// FULL, BULK_LOGGED or SIMPLE. New databases take model's, FULL ("Recovery models (SQL
    /// Server)": model uses FULL outside Express).
    pub recovery: String,
    /// Whether BACKUP DATABASE ran since the database was created.
    pub backed_up: bool,
    /// Counts the changes; the availability databases' `last_hardened_lsn`.
    pub lsn: u64,
    /// By lowercase `schema.table`.
    pub tables: BTreeMap<String, Table>,
}

/// A change to a database, as the primary sends it to its secondaries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Change {
    CreateTable {
        schema: String,
        table: String,
        column: String,
    },
    Insert {
        schema: String,
        table: String,
        key: i64,
    },
}

fn table_key(schema: &str, table: &str) -> String {
    format!("{schema}.{table}").to_lowercase()
}

impl Database {
    pub fn new(name: &str) -> Self {
        Self {
            name: name.into(),
            recovery: "FULL".into(),
            backed_up: false,
            lsn: 0,
            tables: BTreeMap::new(),
        }
    }

    pub fn table(&self, schema: &str, table: &str) -> Result<&Table, SqlError> {
        self.tables
            .get(&table_key(schema, table))
            .ok_or_else(|| errors::invalid_object(&format!("{}.{schema}.{table}", self.name)))
    }

    /// Applies `change` in memory (not yet hardened) and counts it.
    pub fn apply(&mut self, change: &Change) -> Result<(), SqlError> {
        match change {
            Change::CreateTable {
                schema,
                table,
                column,
            } => {
                let key = table_key(schema, table);
                if self.tables.contains_key(&key) {
                    return Err(errors::object_exists(table));
                }
                self.tables.insert(
                    key,
                    Table {
                        name: format!("{schema}.{table}"),
                        column: column.clone(),
                        keys: BTreeSet::new(),
                    },
                );
            }
            Change::Insert { schema, table, key } => {
                let name = format!("{}.{schema}.{table}", self.name);
                let rows = self
                    .tables
                    .get_mut(&table_key(schema, table))
                    .ok_or_else(|| errors::invalid_object(&name))?;
                if !rows.keys.insert(*key) {
                    return Err(errors::duplicate_key(&name, *key));
                }
            }
        }
        self.lsn += 1;
        Ok(())
    }
}

/// The user databases of an instance, by lowercase name.
#[derive(Debug)]
pub struct Databases {
    dir: PathBuf,
    by_name: BTreeMap<String, Database>,
}

fn file_name(name: &str) -> String {
    let hex: String = name.bytes().map(|b| format!("{b:02x}")).collect();
    format!("{hex}.json")
}

/// Where the databases of `data_dir` live.
fn directory(data_dir: &Path) -> PathBuf {
    data_dir.join("databases")
}

/// A database written and fsynced to a temporary file beside its own, not yet in place: the slow
/// part of [`Databases::store`], done without holding the databases (a seeded image is whole);
/// [`Databases::put`] then only renames it.
#[derive(Debug)]
pub struct Staged {
    database: Database,
    temporary: PathBuf,
}

impl Staged {
    pub fn write(data_dir: &Path, database: Database) -> io::Result<Self> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let bytes = serde_json::to_vec(&database).map_err(io::Error::other)?;
        // A name of its own: two images of one database may be staged at once.
        let temporary = directory(data_dir).join(format!(
            "{}.{}.tmp",
            file_name(&database.name),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        if let Err(e) = write_synced(&temporary, &bytes) {
            let _ = fs::remove_file(&temporary);
            return Err(e);
        }
        Ok(Self {
            database,
            temporary,
        })
    }

    /// Removes the temporary file of an image that is not wanted after all.
    pub fn discard(self) {
        let _ = fs::remove_file(&self.temporary);
    }
}

impl Databases {
    /// Reads every database file under `<data dir>/databases`.
    pub fn open(data_dir: &Path) -> io::Result<Self> {
        let dir = directory(data_dir);
        fs::create_dir_all(&dir)?;
        let mut by_name = BTreeMap::new();
        for entry in fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "json") {
                let database: Database = serde_json::from_slice(&fs::read(&path)?)
                    .map_err(|e| io::Error::other(format!("{}: {e}", path.display())))?;
                by_name.insert(database.name.to_lowercase(), database);
            }
        }
        Ok(Self { dir, by_name })
    }

    pub fn get(&self, name: &str) -> Option<&Database> {
        self.by_name.get(&name.to_lowercase())
    }

    pub fn require(&self, name: &str) -> Result<&Database, SqlError> {
        self.get(name).ok_or_else(|| errors::no_database(name))
    }

    /// Writes `database` to its file (hardened) and keeps it.
    pub fn store(&mut self, database: Database) -> io::Result<()> {
        let bytes = serde_json::to_vec(&database).map_err(io::Error::other)?;
        write_atomically(&self.dir.join(file_name(&database.name)), &bytes)?;
        self.by_name.insert(database.name.to_lowercase(), database);
        Ok(())
    }

    /// Puts `staged` in place of the database's file and keeps it: the same file and state as
    /// [`Databases::store`] of that database.
    pub fn put(&mut self, staged: Staged) -> io::Result<()> {
        let path = self.dir.join(file_name(&staged.database.name));
        if let Err(e) = rename_synced(&staged.temporary, &path) {
            staged.discard();
            return Err(e);
        }
        let database = staged.database;
        self.by_name.insert(database.name.to_lowercase(), database);
        Ok(())
    }

    pub fn remove(&mut self, name: &str) -> io::Result<()> {
        if let Some(database) = self.by_name.remove(&name.to_lowercase()) {
            fs::remove_file(self.dir.join(file_name(&database.name)))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn insert(key: i64) -> Change {
        Change::Insert {
            schema: "dbo".into(),
            table: "t".into(),
            key,
        }
    }

    #[test]
    fn changes_count_and_refuse_duplicates() {
        let mut db = Database::new("x");
        assert_eq!(db.apply(&insert(1)).unwrap_err().number, 208);
        db.apply(&Change::CreateTable {
            schema: "dbo".into(),
            table: "T".into(),
            column: "id".into(),
        })
        .unwrap();
        db.apply(&insert(1)).unwrap();
        assert_eq!(db.apply(&insert(1)).unwrap_err().number, 2627);
        assert_eq!(db.lsn, 2);
        assert_eq!(db.table("DBO", "t").unwrap().keys.len(), 1);
    }

    #[test]
    fn databases_survive_a_reopen() {
        let dir = std::env::temp_dir().join(format!(
            "sqlserver-double-databases-{}-{:?}",
            std::process::id(),
            std::time::SystemTime::now()
        ));
        let mut dbs = Databases::open(&dir).unwrap();
        let mut db = Database::new("A b]");
        db.backed_up = true;
        dbs.store(db.clone()).unwrap();
        let reopened = Databases::open(&dir).unwrap();
        assert_eq!(reopened.get("a B]"), Some(&db));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_staged_image_is_stored_once_put_and_leaves_nothing_when_discarded() {
        let dir = std::env::temp_dir().join(format!(
            "sqlserver-double-staged-{}-{:?}",
            std::process::id(),
            std::time::SystemTime::now()
        ));
        let mut dbs = Databases::open(&dir).unwrap();
        let mut db = Database::new("s");
        db.lsn = 7;
        Staged::write(&dir, Database::new("gone"))
            .unwrap()
            .discard();
        let staged = Staged::write(&dir, db.clone()).unwrap();
        assert_eq!(dbs.get("s"), None, "not in place before put");
        dbs.put(staged).unwrap();
        assert_eq!(dbs.get("s"), Some(&db));
        let mut stored = Databases::open(&dir.join("stored")).unwrap();
        stored.store(db.clone()).unwrap();
        // The same file as store writes, and no temporary file left.
        let files = |d: &Path| {
            let mut names: Vec<_> = fs::read_dir(d.join("databases"))
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            names.sort();
            names
        };
        assert_eq!(files(&dir), files(&dir.join("stored")));
        let name = file_name("s");
        assert_eq!(
            fs::read(dir.join("databases").join(&name)).unwrap(),
            fs::read(dir.join("stored").join("databases").join(&name)).unwrap()
        );
        assert_eq!(Databases::open(&dir).unwrap().get("S"), Some(&db));
        fs::remove_dir_all(&dir).unwrap();
    }
}
