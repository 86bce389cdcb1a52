//! The definitions door: a RabbitMQ definitions document (`store::meta::Definitions`) turned into
//! core operations (import: users, vhosts, permissions, then exchanges, queues and bindings, each
//! through the same `Broker` / `VHost` methods as a client's declare) and the broker's state turned
//! back into one (export: the definitions file, `GET /api/definitions`).
//!
//! Runs in: boot, the HTTP API (`POST /api/definitions`), the metadata writer (export).
//!
//! # Invariants
//! - Import applies what it can and reports every problem, one line each.
//! - Only what RabbitMQ would restore is exported to the file: durable, non-exclusive queues;
//!   durable exchanges other than the predeclared `amq.*` ones; bindings whose source and
//!   destination are both durable.
use crate::auth::User;
use crate::broker::Broker;
use crate::exchange::Dest;
use crate::store::meta::*;
use crate::vhost::{Actor, ExchangeSpec, QueueSpec};
use serde_json::Value;
use warren_protocol::ShortStr;

fn tags_of(v: &Value) -> Vec<String> {
    match v {
        Value::Array(a) => a.iter().filter_map(|t| t.as_str().map(String::from)).collect(),
        Value::String(s) => s.split(',').map(str::trim).filter(|t| !t.is_empty()).map(String::from).collect(),
        _ => Vec::new(),
    }
}

/// Snapshot the broker's durable state.
/// What the broker restores: durable exchanges, non-exclusive durable queues, and bindings whose
/// ends are both durable (the definitions file).
pub fn export(broker: &Broker) -> Definitions {
    export_with(broker, false)
}

/// Everything RabbitMQ's `GET /api/definitions` lists: transient exchanges and non-exclusive
/// transient queues too, with their bindings (exclusive queues never).
pub fn export_all(broker: &Broker) -> Definitions {
    export_with(broker, true)
}

/// The runtime parameters, as RabbitMQ exports and lists them (`GET /api/parameters`): the
/// `vhost-limits` of each vhost, one `operator_policy` per operator policy and one `shovel` per
/// shovel.
pub fn parameters(broker: &Broker) -> Vec<Value> {
    let mut out = Vec::new();
    let mut vhosts = broker.vhosts();
    vhosts.sort_by(|a, b| a.name.cmp(&b.name));
    for v in vhosts {
        for op in v.operator_policies() {
            out.push(serde_json::json!({
                "vhost": v.name, "component": "operator_policy", "name": op.name,
                "value": {
                    "pattern": op.pattern, "definition": op.definition, "priority": op.priority,
                    "apply-to": op.apply_to.name(),
                },
            }));
        }
        let l = v.limits();
        if !l.is_empty() {
            out.push(serde_json::json!({
                "vhost": v.name, "component": "vhost-limits", "name": "limits", "value": l.to_json(),
            }));
        }
        out.extend(broker.shovels.of(&v.name).iter().map(|e| e.parameter()));
    }
    out
}

fn export_with(broker: &Broker, transient: bool) -> Definitions {
    let mut d = Definitions {
        rabbit_version: Some(RABBIT_VERSION.into()),
        rabbitmq_version: Some(RABBIT_VERSION.into()),
        product_name: Some("Warren".into()),
        product_version: Some(env!("CARGO_PKG_VERSION").into()),
        ..Default::default()
    };
    d.parameters = parameters(broker);
    let mut users = broker.users();
    users.sort_by(|a, b| a.name.cmp(&b.name));
    d.users = users
        .into_iter()
        .map(|u| UserDef {
            password_hash: u.hash_base64(),
            hashing_algorithm: u.hashing_algorithm.clone(),
            password: None,
            tags: Value::Array(u.tags.iter().cloned().map(Value::String).collect()),
            limits: broker.user_limits(&u.name).to_json(),
            name: u.name,
        })
        .collect();
    d.permissions = broker.permissions();
    d.topic_permissions = broker.topic_permissions();
    d.topic_permissions.sort_by(|a, b| (&a.vhost, &a.user, &a.exchange).cmp(&(&b.vhost, &b.user, &b.exchange)));
    for v in broker.vhosts() {
        d.policies.extend(v.policies().iter().map(|p| p.to_json()));
    }
    d.policies
        .sort_by(|a, b| (a["vhost"].as_str(), a["name"].as_str()).cmp(&(b["vhost"].as_str(), b["name"].as_str())));
    let mut vhosts = broker.vhosts();
    vhosts.sort_by(|a, b| a.name.cmp(&b.name));
    for v in &vhosts {
        d.vhosts.push(VHostDef { name: v.name.clone(), ..Default::default() });
        let mut queues: Vec<_> = v
            .queues_snapshot()
            .into_iter()
            .filter(|q| (transient || q.durable) && q.exclusive_owner.is_none())
            .collect();
        queues.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
        for q in &queues {
            d.queues.push(QueueDef {
                name: q.name.to_str_lossy().into_owned(),
                vhost: v.name.clone(),
                durable: q.durable,
                auto_delete: q.auto_delete,
                arguments: table_to_json(&q.arguments),
            });
        }
        let mut exchanges = v.exchanges_snapshot();
        exchanges.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
        for x in exchanges.iter().filter(|x| transient || x.durable) {
            if !x.name.as_bytes().starts_with(b"amq.") {
                d.exchanges.push(ExchangeDef {
                    name: x.name.to_str_lossy().into_owned(),
                    vhost: v.name.clone(),
                    kind: x.kind.name().to_string(),
                    durable: x.durable,
                    auto_delete: x.auto_delete,
                    internal: x.internal,
                    arguments: table_to_json(&x.arguments),
                });
            }
            for b in x.bindings().all.iter() {
                let (destination, destination_type) = match &b.dest {
                    Dest::Queue(q) if (transient || q.durable) && q.exclusive_owner.is_none() => {
                        (q.name.to_str_lossy(), "queue")
                    }
                    Dest::Exchange(e) if transient || e.durable => (e.name.to_str_lossy(), "exchange"),
                    _ => continue,
                };
                d.bindings.push(BindingDef {
                    source: x.name.to_str_lossy().into_owned(),
                    vhost: v.name.clone(),
                    destination: destination.into_owned(),
                    destination_type: destination_type.into(),
                    routing_key: b.routing_key.to_str_lossy().into_owned(),
                    arguments: table_to_json(&b.arguments),
                });
            }
        }
    }
    d
}

