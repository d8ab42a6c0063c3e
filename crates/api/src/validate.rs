//! Validation, as KubeDB's validating webhooks do it, with KubeDB's messages word for word (typos
//! included: users and scripts match on them). Rules KubeDB lacks but a careful operator needs
//! (an unknown alias, an issuer of the wrong kind…) say what is wrong and how to fix it.
//!
//! Validation runs on a defaulted object, as the webhook sees it.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, PodSpec as K8sPodSpec, TypedLocalObjectReference};
use serde_json::Value;

use crate::mssql::{CertificateSpec, PodSpec};
use crate::ops::{
    MSG_NO_TLS_OPERATION, MSG_SEVERAL_TLS_OPERATIONS, MSG_SPEC_IMMUTABLE, MSG_TLS_NIL, OPS_TYPES,
    OpsTlsSpec, TYPE_RECONFIGURE_TLS,
};
use crate::{
    ALIAS_CLIENT, ALIAS_ENDPOINT, ALIAS_SERVER, CONTAINER_MSSQL, DELETION_DO_NOT_TERMINATE,
    MssqlServer, MssqlServerOpsRequest, MssqlServerVersion, STORAGE_DURABLE, STORAGE_EPHEMERAL,
    TOPOLOGY_AVAILABILITY_GROUP, TOPOLOGY_DISTRIBUTED_AG,
};
use crate::{conf, names, renewal};

/// One problem with one field: `field` is the JSON path, `message` what to do about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

/// Env vars the operator sets itself.
pub const FORBIDDEN_ENV: [&str; 5] = [
    "MSSQL_SA_USERNAME",
    "MSSQL_SA_PASSWORD",
    "MSSQL_ENABLE_HADR",
    "MSSQL_AGENT_ENABLED",
    "VERSION",
];
pub const MANDATORY_ENV: &str = "MSSQL_PID";

/// Volume names the operator uses in the pod.
pub const RESERVED_VOLUMES: [&str; 9] = [
    "data",
    "config",
    "init-scripts",
    "endpoint-cert",
    "certs",
    "tls",
    "security-ca-certificates",
    "cacerts",
    "git-secret",
];

/// Mount paths the operator uses in the pod.
pub const RESERVED_MOUNT_PATHS: [&str; 9] = [
    "/var/opt/mssql",
    "/var/opt/mssql/mssql.conf",
    "/scripts",
    "/var/opt/mssql/endpoint-cert",
    "/var/opt/mssql/certs",
    "/var/opt/mssql/tls",
    "/var/opt/mssql/security/ca-certificates",
    "/etc/ssl/certs",
    "/etc/git-secret",
];

/// The only key of `spec.configuration.inline`.
pub const CONFIG_KEY: &str = "mssql.conf";

/// KubeDB reports a missing catalog entry with the API server's NotFound text.
pub fn version_not_found(name: &str) -> String {
    format!("mssqlserverversions.catalog.kubedb.com \"{name}\" not found")
}

/// Every problem of a (defaulted) `MSSQLServer`. `version` is its catalog entry, if one exists.
pub fn validate_mssqlserver(
    db: &MssqlServer,
    version: Option<&MssqlServerVersion>,
) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let spec = &db.spec;

    if version.is_none() {
        errors.push(FieldError::new(
            "spec.version",
            version_not_found(&spec.version),
        ));
    }
    if let Some(name) = db.metadata.name.as_deref() {
        validate_name(db, name, &mut errors);
    }
    validate_topology(db, &mut errors);

    match spec.tls.as_ref() {
        None => errors.push(FieldError::new("spec.tls", "spec.tls is missing")),
        Some(tls) => {
            match tls.issuer_ref.as_ref() {
                None => errors.push(FieldError::new(
                    "spec.tls.issuerRef",
                    "spec.tls.issuerRef' is missing",
                )),
                Some(issuer) => validate_issuer_ref(issuer, "spec.tls.issuerRef", &mut errors),
            }
            let allowed = if db.is_availability_group() {
                &[ALIAS_SERVER, ALIAS_CLIENT, ALIAS_ENDPOINT][..]
            } else {
                &[ALIAS_SERVER, ALIAS_CLIENT][..]
            };
            let certificates = tls.certificates.as_deref().unwrap_or_default();
            validate_certificates(certificates, "spec.tls.certificates", allowed, &mut errors);
        }
    }

    if let Some(pod) = spec.pod_template.as_ref().and_then(|t| t.spec.as_ref()) {
        validate_pod(pod, &mut errors);
    }
    validate_storage(db, &mut errors);

    if let Some(policy) = spec.deletion_policy.as_deref()
        && !["Halt", "Delete", "WipeOut", DELETION_DO_NOT_TERMINATE].contains(&policy)
    {
        errors.push(FieldError::new(
            "spec.deletionPolicy",
            format!("deletionPolicy {policy:?} is not supported; use Halt, Delete, WipeOut or DoNotTerminate"),
        ));
    }
    if let Some(inline) = spec.configuration.as_ref().and_then(|c| c.inline.as_ref()) {
        for (key, text) in inline {
            let field = format!("spec.configuration.inline[{key}]");
            if key != CONFIG_KEY {
                errors.push(FieldError::new(
                    field,
                    format!("inline configuration key {key:?} is not supported; put the settings under the key \"{CONFIG_KEY}\""),
                ));
            } else if let Err(problems) =
                conf::check_user(text, version.map(|v| v.spec.version.as_str()))
            {
                let problems = problems.into_iter();
                errors.extend(problems.map(|problem| FieldError::new(field.clone(), problem)));
            }
        }
    }
    if let Some(annotations) = db.metadata.annotations.as_ref() {
        errors.extend(renewal::check_annotations(annotations));
    }
    errors
}

