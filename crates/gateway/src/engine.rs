//! The durable gateway engine: one JSON document per API in the `Store` (written first),
//! with an in-memory view whose route tables are compiled once per change so the data
//! plane only reads.
use crate::authorizer::ResultCache;
use crate::model::*;
use crate::routing::{RouteKey, RouteTable};
use crate::throttle::Throttles;
use crate::{Error, mapping};
use nimbus_model::Scope;
use nimbus_store::Store;
use parking_lot::RwLock;
use std::collections::HashMap;
use std::sync::Arc;

const APIS: &str = "apigateway.apis";
const DEFAULT_STAGE: &str = "$default";
pub const MAX_TIMEOUT_MS: u32 = 30_000;

/// A compiled set of routes (a deployment, or the API's current configuration).
#[derive(Debug)]
pub struct Served {
    pub snapshot: Snapshot,
    /// Values index `snapshot.routes`.
    pub table: RouteTable<usize>,
}

impl Served {
    fn new(snapshot: Snapshot) -> Served {
        let table =
            RouteTable::new(snapshot.routes.iter().enumerate().map(|(i, r)| (r.route_key.clone(), i)));
        Served { snapshot, table }
    }

    pub fn integration(&self, id: &str) -> Option<&Integration> {
        self.snapshot.integrations.iter().find(|i| i.integration_id == id)
    }

    pub fn authorizer(&self, id: &str) -> Option<&Authorizer> {
        self.snapshot.authorizers.iter().find(|a| a.authorizer_id == id)
    }
}

/// An API as the data plane sees it.
#[derive(Debug)]
pub struct Live {
    pub api: Api,
    deployments: HashMap<String, Arc<Served>>,
}

impl Live {
    fn new(api: Api) -> Live {
        let deployments = api
            .deployments
            .iter()
            .map(|d| (d.deployment_id.clone(), Arc::new(Served::new(d.snapshot.clone()))))
            .collect();
        Live { api, deployments }
    }

    /// Which stage serves `path` (a named stage's prefix, else `$default`) and the path
    /// left for route matching.
    pub fn stage_for<'p>(&self, path: &'p str) -> Option<(&Stage, &'p str)> {
        let trimmed = path.strip_prefix('/').unwrap_or(path);
        let (first, rest) = match trimmed.find('/') {
            Some(i) => (&trimmed[..i], &trimmed[i..]),
            None => (trimmed, "/"),
        };
        if !first.is_empty()
            && first != DEFAULT_STAGE
            && let Some(s) = self.api.stages.iter().find(|s| s.stage_name == first)
        {
            return Some((s, rest));
        }
        self.api.stages.iter().find(|s| s.stage_name == DEFAULT_STAGE).map(|s| (s, path))
    }

    /// The deployment a stage serves (none until one is deployed).
    pub fn served(&self, stage: &Stage) -> Option<Arc<Served>> {
        stage.deployment_id.as_deref().and_then(|d| self.deployments.get(d)).cloned()
    }
}

pub struct GatewayEngine {
    store: Arc<dyn Store>,
    apis: RwLock<HashMap<String, Arc<Live>>>,
    /// Token buckets per `api/stage/route`.
    pub throttles: Throttles,
    /// Lambda authorizer results.
    pub auth_cache: ResultCache,
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn new_id(len: usize) -> String {
    (0..len)
        .map(|i| if i == 0 { fastrand::lowercase() } else { fastrand::alphanumeric().to_ascii_lowercase() })
        .collect()
}

/// One page of a listing; the token is the offset.
pub fn page<T: Clone>(
    items: &[T],
    next_token: Option<&str>,
    max_results: Option<usize>,
) -> Result<(Vec<T>, Option<String>), Error> {
    let start = match next_token {
        Some(t) => t.parse::<usize>().map_err(|_| Error::BadRequest("Invalid NextToken".into()))?,
        None => 0,
    };
    let max = max_results.unwrap_or(500).clamp(1, 500);
    let end = (start + max).min(items.len());
    let slice = items.get(start..end).unwrap_or(&[]).to_vec();
    Ok((slice, (end < items.len()).then(|| end.to_string())))
}

/// The function an `AWS_PROXY` integration URI names (a Lambda ARN, or API Gateway's
/// `arn:aws:apigateway:…:lambda:path/2015-03-31/functions/{arn}/invocations` form).
pub fn lambda_function_of(uri: &str) -> Option<&str> {
    if let Some((_, rest)) = uri.split_once(":lambda:path/2015-03-31/functions/") {
        return rest.strip_suffix("/invocations");
    }
    uri.starts_with("arn:aws:lambda:").then_some(uri)
}

/// The ELBv2 target group an `HTTP_PROXY` integration URI names
/// (`arn:aws:elasticloadbalancing:<region>:<account>:targetgroup/<name>/<id>`): such an
/// integration sends each request to one healthy target of the group, round-robin, the way
/// an API Gateway private integration reaches an ECS service behind a load balancer.
pub fn elb_target_group_of(uri: &str) -> Option<&str> {
    let mut parts = uri.splitn(6, ':');
    let (arn, partition, service) = (parts.next()?, parts.next()?, parts.next()?);
    let (_region, _account, resource) = (parts.next()?, parts.next()?, parts.next()?);
    if arn != "arn" || !partition.starts_with("aws") || service != "elasticloadbalancing" {
        return None;
    }
    let mut r = resource.strip_prefix("targetgroup/")?.split('/');
    let (name, id) = (r.next()?, r.next()?);
    (!name.is_empty() && !id.is_empty() && r.next().is_none()).then_some(uri)
}

fn check_route_key(key: &str) -> Result<(), Error> {
    RouteKey::parse(key).map(|_| ()).map_err(|e| Error::BadRequest(e.0))
}

fn bad(msg: impl Into<String>) -> Error {
    Error::BadRequest(msg.into())
}

impl GatewayEngine {
    pub fn open(store: Arc<dyn Store>) -> Result<Arc<GatewayEngine>, Error> {
        let mut apis = HashMap::new();
        for (key, bytes) in store.list(APIS)? {
            let api: Api = serde_json::from_slice(&bytes)
                .map_err(|e| Error::Internal(format!("stored API {key} is corrupt: {e}")))?;
            apis.insert(key, Arc::new(Live::new(api)));
        }
        Ok(Arc::new(GatewayEngine {
            store,
            apis: RwLock::new(apis),
            throttles: Throttles::default(),
            auth_cache: ResultCache::default(),
        }))
    }

