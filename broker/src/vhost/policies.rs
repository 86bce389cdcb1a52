//! A vhost's policies: set, clear, list, and the lookup of the one that applies to a new queue or
//! exchange (highest priority wins).
//!
//! Runs in: HTTP handlers and boot import (set / clear); declares (lookup).
//!
//! # Invariants
//! - The list is sorted by priority, highest first, so the first match is the one that applies.
use super::VHost;
use std::sync::Arc;

impl VHost {
    /// The policy that applies to an object `applies` accepts, if any.
    pub fn policy_for(&self, applies: impl Fn(&crate::policy::Policy) -> bool) -> Option<Arc<crate::policy::Policy>> {
        crate::policy::pick(&self.policies.read(), applies).cloned()
    }
    /// Every policy, by name.
    pub fn policies(&self) -> Vec<Arc<crate::policy::Policy>> {
        let mut v = self.policies.read().clone();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }
    /// Set (create or replace) a policy; true when it is new. It applies to queues and exchanges
    /// declared from now on (see `policy`'s invariants); existing ones it matches are logged.
    /// `by`: who asks (`None`: the broker), as events name it.
    pub fn set_policy(&self, p: crate::policy::Policy, by: Option<&str>) -> bool {
        let p = Arc::new(p);
        let existing: Vec<String> = self
            .queues_snapshot()
            .iter()
            .map(|q| q.name.to_str_lossy().into_owned())
            .filter(|n| p.matches_queue(n, false) || p.matches_queue(n, true))
            .collect();
        if !existing.is_empty() {
            tracing::warn!(
                "policy '{}' in vhost '{}' applies to queues declared from now on; {} existing queue(s) keep their settings (e.g. '{}')",
                p.name,
                self.name,
                existing.len(),
                existing[0]
            );
        }
        self.events.emit("policy.set", |f| {
            f.by(by)
                .int("priority", p.priority)
                .table("definition", &crate::store::meta::json_to_table(&p.definition))
                .str("apply-to", p.apply_to.name())
                .str("pattern", &p.pattern)
                .str("name", &p.name)
                .str("vhost", &self.name);
        });
        let mut ps = self.policies.write();
        let created = !ps.iter().any(|x| x.name == p.name);
        ps.retain(|x| x.name != p.name);
        ps.push(p);
        drop(ps);
        self.changed(true);
        created
    }
    /// Remove a policy; false if there was none.
    pub fn clear_policy(&self, name: &str, by: Option<&str>) -> bool {
        let mut ps = self.policies.write();
        let before = ps.len();
        ps.retain(|x| x.name != name);
        let removed = ps.len() != before;
        drop(ps);
        if removed {
            self.changed(true);
            self.events.emit("policy.cleared", |f| {
                f.by(by).str("name", name).str("vhost", &self.name);
            });
        }
        removed
    }
}

/// Operator policies (RabbitMQ's `/api/operator-policies`): set by administrators, they cap the
/// limits of queues declared after them whatever their arguments and policies say.
impl VHost {
    /// The operator policy that applies to the queue `name` of type `quorum`, if any.
    pub fn operator_policy_for(&self, name: &str, quorum: bool) -> Option<Arc<crate::policy::Policy>> {
        let ps = self.operator_policies.read();
        crate::policy::pick(&ps, |p| p.matches_queue(name, quorum) && p.fits_queue_type(quorum)).cloned()
    }
    /// Every operator policy, by name.
    pub fn operator_policies(&self) -> Vec<Arc<crate::policy::Policy>> {
        let mut v = self.operator_policies.read().clone();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }
    /// Set (create or replace) an operator policy; true when it is new.
    pub fn set_operator_policy(&self, p: crate::policy::Policy) -> bool {
        let mut ps = self.operator_policies.write();
        let created = !ps.iter().any(|x| x.name == p.name);
        ps.retain(|x| x.name != p.name);
        ps.push(Arc::new(p));
        drop(ps);
        self.changed(true);
        created
    }
    /// Remove an operator policy; false if there was none.
    pub fn clear_operator_policy(&self, name: &str) -> bool {
        let mut ps = self.operator_policies.write();
        let before = ps.len();
        ps.retain(|x| x.name != name);
        let removed = ps.len() != before;
        drop(ps);
        if removed {
            self.changed(true);
        }
        removed
    }
}
