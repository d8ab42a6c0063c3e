//! Reading a KubeDB object and writing it back loses nothing, including fields this operator does
//! not act on, and the defaulted form survives a YAML round trip.

mod common;

use common::{defaulted, example_text, yaml};
use mssql_api::{MssqlServer, MssqlServerOpsRequest, MssqlServerVersion};
use pretty_assertions::assert_eq;
use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;

fn lossless<T: DeserializeOwned + Serialize>(text: &str) {
    let original: Value = yaml(text);
    let typed: T = serde_json::from_value(original.clone()).expect("parses");
    assert_eq!(serde_json::to_value(&typed).unwrap(), original);
}

#[test]
fn every_doc_example_round_trips() {
    for name in common::DATABASE_EXAMPLES {
        lossless::<MssqlServer>(&example_text(name));
    }
    for name in common::OPS_EXAMPLES {
        // The CRD defaults (apply, maxRetries) are part of what the API server stores.
        let mut expected: Value = yaml(&example_text(name));
        let typed: MssqlServerOpsRequest = serde_json::from_value(expected.clone()).unwrap();
        expected["spec"]["apply"] = "IfReady".into();
        expected["spec"]["maxRetries"] = 1.into();
        assert_eq!(serde_json::to_value(&typed).unwrap(), expected, "{name}");
    }
}

#[test]
fn fields_the_operator_ignores_are_kept() {
    lossless::<MssqlServer>(
        r#"
apiVersion: kubedb.com/v1alpha2
kind: MSSQLServer
metadata: {name: full, namespace: demo, labels: {team: data}}
spec:
  version: "2022-cu22"
  replicas: 2
  topology:
    mode: DistributedAG
    availabilityGroup:
      databases: [a]
      loginSecretName: shared-login
      masterKeySecretName: shared-key
      endpointCertSecretName: shared-endpoint
    distributedAG:
      self: {role: Primary, url: "10.2.0.1"}
      remote: {name: dag-remote, url: "10.3.0.1"}
  authSecret: {name: sa-secret, externallyManaged: true, rotateAfter: 720h}
  tls:
    issuerRef: {apiGroup: cert-manager.io, kind: ClusterIssuer, name: ca}
    certificates:
      - alias: server
        dnsNames: [db.example.com]
        ipAddresses: [10.0.0.9]
        uris: ["spiffe://x"]
        emailAddresses: [dba@example.com]
        privateKey: {encoding: PKCS8}
        subject: {countries: [DE], localities: [Berlin], provinces: [BE], streetAddresses: [Main 1], postalCodes: ["10115"], serialNumber: "42"}
  podTemplate:
    metadata: {labels: {a: b}, annotations: {c: d}}
    controller: {labels: {e: f}}
    spec:
      podPlacementPolicy: {name: default}
      dnsPolicy: ClusterFirst
      topologySpreadConstraints: [{maxSkew: 1, topologyKey: zone, whenUnsatisfiable: DoNotSchedule}]
      nodeSelector: {disk: ssd}
      tolerations: [{key: k, operator: Exists}]
      priorityClassName: high
      serviceAccountName: runner
      imagePullSecrets: [{name: pull}]
      containers:
        - name: mssql
          env: [{name: MSSQL_PID, value: Developer}]
  serviceTemplates:
    - alias: primary
      metadata: {annotations: {lb: "yes"}}
      spec: {type: LoadBalancer, ports: [{name: primary, port: 1433}]}
  configuration: {secretName: conf, inline: {mssql.conf: "[memory]\nmemorylimitmb = 2048\n"}}
  deletionPolicy: Halt
  halted: false
  healthChecker: {periodSeconds: 20, timeoutSeconds: 5, failureThreshold: 3, disableWriteCheck: true}
  monitor: {agent: prometheus.io/operator, prometheus: {serviceMonitor: {labels: {release: prom}, interval: 10s}}}
  arbiter: {nodeSelector: {role: arbiter}}
  init: {waitForInitialRestore: true, script: {configMap: {name: init}}}
  archiver: {pause: true, ref: {name: arch, namespace: backup}}
  autoOps: {disabled: true}
status:
  phase: Ready
  observedGeneration: 3
  conditions:
    - {type: Ready, status: "True", severity: Info, reason: AllReplicasReady, message: ok, observedGeneration: 3, lastTransitionTime: "2024-11-14T12:46:46Z"}
"#,
    );
    lossless::<MssqlServerVersion>(
        r#"
apiVersion: catalog.kubedb.com/v1alpha1
kind: MSSQLServerVersion
metadata: {name: 2022-cu12}
spec:
  version: "2022"
  db: {image: mcr.microsoft.com/mssql/server:2022-CU12-ubuntu-22.04}
  coordinator: {image: coord:1}
  exporter: {image: exp:1}
  initContainer: {image: init:1}
  deprecated: true
  securityContext: {runAsUser: 10001}
  updateConstraints: {allowlist: [">= 2022-cu12"], denylist: ["2022-cu13"]}
  archiver: {walg: {image: walg:1}}
  stash: {addon: {backupTask: {name: t}}}
  ui: [{name: ui, version: v1}]
"#,
    );
}

#[test]
fn defaulted_objects_survive_yaml() {
    for name in ["ms-standalone", "mssql-ag-cluster"] {
        let db = defaulted(name);
        let text = serde_saphyr::to_string(&db).unwrap();
        let back: MssqlServer = yaml(&text);
        assert_eq!(back, db, "{name}");
    }
}