    /// The data plane's lookup.
    pub fn live(&self, api_id: &str) -> Option<Arc<Live>> {
        self.apis.read().get(api_id).cloned()
    }

    pub fn api_count(&self) -> usize {
        self.apis.read().len()
    }

    fn get_live(&self, scope: &Scope, api_id: &str) -> Result<Arc<Live>, Error> {
        self.live(api_id)
            .filter(|l| l.api.account == scope.account && l.api.region == scope.region)
            .ok_or_else(|| Error::not_found("Api", api_id))
    }

    pub fn get_api(&self, scope: &Scope, api_id: &str) -> Result<Api, Error> {
        Ok(self.get_live(scope, api_id)?.api.clone())
    }

    pub fn list_apis(&self, scope: &Scope) -> Vec<Api> {
        let mut out: Vec<Api> = self
            .apis
            .read()
            .values()
            .filter(|l| l.api.account == scope.account && l.api.region == scope.region)
            .map(|l| l.api.clone())
            .collect();
        out.sort_by(|a, b| (&a.created_date, &a.api_id).cmp(&(&b.created_date, &b.api_id)));
        out
    }

    /// Store first, then memory: an acknowledged write survives a crash.
    fn save(&self, mut api: Api) -> Result<Api, Error> {
        self.auto_deploy(&mut api);
        let bytes = serde_json::to_vec(&api).map_err(|e| Error::Internal(e.to_string()))?;
        self.store.put(APIS, &api.api_id, &bytes)?;
        self.apis.write().insert(api.api_id.clone(), Arc::new(Live::new(api.clone())));
        Ok(api)
    }

    /// Auto-deploying stages serve a fresh deployment after every change; auto
    /// deployments no stage uses any more are dropped.
    fn auto_deploy(&self, api: &mut Api) {
        if !api.stages.iter().any(|s| s.auto_deploy) {
            return;
        }
        let snapshot = snapshot_of(api);
        let current = api
            .stages
            .iter()
            .filter(|s| s.auto_deploy)
            .filter_map(|s| s.deployment_id.as_ref())
            .filter_map(|id| api.deployments.iter().find(|d| &d.deployment_id == id))
            .all(|d| d.snapshot == snapshot);
        let all_deployed = api.stages.iter().filter(|s| s.auto_deploy).all(|s| s.deployment_id.is_some());
        if current && all_deployed {
            return;
        }
        let id = new_id(6);
        api.deployments.push(Deployment {
            deployment_id: id.clone(),
            description: Some("Automatic deployment triggered by changes to the Api configuration".into()),
            created_date: now(),
            auto_deployed: true,
            snapshot,
        });
        for s in api.stages.iter_mut().filter(|s| s.auto_deploy) {
            s.deployment_id = Some(id.clone());
            s.last_updated_date = now();
        }
        let used: Vec<String> = api.stages.iter().filter_map(|s| s.deployment_id.clone()).collect();
        api.deployments.retain(|d| !d.auto_deployed || used.contains(&d.deployment_id));
    }

    fn update<R>(
        &self,
        scope: &Scope,
        api_id: &str,
        f: impl FnOnce(&mut Api) -> Result<R, Error>,
    ) -> Result<R, Error> {
        let mut api = self.get_api(scope, api_id)?;
        let out = f(&mut api)?;
        self.save(api)?;
        Ok(out)
    }

    // ---------- APIs ----------

    pub fn create_api(&self, scope: &Scope, input: ApiInput) -> Result<Api, Error> {
        let name = input.name.clone().filter(|n| !n.is_empty()).ok_or_else(|| bad("Name is required"))?;
        let protocol = input.protocol_type.clone().unwrap_or_default();
        match protocol.as_str() {
            "HTTP" => {}
            "WEBSOCKET" => {
                return Err(bad("WebSocket APIs are not supported by Nimbus; use ProtocolType HTTP"));
            }
            other => return Err(bad(format!("Invalid ProtocolType {other}; expected HTTP"))),
        }
        let mut api_id = new_id(10);
        while self.live(&api_id).is_some() {
            api_id = new_id(10);
        }
        let mut api = Api {
            api_id,
            account: scope.account.clone(),
            region: scope.region.clone(),
            name,
            protocol_type: protocol,
            route_selection_expression: "$request.method $request.path".into(),
            api_key_selection_expression: "$request.header.x-api-key".into(),
            created_date: now(),
            ..Api::default()
        };
        apply_api(&mut api, &input)?;
        if let Some(target) = input.target.clone() {
            quick_create(&mut api, &target, input.route_key.as_deref().unwrap_or(DEFAULT_STAGE))?;
        } else if input.route_key.is_some() {
            return Err(bad("RouteKey can only be used with Target (quick create)"));
        }
        self.save(api)
    }

