//! A vhost's policies and operator policies: set, clear, list, the lookup of the one that
//! applies to a queue or exchange (highest priority wins), and their re-application to the
//! existing queues and exchanges whenever one changes.
//!
//! Runs in: HTTP handlers and boot import (set / clear, re-application); declares (lookup).
//!
//! # Invariants
//! - The pick is the matching policy with the highest priority (ties: the first by name).
//! - After every set or clear, each queue and exchange has the (operator) policy the pick gives
//!   now.
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
        self.events.emit("policy.set", |f| {
            f.by(by)
                .int("priority", p.priority)
                .table("definition", &crate::store::meta::json_to_table(&p.definition))
                .str("apply-to", p.apply_to.name())
                .str("pattern", &p.pattern)
                .str("name", &p.name)
                .str("vhost", &self.name);
        });
        let created = put_named(&self.policies, p);
        self.changed(true);
        self.reapply_policies();
        created
    }
    /// Remove a policy; false if there was none.
    pub fn clear_policy(&self, name: &str, by: Option<&str>) -> bool {
        let removed = remove_named(&self.policies, name);
        if removed {
            self.changed(true);
            self.reapply_policies();
            self.events.emit("policy.cleared", |f| {
                f.by(by).str("name", name).str("vhost", &self.name);
            });
        }
        removed
    }
}

/// Operator policies (RabbitMQ's `/api/operator-policies`): set by administrators, they cap the
/// limits of queues whatever their arguments and policies say.
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
        let created = put_named(&self.operator_policies, Arc::new(p));
        self.changed(true);
        self.reapply_policies();
        created
    }
    /// Remove an operator policy; false if there was none.
    pub fn clear_operator_policy(&self, name: &str) -> bool {
        let removed = remove_named(&self.operator_policies, name);
        if removed {
            self.changed(true);
            self.reapply_policies();
        }
        removed
    }

    /// After a policy or operator policy changed: give every queue and exchange whose
    /// (operator) policy is now another one its new settings, as RabbitMQ re-applies policies.
    fn reapply_policies(&self) {
        let same = |a: &Option<Arc<crate::policy::Policy>>, b: &Option<Arc<crate::policy::Policy>>| match (a, b) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        };
        for q in self.queues_snapshot() {
            let name = q.name.to_str_lossy();
            let quorum = q.kind == crate::queue::settings::QueueType::Quorum;
            let policy = self.policy_for(|p| p.matches_queue(&name, quorum));
            let operator = self.operator_policy_for(&name, quorum);
            let now = q.applied();
            if !same(&now.policy, &policy) || !same(&now.operator_policy, &operator) {
                q.reapply(policy, operator);
            }
        }
        for x in self.exchanges_snapshot() {
            let policy = self.policy_for(|p| p.matches_exchange(&x.name.to_str_lossy()));
            if !same(&x.policy(), &policy) {
                x.reapply(policy);
            }
        }
    }
}

/// A vhost's list of policies (or operator policies).
type Named = parking_lot::RwLock<Vec<Arc<crate::policy::Policy>>>;

/// Put `p` in place of the one of its name in `list`; true when it is new.
fn put_named(list: &Named, p: Arc<crate::policy::Policy>) -> bool {
    let mut ps = list.write();
    let created = !ps.iter().any(|x| x.name == p.name);
    ps.retain(|x| x.name != p.name);
    ps.push(p);
    created
}

/// Remove the one named `name` from `list`; true if there was one.
fn remove_named(list: &Named, name: &str) -> bool {
    let mut ps = list.write();
    let before = ps.len();
    ps.retain(|x| x.name != name);
    ps.len() != before
}
