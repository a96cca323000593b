//! Service reconciliation: ECS's rolling update as a pure function of the observed state.
//!
//! The primary deployment is brought to `desired_count`; tasks of every other deployment
//! (and tasks whose deployment is unknown) are drained. Starts keep PENDING + RUNNING tasks
//! at or under `maximumPercent` of the desired count (rounded down, never below the desired
//! count itself so that a lost task is always replaced); stops of healthy old tasks keep the
//! healthy count at or above `minimumHealthyPercent` (rounded up), as AWS rounds them.
//! Every quantity is computed after this plan's own stops, so applying a plan and
//! reconciling again gives an empty plan until the world changes.

use super::{
    DeploymentId, DeploymentState, DeploymentUpdate, DeploymentView, ObservedState, ObservedTask,
    RolloutState, ServicePlan, ServiceSpec,
};

/// AWS's circuit-breaker failure threshold: half the desired count (rounded up), at least 3,
/// at most 200.
pub fn failure_threshold(desired_count: u32) -> u32 {
    desired_count.div_ceil(2).clamp(3, 200)
}

/// AWS `rolloutStateReason` when the breaker trips without a rollback target.
const CIRCUIT_BREAKER_REASON: &str = "ECS deployment circuit breaker: tasks failed to start.";

fn is_live(t: &ObservedTask) -> bool {
    matches!(t.state, ObservedState::Pending | ObservedState::Running)
}

/// RUNNING and not reported unhealthy (UNKNOWN counts as healthy, as in ECS without a health check).
fn is_healthy(t: &ObservedTask) -> bool {
    t.state == ObservedState::Running && t.healthy != Some(false)
}

