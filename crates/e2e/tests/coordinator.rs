//! The availability-group coordinator on real processes: three SQL Server test doubles and three
//! `mssql-operator coordinator` processes on loopback addresses of their own, one Lease in the
//! real API server, and the pods they label (kwok's). What the real node runs in pods, minus the
//! pods: the group forms, one primary is labelled, data moves, and the group fails over when its
//! primary's server is killed, frozen, or its coordinator is stopped; with the API server stopped
//! for a minute the primary goes on committing and nobody else is promoted; every acknowledged
//! write is kept. Each coordinator reports its server's state on its pod, only when it changes.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use kube::api::PostParams;
use mssql_api::pods::{ReplicaReport, replica_report};
use mssql_e2e::Scratch;
use mssql_e2e::cluster::eventually;
use mssql_e2e::fixture::Setup;
use mssql_e2e::operator::{binary, built_binary};
use mssql_e2e::plane::Stopped;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use serde_json::json;

const DB: &str = "ag";
const PASSWORD: &str = "Str0ng!Passw0rd";
const FAILOVER: Duration = Duration::from_secs(60);

/// One member: its loopback address, its server's and coordinator's processes and files.
struct Member {
    name: String,
    ip: String,
    dir: PathBuf,
    server: Option<Child>,
    coordinator: Option<Child>,
}

