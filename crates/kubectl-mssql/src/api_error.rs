//! What the API server said, as a person reads it: its own message (not a dump of its `Status`),
//! then what to do where `docs/troubleshooting.md` knows.

/// The API's message for `error`, and on the next line what to do when the project knows.
pub fn explain(error: &kube::Error) -> String {
    let message = match error {
        kube::Error::Api(status) if !status.message.is_empty() => status.message.clone(),
        kube::Error::Api(status) => format!(
            "the API server answered {} {} with no message",
            status.code, status.reason
        ),
        other => other.to_string(),
    };
    match advice(&message) {
        Some(advice) => format!("{message}\n{advice}"),
        None => message,
    }
}

/// The rows of `docs/troubleshooting.md` ("`kubectl apply` is refused by the admission
/// webhook") that a message matches. A refusal by the webhook itself names the field and the fix
/// already.
fn advice(message: &str) -> Option<&'static str> {
    let webhook = message.contains("failed calling webhook")
        && message.contains("validate.mssql-operator.dev");
    if !webhook {
        return None;
    }
    if message.contains("x509") {
        return Some(
            "what to do: mssql-operator's webhook certificate is not trusted yet. For a few \
             seconds after an install its caBundle is not set; if it persists, the operator's \
             log says why (docs/troubleshooting.md, \"`kubectl apply` is refused by the \
             admission webhook\").",
        );
    }
    Some(
        "what to do: no replica of mssql-operator answers its admission webhook. In a cluster, \
         `kubectl get pods -n <namespace of its release>`; a host process killed with SIGKILL \
         left its registration behind: `kubectl delete validatingwebhookconfiguration \
         mssql-operator` (docs/troubleshooting.md, \"`kubectl apply` is refused by the \
         admission webhook\").",
    )
}

#[cfg(test)]
mod tests {
    use kube::core::Status;

    use super::*;

    fn api(message: &str) -> kube::Error {
        kube::Error::Api(
            Status::failure(message, "InternalError")
                .with_code(500)
                .boxed(),
        )
    }

    const UNREACHABLE: &str = "Internal error occurred: failed calling webhook \
        \"mssqlserveropsrequests.validate.mssql-operator.dev\": failed to call webhook: Post \
        \"https://127.0.0.1:40123/validate?timeout=10s\": dial tcp 127.0.0.1:40123: connect: \
        connection refused";

    #[test]
    fn an_unreachable_webhook_is_the_apis_message_then_the_fix() {
        let text = explain(&api(UNREACHABLE));
        let (first, second) = text.split_once('\n').expect("two lines");
        assert_eq!(first, UNREACHABLE);
        assert!(second.starts_with("what to do: no replica of mssql-operator answers"));
        assert!(second.contains("docs/troubleshooting.md"));
        assert!(
            !text.contains("Status {") && !text.contains("ApiError"),
            "{text}"
        );
    }

    #[test]
    fn an_untrusted_webhook_certificate_has_its_own_fix() {
        let message = UNREACHABLE.replace(
            "dial tcp 127.0.0.1:40123: connect: connection refused",
            "tls: failed to verify certificate: x509: certificate signed by unknown authority",
        );
        let text = explain(&api(&message));
        assert!(text.ends_with(
            "its caBundle is not set; if it persists, the operator's log says why \
             (docs/troubleshooting.md, \"`kubectl apply` is refused by the admission webhook\")."
        ));
    }

    #[test]
    fn other_refusals_are_the_apis_message_alone() {
        let denied = "admission webhook \"mssqlserveropsrequests.validate.mssql-operator.dev\" \
            denied the request: spec.timeout: timeout \"banana\" is not a duration";
        assert_eq!(explain(&api(denied)), denied);
        let not_found = "mssqlservers.kubedb.com \"db\" not found";
        assert_eq!(explain(&api(not_found)), not_found);
    }

    #[test]
    fn an_error_without_a_message_is_still_said() {
        let empty = kube::Error::Api(Status::failure("", "Forbidden").with_code(403).boxed());
        assert_eq!(
            explain(&empty),
            "the API server answered 403 Forbidden with no message"
        );
    }
}
