//! Configuration from the environment (spec section 9 plus API.md) and,
//! when `CONFIG_FILE` names one, from a file of `NAME=value` lines that
//! overrides it. Read at start and again by `POST
//! /management/reload-config`. Every bad variable is reported, one line each.

use std::collections::{BTreeMap, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::str::FromStr;
use std::time::Duration;

use orchestrator_app::jobs::{self, JobSpec};
use orchestrator_app::{RecoverySettings, Tunables};
use orchestrator_domain::{EndpointPolicy, RetryPolicy};
use secrecy::SecretString;

/// Shortest `JWT_SECRET_KEY` accepted outside development.
pub const MIN_SECRET_BYTES: usize = 32;
/// The longest retention: a century, which the database's intervals hold
/// with room to spare (keep for ever with 0).
const MAX_DAYS: f64 = 36_500.0;
const YEAR_SECONDS: u64 = 365 * 86_400;

#[derive(Debug, Clone)]
pub enum StoreKind {
    /// The in-process store: nothing survives a restart.
    Memory,
    /// PostgreSQL at this URL, the production store.
    Postgres { url: SecretString },
}

/// The pool of the PostgreSQL store (`DATABASE_POOL_SIZE`, `DATABASE_MAX_OVERFLOW`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolSize {
    pub size: usize,
    pub max_overflow: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    Development,
    Test,
    Staging,
    Production,
}

impl FromStr for Environment {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "development" | "dev" => Ok(Environment::Development),
            "test" => Ok(Environment::Test),
            "staging" => Ok(Environment::Staging),
            "production" | "prod" => Ok(Environment::Production),
            _ => Err("expected development, test, staging or production".into()),
        }
    }
}

/// Who the orchestrator is in the mesh (`/health`, envelopes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub droplet_id: i64,
    pub name: String,
    pub steward: String,
    pub endpoint: String,
}

/// Everything the server is configured with, grouped by what it
/// configures. Only `run` changes while the server runs (`POST
/// /management/reload-config`); every other group takes effect at start,
/// and a reload names the variables of theirs that changed.
#[derive(Debug, Clone)]
pub struct Settings {
    pub environment: Environment,
    pub store: StoreSettings,
    pub auth: AuthSettings,
    pub identity: Identity,
    pub http: HttpSettings,
    pub logging: LogSettings,
    pub feeds: FeedLimits,
    pub messaging: MessagingSettings,
    pub registry: RegistrySettings,
    pub features: Features,
    pub retention: RetentionSettings,
    /// What a reload changes while the server runs.
    pub run: Tunables,
    /// The intervals of the jobs a reload does not re-time (each job's
    /// setting, `jobs::JobSpec`), by job id.
    pub fixed_job_intervals: BTreeMap<&'static str, Duration>,
    /// What these settings were read from, to read them again.
    pub source: VarSource,
    /// A fingerprint of every start-time variable as read (not its value:
    /// some are secrets), to tell which changed.
    start_values: BTreeMap<&'static str, u64>,
}

/// Where tasks and droplets are kept.
#[derive(Debug, Clone)]
pub struct StoreSettings {
    /// `DATABASE_URL`: `memory`, or a PostgreSQL URL.
    pub kind: StoreKind,
    pub pool: PoolSize,
    /// `HEARTBEAT_FLUSH_INTERVAL_MS`: how often heartbeats held in memory
    /// are written (PostgreSQL); what a crash can lose of them.
    pub heartbeat_flush_interval: Duration,
    /// `IDEMPOTENCY_WINDOW_SECONDS`: how long an `Idempotency-Key` is
    /// remembered (and its row kept).
    pub idempotency_window: Duration,
    /// `HEARTBEAT_SAMPLE_SECONDS`: a heartbeat that changes no status is
    /// kept as a row at most once per droplet this often (zero: every one).
    pub heartbeat_sample: Duration,
}

/// The tokens the server signs and checks.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    /// `JWT_SECRET_KEY`.
    pub jwt_secret: SecretString,
    /// True when no secret was configured and one was made up (development only).
    pub jwt_secret_generated: bool,
    /// `JWT_EXPIRATION_SECONDS`: the lifetime of the tokens `POST /token` signs.
    pub jwt_expiration: Duration,
}

/// The HTTP server and what it lets callers do.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    pub host: String,
    pub port: u16,
    pub workers: usize,
    pub max_body_bytes: usize,
    /// `RATE_LIMIT_PER_MINUTE`: requests one caller (or client address) may make a minute.
    pub rate_limit: u32,
    /// `TRUSTED_PROXIES`: the proxies whose `X-Forwarded-For` names the client.
    pub trusted_proxies: crate::limits::TrustedProxies,
    /// `CORS_ORIGINS`: the browser origins allowed to call the API.
    pub cors_origins: Vec<String>,
    /// `CORS_ALLOW_CREDENTIALS`: let those origins send cookies and credentials.
    pub cors_allow_credentials: bool,
    /// `SHUTDOWN_GRACE_SECONDS`: how long a graceful stop waits for the
    /// requests in flight before it abandons them.
    pub shutdown_grace: Duration,
}

