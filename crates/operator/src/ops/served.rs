//! After a pod restarts, what its SQL Server actually serves: a TDS handshake with the pod (the
//! probe of `mssql-tds`), whose certificate must be the one in the pod's Secret, chained to its
//! CA and covering the names clients use. A pod can be Ready and serve an old certificate: SQL
//! Server reads its files only at start-up, so a failed copy or a missed restart shows only here.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::jiff::Timestamp;
use kube::api::ListParams;
use kube::{Api, ResourceExt};
use mssql_api::ALIAS_SERVER;
use mssql_api::MssqlServerOpsRequest;
use mssql_certs::inspect::Expectations;
use mssql_certs::served::check_served;
use mssql_tds::probe::{Mode, ProbeError, Served, probe};
use tracing::info;

use super::machine::ServedCheck;
use super::{Context, Error, observe, reading};
use crate::build::pod::PORT_DB;

/// Bounds the connect and each read of one probe; a busy server answers well within it.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// What `pod` serves, judged against its server certificate's Secret. Also returns a line for
/// the request's Event when verified.
pub async fn check(
    context: &Context,
    ops: &MssqlServerOpsRequest,
    pod: &str,
) -> Result<(ServedCheck, Option<String>), Error> {
    let client = context.client();
    let namespace = ops.namespace().unwrap_or_default();
    let (_, certificates) = observe::target(context, ops).await?;
    let Some((_, wanted)) = certificates.iter().find(|(alias, _)| alias == ALIAS_SERVER) else {
        // The database's TLS spec cannot be read now (its version is gone, say): look again.
        return Ok((
            ServedCheck::Unreachable("its server certificate cannot be worked out now".to_owned()),
            None,
        ));
    };
    let secret_name = &wanted.spec.secret_name;
    let secret = Api::<Secret>::namespaced(client.clone(), &namespace)
        .get_opt(secret_name)
        .await
        .map_err(reading("reading the server certificate's secret"))?;
    let data = secret.and_then(|s| s.data).unwrap_or_default();
    let (Some(crt), ca) = (data.get("tls.crt"), data.get("ca.crt")) else {
        return Ok((
            ServedCheck::Unreachable(format!("secret {secret_name} has no tls.crt yet")),
            None,
        ));
    };
    // Listed by name: the operator lists and watches pods, it has no need to `get` them.
    let address = Api::<Pod>::namespaced(client.clone(), &namespace)
        .list(&ListParams::default().fields(&format!("metadata.name={pod}")))
        .await
        .map_err(reading(format!("reading pod {pod}")))?
        .items
        .into_iter()
        .next()
        .and_then(|p| p.status?.pod_ip)
        .and_then(|ip| ip.parse::<IpAddr>().ok());
    let Some(address) = address else {
        return Ok((
            ServedCheck::Unreachable("it has no IP address yet".to_owned()),
            None,
        ));
    };
    let dns_names = wanted.spec.dns_names.clone().unwrap_or_default();
    // SNI: a name clients use (SQL Server ignores it, but a proxy in between may not).
    let server_name = dns_names
        .iter()
        .find(|n| !n.starts_with('*'))
        .cloned()
        .unwrap_or_else(|| format!("{}.{namespace}.svc", ops.spec.database_ref.name));
    let target = SocketAddr::new(address, PORT_DB as u16);
    let served = tokio::task::spawn_blocking(move || {
        // As drivers do (TDS 7.x); a server with `forcestrict` answers only TDS 8.0 strict.
        match probe(target, &server_name, Mode::Prelogin, PROBE_TIMEOUT) {
            Err(ProbeError::Prelogin { .. }) => {
                probe(target, &server_name, Mode::Strict, PROBE_TIMEOUT)
            }
            other => other,
        }
    })
    .await
    .unwrap_or_else(|join| {
        Err(ProbeError::Handshake {
            addr: target,
            source: std::io::Error::other(join.to_string()),
        })
    });
    let served = match served {
        Ok(served) => served,
        Err(error) => return Ok((classify(error), None)),
    };
    // The probe offers nothing older than TLS 1.2; a handshake at another version is a bug to see.
    if !matches!(
        served.version,
        rustls::ProtocolVersion::TLSv1_2 | rustls::ProtocolVersion::TLSv1_3
    ) {
        let why = format!("negotiated {:?}, not TLS 1.2 or 1.3", served.version);
        return Ok((ServedCheck::Wrong(why), None));
    }
    let expect = Expectations {
        dns_names,
        ip_addresses: wanted.spec.ip_addresses.clone().unwrap_or_default(),
        ..Expectations::default()
    };
    let verdict = check_served(
        &served.chain,
        &crt.0,
        ca.map(|c| c.0.as_slice()),
        &expect,
        Timestamp::now().as_second(),
    );
    Ok(match verdict {
        Ok(leaf) => {
            let line = describe(pod, &leaf.serial, &served);
            info!(request = %ops.name_any(), %pod, serial = %leaf.serial, version = ?served.version, took = ?served.took, "pod serves its certificate");
            (ServedCheck::Verified, Some(line))
        }
        Err(problems) => {
            let problems: Vec<String> = problems.iter().map(ToString::to_string).collect();
            (ServedCheck::Wrong(problems.join("; ")), None)
        }
    })
}

/// A TLS-level failure or a refusal of encryption will not change until the server restarts;
/// anything else (refused, reset, timed out) may be a server still starting.
fn classify(error: ProbeError) -> ServedCheck {
    match &error {
        ProbeError::NoEncryption { .. } => ServedCheck::Wrong(format!(
            "does not offer TLS although clientTLS is on: {error}"
        )),
        ProbeError::Handshake { source, .. }
            if source.kind() == std::io::ErrorKind::InvalidData =>
        {
            ServedCheck::Wrong(error.to_string())
        }
        _ => ServedCheck::Unreachable(error.to_string()),
    }
}

fn describe(pod: &str, serial: &str, served: &Served) -> String {
    let version = match served.version {
        rustls::ProtocolVersion::TLSv1_3 => "TLS 1.3",
        rustls::ProtocolVersion::TLSv1_2 => "TLS 1.2",
        _ => "TLS",
    };
    format!(
        "pod {pod} serves its certificate, serial {serial}, over {version} (checked in {} ms)",
        served.took.as_millis()
    )
}

#[cfg(test)]
mod tests {
    use std::io::{Error, ErrorKind};

    use mssql_tds::prelogin::Encryption;

    use super::*;

    #[test]
    fn tls_failures_and_refused_encryption_are_final_and_the_rest_is_retried() {
        let addr: SocketAddr = "192.0.2.1:1433".parse().unwrap();
        let io = |kind| Error::new(kind, "test");
        let refused = ProbeError::NoEncryption {
            addr,
            encryption: Encryption::NotSupported,
        };
        assert!(
            matches!(classify(refused), ServedCheck::Wrong(why) if why.starts_with("does not offer TLS"))
        );
        let alert = ProbeError::Handshake {
            addr,
            source: io(ErrorKind::InvalidData),
        };
        assert!(matches!(classify(alert), ServedCheck::Wrong(_)));
        for error in [
            ProbeError::Connect {
                addr,
                source: io(ErrorKind::ConnectionRefused),
            },
            ProbeError::Prelogin {
                addr,
                source: io(ErrorKind::UnexpectedEof),
            },
            ProbeError::Handshake {
                addr,
                source: io(ErrorKind::TimedOut),
            },
        ] {
            assert!(matches!(classify(error), ServedCheck::Unreachable(_)));
        }
    }
}
