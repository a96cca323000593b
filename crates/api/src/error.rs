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
    /// For `awsQueryCompatible` services (SQS): the error's code in the old query
    /// protocol, sent as `x-amzn-query-error: <code>;Sender|Receiver`. botocore maps its
    /// modelled exceptions through it.
    pub query_code: Option<&'static str>,
}

impl ApiError {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
            code,
            message: message.into(),
            fields: Vec::new(),
            query_code: None,
        }
    }
    /// Marks the error with its query-protocol code (see `query_code`).
    pub fn with_query_code(mut self, code: &'static str) -> ApiError {
        self.query_code = Some(code);
        self
    }
    /// The code a batch result's `Failed` entry carries: the query code where there is one.
    pub fn batch_code(&self) -> &'static str {
        self.query_code.unwrap_or(self.code)
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
        let query_code = self.query_code;
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
        if let Some(q) = query_code {
            let fault = if self.status.is_server_error() { "Receiver" } else { "Sender" };
            if let Ok(v) = HeaderValue::from_str(&format!("{q};{fault}")) {
                resp.headers_mut().insert("x-amzn-query-error", v);
            }
        }
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

impl From<nimbus_queues::Error> for ApiError {
    fn from(e: nimbus_queues::Error) -> ApiError {
        use nimbus_queues::Error as Q;
        // (JSON `__type` = the modelled shape name, query-protocol code)
        let (code, query) = match &e {
            Q::QueueDoesNotExist => ("QueueDoesNotExist", "AWS.SimpleQueueService.NonExistentQueue"),
            Q::QueueNameExists(_) => ("QueueNameExists", "QueueAlreadyExists"),
            Q::InvalidAttributeName(_) => ("InvalidAttributeName", "InvalidAttributeName"),
            Q::InvalidAttributeValue(_) => ("InvalidAttributeValue", "InvalidAttributeValue"),
            Q::InvalidParameterValue(_) => ("InvalidParameterValueException", "InvalidParameterValue"),
            Q::MissingParameter(_) => ("MissingParameter", "MissingParameter"),
            Q::InvalidMessageContents(_) => ("InvalidMessageContents", "InvalidMessageContents"),
            Q::ReceiptHandleIsInvalid(_) => ("ReceiptHandleIsInvalid", "ReceiptHandleIsInvalid"),
            Q::MessageNotInflight(_) => ("MessageNotInflight", "AWS.SimpleQueueService.MessageNotInflight"),
            Q::UnsupportedOperation(_) => {
                ("UnsupportedOperation", "AWS.SimpleQueueService.UnsupportedOperation")
            }
            Q::EmptyBatchRequest => ("EmptyBatchRequest", "AWS.SimpleQueueService.EmptyBatchRequest"),
            Q::TooManyEntriesInBatchRequest(_) => {
                ("TooManyEntriesInBatchRequest", "AWS.SimpleQueueService.TooManyEntriesInBatchRequest")
            }
            Q::BatchEntryIdsNotDistinct(_) => {
                ("BatchEntryIdsNotDistinct", "AWS.SimpleQueueService.BatchEntryIdsNotDistinct")
            }
            Q::InvalidBatchEntryId => ("InvalidBatchEntryId", "AWS.SimpleQueueService.InvalidBatchEntryId"),
            Q::BatchRequestTooLong(_) => {
                ("BatchRequestTooLong", "AWS.SimpleQueueService.BatchRequestTooLong")
            }
            Q::Store(_) | Q::Internal(_) => {
                tracing::error!("queues: {e}");
                return ApiError::new(500, "InternalFailure", e.to_string()).with_query_code("InternalError");
            }
        };
        ApiError::new(400, code, e.to_string()).with_query_code(query)
    }
}

impl From<nimbus_triggers::Error> for ApiError {
    fn from(e: nimbus_triggers::Error) -> ApiError {
        use nimbus_triggers::Error as T;
        match e {
            T::NotFound(m) => ApiError::not_found(m),
            T::InvalidParameter(m) => ApiError::invalid_parameter(m),
            T::Conflict(m) => ApiError::new(409, "ResourceConflictException", m),
            T::Functions(f) => f.into(),
            T::Store(s) => s.into(),
            T::Internal(m) => {
                tracing::error!("triggers: {m}");
                ApiError::new(500, "ServiceException", m)
            }
        }
    }
}

impl From<nimbus_eventbridge::Error> for ApiError {
    fn from(e: nimbus_eventbridge::Error) -> ApiError {
        use nimbus_eventbridge::Error as E;
        match e {
            E::NotFound(m) => ApiError::not_found(m),
            E::AlreadyExists(m) => ApiError::new(400, "ResourceAlreadyExistsException", m),
            E::Validation(m) => ApiError::validation(m),
            E::InvalidPattern(m) => ApiError::new(400, "InvalidEventPatternException", m),
            E::LimitExceeded(m) => ApiError::new(400, "LimitExceededException", m),
            E::Store(e) => e.into(),
            other => {
                tracing::error!("internal error: {other}");
                ApiError::new(500, "InternalException", other.to_string())
            }
        }
    }
}