/// What the log says and how.
#[derive(Debug, Clone)]
pub struct LogSettings {
    /// `LOG_LEVEL`, as a tracing filter.
    pub level: String,
    /// `LOG_FORMAT`: `json` (one object a line) or `text` (for a terminal).
    pub json: bool,
}

/// The live feeds' limits.
#[derive(Debug, Clone, Copy)]
pub struct FeedLimits {
    /// `WS_MAX_PER_DROPLET`: feed connections one caller may hold at once.
    pub max_per_caller: usize,
    /// `MAX_WS_CONNECTIONS`: feed connections the process holds at most.
    pub max_total: usize,
    /// `WS_CLIENT_BUFFER`: events queued for one feed client before it
    /// counts as too slow and is disconnected.
    pub client_buffer: usize,
}

/// Messages the orchestrator sends to droplets.
#[derive(Debug, Clone, Copy)]
pub struct MessagingSettings {
    /// `ENABLE_PUSH_DELIVERY`: send each assignment to the droplet's `/message`.
    pub push_delivery: bool,
    /// `SEND_TIMEOUT_SECONDS`: how long `/send` and `/broadcast` wait for a droplet's answer.
    pub send_timeout: Duration,
    /// `BROADCAST_RATE_LIMIT_PER_MINUTE`: broadcasts one caller may send a minute.
    pub broadcast_rate_limit: u32,
    /// `MAX_REPLY_BYTES`: the longest answer to a message that is read;
    /// a longer one is answered 502 `droplet_reply_too_large`.
    pub max_reply_bytes: usize,
    /// `ALLOW_PRIVATE_DROPLET_ENDPOINTS`: whether droplets may have
    /// loopback, link-local or metadata endpoints (on by default in
    /// development only).
    pub endpoints: EndpointPolicy,
}

/// The mesh's Registry (droplet 3), when there is one.
#[derive(Debug, Clone)]
pub struct RegistrySettings {
    /// `REGISTRY_URL`; without it the orchestrator runs on its own.
    pub url: Option<String>,
    /// `REGISTRY_AUDIENCE`: the `aud` a Registry token must name to be
    /// accepted here; unset, any token the Registry signed is.
    pub audience: Option<String>,
}

/// What the server serves besides the API.
#[derive(Debug, Clone, Copy)]
pub struct Features {
    /// `ENABLE_METRICS`: serve Prometheus metrics at `GET /metrics`.
    pub metrics: bool,
    /// `MAX_LABELLED_CAPABILITIES`: capabilities counted by name in the
    /// metrics; the others are counted as `other`.
    pub labelled_capabilities: usize,
    /// `ENABLE_SWAGGER`: serve Swagger UI at `/docs` (on by default in
    /// development only); `/openapi.json` is always served.
    pub swagger: bool,
    /// `ENABLE_DASHBOARD`: serve the web dashboard at `/ui`.
    pub dashboard: bool,
}

/// How long what piles up is kept; `None` keeps it for ever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionSettings {
    /// `TASK_RETENTION_DAYS`: how long after it finished a task finished
    /// for good is kept, with its history.
    pub tasks: Option<Duration>,
    /// `HEARTBEAT_RETENTION_DAYS`: how long a heartbeat sample is kept.
    pub heartbeats: Option<Duration>,
}

/// The variables settings were read from, before `CONFIG_FILE` was applied.
#[derive(Clone, Default)]
pub struct VarSource(HashMap<String, String>);

impl std::fmt::Debug for VarSource {
    /// Names only: values include secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names: Vec<&String> = self.0.keys().collect();
        names.sort();
        f.debug_tuple("VarSource").field(&names).finish()
    }
}

impl Settings {
    /// The interval `job` runs on: a reloadable job's as the run-time
    /// settings give it, another's as read at start.
    pub fn job_interval(&self, job: &JobSpec) -> Duration {
        if job.reloadable {
            return self.run.interval(job);
        }
        self.fixed_job_intervals
            .get(job.id)
            .copied()
            .unwrap_or_else(|| job.default_interval())
    }

    /// Reads the process environment.
    pub fn from_env() -> Result<Self, Vec<String>> {
        Self::from_vars(std::env::vars())
    }

    /// Reads the same sources again: the variables these settings came
    /// from, and the current contents of their `CONFIG_FILE`.
    pub fn reread(&self) -> Result<Self, Vec<String>> {
        Self::from_vars(self.source.0.clone())
    }

