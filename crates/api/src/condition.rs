//! KubeDB's condition shape (kmodules `Condition`): like the Kubernetes one plus `severity`.
//! k8s-openapi's `Condition` would silently drop `severity`, so KubeDB objects use this type.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    #[schemars(extend("enum" = ["True", "False", "Unknown"]))]
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Error`, `Warning`, `Info` or empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["Error", "Warning", "Info", ""]))]
    pub severity: Option<String>,
    pub last_transition_time: Time,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl Condition {
    pub fn is_true(&self) -> bool {
        self.status == "True"
    }
}

/// The condition of `type_` in `conditions`, if present.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

impl Condition {
    /// A condition as of `now`, with KubeDB's severity for a failing one.
    pub fn new(
        type_: &str,
        status: bool,
        reason: &str,
        message: impl Into<String>,
        generation: Option<i64>,
        now: Time,
    ) -> Self {
        Self {
            type_: type_.to_owned(),
            status: if status { "True" } else { "False" }.to_owned(),
            observed_generation: generation,
            severity: (!status).then(|| "Warning".to_owned()),
            last_transition_time: now,
            reason: Some(reason.to_owned()),
            message: Some(message.into()),
        }
    }
}

/// Puts `new` into `conditions`, replacing the one of its type. The transition time only moves
/// when the status changes, so watchers see when something actually happened.
pub fn set(conditions: &mut Vec<Condition>, mut new: Condition) {
    match conditions.iter_mut().find(|c| c.type_ == new.type_) {
        Some(old) => {
            if old.status == new.status {
                new.last_transition_time = old.last_transition_time.clone();
            }
            *old = new;
        }
        None => conditions.push(new),
    }
}

/// Removes the condition of `type_`, if any.
pub fn remove(conditions: &mut Vec<Condition>, type_: &str) {
    conditions.retain(|c| c.type_ != type_);
}

/// How long ago, at `now`, the most recent transition of any condition was: the time a step of a
/// request took, when measured as it is recorded. Zero when there is none or the clock went back.
pub fn since_latest_transition(
    conditions: &[Condition],
    now: k8s_openapi::jiff::Timestamp,
) -> std::time::Duration {
    conditions
        .iter()
        .map(|c| c.last_transition_time.0)
        .max()
        .and_then(|latest| std::time::Duration::try_from(now.duration_since(latest)).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use k8s_openapi::jiff::Timestamp;

    use super::*;

    fn at(seconds: i64) -> Time {
        Time(Timestamp::from_second(seconds).unwrap())
    }

    #[test]
    fn set_keeps_the_transition_time_of_an_unchanged_status() {
        let mut conditions = vec![];
        set(
            &mut conditions,
            Condition::new("Ready", false, "NotYet", "waiting", Some(1), at(10)),
        );
        assert_eq!(conditions[0].severity.as_deref(), Some("Warning"));
        set(
            &mut conditions,
            Condition::new("Ready", false, "NotYet", "still waiting", Some(2), at(20)),
        );
        assert_eq!(
            (
                conditions[0].last_transition_time.clone(),
                conditions[0].message.as_deref()
            ),
            (at(10), Some("still waiting"))
        );
        set(
            &mut conditions,
            Condition::new("Ready", true, "Done", "ready", Some(2), at(30)),
        );
        assert_eq!(conditions[0].last_transition_time, at(30));
        assert_eq!(conditions[0].severity, None);
        set(
            &mut conditions,
            Condition::new("Paused", true, "P", "p", None, at(40)),
        );
        assert_eq!(conditions.len(), 2);
        remove(&mut conditions, "Paused");
        assert_eq!(find(&conditions, "Paused"), None);
        assert!(find(&conditions, "Ready").unwrap().is_true());
    }

    #[test]
    fn since_latest_transition_measures_from_the_newest_condition() {
        let now = Timestamp::from_second(100).unwrap();
        assert_eq!(since_latest_transition(&[], now), std::time::Duration::ZERO);
        let conditions = [
            Condition::new("A", true, "A", "a", None, at(10)),
            Condition::new("B", true, "B", "b", None, at(93)),
            Condition::new("C", false, "C", "c", None, at(50)),
        ];
        assert_eq!(
            since_latest_transition(&conditions, now),
            std::time::Duration::from_secs(7)
        );
        // A clock behind the recorded times gives zero, not a panic.
        assert_eq!(
            since_latest_transition(&conditions, Timestamp::from_second(5).unwrap()),
            std::time::Duration::ZERO
        );
    }
}