    pub fn update_api(&self, scope: &Scope, api_id: &str, input: ApiInput) -> Result<Api, Error> {
        self.update(scope, api_id, |api| {
            if let Some(n) = input.name.as_ref().filter(|n| n.is_empty()) {
                return Err(bad(format!("Invalid Name {n}")));
            }
            if let Some(n) = &input.name {
                api.name = n.clone();
            }
            apply_api(api, &input)?;
            if let Some(target) = &input.target {
                // Update with a target re-points the managed integration.
                match api.integrations.iter_mut().find(|i| i.api_gateway_managed) {
                    Some(i) => i.integration_uri = Some(target.clone()),
                    None => quick_create(api, target, input.route_key.as_deref().unwrap_or(DEFAULT_STAGE))?,
                }
            }
            Ok(api.clone())
        })
    }

    pub fn delete_api(&self, scope: &Scope, api_id: &str) -> Result<(), Error> {
        let live = self.get_live(scope, api_id)?;
        self.store.delete(APIS, &live.api.api_id)?;
        self.apis.write().remove(api_id);
        Ok(())
    }

    pub fn delete_cors(&self, scope: &Scope, api_id: &str) -> Result<(), Error> {
        self.update(scope, api_id, |api| {
            api.cors = None;
            Ok(())
        })
    }

    // ---------- routes ----------

    pub fn create_route(&self, scope: &Scope, api_id: &str, input: RouteInput) -> Result<Route, Error> {
        self.update(scope, api_id, |api| {
            let key = input.route_key.clone().ok_or_else(|| bad("RouteKey is required"))?;
            let mut route = Route {
                route_id: new_id(7),
                route_key: key,
                authorization_type: "NONE".into(),
                ..Route::default()
            };
            apply_route(api, &mut route, &input)?;
            api.routes.push(route.clone());
            Ok(route)
        })
    }

    pub fn get_route(&self, scope: &Scope, api_id: &str, route_id: &str) -> Result<Route, Error> {
        let api = self.get_api(scope, api_id)?;
        api.routes
            .into_iter()
            .find(|r| r.route_id == route_id)
            .ok_or_else(|| Error::not_found("Route", route_id))
    }

    pub fn update_route(
        &self,
        scope: &Scope,
        api_id: &str,
        route_id: &str,
        input: RouteInput,
    ) -> Result<Route, Error> {
        self.update(scope, api_id, |api| {
            let i = api
                .routes
                .iter()
                .position(|r| r.route_id == route_id)
                .ok_or_else(|| Error::not_found("Route", route_id))?;
            let mut route = api.routes[i].clone();
            if let Some(k) = &input.route_key {
                route.route_key = k.clone();
            }
            apply_route(api, &mut route, &input)?;
            api.routes[i] = route.clone();
            Ok(route)
        })
    }

    pub fn delete_route(&self, scope: &Scope, api_id: &str, route_id: &str) -> Result<(), Error> {
        self.update(scope, api_id, |api| {
            let before = api.routes.len();
            api.routes.retain(|r| r.route_id != route_id);
            if api.routes.len() == before {
                return Err(Error::not_found("Route", route_id));
            }
            Ok(())
        })
    }

    // ---------- integrations ----------

    pub fn create_integration(
        &self,
        scope: &Scope,
        api_id: &str,
        input: IntegrationInput,
    ) -> Result<Integration, Error> {
        self.update(scope, api_id, |api| {
            let mut i = Integration {
                integration_id: new_id(7),
                connection_type: "INTERNET".into(),
                timeout_in_millis: MAX_TIMEOUT_MS,
                ..Integration::default()
            };
            apply_integration(&mut i, &input, true)?;
            api.integrations.push(i.clone());
            Ok(i)
        })
    }

    pub fn get_integration(&self, scope: &Scope, api_id: &str, id: &str) -> Result<Integration, Error> {
        let api = self.get_api(scope, api_id)?;
        api.integrations
            .into_iter()
            .find(|i| i.integration_id == id)
            .ok_or_else(|| Error::not_found("Integration", id))
    }

    pub fn update_integration(
        &self,
        scope: &Scope,
        api_id: &str,
        id: &str,
        input: IntegrationInput,
    ) -> Result<Integration, Error> {
        self.update(scope, api_id, |api| {
            let i = api
                .integrations
                .iter_mut()
                .find(|i| i.integration_id == id)
                .ok_or_else(|| Error::not_found("Integration", id))?;
            apply_integration(i, &input, false)?;
            Ok(i.clone())
        })
    }

    pub fn delete_integration(&self, scope: &Scope, api_id: &str, id: &str) -> Result<(), Error> {
        self.update(scope, api_id, |api| {
            if !api.integrations.iter().any(|i| i.integration_id == id) {
                return Err(Error::not_found("Integration", id));
            }
            if let Some(r) = api.routes.iter().find(|r| r.integration_id() == Some(id)) {
                return Err(Error::Conflict(format!(
                    "Cannot delete Integration {id}: route {} ({}) targets it",
                    r.route_id, r.route_key
                )));
            }
            api.integrations.retain(|i| i.integration_id != id);
            Ok(())
        })
    }

    // ---------- authorizers ----------