/// The longest name whose StatefulSet's pods can be created: the StatefulSet controller labels
/// them `controller-revision-hash: <statefulset>-<hash of up to 10 characters>`, a label value of
/// at most 63.
const MAX_STATEFULSET_NAME: usize = names::MAX_NAME_LEN - 11;
/// An availability group's arbiter StatefulSet is `<name>-arbiter`.
const ARBITER_SUFFIX: &str = "-arbiter";

/// The database's name becomes its StatefulSet's, its pods' (`<name>-0`) and its Services', so it
/// must be a DNS-1035 label short enough for the labels Kubernetes derives from it.
fn validate_name(db: &MssqlServer, name: &str, errors: &mut Vec<FieldError>) {
    let bytes = name.as_bytes();
    let dns_label = bytes.first().is_some_and(u8::is_ascii_lowercase)
        && bytes
            .last()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-');
    if !dns_label {
        errors.push(FieldError::new(
            "metadata.name",
            format!("{name:?} cannot name the database's Services and pods: use lowercase letters, digits and '-', starting with a letter and ending with a letter or digit"),
        ));
    }
    let (limit, why) = if db.is_availability_group() {
        (
            MAX_STATEFULSET_NAME - ARBITER_SUFFIX.len(),
            format!("an availability group's arbiter StatefulSet is named <name>{ARBITER_SUFFIX}"),
        )
    } else {
        (
            MAX_STATEFULSET_NAME,
            "the StatefulSet is named <name>".to_owned(),
        )
    };
    if name.len() > limit {
        errors.push(FieldError::new(
            "metadata.name",
            format!("{name:?} has {} characters, at most {limit} fit: {why}, and Kubernetes labels its pods <statefulset>-<revision hash> in at most 63 characters; choose a shorter name", name.len()),
        ));
    }
}

fn validate_topology(db: &MssqlServer, errors: &mut Vec<FieldError>) {
    let replicas = db.spec.replicas;
    if db.is_standalone() {
        if replicas != Some(1) {
            errors.push(FieldError::new(
                "spec.replicas",
                "number of replicas for standalone must be one ",
            ));
        }
        return;
    }
    match db.topology_mode() {
        None | Some("") => errors.push(FieldError::new(
            "spec.topology.mode",
            ".spec.topology.mode can't be empty in cluster mode",
        )),
        Some(TOPOLOGY_AVAILABILITY_GROUP | TOPOLOGY_DISTRIBUTED_AG) => {}
        Some(other) => errors.push(FieldError::new(
            "spec.topology.mode",
            format!(
                "topology mode {other:?} is not supported; use AvailabilityGroup or DistributedAG"
            ),
        )),
    }
    if replicas.is_none_or(|r| r <= 0) {
        errors.push(FieldError::new(
            "spec.replicas",
            "number of replicas can not be nil and can not be less than or equal to 0",
        ));
    }
}

fn validate_issuer_ref(
    issuer: &TypedLocalObjectReference,
    field: &str,
    errors: &mut Vec<FieldError>,
) {
    if issuer.api_group.as_deref() != Some("cert-manager.io") {
        errors.push(FieldError::new(
            format!("{field}.apiGroup"),
            "the issuer must be a cert-manager one: set apiGroup to \"cert-manager.io\"",
        ));
    }
    if !["Issuer", "ClusterIssuer"].contains(&issuer.kind.as_str()) {
        errors.push(FieldError::new(
            format!("{field}.kind"),
            format!(
                "issuer kind {:?} is not supported; use Issuer or ClusterIssuer",
                issuer.kind
            ),
        ));
    }
    if issuer.name.is_empty() {
        errors.push(FieldError::new(
            format!("{field}.name"),
            "the issuer name is empty",
        ));
    }
}

