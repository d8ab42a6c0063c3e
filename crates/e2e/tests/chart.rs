//! The Helm chart (`deploy/helm/mssql-operator`) as helm sees it: `helm lint --strict` passes, and
//! `helm template`, with the default values and with other ones, renders the objects the chart
//! promises: a locked-down operator Deployment with probes and the downward-API identity, RBAC
//! without wildcards, the metrics Service, the optional ServiceMonitor and the toggled catalog.
//! Needs no control plane, only helm (built by `hack/helm`; the test fails if it cannot be).

use mssql_e2e::chart::{CHART, helm, helm_ok, of_kind, one, render};
use mssql_operator::admission::PATH;
use mssql_operator::admission::registration;
use serde_json::{Value, json};

const NAMESPACE: &str = "mssql-operator-system";
const OTHER_VALUES: [&str; 3] = [
    "metrics.serviceMonitor.enabled=true",
    "catalog.enabled=false",
    "replicas=2",
];

fn kinds(objects: &[Value]) -> Vec<String> {
    let mut kinds: Vec<String> = objects
        .iter()
        .map(|o| o["kind"].as_str().unwrap().to_owned())
        .collect();
    kinds.sort();
    kinds.dedup();
    kinds
}

#[test]
fn lint_passes_with_default_and_other_values() {
    let default = helm_ok(&["lint", "--strict", CHART]);
    assert!(
        default.contains("1 chart(s) linted, 0 chart(s) failed"),
        "{default}"
    );
    let mut args = vec!["lint", "--strict", CHART];
    for set in OTHER_VALUES {
        args.extend(["--set", set]);
    }
    let other = helm_ok(&args);
    assert!(
        other.contains("1 chart(s) linted, 0 chart(s) failed"),
        "{other}"
    );
}

/// The Deployment's pod runs the operator locked down, with its identity, port and probes.
fn assert_secure_deployment(objects: &[Value], replicas: i64) {
    let deployment = one(objects, "Deployment");
    assert_eq!(deployment["metadata"]["namespace"], NAMESPACE);
    assert_eq!(deployment["spec"]["replicas"], replicas);
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(
        pod["serviceAccountName"],
        one(objects, "ServiceAccount")["metadata"]["name"]
    );
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["securityContext"]["runAsUser"], 65532);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    let containers = pod["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 1);
    let container = &containers[0];
    let security = &container["securityContext"];
    assert_eq!(security["runAsNonRoot"], true);
    assert_eq!(security["runAsUser"], 65532);
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["capabilities"]["drop"], json!(["ALL"]));
    assert!(security["capabilities"].get("add").is_none());
    assert_eq!(security["seccompProfile"]["type"], "RuntimeDefault");
    for kind in ["requests", "limits"] {
        for resource in ["cpu", "memory"] {
            assert!(
                container["resources"][kind][resource].is_string(),
                "resources.{kind}.{resource} is set: {}",
                container["resources"]
            );
        }
    }
    // The flags after these: served_certificate_checks_and_the_renewal_policy_become_flags.
    assert_eq!(
        container["args"].as_array().unwrap()[..3],
        json!(["run", "--listen", "0.0.0.0:8080"])
            .as_array()
            .unwrap()[..]
    );
    assert_eq!(
        container["ports"],
        json!([
            {"name": "metrics", "containerPort": 8080, "protocol": "TCP"},
            {"name": "webhook", "containerPort": 9443, "protocol": "TCP"}
        ])
    );
    assert_eq!(container["image"], "mssql-operator:0.1.0");
    for (name, field) in [
        ("POD_NAME", "metadata.name"),
        ("POD_NAMESPACE", "metadata.namespace"),
    ] {
        let env = container["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .unwrap_or_else(|| panic!("env {name}"));
        assert_eq!(env["valueFrom"]["fieldRef"]["fieldPath"], field);
    }
    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        assert_eq!(container[probe]["httpGet"]["path"], path);
        assert_eq!(container[probe]["httpGet"]["port"], "metrics");
    }
}

/// Every rule names its groups, resources and verbs: no `*` anywhere. Returns the rules.
fn rules<'a>(objects: &'a [Value], kind: &str) -> &'a Vec<Value> {
    let rules = one(objects, kind)["rules"].as_array().unwrap();
    assert!(!rules.is_empty());
    for rule in rules {
        for field in ["apiGroups", "resources", "verbs", "resourceNames"] {
            for item in rule[field].as_array().into_iter().flatten() {
                assert!(
                    !item.as_str().unwrap().contains('*'),
                    "{kind} rule {rule} has a wildcard"
                );
            }
        }
        assert!(rule.get("nonResourceURLs").is_none(), "{rule}");
    }
    rules
}

