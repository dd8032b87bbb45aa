#![doc = include_str!("../README.md")]

pub mod concurrency;
pub mod droplets;
pub mod feed;
pub mod management;
pub mod messaging;
pub mod metrics;
pub mod public;
pub mod schedules;
pub mod worker;
pub mod workflows;

pub use droplets::{DropletCapabilities, DropletStatusChange};
pub use feed::{FeedEvent, FeedFilter, FeedKind, FeedStatus, Subscription};
pub use management::{
    BackgroundServices, CacheCleared, EmergencyStop, Environment, JobStatus, Reloaded, ShuttingDown,
    StoreKind, Version,
};
pub use messaging::{
    Broadcast, BroadcastMessage, BroadcastOutcome, DeliveryOutcome, DirectMessage, DropletCounts,
    DropletListing, Envelope, Message, MessageReply, Sent, SystemStatus, TaskCounts,
};
pub use metrics::{
    DropletHealth, DropletPerformance, Percentiles, Performance, PerformanceQuery, RangeQuery, RescueCounts,
    RoutingStats, StoreHealth, StoreStatus, Summary, SystemHealth, TaskPerformance, TaskTypes, Throughput,
    TimeRange, TypeBreakdown,
};
pub use orchestrator_api::error::ErrorCode;
pub use public::{
    Dependencies, Dependency, DependencyStatus, Readiness, ReadinessChecks, ServerCapabilities, ServerState,
    ServiceEndpoint, ServiceMetadata, StateCounts,
};
pub use worker::{
    Delivery, HANDED_BACK, HandlerResult, STOPPED_ON_REQUEST, Worker, WorkerBuilder, WorkerReport,
};

use orchestrator_api::droplets::{DropletList, DropletReply};
use orchestrator_api::envelope;
use orchestrator_api::error::ErrorBody;
pub use orchestrator_api::tasks::ProgressReport;
use orchestrator_api::tasks::{BatchCreated, RetryRequest, TaskBatch, TaskReply};
use orchestrator_domain::{
    Droplet, DropletId, HeartbeatReport, RegistrationDraft, ServiceHeartbeat, TaskDraft, TaskId,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::time::Duration;
use uuid::Uuid;

/// Why a call failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ClientError {
    /// The orchestrator answered with an error body.
    #[error("{status} {code}: {message}")]
    Api {
        status: u16,
        /// Such as `not_found`, `invalid_transition`, `stale_attempt`.
        code: String,
        message: String,
        details: Value,
    },
    /// The orchestrator could not be reached, or the connection failed.
    #[error("could not reach the orchestrator at {url}: {message}")]
    Transport { url: String, message: String },
    /// The answer was not what this client expects of that endpoint.
    #[error("unexpected answer from {url}: {message}")]
    Decode { url: String, message: String },
    #[error("invalid orchestrator URL {0:?}: give one such as http://localhost:8000")]
    InvalidUrl(String),
    /// The worker could not listen for pushed assignments.
    #[error("cannot listen on {address}: {message}")]
    Listen { address: String, message: String },
}

/// Times a creation is sent before its error is taken as the answer.
const CREATE_TRIES: u32 = 3;

impl ClientError {
    /// True when the request may have been applied or not: it got no
    /// answer, or a 5xx that does not say. Such a request may be sent again
    /// where the server takes a repeat as the same request.
    pub fn outcome_unknown(&self) -> bool {
        match self {
            ClientError::Transport { .. } => true,
            ClientError::Api { status, .. } => *status >= 500,
            _ => false,
        }
    }

    /// The error code of an API error, such as `not_found`.
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    /// The error code of an API error, as the API's type: codes this
    /// client does not know are [`ErrorCode::Other`].
    pub fn error_code(&self) -> Option<ErrorCode> {
        self.code().map(ErrorCode::from)
    }

