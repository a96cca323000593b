//! Scheduler harness in the style of Nomad's scheduler tests: a simulated world of mock
//! container instances and tasks applies each plan of the pure scheduler step by step
//! (started tasks go PENDING → RUNNING one tick later; chosen tasks fail) and the
//! invariants are checked after every step.

use std::collections::{BTreeMap, BTreeSet};

use nimbus_containers::scheduler::*;
use proptest::prelude::*;

#[derive(Debug, Clone)]
struct WTask {
    id: String,
    deployment: DeploymentId,
    instance: String,
    state: ObservedState,
    healthy: Option<bool>,
    started_at: Option<u64>,
    demand: TaskDemand,
}

#[derive(Debug, Clone)]
struct World {
    /// Registered resources, attributes and status; usage is derived from `tasks`.
    fleet: Vec<InstanceView>,
    tasks: Vec<WTask>,
    deployments: Vec<DeploymentView>,
    spec: ServiceSpec,
    demands: BTreeMap<DeploymentId, TaskDemand>,
    /// Percentage (0..=100) of the tasks of a deployment that fail instead of reaching RUNNING.
    fail_pct: BTreeMap<DeploymentId, u64>,
    strategies: Vec<PlacementStrategy>,
    constraints: Vec<PlacementConstraint>,
    seed: u64,
    now: u64,
    next_task: u64,
    /// Placement failures seen (the world keeps going, like the ECS service scheduler).
    unplaced: usize,
    steps: usize,
}

fn hash(s: &str, seed: u64) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ seed;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01B3);
    }
    h ^ (h >> 29)
}

fn instance(id: &str, cpu: u32, mem: u64, az: &str) -> InstanceView {
    InstanceView {
        id: id.into(),
        cpu_registered: cpu,
        memory_registered: mem,
        active: true,
        attributes: [("ecs.availability-zone".to_string(), az.to_string())].into(),
        ..Default::default()
    }
}

fn demand(cpu: u32, memory: u64, ports: &[u16]) -> TaskDemand {
    TaskDemand { cpu, memory, static_host_ports: ports.to_vec(), group: "service:web".into() }
}

impl World {
    fn new(fleet: Vec<InstanceView>, desired: u32, min: u32, max: u32, d: TaskDemand) -> World {
        let mut w = World {
            fleet,
            tasks: vec![],
            deployments: vec![],
            spec: ServiceSpec {
                desired_count: desired,
                minimum_healthy_percent: min,
                maximum_percent: max,
                primary: String::new(),
                circuit_breaker: Some(CircuitBreaker { enable: true, rollback: true }),
                failure_threshold: failure_threshold(desired),
            },
            demands: BTreeMap::new(),
            fail_pct: BTreeMap::new(),
            strategies: vec![
                PlacementStrategy::Spread("attribute:ecs.availability-zone".into()),
                PlacementStrategy::Spread("instanceId".into()),
            ],
            constraints: vec![],
            seed: 7,
            now: 1_000,
            next_task: 0,
            unplaced: 0,
            steps: 0,
        };
        w.deploy("d1", d);
        w
    }

    /// UpdateService with a new task definition: a new primary deployment.
    fn deploy(&mut self, id: &str, d: TaskDemand) {
        for dep in &mut self.deployments {
            if dep.state == DeploymentState::Primary {
                dep.state = DeploymentState::Active;
            }
        }
        self.deployments.push(DeploymentView {
            id: id.into(),
            task_definition: format!("web:{}", self.deployments.len() + 1),
            failed_tasks: 0,
            state: DeploymentState::Primary,
            rollout: RolloutState::InProgress,
            created_at_ms: self.now,
        });
        self.spec.primary = id.into();
        self.demands.insert(id.into(), d);
    }

    fn dep(&self, id: &str) -> &DeploymentView {
        self.deployments.iter().find(|d| d.id == id).expect("deployment exists")
    }

    fn holds_resources(t: &WTask) -> bool {
        t.state != ObservedState::Stopped
    }