fn assert_rbac(objects: &[Value]) {
    let account = one(objects, "ServiceAccount");
    assert_eq!(account["metadata"]["namespace"], NAMESPACE);
    let subject = json!([{"kind": "ServiceAccount", "name": account["metadata"]["name"], "namespace": NAMESPACE}]);
    for (binding, role) in [
        ("ClusterRoleBinding", "ClusterRole"),
        ("RoleBinding", "Role"),
    ] {
        let binding = one(objects, binding);
        assert_eq!(binding["subjects"], subject);
        assert_eq!(binding["roleRef"]["kind"], role);
        assert_eq!(
            binding["roleRef"]["name"],
            one(objects, role)["metadata"]["name"]
        );
    }
    let cluster = rules(objects, "ClusterRole");
    let grants = |group: &str, resource: &str, verb: &str| {
        cluster.iter().any(|r| {
            r["apiGroups"].as_array().unwrap().contains(&json!(group))
                && r["resources"]
                    .as_array()
                    .unwrap()
                    .contains(&json!(resource))
                && r["verbs"].as_array().unwrap().contains(&json!(verb))
        })
    };
    assert!(grants("", "pods/eviction", "create"));
    assert!(grants("cert-manager.io", "certificates", "patch"));
    assert!(grants("kubedb.com", "mssqlservers/status", "update"));
    assert!(grants("events.k8s.io", "events", "create"));
    // The Lease is the only namespaced permission, in the release's namespace.
    let role = one(objects, "Role");
    assert_eq!(role["metadata"]["namespace"], NAMESPACE);
    for rule in rules(objects, "Role") {
        assert_eq!(rule["apiGroups"], json!(["coordination.k8s.io"]));
        assert_eq!(rule["resources"], json!(["leases"]));
    }
}

fn service<'a>(objects: &'a [Value], suffix: &str) -> &'a Value {
    let services = of_kind(objects, "Service");
    let named = |s: &&&Value| s["metadata"]["name"].as_str().unwrap().ends_with(suffix);
    services
        .iter()
        .find(named)
        .unwrap_or_else(|| panic!("a Service *{suffix}"))
}

fn assert_metrics_service(objects: &[Value]) {
    let service = service(objects, "-metrics");
    assert_eq!(
        service["spec"]["ports"],
        json!([{"name": "metrics", "port": 8080, "targetPort": "metrics", "protocol": "TCP"}])
    );
    let pod_labels = &one(objects, "Deployment")["spec"]["template"]["metadata"]["labels"];
    for (key, value) in service["spec"]["selector"].as_object().unwrap() {
        assert_eq!(
            &pod_labels[key], value,
            "the Service selects the operator pods"
        );
    }
}

#[test]
fn default_values_render_a_locked_down_operator_with_its_catalog() {
    let objects = render("mssql-operator", NAMESPACE, &[]);
    assert_eq!(
        kinds(&objects),
        [
            "ClusterRole",
            "ClusterRoleBinding",
            "Deployment",
            "MSSQLServerVersion",
            "Role",
            "RoleBinding",
            "Secret",
            "Service",
            "ServiceAccount",
            "ValidatingWebhookConfiguration"
        ]
    );
    assert_eq!(
        one(&objects, "Deployment")["metadata"]["name"],
        "mssql-operator"
    );
    assert_secure_deployment(&objects, 1);
    assert_rbac(&objects);
    assert_metrics_service(&objects);
    // The catalog is `mssql-operator catalog`, as in deploy/catalog.yaml.
    let catalog: Vec<Value> = serde_saphyr::from_multiple(
        &std::fs::read_to_string(mssql_e2e::root().join("deploy/catalog.yaml")).unwrap(),
    )
    .unwrap();
    let catalog: Vec<Value> = catalog.into_iter().filter(|d| !d.is_null()).collect();
    let rendered: Vec<Value> = of_kind(&objects, "MSSQLServerVersion")
        .into_iter()
        .cloned()
        .collect();
    assert_eq!(rendered, catalog);
    // CRDs only with --include-crds (Helm installs crds/ itself).
    let with_crds = helm_ok(&["template", "x", CHART, "--include-crds"]);
    let crds: Vec<Value> = serde_saphyr::from_multiple(&with_crds).unwrap();
    assert_eq!(
        crds.iter()
            .filter(|o| o["kind"] == "CustomResourceDefinition")
            .count(),
        3
    );
}

