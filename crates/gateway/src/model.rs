//! The gateway's resources, in AWS vocabulary. Stored as JSON documents (one per API).
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub use nimbus_model::Cors;

/// One HTTP API with everything that belongs to it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Api {
    pub api_id: String,
    pub account: String,
    pub region: String,
    pub name: String,
    pub protocol_type: String,
    pub description: Option<String>,
    pub version: Option<String>,
    pub route_selection_expression: String,
    pub api_key_selection_expression: String,
    pub disable_execute_api_endpoint: bool,
    pub cors: Option<Cors>,
    pub created_date: String,
    pub tags: BTreeMap<String, String>,
    pub routes: Vec<Route>,
    pub integrations: Vec<Integration>,
    pub authorizers: Vec<Authorizer>,
    pub stages: Vec<Stage>,
    pub deployments: Vec<Deployment>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Route {
    pub route_id: String,
    pub route_key: String,
    /// `integrations/{integrationId}`
    pub target: Option<String>,
    /// `NONE`, `JWT`, `CUSTOM` (or `AWS_IAM`, accepted and not enforced).
    pub authorization_type: String,
    pub authorizer_id: Option<String>,
    pub authorization_scopes: Vec<String>,
    pub api_key_required: bool,
    pub operation_name: Option<String>,
    pub api_gateway_managed: bool,
}

impl Route {
    /// The integration this route's `target` names.
    pub fn integration_id(&self) -> Option<&str> {
        self.target.as_deref().and_then(|t| t.strip_prefix("integrations/"))
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Integration {
    pub integration_id: String,
    /// `AWS_PROXY` (Lambda) or `HTTP_PROXY`.
    pub integration_type: String,
    pub integration_uri: Option<String>,
    pub integration_method: Option<String>,
    pub payload_format_version: String,
    pub timeout_in_millis: u32,
    /// `INTERNET`, or `VPC_LINK` for a private integration (an ELBv2 target group URI).
    pub connection_type: String,
    /// The VPC link a `VPC_LINK` integration names; kept for the wire, not used for routing.
    #[serde(default)]
    pub connection_id: Option<String>,
    pub description: Option<String>,
    /// `overwrite:path` → `$request.path.p`, `append:header.x` → `value`, …
    pub request_parameters: BTreeMap<String, String>,
    pub api_gateway_managed: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Authorizer {
    pub authorizer_id: String,
    pub name: String,
    /// `JWT` or `REQUEST`.
    pub authorizer_type: String,
    pub authorizer_uri: Option<String>,
    pub authorizer_payload_format_version: Option<String>,
    pub authorizer_result_ttl_in_seconds: u32,
    pub enable_simple_responses: bool,
    pub identity_source: Vec<String>,
    pub jwt_issuer: Option<String>,
    pub jwt_audience: Vec<String>,
}

/// Throttling and logging settings for a stage's routes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RouteSettings {
    pub throttling_burst_limit: Option<u32>,
    pub throttling_rate_limit: Option<f64>,
    pub detailed_metrics_enabled: Option<bool>,
    pub logging_level: Option<String>,
    pub data_trace_enabled: Option<bool>,
}

impl RouteSettings {
    /// `other`'s set members over this one's.
    pub fn merge(&mut self, other: RouteSettings) {
        let RouteSettings {
            throttling_burst_limit,
            throttling_rate_limit,
            detailed_metrics_enabled,
            logging_level,
            data_trace_enabled,
        } = other;
        self.throttling_burst_limit = throttling_burst_limit.or(self.throttling_burst_limit);
        self.throttling_rate_limit = throttling_rate_limit.or(self.throttling_rate_limit);
        self.detailed_metrics_enabled = detailed_metrics_enabled.or(self.detailed_metrics_enabled);
        self.logging_level = logging_level.or(self.logging_level.take());
        self.data_trace_enabled = data_trace_enabled.or(self.data_trace_enabled);
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AccessLogSettings {
    /// `arn:aws:logs:{region}:{account}:log-group:{name}`
    pub destination_arn: Option<String>,
    pub format: Option<String>,
}

impl AccessLogSettings {
    /// The log group the destination ARN names.
    pub fn log_group(&self) -> Option<&str> {
        let arn = self.destination_arn.as_deref()?;
        let (_, group) = arn.split_once(":log-group:")?;
        Some(group.strip_suffix(":*").unwrap_or(group))
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Stage {
    pub stage_name: String,
    pub description: Option<String>,
    pub auto_deploy: bool,
    pub deployment_id: Option<String>,
    pub stage_variables: BTreeMap<String, String>,
    pub default_route_settings: RouteSettings,
    /// By route key.
    pub route_settings: BTreeMap<String, RouteSettings>,
    pub access_log_settings: Option<AccessLogSettings>,
    pub created_date: String,
    pub last_updated_date: String,
    pub api_gateway_managed: bool,
    pub tags: BTreeMap<String, String>,
}

/// What a deployment froze: the routes, integrations and authorizers a stage serves.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub routes: Vec<Route>,
    pub integrations: Vec<Integration>,
    pub authorizers: Vec<Authorizer>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Deployment {
    pub deployment_id: String,
    pub description: Option<String>,
    pub created_date: String,
    pub auto_deployed: bool,
    pub snapshot: Snapshot,
}

/// Create/Update inputs: `None` leaves a member as it is (or at its default on create).
#[derive(Debug, Clone, Default)]
pub struct ApiInput {
    pub name: Option<String>,
    pub protocol_type: Option<String>,
    pub description: Option<String>,
    pub version: Option<String>,
    pub route_selection_expression: Option<String>,
    pub api_key_selection_expression: Option<String>,
    pub disable_execute_api_endpoint: Option<bool>,
    pub cors: Option<Cors>,
    pub tags: Option<BTreeMap<String, String>>,
    /// Quick create: a Lambda ARN or HTTP URL behind a `$default` route and stage.
    pub target: Option<String>,
    /// Quick create: the route key (default `$default`).
    pub route_key: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct RouteInput {
    pub route_key: Option<String>,
    pub target: Option<String>,
    pub authorization_type: Option<String>,
    pub authorizer_id: Option<String>,
    pub authorization_scopes: Option<Vec<String>>,
    pub api_key_required: Option<bool>,
    pub operation_name: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct IntegrationInput {
    pub integration_type: Option<String>,
    pub integration_uri: Option<String>,
    pub integration_method: Option<String>,
    pub payload_format_version: Option<String>,
    pub timeout_in_millis: Option<u32>,
    pub connection_type: Option<String>,
    pub connection_id: Option<String>,
    pub description: Option<String>,
    pub request_parameters: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Default)]
pub struct AuthorizerInput {
    pub name: Option<String>,
    pub authorizer_type: Option<String>,
    pub authorizer_uri: Option<String>,
    pub authorizer_payload_format_version: Option<String>,
    pub authorizer_result_ttl_in_seconds: Option<u32>,
    pub enable_simple_responses: Option<bool>,
    pub identity_source: Option<Vec<String>>,
    pub jwt_issuer: Option<String>,
    pub jwt_audience: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default)]
pub struct StageInput {
    pub stage_name: Option<String>,
    pub description: Option<String>,
    pub auto_deploy: Option<bool>,
    pub deployment_id: Option<String>,
    pub stage_variables: Option<BTreeMap<String, String>>,
    pub default_route_settings: Option<RouteSettings>,
    pub route_settings: Option<BTreeMap<String, RouteSettings>>,
    pub access_log_settings: Option<AccessLogSettings>,
    pub tags: Option<BTreeMap<String, String>>,
}
