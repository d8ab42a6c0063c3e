//! The API server's audit log: `hack/cluster/up` writes every request of a service account to
//! `<run dir>/logs/audit.log`, which proves what an operator identity did and was refused.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde_json::Value;

/// A permission as (API group, resource[/subresource], verb).
pub type Access = (String, String, String);

/// What the audit log says one user did.
pub struct Audited {
    /// Each access with its count of requests.
    pub used: BTreeMap<Access, usize>,
    /// Every request refused by authentication or authorization, described.
    pub refused: Vec<String>,
    /// The addresses the requests came from.
    pub source_ips: BTreeSet<String>,
}

/// The audit log of the plane in `MSSQL_CLUSTER_DIR` (the run dir of hack/cluster/lib.sh).
fn audit_log() -> PathBuf {
    crate::plane::run_dir().join("logs/audit.log")
}

/// The requests of `user` in the audit log.
pub fn audited(user: &str) -> Audited {
    let path = audit_log();
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; the plane must be started by a hack/cluster/up that writes the audit log (set MSSQL_CLUSTER_DIR to the plane's run dir)",
            path.display()
        )
    });
    let mut audited = Audited {
        used: BTreeMap::new(),
        refused: Vec::new(),
        source_ips: BTreeSet::new(),
    };
    let mut seen = BTreeSet::new();
    // The API server may be writing the last line while we read: only whole lines count.
    let whole = &text[..text.rfind('\n').map_or(0, |end| end + 1)];
    for line in whole.lines() {
        let event: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("{}: a line is not JSON: {e}: {line}", path.display()));
        // One count per request, at its first logged stage: a watch is logged at ResponseStarted
        // and completes only when it times out or its client goes, which may be after this read.
        if event["user"]["username"] != user
            || !seen.insert(event["auditID"].as_str().unwrap_or_default().to_owned())
        {
            continue;
        }
        for ip in event["sourceIPs"].as_array().into_iter().flatten() {
            audited
                .source_ips
                .insert(ip.as_str().unwrap_or_default().to_owned());
        }
        let object = &event["objectRef"];
        let mut resource = object["resource"].as_str().unwrap_or_default().to_owned();
        if let Some(sub) = object["subresource"].as_str() {
            resource = format!("{resource}/{sub}");
        }
        let verb = event["verb"].as_str().unwrap_or_default().to_owned();
        let code = event["responseStatus"]["code"].as_i64().unwrap_or_default();
        // Refused by authorization (RBAC), not by admission: a 403 for writing into a namespace
        // being deleted (other tests' namespaces, which the operator also watches) is not one.
        let forbidden = event["annotations"]["authorization.k8s.io/decision"] == "forbid";
        if code == 401 || forbidden {
            audited.refused.push(format!(
                "{code} {verb} {resource} {} in {:?}: {}",
                object["name"], object["namespace"], event["responseStatus"]["message"]
            ));
        }
        let group = object["apiGroup"].as_str().unwrap_or_default().to_owned();
        // A server-side apply that created its object (201) was authorized as `create` too.
        if verb == "patch" && code == 201 {
            *audited
                .used
                .entry((group.clone(), resource.clone(), "create".to_owned()))
                .or_default() += 1;
        }
        *audited.used.entry((group, resource, verb)).or_default() += 1;
    }
    audited
}
