//! Task placement: feasibility (status, constraints, resources) → rank (strategies in
//! order) → assign one task at a time, charging each placement to its instance so later
//! tasks of the same call see it.

use std::cmp::Ordering;

use super::query::{self, Expr};
use super::rng;
use super::{
    BinpackField, InstanceView, NO_CONTAINER_INSTANCES_MESSAGE, Placement, PlacementConstraint,
    PlacementFailure, PlacementStrategy, REASON_CPU, REASON_DISTINCT_INSTANCE, REASON_MEMBER_OF,
    REASON_MEMORY, REASON_NO_CONTAINER_INSTANCES, REASON_PORTS, TaskDemand,
};

/// Places `count` tasks of `demand` on `instances`. Deterministic for a given input and
/// `seed` (the order of `instances` does not matter: ties break by instance id).
pub fn place(
    demand: &TaskDemand,
    count: usize,
    instances: &[InstanceView],
    strategies: &[PlacementStrategy],
    constraints: &[PlacementConstraint],
    seed: u64,
) -> Placement {
    let mut out = Placement::default();
    let mut fleet: Vec<InstanceView> = instances.iter().filter(|i| i.active).cloned().collect();
    fleet.sort_by(|a, b| a.id.cmp(&b.id));
    if fleet.is_empty() {
        out.no_container_instances = true;
        out.failures = vec![
            PlacementFailure {
                reason: REASON_NO_CONTAINER_INSTANCES.to_string(),
                instance_id: None,
                detail: Some(NO_CONTAINER_INSTANCES_MESSAGE.to_string()),
            };
            count
        ];
        return out;
    }
    // An expression that does not parse matches no instance: the API validates memberOf
    // up front, so this only guards against stored garbage.
    let member_of: Vec<Option<Expr>> = constraints
        .iter()
        .filter_map(|c| match c {
            PlacementConstraint::MemberOf(e) => Some(query::parse(e).ok()),
            PlacementConstraint::DistinctInstance => None,
        })
        .collect();
    let distinct = constraints.contains(&PlacementConstraint::DistinctInstance);

    for step in 0..count {
        match place_one(demand, &fleet, strategies, &member_of, distinct, seed, step as u64) {
            Ok(idx) => {
                let inst = &mut fleet[idx];
                inst.cpu_used = inst.cpu_used.saturating_add(demand.cpu);
                inst.memory_used = inst.memory_used.saturating_add(demand.memory);
                inst.ports_used.extend(demand.static_host_ports.iter().copied());
                inst.task_groups.push(demand.group.clone());
                out.assignments.push(inst.id.clone());
            }
            Err(failure) => {
                // A failure changes nothing, so every remaining task fails the same way.
                out.failures.extend(std::iter::repeat_n(failure, count - step));
                break;
            }
        }
    }
    out
}

