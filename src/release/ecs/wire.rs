//! The JSON of an ECS call as it crosses the wire, read by SDK interceptors: the body of a
//! response before the SDK parses it into typed shapes, and the body of a request after the
//! SDK serialized it and before it is sent.
//!
//! Typed shapes only know the fields of the SDK the binary was built with; these bodies hold
//! every field, so a field the binary would drop can be caught before anything changes.

use std::sync::{Arc, Mutex};

use aws_sdk_ecs::config::interceptors::{
    AfterDeserializationInterceptorContextRef, BeforeTransmitInterceptorContextRef,
};
use aws_sdk_ecs::config::{ConfigBag, Intercept, RuntimeComponents};
use serde_json::Value;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Keeps the body of the response to one call.
#[derive(Debug, Clone, Default)]
pub struct ResponseBody {
    body: Arc<Mutex<Option<Value>>>,
}

impl ResponseBody {
    /// The body of the last response, if it was JSON.
    pub fn take(&self) -> Option<Value> {
        self.body.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

impl Intercept for ResponseBody {
    fn name(&self) -> &'static str {
        "gitlab-ecs-executor::ResponseBody"
    }

    // After deserialization the orchestrator has buffered the whole body in memory.
    fn read_after_deserialization(
        &self,
        context: &AfterDeserializationInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let parsed = context
            .response()
            .body()
            .bytes()
            .and_then(|b| serde_json::from_slice(b).ok());
        *self.body.lock().unwrap_or_else(|p| p.into_inner()) = parsed;
        Ok(())
    }
}

/// Records the body the SDK serialized for a request and stops the request there: what a
/// call would send, without sending it.
#[derive(Debug, Clone, Default)]
pub struct RequestPreview {
    body: Arc<Mutex<Option<Value>>>,
}

/// The message a previewed call fails with; the caller reads [`RequestPreview::body`].
const PREVIEWED: &str = "previewed: not sent";

impl RequestPreview {
    /// The body the SDK serialized, if the call got that far.
    pub fn body(&self) -> Option<Value> {
        self.body.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Intercept for RequestPreview {
    fn name(&self) -> &'static str {
        "gitlab-ecs-executor::RequestPreview"
    }

    // Runs once per call, before the retry loop: the stop below is never retried.
    fn read_after_serialization(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let body = context
            .request()
            .body()
            .bytes()
            .and_then(|b| serde_json::from_slice(b).ok());
        *self.body.lock().unwrap_or_else(|p| p.into_inner()) = body;
        Err(PREVIEWED.into())
    }
}