fn validate_certificates(
    certificates: &[CertificateSpec],
    field: &str,
    allowed: &[&str],
    errors: &mut Vec<FieldError>,
) {
    for (i, certificate) in certificates.iter().enumerate() {
        let here = format!("{field}[{i}]");
        if !allowed.contains(&certificate.alias.as_str()) {
            errors.push(FieldError::new(
                format!("{here}.alias"),
                format!(
                    "certificate alias {:?} is not supported here; use one of: {}",
                    certificate.alias,
                    allowed.join(", ")
                ),
            ));
        }
        if certificates[..i]
            .iter()
            .any(|c| c.alias == certificate.alias)
        {
            errors.push(FieldError::new(
                format!("{here}.alias"),
                format!(
                    "certificate alias {:?} is listed twice; keep one entry per alias",
                    certificate.alias
                ),
            ));
        }
        if let Some(issuer) = certificate.issuer_ref.as_ref() {
            validate_issuer_ref(issuer, &format!("{here}.issuerRef"), errors);
        }
        let mut parsed = |key: &str, value: &Option<String>| {
            let value = value.as_deref()?;
            let parsed = crate::duration::parse(value);
            if parsed.is_none() {
                errors.push(FieldError::new(
                    format!("{here}.{key}"),
                    format!("{key} {value:?} is not a duration; write it like 2160h or 720h30m"),
                ));
            }
            parsed
        };
        let duration = parsed("duration", &certificate.duration);
        let renew_before = parsed("renewBefore", &certificate.renew_before);
        validate_lifetime(duration, renew_before, &here, errors);
    }
}

/// cert-manager's minimum certificate lifetime, its default, and its minimum `renewBefore`
/// (cert-manager v1.21: `pkg/apis/certmanager/v1/const.go`).
const CERT_MANAGER_MINIMUM_DURATION: Duration = Duration::from_secs(3600);
const CERT_MANAGER_DEFAULT_DURATION: Duration = Duration::from_secs(90 * 24 * 3600);
const CERT_MANAGER_MINIMUM_RENEW_BEFORE: Duration = Duration::from_secs(5 * 60);

/// What cert-manager's webhook refuses in a Certificate's `duration` and `renewBefore`
/// (`ValidateDuration`, `internal/apis/certmanager/validation/certificate.go`), in its words and
/// then ours: the operator copies both into the Certificate, which would otherwise be refused
/// long after the database or request was accepted. An unset `duration` is cert-manager's 90
/// days.
fn validate_lifetime(
    duration: Option<Duration>,
    renew_before: Option<Duration>,
    here: &str,
    errors: &mut Vec<FieldError>,
) {
    let go = crate::duration::go_string;
    if let Some(duration) = duration
        && duration < CERT_MANAGER_MINIMUM_DURATION
    {
        errors.push(FieldError::new(
            format!("{here}.duration"),
            format!(
                "certificate duration must be greater than {} (cert-manager refuses {}); set \
                 duration to 1h or more",
                go(CERT_MANAGER_MINIMUM_DURATION),
                go(duration)
            ),
        ));
    }
    let Some(renew_before) = renew_before else {
        return;
    };
    if renew_before < CERT_MANAGER_MINIMUM_RENEW_BEFORE {
        errors.push(FieldError::new(
            format!("{here}.renewBefore"),
            format!(
                "certificate renewBefore must be greater than {} (cert-manager refuses {}); set \
                 renewBefore to 5m or more, or leave it out for a third of the duration",
                go(CERT_MANAGER_MINIMUM_RENEW_BEFORE),
                go(renew_before)
            ),
        ));
    }
    let lifetime = duration.unwrap_or(CERT_MANAGER_DEFAULT_DURATION);
    if renew_before >= lifetime {
        let whose = match duration {
            Some(_) => "",
            None => " (cert-manager's default: duration is not set)",
        };
        errors.push(FieldError::new(
            format!("{here}.renewBefore"),
            format!(
                "certificate duration {}{whose} must be greater than renewBefore {}; set \
                 renewBefore below the duration, or leave it out for a third of it",
                go(lifetime),
                go(renew_before)
            ),
        ));
    }
}

