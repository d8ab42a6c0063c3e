//! What SQL Server keeps in its master database for the coordinator: the database master key,
//! logins, users, certificates and the database mirroring endpoint with its CONNECT grants.
//! Persisted as `<data dir>/double-master.json` after every change, so a restarted `sqlservr`
//! has them again. A certificate's private key is kept as PKCS#8 DER in that file (SQL Server
//! keeps it encrypted by the master key; the double keeps it as readable as the data directory).

use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::datafile::write_atomically;
use crate::errors::{self, SqlError};

pub const FILE_NAME: &str = "double-master.json";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub name: String,
    pub login: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Certificate {
    pub name: String,
    /// The owning database user (AUTHORIZATION), if any.
    pub owner: Option<String>,
    pub der: Vec<u8>,
    /// PKCS#8 DER, when the PFX held the certificate's key.
    pub private_key: Option<Vec<u8>>,
}

/// A DATABASE_MIRRORING endpoint ("CREATE ENDPOINT (Transact-SQL)").
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub name: String,
    pub started: bool,
    pub port: u16,
    pub role: String,
    /// The certificate of `AUTHENTICATION = CERTIFICATE [name]`.
    pub certificate: String,
    pub encryption_required: bool,
    /// Logins granted CONNECT ON ENDPOINT.
    pub connect: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Master {
    pub master_key: bool,
    pub logins: Vec<String>,
    pub users: Vec<User>,
    pub certificates: Vec<Certificate>,
    pub endpoint: Option<Endpoint>,
}

