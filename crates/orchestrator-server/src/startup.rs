//! Builds the application from settings: store, event bus, use cases,
//! router and HTTP server. `main` and the tests use the same path.

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::{App, HttpServer, web};
use orchestrator_app::jobs::{self, JobContext};
use orchestrator_app::{
    ConcurrencyService, Delivery, DropletService, FeedHub, FeedSettings, ManagementService, MessagingService,
    MetricsService, Ports, PublicService, Recovery, RegistrySync, Router, ScheduleService, Scheduler,
    ServiceDirectory, Services, TaskService, WorkflowService,
};
use orchestrator_memory::{InProcessEventBus, MemoryStore, SoleLeader};
use orchestrator_outbound::{DispatchLimits, HttpDispatcher, HttpRegistryClient};
use orchestrator_ports::{
    AnalyticsStore, ConcurrencyStore, DropletStore, LeaderElection, ScheduleStore, ServiceRegistration,
    SystemClock, WorkflowStore,
};
use orchestrator_postgres::{PgEventBus, PgLeaderElection, PgStore, PoolSettings, run_migrations};
use secrecy::ExposeSecret;

use crate::auth::{JwtKeys, TokenVerifier};
use crate::envelope::{BodyLimit, Source, trace_requests};
use crate::limits::{PerCallerLimit, RequestLimit, rate_limits};
use crate::process_stats::ProcessStats;
use crate::routes;
use crate::settings::{Settings, StoreKind};
use crate::stopping::{Drained, Stopping};

/// What every request handler can reach.
#[derive(Debug)]
pub struct AppState {
    pub settings: Settings,
    pub tasks: TaskService,
    pub droplets: DropletService,
    pub public: PublicService,
    pub management: ManagementService,
    /// Cron schedules, and the service that fires them.
    pub schedules: ScheduleService,
    /// Workflows, and the service that settles their dependants.
    pub workflows: WorkflowService,
    /// Concurrency limits per key.
    pub concurrency: ConcurrencyService,
    /// The live feeds of `/ws/tasks` and `/ws/droplets`.
    pub feeds: Arc<FeedHub>,
    /// The Registry, when `REGISTRY_URL` is set.
    pub registry: Option<Arc<RegistrySync>>,
    /// Which droplet each service of the mesh is.
    pub directory: Arc<ServiceDirectory>,
    pub messaging: MessagingService,
    pub metrics: MetricsService,
    /// The Prometheus handle when `ENABLE_METRICS` is on.
    pub prometheus: Option<&'static metrics_exporter_prometheus::PrometheusHandle>,
    /// `BROADCAST_RATE_LIMIT_PER_MINUTE`, per caller.
    pub broadcast_limit: PerCallerLimit,
    /// Stops the HTTP server gracefully (`POST /management/shutdown`); set
    /// once the server exists.
    pub server: std::sync::OnceLock<actix_web::dev::ServerHandle>,
    /// Whether a graceful stop has begun (`/readyz` then answers 503), and
    /// the requests in flight it waits for.
    pub stopping: Arc<Stopping>,
    /// The background services of this process.
    pub services: Arc<Services>,
}

impl AppState {
    /// Begins a graceful stop: readiness is lost, the feeds close, no new
    /// connection is accepted, and the requests in flight other than the
    /// caller's `own` are waited for, up to `SHUTDOWN_GRACE_SECONDS`.
    /// `None` when a stop was already under way.
    pub async fn begin_stop(&self, own: usize) -> Option<Drained> {
        if !self.stopping.begin() {
            return None;
        }
        if let Some(server) = self.server.get() {
            server.pause().await;
        }
        tracing::info!("graceful stop begun: no new connection is accepted");
        let drained = self.stopping.drain(own, self.settings.http.shutdown_grace).await;
        tracing::info!(
            waited_ms = drained.waited.as_millis() as u64,
            abandoned = drained.abandoned,
            "requests in flight drained"
        );
        // Now, while the connections the HTTP workers made are alive: they
        // end with the workers.
        if let Err(err) = self.droplets.write_held_heartbeats().await {
            tracing::warn!(error = %err, "could not write the held heartbeats before stopping");
        }
        Some(drained)
    }

    /// Stops the server after [`AppState::begin_stop`]: what is left are
    /// idle connections, and the requests abandoned if the grace ran out.
    pub fn finish_stop(&self, drained: Drained) -> impl std::future::Future<Output = ()> + use<> {
        let server = self.server.get().cloned();
        async move {
            if let Some(server) = server {
                server.stop(drained.graceful()).await;
            }
        }
    }
}