    fn views(&self) -> Vec<InstanceView> {
        let mut views = self.fleet.clone();
        for v in &mut views {
            for t in self.tasks.iter().filter(|t| Self::holds_resources(t) && t.instance == v.id) {
                v.cpu_used += t.demand.cpu;
                v.memory_used += t.demand.memory;
                v.ports_used.extend(t.demand.static_host_ports.iter().copied());
                v.task_groups.push(t.demand.group.clone());
            }
        }
        views
    }

    fn observed(&self) -> Vec<ObservedTask> {
        self.tasks
            .iter()
            .filter(|t| t.state != ObservedState::Stopped)
            .map(|t| ObservedTask {
                id: t.id.clone(),
                deployment: t.deployment.clone(),
                state: t.state,
                healthy: t.healthy,
                started_at_ms: t.started_at,
            })
            .collect()
    }

    fn min_healthy(&self) -> usize {
        (self.spec.desired_count as usize * self.spec.minimum_healthy_percent as usize).div_ceil(100)
    }

    fn max_total(&self) -> usize {
        (self.spec.desired_count as usize * self.spec.maximum_percent as usize / 100)
            .max(self.spec.desired_count as usize)
    }

    /// One scheduler pass: reconcile → check the plan → apply it → check the world → tick.
    fn step(&mut self) -> ServicePlan {
        self.steps += 1;
        let obs = self.observed();
        let plan = reconcile(&self.spec, &self.deployments, &obs, self.now);
        self.check_plan(&obs, &plan);
        self.apply(&plan);
        self.check_world();
        self.tick();
        self.check_world();
        plan
    }

    fn check_plan(&self, obs: &[ObservedTask], plan: &ServicePlan) {
        let healthy = |t: &ObservedTask| t.state == ObservedState::Running && t.healthy != Some(false);
        let live = |t: &ObservedTask| matches!(t.state, ObservedState::Pending | ObservedState::Running);
        let stops: BTreeSet<&String> = plan.stop.iter().collect();
        assert_eq!(stops.len(), plan.stop.len(), "duplicate stop in {plan:?}");
        for id in &plan.stop {
            let t = obs.iter().find(|t| &t.id == id).unwrap_or_else(|| panic!("stop of unknown task {id}"));
            assert!(live(t), "stop of a task that is not live: {t:?}");
        }
        for (dep, n) in &plan.start {
            assert_eq!(dep, &self.spec.primary, "only the primary deployment starts tasks");
            assert!(*n > 0, "empty start in {plan:?}");
        }
        let healthy_before = obs.iter().filter(|t| healthy(t)).count();
        let healthy_after = obs.iter().filter(|t| healthy(t) && !stops.contains(&t.id)).count();
        assert!(
            healthy_after >= self.min_healthy().min(healthy_before),
            "minimumHealthyPercent violated: {healthy_before} → {healthy_after} (min {}) by {plan:?}",
            self.min_healthy()
        );
        let live_after = obs.iter().filter(|t| live(t) && !stops.contains(&t.id)).count();
        let started: u32 = plan.start.iter().map(|(_, n)| n).sum();
        if started > 0 {
            assert!(
                live_after + started as usize <= self.max_total(),
                "maximumPercent violated: {live_after} + {started} > {} by {plan:?}",
                self.max_total()
            );
        }
        let primary = self.dep(&self.spec.primary.clone()).clone();
        if primary.rollout == RolloutState::Failed {
            assert_eq!(started, 0, "a failed (frozen) deployment starts nothing");
        }
    }