    pub fn create_authorizer(
        &self,
        scope: &Scope,
        api_id: &str,
        input: AuthorizerInput,
    ) -> Result<Authorizer, Error> {
        self.update(scope, api_id, |api| {
            let mut a = Authorizer { authorizer_id: new_id(6), ..Authorizer::default() };
            apply_authorizer(&mut a, &input, true)?;
            api.authorizers.push(a.clone());
            Ok(a)
        })
    }

    pub fn get_authorizer(&self, scope: &Scope, api_id: &str, id: &str) -> Result<Authorizer, Error> {
        let api = self.get_api(scope, api_id)?;
        api.authorizers
            .into_iter()
            .find(|a| a.authorizer_id == id)
            .ok_or_else(|| Error::not_found("Authorizer", id))
    }

    pub fn update_authorizer(
        &self,
        scope: &Scope,
        api_id: &str,
        id: &str,
        input: AuthorizerInput,
    ) -> Result<Authorizer, Error> {
        self.update(scope, api_id, |api| {
            let a = api
                .authorizers
                .iter_mut()
                .find(|a| a.authorizer_id == id)
                .ok_or_else(|| Error::not_found("Authorizer", id))?;
            apply_authorizer(a, &input, false)?;
            Ok(a.clone())
        })
    }

    pub fn delete_authorizer(&self, scope: &Scope, api_id: &str, id: &str) -> Result<(), Error> {
        self.update(scope, api_id, |api| {
            if !api.authorizers.iter().any(|a| a.authorizer_id == id) {
                return Err(Error::not_found("Authorizer", id));
            }
            if api.routes.iter().any(|r| r.authorizer_id.as_deref() == Some(id)) {
                return Err(Error::Conflict(format!("Cannot delete Authorizer {id}: a route uses it")));
            }
            api.authorizers.retain(|a| a.authorizer_id != id);
            Ok(())
        })
    }

    // ---------- stages ----------

    pub fn create_stage(&self, scope: &Scope, api_id: &str, input: StageInput) -> Result<Stage, Error> {
        self.update(scope, api_id, |api| {
            let name = input
                .stage_name
                .clone()
                .filter(|n| !n.is_empty())
                .ok_or_else(|| bad("StageName is required"))?;
            if api.stages.iter().any(|s| s.stage_name == name) {
                return Err(Error::Conflict(format!("Stage already exists: {name}")));
            }
            let mut s =
                Stage { stage_name: name, created_date: now(), last_updated_date: now(), ..Stage::default() };
            apply_stage(api, &mut s, input)?;
            api.stages.push(s);
            // Return the stage after auto-deploy assigned its deployment.
            Ok(())
        })?;
        let api = self.get_api(scope, api_id)?;
        api.stages.into_iter().last().ok_or_else(|| Error::Internal("stage vanished".into()))
    }

    pub fn get_stage(&self, scope: &Scope, api_id: &str, name: &str) -> Result<Stage, Error> {
        let api = self.get_api(scope, api_id)?;
        api.stages.into_iter().find(|s| s.stage_name == name).ok_or_else(|| Error::not_found("Stage", name))
    }

    pub fn update_stage(
        &self,
        scope: &Scope,
        api_id: &str,
        name: &str,
        input: StageInput,
    ) -> Result<Stage, Error> {
        self.update(scope, api_id, |api| {
            let i = api
                .stages
                .iter()
                .position(|s| s.stage_name == name)
                .ok_or_else(|| Error::not_found("Stage", name))?;
            let mut s = api.stages[i].clone();
            apply_stage(api, &mut s, input)?;
            s.last_updated_date = now();
            api.stages[i] = s;
            Ok(())
        })?;
        self.get_stage(scope, api_id, name)
    }

    pub fn delete_stage(&self, scope: &Scope, api_id: &str, name: &str) -> Result<(), Error> {
        self.update(scope, api_id, |api| {
            let before = api.stages.len();
            api.stages.retain(|s| s.stage_name != name);
            if before == api.stages.len() {
                return Err(Error::not_found("Stage", name));
            }
            Ok(())
        })
    }

    pub fn delete_route_settings(
        &self,
        scope: &Scope,
        api_id: &str,
        stage: &str,
        route_key: &str,
    ) -> Result<(), Error> {
        self.update(scope, api_id, |api| {
            let s = api
                .stages
                .iter_mut()
                .find(|s| s.stage_name == stage)
                .ok_or_else(|| Error::not_found("Stage", stage))?;
            s.route_settings.remove(route_key).ok_or_else(|| Error::not_found("RouteSettings", route_key))?;
            Ok(())
        })
    }

    // ---------- deployments ----------

    pub fn create_deployment(
        &self,
        scope: &Scope,
        api_id: &str,
        stage: Option<&str>,
        description: Option<String>,
    ) -> Result<Deployment, Error> {
        self.update(scope, api_id, |api| {
            if let Some(stage) = stage {
                let s = api
                    .stages
                    .iter()
                    .find(|s| s.stage_name == stage)
                    .ok_or_else(|| Error::not_found("Stage", stage))?;
                if s.auto_deploy {
                    return Err(bad(format!(
                        "Stage {stage} has AutoDeploy enabled: deployments are created automatically"
                    )));
                }
            }
            let d = Deployment {
                deployment_id: new_id(6),
                description,
                created_date: now(),
                auto_deployed: false,
                snapshot: snapshot_of(api),
            };
            api.deployments.push(d.clone());
            if let Some(stage) = stage
                && let Some(s) = api.stages.iter_mut().find(|s| s.stage_name == stage)
            {
                s.deployment_id = Some(d.deployment_id.clone());
                s.last_updated_date = now();
            }
            Ok(d)
        })
    }