/// A running orchestrator: its HTTP server and its background jobs.
pub struct Application {
    port: u16,
    server: Server,
    state: web::Data<AppState>,
    /// Written to before exiting: it may hold heartbeats back to batch them.
    droplets: Arc<dyn DropletStore>,
    background: Background,
}

/// The background work of a running application: its services, the
/// adapters' loops among them (stopped with the server, cancelled when
/// dropped).
struct Background {
    services: Arc<Services>,
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application").field("port", &self.port).finish()
    }
}

impl Application {
    /// Wires everything and starts serving on `listener` (bind port 0 in
    /// tests). With PostgreSQL it first applies pending migrations and
    /// refuses to start if the schema it finds does not match.
    pub async fn build(settings: Settings, listener: TcpListener) -> anyhow::Result<Self> {
        let services = Arc::new(Services::default());
        let (
            Adapters {
                ports,
                analytics,
                schedules,
                workflows,
                limits,
            },
            leader,
        ): (Adapters, Arc<dyn LeaderElection>) = match &settings.store.kind {
            StoreKind::Memory => (memory_adapters(), Arc::new(SoleLeader)),
            StoreKind::Postgres { url } => (
                postgres_adapters(url.expose_secret(), &settings, &services).await?,
                Arc::new(PgLeaderElection::new(url.expose_secret())),
            ),
        };
        let router = Router::new(ports.clone());
        let droplets = ports.droplets.clone();
        let dispatcher = Arc::new(HttpDispatcher::new(
            format!("droplet-{}", settings.identity.droplet_id),
            DispatchLimits {
                send_timeout: settings.messaging.send_timeout,
                max_reply_bytes: settings.messaging.max_reply_bytes,
                endpoints: settings.messaging.endpoints,
            },
        )?);
        let feeds = FeedHub::new(FeedSettings {
            max_per_caller: settings.feeds.max_per_caller,
            max_total: settings.feeds.max_total,
            client_buffer: settings.feeds.client_buffer,
        });
        let recovery = Recovery::new(ports.clone(), settings.run.recovery);
        let registry = registry(&settings, &ports)?;
        let scheduler = scheduler(
            &settings,
            leader,
            &JobContext {
                ports: &ports,
                recovery: &recovery,
                router: &router,
                feeds: &feeds,
                registry: registry.as_ref(),
                task_retention: settings.retention.tasks,
                heartbeat_retention: settings.retention.heartbeats,
                idempotency_window: settings.store.idempotency_window,
            },
        );
        let scheduler = Arc::new(scheduler);
        let schedules = ScheduleService::new(ports.clone(), schedules);
        let tasks = TaskService::new(ports.clone())
            .with_router(router.clone())
            .with_idempotency_window(settings.store.idempotency_window)
            .with_workflows(workflows.clone())
            .with_limits(limits.clone());
        let concurrency = ConcurrencyService::new(ports.clone(), limits).with_router(router.clone());
        let workflows = WorkflowService::new(ports.clone(), workflows, tasks.clone());
        start_services(
            &services,
            &settings,
            &ports,
            &StartedWith {
                router: &router,
                scheduler: &scheduler,
                schedules: &schedules,
                workflows: &workflows,
                recovery: &recovery,
                dispatcher: &dispatcher,
                feeds: &feeds,
                registry: registry.as_ref(),
            },
        );
        let background = Background {
            services: services.clone(),
        };
        let keys = web::Data::new(JwtKeys::hs256(
            settings.auth.jwt_secret.expose_secret().as_bytes(),
        ));
        let directory = ServiceDirectory::new(ports.clone(), registry.clone());
        let verifier = web::Data::new(
            TokenVerifier::new(keys.get_ref().clone(), registry.clone(), directory.clone())
                .with_audience(settings.registry.audience.clone()),
        );
        let source = web::Data::new(Source(format!("droplet-{}", settings.identity.droplet_id)));
        let limit = web::Data::new(BodyLimit(settings.http.max_body_bytes));
        let stats = web::Data::new(ProcessStats::default());
        let workers = settings.http.workers;
        let state = web::Data::new(AppState {
            tasks,
            droplets: DropletService::with_directory(ports.clone(), directory.clone())
                .with_recovery(recovery.clone())
                .with_heartbeat_sample_every(settings.store.heartbeat_sample)
                .with_endpoint_policy(settings.messaging.endpoints),
            public: PublicService::new(ports.clone()),
            metrics: MetricsService::new(ports.clone(), analytics),
            management: ManagementService::new(scheduler, recovery, settings.run.clone()),
            schedules,
            workflows,
            concurrency,
            feeds,
            registry,
            directory,
            messaging: MessagingService::new(ports, dispatcher),
            broadcast_limit: PerCallerLimit::per_minute(settings.messaging.broadcast_rate_limit),
            prometheus: if settings.features.metrics {
                crate::telemetry::install()
            } else {
                None
            },
            settings,
            server: std::sync::OnceLock::new(),
            stopping: Arc::default(),
            services,
        });
        let shared = state.clone();
        let requests = web::Data::new(RequestLimit {
            limit: PerCallerLimit::per_minute(state.settings.http.rate_limit),
            trusted: state.settings.http.trusted_proxies.clone(),
        });
        let dashboard = state.settings.features.dashboard;
        let cors_settings = (
            state.settings.http.cors_origins.clone(),
            state.settings.http.cors_allow_credentials,
        );
        let port = listener.local_addr()?.port();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .app_data(keys.clone())
                .app_data(verifier.clone())
                .app_data(source.clone())
                .app_data(limit.clone())
                .app_data(stats.clone())
                .app_data(requests.clone())
                .wrap(from_fn(rate_limits))
                .wrap(cors(&cors_settings))
                .wrap(security_headers())
                .wrap(from_fn(trace_requests))
                .configure(|cfg| {
                    if dashboard {
                        crate::dashboard::configure(cfg);
                    }
                })
                .configure(routes::configure)
                .default_service(web::to(routes::not_found))
        })
        .on_connect(no_delay)
        .workers(workers)
        // What a graceful stop still waits for after the drain: idle
        // keep-alive connections and answers being written.
        .shutdown_timeout(1)
        .disable_signals()
        .listen(listener)?
        .run();
        let _ = shared.server.set(server.handle());
        Ok(Application {
            port,
            server,
            state: shared,
            droplets,
            background,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until the server stops (on SIGINT/SIGTERM in `main`).
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let served = self.server.await;
        // What arrived between the drain's write and the stop, if anything.
        if let Err(err) = self.droplets.flush_heartbeats().await {
            tracing::warn!(error = %err, "could not write the last heartbeats before exiting");
        }
        let services = &self.background.services;
        let stopped = services.stop(SERVICES_STOP_WITHIN).await;
        tracing::info!(
            services = services.names().len(),
            still_running = services.running(),
            all_stopped = stopped,
            "background services stopped"
        );
        served
    }

    /// What the handlers share; `main` stops the server through it
    /// ([`AppState::stop_gracefully`]) on SIGINT/SIGTERM.
    pub fn state(&self) -> web::Data<AppState> {
        self.state.clone()
    }
}

