//! CloudWatch Logs (JSON 1.1, `Logs_20140328`): the log groups Lambda writes to.
use crate::auth::RequestContext;
use crate::error::ApiError;
use crate::json_rpc::{BoxFuture, JsonService, parse, unknown_operation};
use axum::body::Bytes;
use nimbus_store::LogStore;
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;

pub struct LogsService {
    pub logs: Arc<LogStore>,
}

fn group_missing() -> ApiError {
    ApiError::new(400, "ResourceNotFoundException", "The specified log group does not exist.")
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateLogGroup {
    log_group_name: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct DescribeLogGroups {
    log_group_name_prefix: Option<String>,
    limit: Option<usize>,
    next_token: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DescribeLogStreams {
    log_group_name: Option<String>,
    log_group_identifier: Option<String>,
    log_stream_name_prefix: Option<String>,
    order_by: Option<String>,
    descending: Option<bool>,
    limit: Option<usize>,
    next_token: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GetLogEvents {
    log_group_name: Option<String>,
    log_group_identifier: Option<String>,
    log_stream_name: String,
    start_time: Option<i64>,
    end_time: Option<i64>,
    next_token: Option<String>,
    limit: Option<usize>,
    start_from_head: Option<bool>,
}

/// Offsets into sorted listings, as opaque tokens.
fn offset(token: Option<&str>) -> Result<usize, ApiError> {
    match token {
        None => Ok(0),
        Some(t) => t.parse().map_err(|_| {
            ApiError::new(400, "InvalidParameterException", "The specified nextToken is invalid.")
        }),
    }
}

/// `arn:aws:logs:…:log-group:NAME` or a plain name.
fn group_name(name: Option<String>, identifier: Option<String>) -> Result<String, ApiError> {
    let raw = name.or(identifier).ok_or_else(|| {
        ApiError::new(
            400,
            "InvalidParameterException",
            "Either logGroupName or logGroupIdentifier is required",
        )
    })?;
    Ok(match raw.split_once(":log-group:") {
        Some((_, n)) => n.trim_end_matches(":*").to_string(),
        None => raw,
    })
}

impl LogsService {
    fn scope(ctx: &RequestContext) -> String {
        format!("{}:{}", ctx.scope.account, ctx.scope.region)
    }

    fn describe_log_groups(&self, ctx: &RequestContext, input: DescribeLogGroups) -> Result<Value, ApiError> {
        let groups =
            self.logs.groups(&Self::scope(ctx), input.log_group_name_prefix.as_deref().unwrap_or(""))?;
        let start = offset(input.next_token.as_deref())?;
        let limit = input.limit.unwrap_or(50).clamp(1, 50);
        let page: Vec<Value> = groups
            .iter()
            .skip(start)
            .take(limit)
            .map(|g| {
                let mut v = json!({
                    "logGroupName": g.name,
                    "creationTime": g.created_ms,
                    "metricFilterCount": 0,
                    "arn": format!("{}:*", ctx.scope.log_group_arn(&g.name)),
                    "logGroupArn": ctx.scope.log_group_arn(&g.name),
                    "storedBytes": g.stored_bytes,
                    "logGroupClass": "STANDARD",
                });
                if let Some(r) = g.retention_days {
                    v["retentionInDays"] = json!(r);
                }
                v
            })
            .collect();
        let mut out = json!({"logGroups": page});
        if start + limit < groups.len() {
            out["nextToken"] = json!((start + limit).to_string());
        }
        Ok(out)
    }

    fn describe_log_streams(
        &self,
        ctx: &RequestContext,
        input: DescribeLogStreams,
    ) -> Result<Value, ApiError> {
        let group = group_name(input.log_group_name, input.log_group_identifier)?;
        let mut streams = self.logs.streams(&Self::scope(ctx), &group)?.ok_or_else(group_missing)?;
        if let Some(p) = &input.log_stream_name_prefix {
            streams.retain(|s| s.name.starts_with(p.as_str()));
        }
        if input.order_by.as_deref() == Some("LastEventTime") {
            streams.sort_by_key(|s| s.last_event_ms.unwrap_or(s.created_ms));
        }
        if input.descending.unwrap_or(false) {
            streams.reverse();
        }
        let start = offset(input.next_token.as_deref())?;
        let limit = input.limit.unwrap_or(50).clamp(1, 50);
        let arn = ctx.scope.log_group_arn(&group);
        let page: Vec<Value> = streams
            .iter()
            .skip(start)
            .take(limit)
            .map(|s| {
                let mut v = json!({
                    "logStreamName": s.name,
                    "creationTime": s.created_ms,
                    "arn": format!("{arn}:log-stream:{}", s.name),
                    "storedBytes": s.stored_bytes,
                    "uploadSequenceToken": "1",
                });
                if let Some(t) = s.first_event_ms {
                    v["firstEventTimestamp"] = json!(t);
                }
                if let Some(t) = s.last_event_ms {
                    v["lastEventTimestamp"] = json!(t);
                }
                if let Some(t) = s.last_ingestion_ms {
                    v["lastIngestionTime"] = json!(t);
                }
                v
            })
            .collect();
        let mut out = json!({"logStreams": page});
        if start + limit < streams.len() {
            out["nextToken"] = json!((start + limit).to_string());
        }
        Ok(out)
    }

    fn get_log_events(&self, ctx: &RequestContext, input: GetLogEvents) -> Result<Value, ApiError> {
        let group = group_name(input.log_group_name, input.log_group_identifier)?;
        let scope = Self::scope(ctx);
        let streams = self.logs.streams(&scope, &group)?.ok_or_else(group_missing)?;
        if !streams.iter().any(|s| s.name == input.log_stream_name) {
            return Err(ApiError::new(
                400,
                "ResourceNotFoundException",
                "The specified log stream does not exist.",
            ));
        }
        // Tokens: `f/<id>` continues forward after an event id, `b/<id>` backward before it.
        let (mut after, mut before, mut from_head) = (None, None, input.start_from_head.unwrap_or(false));
        if let Some(t) = &input.next_token {
            let bad =
                || ApiError::new(400, "InvalidParameterException", "The specified nextToken is invalid.");
            let (dir, id) = t.split_once('/').ok_or_else(bad)?;
            let id: i64 = id.parse().map_err(|_| bad())?;
            match dir {
                "f" => {
                    after = Some(id);
                    from_head = true;
                }
                "b" => {
                    before = Some(id);
                    from_head = false;
                }
                _ => return Err(bad()),
            }
        }
        let limit = input.limit.unwrap_or(10_000).clamp(1, 10_000);
        let page = self.logs.events(
            &scope,
            &group,
            &input.log_stream_name,
            input.start_time,
            input.end_time,
            after,
            before,
            limit,
            from_head,
        )?;
        let events: Vec<Value> = page
            .events
            .iter()
            .map(|(_, ts, ingestion, message)| json!({"timestamp": ts, "message": message, "ingestionTime": ingestion}))
            .collect();
        Ok(json!({
            "events": events,
            "nextForwardToken": format!("f/{}", page.last_id),
            "nextBackwardToken": format!("b/{}", page.first_id),
        }))
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StreamRef {
    log_group_name: String,
    log_stream_name: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GroupRef {
    log_group_name: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PutRetentionPolicy {
    log_group_name: String,
    retention_in_days: i64,
}

#[derive(Deserialize)]
struct InputLogEvent {
    timestamp: i64,
    message: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PutLogEvents {
    log_group_name: String,
    log_stream_name: String,
    log_events: Vec<InputLogEvent>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FilterLogEvents {
    log_group_name: Option<String>,
    log_group_identifier: Option<String>,
    log_stream_names: Option<Vec<String>>,
    log_stream_name_prefix: Option<String>,
    start_time: Option<i64>,
    end_time: Option<i64>,
    filter_pattern: Option<String>,
    next_token: Option<String>,
    limit: Option<usize>,
}

/// Retention periods CloudWatch Logs accepts.
const RETENTION_DAYS: &[i64] = &[
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653,
];

impl LogsService {
    fn put_log_events(&self, ctx: &RequestContext, input: PutLogEvents) -> Result<Value, ApiError> {
        let scope = Self::scope(ctx);
        let streams = self.logs.streams(&scope, &input.log_group_name)?.ok_or_else(group_missing)?;
        if !streams.iter().any(|s| s.name == input.log_stream_name) {
            return Err(ApiError::new(
                400,
                "ResourceNotFoundException",
                "The specified log stream does not exist.",
            ));
        }
        if input.log_events.is_empty() || input.log_events.len() > 10_000 {
            return Err(ApiError::new(
                400,
                "InvalidParameterException",
                "logEvents must hold 1 to 10,000 events",
            ));
        }
        let (group, stream): (Arc<str>, Arc<str>) =
            (input.log_group_name.into(), input.log_stream_name.into());
        let scope: Arc<str> = scope.into();
        let now = chrono::Utc::now().timestamp_millis();
        let (mut too_old, mut too_new) = (None, None);
        for (i, e) in input.log_events.into_iter().enumerate() {
            // CloudWatch rejects events older than 14 days or more than 2 hours ahead.
            if e.timestamp < now - 14 * 86_400_000 {
                too_old = Some(i);
                continue;
            }
            if e.timestamp > now + 2 * 3_600_000 {
                too_new.get_or_insert(i);
                continue;
            }
            self.logs.append(nimbus_store::LogEvent {
                scope: scope.clone(),
                group: group.clone(),
                stream: stream.clone(),
                timestamp_ms: e.timestamp,
                message: e.message,
            });
        }
        let mut out = json!({"nextSequenceToken": uuid::Uuid::new_v4().simple().to_string()});
        if too_old.is_some() || too_new.is_some() {
            let mut info = json!({});
            if let Some(i) = too_old {
                info["tooOldLogEventEndIndex"] = json!(i);
            }
            if let Some(i) = too_new {
                info["tooNewLogEventStartIndex"] = json!(i);
            }
            out["rejectedLogEventsInfo"] = info;
        }
        Ok(out)
    }

    fn filter_log_events(&self, ctx: &RequestContext, input: FilterLogEvents) -> Result<Value, ApiError> {
        let group = group_name(input.log_group_name, input.log_group_identifier)?;
        let scope = Self::scope(ctx);
        let streams = self.logs.streams(&scope, &group)?.ok_or_else(group_missing)?;
        let pattern =
            nimbus_model::filter_pattern::FilterPattern::parse(input.filter_pattern.as_deref().unwrap_or(""))
                .map_err(|m| ApiError::new(400, "InvalidParameterException", m))?;
        let after = match input.next_token.as_deref() {
            None => 0,
            Some(t) => t.parse().map_err(|_| {
                ApiError::new(400, "InvalidParameterException", "The specified nextToken is invalid.")
            })?,
        };
        let limit = input.limit.unwrap_or(10_000).clamp(1, 10_000);
        // Scan in pages until `limit` matches or the group is exhausted.
        let (mut found, mut cursor, mut exhausted) = (Vec::new(), after, false);
        while found.len() < limit {
            let page = self.logs.filter_events(
                &scope,
                &group,
                input.log_stream_names.as_deref(),
                input.log_stream_name_prefix.as_deref(),
                input.start_time,
                input.end_time,
                cursor,
                10_000,
            )?;
            if page.is_empty() {
                exhausted = true;
                break;
            }
            for e in page {
                if found.len() == limit {
                    break;
                }
                cursor = e.id;
                if pattern.matches(&e.message) {
                    found.push(e);
                }
            }
        }
        let events: Vec<Value> = found
            .iter()
            .map(|e| {
                json!({
                    "logStreamName": e.stream,
                    "timestamp": e.timestamp_ms,
                    "message": e.message,
                    "ingestionTime": e.ingestion_ms,
                    "eventId": format!("{:056}", e.id),
                })
            })
            .collect();
        let searched: Vec<Value> = streams
            .iter()
            .filter(|s| input.log_stream_names.as_ref().is_none_or(|n| n.contains(&s.name)))
            .map(|s| json!({"logStreamName": s.name, "searchedCompletely": true}))
            .collect();
        let mut out = json!({"events": events, "searchedLogStreams": searched});
        if !exhausted {
            out["nextToken"] = json!(cursor.to_string());
        }
        Ok(out)
    }
}

impl JsonService for LogsService {
    fn target_prefix(&self) -> &'static str {
        "Logs_20140328"
    }

    fn call<'a>(
        &'a self,
        ctx: &'a RequestContext,
        operation: &'a str,
        input: Bytes,
    ) -> BoxFuture<'a, Result<Value, ApiError>> {
        Box::pin(async move {
            match operation {
                "CreateLogGroup" => {
                    let i: CreateLogGroup = parse(&input)?;
                    if !self.logs.create_group(&Self::scope(ctx), &i.log_group_name)? {
                        return Err(ApiError::new(
                            400,
                            "ResourceAlreadyExistsException",
                            "The specified log group already exists",
                        ));
                    }
                    Ok(json!({}))
                }
                "CreateLogStream" => {
                    let i: StreamRef = parse(&input)?;
                    match self.logs.create_stream(&Self::scope(ctx), &i.log_group_name, &i.log_stream_name)? {
                        None => Err(group_missing()),
                        Some(false) => Err(ApiError::new(
                            400,
                            "ResourceAlreadyExistsException",
                            "The specified log stream already exists",
                        )),
                        Some(true) => Ok(json!({})),
                    }
                }
                "DeleteLogGroup" => {
                    let i: GroupRef = parse(&input)?;
                    if !self.logs.delete_group(&Self::scope(ctx), &i.log_group_name)? {
                        return Err(group_missing());
                    }
                    Ok(json!({}))
                }
                "DeleteLogStream" => {
                    let i: StreamRef = parse(&input)?;
                    if !self.logs.delete_stream(&Self::scope(ctx), &i.log_group_name, &i.log_stream_name)? {
                        return Err(ApiError::new(
                            400,
                            "ResourceNotFoundException",
                            "The specified log stream does not exist.",
                        ));
                    }
                    Ok(json!({}))
                }
                "PutRetentionPolicy" => {
                    let i: PutRetentionPolicy = parse(&input)?;
                    if !RETENTION_DAYS.contains(&i.retention_in_days) {
                        return Err(ApiError::new(
                            400,
                            "InvalidParameterException",
                            format!(
                                "1 validation error detected: Value '{}' at 'retentionInDays' failed to satisfy constraint: Member must satisfy enum value set: {RETENTION_DAYS:?}",
                                i.retention_in_days
                            ),
                        ));
                    }
                    if !self.logs.set_retention(
                        &Self::scope(ctx),
                        &i.log_group_name,
                        Some(i.retention_in_days),
                    )? {
                        return Err(group_missing());
                    }
                    Ok(json!({}))
                }
                "DeleteRetentionPolicy" => {
                    let i: GroupRef = parse(&input)?;
                    if !self.logs.set_retention(&Self::scope(ctx), &i.log_group_name, None)? {
                        return Err(group_missing());
                    }
                    Ok(json!({}))
                }
                "PutLogEvents" => self.put_log_events(ctx, parse(&input)?),
                "FilterLogEvents" => self.filter_log_events(ctx, parse(&input)?),
                "DescribeLogGroups" => self.describe_log_groups(ctx, parse(&input)?),
                "DescribeLogStreams" => self.describe_log_streams(ctx, parse(&input)?),
                "GetLogEvents" => self.get_log_events(ctx, parse(&input)?),
                _ => Err(unknown_operation(&format!("Logs_20140328.{operation}"))),
            }
        })
    }
}