fn place_one(
    demand: &TaskDemand,
    fleet: &[InstanceView],
    strategies: &[PlacementStrategy],
    member_of: &[Option<Expr>],
    distinct: bool,
    seed: u64,
    step: u64,
) -> Result<usize, PlacementFailure> {
    // memberOf is evaluated per task: `task:group` and `runningTasksCount` change as we place.
    let members: Vec<usize> = (0..fleet.len())
        .filter(|&i| member_of.iter().all(|e| e.as_ref().is_some_and(|e| e.eval(&fleet[i]))))
        .collect();
    if members.is_empty() {
        return Err(PlacementFailure {
            reason: REASON_MEMBER_OF.to_string(),
            instance_id: None,
            detail: Some("MemberOf placement constraint unsatisfied.".to_string()),
        });
    }
    let candidates: Vec<usize> = members
        .into_iter()
        .filter(|&i| !distinct || !fleet[i].task_groups.iter().any(|g| g == &demand.group))
        .collect();
    if candidates.is_empty() {
        return Err(PlacementFailure {
            reason: REASON_DISTINCT_INSTANCE.to_string(),
            instance_id: None,
            detail: Some("DistinctInstance placement constraint unsatisfied.".to_string()),
        });
    }
    let mut feasible = Vec::new();
    // The closest miss: the instance that passed the most resource checks (CPU, memory,
    // ports, in AWS's order), lowest id on ties — `candidates` is already in id order.
    let mut closest: Option<(usize, usize, &'static str)> = None;
    for i in candidates {
        match fits(demand, &fleet[i]) {
            Ok(()) => feasible.push(i),
            Err((passed, reason)) => {
                if closest.is_none_or(|(p, _, _)| passed > p) {
                    closest = Some((passed, i, reason));
                }
            }
        }
    }
    let Some(best) =
        feasible.into_iter().min_by(|&a, &b| compare(demand, fleet, strategies, seed, step, a, b))
    else {
        let (_, i, reason) = closest.unwrap_or((0, 0, REASON_CPU));
        return Err(PlacementFailure {
            reason: reason.to_string(),
            instance_id: Some(fleet[i].id.clone()),
            detail: None,
        });
    };
    Ok(best)
}

/// `Err((checks passed, reason of the first that failed))`.
fn fits(demand: &TaskDemand, inst: &InstanceView) -> Result<(), (usize, &'static str)> {
    if inst.cpu_registered.saturating_sub(inst.cpu_used) < demand.cpu {
        return Err((0, REASON_CPU));
    }
    if inst.memory_registered.saturating_sub(inst.memory_used) < demand.memory {
        return Err((1, REASON_MEMORY));
    }
    if demand.static_host_ports.iter().any(|p| inst.ports_used.contains(p)) {
        return Err((2, REASON_PORTS));
    }
    Ok(())
}

/// Lexicographic over the strategies in order; instance id breaks the final tie.
fn compare(
    demand: &TaskDemand,
    fleet: &[InstanceView],
    strategies: &[PlacementStrategy],
    seed: u64,
    step: u64,
    a: usize,
    b: usize,
) -> Ordering {
    for s in strategies {
        let ka = key(demand, fleet, s, seed, step, a);
        let kb = key(demand, fleet, s, seed, step, b);
        match ka.cmp(&kb) {
            Ordering::Equal => continue,
            o => return o,
        }
    }
    fleet[a].id.cmp(&fleet[b].id)
}

/// Smaller is better.
fn key(
    demand: &TaskDemand,
    fleet: &[InstanceView],
    s: &PlacementStrategy,
    seed: u64,
    step: u64,
    i: usize,
) -> u64 {
    let inst = &fleet[i];
    match s {
        PlacementStrategy::Binpack(BinpackField::Cpu) => {
            u64::from(inst.cpu_registered.saturating_sub(inst.cpu_used))
        }
        PlacementStrategy::Binpack(BinpackField::Memory) => {
            inst.memory_registered.saturating_sub(inst.memory_used)
        }
        PlacementStrategy::Random => rng::rank(seed, step, &inst.id),
        PlacementStrategy::Spread(field) => {
            let in_group =
                |x: &InstanceView| x.task_groups.iter().filter(|g| *g == &demand.group).count() as u64;
            match field_value(field, inst) {
                FieldValue::Instance => in_group(inst),
                FieldValue::Attribute(name, value) => {
                    fleet.iter().filter(|x| x.attributes.get(name) == value).map(in_group).sum()
                }
                FieldValue::Unknown => 0,
            }
        }
    }
}

enum FieldValue<'a> {
    Instance,
    /// Instances without the attribute form one bucket of their own.
    Attribute(&'a str, Option<&'a String>),
    Unknown,
}

