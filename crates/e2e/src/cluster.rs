//! Talking to the control plane with the kube client, and running the operator next to the tests.

use std::future::Future;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use mssql_certs::cert_manager::{CaIssuer, Issuer, IssuerConfig, IssuerSpec};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};

/// A client for the plane in `KUBECONFIG`; panics with instructions when there is none.
pub async fn client() -> Client {
    assert!(
        std::env::var_os("KUBECONFIG").is_some(),
        "KUBECONFIG is not set: start the local control plane with `eval \"$(hack/cluster/up | tail -n1)\"` (hack/test does this)"
    );
    Client::try_default()
        .await
        .expect("the control plane in KUBECONFIG answers")
}

/// Starts the operator once per test binary, on a thread and runtime of its own, after
/// installing the CRDs and catalog. Every test of the binary shares it, as a cluster would.
pub fn ensure_operator() {
    static STARTED: OnceLock<()> = OnceLock::new();
    STARTED.get_or_init(|| {
        crate::install_crds_and_catalog();
        // Volumes of earlier runs' deleted claims are `Released`; make them bindable again.
        let reclaimed = std::process::Command::new(crate::root().join("hack/cluster/reclaim-pvs"))
            .status()
            .expect("hack/cluster/reclaim-pvs runs");
        assert!(reclaimed.success(), "hack/cluster/reclaim-pvs failed");
        std::thread::spawn(|| {
            let runtime = tokio::runtime::Runtime::new().expect("a runtime for the operator");
            runtime.block_on(async {
                let client = mssql_operator::client::client()
                    .await
                    .expect("a client for the plane");
                mssql_operator::preflight::check(&client, None)
                    .await
                    .expect("the operator's APIs are served");
                // The pods here are kwok's: nothing listens at their addresses.
                let settings = mssql_operator::Settings {
                    verify_served_certificates: false,
                    renewal: Default::default(),
                    namespaces: Vec::new(),
                    coordinator_image: mssql_operator::DEFAULT_COORDINATOR_IMAGE.to_owned(),
                };
                mssql_operator::run_controllers(client, Default::default(), settings).await;
            });
        });
    });
}

/// Polls `probe` every 250 ms until it yields a value; panics after `timeout` with `what` and the
/// last thing `probe` reported.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    eventually_every(Duration::from_millis(250), what, timeout, probe).await
}

/// [`eventually`], polling every `pace`: for a moment that lasts less than 250 ms.
pub async fn eventually_every<T, F, Fut>(
    pace: Duration,
    what: &str,
    timeout: Duration,
    mut probe: F,
) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let start = Instant::now();
    loop {
        match probe().await {
            Ok(value) => return value,
            Err(last) if start.elapsed() > timeout => {
                panic!("timed out after {timeout:?} waiting for {what}; last seen: {last}")
            }
            Err(_) => tokio::time::sleep(pace).await,
        }
    }
}

/// Waits until the StatefulSet `name` has `replicas` Ready pods.
pub async fn wait_ready_replicas(client: &Client, namespace: &str, name: &str, replicas: i32) {
    let api: Api<k8s_openapi::api::apps::v1::StatefulSet> =
        Api::namespaced(client.clone(), namespace);
    eventually(
        &format!("{replicas} ready pods of {name}"),
        Duration::from_secs(120),
        || async {
            let ready = api
                .get(name)
                .await
                .map_err(|e| e.to_string())?
                .status
                .and_then(|s| s.ready_replicas);
            if ready == Some(replicas) {
                Ok(())
            } else {
                Err(format!("{ready:?} ready"))
            }
        },
    )
    .await;
}

/// A name of this process's own: `prefix` and the process id.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", std::process::id())
}

/// A namespace of its own for one test; deleted when dropped.
pub struct TestNamespace {
    pub name: String,
}

impl TestNamespace {
    pub async fn new(client: &Client, prefix: &str) -> Self {
        Self::named(client, &unique(prefix)).await
    }

    /// The namespace `name` itself (it must not exist).
    pub async fn named(client: &Client, name: &str) -> Self {
        let name = name.to_owned();
        let namespace = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &namespace)
            .await
            .unwrap_or_else(|e| panic!("creating namespace {name}: {e}"));
        Self { name }
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        let _ = crate::kubectl(&["delete", "namespace", &self.name, "--wait=false"], None);
    }
}

/// A self-signed CA, PEM-encoded: `(certificate, key)`.
pub fn make_ca(common_name: &str, organization: &str) -> (String, String) {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params
        .distinguished_name
        .push(DnType::OrganizationName, organization);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key = KeyPair::generate().expect("a CA key");
    let certificate = params.self_signed(&key).expect("a self-signed CA");
    (certificate.pem(), key.serialize_pem())
}

/// A `kubernetes.io/tls` Secret `name` holding a certificate and its key (PEM).
pub fn tls_secret(name: &str, certificate: &str, key: &str) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..ObjectMeta::default()
        },
        type_: Some("kubernetes.io/tls".to_owned()),
        data: Some(
            [("tls.crt", certificate), ("tls.key", key)]
                .map(|(k, v)| (k.to_owned(), ByteString(v.as_bytes().to_vec())))
                .into(),
        ),
        ..Secret::default()
    }
}

/// A cert-manager CA `Issuer` called `name` in `namespace`, signing with a new CA; returns the
/// CA certificate (PEM).
pub async fn ca_issuer(
    client: &Client,
    namespace: &str,
    name: &str,
    ca_common_name: &str,
) -> String {
    let (certificate, key) = make_ca(ca_common_name, "kubedb");
    let secret_name = format!("{name}-ca");
    let secret = tls_secret(&secret_name, &certificate, &key);
    Api::<Secret>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &secret)
        .await
        .expect("the CA secret is created");
    let issuer = Issuer::new(
        name,
        IssuerSpec {
            config: IssuerConfig {
                ca: Some(CaIssuer { secret_name }),
                ..IssuerConfig::default()
            },
        },
    );
    Api::<Issuer>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &issuer)
        .await
        .expect("the Issuer is created");
    certificate
}