fn validate_pod(pod: &PodSpec, errors: &mut Vec<FieldError>) {
    validate_pod_extra(&pod.extra, errors);
    let containers = pod.containers.as_deref().unwrap_or_default();
    if let Some((i, mssql)) = containers
        .iter()
        .enumerate()
        .find(|(_, c)| c.name == CONTAINER_MSSQL)
    {
        validate_env(
            mssql,
            &format!("spec.podTemplate.spec.containers[{i}].env"),
            errors,
        );
    }
    for (i, volume) in pod.volumes.iter().flatten().enumerate() {
        if RESERVED_VOLUMES.contains(&volume.name.as_str()) {
            errors.push(FieldError::new(
                format!("spec.podTemplate.spec.volumes[{i}].name"),
                format!("Can't use a reserved volume name: {}", volume.name),
            ));
        }
    }
    let lists = [
        ("containers", &pod.containers),
        ("initContainers", &pod.init_containers),
    ];
    for (list, containers) in lists {
        for (i, container) in containers.iter().flatten().enumerate() {
            for (j, mount) in container.volume_mounts.iter().flatten().enumerate() {
                if RESERVED_MOUNT_PATHS.contains(&mount.mount_path.as_str()) {
                    errors.push(FieldError::new(
                        format!("spec.podTemplate.spec.{list}[{i}].volumeMounts[{j}].mountPath"),
                        format!(
                            "Can't use a reserve volume mount path name: {}",
                            mount.mount_path
                        ),
                    ));
                }
            }
        }
    }
}

/// KubeDB's reference to one of its PlacementPolicy objects; its defaulter writes `default`.
pub const POD_PLACEMENT_POLICY: &str = "podPlacementPolicy";

/// The PodSpec fields the typed model does not hold are passed to the StatefulSet as written, so
/// each must be a Kubernetes PodSpec field of the right type: none is dropped silently.
fn validate_pod_extra(extra: &BTreeMap<String, Value>, errors: &mut Vec<FieldError>) {
    const HERE: &str = "spec.podTemplate.spec";
    for (key, value) in extra {
        if key == POD_PLACEMENT_POLICY {
            if value.get("name").and_then(Value::as_str) != Some("default") {
                errors.push(FieldError::new(
                    format!("{HERE}.{key}"),
                    "KubeDB's PlacementPolicy objects are not supported, only the name \"default\" (which changes nothing) is accepted; remove it and use affinity or topologySpreadConstraints",
                ));
            }
            continue;
        }
        let alone = serde_json::json!({ "containers": [], key: value });
        match serde_path_to_error::deserialize::<_, K8sPodSpec>(&alone) {
            Err(error) => errors.push(FieldError::new(
                format!("{HERE}.{}", error.path()),
                format!("{}; see `kubectl explain pod.spec.{key}`", error.inner()),
            )),
            Ok(typed) => {
                let kept = serde_json::to_value(typed).unwrap_or_default();
                for path in dropped(&alone, &kept, String::new()) {
                    errors.push(FieldError::new(
                        format!("{HERE}{path}"),
                        "not a field of a Kubernetes PodSpec here; check its spelling and place with `kubectl explain pod.spec`",
                    ));
                }
            }
        }
    }
}

/// The paths (`.a.b[0].c`) of what `given` holds and `kept` does not: fields a typed round trip
/// threw away. A null is nothing to keep.
fn dropped(given: &Value, kept: &Value, here: String) -> Vec<String> {
    match (given, kept) {
        (Value::Object(given), Value::Object(kept)) => given
            .iter()
            .filter(|(_, value)| !value.is_null())
            .flat_map(|(key, value)| {
                let path = format!("{here}.{key}");
                match kept.get(key) {
                    None => vec![path],
                    Some(kept) => dropped(value, kept, path),
                }
            })
            .collect(),
        (Value::Array(given), Value::Array(kept)) => given
            .iter()
            .zip(kept)
            .enumerate()
            .flat_map(|(i, (given, kept))| dropped(given, kept, format!("{here}[{i}]")))
            .collect(),
        _ => Vec::new(),
    }
}

fn validate_env(mssql: &Container, field: &str, errors: &mut Vec<FieldError>) {
    let env = mssql.env.as_deref().unwrap_or_default();
    for (i, var) in env.iter().enumerate() {
        if FORBIDDEN_ENV.contains(&var.name.as_str()) {
            errors.push(FieldError::new(
                format!("{field}[{i}]"),
                format!(
                    "environment variable {} is forbidden to use in MSSQLServer spec",
                    var.name
                ),
            ));
        }
    }
    if !env.iter().any(|var| var.name == MANDATORY_ENV) {
        errors.push(FieldError::new(
            field,
            format!("environment variable {MANDATORY_ENV} must be provided in MSSQLServer spec"),
        ));
    }
}

