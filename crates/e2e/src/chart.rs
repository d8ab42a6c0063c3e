//! The Helm chart in `deploy/helm/mssql-operator`, rendered by helm built from its Go module
//! (`hack/helm`, which builds it on first use and caches it).

use serde_json::Value;

use crate::{Run, command, root};

/// The chart, relative to the repository root.
pub const CHART: &str = "deploy/helm/mssql-operator";

/// Runs `helm args` through `hack/helm` (which builds helm first if it is missing).
pub fn helm(args: &[&str]) -> Run {
    let script = root().join("hack/helm");
    command(
        script.to_str().expect("a UTF-8 path"),
        args,
        None,
        "hack/helm builds helm from its Go module; it needs Go 1.26",
    )
}

/// Runs `helm args` and returns its output; panics with helm's error if it fails.
#[track_caller]
pub fn helm_ok(args: &[&str]) -> String {
    let run = helm(args);
    assert!(
        run.ok,
        "helm {} failed:\n{}{}",
        args.join(" "),
        run.stdout,
        run.stderr
    );
    run.stdout
}

/// `helm template RELEASE CHART --namespace NAMESPACE` with `--set` values: every object, parsed.
#[track_caller]
pub fn render(release: &str, namespace: &str, sets: &[&str]) -> Vec<Value> {
    let mut args = vec!["template", release, CHART, "--namespace", namespace];
    for set in sets {
        args.extend(["--set", set]);
    }
    let text = helm_ok(&args);
    let documents: Vec<Value> = serde_saphyr::from_multiple(&text)
        .unwrap_or_else(|e| panic!("helm template prints YAML: {e}\n{text}"));
    documents.into_iter().filter(|d| !d.is_null()).collect()
}

/// The objects of `kind`.
pub fn of_kind<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objects.iter().filter(|o| o["kind"] == kind).collect()
}

/// The one object of `kind`; panics if there is not exactly one.
#[track_caller]
pub fn one<'a>(objects: &'a [Value], kind: &str) -> &'a Value {
    match of_kind(objects, kind).as_slice() {
        [object] => object,
        other => panic!("expected one {kind}, got {}", other.len()),
    }
}