    /// The HTTP status of an API error.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

pub use orchestrator_api::droplets::{DropletQuery, HeartbeatAck, Registered};
pub use orchestrator_api::public::Health;
pub use orchestrator_api::tasks::{
    Cancelled, PendingReason, StatusPatch as StatusUpdate, TaskBody as TaskRecord, TaskCreated, TaskPage,
    TaskQuery,
};
pub use orchestrator_api::tokens::{Token, TokenBody as TokenRequest};

/// A client of one orchestrator, with the caller's token.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Client {
    /// A client of the orchestrator at `base_url`, such as `http://localhost:8000`.
    pub fn new(base_url: &str) -> Result<Self, ClientError> {
        let base = base_url.trim().trim_end_matches('/');
        if !(base.starts_with("http://") || base.starts_with("https://")) || base.len() < 9 {
            return Err(ClientError::InvalidUrl(base_url.to_owned()));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(5))
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .map_err(|e| ClientError::InvalidUrl(format!("{base_url}: {e}")))?;
        Ok(Client {
            http,
            base: base.to_owned(),
            token: None,
        })
    }

    /// The same client, calling with `token` (a bearer token).
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    pub async fn health(&self) -> Result<Health, ClientError> {
        // 503 carries the same body: the store is down, not the orchestrator.
        self.public_either("/health").await
    }

