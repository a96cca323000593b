//! How Step Functions tasks reach Lambda: the functions engine, in-process.
use nimbus_functions::{Error as FnError, FunctionsEngine, InvocationType, InvokeRequest};
use nimbus_model::Scope;
use nimbus_stepfunctions::{BoxFuture, LambdaInvocation, LambdaOutcome, TaskFailure, TaskInvoker};
use std::sync::Arc;

pub struct LambdaTasks(pub Arc<FunctionsEngine>);

impl TaskInvoker for LambdaTasks {
    fn invoke_lambda(&self, inv: LambdaInvocation) -> BoxFuture<'static, Result<LambdaOutcome, TaskFailure>> {
        let functions = self.0.clone();
        Box::pin(async move {
            let request_id = uuid::Uuid::new_v4().to_string();
            let req = InvokeRequest {
                scope: Scope::new(inv.account, inv.region),
                request_id: request_id.clone(),
                function: inv.function,
                qualifier: inv.qualifier,
                payload: inv.payload,
                invocation_type: if inv.asynchronous {
                    InvocationType::Event
                } else {
                    InvocationType::RequestResponse
                },
                tail_log: false,
                client_context: None,
            };
            match functions.invoke(req).await {
                Ok(r) => Ok(LambdaOutcome {
                    status: r.status,
                    payload: r.payload,
                    function_error: r.function_error.map(str::to_string),
                    executed_version: r.executed_version,
                    request_id,
                }),
                // Named as the Lambda exceptions Step Functions reports (`Lambda.<Exception>`).
                Err(e) => {
                    let error = match &e {
                        FnError::NotFound(_) => "Lambda.ResourceNotFoundException",
                        FnError::TooManyRequests { .. } => "Lambda.TooManyRequestsException",
                        FnError::InvalidParameter(_) | FnError::Validation(_) => {
                            "Lambda.InvalidParameterValueException"
                        }
                        FnError::RequestTooLarge(_) => "Lambda.RequestTooLargeException",
                        _ => "Lambda.ServiceException",
                    };
                    Err(TaskFailure { error: error.to_string(), cause: e.to_string() })
                }
            }
        })
    }
}