/// CORS for the origins of `CORS_ORIGINS` only; with none, browsers on
/// other origins get no access.
fn cors((origins, credentials): &(Vec<String>, bool)) -> actix_cors::Cors {
    use actix_web::http::{Method, header};
    let mut cors = actix_cors::Cors::default()
        .allowed_methods([Method::GET, Method::POST, Method::PATCH, Method::DELETE])
        .allowed_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            crate::envelope::TRACE_HEADER,
        ])
        .expose_headers([crate::envelope::TRACE_HEADER, header::RETRY_AFTER])
        .max_age(3600);
    for origin in origins {
        cors = cors.allowed_origin(origin);
    }
    if *credentials {
        cors = cors.supports_credentials();
    }
    cors
}

/// Headers every response carries: the API serves JSON only, never pages
/// to frame, sniff or cache.
fn security_headers() -> actix_web::middleware::DefaultHeaders {
    actix_web::middleware::DefaultHeaders::new()
        .add(("X-Content-Type-Options", "nosniff"))
        .add(("X-Frame-Options", "DENY"))
        .add(("Referrer-Policy", "no-referrer"))
        .add((
            "Content-Security-Policy",
            "default-src 'none'; frame-ancestors 'none'",
        ))
        .add(("Cache-Control", "no-store"))
        .add(("Strict-Transport-Security", "max-age=31536000; includeSubDomains"))
}

/// Sends small writes at once. Without it, a feed's frames a few
/// milliseconds apart wait for the client's delayed acknowledgement (up to
/// 40 ms on Linux) under Nagle's algorithm.
fn no_delay(connection: &dyn std::any::Any, _: &mut actix_web::dev::Extensions) {
    if let Some(tcp) = connection.downcast_ref::<actix_web::rt::net::TcpStream>()
        && let Err(err) = tcp.set_nodelay(true)
    {
        tracing::debug!(error = %err, "could not set TCP_NODELAY");
    }
}

/// What the background services are started from.
struct StartedWith<'a> {
    router: &'a Arc<Router>,
    scheduler: &'a Arc<Scheduler>,
    schedules: &'a ScheduleService,
    workflows: &'a WorkflowService,
    recovery: &'a Arc<Recovery>,
    dispatcher: &'a Arc<HttpDispatcher>,
    feeds: &'a Arc<FeedHub>,
    registry: Option<&'a Arc<RegistrySync>>,
}