    pub fn get_deployment(&self, scope: &Scope, api_id: &str, id: &str) -> Result<Deployment, Error> {
        let api = self.get_api(scope, api_id)?;
        api.deployments
            .into_iter()
            .find(|d| d.deployment_id == id)
            .ok_or_else(|| Error::not_found("Deployment", id))
    }

    pub fn update_deployment(
        &self,
        scope: &Scope,
        api_id: &str,
        id: &str,
        description: Option<String>,
    ) -> Result<Deployment, Error> {
        self.update(scope, api_id, |api| {
            let d = api
                .deployments
                .iter_mut()
                .find(|d| d.deployment_id == id)
                .ok_or_else(|| Error::not_found("Deployment", id))?;
            if description.is_some() {
                d.description = description;
            }
            Ok(d.clone())
        })
    }

    pub fn delete_deployment(&self, scope: &Scope, api_id: &str, id: &str) -> Result<(), Error> {
        self.update(scope, api_id, |api| {
            if !api.deployments.iter().any(|d| d.deployment_id == id) {
                return Err(Error::not_found("Deployment", id));
            }
            if let Some(s) = api.stages.iter().find(|s| s.deployment_id.as_deref() == Some(id)) {
                return Err(bad(format!("Deployment {id} is in use by stage {}", s.stage_name)));
            }
            api.deployments.retain(|d| d.deployment_id != id);
            Ok(())
        })
    }
}

fn snapshot_of(api: &Api) -> Snapshot {
    Snapshot {
        routes: api.routes.clone(),
        integrations: api.integrations.clone(),
        authorizers: api.authorizers.clone(),
    }
}

fn apply_api(api: &mut Api, input: &ApiInput) -> Result<(), Error> {
    if let Some(d) = &input.description {
        api.description = Some(d.clone());
    }
    if let Some(v) = &input.version {
        api.version = Some(v.clone());
    }
    if let Some(e) = &input.route_selection_expression {
        if e != "$request.method $request.path" {
            return Err(bad(format!("Unsupported RouteSelectionExpression {e} for an HTTP API")));
        }
        api.route_selection_expression = e.clone();
    }
    if let Some(e) = &input.api_key_selection_expression {
        api.api_key_selection_expression = e.clone();
    }
    if let Some(d) = input.disable_execute_api_endpoint {
        api.disable_execute_api_endpoint = d;
    }
    if let Some(c) = &input.cors {
        if c.allow_credentials == Some(true) && c.allow_origins.iter().any(|o| o == "*") {
            return Err(bad("CORS: AllowCredentials cannot be true when AllowOrigins contains *"));
        }
        api.cors = Some(c.clone());
    }
    if let Some(t) = &input.tags {
        api.tags.extend(t.clone());
    }
    Ok(())
}

/// Quick create: a managed integration, `$default` (or the given) route and an
/// auto-deploying `$default` stage.
fn quick_create(api: &mut Api, target: &str, route_key: &str) -> Result<(), Error> {
    check_route_key(route_key)?;
    let http = target.starts_with("http://") || target.starts_with("https://");
    if !http && lambda_function_of(target).is_none() {
        return Err(bad(format!("Invalid Target {target}: expected a Lambda function ARN or an HTTP URL")));
    }
    let integration = Integration {
        integration_id: new_id(7),
        integration_type: if http { "HTTP_PROXY" } else { "AWS_PROXY" }.into(),
        integration_uri: Some(target.to_string()),
        integration_method: Some(if http { "ANY" } else { "POST" }.into()),
        payload_format_version: if http { "1.0" } else { "2.0" }.into(),
        timeout_in_millis: MAX_TIMEOUT_MS,
        connection_type: "INTERNET".into(),
        api_gateway_managed: true,
        ..Integration::default()
    };
    api.routes.push(Route {
        route_id: new_id(7),
        route_key: route_key.to_string(),
        target: Some(format!("integrations/{}", integration.integration_id)),
        authorization_type: "NONE".into(),
        api_gateway_managed: true,
        ..Route::default()
    });
    api.integrations.push(integration);
    api.stages.push(Stage {
        stage_name: DEFAULT_STAGE.into(),
        auto_deploy: true,
        created_date: now(),
        last_updated_date: now(),
        api_gateway_managed: true,
        ..Stage::default()
    });
    Ok(())
}

fn apply_route(api: &Api, route: &mut Route, input: &RouteInput) -> Result<(), Error> {
    check_route_key(&route.route_key)?;
    if api.routes.iter().any(|r| r.route_key == route.route_key && r.route_id != route.route_id) {
        return Err(Error::Conflict(format!(
            "Route with key {} already exists for this API",
            route.route_key
        )));
    }
    if let Some(t) = &input.target {
        let id = t
            .strip_prefix("integrations/")
            .ok_or_else(|| bad(format!("Invalid Target {t}: expected integrations/{{integrationId}}")))?;
        if !api.integrations.iter().any(|i| i.integration_id == id) {
            return Err(bad(format!("Invalid integration identifier specified {id}")));
        }
        route.target = Some(t.clone());
    }
    if let Some(a) = &input.authorization_type {
        if !["NONE", "JWT", "CUSTOM", "AWS_IAM"].contains(&a.as_str()) {
            return Err(bad(format!("Invalid AuthorizationType {a}")));
        }
        route.authorization_type = a.clone();
    }
    if let Some(id) = &input.authorizer_id {
        route.authorizer_id = Some(id.clone());
    }
    if let Some(s) = &input.authorization_scopes {
        route.authorization_scopes = s.clone();
    }
    if let Some(k) = input.api_key_required {
        route.api_key_required = k;
    }
    if let Some(o) = &input.operation_name {
        route.operation_name = Some(o.clone());
    }
    if route.authorization_type == "NONE" {
        route.authorizer_id = None;
    }
    match route.authorization_type.as_str() {
        "JWT" | "CUSTOM" => {
            let id = route.authorizer_id.as_deref().ok_or_else(|| {
                bad(format!("AuthorizerId is required for AuthorizationType {}", route.authorization_type))
            })?;
            let a = api
                .authorizers
                .iter()
                .find(|a| a.authorizer_id == id)
                .ok_or_else(|| bad(format!("Invalid authorizer identifier specified {id}")))?;
            let want = if route.authorization_type == "JWT" { "JWT" } else { "REQUEST" };
            if a.authorizer_type != want {
                return Err(bad(format!(
                    "AuthorizationType {} needs a {want} authorizer",
                    route.authorization_type
                )));
            }
        }
        _ => {}
    }
    if !route.authorization_scopes.is_empty() && route.authorization_type != "JWT" {
        return Err(bad("AuthorizationScopes are only supported with JWT authorizers"));
    }
    Ok(())
}

fn apply_integration(i: &mut Integration, input: &IntegrationInput, create: bool) -> Result<(), Error> {
    if let Some(t) = &input.integration_type {
        i.integration_type = t.clone();
    }
    if create && input.integration_type.is_none() {
        return Err(bad("IntegrationType is required"));
    }
    if let Some(u) = &input.integration_uri {
        i.integration_uri = Some(u.clone());
    }
    if let Some(m) = &input.integration_method {
        i.integration_method = Some(m.clone());
    }
    if let Some(p) = &input.payload_format_version {
        i.payload_format_version = p.clone();
    }
    if let Some(t) = input.timeout_in_millis {
        if !(50..=MAX_TIMEOUT_MS).contains(&t) {
            return Err(bad(format!("TimeoutInMillis must be between 50 and {MAX_TIMEOUT_MS}")));
        }
        i.timeout_in_millis = t;
    }
    if let Some(c) = &input.connection_type {
        if c != "INTERNET" && c != "VPC_LINK" {
            return Err(bad(format!("Invalid ConnectionType {c}: expected INTERNET or VPC_LINK")));
        }
        i.connection_type = c.clone();
    }
    if let Some(c) = &input.connection_id {
        i.connection_id = Some(c.clone());
    }
    if let Some(d) = &input.description {
        i.description = Some(d.clone());
    }
    if let Some(p) = &input.request_parameters {
        mapping::validate(p).map_err(|e| bad(e.to_string()))?;
        i.request_parameters = p.clone();
    }
    let uri = i.integration_uri.clone().unwrap_or_default();
    match i.integration_type.as_str() {
        "AWS_PROXY" => {
            if lambda_function_of(&uri).is_none() {
                return Err(bad(format!("Invalid IntegrationUri {uri}: expected a Lambda function ARN")));
            }
            if i.payload_format_version.is_empty() {
                return Err(bad("PayloadFormatVersion is required for AWS_PROXY integrations"));
            }
            if !["1.0", "2.0"].contains(&i.payload_format_version.as_str()) {
                return Err(bad(format!("Invalid PayloadFormatVersion {}", i.payload_format_version)));
            }
            if !i.request_parameters.is_empty() {
                return Err(bad("RequestParameters are supported for HTTP_PROXY integrations only"));
            }
        }
        "HTTP_PROXY" => {
            let url = uri.starts_with("http://") || uri.starts_with("https://");
            let target_group = elb_target_group_of(&uri).is_some();
            if uri.starts_with("arn:aws:elasticloadbalancing:") && !target_group {
                // A listener or load balancer ARN would need ELBv2's listener rules to pick
                // a target group; this build has no ELBv2, so it asks for the group itself.
                return Err(bad(format!(
                    "Invalid IntegrationUri {uri}: only ELBv2 target group ARNs \
                     (arn:aws:elasticloadbalancing:<region>:<account>:targetgroup/<name>/<id>) \
                     are supported for private integrations"
                )));
            }
            if !url && !target_group {
                return Err(bad(format!(
                    "Invalid IntegrationUri {uri}: expected an http(s) URL or an ELBv2 target group ARN"
                )));
            }
            if i.connection_type == "VPC_LINK" && !target_group {
                return Err(bad("VPC_LINK integrations need an ELBv2 target group ARN as IntegrationUri"));
            }
            if i.integration_method.is_none() {
                return Err(bad("IntegrationMethod is required for HTTP_PROXY integrations"));
            }
            if i.payload_format_version.is_empty() {
                i.payload_format_version = "1.0".into();
            }
            if i.payload_format_version != "1.0" {
                return Err(bad("HTTP_PROXY integrations support PayloadFormatVersion 1.0 only"));
            }
        }
        other => {
            return Err(bad(format!(
                "IntegrationType {other} is not supported for HTTP APIs; use AWS_PROXY or HTTP_PROXY"
            )));
        }
    }
    Ok(())
}

fn apply_authorizer(a: &mut Authorizer, input: &AuthorizerInput, create: bool) -> Result<(), Error> {
    if let Some(n) = &input.name {
        a.name = n.clone();
    }
    if let Some(t) = &input.authorizer_type {
        a.authorizer_type = t.clone();
    }
    if create && (input.name.is_none() || input.authorizer_type.is_none()) {
        return Err(bad("Name and AuthorizerType are required"));
    }
    if let Some(u) = &input.authorizer_uri {
        a.authorizer_uri = Some(u.clone());
    }
    if let Some(p) = &input.authorizer_payload_format_version {
        a.authorizer_payload_format_version = Some(p.clone());
    }
    if let Some(t) = input.authorizer_result_ttl_in_seconds {
        if t > 3600 {
            return Err(bad("AuthorizerResultTtlInSeconds must be between 0 and 3600"));
        }
        a.authorizer_result_ttl_in_seconds = t;
    }
    if let Some(s) = input.enable_simple_responses {
        a.enable_simple_responses = s;
    }
    if let Some(s) = &input.identity_source {
        a.identity_source = s.clone();
    }
    if let Some(i) = &input.jwt_issuer {
        a.jwt_issuer = Some(i.clone());
    }
    if let Some(aud) = &input.jwt_audience {
        a.jwt_audience = aud.clone();
    }
    match a.authorizer_type.as_str() {
        "JWT" => {
            if a.jwt_issuer.is_none() {
                return Err(bad("JwtConfiguration.Issuer is required for JWT authorizers"));
            }
            if a.identity_source.is_empty() {
                return Err(bad("IdentitySource is required for JWT authorizers"));
            }
        }
        "REQUEST" => {
            let uri = a.authorizer_uri.clone().unwrap_or_default();
            if lambda_function_of(&uri).is_none() {
                return Err(bad(format!("Invalid AuthorizerUri {uri}: expected a Lambda function ARN")));
            }
            match a.authorizer_payload_format_version.as_deref() {
                Some("1.0") | Some("2.0") => {}
                _ => {
                    return Err(bad(
                        "AuthorizerPayloadFormatVersion must be 1.0 or 2.0 for REQUEST authorizers",
                    ));
                }
            }
            if a.enable_simple_responses && a.authorizer_payload_format_version.as_deref() != Some("2.0") {
                return Err(bad("EnableSimpleResponses requires AuthorizerPayloadFormatVersion 2.0"));
            }
            if a.identity_source.is_empty() && a.authorizer_result_ttl_in_seconds > 0 {
                return Err(bad("IdentitySource is required when caching is enabled"));
            }
        }
        other => return Err(bad(format!("AuthorizerType {other} is not supported; use JWT or REQUEST"))),
    }
    Ok(())
}

fn apply_stage(api: &Api, s: &mut Stage, input: StageInput) -> Result<(), Error> {
    if let Some(d) = input.description {
        s.description = Some(d);
    }
    if let Some(a) = input.auto_deploy {
        s.auto_deploy = a;
    }
    if let Some(d) = input.deployment_id {
        if !api.deployments.iter().any(|x| x.deployment_id == d) {
            return Err(bad(format!("Invalid deployment identifier specified {d}")));
        }
        s.deployment_id = Some(d);
    }
    if let Some(v) = input.stage_variables {
        s.stage_variables = v;
    }
    if let Some(r) = input.default_route_settings {
        s.default_route_settings.merge(r);
    }
    if let Some(map) = input.route_settings {
        for (key, r) in map {
            check_route_key(&key)?;
            s.route_settings.entry(key).or_default().merge(r);
        }
    }
    if let Some(a) = input.access_log_settings {
        if a.destination_arn.is_some() && a.log_group().is_none() {
            return Err(bad("AccessLogSettings.DestinationArn must be a CloudWatch Logs log group ARN"));
        }
        s.access_log_settings = Some(a);
    }
    if let Some(t) = input.tags {
        s.tags.extend(t);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine() -> (tempfile::TempDir, Arc<GatewayEngine>, Arc<dyn Store>) {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(nimbus_store::SqliteStore::open(&dir.path().join("s.db")).unwrap());
        (dir, GatewayEngine::open(store.clone()).unwrap(), store)
    }

    fn scope() -> Scope {
        Scope::new("123456789012", "us-west-2")
    }

    #[test]
    fn quick_create_makes_route_integration_and_auto_deployed_stage() {
        let (_d, e, store) = engine();
        let api = e
            .create_api(
                &scope(),
                ApiInput {
                    name: Some("MyAPI".into()),
                    protocol_type: Some("HTTP".into()),
                    target: Some("arn:aws:lambda:us-west-2:123456789012:function:myIntegration".into()),
                    ..ApiInput::default()
                },
            )
            .unwrap();
        assert_eq!(api.routes[0].route_key, "$default");
        assert_eq!(api.integrations[0].integration_type, "AWS_PROXY");
        assert_eq!(api.integrations[0].payload_format_version, "2.0");
        assert!(api.stages[0].auto_deploy && api.stages[0].deployment_id.is_some());
        let live = e.live(&api.api_id).unwrap();
        let (stage, path) = live.stage_for("/anything/here").unwrap();
        assert_eq!((stage.stage_name.as_str(), path), ("$default", "/anything/here"));
        let served = live.served(stage).unwrap();
        assert!(served.table.select("GET", path).is_some());
        // Durable: a new engine over the same store sees the API.
        let again = GatewayEngine::open(store).unwrap();
        assert_eq!(again.get_api(&scope(), &api.api_id).unwrap(), api);
        assert!(matches!(e.get_api(&Scope::new("1", "us-west-2"), &api.api_id), Err(Error::NotFound { .. })));
    }

    #[test]
    fn explicit_deployments_freeze_routes() {
        let (_d, e, _s) = engine();
        let s = scope();
        let api = e
            .create_api(
                &s,
                ApiInput {
                    name: Some("a".into()),
                    protocol_type: Some("HTTP".into()),
                    ..ApiInput::default()
                },
            )
            .unwrap();
        let id = &api.api_id;
        let i = e
            .create_integration(
                &s,
                id,
                IntegrationInput {
                    integration_type: Some("HTTP_PROXY".into()),
                    integration_uri: Some("http://127.0.0.1:1/x".into()),
                    integration_method: Some("ANY".into()),
                    ..IntegrationInput::default()
                },
            )
            .unwrap();
        let target = Some(format!("integrations/{}", i.integration_id));
        e.create_route(
            &s,
            id,
            RouteInput { route_key: Some("GET /a".into()), target: target.clone(), ..RouteInput::default() },
        )
        .unwrap();
        let dup =
            e.create_route(&s, id, RouteInput { route_key: Some("GET /a".into()), ..RouteInput::default() });
        assert!(matches!(dup, Err(Error::Conflict(_))));
        assert!(matches!(
            e.create_route(&s, id, RouteInput { route_key: Some("GET a".into()), ..RouteInput::default() }),
            Err(Error::BadRequest(_))
        ));
        e.create_stage(&s, id, StageInput { stage_name: Some("prod".into()), ..StageInput::default() })
            .unwrap();
        let live = e.live(id).unwrap();
        let (stage, rest) = live.stage_for("/prod/a").unwrap();
        assert_eq!(rest, "/a");
        assert!(live.served(stage).is_none(), "nothing deployed yet");
        e.create_deployment(&s, id, Some("prod"), None).unwrap();
        e.create_route(
            &s,
            id,
            RouteInput { route_key: Some("GET /b".into()), target, ..RouteInput::default() },
        )
        .unwrap();
        let live = e.live(id).unwrap();
        let (stage, _) = live.stage_for("/prod/a").unwrap();
        let served = live.served(stage).unwrap();
        assert!(served.table.select("GET", "/a").is_some());
        assert!(served.table.select("GET", "/b").is_none(), "GET /b was added after the deployment");
        assert!(live.stage_for("/other/a").is_none());
        assert!(matches!(e.delete_integration(&s, id, &i.integration_id), Err(Error::Conflict(_))));
    }

    #[test]
    fn target_group_integrations() {
        let tg = "arn:aws:elasticloadbalancing:us-west-2:123456789012:targetgroup/web/73e2d6bc24d8a067";
        assert_eq!(elb_target_group_of(tg), Some(tg));
        for not in [
            "arn:aws:elasticloadbalancing:us-west-2:123456789012:listener/app/lb/50dc6c495c0c9188/0467ef3c8400ae65",
            "arn:aws:elasticloadbalancing:us-west-2:123456789012:targetgroup/web",
            "arn:aws:lambda:us-west-2:123456789012:function:f",
            "http://127.0.0.1:1/",
        ] {
            assert_eq!(elb_target_group_of(not), None, "{not}");
        }
        let (_d, e, _s) = engine();
        let s = scope();
        let api = e
            .create_api(
                &s,
                ApiInput {
                    name: Some("a".into()),
                    protocol_type: Some("HTTP".into()),
                    ..ApiInput::default()
                },
            )
            .unwrap();
        let input = |uri: &str, conn: Option<&str>| IntegrationInput {
            integration_type: Some("HTTP_PROXY".into()),
            integration_uri: Some(uri.into()),
            integration_method: Some("ANY".into()),
            connection_type: conn.map(str::to_string),
            connection_id: conn.map(|_| "vl-1".to_string()),
            ..IntegrationInput::default()
        };
        let i = e.create_integration(&s, &api.api_id, input(tg, Some("VPC_LINK"))).unwrap();
        assert_eq!((i.connection_type.as_str(), i.connection_id.as_deref()), ("VPC_LINK", Some("vl-1")));
        let i = e.create_integration(&s, &api.api_id, input(tg, None)).unwrap();
        assert_eq!(i.connection_type, "INTERNET");
        let listener = "arn:aws:elasticloadbalancing:us-west-2:123456789012:listener/app/lb/50dc6c495c0c9188/0467ef3c8400ae65";
        assert!(matches!(
            e.create_integration(&s, &api.api_id, input(listener, Some("VPC_LINK"))),
            Err(Error::BadRequest(_))
        ));
        assert!(matches!(
            e.create_integration(&s, &api.api_id, input("http://h/", Some("VPC_LINK"))),
            Err(Error::BadRequest(_))
        ));
        assert!(matches!(
            e.create_integration(&s, &api.api_id, input(tg, Some("PRIVATE"))),
            Err(Error::BadRequest(_))
        ));
    }

    #[test]
    fn pagination() {
        let items: Vec<u32> = (0..5).collect();
        let (p, t) = page(&items, None, Some(2)).unwrap();
        assert_eq!((p, t.as_deref()), (vec![0, 1], Some("2")));
        let (p, t) = page(&items, Some("4"), Some(2)).unwrap();
        assert_eq!((p, t), (vec![4], None));
        assert!(page(&items, Some("x"), None).is_err());
    }
}