    /// A public endpoint whose 503 carries the same body as its 200.
    async fn public_either<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let url = self.url(path);
        let response = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| transport(&url, &e))?;
        let body = read_json(&url, response).await?.1;
        decode(&url, body)
    }

    /// Asks the orchestrator to sign a token: needs an admin token, except
    /// on a server in `development`, where anyone may.
    pub async fn issue_token(&self, request: &TokenRequest) -> Result<Token, ClientError> {
        self.send(reqwest::Method::POST, "/token", Some(request)).await
    }

    /// Submits a task under a fresh `Idempotency-Key`, sent again with the
    /// same key while the outcome is unknown (no answer, or a 5xx), so that
    /// a retry never makes a second task.
    pub async fn create_task(&self, draft: &TaskDraft) -> Result<TaskCreated, ClientError> {
        self.send_once("/tasks", draft).await
    }

    /// Submits up to 1,000 tasks in one commit: all are created, or none
    /// (and the error names the first invalid one). The answers come in
    /// the order of `drafts`. Sent again like [`Client::create_task`].
    pub async fn create_tasks(&self, drafts: &[TaskDraft]) -> Result<Vec<TaskCreated>, ClientError> {
        let batch = TaskBatch {
            tasks: drafts.to_vec(),
        };
        let created: BatchCreated = self
            .send(reqwest::Method::POST, "/tasks/batch", Some(&batch))
            .await?;
        Ok(created.tasks)
    }

    pub async fn list_tasks(&self, query: &TaskQuery) -> Result<TaskPage, ClientError> {
        self.get_with("/tasks", query).await
    }

    /// The task with its history and, while pending, why it waits.
    pub async fn get_task(&self, id: TaskId) -> Result<TaskRecord, ClientError> {
        let reply: TaskReply = self
            .send(reqwest::Method::GET, &format!("/tasks/{id}"), None::<&()>)
            .await?;
        Ok(reply.task)
    }

    pub async fn update_status(&self, id: TaskId, update: &StatusUpdate) -> Result<TaskRecord, ClientError> {
        let reply: TaskReply = self
            .send(reqwest::Method::PATCH, &format!("/tasks/{id}"), Some(update))
            .await?;
        Ok(reply.task)
    }

    /// Cancels a task that is not running yet.
    pub async fn cancel_task(&self, id: TaskId) -> Result<Cancelled, ClientError> {
        self.send(reqwest::Method::DELETE, &format!("/tasks/{id}"), None::<&()>)
            .await
    }

    /// Asks the droplet running a task to stop it.
    pub async fn request_cancel(&self, id: TaskId) -> Result<TaskRecord, ClientError> {
        let path = format!("/tasks/{id}/cancel-request");
        let reply: TaskReply = self.send(reqwest::Method::POST, &path, None::<&()>).await?;
        Ok(reply.task)
    }

    /// Gives a failed task whose retries are spent one more attempt
    /// (`POST /tasks/{id}/retry`); `reason` goes in its history.
    pub async fn retry_task(&self, id: TaskId, reason: Option<&str>) -> Result<TaskRecord, ClientError> {
        let path = format!("/tasks/{id}/retry");
        let request = RetryRequest {
            reason: reason.map(str::to_owned),
        };
        let reply: TaskReply = self.send(reqwest::Method::POST, &path, Some(&request)).await?;
        Ok(reply.task)
    }

    /// Reports how far the droplet is with a task it runs (`POST
    /// /tasks/{id}/progress`): kept on the task, and it restarts the clock
    /// of the run's timeout.
    pub async fn report_progress(
        &self,
        id: TaskId,
        report: &ProgressReport,
    ) -> Result<TaskRecord, ClientError> {
        let path = format!("/tasks/{id}/progress");
        let reply: TaskReply = self.send(reqwest::Method::POST, &path, Some(report)).await?;
        Ok(reply.task)
    }

    pub async fn register(&self, draft: &RegistrationDraft) -> Result<Registered, ClientError> {
        self.send(reqwest::Method::POST, "/droplets/register", Some(draft))
            .await
    }

    pub async fn heartbeat(
        &self,
        id: DropletId,
        report: &HeartbeatReport,
    ) -> Result<HeartbeatAck, ClientError> {
        let path = format!("/droplets/{id}/heartbeat");
        self.send(reqwest::Method::POST, &path, Some(report)).await
    }

    /// A heartbeat in the mesh's dialect (`POST /heartbeat`): the droplet
    /// named by the Registry's `service_id`, by `droplet_id`, or, with
    /// neither, the caller's own.
    pub async fn service_heartbeat(&self, beat: &ServiceHeartbeat) -> Result<HeartbeatAck, ClientError> {
        self.send(reqwest::Method::POST, "/heartbeat", Some(beat)).await
    }

    /// The registered droplets that match `query`, by id.
    pub async fn list_droplets(&self, query: &DropletQuery) -> Result<Vec<Droplet>, ClientError> {
        let list: DropletList = self.get_with("/droplets", query).await?;
        Ok(list.droplets)
    }

    pub async fn get_droplet(&self, id: DropletId) -> Result<Droplet, ClientError> {
        let reply: DropletReply = self
            .send(reqwest::Method::GET, &format!("/droplets/{id}"), None::<&()>)
            .await?;
        Ok(reply.droplet)
    }

    /// A public endpoint: no token sent, no envelope expected.
    pub(crate) async fn public<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let url = self.url(path);
        self.call(self.http.get(&url), &url).await
    }

    /// A `GET` with a query string (`query` serialized as its parameters).
    pub(crate) async fn get_with<Q: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        query: &Q,
    ) -> Result<T, ClientError> {
        let url = self.url(path);
        let request = self.authorized(self.http.get(&url).query(query));
        self.call(request, &url).await
    }

    /// A `GET` answered with text, not JSON: the body as it came. An error
    /// answer is still read as the API's JSON error body.
    pub(crate) async fn text(&self, path: &str) -> Result<String, ClientError> {
        let url = self.url(path);
        let response = self
            .authorized(self.http.get(&url))
            .send()
            .await
            .map_err(|e| transport(&url, &e))?;
        let status = response.status().as_u16();
        if (200..300).contains(&status) {
            return response.text().await.map_err(|e| transport(&url, &e));
        }
        let bytes = response.bytes().await.map_err(|e| transport(&url, &e))?;
        let body = serde_json::from_slice(&bytes).map_or(Value::Null, payload_of);
        Err(api_error(status, body))
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub(crate) fn authorized(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    pub(crate) async fn send<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        let url = self.url(path);
        let mut request = self.authorized(self.http.request(method, &url));
        if let Some(body) = body {
            request = request.json(body);
        }
        self.call(request, &url).await
    }

    /// POSTs `body` under a fresh `Idempotency-Key`, again with the same key
    /// while the outcome is unknown.
    async fn send_once<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let url = self.url(path);
        let key = Uuid::new_v4().to_string();
        let mut wait = Duration::from_millis(200);
        for _ in 1..CREATE_TRIES {
            let request = self.http.post(&url).header("Idempotency-Key", &key).json(body);
            match self.call(self.authorized(request), &url).await {
                Err(err) if err.outcome_unknown() => {
                    tokio::time::sleep(wait).await;
                    wait *= 4;
                }
                answered => return answered,
            }
        }
        let request = self.http.post(&url).header("Idempotency-Key", &key).json(body);
        self.call(self.authorized(request), &url).await
    }

    pub(crate) async fn call<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
        url: &str,
    ) -> Result<T, ClientError> {
        let response = request.send().await.map_err(|e| transport(url, &e))?;
        let (status, body) = read_json(url, response).await?;
        let payload = payload_of(body);
        if !(200..300).contains(&status) {
            return Err(api_error(status, payload));
        }
        decode(url, payload)
    }
}