impl From<nimbus_gateway::Error> for ApiError {
    fn from(e: nimbus_gateway::Error) -> ApiError {
        use nimbus_gateway::Error as G;
        match e {
            G::NotFound { resource, message } => {
                ApiError::new(404, "NotFoundException", message).with("ResourceType", resource)
            }
            G::BadRequest(m) => ApiError::new(400, "BadRequestException", m),
            G::Conflict(m) => ApiError::new(409, "ConflictException", m),
            G::Store(s) => s.into(),
            other => {
                tracing::error!("gateway internal error: {other}");
                ApiError::new(500, "InternalServerErrorException", other.to_string())
            }
        }
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

impl From<nimbus_registry::RegistryError> for ApiError {
    fn from(e: nimbus_registry::RegistryError) -> ApiError {
        use nimbus_registry::RegistryError as R;
        let message = e.to_string();
        let code = match e {
            R::RepositoryNotFound(_) => "RepositoryNotFoundException",
            R::RepositoryAlreadyExists(_) => "RepositoryAlreadyExistsException",
            R::RepositoryNotEmpty(_) => "RepositoryNotEmptyException",
            R::ImageNotFound(_) => "ImageNotFoundException",
            R::ImageAlreadyExists(_) => "ImageAlreadyExistsException",
            R::ImageTagAlreadyExists(_) => "ImageTagAlreadyExistsException",
            R::ImageDigestDoesNotMatch(_) => "ImageDigestDoesNotMatchException",
            R::LayersNotFound(_) => "LayersNotFoundException",
            R::ReferencedImagesNotFound(_) => "ReferencedImagesNotFoundException",
            R::LifecyclePolicyNotFound(_) => "LifecyclePolicyNotFoundException",
            R::RepositoryPolicyNotFound(_) => "RepositoryPolicyNotFoundException",
            R::LifecyclePolicyPreviewNotFound(_) => "LifecyclePolicyPreviewNotFoundException",
            R::InvalidParameter(_) => "InvalidParameterException",
            R::InvalidTagParameter(_) => "InvalidTagParameterException",
            R::TooManyTags(_) => "TooManyTagsException",
            R::UploadNotFound(_) => "UploadNotFoundException",
            R::InvalidLayer(_) => "InvalidLayerException",
            R::LayerAlreadyExists(_) => "LayerAlreadyExistsException",
            R::EmptyUpload(_) => "EmptyUploadException",
            R::InvalidLayerPart { registry_id, repository, upload_id, last_valid_byte_received, .. } => {
                return ApiError::new(400, "InvalidLayerPartException", message)
                    .with("registryId", registry_id)
                    .with("repositoryName", repository)
                    .with("uploadId", upload_id)
                    .with("lastValidByteReceived", last_valid_byte_received);
            }
            R::Store(s) => return s.into(),
            R::Images(_) | R::Internal(_) => {
                tracing::error!("ecr: {message}");
                return ApiError::new(500, "ServerException", message);
            }
        };
        ApiError::new(400, code, message)
    }
}

impl From<nimbus_containers::Error> for ApiError {
    fn from(e: nimbus_containers::Error) -> ApiError {
        use nimbus_containers::Error as E;
        let message = e.to_string();
        let code = match e {
            E::Client(_) => "ClientException",
            E::InvalidParameter(_) => "InvalidParameterException",
            E::ClusterNotFound(_) => "ClusterNotFoundException",
            E::ServiceNotFound(_) => "ServiceNotFoundException",
            E::ServiceNotActive(_) => "ServiceNotActiveException",
            E::ClusterContainsServices(_) => "ClusterContainsServicesException",
            E::ClusterContainsTasks(_) => "ClusterContainsTasksException",
            E::ClusterContainsContainerInstances(_) => "ClusterContainsContainerInstancesException",
            E::PlatformUnknown(_) => "PlatformUnknownException",
            E::UnsupportedFeature(_) => "UnsupportedFeatureException",
            E::ResourceNotFound(_) => "ResourceNotFoundException",
            E::TargetNotFound(_) => "TargetNotFoundException",
            E::Conflict { resource_ids, .. } => {
                let mut err = ApiError::new(400, "ConflictException", message);
                err.fields.push(("resourceIds", json!(resource_ids)));
                return err;
            }
            E::Store(store) => return store.into(),
            E::Internal(_) => {
                tracing::error!("ecs: {message}");
                return ApiError::new(500, "ServerException", message);
            }
        };
        ApiError::new(400, code, message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_compatible_errors_carry_the_query_code_header() {
        let resp = ApiError::from(nimbus_queues::Error::QueueDoesNotExist).render(Protocol::Json);
        assert_eq!(resp.status(), 400);
        assert_eq!(
            resp.headers().get("x-amzn-query-error").and_then(|v| v.to_str().ok()),
            Some("AWS.SimpleQueueService.NonExistentQueue;Sender")
        );
        assert_eq!(
            resp.headers().get("x-amzn-errortype").and_then(|v| v.to_str().ok()),
            Some("QueueDoesNotExist")
        );
        // Other services' errors have no such header.
        let plain = ApiError::validation("x").render(Protocol::Json);
        assert!(plain.headers().get("x-amzn-query-error").is_none());
        let internal = ApiError::from(nimbus_queues::Error::Internal("boom".into())).render(Protocol::Json);
        assert_eq!(
            internal.headers().get("x-amzn-query-error").and_then(|v| v.to_str().ok()),
            Some("InternalError;Receiver")
        );
    }
}
