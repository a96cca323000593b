//! Engine tests over a real (temporary) SQLite store and a recording invoker.
use super::*;
use chrono::TimeZone;
use parking_lot::Mutex;

#[derive(Default)]
struct Recorder {
    delivered: Mutex<Vec<(String, String)>>,
    /// Deliveries to these ARNs fail.
    failing: Mutex<Vec<String>>,
    ecs: Mutex<Vec<EcsLaunch>>,
}

impl TargetInvoker for Recorder {
    fn deliver<'a>(
        &'a self,
        _a: &'a str,
        _r: &'a str,
        arn: &'a str,
        input: String,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            self.delivered.lock().push((arn.to_string(), input));
            if self.failing.lock().iter().any(|f| f == arn) { Err("target failed".into()) } else { Ok(()) }
        })
    }

    fn run_ecs_task<'a>(
        &'a self,
        _a: &'a str,
        _r: &'a str,
        launch: EcsLaunch,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            self.ecs.lock().push(launch);
            Ok(())
        })
    }
}

fn engine(dir: &std::path::Path, rec: Arc<Recorder>) -> Arc<EventBridgeEngine> {
    let store = Arc::new(nimbus_store::SqliteStore::open(&dir.join("db")).unwrap());
    EventBridgeEngine::open(store, rec, Duration::from_millis(10)).unwrap()
}

const A: &str = "123456789012";
const R: &str = "us-east-1";

fn t(h: u32, m: u32, s: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 5, h, m, s).unwrap()
}

fn target(id: &str, arn: &str) -> Target {
    Target {
        id: id.into(),
        arn: arn.into(),
        role_arn: None,
        input: None,
        input_path: None,
        input_transformer: None,
        retry_policy: None,
        dead_letter_arn: None,
        ecs_parameters: None,
    }
}

async fn settle() {
    tokio::time::sleep(Duration::from_millis(100)).await;
}