fn transport(url: &str, err: &reqwest::Error) -> ClientError {
    ClientError::Transport {
        url: url.to_owned(),
        message: err.to_string(),
    }
}

async fn read_json(url: &str, response: reqwest::Response) -> Result<(u16, Value), ClientError> {
    let status = response.status().as_u16();
    let bytes = response.bytes().await.map_err(|e| transport(url, &e))?;
    if bytes.is_empty() {
        return Ok((status, Value::Null));
    }
    let body = serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode {
        url: url.to_owned(),
        message: format!("status {status}, body not JSON: {e}"),
    })?;
    Ok((status, body))
}

/// The payload of an envelope; any other body (a public endpoint's) as it is.
pub(crate) fn payload_of(body: Value) -> Value {
    envelope::open(body).0
}

/// The error of an answer with `status`, read from its error body; a body
/// that is not one still gives an error, of code `unknown`.
pub(crate) fn api_error(status: u16, payload: Value) -> ClientError {
    let Ok(ErrorBody { error }) = serde_json::from_value(payload) else {
        return ClientError::Api {
            status,
            code: "unknown".to_owned(),
            message: format!("HTTP {status}"),
            details: Value::Null,
        };
    };
    let message = if error.message.is_empty() {
        format!("HTTP {status}")
    } else {
        error.message
    };
    ClientError::Api {
        status,
        code: error.code.as_str().to_owned(),
        message,
        details: error.details,
    }
}

fn decode<T: DeserializeOwned>(url: &str, payload: Value) -> Result<T, ClientError> {
    serde_json::from_value(payload).map_err(|e| ClientError::Decode {
        url: url.to_owned(),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn errors_are_read_from_the_envelope_or_bare() {
        let enveloped = json!({"udc_version": "1.0", "payload": {"error": {"code": "not_found", "message": "task 9 not found", "details": {"id": 9}}}});
        let error = api_error(404, payload_of(enveloped));
        assert_eq!((error.status(), error.code()), (Some(404), Some("not_found")));
        assert_eq!(error.error_code(), Some(ErrorCode::NotFound));
        let bare = api_error(
            503,
            json!({"error": {"code": "store_unavailable", "message": "m", "details": null}}),
        );
        assert_eq!(bare.code(), Some("store_unavailable"));
        assert_eq!(api_error(502, Value::Null).code(), Some("unknown"));
        let newer = api_error(418, json!({"error": {"code": "teapot"}}));
        assert_eq!(
            (newer.error_code(), newer.to_string()),
            (
                Some(ErrorCode::Other("teapot".into())),
                "418 teapot: HTTP 418".to_owned()
            )
        );
    }

    #[test]
    fn only_http_urls_make_a_client() {
        assert!(Client::new("http://localhost:8000/").is_ok());
        assert_eq!(
            Client::new("http://localhost:8000/").map(|c| c.base_url().to_owned()),
            Ok("http://localhost:8000".to_owned())
        );
        assert!(matches!(
            Client::new("localhost:8000"),
            Err(ClientError::InvalidUrl(_))
        ));
    }
}