#[test]
fn other_values_render_the_service_monitor_no_catalog_and_standbys() {
    let objects = render("ops", NAMESPACE, &OTHER_VALUES);
    assert_eq!(
        kinds(&objects),
        [
            "ClusterRole",
            "ClusterRoleBinding",
            "Deployment",
            "Role",
            "RoleBinding",
            "Secret",
            "Service",
            "ServiceAccount",
            "ServiceMonitor",
            "ValidatingWebhookConfiguration"
        ]
    );
    assert_eq!(
        one(&objects, "Deployment")["metadata"]["name"],
        "ops-mssql-operator"
    );
    assert_secure_deployment(&objects, 2);
    assert_rbac(&objects);
    assert_metrics_service(&objects);
    let monitor = one(&objects, "ServiceMonitor");
    assert_eq!(monitor["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "metrics");
    assert_eq!(monitor["spec"]["endpoints"][0]["path"], "/metrics");
    assert_eq!(
        monitor["spec"]["selector"]["matchLabels"],
        service(&objects, "-metrics")["spec"]["selector"]
    );
}

/// Availability groups' coordinators run the operator's own image.
const IMAGE_ARG: &str = "--coordinator-image=mssql-operator:0.1.0";

#[test]
fn served_certificate_checks_and_the_renewal_policy_become_flags() {
    // The webhook's flags: the_webhook_is_the_one_the_operator_registers.
    let args = |values: &[&str]| {
        let values = [values, &["webhook.enabled=false"]].concat();
        let objects = render("ops", NAMESPACE, &values);
        one(&objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"].clone()
    };
    let defaults = ["--renewal-rollout=Auto", "--renewal-safety-margin=24h"];
    assert_eq!(
        args(&[]),
        json!([
            "run",
            "--listen",
            "0.0.0.0:8080",
            IMAGE_ARG,
            defaults[0],
            defaults[1]
        ])
    );
    assert_eq!(
        args(&["verifyServedCertificates=false"]),
        json!([
            "run",
            "--listen",
            "0.0.0.0:8080",
            IMAGE_ARG,
            "--verify-served-certificates=false",
            defaults[0],
            defaults[1]
        ])
    );
    assert_eq!(
        args(&[
            "renewal.rollout=Manual",
            "renewal.maintenanceWindow=Sat\\,Sun 22:00-02:00 Europe/Berlin",
            "renewal.safetyMargin=72h"
        ]),
        json!([
            "run",
            "--listen",
            "0.0.0.0:8080",
            IMAGE_ARG,
            "--renewal-rollout=Manual",
            "--maintenance-window=Sat,Sun 22:00-02:00 Europe/Berlin",
            "--renewal-safety-margin=72h"
        ])
    );
    let refused = helm(&["template", "x", CHART, "--set", "renewal.rollout=Sometimes"]);
    assert!(
        !refused.ok
            && refused
                .stderr
                .contains("renewal.rollout is \"Sometimes\": use Auto or Manual"),
        "{}",
        refused.stderr
    );
}

#[test]
fn the_webhook_is_the_one_the_operator_registers() {
    let objects = render("ops", NAMESPACE, &[]);
    let rendered = one(&objects, "ValidatingWebhookConfiguration");
    assert_eq!(rendered["metadata"]["name"], "ops-mssql-operator");
    // Everything but how the API server reaches it: the operator's own registration by URL.
    let registered = serde_json::to_value(registration::by_url(
        "x",
        "https://h",
        "",
        &Default::default(),
    ))
    .unwrap();
    let without_client = |webhooks: &Value| -> Vec<Value> {
        let mut webhooks = webhooks.as_array().unwrap().clone();
        for webhook in &mut webhooks {
            webhook.as_object_mut().unwrap().remove("clientConfig");
        }
        webhooks
    };
    assert_eq!(
        without_client(&rendered["webhooks"]),
        without_client(&registered["webhooks"])
    );
    for webhook in rendered["webhooks"].as_array().unwrap() {
        assert_eq!(
            webhook["clientConfig"],
            json!({"service": {"name": "ops-mssql-operator-webhook", "namespace": NAMESPACE, "path": PATH, "port": 443}}),
            "no caBundle: the operator keeps it"
        );
    }
    let webhook_service = service(&objects, "-webhook");
    assert_eq!(
        webhook_service["spec"]["ports"],
        json!([{"name": "webhook", "port": 443, "targetPort": "webhook", "protocol": "TCP"}])
    );
    let args = one(&objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .unwrap()
        .clone();
    for flag in [
        "--webhook-listen=0.0.0.0:9443".to_owned(),
        format!("--webhook-host=ops-mssql-operator-webhook.{NAMESPACE}.svc"),
        "--webhook-secret=ops-mssql-operator-webhook-tls".to_owned(),
        "--webhook-configuration=ops-mssql-operator".to_owned(),
    ] {
        assert!(args.contains(&json!(flag)), "{flag} in {args:?}");
    }
    let secret = one(&objects, "Secret");
    assert_eq!(secret["metadata"]["name"], "ops-mssql-operator-webhook-tls");
    assert!(secret.get("data").is_none(), "the operator writes it");
    let configuration_rule = rules(&objects, "ClusterRole")
        .iter()
        .find(|r| r["resources"] == json!(["validatingwebhookconfigurations"]))
        .expect("a rule for the webhook configuration");
    assert_eq!(
        configuration_rule["resourceNames"],
        json!(["ops-mssql-operator"])
    );
    assert_eq!(configuration_rule["verbs"], json!(["get", "patch"]));

    let chosen = render(
        "ops",
        NAMESPACE,
        &[
            "webhook.failurePolicy=Ignore",
            "webhook.namespaceSelector.matchLabels.team=db",
        ],
    );
    for webhook in one(&chosen, "ValidatingWebhookConfiguration")["webhooks"]
        .as_array()
        .unwrap()
    {
        assert_eq!(webhook["failurePolicy"], "Ignore");
        assert_eq!(
            webhook["namespaceSelector"],
            json!({"matchLabels": {"team": "db"}})
        );
    }
    let without = render("ops", NAMESPACE, &["webhook.enabled=false"]);
    for kind in ["ValidatingWebhookConfiguration", "Secret"] {
        assert!(of_kind(&without, kind).is_empty(), "{kind}");
    }
    assert_eq!(of_kind(&without, "Service").len(), 1);
    assert!(!serde_json::to_string(&without).unwrap().contains("webhook"));
}

#[test]
fn watch_namespaces_moves_every_namespaced_grant_into_roles_of_those_namespaces() {
    let everywhere = render("ops", NAMESPACE, &[]);
    let objects = render("ops", NAMESPACE, &["watchNamespaces={sales,hr}"]);
    let resources = |rules: &[Value]| -> Vec<String> {
        let mut all: Vec<String> = rules
            .iter()
            .flat_map(|r| r["resources"].as_array().unwrap().clone())
            .map(|r| r.as_str().unwrap().to_owned())
            .collect();
        all.sort();
        all
    };
    // The ClusterRole keeps only what is cluster-scoped: no Secret, pod or workload anywhere.
    let cluster = rules(&objects, "ClusterRole");
    assert_eq!(
        resources(cluster),
        [
            "clusterissuers",
            "mssqlserverversions",
            "validatingwebhookconfigurations"
        ]
    );
    let namespaced: Vec<Value> = rules(&everywhere, "ClusterRole")
        .iter()
        .filter(|r| !cluster.contains(r))
        .cloned()
        .collect();
    for namespace in ["sales", "hr"] {
        let in_namespace = |kind: &str| -> &Value {
            let found: Vec<&Value> = of_kind(&objects, kind)
                .into_iter()
                .filter(|o| o["metadata"]["namespace"] == namespace)
                .collect();
            assert_eq!(found.len(), 1, "one {kind} in {namespace}");
            found[0]
        };
        assert_eq!(
            in_namespace("Role")["rules"].as_array().unwrap(),
            &namespaced,
            "the grants the ClusterRole has without watchNamespaces"
        );
        let binding = in_namespace("RoleBinding");
        assert_eq!(binding["roleRef"]["name"], "ops-mssql-operator");
        assert_eq!(
            binding["subjects"],
            json!([{"kind": "ServiceAccount", "name": "ops-mssql-operator", "namespace": NAMESPACE}])
        );
    }
    // In the release's namespace: the Lease, and the webhook's Secret by name only.
    let leader = of_kind(&objects, "Role")
        .into_iter()
        .find(|r| r["metadata"]["namespace"] == NAMESPACE)
        .unwrap();
    assert!(leader["rules"].as_array().unwrap().contains(&json!({
        "apiGroups": [""], "resources": ["secrets"],
        "resourceNames": ["ops-mssql-operator-webhook-tls"], "verbs": ["get", "patch"]
    })));
    let args = &one(&objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"];
    assert!(
        args.as_array()
            .unwrap()
            .contains(&json!("--watch-namespaces=sales,hr")),
        "{args}"
    );
    for webhook in one(&objects, "ValidatingWebhookConfiguration")["webhooks"]
        .as_array()
        .unwrap()
    {
        assert_eq!(
            webhook["namespaceSelector"],
            json!({"matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["sales", "hr"]}]})
        );
    }
}
