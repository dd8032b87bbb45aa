//! The public UDC endpoints: `/health`, `/capabilities`, `/state`,
//! `/dependencies`. No token needed, no envelope.

use actix_web::{HttpResponse, web};
use chrono::{SubsecRound, Utc};

use orchestrator_api::public::{
    Capabilities, CustomMetrics, Dependencies, Dependency, DependencyStatus, Health, State,
};
use orchestrator_app::PeerState;

use crate::error::ApiError;
use crate::process_stats::ProcessStats;
use crate::routes::resource;
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
    cfg.service(resource("", "/health").get(health).build())
        .service(resource("", "/capabilities").get(capabilities).build())
        .service(resource("", "/state").get(state).build())
        .service(resource("", "/dependencies").get(dependencies).build());
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
    let up = app.status.store_is_up().await;
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
    let counts = app.status.public_snapshot().await?;
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
        optional.push(peer(id, name, app.status.peer(id).await));
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
