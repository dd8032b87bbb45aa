//! A fresh PostgreSQL database per test, dropped when the test ends.
//!
//! The server comes from `DATABASE_URL` when it names PostgreSQL, else
//! `postgres://postgres@127.0.0.1:5432/postgres`. A test that needs it
//! never skips: without a server it fails and says how to get one.

use tokio_postgres::NoTls;
use uuid::Uuid;

/// Where test databases are created when `DATABASE_URL` does not say.
pub const DEFAULT_SERVER_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// The URL of the PostgreSQL server the tests use.
pub fn server_url() -> String {
    std::env::var("DATABASE_URL")
        .ok()
        .filter(|url| url.starts_with("postgres://") || url.starts_with("postgresql://"))
        .unwrap_or_else(|| DEFAULT_SERVER_URL.to_owned())
}

/// `url` with its database name replaced by `database`.
pub fn with_database(url: &str, database: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, None), |(b, q)| (b, Some(q)));
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[authority_start..]
        .find('/')
        .map_or(base.len(), |i| authority_start + i);
    let mut result = format!("{}/{database}", &base[..path_start]);
    if let Some(query) = query {
        result.push('?');
        result.push_str(query);
    }
    result
}

/// An empty database of its own; dropped (with any connection left) on drop.
#[derive(Debug)]
pub struct TestDatabase {
    pub url: String,
    pub name: String,
    server: String,
}

impl TestDatabase {
    pub async fn create() -> TestDatabase {
        let server = server_url();
        let name = format!("orchestrator_test_{}", Uuid::new_v4().simple());
        execute(&server, &format!("CREATE DATABASE \"{name}\"")).await;
        TestDatabase {
            url: with_database(&server, &name),
            name,
            server,
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let (server, sql) = (
            self.server.clone(),
            format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name),
        );
        // Drop runs outside async; a thread with its own runtime does the I/O.
        let done = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
            if let Ok(runtime) = runtime {
                runtime.block_on(execute(&server, &sql));
            }
        })
        .join();
        if done.is_err() {
            eprintln!("could not drop test database {}", self.name);
        }
    }
}

async fn execute(server: &str, sql: &str) {
    let (client, connection) = tokio_postgres::connect(server, NoTls).await.unwrap_or_else(|e| {
        panic!(
            "PostgreSQL is needed for this test but {server} cannot be reached ({e}). \
             Set DATABASE_URL=postgres://… to a server where this user may create databases, \
             or run `make test`, which starts one."
        )
    });
    let driver = tokio::spawn(connection);
    client
        .batch_execute(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql} failed on {server}: {e}"));
    drop(client);
    let _ = driver.await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_database_and_keeps_parameters() {
        assert_eq!(
            with_database("postgres://u:p@h:5432/postgres?sslmode=disable", "t1"),
            "postgres://u:p@h:5432/t1?sslmode=disable"
        );
        assert_eq!(with_database("postgresql://h", "t2"), "postgresql://h/t2");
    }
}
