//! An API server for unit tests: a `tower` service in its place, answering each call from the
//! test's own function and recording every call, so a test pins which requests the code makes, in
//! which order, and what they carry (controller-rs's pattern), without a cluster.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use http::{Method, Request, Response};
use kube::client::Body;
use serde_json::Value;

/// One request the code made.
#[derive(Clone, Debug)]
pub struct Call {
    pub method: Method,
    /// Path and query, e.g. `/api/v1/namespaces/demo/pods?labelSelector=...`.
    pub path: String,
    /// The body as JSON, `Null` when there is none.
    pub body: Value,
}

impl Call {
    /// `PUT /apis/…/status`: method and path, as assertions compare them.
    pub fn line(&self) -> String {
        let path = self.path.split('?').next().unwrap_or_default();
        format!("{} {path}", self.method)
    }
}

/// The calls made so far, shared with the service.
#[derive(Clone, Default)]
pub struct Calls(Arc<Mutex<Vec<Call>>>);

impl Calls {
    pub fn all(&self) -> Vec<Call> {
        self.0.lock().unwrap().clone()
    }

    /// `METHOD path` of each call, in order.
    pub fn lines(&self) -> Vec<String> {
        self.all().iter().map(Call::line).collect()
    }
}

/// A client whose every call is answered by `answer(call)`: an HTTP status and a JSON body.
pub fn client(
    answer: impl Fn(&Call) -> (u16, Value) + Send + Sync + 'static,
) -> (kube::Client, Calls) {
    let calls = Calls::default();
    let recorded = calls.clone();
    let answer = Arc::new(answer);
    let service = tower::service_fn(move |request: Request<Body>| {
        let (recorded, answer) = (recorded.clone(), answer.clone());
        async move {
            let (parts, body) = request.into_parts();
            let bytes = body.collect_bytes().await.unwrap_or_default();
            let call = Call {
                method: parts.method,
                path: parts
                    .uri
                    .path_and_query()
                    .map(ToString::to_string)
                    .unwrap_or_default(),
                body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            };
            let (status, value) = answer(&call);
            recorded.0.lock().unwrap().push(call);
            let response = Response::builder()
                .status(status)
                .header("content-type", "application/json")
                .body(Body::from(serde_json::to_vec(&value).unwrap()))
                .unwrap();
            Ok::<_, Infallible>(response)
        }
    });
    (kube::Client::new(service, "default"), calls)
}

/// The body the API server sends with an error status.
pub fn status(code: u16, reason: &str) -> Value {
    serde_json::json!({
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "message": reason,
        "reason": reason,
        "code": code,
    })
}
