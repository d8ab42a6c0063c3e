//! The database as a ReconfigureTLS request wants it: KubeDB's "dbCopy". A pure function of the
//! database and the request, and idempotent, so it gives the same answer before and after the
//! request has written it into the database (a restarted operator computes the same target).

use mssql_api::MssqlServer;
use mssql_api::mssql::TlsConfig;
use mssql_api::ops::MssqlServerOpsRequest;

use mssql_api::ops::TlsChange;

/// The database with the requested TLS spec. An `Update` replaces the issuer if one is given and,
/// alias by alias, the certificate entries the request lists (the others are kept); `clientTLS`
/// is taken from the request when given. `Remove` turns `clientTLS` off and keeps the certificates
/// (KubeDB keeps issuing them for its backup proxy). `Rotate` changes nothing in the spec.
pub fn target_database(db: &MssqlServer, ops: &MssqlServerOpsRequest) -> MssqlServer {
    let mut target = db.clone();
    let tls = target.spec.tls.get_or_insert_with(TlsConfig::default);
    let Some(request) = ops.spec.tls.as_ref() else {
        return target;
    };
    match ops.spec.tls_change() {
        TlsChange::Rotate => {}
        TlsChange::Remove => tls.client_tls = Some(false),
        TlsChange::Update => {
            if let Some(issuer) = request.issuer_ref.clone() {
                tls.issuer_ref = Some(issuer);
            }
            let certificates = tls.certificates.get_or_insert_with(Vec::new);
            for wanted in request.certificates.iter().flatten() {
                match certificates.iter_mut().find(|c| c.alias == wanted.alias) {
                    Some(existing) => *existing = wanted.clone(),
                    None => certificates.push(wanted.clone()),
                }
            }
            if let Some(client_tls) = request.client_tls {
                tls.client_tls = Some(client_tls);
            }
        }
    }
    target
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/kubedb-docs");

    fn load<T: serde::de::DeserializeOwned>(name: &str) -> T {
        serde_saphyr::from_str(&std::fs::read_to_string(format!("{EXAMPLES}/{name}.yaml")).unwrap())
            .unwrap()
    }

    fn tls(db: &MssqlServer) -> serde_json::Value {
        serde_json::to_value(db.spec.tls.as_ref().unwrap()).unwrap()
    }

    #[test]
    fn add_tls_turns_client_tls_on_and_sets_the_client_subject() {
        let db: MssqlServer = load("ms-standalone");
        let target = target_database(&db, &load("msops-add-tls"));
        assert_eq!(
            tls(&target),
            serde_json::json!({
                "issuerRef": {"apiGroup": "cert-manager.io", "kind": "Issuer", "name": "mssqlserver-ca-issuer"},
                "certificates": [{"alias": "client", "subject": {"organizations": ["mssqlserver"], "organizationalUnits": ["client"]}}],
                "clientTLS": true
            })
        );
    }

    #[test]
    fn change_issuer_keeps_everything_else() {
        let db: MssqlServer = load("mssql-standalone-tls");
        let target = target_database(&db, &load("msops-change-issuer"));
        let tls = tls(&target);
        assert_eq!(tls["issuerRef"]["name"], "mssqlserver-new-ca-issuer");
        assert_eq!(tls["clientTLS"], true);
    }

    #[test]
    fn remove_and_rotate() {
        let db: MssqlServer = load("mssql-standalone-tls");
        assert_eq!(
            tls(&target_database(&db, &load("msops-remove")))["clientTLS"],
            false
        );
        assert_eq!(target_database(&db, &load("msops-rotate")), db);
    }

    #[test]
    fn the_target_of_the_target_is_the_target() {
        let db: MssqlServer = load("ms-standalone");
        for ops in [
            "msops-add-tls",
            "msops-change-issuer",
            "msops-remove",
            "msops-rotate",
        ] {
            let ops: MssqlServerOpsRequest = load(ops);
            let once = target_database(&db, &ops);
            assert_eq!(target_database(&once, &ops), once);
        }
    }
}
