//! The provisioner on the local control plane: KubeDB's examples become running databases with
//! KubeDB's objects and conditions; bad input creates nothing; halt, pause and every deletion
//! policy do what docs/compat.md says.

use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Secret, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::ResourceExt;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use mssql_api::MssqlServer;
use mssql_api::condition::{self, Condition};
use mssql_certs::cert_manager::Certificate;
use mssql_e2e::cluster::{ca_issuer, eventually, wait_ready_replicas};
use mssql_e2e::fixture::{
    READY_TIMEOUT, SHORT, Setup, condition_of, forbid_pods, summary, wait_condition_says,
};
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn standalone_database_becomes_ready_with_kubedbs_objects_and_conditions() {
    let t = Setup::new("standalone").await;
    t.create_example("ms-standalone", |_| {}).await;
    let db = t.wait_phase("ms-standalone", "Ready", READY_TIMEOUT).await;
    let ns = &t.ns.name;

    // The operator caches databases without managedFields; its writes must not wipe them.
    let managers: Vec<_> = db
        .managed_fields()
        .iter()
        .map(|m| (m.manager.clone().unwrap_or_default(), m.subresource.clone()))
        .collect();
    assert!(
        managers.len() >= 2
            && managers.contains(&("mssql-operator".to_owned(), Some("status".to_owned()))),
        "managedFields of the creator and of the operator's status writes: {managers:?}"
    );

    for (type_, reason, message) in [
        (
            "ProvisioningStarted",
            "DatabaseProvisioningStartedSuccessfully",
            format!(
                "The KubeDB operator has started the provisioning of MSSQLServer: {ns}/ms-standalone"
            ),
        ),
        (
            "ReplicaReady",
            "AllReplicasReady",
            format!("All replicas are ready for MSSQLServer {ns}/ms-standalone"),
        ),
        (
            "AcceptingConnection",
            "AcceptingConnection",
            format!("database {ns}/ms-standalone is accepting connection"),
        ),
        (
            "Ready",
            "AllReplicasReady",
            format!("database {ns}/ms-standalone is ready"),
        ),
        (
            "Provisioned",
            "DatabaseSuccessfullyProvisioned",
            format!("The MSSQLServer: {ns}/ms-standalone is successfully provisioned."),
        ),
    ] {
        let condition = condition_of(&db, type_);
        assert!(condition.is_true(), "{type_}");
        assert_eq!(
            (condition.reason.as_deref(), condition.message.as_deref()),
            (Some(reason), Some(message.as_str()))
        );
    }
    assert_eq!(
        db.status.as_ref().unwrap().observed_generation,
        db.metadata.generation
    );
    assert!(db.finalizers().contains(&"kubedb.com".to_owned()));

    let sts = t.api::<StatefulSet>().get("ms-standalone").await.unwrap();
    let spec = sts.spec.clone().unwrap();
    assert_eq!(
        spec.update_strategy.unwrap().type_.as_deref(),
        Some("OnDelete")
    );
    assert_eq!(spec.service_name.as_deref(), Some("ms-standalone-pods"));
    assert_eq!(sts.owner_references()[0].name, "ms-standalone");
    for service in ["ms-standalone", "ms-standalone-pods"] {
        assert!(t.exists::<Service>(service).await, "service {service}");
    }
    assert!(!t.exists::<Service>("ms-standalone-secondary").await);
    assert!(t.exists::<PodDisruptionBudget>("ms-standalone").await);
    assert!(t.exists::<ServiceAccount>("ms-standalone").await);

    let auth = t.api::<Secret>().get("ms-standalone-auth").await.unwrap();
    assert_eq!(auth.type_.as_deref(), Some("kubernetes.io/basic-auth"));
    assert_eq!(t.secret_text("ms-standalone-auth", "username").await, "sa");
    assert!(t.secret_text("ms-standalone-auth", "password").await.len() >= 16);
    assert_eq!(
        t.secret_text("ms-standalone-config", "mssql.conf").await,
        "[language]\nlcid = 1033\n",
        "clientTLS false: no [network] keys"
    );

    for alias in ["server", "client"] {
        let name = format!("ms-standalone-{alias}-cert");
        let certificate = t.api::<Certificate>().get(&name).await.unwrap();
        assert_eq!(certificate.spec.issuer_ref.name, "mssqlserver-ca-issuer");
        let secret = t.api::<Secret>().get(&name).await.unwrap();
        assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/tls"));
        let keys: Vec<_> = secret.data.unwrap().into_keys().collect();
        assert_eq!(keys, ["ca.crt", "tls.crt", "tls.key"]);
    }
    let server_pem = t.secret_text("ms-standalone-server-cert", "tls.crt").await;
    let info = mssql_certs::inspect::parse_certificate(server_pem.as_bytes()).unwrap();
    for name in [
        "ms-standalone",
        &format!("ms-standalone.{ns}.svc"),
        &format!("*.ms-standalone-pods.{ns}.svc"),
        "localhost",
    ] {
        assert!(
            info.dns_names.contains(&name.to_owned()),
            "{name} not in {:?}",
            info.dns_names
        );
    }
    let client_pem = t.secret_text("ms-standalone-client-cert", "tls.crt").await;
    assert_eq!(
        mssql_certs::inspect::parse_certificate(client_pem.as_bytes())
            .unwrap()
            .subject,
        "CN=mssql,OU=client,O=kubedb"
    );

    let pod = t.api::<Pod>().get("ms-standalone-0").await.unwrap();
    let pod_spec = pod.spec.unwrap();
    let mssql = pod_spec
        .containers
        .iter()
        .find(|c| c.name == "mssql")
        .unwrap();
    let mount = mssql
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| m.mount_path == "/var/opt/mssql/tls")
        .unwrap();
    assert_eq!(mount.read_only, Some(true));
    let init = &pod_spec.init_containers.unwrap()[0];
    assert!(init.command.as_ref().unwrap()[2].contains(
        "install -m 0400 /var/opt/mssql-source/tls/server/tls.key /var/opt/mssql/tls/server.key"
    ));
    assert_eq!(pod_spec.security_context.unwrap().fs_group, Some(10001));
    let claims = t
        .api::<PersistentVolumeClaim>()
        .get("data-ms-standalone-0")
        .await
        .unwrap();
    assert_eq!(claims.status.unwrap().phase.as_deref(), Some("Bound"));

    // One Event a pass for what it created: the StatefulSet waits for cert-manager, so it is
    // usually told apart; every object is named once.
    let events = t.events_of("ms-standalone").await;
    let created: Vec<&str> = events
        .iter()
        .filter(|(reason, _)| reason == "Created")
        .flat_map(|(_, message)| message.trim_start_matches("Created ").split(", "))
        .collect();
    for object in [
        "secret ms-standalone-auth",
        "certificate ms-standalone-server-cert",
        "secret ms-standalone-config",
        "service ms-standalone",
        "poddisruptionbudget ms-standalone",
        "statefulset ms-standalone",
    ] {
        assert_eq!(
            created.iter().filter(|c| **c == object).count(),
            1,
            "{object}: {events:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn client_tls_puts_the_network_section_into_mssql_conf() {
    let t = Setup::new("clienttls").await;
    t.create_example("mssql-standalone-tls", |_| {}).await;
    t.wait_phase("mssql-standalone-tls", "Ready", READY_TIMEOUT)
        .await;
    assert_eq!(
        t.secret_text("mssql-standalone-tls-config", "mssql.conf")
            .await,
        "[language]\nlcid = 1033\n[network]\nforceencryption = 1\ntlscert = /var/opt/mssql/tls/server.crt\n\
         tlskey = /var/opt/mssql/tls/server.key\ntlsprotocols = 1.2,1.3\n"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn availability_group_is_ready_once_a_primary_is_labelled() {
    let t = Setup::new("ag").await;
    t.create_example("mssql-ag-cluster", |_| {}).await;
    wait_ready_replicas(&t.client, &t.ns.name, "mssql-ag-cluster", 3).await;
    let db = t
        .wait_phase("mssql-ag-cluster", "Provisioning", SHORT)
        .await;
    assert!(
        !condition_of(&db, "AcceptingConnection").is_true(),
        "no primary yet"
    );
    // A label alone is not a primary: its server must say PRIMARY too.
    let label = json!({"metadata": {"labels": {"kubedb.com/role": "primary"}}});
    t.api::<Pod>()
        .patch(
            "mssql-ag-cluster-0",
            &PatchParams::default(),
            &Patch::Merge(&label),
        )
        .await
        .unwrap();
    let db = eventually("the label in the status", SHORT, || async {
        let db = t
            .api::<MssqlServer>()
            .get("mssql-ag-cluster")
            .await
            .map_err(|e| e.to_string())?;
        let replicas = &db.status.as_ref().ok_or("no status")?.replicas;
        let first = replicas.first().ok_or("no replicas")?;
        (first.role.as_deref() == Some("primary"))
            .then_some(db.clone())
            .ok_or(format!("{replicas:?}"))
    })
    .await;
    assert!(!condition_of(&db, "AGPrimaryReplicaReady").is_true());
    assert_eq!(db.status.unwrap().replicas[0].sql_role, None);
    // What the coordinators would do.
    t.set_role("mssql-ag-cluster-0", "primary").await;
    t.set_role("mssql-ag-cluster-1", "secondary").await;
    t.set_role("mssql-ag-cluster-2", "secondary").await;
    let db = t.wait_phase("mssql-ag-cluster", "Ready", SHORT).await;
    assert!(condition_of(&db, "AGPrimaryReplicaReady").is_true());
    let replicas: Vec<_> = db
        .status
        .unwrap()
        .replicas
        .into_iter()
        .map(|r| (r.pod, r.role, r.sql_role, r.synchronized, r.connected))
        .collect();
    let replica = |pod: &str, role: &str| {
        let sql_role = Some(role.to_uppercase());
        (pod.to_owned(), Some(role.to_owned()), sql_role, true, true)
    };
    assert_eq!(
        replicas,
        [
            replica("mssql-ag-cluster-0", "primary"),
            replica("mssql-ag-cluster-1", "secondary"),
            replica("mssql-ag-cluster-2", "secondary"),
        ]
    );

    for service in [
        "mssql-ag-cluster",
        "mssql-ag-cluster-pods",
        "mssql-ag-cluster-secondary",
    ] {
        assert!(t.exists::<Service>(service).await, "service {service}");
    }
    let primary = t.api::<Service>().get("mssql-ag-cluster").await.unwrap();
    assert_eq!(
        primary.spec.unwrap().selector.unwrap()["kubedb.com/role"],
        "primary"
    );
    let endpoints = t
        .api::<k8s_openapi::api::discovery::v1::EndpointSlice>()
        .list(&ListParams::default().labels("kubernetes.io/service-name=mssql-ag-cluster"))
        .await
        .unwrap();
    let addresses: Vec<_> = endpoints
        .items
        .iter()
        .flat_map(|s| s.endpoints.iter().flatten())
        .filter_map(|e| e.target_ref.as_ref()?.name.clone())
        .collect();
    assert_eq!(
        addresses,
        ["mssql-ag-cluster-0"],
        "the primary service reaches the primary only"
    );
    assert!(
        t.exists::<Certificate>("mssql-ag-cluster-endpoint-cert")
            .await
    );
    let pod = t.api::<Pod>().get("mssql-ag-cluster-1").await.unwrap();
    let env = serde_json::to_value(&pod.spec.unwrap().containers[0].env).unwrap();
    assert!(
        env.as_array()
            .unwrap()
            .contains(&json!({"name": "MSSQL_ENABLE_HADR", "value": "1"}))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_creates_nothing_says_why_and_a_fix_resumes() {
    let t = Setup::new("invalid").await;
    // No MSSQL_PID (the API server cannot check env vars; the operator does), and an issuer that
    // does not exist.
    t.create_example("ms-standalone", |db| {
        db["spec"]["podTemplate"]["spec"]["containers"][0]["env"] =
            json!([{"name": "ACCEPT_EULA", "value": "Y"}]);
    })
    .await;
    let api = t.api::<MssqlServer>();
    let db = eventually("an invalid-spec condition", SHORT, || async {
        let db = api.get("ms-standalone").await.map_err(|e| e.to_string())?;
        let conditions = db.status.clone().unwrap_or_default().conditions;
        match condition::find(&conditions, "SpecValid") {
            Some(c) if !c.is_true() => Ok(db),
            _ => Err(format!("{:?}", summary(&conditions))),
        }
    })
    .await;
    let message = condition_of(&db, "SpecValid").message.clone().unwrap();
    assert_eq!(
        message,
        "spec.podTemplate.spec.containers[0].env: environment variable MSSQL_PID must be provided in MSSQLServer spec"
    );
    assert_eq!(
        db.status.as_ref().unwrap().phase.as_deref(),
        Some("NotReady"),
        "`kubectl get ms` shows a STATUS"
    );
    let events = t.events_of("ms-standalone").await;
    assert!(
        events
            .iter()
            .any(|(reason, m)| reason == "InvalidSpec" && *m == message),
        "{events:?}"
    );
    assert!(!t.exists::<StatefulSet>("ms-standalone").await);
    assert!(!t.exists::<Secret>("ms-standalone-auth").await);
    assert!(!t.exists::<Certificate>("ms-standalone-server-cert").await);

    // Fix the env, break the issuer: the next problem is reported, still nothing created.
    let patch = json!({"spec": {
        "podTemplate": {"spec": {"containers": [{"name": "mssql", "env": [{"name": "ACCEPT_EULA", "value": "Y"}, {"name": "MSSQL_PID", "value": "Developer"}]}]}},
        "tls": {"issuerRef": {"apiGroup": "cert-manager.io", "kind": "Issuer", "name": "no-such-issuer"}}
    }});
    t.patch_database("ms-standalone", &patch).await;
    let expected = format!(
        "spec.tls.issuerRef: Issuer {}/no-such-issuer does not exist: create it, or point issuerRef at an existing cert-manager issuer",
        t.ns.name
    );
    eventually("the missing issuer to be reported", SHORT, || async {
        let db = api.get("ms-standalone").await.map_err(|e| e.to_string())?;
        let conditions = db.status.unwrap_or_default().conditions;
        match condition::find(&conditions, "SpecValid").and_then(|c| c.message.clone()) {
            Some(m) if m == expected => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert!(!t.exists::<StatefulSet>("ms-standalone").await);

    // Create the missing issuer, spec unchanged: the operator looks again by itself, provisioning
    // resumes and the error condition goes away.
    ca_issuer(&t.client, &t.ns.name, "no-such-issuer", "mssqlserver").await;
    let db = t.wait_phase("ms-standalone", "Ready", READY_TIMEOUT).await;
    assert!(condition::find(&db.status.unwrap().conditions, "SpecValid").is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_version_is_reported() {
    let t = Setup::new("version").await;
    t.create_example("ms-standalone", |db| {
        db["spec"]["version"] = json!("2019-cu1")
    })
    .await;
    let api = t.api::<MssqlServer>();
    eventually("the unknown version to be reported", SHORT, || async {
        let db = api.get("ms-standalone").await.map_err(|e| e.to_string())?;
        let message = db.status.unwrap_or_default().conditions.iter().find(|c| c.type_ == "SpecValid").and_then(|c| c.message.clone());
        match message {
            Some(m) if m == "spec.version: mssqlserverversions.catalog.kubedb.com \"2019-cu1\" not found" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert!(!t.exists::<StatefulSet>("ms-standalone").await);
}

/// Creates a Ready standalone database with `policy`, deletes it, and returns once it is gone.
async fn delete_with_policy(t: &Setup, name: &str, policy: &str) {
    t.create_example("ms-standalone", |db| {
        db["metadata"]["name"] = json!(name);
        db["spec"]["deletionPolicy"] = json!(policy);
    })
    .await;
    t.wait_phase(name, "Ready", READY_TIMEOUT).await;
    let api = t.api::<MssqlServer>();
    api.delete(name, &DeleteParams::default()).await.unwrap();
    t.wait_gone::<MssqlServer>(name).await;
    t.wait_gone::<StatefulSet>(name).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn deletion_policies_keep_what_they_promise() {
    let t = Setup::new("deletion").await;

    delete_with_policy(&t, "halt-db", "Halt").await;
    assert!(
        t.exists::<PersistentVolumeClaim>("data-halt-db-0").await,
        "Halt keeps volumes"
    );
    for secret in [
        "halt-db-auth",
        "halt-db-config",
        "halt-db-server-cert",
        "halt-db-client-cert",
    ] {
        assert!(t.exists::<Secret>(secret).await, "Halt keeps {secret}");
    }

    delete_with_policy(&t, "delete-db", "Delete").await;
    t.wait_gone::<PersistentVolumeClaim>("data-delete-db-0")
        .await;
    for secret in [
        "delete-db-auth",
        "delete-db-config",
        "delete-db-server-cert",
    ] {
        assert!(t.exists::<Secret>(secret).await, "Delete keeps {secret}");
    }

    delete_with_policy(&t, "wipe-db", "WipeOut").await;
    t.wait_gone::<PersistentVolumeClaim>("data-wipe-db-0").await;
    for secret in [
        "wipe-db-auth",
        "wipe-db-config",
        "wipe-db-server-cert",
        "wipe-db-client-cert",
    ] {
        t.wait_gone::<Secret>(secret).await;
    }

    // DoNotTerminate: the deletion waits, and says why, until the policy changes.
    t.create_example("ms-standalone", |db| {
        db["metadata"]["name"] = json!("keep-db");
        db["spec"]["deletionPolicy"] = json!("DoNotTerminate");
    })
    .await;
    t.wait_phase("keep-db", "Ready", READY_TIMEOUT).await;
    let api = t.api::<MssqlServer>();
    api.delete("keep-db", &DeleteParams::default())
        .await
        .unwrap();
    let expected = format!(
        "MSSQLServer {}/keep-db is not deleted: deletionPolicy is DoNotTerminate. Set spec.deletionPolicy to Halt, Delete or WipeOut to let the deletion finish",
        t.ns.name
    );
    eventually("the refusal event", SHORT, || async {
        let events = t.events_of("keep-db").await;
        if events
            .iter()
            .any(|(r, m)| r == "DeletionRefused" && *m == expected)
        {
            Ok(())
        } else {
            Err(format!("{events:?}"))
        }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        api.get_opt("keep-db").await.unwrap().is_some(),
        "DoNotTerminate keeps the database"
    );
    assert!(t.exists::<StatefulSet>("keep-db").await);
    let patch = json!({"spec": {"deletionPolicy": "Delete"}});
    t.patch_database("keep-db", &patch).await;
    t.wait_gone::<MssqlServer>("keep-db").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn halting_keeps_data_and_secrets_and_unhalting_brings_the_database_back() {
    let t = Setup::new("halt").await;
    t.create_example("ms-standalone", |_| {}).await;
    t.wait_phase("ms-standalone", "Ready", READY_TIMEOUT).await;
    let password = t.secret_text("ms-standalone-auth", "password").await;

    t.patch_database("ms-standalone", &json!({"spec": {"halted": true}}))
        .await;
    t.wait_phase("ms-standalone", "Halted", SHORT).await;
    t.wait_gone::<StatefulSet>("ms-standalone").await;
    assert!(!t.exists::<Service>("ms-standalone").await);
    assert!(
        t.exists::<PersistentVolumeClaim>("data-ms-standalone-0")
            .await
    );
    assert!(t.exists::<Secret>("ms-standalone-server-cert").await);

    t.patch_database("ms-standalone", &json!({"spec": {"halted": false}}))
        .await;
    t.wait_phase("ms-standalone", "Ready", READY_TIMEOUT).await;
    assert_eq!(
        t.secret_text("ms-standalone-auth", "password").await,
        password,
        "the password never changes"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_paused_database_is_left_alone_until_resumed() {
    let t = Setup::new("paused").await;
    t.create_example("ms-standalone", |_| {}).await;
    let db = t.wait_phase("ms-standalone", "Ready", READY_TIMEOUT).await;
    let api = t.api::<MssqlServer>();

    // What the ops-manager does: Paused=True on the status.
    let mut paused = db.clone();
    let status = paused.status.as_mut().unwrap();
    condition::set(
        &mut status.conditions,
        Condition::new(
            "Paused",
            true,
            "Paused",
            "paused for a test",
            db.metadata.generation,
            db.status.clone().unwrap().conditions[0]
                .last_transition_time
                .clone(),
        ),
    );
    api.replace_status("ms-standalone", &PostParams::default(), &paused)
        .await
        .unwrap();

    let patch = json!({"spec": {"podTemplate": {"metadata": {"labels": {"paused-test": "yes"}}}}});
    t.patch_database("ms-standalone", &patch).await;
    // The provisioner has looked at the changed spec (it records the generation it saw), and
    // changed nothing: not a fixed wait, which passes as well when nothing ran.
    let changed = api.get("ms-standalone").await.unwrap().metadata.generation;
    eventually("the provisioner to observe the change", SHORT, || async {
        let seen = api.get("ms-standalone").await.map_err(|e| e.to_string())?;
        match seen.status.and_then(|s| s.observed_generation) {
            observed if observed == changed => Ok(()),
            observed => Err(format!(
                "observedGeneration {observed:?}, spec at {changed:?}"
            )),
        }
    })
    .await;
    let labels_of = |sts: StatefulSet| {
        sts.spec
            .unwrap()
            .template
            .metadata
            .unwrap()
            .labels
            .unwrap_or_default()
    };
    let sts = t.api::<StatefulSet>().get("ms-standalone").await.unwrap();
    assert!(
        !labels_of(sts).contains_key("paused-test"),
        "a paused database's statefulset is not changed"
    );
    let current = api.get("ms-standalone").await.unwrap();
    assert!(
        condition_of(&current, "Paused").is_true(),
        "the provisioner keeps the ops-manager's Paused condition"
    );

    let mut resumed = current.clone();
    condition::remove(&mut resumed.status.as_mut().unwrap().conditions, "Paused");
    api.replace_status("ms-standalone", &PostParams::default(), &resumed)
        .await
        .unwrap();
    let statefulsets = t.api::<StatefulSet>();
    eventually("the change to reach the statefulset", SHORT, || async {
        let sts = statefulsets
            .get("ms-standalone")
            .await
            .map_err(|e| e.to_string())?;
        if labels_of(sts).contains_key("paused-test") {
            Ok(())
        } else {
            Err("not yet".into())
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_users_auth_secret_is_used_and_never_overwritten() {
    let t = Setup::new("auth").await;
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "my-sa"},
        "type": "kubernetes.io/basic-auth",
        "stringData": {"username": "sa", "password": "My-0wn-Passw0rd"}
    }))
    .unwrap();
    t.api::<Secret>()
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    t.create_example("ms-standalone", |db| {
        db["spec"]["authSecret"] = json!({"name": "my-sa"})
    })
    .await;
    t.wait_phase("ms-standalone", "Ready", READY_TIMEOUT).await;
    assert_eq!(t.secret_text("my-sa", "password").await, "My-0wn-Passw0rd");
    assert!(
        !t.exists::<Secret>("ms-standalone-auth").await,
        "no generated secret"
    );
    let pod = t.api::<Pod>().get("ms-standalone-0").await.unwrap();
    let env = serde_json::to_value(&pod.spec.unwrap().containers[0].env).unwrap();
    assert!(env.to_string().contains(r#""name":"my-sa""#), "{env}");
    let unused = t.api::<Secret>().get("my-sa").await.unwrap();
    assert!(
        unused.owner_references().is_empty(),
        "a user's secret is not adopted"
    );
    let _ = unused.name_any();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_even_availability_group_runs_an_arbiter() {
    let t = Setup::new("arbiter").await;
    t.create_example("mssql-ag-cluster", |db| db["spec"]["replicas"] = json!(2))
        .await;
    let api = t.api::<StatefulSet>();
    let arbiter = eventually("the arbiter to be ready", READY_TIMEOUT, || async {
        let sts = api
            .get_opt("mssql-ag-cluster-arbiter")
            .await
            .map_err(|e| e.to_string())?
            .ok_or("no arbiter yet")?;
        let ready = sts.status.as_ref().and_then(|s| s.ready_replicas);
        if ready == Some(1) {
            Ok(sts)
        } else {
            Err(format!("{ready:?} ready"))
        }
    })
    .await;
    assert_eq!(arbiter.spec.unwrap().replicas, Some(1));
    let pod = t
        .api::<Pod>()
        .get("mssql-ag-cluster-arbiter-0")
        .await
        .unwrap();
    assert_eq!(pod.labels()["kubedb.com/role"], "arbiter");
    let claim = t
        .api::<PersistentVolumeClaim>()
        .get("data-mssql-ag-cluster-arbiter-0")
        .await
        .unwrap();
    assert_eq!(
        claim.spec.unwrap().resources.unwrap().requests.unwrap()["storage"].0,
        "2Gi"
    );
}

/// Whether `events` (type, reason, message) hold a Warning `PodsNotReady` containing `words`.
fn warns_pods_not_ready(events: &[(String, String, String)], words: &str) -> bool {
    events.iter().any(|(type_, reason, text)| {
        type_ == "Warning" && reason == "PodsNotReady" && text.contains(words)
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn a_workload_that_does_not_come_up_says_why() {
    let t = Setup::new("stuck").await;
    let databases = t.api::<MssqlServer>();
    // A pod the scheduler cannot place: no node has the label.
    t.create_example("ms-standalone", |db| {
        db["spec"]["podTemplate"]["spec"]["nodeSelector"] =
            json!({"mssql-operator.test/nowhere": "x"});
    })
    .await;
    let message = wait_condition_says(
        &databases,
        "ms-standalone",
        "ReplicaReady",
        "pod ms-standalone-0 cannot be scheduled: 0/",
    )
    .await;
    assert!(
        message.starts_with("0 of 1 replicas are ready for MSSQLServer"),
        "{message}"
    );
    // A pod the StatefulSet cannot create: the namespace's quota allows no pod.
    forbid_pods(&t.ns.name);
    t.create_example("mssql-standalone-tls", |_| {}).await;
    wait_condition_says(
        &databases,
        "mssql-standalone-tls",
        "ReplicaReady",
        "pod mssql-standalone-tls-0 cannot be created: ",
    )
    .await;
    let message = wait_condition_says(
        &databases,
        "mssql-standalone-tls",
        "ReplicaReady",
        "exceeded quota: no-pods",
    )
    .await;
    // The STATUS column says Provisioning, never nothing; both are Warning Events that need a person.
    for db in ["ms-standalone", "mssql-standalone-tls"] {
        let found = t.api::<MssqlServer>().get(db).await.unwrap();
        assert_eq!(
            found.status.unwrap().phase.as_deref(),
            Some("Provisioning"),
            "{db}"
        );
    }
    let events = t.typed_events_of("mssql-standalone-tls").await;
    assert!(
        warns_pods_not_ready(&events, "exceeded quota"),
        "{events:?} ({message})"
    );
    let events = t.typed_events_of("ms-standalone").await;
    assert!(
        warns_pods_not_ready(&events, "cannot be scheduled"),
        "{events:?}"
    );
}

/// What a manual edit changed in the object `name` of kind `K`: `current` reads the field.
async fn edit_and_watch_it_come_back<K>(
    t: &Setup,
    name: &str,
    patch: serde_json::Value,
    current: impl Fn(&K) -> String,
) where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
{
    let api = t.api::<K>();
    let before = current(&api.get(name).await.unwrap());
    // As `kubectl edit` or `kubectl patch` would: an update by another field manager.
    let params = kube::api::PatchParams {
        field_manager: Some("someone-else".to_owned()),
        ..Default::default()
    };
    let edited = api
        .patch(name, &params, &kube::api::Patch::Strategic(&patch))
        .await
        .unwrap();
    assert_ne!(current(&edited), before, "the edit changed {name}");
    let kind = K::kind(&());
    eventually(
        &format!("{kind} {name} put back"),
        Duration::from_secs(15),
        || async {
            let now = current(&api.get(name).await.map_err(|e| e.to_string())?);
            (now == before).then_some(()).ok_or(now)
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_manual_edit_of_an_object_the_operator_owns_is_put_back() {
    let t = Setup::new("drift").await;
    t.create_example("ms-standalone", |_| {}).await;
    t.wait_phase("ms-standalone", "Ready", READY_TIMEOUT).await;
    let pod = t.api::<Pod>().get("ms-standalone-0").await.unwrap();

    edit_and_watch_it_come_back::<StatefulSet>(
        &t,
        "ms-standalone",
        json!({"spec": {"template": {"spec": {"containers": [
            {"name": mssql_api::CONTAINER_MSSQL, "image": "example.invalid/other:1"}
        ]}}}}),
        |sts| {
            let spec = sts.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
            let mssql = spec
                .containers
                .iter()
                .find(|c| c.name == mssql_api::CONTAINER_MSSQL);
            mssql.unwrap().image.clone().unwrap_or_default()
        },
    )
    .await;
    edit_and_watch_it_come_back::<Service>(
        &t,
        "ms-standalone",
        json!({"spec": {"selector": {"app.kubernetes.io/instance": "someone-else"}}}),
        |service| format!("{:?}", service.spec.as_ref().unwrap().selector),
    )
    .await;
    edit_and_watch_it_come_back::<PodDisruptionBudget>(
        &t,
        "ms-standalone",
        json!({"spec": {"maxUnavailable": 0}}),
        |budget| format!("{:?}", budget.spec.as_ref().unwrap().max_unavailable),
    )
    .await;
    edit_and_watch_it_come_back::<Secret>(
        &t,
        "ms-standalone-config",
        json!({"stringData": {"mssql.conf": "[network]\nforceencryption = 0\n"}}),
        |secret| format!("{:?}", secret.data),
    )
    .await;

    // Put back before any pod restarted: the database is still Ready on the same pod.
    t.wait_phase("ms-standalone", "Ready", SHORT).await;
    let after = t.api::<Pod>().get("ms-standalone-0").await.unwrap();
    assert_eq!(after.metadata.uid, pod.metadata.uid);
}