    fn apply(&mut self, plan: &ServicePlan) {
        for id in &plan.stop {
            let t = self.tasks.iter_mut().find(|t| &t.id == id).expect("task exists");
            t.state = ObservedState::Stopping;
        }
        for (dep, n) in &plan.start {
            let d = self.demands[dep].clone();
            let p = place(
                &d,
                *n as usize,
                &self.views(),
                &self.strategies,
                &self.constraints,
                self.seed ^ self.now,
            );
            assert_eq!(p.assignments.len() + p.failures.len(), *n as usize);
            self.unplaced += p.failures.len();
            for inst in p.assignments {
                self.next_task += 1;
                self.tasks.push(WTask {
                    id: format!("t{:04}", self.next_task),
                    deployment: dep.clone(),
                    instance: inst,
                    state: ObservedState::Pending,
                    healthy: None,
                    started_at: None,
                    demand: d.clone(),
                });
            }
        }
        for u in &plan.deployment_updates {
            match u {
                DeploymentUpdate::RolloutCompleted { deployment } => {
                    self.dep_mut(deployment).rollout = RolloutState::Completed
                }
                DeploymentUpdate::RolloutFailed { deployment, .. } => {
                    self.dep_mut(deployment).rollout = RolloutState::Failed
                }
                DeploymentUpdate::RollBack { from, to } => {
                    self.dep_mut(from).state = DeploymentState::Active;
                    // As AWS does, the rollback is a fresh deployment of the old task definition.
                    let to_dep = self.dep_mut(to);
                    to_dep.state = DeploymentState::Primary;
                    to_dep.rollout = RolloutState::InProgress;
                    to_dep.failed_tasks = 0;
                    self.spec.primary = to.clone();
                }
                DeploymentUpdate::Inactive { deployment } => {
                    assert_ne!(deployment, &self.spec.primary);
                    self.dep_mut(deployment).state = DeploymentState::Inactive;
                }
            }
        }
    }

    fn dep_mut(&mut self, id: &str) -> &mut DeploymentView {
        self.deployments.iter_mut().find(|d| d.id == id).expect("deployment exists")
    }

    /// One tick: stopping tasks stop; pending tasks run (healthy) or fail.
    fn tick(&mut self) {
        self.now += 1_000;
        let mut failed: Vec<DeploymentId> = vec![];
        for t in &mut self.tasks {
            match t.state {
                ObservedState::Stopping => t.state = ObservedState::Stopped,
                ObservedState::Pending => {
                    let pct = self.fail_pct.get(&t.deployment).copied().unwrap_or(0);
                    if hash(&t.id, self.seed) % 100 < pct {
                        t.state = ObservedState::Stopped;
                        failed.push(t.deployment.clone());
                    } else {
                        t.state = ObservedState::Running;
                        t.healthy = Some(true);
                        t.started_at = Some(self.now);
                    }
                }
                _ => {}
            }
        }
        for d in failed {
            self.dep_mut(&d).failed_tasks += 1;
        }
    }

    fn check_world(&self) {
        for v in self.views() {
            assert!(v.cpu_used <= v.cpu_registered, "cpu overcommitted on {v:?}");
            assert!(v.memory_used <= v.memory_registered, "memory overcommitted on {v:?}");
            let ports: Vec<u16> = self
                .tasks
                .iter()
                .filter(|t| Self::holds_resources(t) && t.instance == v.id)
                .flat_map(|t| t.demand.static_host_ports.iter().copied())
                .collect();
            let unique: BTreeSet<u16> = ports.iter().copied().collect();
            assert_eq!(unique.len(), ports.len(), "host port used twice on {}", v.id);
            if self.constraints.contains(&PlacementConstraint::DistinctInstance) {
                let groups: BTreeSet<&String> = v.task_groups.iter().collect();
                assert_eq!(groups.len(), v.task_groups.len(), "distinctInstance violated on {v:?}");
            }
        }
    }

    /// Steps until a pass plans nothing and nothing is in flight; returns the steps taken.
    fn run_until_stable(&mut self, max_steps: usize) -> Option<usize> {
        for i in 1..=max_steps {
            let plan = self.step();
            let in_flight = self
                .tasks
                .iter()
                .any(|t| matches!(t.state, ObservedState::Pending | ObservedState::Stopping));
            if plan.is_empty() && !in_flight {
                // Fixed point: reconciling the same world again changes nothing.
                let again = reconcile(&self.spec, &self.deployments, &self.observed(), self.now);
                assert!(again.is_empty(), "not a fixed point: {again:?}");
                return Some(i);
            }
        }
        None
    }

    fn running(&self, dep: &str) -> usize {
        self.tasks
            .iter()
            .filter(|t| t.deployment == dep && t.state == ObservedState::Running && t.healthy != Some(false))
            .count()
    }

    fn live_other_than(&self, dep: &str) -> usize {
        self.tasks.iter().filter(|t| t.deployment != dep && t.state != ObservedState::Stopped).count()
    }

