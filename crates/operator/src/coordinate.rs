//! `mssql-operator coordinator`: the availability group's coordinator, run as the
//! `mssql-coordinator` container of every pod of a group (docs/coordinator.md). Its flags say how
//! members are reached; who they are follows the database's `spec.replicas`, read while it runs
//! (so that scaling restarts no pod); its secrets come from the environment.

use std::net::SocketAddr;
use std::path::PathBuf;

use mssql_coordinator::membership::Membership;
use mssql_coordinator::peers;
use mssql_coordinator::run::Config;
use mssql_coordinator::sql::Target;
use mssql_coordinator::timing::Timing;
use mssql_coordinator::tsql::SecondaryAccess;

/// Where the `mssql-coordinator` container finds the endpoint certificate's Secret.
pub const ENDPOINT_SECRET_DIR: &str = "/var/run/mssql-coordinator/endpoint";

#[derive(clap::Args, Debug)]
pub struct CoordinatorArgs {
    /// The MSSQLServer this pod belongs to.
    #[arg(long, env = "DB_NAME")]
    pub database: String,
    #[arg(long, env = "POD_NAMESPACE")]
    pub namespace: String,
    /// This pod.
    #[arg(long, env = "POD_NAME")]
    pub pod: String,
    /// This pod's uid (a restarted coordinator knows its pod's earlier one is gone).
    #[arg(long, env = "POD_UID", default_value = "")]
    pub pod_uid: String,
    /// How a member's host name is made from its pod name.
    #[arg(long, default_value = "{pod}.{database}-pods.{namespace}.svc")]
    pub host_template: String,
    /// A member reached elsewhere than its template says (NAME=HOST; repeat): for tests that
    /// run members as processes on loopback addresses.
    #[arg(long = "member-host", value_parser = parse_pair)]
    pub member_hosts: Vec<(String, String)>,
    /// The port every coordinator answers the others on.
    #[arg(long, default_value_t = peers::PORT)]
    pub peer_port: u16,
    /// Where this coordinator answers the others.
    #[arg(long, default_value = "0.0.0.0:2380")]
    pub listen: SocketAddr,
    #[arg(long, default_value = "127.0.0.1")]
    pub sql_host: String,
    #[arg(long, default_value_t = 1433)]
    pub sql_port: u16,
    #[arg(long, env = "MSSQL_SA_PASSWORD", hide_env_values = true)]
    pub sa_password: String,
    #[arg(long, env = "DBM_LOGIN_PASSWORD", hide_env_values = true)]
    pub dbm_login_password: String,
    #[arg(long, env = "MASTER_KEY_PASSWORD", hide_env_values = true)]
    pub master_key_password: String,
    /// The directory holding the endpoint certificate's `tls.crt` and `tls.key`.
    #[arg(long, default_value = ENDPOINT_SECRET_DIR)]
    pub endpoint_certificate: PathBuf,
    /// A directory the server can read, for the one-time PFX of `CREATE CERTIFICATE`.
    #[arg(long, default_value = "/var/opt/mssql/endpoint-cert")]
    pub pfx_dir: PathBuf,
    /// `spec.topology.availabilityGroup.databases` (repeat or separate with commas).
    #[arg(long, value_delimiter = ',')]
    pub databases: Vec<String>,
    /// `spec.topology.availabilityGroup.secondaryAccessMode`: Passive, ReadOnly or All.
    #[arg(long, default_value = "Passive", value_parser = parse_access)]
    pub secondary_access_mode: SecondaryAccess,
}

fn parse_pair(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .filter(|(name, host)| !name.is_empty() && !host.is_empty())
        .map(|(name, host)| (name.to_owned(), host.to_owned()))
        .ok_or_else(|| format!("{text:?} is not NAME=HOST"))
}

fn parse_access(text: &str) -> Result<SecondaryAccess, String> {
    SecondaryAccess::from_spec(Some(text))
        .ok_or_else(|| format!("{text:?}: expected Passive, ReadOnly or All"))
}

impl CoordinatorArgs {
    fn membership(&self) -> Membership {
        Membership {
            database: self.database.clone(),
            namespace: self.namespace.clone(),
            host_template: self.host_template.clone(),
            hosts: self.member_hosts.clone(),
            peer_port: self.peer_port,
        }
    }

    pub fn config(&self) -> Config {
        let membership = self.membership();
        let arbiter = membership.member(&self.pod).arbiter;
        Config {
            namespace: self.namespace.clone(),
            database: self.database.clone(),
            pod: self.pod.clone(),
            pod_uid: self.pod_uid.clone(),
            membership,
            sql: (!arbiter).then(|| Target {
                host: self.sql_host.clone(),
                port: self.sql_port,
                user: "sa".to_owned(),
                password: self.sa_password.clone(),
            }),
            certificate: self.endpoint_certificate.join("tls.crt"),
            key: self.endpoint_certificate.join("tls.key"),
            pfx_dir: self.pfx_dir.clone(),
            databases: self.databases.clone(),
            access: self.secondary_access_mode,
            dbm_login_password: self.dbm_login_password.clone(),
            master_key_password: self.master_key_password.clone(),
            listen: self.listen,
            timing: Timing::default(),
        }
    }
}

/// Runs the coordinator until SIGTERM (or Ctrl-C) has been handled: a primary hands its role
/// over before the process ends.
pub async fn coordinate(args: CoordinatorArgs) -> Result<(), String> {
    let client = crate::client::client().await.map_err(|error| {
        format!("cannot reach the Kubernetes API (set KUBECONFIG or run in a cluster): {error}")
    })?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(error) => return tracing::warn!(%error, "cannot watch for SIGTERM"),
            };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        tracing::info!("stopping: handing the primary role over first");
        let _ = stop.send(true);
    });
    mssql_coordinator::run::run(client, args.config(), stopped)
        .await
        .map_err(|error| error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: CoordinatorArgs,
    }

    fn args(extra: &[&str]) -> CoordinatorArgs {
        let mut argv = vec![
            "coordinator",
            "--database=ag",
            "--namespace=demo",
            "--pod=ag-1",
            "--sa-password=s",
            "--dbm-login-password=d",
            "--master-key-password=m",
        ];
        argv.extend_from_slice(extra);
        Cli::parse_from(argv).args
    }

    #[test]
    fn the_arbiter_runs_no_sql_and_members_are_reached_as_given() {
        let config = args(&["--member-host=ag-0=127.0.0.7"]).config();
        assert!(config.sql.is_some());
        let members = config.membership.members(2);
        assert_eq!(members[0].host, "127.0.0.7");
        assert_eq!(members[2].host, "ag-arbiter-0.ag-pods.demo.svc");
        let mut arbiter = args(&[]);
        arbiter.pod = "ag-arbiter-0".into();
        assert!(arbiter.config().sql.is_none());
    }

    #[test]
    fn bad_flags_are_refused_with_the_fix() {
        assert!(parse_pair("ag-0").unwrap_err().contains("NAME=HOST"));
        assert!(
            parse_access("readonly")
                .unwrap_err()
                .contains("Passive, ReadOnly or All")
        );
    }
}
