//! The public endpoints, which need no token and answer without the
//! envelope: the UDC endpoints every mesh droplet has (`/health`,
//! `/capabilities`, `/state`, `/dependencies`), and the mesh's service
//! conventions (`service-template-readme.md`): `GET /readyz`, whether this
//! process can take work now, and `GET /v1/metadata`, what it is and what
//! it serves, for the gateway's discovery.

use actix_web::{HttpResponse, web};
use chrono::{SubsecRound, Utc};

use orchestrator_api::public::{
    Capabilities, CustomMetrics, Dependencies, Dependency, DependencyStatus, Endpoint, Health, Metadata,
    Readiness, ReadinessChecks, State,
};
use orchestrator_app::PeerState;
use serde_json::Value;

use crate::error::ApiError;
use crate::process_stats::ProcessStats;
use crate::routes::{documented, resource};
use crate::startup::AppState;

/// What this build can do; features arrive here as they are built.
pub const FEATURES: &[&str] = &[
    "task_routing",
    "droplet_discovery",
    "workflow_management",
    "state_machine_management",
    "priority_queuing",
    "health_monitoring",
    "real_time_updates",
    "task_recovery",
    "automatic_retry",
];

/// [`FEATURES`] as the answers list them.
pub(crate) fn features() -> Vec<String> {
    FEATURES.iter().map(|&feature| feature.to_owned()).collect()
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("", "/health").get(documented!(health)).build())
        .service(
            resource("", "/capabilities")
                .get(documented!(capabilities))
                .build(),
        )
        .service(resource("", "/state").get(documented!(state)).build())
        .service(
            resource("", "/dependencies")
                .get(documented!(dependencies))
                .build(),
        )
        .service(resource("", "/readyz").get(documented!(readiness)).build())
        .service(resource("", "/v1/metadata").get(documented!(metadata)).build());
}

/// Whether the orchestrator can serve: `active` while its store answers.
#[utoipa::path(
    get,
    path = "/health",
    tag = "public",
    responses(
        (status = 200, description = "Serving", body = Health),
        (status = 503, description = "The task store is unavailable", body = Health),
    ),
)]
pub(crate) async fn health(app: web::Data<AppState>) -> HttpResponse {
    let up = app.public.store_is_up().await;
    let identity = &app.settings.identity;
    let body = Health {
        id: identity.droplet_id,
        name: identity.name.clone(),
        steward: Some(identity.steward.clone()),
        status: if up { "active" } else { "error" }.to_owned(),
        endpoint: Some(identity.endpoint.clone()),
        updated_at: Some(Utc::now().trunc_subsecs(0)),
        message: if up {
            "All systems operational"
        } else {
            "The task store is unavailable"
        }
        .to_owned(),
    };
    if up {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

/// What this build can do.
#[utoipa::path(
    get,
    path = "/capabilities",
    tag = "public",
    responses((status = 200, description = "Version and features", body = Capabilities)),
)]
pub(crate) async fn capabilities() -> HttpResponse {
    HttpResponse::Ok().json(Capabilities {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        features: features(),
        dependencies: vec!["registry".to_owned()],
        udc_version: crate::envelope::UDC_VERSION.to_owned(),
    })
}

/// The process and the work it holds.
#[utoipa::path(
    get,
    path = "/state",
    tag = "public",
    responses((status = 200, description = "Process figures and task counts", body = State)),
)]
pub(crate) async fn state(
    app: web::Data<AppState>,
    stats: web::Data<ProcessStats>,
) -> Result<HttpResponse, ApiError> {
    let counts = app.public.public_snapshot().await?;
    let sample = stats.sample();
    Ok(HttpResponse::Ok().json(State {
        cpu_percent: sample.cpu_percent,
        memory_mb: sample.memory_mb,
        uptime_seconds: sample.uptime_seconds,
        custom_metrics: CustomMetrics {
            tasks_active: counts.tasks_active,
            tasks_pending: counts.tasks_pending,
            tasks_completed: counts.tasks_completed,
            tasks_failed: counts.tasks_failed,
            droplets_active: counts.droplets_active,
            droplets_total: counts.droplets_total,
            num_threads: sample.num_threads,
        },
    }))
}

/// The droplets this one relies on, and their state.
#[utoipa::path(
    get,
    path = "/dependencies",
    tag = "public",
    responses((status = 200, description = "Required and optional dependencies", body = Dependencies)),
)]
pub(crate) async fn dependencies(app: web::Data<AppState>) -> HttpResponse {
    let unknown = |id, name: &str| Dependency {
        id,
        name: name.to_owned(),
        status: DependencyStatus::Unknown,
        last_check: None,
        last_error: None,
    };
    // Without REGISTRY_URL the orchestrator runs standalone: it signs and
    // checks its own tokens and keeps its own droplet directory.
    let registry = match &app.registry {
        Some(registry) => {
            let health = registry.health();
            Dependency {
                status: registry_status(health.status),
                last_check: health.last_check,
                last_error: health.last_error,
                ..unknown(3, "Registry v2")
            }
        }
        None => Dependency {
            status: DependencyStatus::NotConfigured,
            ..unknown(3, "Registry v2")
        },
    };
    let mut optional = Vec::new();
    for (id, name) in OPTIONAL_PEERS {
        optional.push(peer(id, name, app.public.peer(id).await));
    }
    HttpResponse::Ok().json(Dependencies {
        required: vec![registry],
        optional,
        missing: Vec::new(),
    })
}

