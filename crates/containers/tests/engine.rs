//! The ECS engine over the mock sandbox and a fake image provider: control-plane rules,
//! the task lifecycle, dependsOn ordering, placement, services and reloads.
use nimbus_containers::*;
use nimbus_sandbox::{ExitStatus, ImageRoot, MockInstanceHandle, MockSandbox};
use nimbus_store::{LogStore, SqliteStore, Store};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

struct FakeImages;

impl ImageProvider for FakeImages {
    fn prepare(&self, reference: &str, dir: &Path) -> Result<PreparedImage, ImageFailure> {
        if reference.starts_with("missing") {
            return Err(ImageFailure::NotFound(reference.into()));
        }
        Ok(PreparedImage {
            digest: format!("sha256:{:064}", 7),
            root: ImageRoot::Dir(dir.to_path_buf()),
            defaults: ImageDefaults {
                entrypoint: vec!["/entry".into()],
                cmd: vec!["default-cmd".into()],
                env: vec!["FROM_IMAGE=1".into(), "OVERRIDDEN=image".into()],
                working_dir: Some("/srv".into()),
                user: None,
            },
        })
    }
}

struct Env {
    engine: Arc<EcsEngine>,
    sandbox: Arc<MockSandbox>,
    store: Arc<dyn Store>,
    logs: Arc<LogStore>,
    dir: tempfile::TempDir,
    scope: Scope,
}

fn node() -> NodeCapacity {
    NodeCapacity { cpu: 4096, memory_mib: 8192, architecture: "x86_64".into() }
}

fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("state.db");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&db).unwrap());
    let logs = Arc::new(LogStore::open(&db).unwrap());
    let sandbox = Arc::new(MockSandbox::default());
    let engine = EcsEngine::open(
        Config { data_dir: dir.path().to_path_buf(), node: node() },
        store.clone(),
        sandbox.clone(),
        Arc::new(FakeImages),
        logs.clone(),
    )
    .unwrap();
    Env { engine, sandbox, store, logs, dir, scope: Scope::new("000000000000", "us-east-1") }
}

fn container(name: &str, image: &str) -> ContainerDefinition {
    ContainerDefinition {
        name: name.into(),
        image: image.into(),
        memory: Some(64),
        essential: true,
        ..Default::default()
    }
}

fn register(e: &Env, family: &str, containers: Vec<ContainerDefinition>) -> TaskDefinition {
    e.engine
        .register_task_definition(
            &e.scope,
            RegisterTaskDefinition { family: family.into(), containers, ..Default::default() },
        )
        .unwrap()
}

fn run(e: &Env, cluster: &str, td: &str) -> Task {
    let (mut tasks, failures) = e
        .engine
        .run_task(
            &e.scope,
            RunTask {
                cluster: Some(cluster.into()),
                task_definition: td.into(),
                count: 1,
                ..Default::default()
            },
        )
        .unwrap();
    assert!(failures.is_empty(), "{failures:?}");
    tasks.remove(0)
}

