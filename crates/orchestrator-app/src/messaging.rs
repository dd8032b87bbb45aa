//! Messages between droplets through the orchestrator: `POST /send` to one
//! droplet, `POST /broadcast` to many.

use std::sync::Arc;

use futures_util::StreamExt;
use orchestrator_domain::{Caller, Capability, DropletId, DropletStatus, Permission, ValidationError};
use orchestrator_ports::{Dispatcher, DropletFilter, DropletReply, OutgoingMessage, SendError};
use serde_json::Value;
use uuid::Uuid;

use crate::authz::require;
use crate::{AppError, AppResult, Ports};

/// Droplets a broadcast sends to at once.
const BROADCAST_IN_FLIGHT: usize = 16;
/// Longest `message_type`.
const MAX_MESSAGE_TYPE_CHARS: usize = 50;

/// What a caller asks to send.
#[derive(Debug, Clone, PartialEq)]
pub struct MessageRequest {
    pub message_type: String,
    pub payload: Value,
    pub trace_id: Uuid,
}

/// How a broadcast went for one droplet.
#[derive(Debug, Clone, PartialEq)]
pub struct BroadcastOutcome {
    pub droplet_id: DropletId,
    pub outcome: Reached,
    /// The HTTP status it answered with, if it answered.
    pub status: Option<u16>,
    /// Why it could not be reached.
    pub error: Option<String>,
}

/// What became of a message to one droplet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reached {
    /// The droplet answered 2xx.
    Delivered,
    /// It answered otherwise.
    Refused,
    Unreachable,
    /// It did not answer within the send timeout.
    Timeout,
}

#[derive(Clone)]
pub struct MessagingService {
    ports: Ports,
    dispatcher: Arc<dyn Dispatcher>,
}

impl std::fmt::Debug for MessagingService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MessagingService")
    }
}

impl MessagingService {
    pub fn new(ports: Ports, dispatcher: Arc<dyn Dispatcher>) -> Self {
        MessagingService { ports, dispatcher }
    }

    /// Forwards a message to one droplet and returns its answer.
    pub async fn send(
        &self,
        caller: &Caller,
        target: DropletId,
        request: MessageRequest,
    ) -> AppResult<DropletReply> {
        require(caller, Permission::Write)?;
        let message = outgoing(request)?;
        let droplet = self.ports.droplets.get_droplet(target).await?;
        self.dispatcher
            .send_message(&droplet, &message)
            .await
            .map_err(|err| match err {
                SendError::Unreachable(m) => AppError::DropletUnreachable(m),
                SendError::TimedOut(m) => AppError::DropletTimedOut(m),
                SendError::Refused(m) => AppError::DropletEndpointRefused(m),
                SendError::ReplyTooLarge { message, .. } => AppError::DropletReplyTooLarge(message),
            })
    }

    /// Sends a message to every active droplet (with `capability`, when
    /// given) at once, and reports how it went for each.
    pub async fn broadcast(
        &self,
        caller: &Caller,
        capability: Option<Capability>,
        request: MessageRequest,
    ) -> AppResult<Vec<BroadcastOutcome>> {
        require(caller, Permission::Admin)?;
        let message = outgoing(request)?;
        let filter = DropletFilter {
            status: Some(DropletStatus::Active),
            capability,
        };
        let droplets = self.ports.droplets.list_droplets(&filter).await?;
        let message = &message;
        let mut outcomes: Vec<BroadcastOutcome> = futures_util::stream::iter(droplets)
            .map(|droplet| async move {
                let sent = self.dispatcher.send_message(&droplet, message).await;
                outcome(droplet.droplet_id, sent)
            })
            .buffer_unordered(BROADCAST_IN_FLIGHT)
            .collect()
            .await;
        outcomes.sort_by_key(|o| o.droplet_id);
        Ok(outcomes)
    }
}

fn outgoing(request: MessageRequest) -> AppResult<OutgoingMessage> {
    let kind = request.message_type.trim();
    let valid = !kind.is_empty()
        && kind.chars().count() <= MAX_MESSAGE_TYPE_CHARS
        && kind
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.');
    if !valid {
        return Err(ValidationError::new(
            "message_type",
            format!("must be 1 to {MAX_MESSAGE_TYPE_CHARS} letters, digits, '_', '-' or '.'"),
        )
        .into());
    }
    Ok(OutgoingMessage {
        trace_id: request.trace_id,
        message_type: kind.to_owned(),
        payload: request.payload,
    })
}

fn outcome(droplet_id: DropletId, sent: Result<DropletReply, SendError>) -> BroadcastOutcome {
    let (outcome, status, error) = match sent {
        Ok(reply) => (answered(reply.status), Some(reply.status), None),
        // What a broadcast reports of an answer is its status: a long one was delivered all the same.
        Err(SendError::ReplyTooLarge { status, message }) => (answered(status), Some(status), Some(message)),
        Err(SendError::Unreachable(m) | SendError::Refused(m)) => (Reached::Unreachable, None, Some(m)),
        Err(SendError::TimedOut(m)) => (Reached::Timeout, None, Some(m)),
    };
    BroadcastOutcome {
        droplet_id,
        outcome,
        status,
        error,
    }
}

fn answered(status: u16) -> Reached {
    if (200..300).contains(&status) {
        Reached::Delivered
    } else {
        Reached::Refused
    }
}