/// Starts every background service of the process, in one place. Push
/// delivery only with `ENABLE_PUSH_DELIVERY`, the event metrics only with
/// `ENABLE_METRICS`, the registration only with `REGISTRY_URL`.
fn start_services(services: &Services, settings: &Settings, ports: &Ports, with: &StartedWith<'_>) {
    with.router.start(services);
    with.scheduler.start(services);
    with.schedules.start(services);
    with.workflows.start(services);
    with.recovery.start(services);
    with.feeds.start(ports, services, crate::routes::feeds::frame);
    if settings.messaging.push_delivery {
        Delivery::new(ports.clone(), with.dispatcher.clone()).start(services);
    }
    if let Some(registry) = with.registry {
        registry.start(services);
    }
    orchestrator_app::limit_capability_labels(settings.features.labelled_capabilities);
    if settings.features.metrics {
        services.spawn("telemetry: event metrics", crate::telemetry::record_events(ports));
    }
}

/// The Registry client and its use cases, when `REGISTRY_URL` is set.
fn registry(settings: &Settings, ports: &Ports) -> anyhow::Result<Option<Arc<RegistrySync>>> {
    let Some(url) = &settings.registry.url else {
        return Ok(None);
    };
    let client = Arc::new(HttpRegistryClient::new(url)?);
    let identity = &settings.identity;
    let me = ServiceRegistration {
        name: identity.name.clone(),
        droplet_id: identity.droplet_id,
        endpoint: identity.endpoint.clone(),
        port: settings.http.port,
        health_endpoint: "/health".into(),
        capabilities: routes::public::FEATURES.iter().map(|f| (*f).to_owned()).collect(),
        version: env!("CARGO_PKG_VERSION").into(),
        udc_compliant: true,
    };
    Ok(Some(RegistrySync::new(ports.clone(), client, me)))
}

/// The periodic jobs (`jobs::ALL`), each built by its own file and timed
/// by its own setting.
fn scheduler(settings: &Settings, leader: Arc<dyn LeaderElection>, context: &JobContext<'_>) -> Scheduler {
    let mut scheduler = Scheduler::new(leader, context.ports.clock.clone());
    for job in jobs::ALL {
        scheduler.add((job.build)(context), settings.job_interval(job.spec));
    }
    scheduler
}

/// The adapters the use cases are built over.
struct Adapters {
    ports: Ports,
    analytics: Arc<dyn AnalyticsStore>,
    schedules: Arc<dyn ScheduleStore>,
    workflows: Arc<dyn WorkflowStore>,
    limits: Arc<dyn ConcurrencyStore>,
}

fn memory_adapters() -> Adapters {
    let store = Arc::new(MemoryStore::new());
    Adapters {
        ports: Ports {
            tasks: store.clone(),
            droplets: store.clone(),
            events: Arc::new(InProcessEventBus::default()),
            clock: Arc::new(SystemClock),
        },
        analytics: store.clone(),
        schedules: store.clone(),
        workflows: store.clone(),
        limits: store,
    }
}

/// How long the background services have to end after the server stopped.
const SERVICES_STOP_WITHIN: std::time::Duration = std::time::Duration::from_secs(5);

/// How long a request waits for a database connection before it is told
/// the store is unavailable (503).
const DATABASE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// The PostgreSQL store and the event bus that spans the replicas sharing
/// it; their loops run as `services`.
async fn postgres_adapters(
    url: &str,
    settings: &Settings,
    services: &Arc<Services>,
) -> anyhow::Result<Adapters> {
    let pool = settings.store.pool;
    let applied = run_migrations(url).await?;
    for version in &applied {
        tracing::info!(version, "applied migration");
    }
    let pool = PoolSettings {
        max_size: pool.size + pool.max_overflow,
        timeout: DATABASE_WAIT,
    };
    let store = Arc::new(
        PgStore::new(url, pool)?
            .with_heartbeat_flush_every(settings.store.heartbeat_flush_interval)
            .with_services(services.clone()),
    );
    let problems = store.schema_problems().await?;
    if !problems.is_empty() {
        anyhow::bail!(
            "the database schema does not match what this version needs: {}",
            problems.join("; ")
        );
    }
    let events = PgEventBus::start(url, PgStore::clone(&store), services.as_ref()).await;
    Ok(Adapters {
        ports: Ports {
            tasks: store.clone(),
            droplets: store.clone(),
            events: Arc::new(events),
            clock: Arc::new(SystemClock),
        },
        analytics: store.clone(),
        schedules: store.clone(),
        workflows: store.clone(),
        limits: store,
    })
}
