//! `GET /ui/live/tasks`: the `/ws/tasks` feed as server-sent events, for
//! the task list's live rows. It takes the session cookie (a WebSocket
//! would need the token in the page), counts against the viewer's feed
//! connections like a WebSocket client, and ends when the server stops.

use actix_web::http::header;
use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse, web};
use futures_util::stream;
use orchestrator_app::{Feed, FeedMessage, Subscription, feed_owner};
use tokio_util::sync::CancellationToken;

use super::session;
use orchestrator_api::feeds::FeedQuery;

use crate::routes::feeds::filter_of;
use crate::startup::AppState;

pub async fn tasks(req: HttpRequest, app: web::Data<AppState>, query: web::Query<FeedQuery>) -> HttpResponse {
    let Some(viewer) = session::viewer(&req).await else {
        return plain(HttpResponse::Unauthorized(), "sign in first: /ui/login");
    };
    let filter = match filter_of(&query) {
        Ok(filter) => filter,
        Err(err) => return plain(HttpResponse::BadRequest(), &err.to_string()),
    };
    let subscription = match app
        .feeds
        .connect(Feed::Tasks, &feed_owner(&viewer.caller), filter)
    {
        Ok(subscription) => subscription,
        Err(err) => return plain(HttpResponse::TooManyRequests(), &err.to_string()),
    };
    let closing = app.stopping.closing.clone();
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/event-stream"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .streaming(stream::unfold((subscription, closing), next_event))
}

/// The next chunk of the stream: an event, a keep-alive comment, or the end.
async fn next_event(
    (mut subscription, closing): (Subscription, CancellationToken),
) -> Option<(Result<Bytes, actix_web::Error>, (Subscription, CancellationToken))> {
    let chunk = tokio::select! {
        () = closing.cancelled() => return None,
        message = subscription.next() => match message? {
            FeedMessage::Frame(frame) => {
                subscription.record_sent();
                Bytes::from(format!("data: {frame}\n\n"))
            }
            // A comment line: keeps proxies from closing an idle stream.
            FeedMessage::Ping => Bytes::from_static(b": ping\n\n"),
        },
    };
    Some((Ok(chunk), (subscription, closing)))
}

fn plain(mut response: actix_web::HttpResponseBuilder, text: &str) -> HttpResponse {
    response
        .insert_header((header::CONTENT_TYPE, "text/plain; charset=utf-8"))
        .body(text.to_owned())
}
