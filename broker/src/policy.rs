//! Policies (RabbitMQ's `rabbitmqctl set_policy`, `/api/policies`, the `policies` of definitions):
//! a name, a regular expression over queue or exchange names, what it applies to, a priority and a
//! definition (`message-ttl`, `dead-letter-exchange`, `max-length`, `alternate-exchange`, ...).
//!
//! Runs in: whoever declares a queue or exchange (the policy that matches is looked up then), and
//! the management API / definitions import (setting them).
//!
//! # Invariants
//! - A policy's pattern compiled when it is set; an invalid one, or a definition key RabbitMQ does
//!   not know, is refused then.
//! - The policy of an object is the matching one with the highest priority (ties: the first by
//!   name), as in RabbitMQ.
//! - A policy applies to queues and exchanges when they are declared, and to existing ones when
//!   a policy is set, changed or cleared (`VHost::reapply_policies`), as in RabbitMQ.
//!   rabbitmq-compat: a changed message TTL applies to messages enqueued after the change.
use serde_json::{json, Map, Value};

/// What a policy applies to (`apply-to`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyTo {
    All,
    Queues,
    ClassicQueues,
    QuorumQueues,
    Exchanges,
}

impl ApplyTo {
    fn parse(s: &str) -> Option<ApplyTo> {
        Some(match s {
            "all" => ApplyTo::All,
            "queues" => ApplyTo::Queues,
            "classic_queues" => ApplyTo::ClassicQueues,
            "quorum_queues" => ApplyTo::QuorumQueues,
            "exchanges" => ApplyTo::Exchanges,
            _ => return None,
        })
    }
    pub fn name(self) -> &'static str {
        match self {
            ApplyTo::All => "all",
            ApplyTo::Queues => "queues",
            ApplyTo::ClassicQueues => "classic_queues",
            ApplyTo::QuorumQueues => "quorum_queues",
            ApplyTo::Exchanges => "exchanges",
        }
    }
}

/// Definition keys RabbitMQ 3.10 accepts in a policy. Those Warren applies: `message-ttl`,
/// `expires`, `max-length`, `max-length-bytes`, `overflow`, `dead-letter-exchange`,
/// `dead-letter-routing-key`, `delivery-limit`, `alternate-exchange`; the others are accepted and
/// have no effect here (mirroring, federation, queue modes and versions, stream retention).
const KNOWN_KEYS: &[&str] = &[
    "message-ttl",
    "expires",
    "max-length",
    "max-length-bytes",
    "overflow",
    "dead-letter-exchange",
    "dead-letter-routing-key",
    "delivery-limit",
    "alternate-exchange",
    "queue-mode",
    "queue-version",
    "queue-master-locator",
    "queue-leader-locator",
    "ha-mode",
    "ha-params",
    "ha-sync-mode",
    "ha-sync-batch-size",
    "ha-promote-on-shutdown",
    "ha-promote-on-failure",
    "federation-upstream",
    "federation-upstream-set",
    "max-age",
    "stream-max-segment-size-bytes",
    "initial-cluster-size",
    "max-in-memory-length",
    "max-in-memory-bytes",
    "consumer-timeout",
];

/// A policy.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Name (unique per vhost).
    pub name: String,
    /// Vhost.
    pub vhost: String,
    /// The pattern as given.
    pub pattern: String,
    /// The pattern compiled (matched unanchored, as Erlang's `re:run`).
    re: regex::Regex,
    /// What it applies to.
    pub apply_to: ApplyTo,
    /// Higher wins.
    pub priority: i64,
    /// The definition as given.
    pub definition: Map<String, Value>,
}

impl Policy {
    /// Validate and compile (RabbitMQ's validation texts).
    pub fn new(
        vhost: &str,
        name: &str,
        pattern: &str,
        apply_to: &str,
        priority: i64,
        definition: Map<String, Value>,
    ) -> Result<Policy, String> {
        let re = regex::Regex::new(pattern)
            .map_err(|e| format!("Validation failed: pattern {pattern} is not a valid regular expression ({e})"))?;
        let apply_to = ApplyTo::parse(apply_to)
            .ok_or_else(|| format!("Validation failed: '{apply_to}' is not a valid apply-to value"))?;
        if definition.is_empty() {
            return Err("Validation failed: no policy definition".into());
        }
        for k in definition.keys() {
            if !KNOWN_KEYS.contains(&k.as_str()) {
                return Err(format!("Validation failed: [{{<<\"{k}\">>,...}}] are not recognised policy settings"));
            }
        }
        Ok(Policy {
            name: name.into(),
            vhost: vhost.into(),
            pattern: pattern.into(),
            re,
            apply_to,
            priority,
            definition,
        })
    }

