//! Object names KubeDB derives from a database name. Users see them (secret names, certificate
//! names), so they must match KubeDB's exactly.

/// Longest name of most Kubernetes objects (a DNS-1123 label).
pub const MAX_NAME_LEN: usize = 63;

/// `<name>-<suffix>`, cutting `name` so the result fits in 63 characters, without a leading or
/// trailing `-` (kmodules `NameWithSuffix`).
pub fn with_suffix(name: &str, suffix: &str) -> String {
    if suffix.len() >= MAX_NAME_LEN {
        return suffix[suffix.len() - MAX_NAME_LEN..]
            .trim_matches('-')
            .to_owned();
    }
    let keep = (MAX_NAME_LEN - suffix.len() - 1).min(name.len());
    let head = name.get(..keep).unwrap_or(name);
    format!("{head}-{suffix}").trim_matches('-').to_owned()
}

/// The cert-manager Certificate, and its default Secret, of a certificate alias.
pub fn certificate(db: &str, alias: &str) -> String {
    with_suffix(db, &format!("{alias}-cert"))
}

/// The Secret with the `sa` credentials when the user names none.
pub fn auth_secret(db: &str) -> String {
    with_suffix(db, "auth")
}

/// The headless Service that gives each pod its DNS name.
pub fn governing_service(db: &str) -> String {
    with_suffix(db, "pods")
}

/// The Service of an availability group's secondaries.
pub fn secondary_service(db: &str) -> String {
    with_suffix(db, "secondary")
}

/// The StatefulSet (and pod) of an even-sized availability group's quorum witness.
pub fn arbiter(db: &str) -> String {
    with_suffix(db, crate::labels::ROLE_ARBITER)
}

/// The availability group of a database: its name with everything but ASCII letters and digits
/// removed (KubeDB's `AvailabilityGroupName()`: `mssqlserver-ag-cluster` → `mssqlserveragcluster`).
pub fn availability_group(db: &str) -> String {
    db.chars().filter(char::is_ascii_alphanumeric).collect()
}

/// The `coordination.k8s.io` Lease whose holder's server is the group's primary.
pub fn coordinator_lease(db: &str) -> String {
    with_suffix(db, "coordinator")
}

/// The Secret with the password of the endpoint's `dbm_login` (KubeDB's default name).
pub fn dbm_login_secret(db: &str) -> String {
    with_suffix(db, "dbm-login")
}

/// The Secret with the password of the database master key (KubeDB's default name).
pub fn master_key_secret(db: &str) -> String {
    with_suffix(db, "master-key")
}

/// The operator's `mssql.conf` Secret (KubeDB before 2026: `<db>-config`).
pub fn config_secret(db: &str) -> String {
    with_suffix(db, "config")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_availability_group_keeps_letters_and_digits_only() {
        assert_eq!(
            availability_group("mssqlserver-ag-cluster"),
            "mssqlserveragcluster"
        );
        assert_eq!(availability_group("ag1"), "ag1");
        assert_eq!(coordinator_lease("ag1"), "ag1-coordinator");
        assert_eq!(dbm_login_secret("ag1"), "ag1-dbm-login");
        assert_eq!(master_key_secret("ag1"), "ag1-master-key");
    }

    #[test]
    fn short_names_are_joined() {
        assert_eq!(
            certificate("ms-standalone", "server"),
            "ms-standalone-server-cert"
        );
        assert_eq!(
            certificate("mssql-ag", "endpoint"),
            "mssql-ag-endpoint-cert"
        );
        assert_eq!(auth_secret("ms"), "ms-auth");
    }

    #[test]
    fn long_names_are_cut_to_63() {
        let db = "a".repeat(70);
        let name = certificate(&db, "client");
        assert_eq!(name.len(), 63);
        assert!(name.ends_with("-client-cert"));
    }

    #[test]
    fn no_dash_is_left_at_the_cut() {
        // The cut falls right after a '-' of the database name.
        let db = format!("{}-b", "a".repeat(51));
        assert_eq!(with_suffix(&db, "server-cert").len(), 63);
        assert!(!with_suffix("-", "x").starts_with('-'));
        assert_eq!(with_suffix("db", &"s".repeat(70)), "s".repeat(63));
    }
}