fn same(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// The certificate and key the endpoint presents.
pub struct Identity {
    pub certificate: Vec<u8>,
    pub private_key: Vec<u8>,
}

impl Master {
    pub fn path(data_dir: &Path) -> PathBuf {
        data_dir.join(FILE_NAME)
    }

    pub fn load(data_dir: &Path) -> io::Result<Self> {
        match std::fs::read(Self::path(data_dir)) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(io::Error::other),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(e),
        }
    }

    pub fn save(&self, data_dir: &Path) -> io::Result<()> {
        let bytes = serde_json::to_vec_pretty(self).map_err(io::Error::other)?;
        write_atomically(&Self::path(data_dir), &bytes)
    }

    /// "CREATE MASTER KEY (Transact-SQL)": one per database.
    pub fn create_master_key(&mut self) -> Result<(), SqlError> {
        if self.master_key {
            return Err(errors::master_key_exists());
        }
        self.master_key = true;
        Ok(())
    }

    /// "CREATE LOGIN (Transact-SQL)". `sa` exists from the start.
    pub fn create_login(&mut self, name: &str) -> Result<(), SqlError> {
        if same(name, "sa") || self.logins.iter().any(|l| same(l, name)) {
            return Err(errors::login_exists(name));
        }
        self.logins.push(name.into());
        Ok(())
    }

    /// "CREATE USER (Transact-SQL)", in master.
    pub fn create_user(&mut self, name: &str, login: &str) -> Result<(), SqlError> {
        if self.users.iter().any(|u| same(&u.name, name)) {
            return Err(errors::user_exists(name));
        }
        if !self.logins.iter().any(|l| same(l, login)) {
            return Err(errors::no_login(login));
        }
        self.users.push(User {
            name: name.into(),
            login: login.into(),
        });
        Ok(())
    }

    /// "CREATE CERTIFICATE (Transact-SQL)" FROM FILE … WITH FORMAT = 'PFX': the first
    /// certificate with a private key in the file, or its first certificate when it holds no key.
    /// A private key needs the master key to protect it.
    pub fn create_certificate(
        &mut self,
        name: &str,
        owner: Option<&str>,
        file: &str,
        password: &str,
    ) -> Result<(), SqlError> {
        if self.certificates.iter().any(|c| same(&c.name, name)) {
            return Err(errors::certificate_exists(name));
        }
        if let Some(owner) = owner
            && !self.users.iter().any(|u| same(&u.name, owner))
        {
            return Err(errors::cannot_find("user", owner));
        }
        let bytes =
            std::fs::read(file).map_err(|e| errors::certificate_file(file, &e.to_string()))?;
        let (der, private_key) =
            read_pfx(&bytes, password).map_err(|why| errors::certificate_data(file, &why))?;
        if self.certificates.iter().any(|c| c.der == der) {
            return Err(errors::certificate_exists(name));
        }
        if private_key.is_some() && !self.master_key {
            return Err(errors::no_master_key());
        }
        self.certificates.push(Certificate {
            name: name.into(),
            owner: owner.map(Into::into),
            der,
            private_key,
        });
        Ok(())
    }

    /// "CREATE ENDPOINT (Transact-SQL)": one DATABASE_MIRRORING endpoint per instance,
    /// authenticated by a certificate of master that has its private key.
    pub fn create_endpoint(&mut self, endpoint: Endpoint) -> Result<(), SqlError> {
        if self.endpoint.is_some() {
            return Err(errors::endpoint_exists());
        }
        self.require_signing(&endpoint.certificate)?;
        self.endpoint = Some(endpoint);
        Ok(())
    }

    /// A certificate an endpoint can authenticate with: in master, with its private key.
    fn require_signing(&self, name: &str) -> Result<(), SqlError> {
        let certificate = self
            .certificate(name)
            .ok_or_else(|| errors::cannot_find("certificate", name))?;
        if certificate.private_key.is_none() {
            return Err(errors::no_private_key(name));
        }
        Ok(())
    }

    /// "ALTER ENDPOINT (Transact-SQL)" … FOR DATABASE_MIRRORING (AUTHENTICATION = CERTIFICATE …):
    /// the endpoint presents that certificate from its next connection on. Connections made
    /// already stay up: SQL Server checks certificates only when a connection is made.
    pub fn alter_endpoint_certificate(
        &mut self,
        endpoint: &str,
        certificate: &str,
    ) -> Result<(), SqlError> {
        let signing = self.require_signing(certificate);
        let found = self
            .endpoint
            .as_mut()
            .filter(|e| same(&e.name, endpoint))
            .ok_or_else(|| errors::cannot_find("endpoint", endpoint))?;
        signing?;
        found.certificate = certificate.into();
        Ok(())
    }

    /// "DROP CERTIFICATE (Transact-SQL)": "Certificates can only be dropped if no entities are
    /// associated with them", so not the one the endpoint authenticates with. A dropped
    /// certificate is no longer trusted.
    pub fn drop_certificate(&mut self, name: &str) -> Result<(), SqlError> {
        let index = self
            .certificates
            .iter()
            .position(|c| same(&c.name, name))
            .ok_or_else(|| errors::cannot_find("certificate", name))?;
        if let Some(endpoint) = self
            .endpoint
            .as_ref()
            .filter(|e| same(&e.certificate, name))
        {
            return Err(errors::certificate_in_use(name, &endpoint.name));
        }
        self.certificates.remove(index);
        Ok(())
    }

    /// Each certificate in the order it was created, with its DER encoding and the endpoint that
    /// authenticates with it, if any ([`crate::tsql::ENDPOINT_CERTIFICATES_QUERY`]).
    pub fn endpoint_certificates(&self) -> Vec<(String, Vec<u8>, Option<String>)> {
        self.certificates
            .iter()
            .map(|c| {
                let endpoint = self
                    .endpoint
                    .as_ref()
                    .filter(|e| same(&e.certificate, &c.name))
                    .map(|e| e.name.clone());
                (c.name.clone(), c.der.clone(), endpoint)
            })
            .collect()
    }

    /// "GRANT Endpoint Permissions (Transact-SQL)": CONNECT to a login.
    pub fn grant_connect(&mut self, endpoint: &str, login: &str) -> Result<(), SqlError> {
        if !self.logins.iter().any(|l| same(l, login)) {
            return Err(errors::cannot_find("login", login));
        }
        let found = self
            .endpoint
            .as_mut()
            .filter(|e| same(&e.name, endpoint))
            .ok_or_else(|| errors::cannot_find("endpoint", endpoint))?;
        if !found.connect.iter().any(|l| same(l, login)) {
            found.connect.push(login.into());
        }
        Ok(())
    }

    fn certificate(&self, name: &str) -> Option<&Certificate> {
        self.certificates.iter().find(|c| same(&c.name, name))
    }

    /// The certificate and key the endpoint authenticates with ("Use certificates for a database
    /// mirroring endpoint"), when there is an endpoint.
    pub fn identity(&self) -> Option<Identity> {
        let endpoint = self.endpoint.as_ref()?;
        let certificate = self.certificate(&endpoint.certificate)?;
        Some(Identity {
            certificate: certificate.der.clone(),
            private_key: certificate.private_key.clone()?,
        })
    }

    /// The certificates a peer may authenticate with: those whose owner user maps to a login
    /// granted CONNECT on the endpoint (the login, user and certificate of Microsoft's "Use
    /// certificates for a database mirroring endpoint (Transact-SQL)").
    pub fn trusted(&self) -> Vec<Vec<u8>> {
        let Some(endpoint) = &self.endpoint else {
            return Vec::new();
        };
        self.certificates
            .iter()
            .filter(|c| {
                c.owner.as_deref().is_some_and(|owner| {
                    self.users.iter().any(|u| {
                        same(&u.name, owner) && endpoint.connect.iter().any(|l| same(l, &u.login))
                    })
                })
            })
            .map(|c| c.der.clone())
            .collect()
    }
}