fn field_value<'a>(field: &'a str, inst: &'a InstanceView) -> FieldValue<'a> {
    if field.eq_ignore_ascii_case("instanceId") || field.eq_ignore_ascii_case("host") {
        FieldValue::Instance
    } else if let Some(name) = field.strip_prefix("attribute:") {
        FieldValue::Attribute(name, inst.attributes.get(name))
    } else {
        FieldValue::Unknown
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::PlacementStrategy::*;

    fn inst(id: &str, cpu: u32, mem: u64, az: &str) -> InstanceView {
        InstanceView {
            id: id.into(),
            cpu_registered: cpu,
            memory_registered: mem,
            active: true,
            attributes: [("ecs.availability-zone".to_string(), az.to_string())].into(),
            ..Default::default()
        }
    }

    fn demand(cpu: u32, mem: u64) -> TaskDemand {
        TaskDemand { cpu, memory: mem, static_host_ports: vec![], group: "service:web".into() }
    }

    #[test]
    fn binpack_memory_fills_the_fullest_instance_first() {
        let mut a = inst("a", 4096, 4096, "az1");
        a.memory_used = 3072;
        let b = inst("b", 4096, 4096, "az1");
        let p = place(&demand(128, 512), 3, &[b, a], &[Binpack(BinpackField::Memory)], &[], 1);
        assert_eq!(p.assignments, ["a", "a", "b"]);
        assert!(p.failures.is_empty());
    }

    #[test]
    fn binpack_cpu() {
        let mut a = inst("a", 2048, 8192, "az1");
        a.cpu_used = 1024;
        let b = inst("b", 1024, 8192, "az1");
        let p = place(&demand(512, 128), 1, &[a, b], &[Binpack(BinpackField::Cpu)], &[], 1);
        assert_eq!(p.assignments, ["a"], "equal remaining cpu: id breaks the tie");
    }

    #[test]
    fn spread_over_zones_then_instances() {
        let fleet =
            [inst("a", 4096, 4096, "az1"), inst("b", 4096, 4096, "az1"), inst("c", 4096, 4096, "az2")];
        let strategies = [Spread("attribute:ecs.availability-zone".into()), Spread("instanceId".into())];
        let p = place(&demand(100, 100), 4, &fleet, &strategies, &[], 1);
        assert_eq!(p.assignments, ["a", "c", "b", "c"]);
    }

    #[test]
    fn random_is_seeded_and_spreads() {
        let fleet: Vec<_> = (0..8).map(|i| inst(&format!("i-{i}"), 4096, 4096, "az1")).collect();
        let one = place(&demand(1, 1), 16, &fleet, &[Random], &[], 42);
        let two = place(&demand(1, 1), 16, &fleet, &[Random], &[], 42);
        assert_eq!(one, two);
        let mut reversed = fleet.clone();
        reversed.reverse();
        assert_eq!(
            one,
            place(&demand(1, 1), 16, &reversed, &[Random], &[], 42),
            "input order must not matter"
        );
        let distinct: std::collections::BTreeSet<_> = one.assignments.iter().collect();
        assert!(distinct.len() > 2, "random placement used only {distinct:?}");
        assert_ne!(one, place(&demand(1, 1), 16, &fleet, &[Random], &[], 43));
    }

    #[test]
    fn failure_reasons_name_the_first_missing_resource_of_the_closest_instance() {
        let fleet = [inst("a", 256, 8192, "az1"), inst("b", 4096, 256, "az1")];
        let p = place(&demand(1024, 1024), 2, &fleet, &[], &[], 1);
        assert!(p.assignments.is_empty());
        assert_eq!(p.failures.len(), 2);
        assert_eq!(p.failures[0].reason, REASON_MEMORY);
        assert_eq!(p.failures[0].instance_id.as_deref(), Some("b"));

        let p = place(&demand(1024, 128), 1, &fleet[..1], &[], &[], 1);
        assert_eq!(p.failures[0].reason, REASON_CPU);
    }

    #[test]
    fn static_ports_count_placements_of_the_same_call() {
        let mut d = demand(10, 10);
        d.static_host_ports = vec![8080];
        let mut a = inst("a", 4096, 4096, "az1");
        a.ports_used.insert(8080);
        let b = inst("b", 4096, 4096, "az1");
        let c = inst("c", 4096, 4096, "az1");
        let p = place(&d, 3, &[a, b, c], &[], &[], 1);
        assert_eq!(p.assignments, ["b", "c"]);
        assert_eq!(p.failures.len(), 1);
        assert_eq!(p.failures[0].reason, REASON_PORTS);
    }

    #[test]
    fn distinct_instance_and_member_of() {
        let mut a = inst("a", 4096, 4096, "az1");
        a.task_groups.push("service:web".into());
        let fleet = [a, inst("b", 4096, 4096, "az1"), inst("c", 4096, 4096, "az2")];
        let p = place(&demand(1, 1), 3, &fleet, &[], &[PlacementConstraint::DistinctInstance], 1);
        assert_eq!(p.assignments, ["b", "c"]);
        assert_eq!(p.failures[0].reason, REASON_DISTINCT_INSTANCE);

        let member = PlacementConstraint::MemberOf("attribute:ecs.availability-zone == az2".into());
        let p = place(&demand(1, 1), 2, &fleet, &[], &[member], 1);
        assert_eq!(p.assignments, ["c", "c"]);

        let none = PlacementConstraint::MemberOf("attribute:ecs.availability-zone == az9".into());
        let p = place(&demand(1, 1), 2, &fleet, &[], &[none], 1);
        assert_eq!(p.failures.len(), 2);
        assert_eq!(p.failures[0].reason, REASON_MEMBER_OF);

        let bad = PlacementConstraint::MemberOf("attribute:x ==".into());
        assert_eq!(place(&demand(1, 1), 1, &fleet, &[], &[bad], 1).failures[0].reason, REASON_MEMBER_OF);
    }

    #[test]
    fn no_active_instances() {
        let mut a = inst("a", 4096, 4096, "az1");
        a.active = false;
        let p = place(&demand(1, 1), 2, &[a], &[], &[], 1);
        assert!(p.no_container_instances);
        assert_eq!(p.failures.len(), 2);
        assert_eq!(p.failures[0].reason, REASON_NO_CONTAINER_INSTANCES);
        let p = place(&demand(1, 1), 0, &[], &[], &[], 1);
        assert!(p.no_container_instances && p.failures.is_empty());
    }
}