async fn wait_until<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    for _ in 0..500 {
        if let Some(v) = f() {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

fn describe(e: &Env, cluster: &str, arn: &str) -> Task {
    let (mut t, f) = e.engine.describe_tasks(&e.scope, Some(cluster), &[arn.to_string()]).unwrap();
    assert!(f.is_empty());
    t.remove(0)
}

async fn wait_status(e: &Env, cluster: &str, arn: &str, status: &str) -> Task {
    wait_until(status, || Some(describe(e, cluster, arn)).filter(|t| t.last_status == status)).await
}

async fn started(e: &Env, n: usize) -> Vec<MockInstanceHandle> {
    wait_until("sandbox starts", || Some(e.sandbox.started()).filter(|s| s.len() >= n)).await
}

#[tokio::test]
async fn clusters_default_and_not_found() {
    let e = env();
    let err =
        e.engine.run_task(&e.scope, RunTask { task_definition: "x".into(), count: 1, ..Default::default() });
    assert!(matches!(err, Err(Error::ClusterNotFound(_))));
    let c = e.engine.create_cluster(&e.scope, None, vec![], vec![]).unwrap();
    assert_eq!(c.cluster.name, "default");
    assert_eq!(c.registered_container_instances, 1);
    let again = e.engine.create_cluster(&e.scope, Some("default"), vec![], vec![]).unwrap();
    assert_eq!(again.cluster.arn, c.cluster.arn);
    let (found, missing) = e.engine.describe_clusters(&e.scope, &["default".into(), "nope".into()]);
    assert_eq!(found.len(), 1);
    assert_eq!(missing[0].reason, "MISSING");
    let other = Scope::new("111111111111", "us-east-1");
    assert!(e.engine.list_clusters(&other).is_empty());
    e.engine.delete_cluster(&e.scope, "default").unwrap();
    assert!(matches!(e.engine.delete_cluster(&e.scope, "default"), Err(Error::ClusterNotFound(_))));
}

#[tokio::test]
async fn task_definition_rules() {
    let e = env();
    let td = register(&e, "fam", vec![container("a", "img")]);
    assert_eq!(td.revision, 1);
    assert_eq!(td.compatibilities, vec!["EC2".to_string(), "EXTERNAL".to_string()]);
    let no_mem = ContainerDefinition { memory: None, ..container("a", "img") };
    let err = e.engine.register_task_definition(
        &e.scope,
        RegisterTaskDefinition { family: "fam".into(), containers: vec![no_mem], ..Default::default() },
    );
    assert!(matches!(err, Err(Error::Client(m)) if m.contains("memoryReservation")));
    let fargate = |cpu: &str, memory: &str, mode: &str| {
        e.engine.register_task_definition(
            &e.scope,
            RegisterTaskDefinition {
                family: "fg".into(),
                containers: vec![container("a", "img")],
                network_mode: Some(mode.into()),
                requires_compatibilities: vec!["FARGATE".into()],
                cpu: Some(cpu.into()),
                memory: Some(memory.into()),
                ..Default::default()
            },
        )
    };
    let ok = fargate("1 vCPU", "2 GB", "awsvpc").unwrap();
    assert_eq!((ok.cpu.as_deref(), ok.memory.as_deref()), (Some("1024"), Some("2048")));
    assert_eq!(ok.compatibilities, vec!["EC2".to_string(), "FARGATE".to_string()]);
    assert!(
        matches!(fargate("256", "4096", "awsvpc"), Err(Error::Client(m)) if m.starts_with("No Fargate configuration"))
    );
    assert!(matches!(fargate("256", "512", "bridge"), Err(Error::Client(m)) if m.contains("awsvpc")));
    let dep = ContainerDefinition {
        depends_on: vec![ContainerDependency { container_name: "ghost".into(), condition: "START".into() }],
        ..container("a", "img")
    };
    assert!(
        e.engine
            .register_task_definition(
                &e.scope,
                RegisterTaskDefinition { family: "d".into(), containers: vec![dep], ..Default::default() }
            )
            .is_err()
    );
    e.engine.deregister_task_definition(&e.scope, "fam:1").unwrap();
    // An INACTIVE revision runs no new tasks.
    e.engine.create_cluster(&e.scope, Some("c"), vec![], vec![]).unwrap();
    let err = e.engine.run_task(
        &e.scope,
        RunTask {
            cluster: Some("c".into()),
            task_definition: "fam:1".into(),
            count: 1,
            ..Default::default()
        },
    );
    assert!(matches!(err, Err(Error::InvalidParameter(m)) if m == "TaskDefinition is inactive"));
    assert!(e.engine.describe_task_definition(&e.scope, "fam").is_err());
    assert_eq!(e.engine.describe_task_definition(&e.scope, "fam:1").unwrap().revision, 1);
    assert_eq!(
        e.engine.list_task_definition_families(&e.scope, None, Some("INACTIVE")),
        vec!["fam".to_string()]
    );
}

#[tokio::test]
async fn task_lifecycle_spec_and_exit_code() {
    let e = env();
    e.engine.create_cluster(&e.scope, Some("c"), vec![], vec![]).unwrap();
    let mut app = container("app", "img");
    app.command = vec!["hello".into(), "world".into()];
    app.environment = vec![("OVERRIDDEN".into(), "def".into())];
    app.cpu = 512;
    app.user = Some("1000:1000".into());
    register(&e, "life", vec![app]);
    let t = run(&e, "c", "life");
    assert_eq!(t.last_status, "PROVISIONING");
    assert_eq!(t.group, "family:life");
    let [h] = started(&e, 1).await.try_into().ok().unwrap();
    // The definition's command replaces the image's CMD; its ENTRYPOINT stays.
    assert_eq!(h.program, "/entry");
    assert_eq!(h.args, vec!["hello".to_string(), "world".to_string()]);
    assert!(h.env.contains(&("FROM_IMAGE".into(), "1".into())));
    assert!(h.env.contains(&("OVERRIDDEN".into(), "def".into())));
    assert_eq!(h.cwd, Path::new("/srv"));
    assert_eq!(h.user, Some((1000, 1000)));
    assert_eq!(h.limits.memory_mb, Some(64));
    assert_eq!(h.limits.cpu_millis, Some(500));
    assert!(h.fs.image_root.is_some());
    let running = wait_status(&e, "c", &t.arn, "RUNNING").await;
    assert!(running.started_ms.is_some() && running.pull_stopped_ms.is_some());
    assert_eq!(running.containers[0].image_digest.as_deref().map(|d| d.len()), Some(71));
    h.exit(ExitStatus::Code(3));
    let stopped = wait_status(&e, "c", &t.arn, "STOPPED").await;
    assert_eq!(stopped.containers[0].exit_code, Some(3));
    assert_eq!(stopped.stop_code.as_deref(), Some("EssentialContainerExited"));
    assert_eq!(stopped.stopped_reason.as_deref(), Some("Essential container in task exited"));
    assert_eq!(stopped.desired_status, "STOPPED");
}

#[tokio::test]
async fn stop_task_sends_sigterm() {
    let e = env();
    e.engine.create_cluster(&e.scope, Some("c"), vec![], vec![]).unwrap();
    register(&e, "stop", vec![container("app", "img")]);
    let t = run(&e, "c", "stop");
    wait_status(&e, "c", &t.arn, "RUNNING").await;
    let r = e.engine.stop_task(&e.scope, Some("c"), &t.id, Some("enough")).unwrap();
    assert_eq!(r.desired_status, "STOPPED");
    let stopped = wait_status(&e, "c", &t.arn, "STOPPED").await;
    assert_eq!(stopped.stopped_reason.as_deref(), Some("enough"));
    assert_eq!(stopped.stop_code.as_deref(), Some("UserInitiated"));
    assert_eq!(stopped.containers[0].exit_code, Some(143));
    assert!(format!("{:?}", e.sandbox.started()[0].calls()).contains("Stop(15)"));
}

#[tokio::test]
async fn depends_on_success_orders_containers() {
    let e = env();
    e.engine.create_cluster(&e.scope, Some("c"), vec![], vec![]).unwrap();
    let init = ContainerDefinition { essential: false, ..container("init", "img") };
    let app = ContainerDefinition {
        depends_on: vec![ContainerDependency { container_name: "init".into(), condition: "SUCCESS".into() }],
        ..container("app", "img")
    };
    register(&e, "deps", vec![init, app]);
    let t = run(&e, "c", "deps");
    let first = started(&e, 1).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(e.sandbox.started().len(), 1, "app must wait for init");
    assert_eq!(describe(&e, "c", &t.arn).last_status, "PENDING");
    first[0].exit(ExitStatus::Code(0));
    let both = started(&e, 2).await;
    let running = wait_status(&e, "c", &t.arn, "RUNNING").await;
    assert_eq!(running.containers[0].exit_code, Some(0));
    both[1].exit(ExitStatus::Code(0));
    wait_status(&e, "c", &t.arn, "STOPPED").await;

    // SUCCESS not met: the dependent essential container never starts; the task stops.
    let t = run(&e, "c", "deps");
    let s = started(&e, 3).await;
    s[2].exit(ExitStatus::Code(1));
    let stopped = wait_status(&e, "c", &t.arn, "STOPPED").await;
    assert_eq!(e.sandbox.started().len(), 3);
    let app = stopped.containers.iter().find(|c| c.name == "app").unwrap();
    assert!(app.reason.as_deref().unwrap_or("").contains("SUCCESS"), "{app:?}");
}

#[tokio::test]
async fn missing_image_fails_to_start() {
    let e = env();
    e.engine.create_cluster(&e.scope, Some("c"), vec![], vec![]).unwrap();
    register(&e, "m", vec![container("app", "missing:1")]);
    let t = run(&e, "c", "m");
    let stopped = wait_status(&e, "c", &t.arn, "STOPPED").await;
    assert_eq!(stopped.stop_code.as_deref(), Some("TaskFailedToStart"));
    assert!(stopped.stopped_reason.unwrap().starts_with("CannotPullContainerError: "));
    assert!(e.sandbox.started().is_empty());
}

#[tokio::test]
async fn placement_on_registered_instances() {
    let e = env();
    e.engine.create_cluster(&e.scope, Some("c"), vec![], vec![]).unwrap();
    let small = e
        .engine
        .register_container_instance(
            &e.scope,
            Some("c"),
            Some(1024),
            Some(256),
            vec![("size".into(), Some("s".into()))],
            vec![],
        )
        .unwrap();
    register(&e, "p", vec![ContainerDefinition { memory: Some(200), ..container("app", "img") }]);
    let on_small = |e: &Env| {
        e.engine.run_task(
            &e.scope,
            RunTask {
                cluster: Some("c".into()),
                task_definition: "p".into(),
                count: 1,
                placement_constraints: vec![PlacementConstraintDef {
                    kind: "memberOf".into(),
                    expression: Some("attribute:size == s".into()),
                }],
                ..Default::default()
            },
        )
    };
    let (tasks, failures) = on_small(&e).unwrap();
    assert!(failures.is_empty());
    assert_eq!(tasks[0].container_instance_arn.as_deref(), Some(small.instance.arn.as_str()));
    let (tasks, failures) = on_small(&e).unwrap();
    assert!(tasks.is_empty());
    assert_eq!(failures[0].reason, "RESOURCE:MEMORY");
    assert_eq!(failures[0].arn.as_deref(), Some(small.instance.arn.as_str()));
    let (views, _) = e
        .engine
        .describe_container_instances(&e.scope, Some("c"), std::slice::from_ref(&small.instance.arn))
        .unwrap();
    assert_eq!(views[0].remaining_memory, 56);
    // FARGATE tasks take no instance capacity and need awsvpc + a network configuration.
    let err = e.engine.run_task(
        &e.scope,
        RunTask {
            cluster: Some("c".into()),
            task_definition: "p".into(),
            count: 1,
            launch_type: Some("FARGATE".into()),
            ..Default::default()
        },
    );
    assert!(matches!(err, Err(Error::InvalidParameter(m)) if m.contains("launch_type FARGATE")));
}

#[tokio::test]
async fn service_keeps_desired_count_and_reloads() {
    let e = env();
    e.engine.start_scheduler();
    e.engine.create_cluster(&e.scope, Some("c"), vec![], vec![]).unwrap();
    register(&e, "svc", vec![container("app", "img")]);
    e.engine
        .create_service(
            &e.scope,
            CreateService {
                cluster: Some("c".into()),
                service_name: "web".into(),
                task_definition: Some("svc".into()),
                desired_count: Some(2),
                ..Default::default()
            },
        )
        .unwrap();
    let running = |e: &Env| {
        let (s, _) = e.engine.describe_services(&e.scope, Some("c"), &["web".into()]).unwrap();
        s[0].running_count
    };
    wait_until("2 running", || (running(&e) == 2).then_some(())).await;
    let first = e.sandbox.started();
    first[0].exit(ExitStatus::Signal(9));
    wait_until("replacement", || (e.sandbox.started().len() == 3 && running(&e) == 2).then_some(())).await;
    let (s, _) = e.engine.describe_services(&e.scope, Some("c"), &["web".into()]).unwrap();
    let msgs: Vec<&str> = s[0].events.iter().map(|ev| ev.message.as_str()).collect();
    assert!(msgs.iter().any(|m| m.starts_with("(service web) has started")), "{msgs:?}");

    // A new engine over the same store: the service is back; the old tasks are STOPPED.
    let engine2 = EcsEngine::open(
        Config { data_dir: e.dir.path().to_path_buf(), node: node() },
        e.store.clone(),
        Arc::new(MockSandbox::default()),
        Arc::new(FakeImages),
        e.logs.clone(),
    )
    .unwrap();
    let (s, _) = engine2.describe_services(&e.scope, Some("c"), &["web".into()]).unwrap();
    assert_eq!(s[0].desired_count, 2);
    let live =
        engine2.list_tasks(&e.scope, &ListTasks { cluster: Some("c".into()), ..Default::default() }).unwrap();
    assert!(live.is_empty(), "{live:?}");
}

#[tokio::test]
async fn volumes_become_binds_and_are_validated() {
    let e = env();
    e.engine.create_cluster(&e.scope, Some("c"), vec![], vec![]).unwrap();
    let mp = |v: &str, p: &str, ro: bool| MountPoint {
        source_volume: v.into(),
        container_path: p.into(),
        read_only: ro,
    };
    let mut a = container("a", "img");
    a.mount_points = vec![mp("scratch", "/data", false)];
    let mut b = container("b", "img");
    b.volumes_from = vec![VolumeFrom { source_container: "a".into(), read_only: true }];
    b.mount_points = vec![mp("scratch", "/data/nested", false)];
    let volumes = vec![Volume { name: "scratch".into(), host_source_path: None }];
    let req = |containers, volumes, compat: Vec<String>| RegisterTaskDefinition {
        family: "vol".into(),
        containers,
        volumes,
        requires_compatibilities: compat.clone(),
        network_mode: if compat.is_empty() { None } else { Some("awsvpc".into()) },
        cpu: if compat.is_empty() { None } else { Some("256".into()) },
        memory: if compat.is_empty() { None } else { Some("512".into()) },
        ..Default::default()
    };
    // Unknown volume, unknown volumesFrom container, host path on Fargate: ClientException.
    let mut bad = container("x", "img");
    bad.mount_points = vec![mp("nope", "/d", false)];
    let err =
        e.engine.register_task_definition(&e.scope, req(vec![bad], volumes.clone(), vec![])).unwrap_err();
    assert!(err.to_string().contains("Unknown volume"), "{err}");
    let mut bad = container("x", "img");
    bad.volumes_from = vec![VolumeFrom { source_container: "ghost".into(), read_only: false }];
    assert!(e.engine.register_task_definition(&e.scope, req(vec![bad], vec![], vec![])).is_err());
    let host = vec![Volume { name: "h".into(), host_source_path: Some("/srv/h".into()) }];
    let err = e
        .engine
        .register_task_definition(&e.scope, req(vec![container("x", "img")], host, vec!["FARGATE".into()]))
        .unwrap_err();
    assert!(err.to_string().contains("sourcePath"), "{err}");

    let td = e.engine.register_task_definition(&e.scope, req(vec![a, b], volumes, vec![])).unwrap();
    assert_eq!(td.volumes.len(), 1);
    run(&e, "c", "vol");
    let hs = started(&e, 2).await;
    let by_inside = |h: &MockInstanceHandle| -> Vec<(String, bool)> {
        h.fs.binds.iter().map(|b| (b.inside.display().to_string(), b.read_only)).collect()
    };
    let (ha, hb) = if hs[0].fs.binds.len() == 1 { (&hs[0], &hs[1]) } else { (&hs[1], &hs[0]) };
    assert_eq!(by_inside(ha), vec![("/data".to_string(), false)]);
    // Parent before child; the inherited mount is read-only as volumesFrom says.
    assert_eq!(by_inside(hb), vec![("/data".to_string(), true), ("/data/nested".to_string(), false)]);
    // One scratch directory for the task, under the task's directory, shared by both.
    assert_eq!(ha.fs.binds[0].host, hb.fs.binds[0].host);
    assert!(ha.fs.binds[0].host.is_dir() && ha.fs.binds[0].host.starts_with(e.dir.path()));
}