    fn assert_converged_on(&self, dep: &str) {
        assert_eq!(self.spec.primary, dep);
        assert_eq!(self.running(dep), self.spec.desired_count as usize, "{:#?}", self.tasks);
        assert_eq!(self.live_other_than(dep), 0);
        assert_eq!(self.dep(dep).rollout, RolloutState::Completed);
        for d in self.deployments.iter().filter(|d| d.id != dep) {
            assert_eq!(d.state, DeploymentState::Inactive, "{d:?}");
        }
    }

    fn sicken(&mut self, task_id: &str) {
        let t = self.tasks.iter_mut().find(|t| t.id == task_id).expect("task exists");
        t.healthy = Some(false);
    }

    /// Some live task picked by `roll`, if any.
    fn pick_live(&self, roll: u64) -> Option<String> {
        let live: Vec<&WTask> = self
            .tasks
            .iter()
            .filter(|t| matches!(t.state, ObservedState::Pending | ObservedState::Running))
            .collect();
        (!live.is_empty()).then(|| live[(roll % live.len() as u64) as usize].id.clone())
    }

    fn kill(&mut self, task_id: &str) {
        let t = self.tasks.iter_mut().find(|t| t.id == task_id).expect("task exists");
        t.state = ObservedState::Stopped;
    }
}

fn fleet(n: usize) -> Vec<InstanceView> {
    (0..n)
        .map(|i| {
            instance(&format!("i-{i:02}"), 4096, 8192, if i % 2 == 0 { "us-east-1a" } else { "us-east-1b" })
        })
        .collect()
}

#[test]
fn fresh_service_converges_and_spreads_over_zones() {
    let mut w = World::new(fleet(4), 4, 100, 200, demand(512, 1024, &[]));
    let steps = w.run_until_stable(10).expect("converges");
    assert!(steps <= 4, "took {steps} steps");
    w.assert_converged_on("d1");
    let per_instance: BTreeSet<&String> = w.tasks.iter().map(|t| &t.instance).collect();
    assert_eq!(per_instance.len(), 4, "spread(instanceId) uses every instance");
}

fn rolling_update(desired: u32, min: u32, max: u32, instances: usize) -> World {
    let mut w = World::new(fleet(instances), desired, min, max, demand(256, 512, &[]));
    w.run_until_stable(10).expect("v1 converges");
    w.assert_converged_on("d1");
    w.deploy("d2", demand(256, 512, &[]));
    let mut saw_both = false;
    for _ in 0..40 {
        w.step();
        saw_both |= w.running("d1") > 0
            && w.tasks.iter().any(|t| t.deployment == "d2" && t.state != ObservedState::Stopped);
        if w.dep("d2").rollout == RolloutState::Completed {
            break;
        }
    }
    w.run_until_stable(10).expect("v2 settles");
    w.assert_converged_on("d2");
    assert!(saw_both || desired == 0 || min == 0, "a rolling update overlaps old and new tasks");
    w
}

#[test]
fn rolling_update_min_100_max_200() {
    rolling_update(4, 100, 200, 4);
}

#[test]
fn rolling_update_min_50_max_100() {
    rolling_update(4, 50, 100, 4);
}

#[test]
fn rolling_update_min_0_max_100() {
    rolling_update(3, 0, 100, 2);
}

#[test]
fn rolling_update_odd_counts() {
    rolling_update(5, 60, 140, 3);
    rolling_update(1, 0, 200, 1);
    rolling_update(1, 100, 200, 1);
}

#[test]
fn killed_task_is_replaced_on_the_next_pass() {
    let mut w = World::new(fleet(2), 3, 100, 200, demand(256, 256, &[]));
    w.run_until_stable(10).expect("converges");
    let victim =
        w.tasks.iter().find(|t| t.state == ObservedState::Running).map(|t| t.id.clone()).expect("a task");
    w.kill(&victim);
    let plan = w.step();
    assert_eq!(plan.start, [("d1".to_string(), 1)]);
    w.run_until_stable(5).expect("settles");
    assert_eq!(w.running("d1"), 3);
}