/// The droplets of the mesh the orchestrator works with when they are
/// there (spec: the Dashboard follows its feeds, the Verifier checks results).
const OPTIONAL_PEERS: [(i64, &str); 2] = [(5, "Dashboard"), (8, "Verifier")];

/// The Registry's state as the sync records it (`unknown` until the first call).
fn registry_status(recorded: &str) -> DependencyStatus {
    match recorded {
        "connected" => DependencyStatus::Connected,
        "disconnected" => DependencyStatus::Disconnected,
        _ => DependencyStatus::Unknown,
    }
}

fn peer(id: i64, name: &str, state: PeerState) -> Dependency {
    let (status, last_check, last_error) = match state {
        PeerState::Connected { last_heartbeat } => (DependencyStatus::Connected, last_heartbeat, None),
        PeerState::Disconnected {
            status,
            last_heartbeat,
        } => (
            DependencyStatus::Disconnected,
            last_heartbeat,
            Some(format!("the droplet is {}", status.as_str())),
        ),
        PeerState::NotRegistered => (DependencyStatus::NotRegistered, None, None),
        PeerState::Unknown { error } => (DependencyStatus::Unknown, None, Some(error)),
    };
    Dependency {
        id,
        name: name.to_owned(),
        status,
        last_check,
        last_error,
    }
}

/// Whether this process can take work: its store answers, the database
/// has every migration of this build, and it is not stopping. A load
/// balancer sends work only to ready replicas; `/health` says whether the
/// process is alive.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "public",
    responses(
        (status = 200, description = "Ready to take work", body = Readiness),
        (status = 503, description = "Not ready: the reasons say why", body = Readiness),
    ),
)]
pub(crate) async fn readiness(app: web::Data<AppState>) -> HttpResponse {
    let shutting_down = app.stopping.has_begun();
    let store = app.public.readiness().await;
    let mut reasons = Vec::new();
    if !store.store_up {
        reasons.push("the task store does not answer".to_owned());
    }
    let migrations = match &store.pending_migrations {
        Some(pending) if pending.is_empty() => "current",
        Some(pending) => {
            reasons.push(format!("the database lacks migrations {}", pending.join(", ")));
            "pending"
        }
        None => {
            if store.store_up {
                reasons.push("the applied migrations could not be read".to_owned());
            }
            "unknown"
        }
    };
    if shutting_down {
        reasons.push("the process is stopping".to_owned());
    }
    let ready = reasons.is_empty();
    let body = Readiness {
        status: if ready { "ready" } else { "not_ready" }.to_owned(),
        checks: ReadinessChecks {
            store: if store.store_up { "ok" } else { "unavailable" }.to_owned(),
            migrations: migrations.to_owned(),
            shutting_down,
        },
        reasons,
    };
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable()
            .insert_header(("Retry-After", crate::error::RETRY_AFTER_SECONDS.to_string()))
            .json(body)
    }
}

/// What this service is and what it serves, for the gateway's discovery.
#[utoipa::path(
    get,
    path = "/v1/metadata",
    tag = "public",
    responses((status = 200, description = "Name, version, capabilities and endpoints", body = Metadata)),
)]
pub(crate) async fn metadata(app: web::Data<AppState>) -> HttpResponse {
    let identity = &app.settings.identity;
    HttpResponse::Ok().json(Metadata {
        name: identity.name.clone(),
        service: "orchestrator".to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        droplet_id: identity.droplet_id,
        steward: identity.steward.clone(),
        base_url: identity.endpoint.clone(),
        udc_version: crate::envelope::UDC_VERSION.to_owned(),
        capabilities: features(),
        health_endpoint: "/health".to_owned(),
        readiness_endpoint: "/readyz".to_owned(),
        openapi_endpoint: "/openapi.json".to_owned(),
        endpoints: endpoints().to_vec(),
    })
}

/// The endpoints the OpenAPI document describes, read once.
fn endpoints() -> &'static [Endpoint] {
    static ENDPOINTS: std::sync::OnceLock<Vec<Endpoint>> = std::sync::OnceLock::new();
    ENDPOINTS.get_or_init(|| {
        let document: Value = serde_json::from_str(crate::openapi::document_json()).unwrap_or_default();
        let Some(paths) = document["paths"].as_object() else {
            return Vec::new();
        };
        let mut found = Vec::new();
        for (path, item) in paths {
            for method in ["get", "post", "patch", "put", "delete"] {
                let operation = &item[method];
                if operation.is_object() {
                    found.push(Endpoint {
                        method: method.to_uppercase(),
                        path: path.clone(),
                        summary: operation["summary"].as_str().map(str::to_owned),
                        authenticated: operation.get("security").is_some(),
                    });
                }
            }
        }
        found
    })
}