pub fn reconcile(
    spec: &ServiceSpec,
    deployments: &[DeploymentView],
    observed: &[ObservedTask],
    now_ms: u64,
) -> ServicePlan {
    // Decisions depend only on observed state, never on elapsed time, so a replay with the
    // same inputs gives the same plan; `now_ms` is part of the contract for future timers.
    let _ = now_ms;
    let mut plan = ServicePlan::default();
    let desired = spec.desired_count;
    let primary = deployments.iter().find(|d| d.id == spec.primary);

    // --- circuit breaker ---
    let threshold =
        if spec.failure_threshold == 0 { failure_threshold(desired) } else { spec.failure_threshold };
    let mut frozen = primary.is_some_and(|p| p.rollout == RolloutState::Failed);
    if let (Some(cb), Some(p)) = (spec.circuit_breaker, primary)
        && cb.enable
        && p.rollout == RolloutState::InProgress
        && p.failed_tasks >= threshold
    {
        let target = if cb.rollback {
            deployments
                .iter()
                .filter(|d| d.id != p.id && d.rollout == RolloutState::Completed)
                .max_by(|a, b| a.created_at_ms.cmp(&b.created_at_ms).then_with(|| a.id.cmp(&b.id)))
        } else {
            None
        };
        let reason = match target {
            Some(t) => format!("ECS deployment circuit breaker: rolling back to deploymentId {}.", t.id),
            None => CIRCUIT_BREAKER_REASON.to_string(),
        };
        plan.deployment_updates.push(DeploymentUpdate::RolloutFailed { deployment: p.id.clone(), reason });
        if let Some(t) = target {
            // The engine makes `t` primary again; the next reconcile drains the failed one.
            plan.deployment_updates.push(DeploymentUpdate::RollBack { from: p.id.clone(), to: t.id.clone() });
            return plan;
        }
        frozen = true;
    }

    let min_healthy = (u64::from(desired) * u64::from(spec.minimum_healthy_percent)).div_ceil(100);
    let max_total = (u64::from(desired) * u64::from(spec.maximum_percent) / 100).max(u64::from(desired));

    let mut stop: Vec<&ObservedTask> = Vec::new();
    // Tasks reported unhealthy are replaced whatever their deployment: they count as neither
    // healthy nor useful.
    for t in observed.iter().filter(|t| t.state == ObservedState::Running && t.healthy == Some(false)) {
        stop.push(t);
    }
    let is_primary = |t: &ObservedTask| t.deployment == spec.primary;
    let keep = |t: &&ObservedTask| is_live(t) && !stop.iter().any(|s| s.id == t.id);
    let mut primary_live: Vec<&ObservedTask> = observed.iter().filter(|t| is_primary(t) && keep(t)).collect();
    let mut old_live: Vec<&ObservedTask> = observed.iter().filter(|t| !is_primary(t) && keep(t)).collect();
    let mut healthy_total = primary_live.iter().filter(|t| is_healthy(t)).count() as u64
        + old_live.iter().filter(|t| is_healthy(t)).count() as u64;

    // --- scale-in of the primary: pending first, then the newest running ---
    if primary_live.len() as u64 > u64::from(desired) {
        primary_live.sort_by(|a, b| {
            let rank = |t: &ObservedTask| {
                (t.state == ObservedState::Running, std::cmp::Reverse(t.started_at_ms.unwrap_or(u64::MAX)))
            };
            rank(a).cmp(&rank(b)).then_with(|| b.id.cmp(&a.id))
        });
        let excess = primary_live.len() - desired as usize;
        for t in primary_live.drain(..excess) {
            if is_healthy(t) {
                healthy_total -= 1;
            }
            stop.push(t);
        }
    }

    // --- drain older deployments within minimumHealthyPercent ---
    if !frozen {
        let created =
            |id: &DeploymentId| deployments.iter().find(|d| &d.id == id).map_or(0, |d| d.created_at_ms);
        // Pending (not healthy) first, then the oldest deployment's tasks.
        old_live.sort_by(|a, b| {
            (is_healthy(a), created(&a.deployment), &a.id).cmp(&(
                is_healthy(b),
                created(&b.deployment),
                &b.id,
            ))
        });
        let mut kept = Vec::new();
        for t in old_live {
            if !is_healthy(t) {
                stop.push(t);
            } else if healthy_total > min_healthy {
                healthy_total -= 1;
                stop.push(t);
            } else {
                kept.push(t);
            }
        }
        old_live = kept;

        let live_after = (primary_live.len() + old_live.len()) as u64;
        let want = u64::from(desired).saturating_sub(primary_live.len() as u64);
        let room = max_total.saturating_sub(live_after);
        let start = want.min(room);
        if start > 0 {
            plan.start.push((spec.primary.clone(), start as u32));
        }
    }
    plan.stop = stop.iter().map(|t| t.id.clone()).collect();

    // --- deployment bookkeeping ---
    let has_tasks =
        |id: &DeploymentId| observed.iter().any(|t| &t.deployment == id && t.state != ObservedState::Stopped);
    let others_have_tasks = observed.iter().any(|t| !is_primary(t) && t.state != ObservedState::Stopped);
    if let Some(p) = primary
        && !frozen
        && p.rollout == RolloutState::InProgress
        && plan.start.is_empty()
        && plan.stop.is_empty()
        && !others_have_tasks
        && primary_live.len() as u64 == u64::from(desired)
        && primary_live.iter().all(|t| is_healthy(t))
    {
        plan.deployment_updates.push(DeploymentUpdate::RolloutCompleted { deployment: p.id.clone() });
    }
    for d in deployments {
        if d.id != spec.primary && d.state != DeploymentState::Inactive && !has_tasks(&d.id) {
            plan.deployment_updates.push(DeploymentUpdate::Inactive { deployment: d.id.clone() });
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::CircuitBreaker;

    fn spec(desired: u32, min: u32, max: u32, primary: &str) -> ServiceSpec {
        ServiceSpec {
            desired_count: desired,
            minimum_healthy_percent: min,
            maximum_percent: max,
            primary: primary.into(),
            circuit_breaker: Some(CircuitBreaker { enable: true, rollback: true }),
            failure_threshold: failure_threshold(desired),
        }
    }

    fn dep(id: &str, state: DeploymentState, rollout: RolloutState, created: u64) -> DeploymentView {
        DeploymentView {
            id: id.into(),
            task_definition: format!("td:{id}"),
            failed_tasks: 0,
            state,
            rollout,
            created_at_ms: created,
        }
    }

    fn task(id: &str, dep: &str, state: ObservedState, started: u64) -> ObservedTask {
        ObservedTask {
            id: id.into(),
            deployment: dep.into(),
            state,
            healthy: None,
            started_at_ms: (state == ObservedState::Running).then_some(started),
        }
    }

    use DeploymentState::*;
    use ObservedState::*;
    use RolloutState::*;

    #[test]
    fn threshold_matches_aws() {
        assert_eq!(failure_threshold(0), 3);
        assert_eq!(failure_threshold(1), 3);
        assert_eq!(failure_threshold(7), 4);
        assert_eq!(failure_threshold(10), 5);
        assert_eq!(failure_threshold(1000), 200);
    }

    #[test]
    fn starts_desired_then_completes_then_is_a_fixed_point() {
        let s = spec(3, 100, 200, "d1");
        let deps = [dep("d1", Primary, InProgress, 1)];
        let plan = reconcile(&s, &deps, &[], 0);
        assert_eq!(plan.start, [("d1".to_string(), 3)]);
        let pending: Vec<_> = (0..3).map(|i| task(&format!("t{i}"), "d1", Pending, 0)).collect();
        assert!(reconcile(&s, &deps, &pending, 0).is_empty());
        let running: Vec<_> = (0..3).map(|i| task(&format!("t{i}"), "d1", Running, i)).collect();
        let plan = reconcile(&s, &deps, &running, 0);
        assert_eq!(plan.deployment_updates, [DeploymentUpdate::RolloutCompleted { deployment: "d1".into() }]);
        let deps = [dep("d1", Primary, Completed, 1)];
        assert!(reconcile(&s, &deps, &running, 0).is_empty());
    }

    #[test]
    fn scale_in_stops_pending_then_newest() {
        let s = spec(2, 100, 200, "d1");
        let deps = [dep("d1", Primary, Completed, 1)];
        let tasks = [
            task("old", "d1", Running, 1),
            task("new", "d1", Running, 5),
            task("mid", "d1", Running, 3),
            task("pend", "d1", Pending, 0),
        ];
        assert_eq!(reconcile(&s, &deps, &tasks, 0).stop, ["pend", "new"]);
    }

    #[test]
    fn unhealthy_tasks_are_replaced() {
        let s = spec(2, 100, 200, "d1");
        let deps = [dep("d1", Primary, Completed, 1)];
        let mut sick = task("a", "d1", Running, 1);
        sick.healthy = Some(false);
        let plan = reconcile(&s, &deps, &[sick, task("b", "d1", Running, 2)], 0);
        assert_eq!(plan.stop, ["a"]);
        assert_eq!(plan.start, [("d1".to_string(), 1)]);
    }

    #[test]
    fn rolling_update_respects_minimum_healthy() {
        // min 50 %, max 100 % of 4: stop two old first, then start two new.
        let s = spec(4, 50, 100, "d2");
        let deps = [dep("d1", Active, Completed, 1), dep("d2", Primary, InProgress, 2)];
        let tasks: Vec<_> = (0..4).map(|i| task(&format!("o{i}"), "d1", Running, i)).collect();
        let plan = reconcile(&s, &deps, &tasks, 0);
        assert_eq!(plan.stop.len(), 2);
        assert_eq!(plan.start, [("d2".to_string(), 2)]);
    }

    #[test]
    fn circuit_breaker_rolls_back_to_last_completed() {
        let s = spec(2, 100, 200, "d3");
        let mut failed = dep("d3", Primary, InProgress, 3);
        failed.failed_tasks = 3;
        let deps = [dep("d1", Inactive, Completed, 1), dep("d2", Active, Completed, 2), failed];
        let plan = reconcile(&s, &deps, &[task("a", "d2", Running, 1)], 0);
        assert!(plan.start.is_empty() && plan.stop.is_empty());
        assert!(
            matches!(&plan.deployment_updates[0], DeploymentUpdate::RolloutFailed { deployment, .. } if deployment == "d3")
        );
        assert_eq!(
            plan.deployment_updates[1],
            DeploymentUpdate::RollBack { from: "d3".into(), to: "d2".into() }
        );
    }

    #[test]
    fn circuit_breaker_without_rollback_freezes() {
        let mut s = spec(2, 100, 200, "d1");
        s.circuit_breaker = Some(CircuitBreaker { enable: true, rollback: false });
        let mut d = dep("d1", Primary, InProgress, 1);
        d.failed_tasks = 3;
        let plan = reconcile(&s, std::slice::from_ref(&d), &[], 0);
        assert!(plan.start.is_empty());
        assert!(matches!(&plan.deployment_updates[..], [DeploymentUpdate::RolloutFailed { .. }]));
        d.rollout = Failed;
        assert!(reconcile(&s, &[d], &[], 0).is_empty());
    }

    #[test]
    fn orphans_are_drained_and_drained_deployments_go_inactive() {
        let s = spec(1, 0, 200, "d2");
        let deps = [dep("d1", Active, Completed, 1), dep("d2", Primary, InProgress, 2)];
        let tasks = [task("x", "gone", Running, 1), task("n", "d2", Running, 2)];
        let plan = reconcile(&s, &deps, &tasks, 0);
        assert_eq!(plan.stop, ["x"]);
        assert_eq!(plan.deployment_updates, [DeploymentUpdate::Inactive { deployment: "d1".into() }]);
    }
}