fn validate_storage(db: &MssqlServer, errors: &mut Vec<FieldError>) {
    match db.spec.storage_type.as_deref() {
        None | Some("") => errors.push(FieldError::new(
            "spec.storageType",
            "StorageType can not be empty",
        )),
        Some(STORAGE_EPHEMERAL) => {}
        Some(STORAGE_DURABLE) => {
            if db.spec.storage.is_none() {
                errors.push(FieldError::new(
                    "spec.storage",
                    "spec.storage is required when storageType is Durable: give a storageClassName and resources.requests.storage, or set storageType: Ephemeral",
                ));
            }
        }
        Some(_) => errors.push(FieldError::new(
            "spec.storageType",
            "StorageType should be either durable or ephemeral",
        )),
    }
}

/// Deleting a database whose policy is `DoNotTerminate` is refused.
pub fn validate_deletion(db: &MssqlServer) -> Option<FieldError> {
    (db.spec.deletion_policy.as_deref() == Some(DELETION_DO_NOT_TERMINATE)).then(|| {
        FieldError::new(
            "spec.terminationPolicy",
            "Can not delete as terminationPolicy is set to \"DoNotTerminate\"",
        )
    })
}

/// KubeDB's words for a request whose database does not exist.
pub fn database_not_found(ops: &MssqlServerOpsRequest) -> String {
    let namespace = ops.metadata.namespace.as_deref().unwrap_or("default");
    format!(
        "spec.databaseRef {namespace}/{}, is invalid or not found",
        ops.spec.database_ref.name
    )
}

/// Every problem of an ops request. `database_exists` is `None` when it cannot be known (an
/// offline check of a file without the database in it).
pub fn validate_ops_request(
    ops: &MssqlServerOpsRequest,
    database_exists: Option<bool>,
) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let spec = &ops.spec;
    if !OPS_TYPES.contains(&spec.type_.as_str()) {
        errors.push(FieldError::new(
            "spec.type",
            format!(
                "defined OpsRequestType {} is not supported, supported types for MSSQLServer are {}",
                spec.type_,
                OPS_TYPES.join(", ")
            ),
        ));
    }
    if database_exists == Some(false) {
        errors.push(FieldError::new("spec.databaseRef", database_not_found(ops)));
    }
    if let Some(apply) = spec.apply.as_deref()
        && !["IfReady", "Always"].contains(&apply)
    {
        errors.push(FieldError::new(
            "spec.apply",
            format!("apply {apply:?} is not supported; use IfReady or Always"),
        ));
    }
    if let Some(timeout) = spec.timeout.as_deref()
        && crate::duration::parse(timeout).is_none()
    {
        errors.push(FieldError::new(
            "spec.timeout",
            format!("timeout {timeout:?} is not a duration; write it like 5m, 90s or 1h30m"),
        ));
    }
    if spec.type_ == TYPE_RECONFIGURE_TLS {
        match spec.tls.as_ref() {
            None => errors.push(FieldError::new("spec.tls", MSG_TLS_NIL)),
            Some(tls) => validate_ops_tls(tls, &mut errors),
        }
    }
    errors
}

fn validate_ops_tls(tls: &OpsTlsSpec, errors: &mut Vec<FieldError>) {
    let operations = [
        tls.remove == Some(true),
        tls.rotate_certificates == Some(true),
        tls.issuer_ref.is_some() || tls.certificates.is_some(),
    ]
    .into_iter()
    .filter(|on| *on)
    .count();
    match operations {
        0 => errors.push(FieldError::new("spec.tls", MSG_NO_TLS_OPERATION)),
        1 => {}
        _ => errors.push(FieldError::new("spec.tls", MSG_SEVERAL_TLS_OPERATIONS)),
    }
    if let Some(issuer) = tls.issuer_ref.as_ref() {
        validate_issuer_ref(issuer, "spec.tls.issuerRef", errors);
    }
    // The database's topology is not known here; the operator re-checks aliases against it.
    let all = [ALIAS_SERVER, ALIAS_CLIENT, ALIAS_ENDPOINT];
    validate_certificates(
        tls.certificates.as_deref().unwrap_or_default(),
        "spec.tls.certificates",
        &all,
        errors,
    );
}

/// An ops request's spec never changes after creation.
pub fn validate_ops_update(
    old: &MssqlServerOpsRequest,
    new: &MssqlServerOpsRequest,
) -> Option<FieldError> {
    (old.spec != new.spec).then(|| FieldError::new("spec", MSG_SPEC_IMMUTABLE))
}