    /// From a definitions / API object (`pattern`, `definition`, `priority`, `apply-to`).
    pub fn from_json(vhost: &str, name: &str, v: &Map<String, Value>) -> Result<Policy, String> {
        let pattern = v.get("pattern").and_then(|p| p.as_str()).ok_or("Validation failed: pattern is missing")?;
        let definition = match v.get("definition") {
            Some(Value::Object(d)) => d.clone(),
            _ => return Err("Validation failed: definition must be an object".into()),
        };
        let priority = v.get("priority").and_then(|p| p.as_i64().or_else(|| p.as_str()?.parse().ok())).unwrap_or(0);
        let apply_to = v.get("apply-to").and_then(|a| a.as_str()).unwrap_or("all");
        Policy::new(vhost, name, pattern, apply_to, priority, definition)
    }

    /// As RabbitMQ lists it.
    pub fn to_json(&self) -> Value {
        json!({
            "vhost": self.vhost,
            "name": self.name,
            "pattern": self.pattern,
            "apply-to": self.apply_to.name(),
            "definition": self.definition,
            "priority": self.priority,
        })
    }

    /// Whether it applies to the queue `name` of type `quorum` or not.
    pub fn matches_queue(&self, name: &str, quorum: bool) -> bool {
        let kind_ok = match self.apply_to {
            ApplyTo::All | ApplyTo::Queues => true,
            ApplyTo::ClassicQueues => !quorum,
            ApplyTo::QuorumQueues => quorum,
            ApplyTo::Exchanges => false,
        };
        kind_ok && self.re.is_match(name)
    }

    /// Whether it applies to the exchange `name`.
    pub fn matches_exchange(&self, name: &str) -> bool {
        matches!(self.apply_to, ApplyTo::All | ApplyTo::Exchanges) && self.re.is_match(name)
    }

    /// An integer setting.
    pub fn int(&self, key: &str) -> Option<u64> {
        self.definition.get(key).and_then(|v| v.as_u64())
    }

    /// A string setting.
    pub fn string(&self, key: &str) -> Option<&str> {
        self.definition.get(key).and_then(|v| v.as_str())
    }
}

/// The definition keys an operator policy may set (RabbitMQ 3.10's), each with what its value must
/// be and the words of its refusal.
const OPERATOR_KEYS: &[(&str, i64, &str)] = &[
    ("delivery-limit", 0, "delivery limit"),
    ("expires", 1, "queue expiry"),
    ("max-in-memory-bytes", 0, "maximum memory in bytes"),
    ("max-in-memory-length", 0, "maximum memory in bytes"),
    ("max-length", 0, "maximum length"),
    ("max-length-bytes", 0, "maximum length in bytes"),
    ("message-ttl", 0, "message TTL"),
];

/// A JSON value as RabbitMQ's validation texts print it (Erlang terms: strings as binaries).
fn erl(v: &Value) -> String {
    match v {
        Value::String(s) => format!("<<\"{s}\">>"),
        other => other.to_string(),
    }
}

