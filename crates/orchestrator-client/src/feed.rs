//! The live feeds (`/ws/tasks`, `/ws/droplets`): one [`FeedEvent`] per
//! committed change, in commit order for any one task.

use futures_util::StreamExt;
use serde_json::Value;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{self, Message};

use crate::{Client, ClientError};

pub use orchestrator_api::feeds::{FeedEvent, FeedKind, FeedQuery as FeedFilter, FeedStatus};

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// An open feed. Pings are answered while [`Subscription::next`] is polled,
/// so a subscriber that stops reading is eventually dropped by the server.
#[derive(Debug)]
pub struct Subscription {
    socket: Socket,
    url: String,
}

impl Subscription {
    /// The next event; `None` once the server has closed the feed.
    pub async fn next(&mut self) -> Option<Result<FeedEvent, ClientError>> {
        loop {
            let message = match self.socket.next().await? {
                Ok(message) => message,
                Err(e) => return Some(Err(feed_error(&self.url, &e))),
            };
            match message {
                Message::Text(text) => return Some(self.decode(text.as_str())),
                Message::Close(frame) => return closed(&self.url, frame),
                // Pongs are queued by tungstenite and flushed on the next poll.
                Message::Ping(_) | Message::Pong(_) | Message::Binary(_) | Message::Frame(_) => {}
            }
        }
    }

    fn decode(&self, text: &str) -> Result<FeedEvent, ClientError> {
        serde_json::from_str(text).map_err(|e| ClientError::Decode {
            url: self.url.clone(),
            message: format!("feed frame is not an event: {e}"),
        })
    }
}

/// A normal close ends the feed; any other code says why it was cut.
fn closed(
    url: &str,
    frame: Option<tungstenite::protocol::CloseFrame>,
) -> Option<Result<FeedEvent, ClientError>> {
    use tungstenite::protocol::frame::coding::CloseCode;
    let frame = frame?;
    if frame.code == CloseCode::Normal || frame.code == CloseCode::Away {
        return None;
    }
    Some(Err(ClientError::Transport {
        url: url.to_owned(),
        message: format!(
            "the feed was closed ({}): {}",
            u16::from(frame.code),
            frame.reason
        ),
    }))
}

impl Client {
    /// Follows a live feed with the client's token, sent as a bearer header.
    pub async fn subscribe(&self, kind: FeedKind, filter: &FeedFilter) -> Result<Subscription, ClientError> {
        let url = self.feed_url(kind, filter)?;
        let mut request = url
            .as_str()
            .into_client_request()
            .map_err(|_| ClientError::InvalidUrl(url.clone()))?;
        if let Some(token) = &self.token {
            let value = HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|_| ClientError::InvalidUrl("the token is not a valid header value".into()))?;
            request.headers_mut().insert("authorization", value);
        }
        let (socket, _) = tokio_tungstenite::connect_async(request)
            .await
            .map_err(|e| refusal(&url, e))?;
        Ok(Subscription { socket, url })
    }

    /// The feeds' connections, per feed and per caller, and their traffic (`read`).
    pub async fn feed_status(&self) -> Result<FeedStatus, ClientError> {
        self.send(reqwest::Method::GET, "/ws/status", None::<&()>).await
    }

    fn feed_url(&self, kind: FeedKind, filter: &FeedFilter) -> Result<String, ClientError> {
        let base = if let Some(rest) = self.base.strip_prefix("https://") {
            format!("wss://{rest}")
        } else {
            format!("ws://{}", self.base.trim_start_matches("http://"))
        };
        let query = serde_urlencoded(filter)?;
        let separator = if query.is_empty() { "" } else { "?" };
        Ok(format!("{base}{}{separator}{query}", kind.path()))
    }
}

fn serde_urlencoded(filter: &FeedFilter) -> Result<String, ClientError> {
    let value = serde_json::to_value(filter).map_err(|e| ClientError::InvalidUrl(e.to_string()))?;
    let pairs = value.as_object().into_iter().flatten().map(|(key, value)| {
        let text = match value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        format!("{key}={}", percent_encode(&text))
    });
    Ok(pairs.collect::<Vec<_>>().join("&"))
}

/// `text` with every byte but the unreserved ones of RFC 3986 percent-encoded.
pub(crate) fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// A refused upgrade carries the API's error body; anything else is transport.
fn refusal(url: &str, err: tungstenite::Error) -> ClientError {
    match err {
        tungstenite::Error::Http(response) => {
            let status = response.status().as_u16();
            let body = response
                .body()
                .as_deref()
                .and_then(|bytes| serde_json::from_slice::<Value>(bytes).ok())
                .map_or(Value::Null, crate::payload_of);
            crate::api_error(status, body)
        }
        other => feed_error(url, &other),
    }
}

fn feed_error(url: &str, err: &tungstenite::Error) -> ClientError {
    ClientError::Transport {
        url: url.to_owned(),
        message: err.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn feed_urls_carry_the_filters() {
        let client = Client::new("http://localhost:8000").expect("client");
        let filter = FeedFilter {
            capability: Some("a b".into()),
            droplet_id: Some(7),
            ..FeedFilter::default()
        };
        assert_eq!(
            client.feed_url(FeedKind::Tasks, &filter).ok().as_deref(),
            Some("ws://localhost:8000/ws/tasks?capability=a%20b&droplet_id=7")
        );
        let secure = Client::new("https://o.example").expect("client");
        assert_eq!(
            secure
                .feed_url(FeedKind::Droplets, &FeedFilter::default())
                .ok()
                .as_deref(),
            Some("wss://o.example/ws/droplets")
        );
    }

    #[test]
    fn task_events_carry_their_task() {
        let event: FeedEvent = serde_json::from_value(json!({
            "event": "droplet_registered", "data": {"id": 1}, "timestamp": "2026-01-01T00:00:00.000Z"
        }))
        .expect("event");
        assert_eq!(event.task(), None);
    }
}
