//! AWS errors, and the one place engine errors become them.
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use nimbus_functions::Error as FnError;
use nimbus_model::ValidationError;
use serde_json::{Map, Value, json};

/// How the calling protocol expects errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// REST-JSON (Lambda): `x-amzn-ErrorType` header, `{"Type":"User","message":…}`.
    RestJson,
    /// JSON 1.0/1.1: `{"__type": code, "message": …}`.
    Json,
}

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Extra members of the error shape (e.g. `Reason`).
    pub fields: Vec<(&'static str, Value)>,
}

impl ApiError {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
            code,
            message: message.into(),
            fields: Vec::new(),
        }
    }
    pub fn with(mut self, key: &'static str, value: impl Into<Value>) -> ApiError {
        self.fields.push((key, value.into()));
        self
    }
    pub fn not_found(msg: impl Into<String>) -> ApiError {
        ApiError::new(404, "ResourceNotFoundException", msg)
    }
    pub fn invalid_parameter(msg: impl Into<String>) -> ApiError {
        ApiError::new(400, "InvalidParameterValueException", msg)
    }
    /// `InvalidParameterException` (the JSON services' spelling; Lambda says `…Value…`).
    pub fn invalid_parameter_exception(msg: impl Into<String>) -> ApiError {
        ApiError::new(400, "InvalidParameterException", msg)
    }
    pub fn validation(msg: impl Into<String>) -> ApiError {
        ApiError::new(400, "ValidationException", msg)
    }

    /// Lambda's models spell the message member `message` for some errors and
    /// `Message` for others; botocore reads the modeled one.
    fn message_key(&self) -> &'static str {
        const LOWER: &[&str] = &[
            "InvalidParameterValueException",
            "InvalidRequestContentException",
            "PreconditionFailedException",
            "RequestTooLargeException",
            "ResourceConflictException",
            "TooManyRequestsException",
            "UnsupportedMediaTypeException",
            "ResourceNotReadyException",
            "CodeStorageExceededException",
            "PolicyLengthExceededException",
            "ProvisionedConcurrencyConfigNotFoundException",
            "SerializedRequestEntityTooLargeException",
            "ValidationException",
        ];
        if LOWER.contains(&self.code) { "message" } else { "Message" }
    }

    pub fn render(self, protocol: Protocol) -> Response {
        let mut body = Map::new();
        match protocol {
            Protocol::RestJson => {
                let kind = if self.status.is_server_error() { "Service" } else { "User" };
                body.insert("Type".into(), json!(kind));
                body.insert(self.message_key().into(), json!(self.message));
            }
            Protocol::Json => {
                body.insert("__type".into(), json!(self.code));
                body.insert("message".into(), json!(self.message));
            }
        }
        for (k, v) in self.fields {
            body.insert(k.into(), v);
        }
        let content_type = match protocol {
            Protocol::RestJson => "application/json",
            Protocol::Json => "application/x-amz-json-1.1",
        };
        let mut resp =
            (self.status, [("content-type", content_type)], Value::Object(body).to_string()).into_response();
        resp.headers_mut().insert("x-amzn-errortype", HeaderValue::from_static(self.code));
        resp
    }
}

impl From<ValidationError> for ApiError {
    fn from(e: ValidationError) -> ApiError {
        match e {
            ValidationError::Constraint { .. } => ApiError::validation(e.to_string()),
            ValidationError::InvalidParameter(m) => ApiError::invalid_parameter(m),
        }
    }
}

impl From<FnError> for ApiError {
    fn from(e: FnError) -> ApiError {
        match e {
            FnError::NotFound(m) => ApiError::not_found(m),
            FnError::ProvisionedConfigNotFound(m) => {
                ApiError::new(404, "ProvisionedConcurrencyConfigNotFoundException", m)
            }
            FnError::Conflict(m) => ApiError::new(409, "ResourceConflictException", m),
            FnError::InvalidParameter(m) => ApiError::invalid_parameter(m),
            FnError::Validation(v) => v.into(),
            FnError::PreconditionFailed(m) => ApiError::new(412, "PreconditionFailedException", m),
            FnError::TooManyRequests { reason, message } => {
                ApiError::new(429, "TooManyRequestsException", message).with("Reason", reason)
            }
            FnError::RequestTooLarge(m) => ApiError::new(413, "RequestTooLargeException", m),
            other => {
                tracing::error!("internal error: {other}");
                ApiError::new(500, "ServiceException", other.to_string())
            }
        }
    }
}

impl From<nimbus_store::StoreError> for ApiError {
    fn from(e: nimbus_store::StoreError) -> ApiError {
        tracing::error!("store error: {e}");
        ApiError::new(500, "ServiceUnavailableException", e.to_string())
    }
}

impl From<nimbus_stepfunctions::Error> for ApiError {
    fn from(e: nimbus_stepfunctions::Error) -> ApiError {
        use nimbus_stepfunctions::Error as Sfn;
        let message = e.to_string();
        let code = match e {
            Sfn::InvalidDefinition(_) => "InvalidDefinition",
            Sfn::InvalidName(_) => "InvalidName",
            Sfn::InvalidArn(_) => "InvalidArn",
            Sfn::InvalidExecutionInput(_) => "InvalidExecutionInput",
            Sfn::InvalidOutput(_) => "InvalidOutput",
            Sfn::InvalidToken(_) => "InvalidToken",
            Sfn::InvalidLoggingConfiguration(_) => "InvalidLoggingConfiguration",
            Sfn::StateMachineAlreadyExists(_) => "StateMachineAlreadyExists",
            Sfn::StateMachineDoesNotExist(_) => "StateMachineDoesNotExist",
            Sfn::StateMachineTypeNotSupported(_) => "StateMachineTypeNotSupported",
            Sfn::ExecutionDoesNotExist(_) => "ExecutionDoesNotExist",
            Sfn::ExecutionAlreadyExists(_) => "ExecutionAlreadyExists",
            Sfn::TaskDoesNotExist(_) => "TaskDoesNotExist",
            Sfn::ResourceNotFound(_) => "ResourceNotFound",
            Sfn::TooManyTags(_) => "TooManyTags",
            Sfn::Validation(_) => "ValidationException",
            Sfn::Store(store) => return store.into(),
            Sfn::Internal(_) => {
                tracing::error!("step functions: {message}");
                return ApiError::new(500, "InternalServerError", message);
            }
        };
        ApiError::new(400, code, message)
    }
}