impl Policy {
    /// An operator policy (`/api/operator-policies`, `rabbitmqctl set_operator_policy`, the
    /// `operator_policy` parameters of definitions) from its JSON object, validated as RabbitMQ
    /// 3.10 does, with its texts: only queue limits, each a whole number in range.
    pub fn operator_from_json(vhost: &str, name: &str, v: &Map<String, Value>) -> Result<Policy, String> {
        let invalid = |t: String| format!("Validation failed\n\n{t}\n");
        let pattern = v.get("pattern").and_then(|p| p.as_str()).ok_or("[{key_missing,pattern}]")?;
        let definition = match v.get("definition") {
            Some(Value::Object(d)) => d.clone(),
            Some(other) => return Err(invalid(format!("definition must be a dictionary: {}", erl(other)))),
            None => return Err("[{key_missing,definition}]".into()),
        };
        let priority = match v.get("priority") {
            None => 0,
            Some(p) => {
                p.as_i64().ok_or_else(|| invalid(format!("priority should be a number, actually was {}", erl(p))))?
            }
        };
        let apply_to = v.get("apply-to").and_then(|a| a.as_str()).unwrap_or("all");
        if !["queues", "exchanges", "all"].contains(&apply_to) {
            return Err(invalid(format!(
                "apply-to '{apply_to}' unrecognised; should be 'queues', 'exchanges' or 'all'"
            )));
        }
        if definition.is_empty() {
            return Err(invalid("no policy provided".into()));
        }
        for (key, min, what) in OPERATOR_KEYS {
            if let Some(x) = definition.get(*key) {
                if x.as_i64().is_none_or(|n| n < *min) {
                    return Err(invalid(format!("{} is not a valid {what}", erl(x))));
                }
            }
        }
        let unknown: Vec<String> = definition
            .iter()
            .filter(|(k, _)| !OPERATOR_KEYS.iter().any(|(o, _, _)| o == k))
            .map(|(k, x)| format!("{{<<\"{k}\">>,{}}}", erl(x)))
            .collect();
        if !unknown.is_empty() {
            return Err(invalid(format!("[{}] are not recognised policy settings", unknown.join(","))));
        }
        let re = regex::Regex::new(pattern)
            .map_err(|e| invalid(format!("pattern should be regular expression but is invalid: {e}")))?;
        let apply_to = ApplyTo::parse(apply_to).unwrap_or(ApplyTo::All);
        Ok(Policy {
            name: name.into(),
            vhost: vhost.into(),
            pattern: pattern.into(),
            re,
            apply_to,
            priority,
            definition,
        })
    }

    /// Whether it may apply to a queue of type `quorum`: a delivery limit is for quorum queues
    /// only, and RabbitMQ skips a whole policy that sets one for a classic queue.
    pub fn fits_queue_type(&self, quorum: bool) -> bool {
        quorum || !self.definition.contains_key("delivery-limit")
    }
}

/// A policy and an operator policy merged, as `effective_policy_definition` shows them: the keys of
/// either, the lower value where both set a number.
pub fn merged_definition(policy: Option<&Policy>, operator: Option<&Policy>) -> Map<String, Value> {
    let mut out = policy.map(|p| p.definition.clone()).unwrap_or_default();
    for (k, v) in operator.map(|p| p.definition.iter()).into_iter().flatten() {
        let lower = match (out.get(k).and_then(Value::as_i64), v.as_i64()) {
            (Some(a), Some(b)) if a < b => continue,
            _ => v.clone(),
        };
        out.insert(k.clone(), lower);
    }
    out
}

/// The policy that applies among `policies` (highest priority; ties by name).
pub fn pick(policies: &[std::sync::Arc<Policy>], applies: impl Fn(&Policy) -> bool) -> Option<&std::sync::Arc<Policy>> {
    policies.iter().filter(|p| applies(p)).min_by(|a, b| b.priority.cmp(&a.priority).then_with(|| a.name.cmp(&b.name)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn validation_matching_and_priority() {
        assert!(Policy::new("/", "p", "(", "all", 0, def(json!({"message-ttl": 1}))).is_err());
        assert!(Policy::new("/", "p", ".*", "nowhere", 0, def(json!({"message-ttl": 1}))).is_err());
        assert!(Policy::new("/", "p", ".*", "all", 0, def(json!({"bogus": 1}))).is_err());
        let a = std::sync::Arc::new(
            Policy::new("/", "a", "^orders\\.", "queues", 1, def(json!({"max-length": 5}))).expect("ok"),
        );
        let b =
            std::sync::Arc::new(Policy::new("/", "b", "orders", "all", 5, def(json!({"message-ttl": 9}))).expect("ok"));
        let x = std::sync::Arc::new(
            Policy::new("/", "x", ".*", "exchanges", 9, def(json!({"alternate-exchange": "ae"}))).expect("ok"),
        );
        let all = vec![a.clone(), b.clone(), x.clone()];
        assert_eq!(pick(&all, |p| p.matches_queue("orders.created", false)).map(|p| p.name.as_str()), Some("b"));
        assert_eq!(pick(&all, |p| p.matches_queue("other", false)).map(|p| p.name.as_str()), None);
        assert_eq!(pick(&all, |p| p.matches_exchange("orders")).map(|p| p.name.as_str()), Some("x"));
        assert_eq!(b.int("message-ttl"), Some(9));
    }
}
