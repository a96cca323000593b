//! Function URL configurations: which URL id invokes which function (or alias), with
//! which auth type and CORS settings. Serving the URLs is the API layer's job.
use crate::Error;
use crate::engine::FunctionsEngine;
use nimbus_model::{Cors, FunctionUrlConfig, Scope};
use std::sync::Arc;

pub(crate) const URL_CONFIGS: &str = "lambda.url-configs";

fn check_auth_type(auth_type: &str) -> Result<(), Error> {
    if auth_type == "NONE" || auth_type == "AWS_IAM" {
        return Ok(());
    }
    Err(Error::Validation(nimbus_model::ValidationError::Constraint {
        field: "authType",
        value: auth_type.to_string(),
        constraint: "Member must satisfy enum value set: [NONE, AWS_IAM]".into(),
    }))
}

fn check_invoke_mode(mode: &str) -> Result<(), Error> {
    match mode {
        "BUFFERED" => Ok(()),
        "RESPONSE_STREAM" => Err(Error::InvalidParameter(
            "InvokeMode RESPONSE_STREAM is not supported by this Nimbus build yet.".into(),
        )),
        other => Err(Error::Validation(nimbus_model::ValidationError::Constraint {
            field: "invokeMode",
            value: other.to_string(),
            constraint: "Member must satisfy enum value set: [BUFFERED, RESPONSE_STREAM]".into(),
        })),
    }
}

impl FunctionsEngine {
    fn url_target(
        &self,
        scope: &Scope,
        function: &str,
        qualifier: Option<&str>,
    ) -> Result<(String, String, String, Option<String>), Error> {
        let c = self.get_function(scope, function, None)?;
        let qualifier = match qualifier {
            Some(q) => Some(q.to_string()),
            None => nimbus_model::FunctionRef::parse(function)?.qualifier,
        }
        .filter(|q| q != "$LATEST");
        if let Some(q) = &qualifier {
            if q.chars().all(|ch| ch.is_ascii_digit()) {
                return Err(Error::InvalidParameter(
                    "Function URLs can be created on an alias or $LATEST, not on a version.".into(),
                ));
            }
            self.get_alias(scope, function, q)?;
        }
        Ok((c.account.clone(), c.region.clone(), c.name.clone(), qualifier))
    }

    fn find_url(
        &self,
        account: &str,
        region: &str,
        name: &str,
        qualifier: &Option<String>,
    ) -> Option<Arc<FunctionUrlConfig>> {
        self.url_configs()
            .read()
            .values()
            .find(|u| {
                u.account == account
                    && u.region == region
                    && u.function_name == name
                    && &u.qualifier == qualifier
            })
            .cloned()
    }

    fn save_url(&self, config: FunctionUrlConfig) -> Result<Arc<FunctionUrlConfig>, Error> {
        let bytes = serde_json::to_vec(&config).map_err(|e| Error::Internal(e.to_string()))?;
        self.store().put(URL_CONFIGS, &config.url_id, &bytes)?;
        let config = Arc::new(config);
        self.url_configs().write().insert(config.url_id.clone(), config.clone());
        Ok(config)
    }

    pub fn create_url_config(
        &self,
        scope: &Scope,
        function: &str,
        qualifier: Option<&str>,
        auth_type: &str,
        cors: Option<Cors>,
        invoke_mode: Option<&str>,
    ) -> Result<Arc<FunctionUrlConfig>, Error> {
        check_auth_type(auth_type)?;
        let invoke_mode = invoke_mode.unwrap_or("BUFFERED");
        check_invoke_mode(invoke_mode)?;
        let (account, region, name, qualifier) = self.url_target(scope, function, qualifier)?;
        if let Some(existing) = self.find_url(&account, &region, &name, &qualifier) {
            return Err(Error::Conflict(format!(
                "Failed to create function url config for [functionArn = {}]. Error message:  FunctionUrlConfig exists for this Lambda function",
                existing.function_arn()
            )));
        }
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        // 32 lowercase alphanumerics, like AWS's URL ids.
        let url_id: String = (0..32).map(|_| fastrand::alphanumeric().to_ascii_lowercase()).collect();
        self.save_url(FunctionUrlConfig {
            url_id,
            account,
            region,
            function_name: name,
            qualifier,
            auth_type: auth_type.to_string(),
            cors,
            invoke_mode: invoke_mode.to_string(),
            creation_time: now.clone(),
            last_modified_time: now,
        })
    }

    pub fn get_url_config(
        &self,
        scope: &Scope,
        function: &str,
        qualifier: Option<&str>,
    ) -> Result<Arc<FunctionUrlConfig>, Error> {
        let (account, region, name, qualifier) = self.url_target(scope, function, qualifier)?;
        self.find_url(&account, &region, &name, &qualifier)
            .ok_or_else(|| Error::NotFound("The resource you requested does not exist.".into()))
    }

    pub fn update_url_config(
        &self,
        scope: &Scope,
        function: &str,
        qualifier: Option<&str>,
        auth_type: Option<&str>,
        cors: Option<Cors>,
        invoke_mode: Option<&str>,
    ) -> Result<Arc<FunctionUrlConfig>, Error> {
        let mut config = (*self.get_url_config(scope, function, qualifier)?).clone();
        if let Some(a) = auth_type {
            check_auth_type(a)?;
            config.auth_type = a.to_string();
        }
        if let Some(m) = invoke_mode {
            check_invoke_mode(m)?;
            config.invoke_mode = m.to_string();
        }
        if cors.is_some() {
            config.cors = cors;
        }
        config.last_modified_time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        self.save_url(config)
    }

    pub fn delete_url_config(
        &self,
        scope: &Scope,
        function: &str,
        qualifier: Option<&str>,
    ) -> Result<(), Error> {
        let config = self.get_url_config(scope, function, qualifier)?;
        self.store().delete(URL_CONFIGS, &config.url_id)?;
        self.url_configs().write().remove(&config.url_id);
        Ok(())
    }

    pub fn list_url_configs(
        &self,
        scope: &Scope,
        function: &str,
    ) -> Result<Vec<Arc<FunctionUrlConfig>>, Error> {
        let c = self.get_function(scope, function, None)?;
        let mut out: Vec<_> = self
            .url_configs()
            .read()
            .values()
            .filter(|u| u.account == c.account && u.region == c.region && u.function_name == c.name)
            .cloned()
            .collect();
        out.sort_by(|a, b| a.qualifier.cmp(&b.qualifier));
        Ok(out)
    }

    /// The data plane's lookup: which function a URL id invokes.
    pub fn url_config_by_id(&self, url_id: &str) -> Option<Arc<FunctionUrlConfig>> {
        self.url_configs().read().get(url_id).cloned()
    }
}
