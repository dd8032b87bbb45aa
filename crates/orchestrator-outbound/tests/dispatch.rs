//! The dispatcher against real HTTP servers: endpoints on this host refused
//! before anything is sent, redirects not followed, answers read up to a
//! bound whether or not their length is declared.

use std::time::Duration;

use orchestrator_domain::{Droplet, DropletStatus, EndpointPolicy, Task};
use orchestrator_outbound::{DispatchLimits, HttpDispatcher};
use orchestrator_ports::{Dispatcher, OutgoingMessage, SendError, TaskNotice};
use orchestrator_testkit::fixtures::{at, new_task};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use uuid::Uuid;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn droplet_at(endpoint: &str) -> Droplet {
    Droplet {
        droplet_id: 21,
        name: "d21".into(),
        steward: None,
        endpoint: endpoint.to_owned(),
        capabilities: Vec::new(),
        status: DropletStatus::Active,
        max_concurrent_tasks: 1,
        manually_deactivated: false,
        last_heartbeat: None,
        last_assigned_at: None,
        registered_at: at(0),
        updated_at: at(0),
        service_id: None,
        session_started_at: None,
    }
}

fn task() -> Task {
    new_task("t", 5, None).into_task(1, Uuid::new_v4(), None, at(0))
}

fn message() -> OutgoingMessage {
    OutgoingMessage {
        trace_id: Uuid::new_v4(),
        message_type: "ping".into(),
        payload: json!({}),
    }
}

fn dispatcher(endpoints: EndpointPolicy, max_reply_bytes: usize) -> HttpDispatcher {
    let limits = DispatchLimits {
        send_timeout: Duration::from_secs(5),
        max_reply_bytes,
        endpoints,
    };
    HttpDispatcher::new("droplet-10", limits).expect("client")
}

async fn droplet_answering(reply: ResponseTemplate) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/message"))
        .respond_with(reply)
        .mount(&server)
        .await;
    server
}

async fn requests(server: &MockServer) -> usize {
    server.received_requests().await.unwrap_or_default().len()
}

#[tokio::test]
async fn an_endpoint_on_this_host_is_refused_before_anything_is_sent() {
    let server = droplet_answering(ResponseTemplate::new(200)).await;
    let droplet = droplet_at(&server.uri());
    let refusing = dispatcher(EndpointPolicy::RefusePrivate, 1024);

    let sent = refusing.send_message(&droplet, &message()).await;
    let Err(SendError::Refused(why)) = sent else {
        panic!("expected a refusal, got {sent:?}");
    };
    assert!(why.contains("127.0.0.1 is a loopback address"), "{why}");
    assert!(why.contains("ALLOW_PRIVATE_DROPLET_ENDPOINTS"), "{why}");
    let delivered = refusing.deliver(&droplet, &task(), TaskNotice::Assignment).await;
    let err = delivered.expect_err("refused");
    assert!(!err.retryable, "a refused endpoint is not retried: {err:?}");
    assert_eq!(requests(&server).await, 0, "nothing reached the droplet");

    let named = droplet_at(&server.uri().replace("127.0.0.1", "localhost"));
    let sent = refusing.send_message(&named, &message()).await;
    assert!(matches!(sent, Err(SendError::Refused(_))), "{sent:?}");

    let allowing = dispatcher(EndpointPolicy::AllowPrivate, 1024);
    let reply = allowing.send_message(&droplet, &message()).await.expect("sent");
    assert_eq!(reply.status, 200);
    assert_eq!(requests(&server).await, 1);
}

#[tokio::test]
async fn redirects_are_answers_not_directions() {
    let elsewhere = droplet_answering(ResponseTemplate::new(200).set_body_json(json!({"secret": 1}))).await;
    let location = format!("{}/message", elsewhere.uri());
    let server =
        droplet_answering(ResponseTemplate::new(307).insert_header("Location", location.as_str())).await;
    let droplet = droplet_at(&server.uri());
    let allowing = dispatcher(EndpointPolicy::AllowPrivate, 1024);

    let reply = allowing.send_message(&droplet, &message()).await.expect("sent");
    assert_eq!(reply.status, 307, "{reply:?}");
    let delivered = allowing.deliver(&droplet, &task(), TaskNotice::Assignment).await;
    assert!(
        delivered.is_err(),
        "a redirect is no acknowledgement: {delivered:?}"
    );
    assert_eq!(requests(&elsewhere).await, 0, "the redirect was not followed");
}

#[tokio::test]
async fn a_declared_answer_longer_than_the_bound_is_refused() {
    let server = droplet_answering(ResponseTemplate::new(200).set_body_string("x".repeat(4096))).await;
    let droplet = droplet_at(&server.uri());

    let sent = dispatcher(EndpointPolicy::AllowPrivate, 1024)
        .send_message(&droplet, &message())
        .await;
    let Err(SendError::ReplyTooLarge { status, message: why }) = sent else {
        panic!("expected too large, got {sent:?}");
    };
    assert_eq!(status, 200);
    assert!(why.contains("more than 1024 bytes (MAX_REPLY_BYTES)"), "{why}");

    let reply = dispatcher(EndpointPolicy::AllowPrivate, 4096)
        .send_message(&droplet, &message())
        .await
        .expect("an answer of exactly the bound is read");
    assert_eq!(reply.body.as_str().map(str::len), Some(4096));
}

/// A droplet that answers in chunks without declaring a length: `chunks`
/// chunks of 1 KiB.
async fn chunked_droplet(chunks: usize) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut request = vec![0_u8; 16 * 1024];
                let _ = socket.read(&mut request).await;
                let head =
                    "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n";
                if socket.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let chunk = format!("400\r\n{}\r\n", "y".repeat(1024));
                for _ in 0..chunks {
                    if socket.write_all(chunk.as_bytes()).await.is_err() {
                        return;
                    }
                }
                let _ = socket.write_all(b"0\r\n\r\n").await;
            });
        }
    });
    url
}

#[tokio::test]
async fn an_undeclared_answer_is_read_only_up_to_the_bound() {
    let endless = chunked_droplet(1_000_000).await;
    let sent = dispatcher(EndpointPolicy::AllowPrivate, 8 * 1024)
        .send_message(&droplet_at(&endless), &message())
        .await;
    assert!(
        matches!(sent, Err(SendError::ReplyTooLarge { status: 200, .. })),
        "{sent:?}"
    );

    let short = chunked_droplet(2).await;
    let reply = dispatcher(EndpointPolicy::AllowPrivate, 8 * 1024)
        .send_message(&droplet_at(&short), &message())
        .await
        .expect("a short answer is read whole");
    assert_eq!(reply.body.as_str().map(str::len), Some(2048));
}