#[tokio::test]
async fn put_events_routes_matching_events_to_targets_with_their_input() {
    let dir = tempfile::tempdir().unwrap();
    let rec = Arc::new(Recorder::default());
    let eb = engine(dir.path(), rec.clone());
    let rule = PutRule {
        name: "orders".into(),
        event_pattern: Some(r#"{"source":["shop"],"detail":{"total":[{"numeric":[">",100]}]}}"#.into()),
        ..Default::default()
    };
    assert_eq!(eb.put_rule(A, R, rule, t(0, 0, 0)).unwrap(), format!("arn:aws:events:{R}:{A}:rule/orders"));
    let mut with_path = target("p", "arn:aws:lambda:us-east-1:123456789012:function:p");
    with_path.input_path = Some("$.detail".into());
    let mut constant = target("c", "arn:aws:lambda:us-east-1:123456789012:function:c");
    constant.input = Some(r#"{"fixed":true}"#.into());
    assert!(eb.put_targets(A, R, None, "orders", vec![with_path, constant]).unwrap().is_empty());
    let entry = |total: u32| EventEntry {
        source: Some("shop".into()),
        detail_type: Some("order".into()),
        detail: Some(format!(r#"{{"total":{total}}}"#)),
        ..Default::default()
    };
    let results = eb.put_events(A, R, vec![entry(150), entry(50)], t(0, 0, 1));
    assert!(matches!(results[0], EntryResult::Accepted { .. }));
    settle().await;
    let mut got = rec.delivered.lock().clone();
    got.sort();
    assert_eq!(
        got,
        vec![
            ("arn:aws:lambda:us-east-1:123456789012:function:c".to_string(), r#"{"fixed":true}"#.to_string()),
            ("arn:aws:lambda:us-east-1:123456789012:function:p".to_string(), r#"{"total":150}"#.to_string()),
        ],
        "only the matching event, shaped per target"
    );
    // Entry validation.
    let bad = eb.put_events(
        A,
        R,
        vec![
            EventEntry { detail_type: Some("x".into()), detail: Some("{}".into()), ..Default::default() },
            EventEntry {
                source: Some("s".into()),
                detail_type: Some("x".into()),
                detail: Some("[1]".into()),
                ..Default::default()
            },
            EventEntry {
                source: Some("s".into()),
                detail_type: Some("x".into()),
                detail: Some("{}".into()),
                event_bus_name: Some("nope".into()),
                ..Default::default()
            },
        ],
        t(0, 0, 2),
    );
    assert!(matches!(&bad[0], EntryResult::Failed { code: "InvalidArgument", .. }));
    assert!(matches!(&bad[1], EntryResult::Failed { code: "MalformedDetail", .. }));
    assert!(matches!(&bad[2], EntryResult::Failed { code: "ResourceNotFoundException", .. }));
    // A rule with targets cannot be deleted.
    assert!(matches!(eb.delete_rule(A, R, None, "orders"), Err(Error::Validation(_))));
    eb.remove_targets(A, R, None, "orders", &["p".into(), "c".into()]).unwrap();
    eb.delete_rule(A, R, None, "orders").unwrap();
    assert!(matches!(eb.describe_rule(A, R, None, "orders"), Err(Error::NotFound(_))));
}

#[tokio::test]
async fn schedules_fire_each_tick_once_even_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let rec = Arc::new(Recorder::default());
    let eb = engine(dir.path(), rec.clone());
    let grace = chrono::TimeDelta::seconds(1);
    eb.put_rule(
        A,
        R,
        PutRule {
            name: "tick".into(),
            schedule_expression: Some("cron(*/5 * * * ? *)".into()),
            ..Default::default()
        },
        t(10, 1, 0),
    )
    .unwrap();
    eb.put_targets(A, R, None, "tick", vec![target("t", "arn:aws:lambda:us-east-1:123456789012:function:f")])
        .unwrap();
    assert_eq!(eb.fire_due(t(10, 4, 59), grace), Some(t(10, 5, 0)), "nothing due yet");
    assert_eq!(eb.fire_due(t(10, 5, 0), grace), Some(t(10, 10, 0)), "10:05 fired");
    assert_eq!(eb.fire_due(t(10, 5, 0), grace), Some(t(10, 10, 0)), "and not twice");
    settle().await;
    assert_eq!(rec.delivered.lock().len(), 1);
    let (_, input) = rec.delivered.lock()[0].clone();
    let event: Value = serde_json::from_str(&input).unwrap();
    assert_eq!(event["detail-type"], "Scheduled Event");
    assert_eq!(event["source"], "aws.events");
    assert_eq!(event["time"], "2026-01-05T10:05:00Z");
    assert_eq!(event["resources"], json!([format!("arn:aws:events:{R}:{A}:rule/tick")]));
    drop(eb);
    // Restarted: the 10:05 tick is not fired again; 10:10 fires once.
    let eb = engine(dir.path(), rec.clone());
    assert_eq!(eb.fire_due(t(10, 5, 0), grace), Some(t(10, 10, 0)));
    assert_eq!(eb.fire_due(t(10, 10, 0), grace), Some(t(10, 15, 0)));
    // A tick missed by more than the grace (server down) is skipped, not fired late.
    assert_eq!(eb.fire_due(t(10, 21, 0), grace), Some(t(10, 25, 0)));
    settle().await;
    assert_eq!(rec.delivered.lock().len(), 2);
    // Disabled rules do not fire.
    eb.set_rule_state(A, R, None, "tick", RuleState::Disabled, t(10, 22, 0)).unwrap();
    assert_eq!(eb.fire_due(t(10, 25, 0), grace), None);
}

#[tokio::test]
async fn failed_deliveries_are_retried_then_dead_lettered() {
    let dir = tempfile::tempdir().unwrap();
    let rec = Arc::new(Recorder::default());
    let arn = "arn:aws:lambda:us-east-1:123456789012:function:broken";
    rec.failing.lock().push(arn.into());
    let eb = engine(dir.path(), rec.clone());
    eb.put_rule(
        A,
        R,
        PutRule { name: "r".into(), event_pattern: Some(r#"{"source":["s"]}"#.into()), ..Default::default() },
        t(0, 0, 0),
    )
    .unwrap();
    let mut tg = target("t", arn);
    tg.retry_policy =
        Some(RetryPolicy { maximum_retry_attempts: Some(2), maximum_event_age_in_seconds: None });
    tg.dead_letter_arn = Some("arn:aws:sqs:us-east-1:123456789012:dlq".into());
    eb.put_targets(A, R, None, "r", vec![tg]).unwrap();
    eb.put_events(
        A,
        R,
        vec![EventEntry {
            source: Some("s".into()),
            detail_type: Some("d".into()),
            detail: Some("{}".into()),
            ..Default::default()
        }],
        t(0, 0, 1),
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got = rec.delivered.lock().clone();
    let to_target = got.iter().filter(|(a, _)| a == arn).count();
    assert_eq!(to_target, 3, "first attempt + 2 retries: {got:?}");
    let dlq: Vec<_> = got.iter().filter(|(a, _)| a.ends_with(":dlq")).collect();
    assert_eq!(dlq.len(), 1);
    assert_eq!(serde_json::from_str::<Value>(&dlq[0].1).unwrap()["source"], "s");
}

#[tokio::test]
async fn custom_buses_and_validation() {
    let dir = tempfile::tempdir().unwrap();
    let eb = engine(dir.path(), Arc::new(Recorder::default()));
    let bus = eb.create_event_bus(A, R, "orders", None, t(0, 0, 0)).unwrap();
    assert_eq!(bus.arn, format!("arn:aws:events:{R}:{A}:event-bus/orders"));
    assert!(matches!(eb.create_event_bus(A, R, "orders", None, t(0, 0, 0)), Err(Error::AlreadyExists(_))));
    let arn = eb
        .put_rule(
            A,
            R,
            PutRule {
                name: "r".into(),
                event_bus_name: Some(bus.arn.clone()),
                event_pattern: Some(r#"{"source":["x"]}"#.into()),
                ..Default::default()
            },
            t(0, 0, 0),
        )
        .unwrap();
    assert_eq!(arn, format!("arn:aws:events:{R}:{A}:rule/orders/r"));
    let sched_on_custom = PutRule {
        name: "s".into(),
        event_bus_name: Some("orders".into()),
        schedule_expression: Some("rate(5 minutes)".into()),
        ..Default::default()
    };
    assert!(matches!(eb.put_rule(A, R, sched_on_custom, t(0, 0, 0)), Err(Error::Validation(_))));
    let bad_pattern =
        PutRule { name: "b".into(), event_pattern: Some(r#"{"a": 1}"#.into()), ..Default::default() };
    assert!(matches!(eb.put_rule(A, R, bad_pattern, t(0, 0, 0)), Err(Error::InvalidPattern(_))));
    let neither = PutRule { name: "n".into(), ..Default::default() };
    assert!(matches!(eb.put_rule(A, R, neither, t(0, 0, 0)), Err(Error::Validation(_))));
    assert_eq!(eb.list_rules(A, R, Some("orders"), None).unwrap().len(), 1);
    assert!(eb.list_rules(A, R, None, None).unwrap().is_empty());
    eb.delete_event_bus(A, R, "orders").unwrap();
    assert!(matches!(eb.list_rules(A, R, Some("orders"), None), Err(Error::NotFound(_))));
}

#[tokio::test]
async fn ecs_targets_run_tasks_with_only_their_explicit_input() {
    let dir = tempfile::tempdir().unwrap();
    let rec = Arc::new(Recorder::default());
    let eb = engine(dir.path(), rec.clone());
    let rule = PutRule {
        name: "jobs".into(),
        event_pattern: Some(r#"{"source":["batch"]}"#.into()),
        ..Default::default()
    };
    eb.put_rule(A, R, rule, t(0, 0, 0)).unwrap();
    let cluster = format!("arn:aws:ecs:{R}:{A}:cluster/work");
    // A cluster target needs EcsParameters.
    let bare = target("bare", &cluster);
    assert!(
        matches!(eb.put_targets(A, R, None, "jobs", vec![bare]), Err(Error::Validation(m)) if m.contains("EcsParameters"))
    );
    let params = EcsParameters {
        task_definition_arn: format!("arn:aws:ecs:{R}:{A}:task-definition/job:1"),
        task_count: Some(2),
        launch_type: Some("FARGATE".into()),
        ..Default::default()
    };
    let mut plain = target("plain", &cluster);
    plain.ecs_parameters = Some(params.clone());
    let mut with_input = target("overridden", &cluster);
    with_input.ecs_parameters = Some(params.clone());
    with_input.input_transformer = Some(InputTransformer {
        input_paths_map: [("who".to_string(), "$.detail.who".to_string())].into_iter().collect(),
        input_template: r#"{"containerOverrides":[{"name":"app","command":["echo",<who>]}]}"#.into(),
    });
    assert!(eb.put_targets(A, R, None, "jobs", vec![plain, with_input]).unwrap().is_empty());
    // Stored and listed back as given.
    let listed = eb.list_targets(A, R, None, "jobs").unwrap();
    assert_eq!(listed[0].ecs_parameters.as_ref(), Some(&params));
    let entry = EventEntry {
        source: Some("batch".into()),
        detail_type: Some("go".into()),
        detail: Some(r#"{"who":"me"}"#.into()),
        ..Default::default()
    };
    eb.put_events(A, R, vec![entry], t(0, 0, 1));
    settle().await;
    let mut launches = rec.ecs.lock().clone();
    launches.sort_by_key(|l| l.overrides.is_some());
    assert_eq!(launches.len(), 2, "{launches:?}");
    assert!(rec.delivered.lock().is_empty(), "ECS targets do not get deliver()");
    assert_eq!(
        (launches[0].cluster_arn.as_str(), launches[0].rule_name.as_str()),
        (cluster.as_str(), "jobs")
    );
    assert_eq!(launches[0].parameters, params);
    assert_eq!(launches[0].overrides, None, "the event itself is not handed to the task");
    assert_eq!(
        launches[1].overrides.as_deref(),
        Some(r#"{"containerOverrides":[{"name":"app","command":["echo","me"]}]}"#)
    );
}