#[test]
fn unhealthy_tasks_are_replaced_within_bounds() {
    let mut w = World::new(fleet(3), 4, 50, 200, demand(256, 256, &[]));
    w.run_until_stable(10).expect("converges");
    let sick: Vec<String> = w.tasks.iter().take(3).map(|t| t.id.clone()).collect();
    for id in &sick {
        w.sicken(id);
    }
    let plan = w.step();
    assert_eq!(plan.stop, sick);
    assert_eq!(plan.start, [("d1".to_string(), 3)]);
    w.run_until_stable(5).expect("settles");
    assert_eq!(w.running("d1"), 4);
}

#[test]
fn scale_out_and_in() {
    let mut w = World::new(fleet(3), 2, 100, 200, demand(256, 256, &[]));
    w.run_until_stable(10).expect("converges");
    w.spec.desired_count = 6;
    w.run_until_stable(10).expect("scales out");
    assert_eq!(w.running("d1"), 6);
    w.spec.desired_count = 1;
    let newest = w
        .tasks
        .iter()
        .filter(|t| t.state == ObservedState::Running)
        .map(|t| t.id.clone())
        .max()
        .expect("tasks");
    let plan = w.step();
    assert_eq!(plan.stop.len(), 5);
    assert!(plan.stop.contains(&newest), "scale-in stops the newest tasks first");
    w.run_until_stable(5).expect("scales in");
    assert_eq!(w.running("d1"), 1);
}

#[test]
fn circuit_breaker_rolls_back_when_every_new_task_fails() {
    let mut w = World::new(fleet(3), 3, 100, 200, demand(256, 256, &[]));
    w.run_until_stable(10).expect("v1 converges");
    w.deploy("d2", demand(256, 256, &[]));
    w.fail_pct.insert("d2".into(), 100);
    w.run_until_stable(40).expect("rollback settles");
    assert_eq!(w.dep("d2").rollout, RolloutState::Failed);
    assert!(w.dep("d2").failed_tasks >= failure_threshold(3));
    w.assert_converged_on("d1");
}

#[test]
fn circuit_breaker_without_rollback_stops_launching() {
    let mut w = World::new(fleet(3), 3, 100, 200, demand(256, 256, &[]));
    w.spec.circuit_breaker = Some(CircuitBreaker { enable: true, rollback: false });
    w.run_until_stable(10).expect("v1 converges");
    w.deploy("d2", demand(256, 256, &[]));
    w.fail_pct.insert("d2".into(), 100);
    w.run_until_stable(40).expect("settles");
    assert_eq!(w.dep("d2").rollout, RolloutState::Failed);
    assert_eq!(w.running("d1"), 3, "old tasks keep serving");
    let failed = w.dep("d2").failed_tasks;
    w.run_until_stable(5).expect("stays put");
    assert_eq!(w.dep("d2").failed_tasks, failed);
}

#[test]
fn static_ports_and_distinct_instance_cap_the_service() {
    let mut w = World::new(fleet(3), 5, 100, 200, demand(256, 256, &[8080]));
    w.constraints = vec![PlacementConstraint::DistinctInstance];
    for _ in 0..10 {
        w.step();
    }
    assert_eq!(w.running("d1"), 3, "one task per instance");
    assert!(w.unplaced > 0);
}

#[test]
fn insufficient_memory_reports_aws_reason() {
    let fleet = vec![instance("i-1", 4096, 1024, "a"), instance("i-2", 4096, 1536, "b")];
    let p = place(
        &demand(256, 1024, &[]),
        4,
        &fleet,
        &[PlacementStrategy::Binpack(BinpackField::Memory)],
        &[],
        1,
    );
    assert_eq!(p.assignments, ["i-1", "i-2"]);
    assert_eq!(p.failures.len(), 2);
    assert!(p.failures.iter().all(|f| f.reason == REASON_MEMORY));
}

#[test]
fn member_of_restricts_the_service() {
    let mut w = World::new(fleet(4), 4, 100, 200, demand(256, 256, &[]));
    w.constraints =
        vec![PlacementConstraint::MemberOf("attribute:ecs.availability-zone == us-east-1b".into())];
    w.run_until_stable(10).expect("converges");
    for t in &w.tasks {
        let inst = w.fleet.iter().find(|i| i.id == t.instance).expect("instance");
        assert_eq!(inst.attributes["ecs.availability-zone"], "us-east-1b");
    }
}