impl Drop for Member {
    fn drop(&mut self) {
        for child in [self.coordinator.as_mut(), self.server.as_mut()]
            .into_iter()
            .flatten()
        {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("{}'s logs are kept in {}", self.name, self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

struct Group {
    t: Setup,
    members: Vec<Member>,
    certs: PathBuf,
    /// The members' working directories and the endpoint certificate.
    _scratch: Scratch,
}

/// A loopback network of this test run's own, so that two runs never share an address.
fn ip(ordinal: usize) -> String {
    format!("127.77.{}.{}", std::process::id() % 250, 10 + ordinal)
}

/// The group's endpoint certificate, shared by every member as KubeDB's is: a CA and one leaf
/// for server and client auth naming every member's address.
fn endpoint_certificate(dir: &Path, ips: &[String]) {
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.distinguished_name.push(DnType::CommonName, "ag-ca");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "ag-endpoint");
    params.subject_alt_names = ips
        .iter()
        .map(|ip| SanType::IpAddress(ip.parse().unwrap()))
        .collect();
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let key = KeyPair::generate().unwrap();
    let leaf = params.signed_by(&key, &ca).unwrap();
    std::fs::write(dir.join("tls.crt"), leaf.pem()).unwrap();
    std::fs::write(dir.join("tls.key"), key.serialize_pem()).unwrap();
    std::fs::write(dir.join("ca.crt"), ca.pem()).unwrap();
}

fn sqlcmd() -> PathBuf {
    built_binary("sqlcmd", "mssql-sqlserver-double", "MSSQL_SQLCMD_BIN")
}

fn sqlservr() -> PathBuf {
    built_binary("sqlservr", "mssql-sqlserver-double", "MSSQL_SQLSERVR_BIN")
}

/// Runs `query` as `sa` on the server at `ip`: its output, or the error sqlcmd printed.
fn query(ip: &str, query: &str) -> Result<String, String> {
    let out = Command::new(sqlcmd())
        .args([
            "-S", ip, "-U", "sa", "-P", PASSWORD, "-C", "-l", "3", "-b", "-Q", query,
        ])
        .output()
        .expect("sqlcmd runs");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    if out.status.success() {
        Ok(text)
    } else {
        Err(text)
    }
}

impl Group {
    async fn new(prefix: &str) -> Self {
        let t = Setup::without_operator(prefix).await;
        let scratch = Scratch::new(&format!("coordinator-{}-{prefix}", std::process::id()));
        let base = scratch.path().to_owned();
        let certs = base.join("endpoint");
        std::fs::create_dir_all(&certs).unwrap();
        let ips: Vec<String> = (0..3).map(ip).collect();
        endpoint_certificate(&certs, &ips);
        let lease = Lease {
            metadata: kube::api::ObjectMeta {
                name: Some(mssql_api::names::coordinator_lease(DB)),
                ..Default::default()
            },
            spec: None,
        };
        t.api::<Lease>()
            .create(&PostParams::default(), &lease)
            .await
            .unwrap();
        // The database the coordinators tell about (no operator runs here: it is only read).
        t.create_example("mssql-ag-cluster", |db| {
            db["metadata"]["name"] = json!(DB);
        })
        .await;
        let mut members = Vec::new();
        for (ordinal, ip) in ips.into_iter().enumerate() {
            let name = format!("{DB}-{ordinal}");
            let pod: Pod = serde_json::from_value(json!({
                "metadata": {"name": name},
                "spec": {"containers": [{"name": "mssql", "image": "mssql-double"}]},
            }))
            .unwrap();
            t.api::<Pod>()
                .create(&PostParams::default(), &pod)
                .await
                .unwrap();
            let dir = base.join(&name);
            std::fs::create_dir_all(dir.join("data")).unwrap();
            std::fs::create_dir_all(dir.join("pfx")).unwrap();
            std::fs::write(dir.join("mssql.conf"), "[network]\n").unwrap();
            members.push(Member {
                name,
                ip,
                dir,
                server: None,
                coordinator: None,
            });
        }
        let mut group = Self {
            t,
            members,
            certs,
            _scratch: scratch,
        };
        for i in 0..3 {
            group.start_server(i);
        }
        for i in 0..3 {
            group.start_coordinator(i);
        }
        group
    }

    fn log(&self, i: usize, what: &str) -> std::fs::File {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.members[i].dir.join(format!("{what}.log")))
            .unwrap()
    }

    fn start_server(&mut self, i: usize) {
        let (out, err) = (self.log(i, "server"), self.log(i, "server"));
        let member = &self.members[i];
        let child = Command::new(sqlservr())
            .env("ACCEPT_EULA", "Y")
            .env("MSSQL_SA_PASSWORD", PASSWORD)
            .env("MSSQL_ENABLE_HADR", "1")
            .env("MSSQL_SERVER_NAME", &member.name)
            .env("MSSQL_STARTUP_DELAY", "0")
            .env("MSSQL_CONF", member.dir.join("mssql.conf"))
            .env("MSSQL_DATA_DIR", member.dir.join("data"))
            .env("MSSQL_TCP_LISTEN", format!("{}:1433", member.ip))
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .expect("sqlservr starts");
        self.members[i].server = Some(child);
    }

    fn start_coordinator(&mut self, i: usize) {
        let (out, err) = (self.log(i, "coordinator"), self.log(i, "coordinator"));
        let member = &self.members[i];
        let mut args = vec![
            "coordinator".to_owned(),
            format!("--database={DB}"),
            format!("--namespace={}", self.t.ns.name),
            format!("--pod={}", member.name),
            format!("--listen={}:2380", member.ip),
            format!("--sql-host={}", member.ip),
            format!("--endpoint-certificate={}", self.certs.display()),
            format!("--pfx-dir={}", member.dir.join("pfx").display()),
            "--databases=appdb".to_owned(),
            "--secondary-access-mode=All".to_owned(),
        ];
        for other in &self.members {
            args.push(format!("--member-host={}={}", other.name, other.ip));
        }
        let child = Command::new(binary())
            .args(&args)
            .env("MSSQL_SA_PASSWORD", PASSWORD)
            .env("DBM_LOGIN_PASSWORD", "Dbm!Login0")
            .env("MASTER_KEY_PASSWORD", "Master!Key0")
            .env("RUST_LOG", "info,kube=warn,tiberius=off")
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .expect("the coordinator starts");
        self.members[i].coordinator = Some(child);
    }

    fn signal(&self, i: usize, which: &str, signal: &str) {
        let member = &self.members[i];
        let child = match which {
            "server" => member.server.as_ref(),
            _ => member.coordinator.as_ref(),
        }
        .expect("running");
        let ok = Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {signal} {which} of {}", member.name);
    }

    fn stop_server(&mut self, i: usize) {
        let mut child = self.members[i].server.take().expect("running");
        let _ = child.kill();
        let _ = child.wait();
    }

    /// The role each server says it has (None: it does not answer).
    fn roles(&self) -> Vec<Option<String>> {
        self.members
            .iter()
            .map(|m| {
                let out = query(&m.ip, mssql_sqlserver_double::tsql::LOCAL_REPLICA_QUERY).ok()?;
                ["PRIMARY", "SECONDARY", "RESOLVING"]
                    .into_iter()
                    .find(|role| out.contains(role))
                    .map(str::to_owned)
            })
            .collect()
    }

    /// The `kubedb.com/role` label of each pod.
    async fn labels(&self) -> Vec<Option<String>> {
        let mut labels = Vec::new();
        for member in &self.members {
            let pod = self.t.api::<Pod>().get(&member.name).await.unwrap();
            labels.push(
                pod.metadata
                    .labels
                    .and_then(|l| l.get(mssql_api::labels::ROLE).cloned()),
            );
        }
        labels
    }

    /// What each pod's coordinator reports of its server (`mssql-operator.dev/replica`).
    async fn reports(&self) -> Vec<Option<ReplicaReport>> {
        let mut reports = Vec::new();
        for member in &self.members {
            let pod = self.t.api::<Pod>().get(&member.name).await.unwrap();
            reports.push(replica_report(&pod));
        }
        reports
    }

    /// Waits until member `primary`'s pod reports PRIMARY and the others SECONDARY, each
    /// synchronized and connected; returns the reports.
    async fn reported(&self, primary: usize) -> Vec<Option<ReplicaReport>> {
        eventually("each pod reporting its server", FAILOVER, || async {
            let reports = self.reports().await;
            let expected = |i: usize| if i == primary { "PRIMARY" } else { "SECONDARY" };
            let right = reports.iter().enumerate().all(|(i, report)| {
                report.as_ref().is_some_and(|r| {
                    r.role.as_deref() == Some(expected(i)) && r.synchronized && r.connected
                })
            });
            right.then(|| reports.clone()).ok_or(format!("{reports:?}"))
        })
        .await
    }

    /// Waits until exactly one server is primary (not `except`), it is labelled so and the others
    /// secondary (`except` may be anything else); returns its index.
    async fn primary(&self, timeout: Duration, except: Option<usize>) -> usize {
        eventually(
            "one primary, labelled, the others its labelled secondaries",
            timeout,
            || async {
                let roles = self.roles();
                let labels = self.labels().await;
                let primaries: Vec<usize> = (0..3)
                    .filter(|&i| roles[i].as_deref() == Some("PRIMARY"))
                    .collect();
                let [primary] = primaries[..] else {
                    return Err(format!("roles {roles:?}, labels {labels:?}"));
                };
                if Some(primary) == except {
                    return Err(format!(
                        "still the old primary: roles {roles:?}, labels {labels:?}"
                    ));
                }
                let labelled = (0..3).all(|i| {
                    Some(i) == except
                        || labels[i].as_deref()
                            == Some(if i == primary { "primary" } else { "secondary" })
                });
                let secondaries = (0..3).all(|i| {
                    i == primary || Some(i) == except || roles[i].as_deref() == Some("SECONDARY")
                });
                if labelled && secondaries {
                    Ok(primary)
                } else {
                    Err(format!("roles {roles:?}, labels {labels:?}"))
                }
            },
        )
        .await
    }

    /// Inserts `id` on member `i`: whether SQL Server acknowledged it.
    fn write(&self, i: usize, id: u64) -> bool {
        query(
            &self.members[i].ip,
            &format!("INSERT INTO [appdb].[dbo].[writes] (id) VALUES ({id})"),
        )
        .is_ok()
    }

    /// The ids member `i` holds.
    fn ids(&self, i: usize) -> Result<Vec<u64>, String> {
        let out = query(
            &self.members[i].ip,
            "SELECT id FROM [appdb].[dbo].[writes] ORDER BY id",
        )?;
        Ok(out
            .lines()
            .filter_map(|line| line.trim().parse().ok())
            .collect())
    }
}

/// Writes ids from `first` through the current primary every 100 ms for `span`, following the
/// primary as a pooled client would; returns the ids acknowledged.
fn write_for(group: &Group, first: u64, span: Duration) -> Vec<u64> {
    let end = Instant::now() + span;
    let mut acknowledged = Vec::new();
    let mut id = first;
    while Instant::now() < end {
        if (0..3).any(|i| group.write(i, id)) {
            acknowledged.push(id);
        }
        id += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    acknowledged
}

#[tokio::test(flavor = "multi_thread")]
async fn the_group_forms_and_fails_over_without_losing_an_acknowledged_write() {
    let mut group = Group::new("coordinator").await;
    let primary = group.primary(Duration::from_secs(90), None).await;
    assert_eq!(primary, 0, "the first primary is the lowest ordinal");
    query(
        &group.members[primary].ip,
        "CREATE TABLE [appdb].[dbo].[writes] (id BIGINT NOT NULL PRIMARY KEY)",
    )
    .expect("the table is created on the primary");
    let mut acknowledged = write_for(&group, 1, Duration::from_secs(2));
    assert!(!acknowledged.is_empty(), "the primary takes writes");
    for i in 1..3 {
        let ids = eventually(
            "the rows on a secondary",
            Duration::from_secs(30),
            || async {
                let ids = group.ids(i)?;
                if ids == acknowledged {
                    Ok(ids)
                } else {
                    Err(format!("{ids:?}"))
                }
            },
        )
        .await;
        assert_eq!(
            ids, acknowledged,
            "{} reads every row",
            group.members[i].name
        );
    }

    // Each coordinator reports its server on its pod, and writes nothing while that holds.
    let steady = group.reported(primary).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        group.reports().await,
        steady,
        "a steady group rewrites no report"
    );

    // The primary's server killed: a secondary is promoted, the old primary comes back as one.
    let killed_at = Instant::now();
    group.stop_server(primary);
    let next = group.primary(FAILOVER, Some(primary)).await;
    assert_ne!(next, primary);
    eprintln!("failover after a killed server: {:?}", killed_at.elapsed());
    let promoted = format!(
        "{} is the primary of availability group {DB}: ",
        group.members[next].name
    );
    let events = group.t.events_of(DB).await;
    assert!(
        events
            .iter()
            .any(|(reason, note)| reason == "Promoted" && note.starts_with(&promoted)),
        "a Normal Event tells the promotion and why: {events:?}"
    );
    acknowledged.extend(write_for(&group, 1000, Duration::from_secs(2)));
    group.start_server(primary);
    let again = group.primary(FAILOVER, None).await;
    assert_eq!(
        again, next,
        "the returning server is a secondary, not a second primary"
    );
    let reports = group.reported(next).await;
    assert_ne!(
        reports[primary], steady[primary],
        "the old primary's report changed with its role"
    );

    // The primary's server frozen: it is fenced by its write lease, not trusted for its port.
    let frozen_at = Instant::now();
    group.signal(next, "server", "-STOP");
    let third = group.primary(FAILOVER, Some(next)).await;
    eprintln!("failover after a frozen server: {:?}", frozen_at.elapsed());
    acknowledged.extend(write_for(&group, 2000, Duration::from_secs(2)));
    group.signal(next, "server", "-CONT");
    assert!(
        !group.write(next, 2999),
        "the thawed old primary refuses writes"
    );
    assert_eq!(group.primary(FAILOVER, None).await, third);

    // The primary's coordinator stopped (SIGTERM, as for a pod deletion): it hands over.
    let stopped_at = Instant::now();
    group.signal(third, "coordinator", "-TERM");
    let fourth = group.primary(FAILOVER, Some(third)).await;
    eprintln!("handover at SIGTERM: {:?}", stopped_at.elapsed());
    group.members[third]
        .coordinator
        .take()
        .map(|mut c| c.wait());
    acknowledged.extend(write_for(&group, 3000, Duration::from_secs(2)));
    group.start_coordinator(third);
    assert_eq!(group.primary(FAILOVER, None).await, fourth);

    // The API server stopped for a minute: the primary goes on committing, confirmed by its
    // peers directly, and no other replica is promoted (sampled at every write).
    let primary = group.primary(FAILOVER, None).await;
    {
        let _stopped = Stopped::new("kube-apiserver");
        let end = Instant::now() + Duration::from_secs(60);
        let mut id = 4000;
        while Instant::now() < end {
            assert!(
                group.write(primary, id),
                "write {id} through {} failed {:?} into the outage",
                group.members[primary].name,
                Instant::now() + Duration::from_secs(60) - end
            );
            acknowledged.push(id);
            let roles = group.roles();
            let primaries: Vec<usize> = (0..3)
                .filter(|&i| roles[i].as_deref() == Some("PRIMARY"))
                .collect();
            assert_eq!(primaries, [primary], "one primary, the same: {roles:?}");
            id += 1;
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    assert_eq!(group.primary(FAILOVER, None).await, primary);

    // Every acknowledged write is on the primary, and on every secondary once they catch up.
    for i in 0..3 {
        let ids = eventually(
            "every acknowledged row",
            Duration::from_secs(30),
            || async {
                let ids = group.ids(i)?;
                if acknowledged.iter().all(|id| ids.contains(id)) {
                    Ok(ids)
                } else {
                    Err(format!(
                        "{} lacks some of {acknowledged:?}: {ids:?}",
                        group.members[i].name
                    ))
                }
            },
        )
        .await;
        assert!(acknowledged.iter().all(|id| ids.contains(id)));
    }
}