/// The certificate (DER) and its private key (PKCS#8 DER) in a PKCS#12 file.
fn read_pfx(bytes: &[u8], password: &str) -> Result<(Vec<u8>, Option<Vec<u8>>), String> {
    use p12_keystore::{KeyStore, KeyStoreEntry, Pkcs12ImportPolicy};
    let store = KeyStore::from_pkcs12(bytes, password, Pkcs12ImportPolicy::Relaxed)
        .map_err(|e| format!("it does not open with the password given ({e})"))?;
    if let Some((_, chain)) = store.private_key_chain()
        && let Some(leaf) = chain.certs().first()
    {
        return Ok((leaf.as_der().to_vec(), Some(chain.key().as_der().to_vec())));
    }
    store
        .entries()
        .find_map(|(_, entry)| match entry {
            KeyStoreEntry::Certificate(c) => Some((c.as_der().to_vec(), None)),
            _ => None,
        })
        .ok_or_else(|| "it holds no certificate".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn principals_refuse_duplicates_with_sql_servers_numbers() {
        let mut master = Master::default();
        master.create_master_key().unwrap();
        assert_eq!(master.create_master_key().unwrap_err().number, 15578);
        assert_eq!(master.create_login("SA").unwrap_err().number, 15025);
        master.create_login("dbm_login").unwrap();
        assert_eq!(master.create_login("DBM_LOGIN").unwrap_err().number, 15025);
        assert_eq!(master.create_user("u", "nobody").unwrap_err().number, 15007);
        master.create_user("dbm_user", "dbm_login").unwrap();
        assert_eq!(
            master
                .create_user("dbm_user", "dbm_login")
                .unwrap_err()
                .number,
            15023
        );
    }

    #[test]
    fn certificate_files_that_cannot_be_used() {
        let mut master = Master::default();
        let missing = master.create_certificate("c", None, "/nonexistent/c.pfx", "x");
        assert_eq!(missing.unwrap_err().number, 15208);
        let dir =
            std::env::temp_dir().join(format!("sqlserver-double-master-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let junk = dir.join("junk.pfx");
        std::fs::write(&junk, b"not a pfx").unwrap();
        let junk = junk.to_str().unwrap();
        assert_eq!(
            master
                .create_certificate("c", None, junk, "x")
                .unwrap_err()
                .number,
            15297
        );
        assert_eq!(
            master
                .create_certificate("c", Some("nobody"), junk, "x")
                .unwrap_err()
                .number,
            15151
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn endpoint(certificate: &str) -> Endpoint {
        Endpoint {
            name: "Hadr_endpoint".into(),
            started: true,
            port: 5022,
            role: "ALL".into(),
            certificate: certificate.into(),
            encryption_required: true,
            connect: Vec::new(),
        }
    }

    #[test]
    fn only_certificates_of_logins_with_connect_are_trusted() {
        let mut master = Master::default();
        master.create_login("l").unwrap();
        master.create_user("u", "l").unwrap();
        for (name, owner, der) in [("a", Some("u"), 1), ("b", None, 2)] {
            master.certificates.push(Certificate {
                name: name.into(),
                owner: owner.map(Into::into),
                der: vec![der],
                private_key: Some(vec![9]),
            });
        }
        master.create_endpoint(endpoint("a")).unwrap();
        assert_eq!(
            master.create_endpoint(endpoint("a")).unwrap_err().number,
            7862
        );
        assert!(master.trusted().is_empty());
        assert_eq!(
            master
                .grant_connect("Hadr_endpoint", "x")
                .unwrap_err()
                .number,
            15151
        );
        master.grant_connect("HADR_ENDPOINT", "L").unwrap();
        assert_eq!(master.trusted(), [vec![1]]);
        assert_eq!(master.identity().unwrap().certificate, [1]);
    }

    #[test]
    fn the_endpoint_changes_certificate_and_only_others_can_be_dropped() {
        let mut master = Master::default();
        master.create_login("l").unwrap();
        master.create_user("u", "l").unwrap();
        for (name, der, private_key) in [
            ("a", 1, Some(vec![9])),
            ("b", 2, Some(vec![8])),
            ("p", 3, None),
        ] {
            master.certificates.push(Certificate {
                name: name.into(),
                owner: Some("u".into()),
                der: vec![der],
                private_key,
            });
        }
        master.create_endpoint(endpoint("a")).unwrap();
        master.grant_connect("Hadr_endpoint", "l").unwrap();
        assert_eq!(master.trusted(), [vec![1], vec![2], vec![3]]);

        let alter = |master: &mut Master, endpoint: &str, certificate: &str| {
            master
                .alter_endpoint_certificate(endpoint, certificate)
                .map_err(|e| e.number)
        };
        assert_eq!(alter(&mut master, "other", "b"), Err(15151));
        assert_eq!(alter(&mut master, "Hadr_endpoint", "x"), Err(15151));
        assert_eq!(alter(&mut master, "Hadr_endpoint", "p"), Err(33101));
        assert_eq!(alter(&mut master, "HADR_ENDPOINT", "B"), Ok(()));
        assert_eq!(master.identity().unwrap().certificate, [2]);
        let presented = Some("Hadr_endpoint".to_owned());
        assert_eq!(
            master.endpoint_certificates(),
            [
                ("a".to_owned(), vec![1], None),
                ("b".to_owned(), vec![2], presented.clone()),
                ("p".to_owned(), vec![3], None),
            ]
        );

        let drop_certificate =
            |master: &mut Master, name: &str| master.drop_certificate(name).map_err(|e| e.number);
        assert_eq!(drop_certificate(&mut master, "b"), Err(3716));
        assert_eq!(drop_certificate(&mut master, "x"), Err(15151));
        assert_eq!(drop_certificate(&mut master, "A"), Ok(()));
        assert_eq!(drop_certificate(&mut master, "a"), Err(15151));
        assert_eq!(master.trusted(), [vec![2], vec![3]]);
        assert_eq!(
            master.endpoint_certificates(),
            [
                ("b".to_owned(), vec![2], presented),
                ("p".to_owned(), vec![3], None),
            ]
        );
    }
}