    /// Reads settings from name/value pairs, overridden by the lines of
    /// `CONFIG_FILE` when it is set; unset names take their defaults.
    pub fn from_vars(vars: impl IntoIterator<Item = (String, String)>) -> Result<Self, Vec<String>> {
        let source = VarSource(vars.into_iter().collect());
        let mut vars = source.0.clone();
        if let Some(path) = vars
            .get("CONFIG_FILE")
            .map(|p| p.trim().to_owned())
            .filter(|p| !p.is_empty())
        {
            vars.extend(config_file(&path)?);
        }
        let mut reader = Reader::new(vars);
        let environment = reader.parsed("ENVIRONMENT", Environment::Production);
        let (jwt_secret, jwt_secret_generated) = reader.jwt_secret(environment);
        let settings = Settings {
            environment,
            store: StoreSettings {
                kind: reader.store(),
                pool: PoolSize {
                    size: reader.positive("DATABASE_POOL_SIZE", 20),
                    max_overflow: reader.parsed("DATABASE_MAX_OVERFLOW", 10),
                },
                heartbeat_flush_interval: Duration::from_millis(
                    reader.positive("HEARTBEAT_FLUSH_INTERVAL_MS", 1000),
                ),
                idempotency_window: reader.seconds("IDEMPOTENCY_WINDOW_SECONDS", 24 * 3600),
                heartbeat_sample: reader.seconds_or_zero("HEARTBEAT_SAMPLE_SECONDS", 60),
            },
            auth: AuthSettings {
                jwt_secret,
                jwt_secret_generated,
                jwt_expiration: reader.seconds("JWT_EXPIRATION_SECONDS", 86_400),
            },
            identity: Identity {
                droplet_id: reader.parsed("DROPLET_ID", 10),
                name: reader.text("DROPLET_NAME", "Orchestrator"),
                steward: reader.text("DROPLET_STEWARD", "Tnsae"),
                endpoint: reader.text("DROPLET_ENDPOINT", "http://localhost:8000"),
            },
            http: HttpSettings {
                host: reader.text("HOST", "0.0.0.0"),
                port: reader.parsed("PORT", 8000),
                workers: reader.positive("WORKERS", 4),
                max_body_bytes: reader.positive("MAX_BODY_BYTES", 1_048_576),
                rate_limit: reader.positive("RATE_LIMIT_PER_MINUTE", 100),
                trusted_proxies: reader.parsed("TRUSTED_PROXIES", crate::limits::TrustedProxies::default()),
                cors_origins: reader.origins("CORS_ORIGINS"),
                cors_allow_credentials: reader.flag("CORS_ALLOW_CREDENTIALS", false),
                shutdown_grace: reader.seconds("SHUTDOWN_GRACE_SECONDS", 30),
            },
            logging: LogSettings {
                level: reader.log_level(),
                json: reader.log_format(),
            },
            feeds: FeedLimits {
                max_per_caller: reader.positive("WS_MAX_PER_DROPLET", 10),
                max_total: reader.positive("MAX_WS_CONNECTIONS", 10_000),
                client_buffer: reader.positive("WS_CLIENT_BUFFER", 1024),
            },
            messaging: MessagingSettings {
                push_delivery: reader.flag("ENABLE_PUSH_DELIVERY", true),
                send_timeout: reader.seconds("SEND_TIMEOUT_SECONDS", 10),
                broadcast_rate_limit: reader.positive("BROADCAST_RATE_LIMIT_PER_MINUTE", 10),
                max_reply_bytes: reader.positive("MAX_REPLY_BYTES", orchestrator_outbound::MAX_REPLY_BYTES),
                endpoints: EndpointPolicy::allowing_private(reader.flag(
                    "ALLOW_PRIVATE_DROPLET_ENDPOINTS",
                    environment == Environment::Development,
                )),
            },
            registry: RegistrySettings {
                url: reader.optional("REGISTRY_URL"),
                audience: reader.optional("REGISTRY_AUDIENCE"),
            },
            features: Features {
                metrics: reader.flag("ENABLE_METRICS", true),
                labelled_capabilities: reader.parsed("MAX_LABELLED_CAPABILITIES", 100),
                swagger: reader.flag("ENABLE_SWAGGER", environment == Environment::Development),
                dashboard: reader.flag("ENABLE_DASHBOARD", true),
            },
            retention: RetentionSettings {
                tasks: reader.days("TASK_RETENTION_DAYS", 30.0),
                heartbeats: reader.days("HEARTBEAT_RETENTION_DAYS", 7.0),
            },
            run: reader.run_time(Reader::tunables),
            fixed_job_intervals: reader.job_intervals(false),
            source,
            start_values: BTreeMap::new(),
        };
        let settings = Settings {
            start_values: std::mem::take(&mut reader.start_values),
            ..settings
        };
        reader.check_algorithm();
        if reader.errors.is_empty() {
            Ok(settings)
        } else {
            Err(reader.errors)
        }
    }

    /// Only the store (`DATABASE_URL`), for commands that need nothing
    /// else, such as `migrate`.
    pub fn store_from_vars(
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<StoreKind, Vec<String>> {
        let mut reader = Reader::new(vars.into_iter().collect());
        let store = reader.store();
        if reader.errors.is_empty() {
            Ok(store)
        } else {
            Err(reader.errors)
        }
    }

    /// Variables whose value differs in `other` but only takes effect at
    /// start: every one but the run-time settings of `reload-config`.
    pub fn restart_needed(&self, other: &Settings) -> Vec<&'static str> {
        let names: std::collections::BTreeSet<&'static str> = self
            .start_values
            .keys()
            .chain(other.start_values.keys())
            .copied()
            .collect();
        names
            .into_iter()
            .filter(|name| self.start_values.get(name) != other.start_values.get(name))
            .collect()
    }

