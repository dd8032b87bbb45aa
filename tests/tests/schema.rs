//! Start-up on PostgreSQL: migrations are applied, and a schema that does
//! not match what the server needs stops the start with a clear line.

use std::net::TcpListener;

use orchestrator_server::{Application, Settings};
use orchestrator_testkit::pg::TestDatabase;
use orchestrator_tests::SECRET;
use tokio_postgres::NoTls;

fn settings(url: &str) -> Settings {
    let vars = [
        ("JWT_SECRET_KEY", SECRET),
        ("DATABASE_URL", url),
        ("WORKERS", "1"),
    ];
    Settings::from_vars(vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))).expect("settings")
}

async fn sql(url: &str, statement: &str) -> Vec<tokio_postgres::Row> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await.expect("connect");
    tokio::spawn(connection);
    client.query(statement, &[]).await.expect(statement)
}

#[tokio::test]
async fn serve_applies_the_migrations_to_an_empty_database() {
    let database = TestDatabase::create().await;
    let listener = TcpListener::bind("127.0.0.1:0").expect("port");
    Application::build(settings(&database.url), listener)
        .await
        .expect("starts");
    let tables = sql(
        &database.url,
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1",
    )
    .await;
    let names: Vec<String> = tables.iter().map(|r| r.get(0)).collect();
    for table in ["droplets", "heartbeats", "task_state_history", "tasks"] {
        assert!(names.iter().any(|n| n == table), "{table} in {names:?}");
    }
    let applied = sql(&database.url, "SELECT count(*) FROM __diesel_schema_migrations").await;
    let shipped = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../migrations"))
        .expect("the migrations folder")
        .filter(|entry| entry.as_ref().is_ok_and(|e| e.path().is_dir()))
        .count();
    assert_eq!(
        applied[0].get::<_, i64>(0),
        i64::try_from(shipped).expect("few"),
        "every migration applied"
    );
}

#[tokio::test]
async fn a_schema_that_does_not_match_stops_the_start() {
    let database = TestDatabase::create().await;
    orchestrator_postgres_migrate(&database.url).await;
    sql(&database.url, "ALTER TABLE tasks DROP COLUMN title CASCADE").await;
    sql(
        &database.url,
        "ALTER TABLE droplets ALTER COLUMN endpoint TYPE text",
    )
    .await;
    let listener = TcpListener::bind("127.0.0.1:0").expect("port");
    let err = Application::build(settings(&database.url), listener)
        .await
        .expect_err("refused");
    let message = err.to_string();
    assert!(message.contains("tasks.title is missing"), "{message}");
    assert!(
        message.contains("droplets.endpoint is text, expected character varying"),
        "{message}"
    );
}

async fn orchestrator_postgres_migrate(url: &str) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("port");
    Application::build(settings(url), listener)
        .await
        .expect("first start migrates");
}

#[tokio::test]
async fn readiness_names_a_migration_the_database_lacks() {
    let app = orchestrator_tests::spawn_app().await;
    app.expect_server_errors();
    let url = app.database.as_ref().expect("on PostgreSQL").url.clone();
    let ready = app.send(reqwest::Method::GET, "/readyz", None, None).await;
    assert_eq!(ready.status, 200, "{ready:?}");

    // As if a newer build shared the database before this one migrated it.
    let removed = sql(
        &url,
        "DELETE FROM __diesel_schema_migrations \
         WHERE version = (SELECT max(version) FROM __diesel_schema_migrations) RETURNING version",
    )
    .await;
    let version: String = removed[0].get(0);
    let ready = app.send(reqwest::Method::GET, "/readyz", None, None).await;
    assert_eq!(ready.status, 503, "{ready:?}");
    assert_eq!(ready.body["checks"]["migrations"], "pending");
    assert!(
        ready.body["reasons"][0]
            .as_str()
            .is_some_and(|r| r.contains(&version)),
        "the reason names {version}: {ready:?}"
    );
    assert!(ready.header("retry-after").is_some());
}
