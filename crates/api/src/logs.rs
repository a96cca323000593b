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
                "DescribeLogGroups" => self.describe_log_groups(ctx, parse(&input)?),
                "DescribeLogStreams" => self.describe_log_streams(ctx, parse(&input)?),
                "GetLogEvents" => self.get_log_events(ctx, parse(&input)?),
                _ => Err(unknown_operation(&format!("Logs_20140328.{operation}"))),
            }
        })
    }
}