// ---------------------------------------------------------------- property tests

fn arb_fleet() -> impl Strategy<Value = Vec<InstanceView>> {
    prop::collection::vec((256u32..=4096, 512u64..=8192, 0usize..3, any::<bool>()), 1..9).prop_map(|v| {
        v.into_iter()
            .enumerate()
            .map(|(i, (cpu, mem, az, tagged))| {
                let mut inst = instance(&format!("i-{i:02}"), cpu, mem, ["a", "b", "c"][az]);
                if tagged {
                    inst.attributes.insert("tier".into(), "gold".into());
                }
                inst
            })
            .collect()
    })
}

fn arb_demand() -> impl Strategy<Value = TaskDemand> {
    (0u32..=1024, 64u64..=2048, prop::bool::weighted(0.2))
        .prop_map(|(cpu, mem, port)| demand(cpu, mem, if port { &[80] } else { &[] }))
}

fn arb_strategies() -> impl Strategy<Value = Vec<PlacementStrategy>> {
    prop::collection::vec(
        prop_oneof![
            Just(PlacementStrategy::Binpack(BinpackField::Cpu)),
            Just(PlacementStrategy::Binpack(BinpackField::Memory)),
            Just(PlacementStrategy::Spread("instanceId".into())),
            Just(PlacementStrategy::Spread("attribute:ecs.availability-zone".into())),
            Just(PlacementStrategy::Random),
        ],
        0..3,
    )
}

fn arb_constraints() -> impl Strategy<Value = Vec<PlacementConstraint>> {
    prop::collection::vec(
        prop_oneof![
            Just(PlacementConstraint::DistinctInstance),
            Just(PlacementConstraint::MemberOf("attribute:tier == gold".into())),
            Just(PlacementConstraint::MemberOf("attribute:ecs.availability-zone in [a, b]".into())),
            Just(PlacementConstraint::MemberOf(
                "attribute:tier !exists or attribute:ecs.availability-zone != c".into()
            )),
        ],
        0..2,
    )
}

