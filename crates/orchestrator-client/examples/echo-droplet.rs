//! A droplet that echoes what it is given, built on the worker runtime.
//!
//! ```text
//! echo-droplet serve [DROPLET_ID]   work as droplet DROPLET_ID (default 21) until Ctrl-C
//! echo-droplet submit TEXT          submit an `echo` task and print who answered what
//! ```
//!
//! `ORCHESTRATOR_URL` (default `http://localhost:8000`) names the
//! orchestrator and `ORCHESTRATOR_TOKEN` the token to use; without one, a
//! token is asked of `POST /token`, which a server in `development` (as
//! `make run` starts it) signs for anyone.
//!
//! `DELIVERY` chooses how assignments arrive: `pull` (the default), `feed`
//! (`/ws/tasks`) or `push`, for which the droplet listens on `LISTEN`
//! (default `127.0.0.1:80{id}`) and registers `ENDPOINT` (default
//! `http://{LISTEN}`), the address the orchestrator can reach it at.

use std::time::Duration;

use orchestrator_client::{Client, ClientError, Delivery, TokenRequest, Worker};
use orchestrator_domain::{DropletId, Permission, RegistrationDraft, TaskDraft, TaskStatus};
use serde_json::json;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let outcome = match args.first().map(String::as_str) {
        Some("serve") => serve(args.get(1).and_then(|id| id.parse().ok()).unwrap_or(21)).await,
        Some("submit") if args.len() > 1 => submit(&args[1..].join(" ")).await,
        _ => {
            eprintln!("usage: echo-droplet serve [DROPLET_ID] | echo-droplet submit TEXT");
            std::process::exit(2);
        }
    };
    if let Err(err) = outcome {
        eprintln!("echo-droplet: {err}");
        std::process::exit(1);
    }
}

/// A client with `ORCHESTRATOR_TOKEN`, or with a token signed for `request`.
async fn client(request: TokenRequest) -> Result<Client, ClientError> {
    let url = std::env::var("ORCHESTRATOR_URL").unwrap_or_else(|_| "http://localhost:8000".into());
    let client = Client::new(&url)?;
    let token = match std::env::var("ORCHESTRATOR_TOKEN") {
        Ok(token) if !token.trim().is_empty() => token,
        _ => client.issue_token(&request).await?.access_token,
    };
    Ok(client.with_token(token))
}

async fn serve(id: DropletId) -> Result<(), ClientError> {
    let request = TokenRequest {
        droplet_id: Some(id),
        permissions: vec![Permission::Write],
        ..TokenRequest::default()
    };
    let client = client(request).await?;
    let (delivery, endpoint) = delivery(id).unwrap_or_else(|message| {
        eprintln!("echo-droplet: {message}");
        std::process::exit(2);
    });
    let me = RegistrationDraft {
        droplet_id: id,
        name: format!("echo {id}"),
        endpoint,
        ..RegistrationDraft::default()
    };
    println!("echo droplet {id} working for {}", client.base_url());
    let report = Worker::builder(client, me)
        .delivery(delivery)
        .capability("echo", move |task| async move {
            println!("echo {id}: task {} says {}", task.id, task.payload["text"]);
            Ok(json!({ "echo": task.payload["text"], "by": id }))
        })
        .run(async {
            tokio::signal::ctrl_c().await.ok();
        })
        .await?;
    println!(
        "echo droplet {id} stopped: {} completed, {} failed",
        report.completed, report.failed
    );
    Ok(())
}

/// The delivery `DELIVERY` names, and the endpoint to register.
fn delivery(id: DropletId) -> Result<(Delivery, String), String> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let listen = var("LISTEN").unwrap_or_else(|| format!("127.0.0.1:80{id}"));
    let endpoint = var("ENDPOINT").unwrap_or_else(|| format!("http://{listen}"));
    let delivery = match var("DELIVERY").as_deref().unwrap_or("pull") {
        "pull" => Delivery::Pull,
        "feed" => Delivery::Feed,
        "push" => Delivery::Push {
            listen: listen
                .parse()
                .map_err(|e| format!("LISTEN={listen:?} is not an address such as 0.0.0.0:8021: {e}"))?,
        },
        other => return Err(format!("DELIVERY={other:?}: expected pull, feed or push")),
    };
    Ok((delivery, endpoint))
}

async fn submit(text: &str) -> Result<(), ClientError> {
    let request = TokenRequest {
        subject: Some("echo-submitter".into()),
        permissions: vec![Permission::Write],
        ..TokenRequest::default()
    };
    let client = client(request).await?;
    let created = client
        .create_task(&TaskDraft {
            task_type: "echo".into(),
            title: Some(format!("echo {text:?}")),
            required_capability: Some("echo".into()),
            payload: Some(json!({ "text": text })),
            ..TaskDraft::default()
        })
        .await?;
    println!("task {} submitted", created.task_id);
    for _ in 0..100 {
        let record = client.get_task(created.task_id).await?;
        if matches!(record.task.status, TaskStatus::Completed | TaskStatus::Failed) {
            let by = record.assigned_droplet_name.unwrap_or_default();
            let outcome = record.task.result.unwrap_or_default();
            println!(
                "task {} {} by {by}: {outcome}",
                created.task_id, record.task.status
            );
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "task {} is still waiting; is an echo droplet running?",
        created.task_id
    );
    Ok(())
}
