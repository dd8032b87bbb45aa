//! The `orchestrator` binary: `serve` (the default), `migrate` and `token`
//! for the server; `tasks`, `droplets`, `health`, `ready` and `watch` as a
//! client of one.

use std::net::TcpListener;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use orchestrator_domain::Permission;
use orchestrator_server::cli;
use orchestrator_server::settings::StoreKind;
use orchestrator_server::{Application, JwtKeys, Settings, TokenRequest};
use secrecy::ExposeSecret;

#[derive(Debug, Parser)]
#[command(
    name = "orchestrator",
    version,
    about = "Routes tasks to droplets and tracks them to the end."
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    #[command(flatten)]
    Server(ServerCommand),
    #[command(flatten)]
    Client(cli::ClientCommand),
}

#[derive(Debug, Subcommand)]
enum ServerCommand {
    /// Run the server (the default).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Print a token signed with JWT_SECRET_KEY.
    Token {
        /// Who the token speaks for (the `sub` claim).
        #[arg(long)]
        subject: String,
        /// Comma-separated: read, write, admin.
        #[arg(long, value_delimiter = ',', default_value = "read")]
        permissions: Vec<String>,
        /// Makes the caller that droplet (may register it, heartbeat, update its tasks).
        #[arg(long)]
        droplet_id: Option<i64>,
        /// Lifetime in seconds (default JWT_EXPIRATION_SECONDS).
        #[arg(long)]
        ttl: Option<u64>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = match cli.command {
        None => ServerCommand::Serve,
        Some(Command::Server(command)) => command,
        Some(Command::Client(command)) => return finish(client(command)),
    };
    if matches!(command, ServerCommand::Migrate) {
        return finish(
            Settings::store_from_vars(std::env::vars())
                .map_err(report)
                .and_then(|s| migrate(&s)),
        );
    }
    let settings = match Settings::from_env() {
        Ok(settings) => settings,
        Err(errors) => {
            for line in errors {
                eprintln!("configuration error: {line}");
            }
            return ExitCode::from(2);
        }
    };
    let outcome = match command {
        ServerCommand::Serve => serve(settings),
        ServerCommand::Migrate => migrate(&settings.store.kind),
        ServerCommand::Token {
            subject,
            permissions,
            droplet_id,
            ttl,
        } => token(&settings, subject, &permissions, droplet_id, ttl),
    };
    finish(outcome)
}

fn client(command: cli::ClientCommand) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut out = std::io::stdout().lock();
    runtime.block_on(cli::run(command, &mut out))
}

fn finish(outcome: anyhow::Result<()>) -> ExitCode {
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn report(errors: Vec<String>) -> anyhow::Error {
    anyhow::anyhow!("configuration error: {}", errors.join("; "))
}

fn serve(settings: Settings) -> anyhow::Result<()> {
    init_logging(&settings.logging.level, settings.logging.json);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let address = format!("{}:{}", settings.http.host, settings.http.port);
        let listener =
            TcpListener::bind(&address).map_err(|e| anyhow::anyhow!("cannot listen on {address}: {e}"))?;
        if matches!(settings.store.kind, StoreKind::Memory) {
            tracing::warn!("DATABASE_URL is not set: using the in-memory store; nothing survives a restart");
        }
        if settings.is_development() {
            tracing::warn!("ENVIRONMENT is development: POST /token signs tokens for anyone who asks");
        }
        let dev_token = development_token(&settings)?;
        let app = Application::build(settings, listener).await?;
        tracing::info!(port = app.port(), "orchestrator listening");
        if let Some(token) = dev_token {
            print_development_help(app.port(), &token);
        }
        let state = app.state();
        tokio::spawn(async move {
            shutdown_signal().await;
            tracing::info!("shutting down");
            if let Some(drained) = state.begin_stop(0).await {
                state.finish_stop(drained).await;
            }
        });
        app.run_until_stopped().await?;
        Ok(())
    })
}

/// In development without a configured secret, an admin token to start with.
fn development_token(settings: &Settings) -> anyhow::Result<Option<String>> {
    if !(settings.is_development() && settings.auth.jwt_secret_generated) {
        return Ok(None);
    }
    let keys = JwtKeys::hs256(settings.auth.jwt_secret.expose_secret().as_bytes());
    let token = keys.issue(&TokenRequest {
        subject: "admin".into(),
        permissions: vec![Permission::Admin],
        droplet_id: None,
        steward: None,
        ttl: settings.auth.jwt_expiration,
    })?;
    Ok(Some(token))
}

#[allow(clippy::print_stdout)]
fn print_development_help(port: u16, token: &str) {
    println!("\nDevelopment mode: a random JWT secret was made for this run. An admin token:\n");
    println!("  export TOKEN={token}\n");
    println!("Try it:\n");
    println!("  curl -s -H \"Authorization: Bearer $TOKEN\" http://localhost:{port}/tasks\n");
}

fn migrate(store: &StoreKind) -> anyhow::Result<()> {
    let StoreKind::Postgres { url } = store else {
        eprintln!("DATABASE_URL is the in-memory store: there is nothing to migrate.");
        return Ok(());
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let applied = runtime.block_on(orchestrator_postgres::run_migrations(url.expose_secret()))?;
    if applied.is_empty() {
        eprintln!("The database is up to date: no migration to apply.");
    }
    for version in applied {
        eprintln!("applied migration {version}");
    }
    Ok(())
}

#[allow(clippy::print_stdout)]
fn token(
    settings: &Settings,
    subject: String,
    permissions: &[String],
    droplet_id: Option<i64>,
    ttl: Option<u64>,
) -> anyhow::Result<()> {
    if settings.auth.jwt_secret_generated {
        anyhow::bail!("JWT_SECRET_KEY must be set: a token is only useful if the server shares its secret");
    }
    let permissions = permissions
        .iter()
        .map(|p| p.parse::<Permission>().map_err(|e| anyhow::anyhow!(e.message)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let keys = JwtKeys::hs256(settings.auth.jwt_secret.expose_secret().as_bytes());
    let token = keys.issue(&TokenRequest {
        subject,
        permissions,
        droplet_id,
        steward: None,
        ttl: ttl.map_or(settings.auth.jwt_expiration, Duration::from_secs),
    })?;
    println!("{token}");
    Ok(())
}

/// JSON lines by default: each line of a request carries its span, and so
/// its `trace_id`. `LOG_FORMAT=text` is for reading in a terminal.
fn init_logging(level: &str, json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_new(format!("{level},actix_server=warn"))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .init();
    } else {
        builder.init();
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(term) => term,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }
}