    pub fn is_development(&self) -> bool {
        self.environment == Environment::Development
    }
}

struct Reader {
    vars: HashMap<String, String>,
    errors: Vec<String>,
    /// Off while the run-time settings are read.
    recording: bool,
    start_values: BTreeMap<&'static str, u64>,
}

impl Reader {
    fn new(vars: HashMap<String, String>) -> Reader {
        Reader {
            vars,
            errors: Vec::new(),
            recording: true,
            start_values: BTreeMap::new(),
        }
    }

    fn optional(&mut self, name: &'static str) -> Option<String> {
        let value = self
            .vars
            .get(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty());
        if self.recording {
            let mut hasher = DefaultHasher::new();
            value.hash(&mut hasher);
            self.start_values.insert(name, hasher.finish());
        }
        value
    }

    /// Reads what `read` reads as run-time settings, which a reload applies.
    fn run_time<T>(&mut self, read: impl FnOnce(&mut Reader) -> T) -> T {
        self.recording = false;
        let value = read(self);
        self.recording = true;
        value
    }

    /// The interval of each job whose `reloadable` is `reloadable`, from
    /// its setting (`jobs::ALL`).
    fn job_intervals(&mut self, reloadable: bool) -> BTreeMap<&'static str, Duration> {
        jobs::ALL
            .iter()
            .map(|job| job.spec)
            .filter(|spec| spec.reloadable == reloadable)
            .map(|spec| {
                (
                    spec.id,
                    self.seconds(spec.interval_setting, spec.default_interval_seconds),
                )
            })
            .collect()
    }

    fn tunables(&mut self) -> Tunables {
        Tunables {
            intervals: self.job_intervals(true),
            recovery: RecoverySettings {
                heartbeat_timeout: self.seconds("HEARTBEAT_TIMEOUT", 90),
                ack_timeout: self.seconds("ASSIGNMENT_ACK_TIMEOUT", 60),
                retry: RetryPolicy {
                    base: self.seconds("RETRY_BACKOFF_BASE_SECONDS", 2),
                    max: self.seconds("RETRY_BACKOFF_MAX_SECONDS", 300),
                },
                enabled: self.flag("ENABLE_AUTO_RECOVERY", true),
                deadline_risk_floor: self.seconds("DEADLINE_RISK_FLOOR_SECONDS", 60),
                run_timeout: self.seconds_or_zero("TASK_RUN_TIMEOUT", 3600),
                max_requeues: self.positive("MAX_REQUEUES", 5),
            },
        }
    }

    fn text(&mut self, name: &'static str, default: &str) -> String {
        self.optional(name).unwrap_or_else(|| default.to_owned())
    }

    fn parsed<T: FromStr>(&mut self, name: &'static str, default: T) -> T
    where
        T::Err: std::fmt::Display,
    {
        match self.optional(name) {
            None => default,
            Some(raw) => raw.parse().unwrap_or_else(|e| {
                self.errors.push(format!("{name}={raw:?} is invalid: {e}"));
                default
            }),
        }
    }

    fn positive<T: FromStr + PartialOrd + Default + Copy>(&mut self, name: &'static str, default: T) -> T
    where
        T::Err: std::fmt::Display,
    {
        let value = self.parsed(name, default);
        if value <= T::default() {
            self.errors.push(format!("{name} must be greater than zero"));
            return default;
        }
        value
    }

    /// True for `json` (the default), false for `text`.
    fn log_format(&mut self) -> bool {
        match self
            .optional("LOG_FORMAT")
            .map(|v| v.to_ascii_lowercase())
            .as_deref()
        {
            None | Some("json") => true,
            Some("text") => false,
            Some(other) => {
                self.errors
                    .push(format!("LOG_FORMAT={other:?} is invalid: expected json or text"));
                true
            }
        }
    }

    /// A list of origins, as a JSON array (`["https://a.example"]`) or
    /// separated by commas. Each is `http(s)://host[:port]`; `*` is refused.
    fn origins(&mut self, name: &'static str) -> Vec<String> {
        let Some(raw) = self.optional(name) else {
            return Vec::new();
        };
        let listed: Vec<String> = if raw.starts_with('[') {
            match serde_json::from_str(&raw) {
                Ok(list) => list,
                Err(e) => {
                    self.errors
                        .push(format!("{name} is not a JSON array of strings: {e}"));
                    return Vec::new();
                }
            }
        } else {
            raw.split(',')
                .map(|o| o.trim().to_owned())
                .filter(|o| !o.is_empty())
                .collect()
        };
        let (good, bad): (Vec<String>, Vec<String>) = listed
            .into_iter()
            .map(|o| o.trim_end_matches('/').to_owned())
            .partition(|o| is_origin(o));
        for origin in bad {
            self.errors.push(format!(
                "{name}: {origin:?} is not an origin; list each as http(s)://host[:port] (no wildcard, no path)"
            ));
        }
        good
    }

    fn flag(&mut self, name: &'static str, default: bool) -> bool {
        match self.optional(name).map(|v| v.to_ascii_lowercase()).as_deref() {
            None => default,
            Some("true" | "1" | "yes" | "on") => true,
            Some("false" | "0" | "no" | "off") => false,
            Some(other) => {
                self.errors
                    .push(format!("{name}={other:?} is invalid: expected true or false"));
                default
            }
        }
    }

    fn seconds(&mut self, name: &'static str, default: u64) -> Duration {
        Duration::from_secs(self.positive(name, default))
    }

    /// A number of days, decimals allowed (`0.0014` is about two minutes,
    /// for a soak test), up to [`MAX_DAYS`]; `0` keeps for ever (`None`).
    fn days(&mut self, name: &'static str, default: f64) -> Option<Duration> {
        let days = match self.optional(name) {
            None => default,
            Some(raw) => match raw.parse::<f64>() {
                Ok(days) if (0.0..=MAX_DAYS).contains(&days) => days,
                _ => {
                    self.errors.push(format!(
                        "{name}={raw:?} is invalid: expected a number of days from 0 to {MAX_DAYS} (decimals allowed; 0 keeps for ever)"
                    ));
                    default
                }
            },
        };
        Some(Duration::from_secs_f64(days * 86_400.0)).filter(|age| !age.is_zero())
    }

    /// Whole seconds from 0 to a year.
    fn seconds_or_zero(&mut self, name: &'static str, default: u64) -> Duration {
        let seconds = self.parsed(name, default);
        if seconds > YEAR_SECONDS {
            self.errors.push(format!(
                "{name}={seconds} is more than a year ({YEAR_SECONDS} seconds)"
            ));
            return Duration::from_secs(default);
        }
        Duration::from_secs(seconds)
    }

    fn store(&mut self) -> StoreKind {
        match self.optional("DATABASE_URL") {
            None => StoreKind::Memory,
            Some(url) if url == "memory" => StoreKind::Memory,
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                StoreKind::Postgres {
                    url: SecretString::from(url),
                }
            }
            Some(_) => {
                self.errors
                    .push("DATABASE_URL must be 'memory' or a postgres:// URL".into());
                StoreKind::Memory
            }
        }
    }

    fn jwt_secret(&mut self, environment: Environment) -> (SecretString, bool) {
        match self.optional("JWT_SECRET_KEY") {
            Some(secret) if secret.len() >= MIN_SECRET_BYTES || environment == Environment::Development => {
                (SecretString::from(secret), false)
            }
            Some(_) => {
                self.errors.push(format!(
                    "JWT_SECRET_KEY is too short: use at least {MIN_SECRET_BYTES} bytes outside development"
                ));
                (SecretString::from(String::new()), false)
            }
            None if environment == Environment::Development => (SecretString::from(random_secret()), true),
            None => {
                self.errors.push(
                    "JWT_SECRET_KEY is required outside development (set ENVIRONMENT=development to try it out)"
                        .into(),
                );
                (SecretString::from(String::new()), false)
            }
        }
    }

    fn check_algorithm(&mut self) {
        if let Some(alg) = self.optional("JWT_ALGORITHM").filter(|a| a != "HS256") {
            self.errors
                .push(format!("JWT_ALGORITHM={alg:?} is not supported: only HS256 is"));
        }
    }

    fn log_level(&mut self) -> String {
        let level = self.text("LOG_LEVEL", "INFO").to_ascii_lowercase();
        match level.as_str() {
            "trace" | "debug" | "info" | "warn" | "warning" | "error" => level.replace("warning", "warn"),
            _ => {
                self.errors.push(format!(
                    "LOG_LEVEL={level:?} is invalid: expected TRACE, DEBUG, INFO, WARNING or ERROR"
                ));
                "info".into()
            }
        }
    }
}