/// Apply a definitions document: users, vhosts, permissions, then exchanges, queues and bindings
/// (each through the same checks as a client's declare). Returns the problems found, one line
/// each; what could be applied is applied.
pub fn import(broker: &Broker, d: &Definitions) -> Vec<String> {
    let mut problems = Vec::new();
    for u in &d.users {
        let algo = if u.hashing_algorithm.is_empty() { crate::auth::SHA256 } else { &u.hashing_algorithm };
        let user = match (&u.password, u.password_hash.is_empty()) {
            (Some(pw), true) => User::new(&u.name, pw, tags_of(&u.tags)),
            _ => match User::from_definition(&u.name, &u.password_hash, algo, tags_of(&u.tags)) {
                Some(user) => user,
                None => {
                    problems.push(format!("user '{}': unsupported password hash ({algo})", u.name));
                    continue;
                }
            },
        };
        broker.put_user(user, None);
        // Its limits, as RabbitMQ exports them (`users[].limits`).
        for (name, value) in &u.limits {
            let set = value.as_i64().ok_or_else(|| "not an integer".to_string());
            if let Err(e) = set.and_then(|v| broker.set_user_limit(&u.name, name, v)) {
                problems.push(format!("limit '{name}' of user '{}': {e}", u.name));
            }
        }
    }
    for v in &d.vhosts {
        broker.add_vhost(&v.name, None);
    }
    for p in &d.permissions {
        if let Err(e) = broker.set_permission(p.clone(), None) {
            problems.push(format!("permissions of '{}' in vhost '{}': {e}", p.user, p.vhost));
        }
    }
    // Policies before queues and exchanges, so those declared here get them.
    for p in &d.policies {
        let Some(o) = p.as_object() else { continue };
        let vhost = o.get("vhost").and_then(|v| v.as_str()).unwrap_or("/");
        let name = o.get("name").and_then(|v| v.as_str()).unwrap_or("");
        let Some(v) = broker.vhost(vhost) else {
            problems.push(format!("policy '{name}': no vhost '{vhost}'"));
            continue;
        };
        match crate::policy::Policy::from_json(vhost, name, o) {
            Ok(p) => {
                v.set_policy(p, None);
            }
            Err(e) => problems.push(format!("policy '{name}' in vhost '{vhost}': {e}")),
        }
    }
    for p in &d.topic_permissions {
        if let Err(e) = broker.set_topic_permission(p.clone()) {
            problems.push(format!(
                "topic permissions of '{}' in vhost '{}' on exchange '{}': {e}",
                p.user, p.vhost, p.exchange
            ));
        }
    }
    let mut other_parameters = 0;
    for p in &d.parameters {
        if p["component"] == "operator_policy" {
            // Operator policies, as RabbitMQ exports them: a runtime parameter per policy.
            let vhost = p["vhost"].as_str().unwrap_or("/");
            let name = p["name"].as_str().unwrap_or("");
            let Some(v) = broker.vhost(vhost) else {
                problems.push(format!("operator policy '{name}': no vhost '{vhost}'"));
                continue;
            };
            let value = p["value"].as_object().cloned().unwrap_or_default();
            match crate::policy::Policy::operator_from_json(vhost, name, &value) {
                Ok(op) => {
                    v.set_operator_policy(op);
                }
                Err(e) => problems.push(format!("operator policy '{name}' in vhost '{vhost}': {e}")),
            }
            continue;
        }
        if p["component"] == "shovel" {
            let vhost = p["vhost"].as_str().unwrap_or("/");
            let name = p["name"].as_str().unwrap_or("");
            match broker.set_shovel(vhost, name, p["value"].clone()) {
                Ok(_) => {}
                Err(None) => problems.push(format!("shovel '{name}': no vhost '{vhost}'")),
                Err(Some(e)) => problems.push(format!("shovel '{name}' in vhost '{vhost}': {}", e.trim_end())),
            }
            continue;
        }
        if p["component"] != "vhost-limits" {
            other_parameters += 1;
            continue;
        }
        let vhost = p["vhost"].as_str().unwrap_or("/");
        let Some(v) = broker.vhost(vhost) else {
            problems.push(format!("vhost limits: no vhost '{vhost}'"));
            continue;
        };
        for (name, value) in p["value"].as_object().into_iter().flatten() {
            match value.as_i64() {
                Some(n) => {
                    if let Err(e) = v.set_limit(name, n) {
                        problems.push(format!("vhost limits of '{vhost}': {e}"));
                    }
                }
                None => problems.push(format!("vhost limits of '{vhost}': '{name}' is not an integer")),
            }
        }
    }
    if other_parameters > 0 || !d.global_parameters.is_empty() {
        // rabbitmq-compat: runtime parameters other than vhost limits, operator policies and
        // shovels (federation upstreams, ...) have
        // no effect in Warren; said once per import rather than dropped silently.
        tracing::warn!(
            "definitions: {} parameter(s) and {} global parameter(s) are not applied by Warren",
            other_parameters,
            d.global_parameters.len()
        );
    }
    // A name that does not fit a short string would be cut and stored under other bytes than the
    // file says: refused (and reported), as a client's declare of it would be.
    let too_long = |what: &str, name: &str, vhost: &str| {
        (name.len() > warren_protocol::types::SHORTSTR_MAX)
            .then(|| format!("{what} '{name}' in vhost '{vhost}': name longer than 255 bytes"))
    };
    for x in &d.exchanges {
        if x.name.starts_with("amq.") {
            continue;
        }
        if let Some(p) = too_long("exchange", &x.name, &x.vhost) {
            problems.push(p);
            continue;
        }
        let Some(v) = broker.vhost(&x.vhost) else {
            problems.push(format!("exchange '{}': no vhost '{}'", x.name, x.vhost));
            continue;
        };
        let decl = ExchangeSpec {
            name: ShortStr::from(x.name.clone()),
            kind: ShortStr::from(x.kind.clone()),
            passive: false,
            durable: x.durable,
            auto_delete: x.auto_delete,
            internal: x.internal,
            arguments: json_to_table(&x.arguments),
        };
        if let Err(e) = v.declare_exchange(&Actor::BROKER, &decl) {
            problems.push(format!("exchange '{}' in vhost '{}': {}", x.name, x.vhost, e.reply_text()));
        }
    }
    for q in &d.queues {
        if let Some(p) = too_long("queue", &q.name, &q.vhost) {
            problems.push(p);
            continue;
        }
        let Some(v) = broker.vhost(&q.vhost) else {
            problems.push(format!("queue '{}': no vhost '{}'", q.name, q.vhost));
            continue;
        };
        let decl = QueueSpec {
            name: ShortStr::from(q.name.clone()),
            durable: q.durable,
            auto_delete: q.auto_delete,
            arguments: json_to_table(&q.arguments),
            ..QueueSpec::default()
        };
        if let Err(e) = v.declare_queue(&Actor::BROKER, &decl) {
            problems.push(format!("queue '{}' in vhost '{}': {}", q.name, q.vhost, e.reply_text()));
        }
    }
    for b in &d.bindings {
        if let Some(p) =
            [(&b.source, "binding source"), (&b.destination, "binding destination"), (&b.routing_key, "binding key")]
                .into_iter()
                .find_map(|(n, what)| too_long(what, n, &b.vhost))
        {
            problems.push(p);
            continue;
        }
        let Some(v) = broker.vhost(&b.vhost) else {
            problems.push(format!("binding from '{}': no vhost '{}'", b.source, b.vhost));
            continue;
        };
        let (src, dst, key) = (
            ShortStr::from(b.source.clone()),
            ShortStr::from(b.destination.clone()),
            ShortStr::from(b.routing_key.clone()),
        );
        let args = json_to_table(&b.arguments);
        let r = if b.destination_type == "exchange" {
            v.bind_exchange(&Actor::BROKER, &dst, &src, key, args)
        } else {
            v.bind_queue(&Actor::BROKER, &dst, &src, key, args)
        };
        if let Err(e) = r {
            problems.push(format!(
                "binding '{}' -> '{}' in vhost '{}': {}",
                b.source,
                b.destination,
                b.vhost,
                e.reply_text()
            ));
        }
    }
    problems
}
