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

    /// The single `bigint` that `sql` selects (such as a `count(*)`), read
    /// past any store under test.
    pub async fn count(&self, sql: &str) -> i64 {
        let (client, connection) = tokio_postgres::connect(&self.url, NoTls)
            .await
            .unwrap_or_else(|e| panic!("connect to {}: {e}", self.name));
        let driver = tokio::spawn(connection);
        let row = client
            .query_one(sql, &[])
            .await
            .unwrap_or_else(|e| panic!("{sql} failed: {e}"));
        drop(client);
        let _ = driver.await;
        row.get(0)
    }
}

/// Set, test databases are left in place (and named on stderr) so that what
/// a run left can be looked at: its rows, its tables' statistics.
pub const KEEP_VAR: &str = "KEEP_TEST_DATABASES";

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if std::env::var_os(KEEP_VAR).is_some() {
            eprintln!("kept test database {} ({KEEP_VAR} is set)", self.name);
            return;
        }
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

/// A PostgreSQL cluster of its own, for tests that stop and restart the
/// database. It runs as the `postgres` user when the tests run as root
/// (PostgreSQL refuses to run as root) and is removed on drop.
#[derive(Debug)]
pub struct Cluster {
    dir: std::path::PathBuf,
    bin: std::path::PathBuf,
    port: u16,
}

impl Cluster {
    /// Initialises and starts a cluster on a free port. Panics with the
    /// reason when PostgreSQL's server programs are not installed.
    pub fn start() -> Cluster {
        let bin = server_bin_dir();
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("orchestrator-cluster-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        if running_as_root() {
            run("chown", &["postgres:postgres", &dir.to_string_lossy()]);
        }
        let cluster = Cluster { dir, bin, port };
        let data = cluster.dir.to_string_lossy().into_owned();
        cluster.pg(
            "initdb",
            &["-D", &data, "-U", "postgres", "--auth=trust", "--no-sync"],
        );
        cluster.resume();
        cluster
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Stops the server at once, as a crash or an outage would.
    pub fn stop(&self) {
        let data = self.dir.to_string_lossy().into_owned();
        self.pg("pg_ctl", &["-D", &data, "-m", "immediate", "-w", "stop"]);
    }

    /// Starts the server again on the same port and data.
    pub fn resume(&self) {
        let data = self.dir.to_string_lossy().into_owned();
        let options = format!(
            "-p {} -k {data} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port
        );
        let log = format!("{data}/server.log");
        self.pg(
            "pg_ctl",
            &["-D", &data, "-l", &log, "-o", &options, "-w", "start"],
        );
    }

    fn pg(&self, program: &str, args: &[&str]) {
        let program = self.bin.join(program).to_string_lossy().into_owned();
        if running_as_root() {
            let mut full = vec!["-u", "postgres", "--", program.as_str()];
            full.extend_from_slice(args);
            run("runuser", &full);
        } else {
            run(&program, args);
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let data = self.dir.to_string_lossy().into_owned();
        let program = self.bin.join("pg_ctl").to_string_lossy().into_owned();
        let stop = ["-D", data.as_str(), "-m", "immediate", "stop"];
        let _ = if running_as_root() {
            std::process::Command::new("runuser")
                .args(["-u", "postgres", "--", &program])
                .args(stop)
                .output()
        } else {
            std::process::Command::new(&program).args(stop).output()
        };
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn server_bin_dir() -> std::path::PathBuf {
    let mut dirs: Vec<std::path::PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path().join("bin"))
                .collect()
        })
        .unwrap_or_default();
    dirs.retain(|d| d.join("initdb").exists());
    dirs.sort();
    dirs.pop().unwrap_or_else(|| {
        panic!("this test runs a PostgreSQL cluster of its own: install the server (apt-get install postgresql-15)")
    })
}

fn running_as_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| out.stdout.starts_with(b"0\n"))
}

/// A port nothing listens on now, for a child process to take.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port: {e}"))
}

fn run(program: &str, args: &[&str]) {
    let output = std::process::Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        output.status.success(),
        "{program} {args:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
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