/// How many tasks of `d` the fleet can hold at once under the constraints.
fn slots(fleet: &[InstanceView], d: &TaskDemand, constraints: &[PlacementConstraint]) -> usize {
    fleet
        .iter()
        .filter(|i| {
            constraints.iter().all(|c| match c {
                PlacementConstraint::MemberOf(e) => matches_expression(e, i).expect("valid"),
                PlacementConstraint::DistinctInstance => true,
            })
        })
        .map(|i| {
            let by_cpu = i.cpu_registered.checked_div(d.cpu).map_or(usize::MAX, |n| n as usize);
            let by_mem = (i.memory_registered / d.memory) as usize;
            let one = !d.static_host_ports.is_empty()
                || constraints.contains(&PlacementConstraint::DistinctInstance);
            by_cpu.min(by_mem).min(if one { 1 } else { usize::MAX })
        })
        .sum()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// Placement never overcommits, honours the constraints, is deterministic, and fails a
    /// task only when no instance could take one more.
    #[test]
    fn placement_is_sound_and_complete(
        fleet in arb_fleet(), d in arb_demand(), count in 0usize..12,
        strategies in arb_strategies(), constraints in arb_constraints(), seed in any::<u64>(),
    ) {
        let p = place(&d, count, &fleet, &strategies, &constraints, seed);
        prop_assert_eq!(&p, &place(&d, count, &fleet, &strategies, &constraints, seed));
        prop_assert_eq!(p.assignments.len() + p.failures.len(), count);
        let mut used: BTreeMap<&str, (u32, u64, usize)> = BTreeMap::new();
        for a in &p.assignments {
            let e = used.entry(a.as_str()).or_default();
            e.0 += d.cpu;
            e.1 += d.memory;
            e.2 += 1;
        }
        for i in &fleet {
            let (cpu, mem, n) = used.get(i.id.as_str()).copied().unwrap_or_default();
            prop_assert!(cpu <= i.cpu_registered && mem <= i.memory_registered);
            if !d.static_host_ports.is_empty() || constraints.contains(&PlacementConstraint::DistinctInstance) {
                prop_assert!(n <= 1);
            }
            if n > 0 {
                for c in &constraints {
                    if let PlacementConstraint::MemberOf(e) = c {
                        prop_assert!(matches_expression(e, i).expect("valid"));
                    }
                }
            }
        }
        prop_assert_eq!(p.assignments.len(), count.min(slots(&fleet, &d, &constraints)));
        if let Some(f) = p.failures.first() {
            prop_assert!([REASON_CPU, REASON_MEMORY, REASON_PORTS, REASON_MEMBER_OF, REASON_DISTINCT_INSTANCE].contains(&f.reason.as_str()));
        }
    }

    /// A service converges to its desired count, rolls to a new revision within the
    /// minimum/maximum bounds and reaches a fixed point; with failing tasks the
    /// invariants still hold at every step.
    #[test]
    fn services_converge_and_roll_within_bounds(
        fleet in arb_fleet(), d in arb_demand(), desired in 0u32..7,
        min in prop::sample::select(vec![0u32, 25, 50, 75, 100]),
        max in prop::sample::select(vec![100u32, 125, 150, 200]),
        strategies in arb_strategies(), constraints in arb_constraints(),
        fail_pct in prop::sample::select(vec![0u64, 0, 30, 100]), seed in any::<u64>(),
    ) {
        let mut w = World::new(fleet.clone(), desired, min, max, d.clone());
        w.strategies = strategies;
        w.constraints = constraints.clone();
        w.seed = seed;
        let max_total = w.max_total();
        // Old tasks still being stopped hold resources while new ones are placed.
        let roomy = slots(&fleet, &d, &constraints) >= 2 * max_total;
        // Rounding can leave no slack at all (as in ECS): such a deployment cannot move.
        let can_move = desired == 0 || w.min_healthy() < desired as usize || max_total > desired as usize;
        let first = w.run_until_stable(30);
        if roomy {
            prop_assert!(first.is_some(), "v1 did not converge");
            w.assert_converged_on("d1");
        }
        w.deploy("d2", d.clone());
        w.fail_pct.insert("d2".into(), fail_pct);
        let second = w.run_until_stable(80);
        if roomy && can_move && first.is_some() {
            prop_assert!(second.is_some(), "v2 did not settle");
            if fail_pct == 0 {
                w.assert_converged_on("d2");
            } else if fail_pct == 100 && desired > 0 {
                prop_assert_eq!(w.dep("d2").rollout, RolloutState::Failed);
                w.assert_converged_on("d1");
            }
        }
    }

    /// Tasks die or turn unhealthy at random during a rollout: the bounds hold at every
    /// step, and once the chaos stops the service settles on the new revision.
    #[test]
    fn chaos_during_rollout_keeps_invariants(
        desired in 1u32..7,
        min in prop::sample::select(vec![0u32, 50, 100]),
        max in prop::sample::select(vec![150u32, 200]),
        rolls in prop::collection::vec((0u8..4, any::<u64>()), 1..25),
    ) {
        let mut w = World::new(fleet(6), desired, min, max, demand(256, 512, &[]));
        // Rounding with no slack (1 task, min 50 % → 1, max 150 % → 1) cannot move, as in ECS.
        prop_assume!(w.min_healthy() < desired as usize || w.max_total() > desired as usize);
        prop_assert!(w.run_until_stable(10).is_some());
        w.deploy("d2", demand(256, 512, &[]));
        for (what, roll) in rolls {
            if let Some(id) = w.pick_live(roll) {
                match what {
                    0 => w.kill(&id),
                    1 => w.sicken(&id),
                    _ => {}
                }
            }
            w.step();
        }
        prop_assert!(w.run_until_stable(40).is_some(), "did not settle");
        // Kills of new tasks are not start failures, but sick ones may trip the breaker.
        if w.spec.primary == "d2" {
            w.assert_converged_on("d2");
        } else {
            w.assert_converged_on("d1");
        }
    }
}
