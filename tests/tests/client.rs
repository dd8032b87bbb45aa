//! The typed client against a real server: a task's whole life through it,
//! and every kind of failure as a typed error.

use std::time::Duration;

use orchestrator_client::{Client, ClientError, DropletQuery, StatusUpdate, TaskQuery, TokenRequest};
use orchestrator_domain::{
    DropletStatus, HeartbeatReport, Permission, RegistrationDraft, TaskDraft, TaskStatus,
};
use orchestrator_tests::spawn_app_with;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_lives_its_whole_life_through_the_client() {
    let app = spawn_app_with(&[]).await;
    let alice = Client::new(&app.address)
        .expect("url")
        .with_token(app.writer("alice"));
    let droplet = Client::new(&app.address)
        .expect("url")
        .with_token(app.droplet(21));

    let health = droplet.health().await.expect("health");
    assert_eq!((health.id, health.status.as_str()), (10, "active"));
    assert!(
        health.endpoint.is_some() && health.updated_at.is_some(),
        "{health:?}"
    );
    let registered = droplet
        .register(&RegistrationDraft {
            droplet_id: 21,
            name: "echo".into(),
            endpoint: "http://127.0.0.1:9".into(),
            capabilities: vec!["echo".into()],
            ..RegistrationDraft::default()
        })
        .await
        .expect("register");
    assert_eq!(
        (registered.droplet_id, registered.status),
        (21, DropletStatus::Active)
    );
    let beat = droplet
        .heartbeat(21, &HeartbeatReport::default())
        .await
        .expect("beat");
    assert_eq!(beat.status, DropletStatus::Active);

    let created = alice
        .create_task(&TaskDraft {
            task_type: "echo".into(),
            title: Some("say hello".into()),
            required_capability: Some("echo".into()),
            payload: Some(json!({ "text": "hello" })),
            ..TaskDraft::default()
        })
        .await
        .expect("create");
    let mut task = alice.get_task(created.task_id).await.expect("get");
    for _ in 0..50 {
        if task.task.status == TaskStatus::Assigned {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        task = alice.get_task(created.task_id).await.expect("get");
    }
    assert_eq!(task.task.assigned_droplet_id, Some(21));
    assert_eq!(task.assigned_droplet_name.as_deref(), Some("echo"));

    let mine = droplet
        .list_tasks(
            &TaskQuery::default()
                .with_droplet(21)
                .with_status(TaskStatus::Assigned),
        )
        .await
        .expect("list");
    assert_eq!(mine.tasks.len(), 1);
    let attempt = mine.tasks[0].task.attempt;
    droplet
        .update_status(created.task_id, &StatusUpdate::started(attempt))
        .await
        .expect("start");
    let done = droplet
        .update_status(
            created.task_id,
            &StatusUpdate::completed(attempt, json!({ "echo": "hello" })),
        )
        .await
        .expect("complete");
    assert_eq!(done.task.status, TaskStatus::Completed);
    assert_eq!(done.task.result, Some(json!({ "echo": "hello" })));

    let record = alice.get_task(created.task_id).await.expect("get");
    let history = record.history();
    let moves: Vec<TaskStatus> = history.iter().map(|h| h.to_status).collect();
    assert_eq!(
        moves,
        [
            TaskStatus::Pending,
            TaskStatus::Assigned,
            TaskStatus::InProgress,
            TaskStatus::Completed
        ]
    );
    let all = droplet
        .list_droplets(&DropletQuery::default())
        .await
        .expect("droplets");
    assert!(all.iter().any(|d| d.droplet_id == 21));
    let offering = |capability: &str| {
        DropletQuery::default()
            .with_status(DropletStatus::Active)
            .with_capability(capability)
    };
    assert_eq!(
        droplet
            .list_droplets(&offering("echo"))
            .await
            .expect("echo")
            .len(),
        1
    );
    assert!(
        droplet
            .list_droplets(&offering("ocr"))
            .await
            .expect("ocr")
            .is_empty()
    );
    assert_eq!(droplet.get_droplet(21).await.expect("droplet").name, "echo");
}

#[tokio::test]
async fn failures_come_back_as_typed_errors() {
    let app = spawn_app_with(&[]).await;
    let alice = Client::new(&app.address)
        .expect("url")
        .with_token(app.writer("alice"));

    let missing = alice.get_task(999_999).await.expect_err("no such task");
    assert_eq!((missing.status(), missing.code()), (Some(404), Some("not_found")));

    let invalid = alice
        .create_task(&TaskDraft {
            task_type: String::new(),
            title: Some("t".into()),
            ..TaskDraft::default()
        })
        .await
        .expect_err("empty type");
    assert_eq!(
        (invalid.status(), invalid.code()),
        (Some(422), Some("validation_failed"))
    );

    let created = alice
        .create_task(&TaskDraft {
            task_type: "t".into(),
            title: Some("t".into()),
            required_capability: Some("nobody".into()),
            ..TaskDraft::default()
        })
        .await
        .expect("create");
    let cancelled = alice.cancel_task(created.task_id).await.expect("cancel");
    assert_eq!(cancelled.status, TaskStatus::Cancelled);
    let again = alice.request_cancel(created.task_id).await.expect_err("finished");
    assert_eq!(again.code(), Some("invalid_transition"));

    let admin = Client::new(&app.address).expect("url").with_token(app.admin());
    let request = TokenRequest {
        droplet_id: Some(21),
        permissions: vec![Permission::Read],
        ..TokenRequest::default()
    };
    let token = admin.issue_token(&request).await.expect("issue");
    assert_eq!(token.token_type, "bearer");
    let reader = Client::new(&app.address)
        .expect("url")
        .with_token(token.access_token);
    assert!(reader.list_tasks(&TaskQuery::default()).await.is_ok());
    let refused = alice.issue_token(&request).await.expect_err("not an admin");
    assert_eq!(refused.code(), Some("forbidden"));

    let stranger = Client::new(&app.address).expect("url").with_token("not-a-token");
    let refused = stranger
        .list_tasks(&TaskQuery::default())
        .await
        .expect_err("bad token");
    assert_eq!(
        (refused.status(), refused.code()),
        (Some(401), Some("unauthorized"))
    );

    let nowhere = Client::new("http://127.0.0.1:9").expect("url");
    assert!(matches!(
        nowhere.health().await,
        Err(ClientError::Transport { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mesh_endpoints_through_the_client() {
    let app = spawn_app_with(&[]).await;
    let droplet = Client::new(&app.address)
        .expect("url")
        .with_token(app.droplet(23));
    droplet
        .register(&RegistrationDraft {
            droplet_id: 23,
            name: "mesh".into(),
            endpoint: "http://127.0.0.1:9".into(),
            ..RegistrationDraft::default()
        })
        .await
        .expect("register");
    let beat = droplet
        .service_heartbeat(&orchestrator_domain::ServiceHeartbeat {
            status: Some(DropletStatus::Error),
            ..Default::default()
        })
        .await
        .expect("beat");
    assert_eq!((beat.droplet_id, beat.status), (23, DropletStatus::Error));
    let unknown = droplet
        .service_heartbeat(&orchestrator_domain::ServiceHeartbeat {
            service_id: Some(404),
            ..Default::default()
        })
        .await;
    assert!(
        matches!(unknown, Err(ClientError::Api { status: 404, .. })),
        "{unknown:?}"
    );

    let anyone = Client::new(&app.address).expect("url");
    let ready = anyone.readiness().await.expect("readiness");
    assert!(ready.is_ready(), "{ready:?}");
    assert_eq!(ready.checks.migrations, "current");
    let metadata = anyone.metadata().await.expect("metadata");
    assert_eq!(
        (metadata.droplet_id, metadata.service.as_str()),
        (10, "orchestrator")
    );
    assert!(
        metadata
            .endpoints
            .iter()
            .any(|e| e.method == "POST" && e.path == "/heartbeat" && e.authenticated),
        "{metadata:?}"
    );
}

#[tokio::test]
async fn a_batch_through_the_client_comes_back_in_order() {
    let app = spawn_app_with(&[]).await;
    let alice = Client::new(&app.address)
        .expect("url")
        .with_token(app.writer("alice"));
    let drafts: Vec<TaskDraft> = ["first", "second", "third"]
        .iter()
        .map(|title| TaskDraft {
            task_type: "echo".into(),
            title: Some((*title).into()),
            ..TaskDraft::default()
        })
        .collect();
    let created = alice.create_tasks(&drafts).await.expect("batch");
    let mut titles = Vec::new();
    for answer in &created {
        titles.push(alice.get_task(answer.task_id).await.expect("get").task.title);
    }
    assert_eq!(titles, ["first", "second", "third"]);
    let refused = alice.create_tasks(&[]).await.expect_err("an empty batch");
    assert_eq!(refused.code(), Some("validation_failed"));
}