/// The `NAME=value` lines of the file at `path`. Blank lines and lines
/// starting with `#` are skipped; `export ` before a name and quotes
/// around a value are allowed, as in a shell or a `.env` file.
fn config_file(path: &str) -> Result<Vec<(String, String)>, Vec<String>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| vec![format!("CONFIG_FILE={path:?} cannot be read: {e}")])?;
    let mut pairs = Vec::new();
    let mut errors = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        match line.split_once('=') {
            Some((name, value)) if is_variable_name(name.trim()) => {
                pairs.push((name.trim().to_owned(), unquote(value.trim()).to_owned()));
            }
            _ => errors.push(format!(
                "CONFIG_FILE {path:?} line {}: expected NAME=value",
                number + 1
            )),
        }
    }
    if errors.is_empty() { Ok(pairs) } else { Err(errors) }
}

fn is_variable_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn unquote(value: &str) -> &str {
    for quote in ['"', '\''] {
        if let Some(inner) = value.strip_prefix(quote).and_then(|v| v.strip_suffix(quote)) {
            return inner;
        }
    }
    value
}

fn random_secret() -> String {
    rand::random::<[u8; 32]>()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `http(s)://host[:port]` with nothing after the authority.
fn is_origin(text: &str) -> bool {
    let Some(rest) = text
        .strip_prefix("https://")
        .or_else(|| text.strip_prefix("http://"))
    else {
        return false;
    };
    !rest.is_empty()
        && rest
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn defaults_follow_the_spec() {
        let s = Settings::from_vars(vars(&[("JWT_SECRET_KEY", &"k".repeat(32))])).expect("valid");
        assert_eq!(
            (s.http.port, s.http.workers, s.identity.droplet_id),
            (8000, 4, 10)
        );
        assert_eq!(s.run.interval(&jobs::task_router::SPEC), Duration::from_secs(10));
        assert_eq!(s.run.recovery.heartbeat_timeout, Duration::from_secs(90));
        assert_eq!(s.run.recovery.ack_timeout, Duration::from_secs(60));
        assert!(s.run.recovery.enabled);
        assert_eq!(s.http.max_body_bytes, 1_048_576);
        assert!(matches!(s.store.kind, StoreKind::Memory));
        assert_eq!((s.store.pool.size, s.store.pool.max_overflow), (20, 10));
        assert_eq!(s.environment, Environment::Production);
    }

    #[test]
    fn retention_is_in_days_decimals_allowed_and_zero_keeps_for_ever() {
        let secret = "k".repeat(32);
        let read = |value: &str| {
            Settings::from_vars(vars(&[
                ("JWT_SECRET_KEY", &secret),
                ("TASK_RETENTION_DAYS", value),
            ]))
        };
        let default = Settings::from_vars(vars(&[("JWT_SECRET_KEY", &secret)])).expect("valid");
        assert_eq!(default.retention.tasks, Some(Duration::from_secs(30 * 86_400)));
        assert_eq!(
            default.run.interval(&jobs::task_retention::SPEC),
            Duration::from_secs(300)
        );
        assert_eq!(default.store.heartbeat_sample, Duration::from_secs(60));
        assert_eq!(
            default.retention.heartbeats,
            Some(Duration::from_secs(7 * 86_400))
        );
        let soak = Settings::from_vars(vars(&[
            ("JWT_SECRET_KEY", &secret),
            ("HEARTBEAT_RETENTION_DAYS", "0.5"),
        ]))
        .expect("valid");
        assert_eq!(soak.retention.heartbeats, Some(Duration::from_secs(43_200)));
        let errors = Settings::from_vars(vars(&[
            ("JWT_SECRET_KEY", &secret),
            ("HEARTBEAT_RETENTION_DAYS", "-0.5"),
        ]))
        .expect_err("negative");
        assert!(errors[0].starts_with("HEARTBEAT_RETENTION_DAYS="), "{errors:?}");
        for (value, sample) in [("0", Some(0)), ("15", Some(15)), ("-1", None), ("31536001", None)] {
            let read = Settings::from_vars(vars(&[
                ("JWT_SECRET_KEY", &secret),
                ("HEARTBEAT_SAMPLE_SECONDS", value),
            ]));
            assert_eq!(
                read.as_ref().ok().map(|s| s.store.heartbeat_sample.as_secs()),
                sample,
                "{value}: {:?}",
                read.err()
            );
        }
        let minutes = read("0.0014")
            .expect("valid")
            .retention
            .tasks
            .expect("kept a while");
        assert_eq!(minutes.as_secs(), 120, "{minutes:?}");
        assert_eq!(read("0").expect("valid").retention.tasks, None);
        for bad in ["-1", "thirty", "NaN", "inf", "1e300", "36501"] {
            let errors = read(bad).expect_err(bad);
            assert_eq!(errors.len(), 1, "{errors:?}");
            assert!(errors[0].starts_with("TASK_RETENTION_DAYS="), "{errors:?}");
        }
    }

    #[test]
    fn runs_are_bounded_by_default_and_requeues_too() {
        let secret = "k".repeat(32);
        let read = |name: &'static str, value: &str| {
            Settings::from_vars(vars(&[("JWT_SECRET_KEY", &secret), (name, value)]))
        };
        let default = Settings::from_vars(vars(&[("JWT_SECRET_KEY", &secret)])).expect("valid");
        assert_eq!(default.run.recovery.run_timeout, Duration::from_secs(3600));
        assert_eq!(default.run.recovery.max_requeues, 5);
        let unbounded = read("TASK_RUN_TIMEOUT", "0").expect("0 is no limit");
        assert_eq!(unbounded.run.recovery.run_timeout, Duration::ZERO);
        assert_eq!(
            read("IDEMPOTENCY_WINDOW_SECONDS", "120")
                .expect("valid")
                .store
                .idempotency_window,
            Duration::from_secs(120)
        );
        for (name, bad) in [
            ("TASK_RUN_TIMEOUT", "-1"),
            ("TASK_RUN_TIMEOUT", "99999999999"),
            ("MAX_REQUEUES", "0"),
            ("IDEMPOTENCY_WINDOW_SECONDS", "0"),
        ] {
            let errors = read(name, bad).expect_err(bad);
            assert!(errors[0].starts_with(name), "{errors:?}");
        }
    }

    #[test]
    fn every_bad_variable_gets_its_own_line() {
        let errors = Settings::from_vars(vars(&[
            ("PORT", "eighty"),
            ("ROUTER_INTERVAL", "0"),
            ("LOG_LEVEL", "loud"),
            ("JWT_ALGORITHM", "none"),
        ]))
        .expect_err("invalid");
        assert_eq!(errors.len(), 5, "{errors:#?}");
        for name in [
            "PORT",
            "ROUTER_INTERVAL",
            "LOG_LEVEL",
            "JWT_ALGORITHM",
            "JWT_SECRET_KEY",
        ] {
            assert!(
                errors.iter().any(|e| e.starts_with(name)),
                "{name} missing from {errors:#?}"
            );
        }
    }

    #[test]
    fn production_needs_a_long_secret_development_makes_one() {
        let short = Settings::from_vars(vars(&[("JWT_SECRET_KEY", "short")])).expect_err("too short");
        assert!(short[0].contains("too short"));
        let dev = Settings::from_vars(vars(&[("ENVIRONMENT", "development")])).expect("dev");
        assert!(dev.auth.jwt_secret_generated);
        assert_eq!(dev.auth.jwt_secret.expose_secret().len(), 64);
    }

    #[test]
    fn droplet_endpoints_on_this_host_are_allowed_by_default_only_in_development() {
        let secret = "k".repeat(32);
        let read = |pairs: &[(&str, &str)]| {
            let mut all = vec![("JWT_SECRET_KEY", secret.as_str())];
            all.extend_from_slice(pairs);
            Settings::from_vars(vars(&all)).expect("valid").messaging
        };
        assert_eq!(read(&[]).endpoints, EndpointPolicy::RefusePrivate);
        assert_eq!(
            read(&[("ENVIRONMENT", "staging")]).endpoints,
            EndpointPolicy::RefusePrivate
        );
        assert_eq!(
            read(&[("ENVIRONMENT", "development")]).endpoints,
            EndpointPolicy::AllowPrivate
        );
        let allowed = read(&[("ALLOW_PRIVATE_DROPLET_ENDPOINTS", "true")]);
        assert_eq!(allowed.endpoints, EndpointPolicy::AllowPrivate);
        let refused = read(&[
            ("ENVIRONMENT", "development"),
            ("ALLOW_PRIVATE_DROPLET_ENDPOINTS", "false"),
        ]);
        assert_eq!(refused.endpoints, EndpointPolicy::RefusePrivate);
        assert_eq!(read(&[]).max_reply_bytes, 1_048_576);
        assert_eq!(read(&[("MAX_REPLY_BYTES", "4096")]).max_reply_bytes, 4096);
    }

    #[test]
    fn restart_needed_names_only_start_time_settings() {
        let secret = "k".repeat(32);
        let base = [("JWT_SECRET_KEY", secret.as_str())];
        let a = Settings::from_vars(vars(&base)).expect("valid");
        let b =
            Settings::from_vars(vars(&[base[0], ("PORT", "9000"), ("ROUTER_INTERVAL", "3")])).expect("valid");
        assert_eq!(
            a.restart_needed(&b),
            vec!["PORT"],
            "ROUTER_INTERVAL changes at run time"
        );
        let dev = || Settings::from_vars(vars(&[("ENVIRONMENT", "development")])).expect("dev");
        assert!(
            dev().restart_needed(&dev()).is_empty(),
            "made-up secrets are not a change"
        );
    }

    #[test]
    fn database_url_chooses_the_store() {
        let dev =
            |url: &str| Settings::from_vars(vars(&[("ENVIRONMENT", "development"), ("DATABASE_URL", url)]));
        let pg = dev("postgres://localhost/orchestrator").expect("postgres");
        assert!(
            matches!(&pg.store.kind, StoreKind::Postgres { url } if url.expose_secret().ends_with("/orchestrator"))
        );
        assert!(matches!(
            dev("memory").expect("memory").store.kind,
            StoreKind::Memory
        ));
        let errors = dev("mysql://localhost/x").expect_err("unsupported");
        assert!(errors[0].starts_with("DATABASE_URL"));
    }

    #[test]
    fn cors_origins_are_a_json_array_or_a_comma_list_of_plain_origins() {
        let secret = "k".repeat(32);
        let read =
            |value: &str| Settings::from_vars(vars(&[("JWT_SECRET_KEY", &secret), ("CORS_ORIGINS", value)]));
        let listed = read(r#"["https://dash.example", "http://localhost:3000/"]"#).expect("valid");
        assert_eq!(
            listed.http.cors_origins,
            ["https://dash.example", "http://localhost:3000"]
        );
        let commas = read("https://a.example, https://b.example:8443").expect("valid");
        assert_eq!(commas.http.cors_origins.len(), 2);
        for bad in [
            "*",
            "dash.example",
            "https://dash.example/path",
            r#"["https://a.example""#,
        ] {
            assert!(read(bad).is_err(), "{bad}");
        }
        let defaults = Settings::from_vars(vars(&[("JWT_SECRET_KEY", &secret)])).expect("defaults");
        assert!(defaults.http.cors_origins.is_empty() && !defaults.http.cors_allow_credentials);
    }

    #[test]
    fn a_config_file_overrides_the_environment_and_is_read_again() {
        let dir = std::env::temp_dir().join(format!("orchestrator-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("orchestrator.env");
        std::fs::write(
            &path,
            "# tuning\nexport ROUTER_INTERVAL=7\n\nDROPLET_NAME=\"Orchestrator B\"\n",
        )
        .expect("write");
        let secret = "k".repeat(32);
        let path_text = path.to_string_lossy().into_owned();
        let base = vars(&[
            ("JWT_SECRET_KEY", &secret),
            ("ROUTER_INTERVAL", "3"),
            ("CONFIG_FILE", &path_text),
        ]);
        let first = Settings::from_vars(base).expect("valid");
        assert_eq!(
            first.run.interval(&jobs::task_router::SPEC),
            Duration::from_secs(7),
            "the file wins"
        );
        assert_eq!(first.identity.name, "Orchestrator B");

        std::fs::write(&path, "ROUTER_INTERVAL=9\n").expect("rewrite");
        let again = first.reread().expect("valid");
        assert_eq!(
            again.run.interval(&jobs::task_router::SPEC),
            Duration::from_secs(9)
        );
        assert_eq!(again.identity.name, "Orchestrator", "a line removed falls back");
        assert_eq!(first.restart_needed(&again), ["DROPLET_NAME"]);

        std::fs::write(&path, "ROUTER_INTERVAL\n").expect("rewrite");
        assert_eq!(
            first.reread().expect_err("bad line"),
            [format!("CONFIG_FILE {path_text:?} line 1: expected NAME=value")]
        );
        std::fs::remove_dir_all(&dir).expect("clean up");
        let missing = first.reread().expect_err("missing file");
        assert!(missing[0].contains("cannot be read"), "{missing:?}");
    }

    #[test]
    fn the_source_of_settings_prints_no_value() {
        let secret = "k".repeat(32);
        let s = Settings::from_vars(vars(&[("JWT_SECRET_KEY", &secret)])).expect("valid");
        let printed = format!("{:?}", s.source);
        assert!(
            printed.contains("JWT_SECRET_KEY") && !printed.contains(&secret),
            "{printed}"
        );
    }

    #[test]
    fn each_job_is_timed_by_its_own_setting_and_a_fixed_ones_change_needs_a_restart() {
        let secret = "k".repeat(32);
        let read = |pairs: &[(&str, &str)]| {
            let mut all = vec![("JWT_SECRET_KEY", secret.as_str())];
            all.extend_from_slice(pairs);
            Settings::from_vars(vars(&all)).expect("valid")
        };
        let defaults = read(&[]);
        for job in jobs::ALL {
            assert_eq!(
                defaults.job_interval(job.spec),
                job.spec.default_interval(),
                "{}",
                job.spec.id
            );
        }
        let cleanup = read(&[("HEARTBEAT_CLEANUP_INTERVAL", "60")]);
        assert_eq!(
            cleanup.job_interval(&jobs::idempotency_cleanup::SPEC),
            Duration::from_secs(3600),
            "the idempotency cleanup has a setting of its own"
        );
        let idempotency = read(&[("IDEMPOTENCY_CLEANUP_INTERVAL", "120")]);
        assert_eq!(
            idempotency.run.interval(&jobs::idempotency_cleanup::SPEC),
            Duration::from_secs(120)
        );
        assert!(
            defaults.restart_needed(&idempotency).is_empty(),
            "re-timed by a reload"
        );
        let ping = read(&[("WS_HEARTBEAT_INTERVAL", "5")]);
        assert_eq!(
            ping.job_interval(&jobs::websocket_ping::SPEC),
            Duration::from_secs(5)
        );
        assert_eq!(defaults.restart_needed(&ping), ["WS_HEARTBEAT_INTERVAL"]);
    }

    #[test]
    fn every_start_time_variable_that_changed_needs_a_restart_and_no_run_time_one_does() {
        let secret = "k".repeat(32);
        let read = |pairs: &[(&str, &str)]| {
            let mut all = vec![("JWT_SECRET_KEY", secret.as_str())];
            all.extend_from_slice(pairs);
            Settings::from_vars(vars(&all)).expect("valid")
        };
        let before = read(&[("ROUTER_INTERVAL", "10"), ("SEND_TIMEOUT_SECONDS", "10")]);
        let after = read(&[
            ("ROUTER_INTERVAL", "5"),
            ("HEARTBEAT_TIMEOUT", "30"),
            ("SEND_TIMEOUT_SECONDS", "3"),
            ("CORS_ORIGINS", "https://dash.example"),
        ]);
        assert_eq!(
            before.restart_needed(&after),
            ["CORS_ORIGINS", "SEND_TIMEOUT_SECONDS"]
        );
        assert_eq!(
            after.run.interval(&jobs::task_router::SPEC),
            Duration::from_secs(5)
        );
        let other_secret = "q".repeat(32);
        let rekeyed = Settings::from_vars(vars(&[("JWT_SECRET_KEY", &other_secret)])).expect("valid");
        assert_eq!(read(&[]).restart_needed(&rekeyed), ["JWT_SECRET_KEY"]);
        let dev = || Settings::from_vars(vars(&[("ENVIRONMENT", "development")])).expect("valid");
        assert!(
            dev().restart_needed(&dev()).is_empty(),
            "a made-up development secret is no change"
        );
    }
}
