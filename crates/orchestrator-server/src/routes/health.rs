//! The public UDC endpoints: `/health`, `/capabilities`, `/state`,
//! `/dependencies`. No token needed, no envelope.

use actix_web::{HttpResponse, web};
use chrono::{SecondsFormat, Utc};
use serde_json::json;

use crate::error::ApiError;
use crate::process_stats::ProcessStats;
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

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/health", web::get().to(health))
        .route("/capabilities", web::get().to(capabilities))
        .route("/state", web::get().to(state))
        .route("/dependencies", web::get().to(dependencies));
}

async fn health(app: web::Data<AppState>) -> HttpResponse {
    let up = app.status.store_is_up().await;
    let identity = &app.settings.identity;
    let body = json!({
        "id": identity.droplet_id,
        "name": identity.name,
        "steward": identity.steward,
        "status": if up { "active" } else { "error" },
        "endpoint": identity.endpoint,
        "updated_at": Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true),
        "message": if up { "All systems operational" } else { "The task store is unavailable" },
    });
    if up {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

async fn capabilities() -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "features": FEATURES,
        "dependencies": ["registry"],
        "udc_version": crate::envelope::UDC_VERSION,
    }))
}

async fn state(app: web::Data<AppState>, stats: web::Data<ProcessStats>) -> Result<HttpResponse, ApiError> {
    let counts = app.status.snapshot().await?;
    let sample = stats.sample();
    Ok(HttpResponse::Ok().json(json!({
        "cpu_percent": sample.cpu_percent,
        "memory_mb": sample.memory_mb,
        "uptime_seconds": sample.uptime_seconds,
        "custom_metrics": {
            "tasks_active": counts.tasks_active,
            "tasks_pending": counts.tasks_pending,
            "tasks_completed": counts.tasks_completed,
            "tasks_failed": counts.tasks_failed,
            "droplets_active": counts.droplets_active,
            "droplets_total": counts.droplets_total,
            "num_threads": sample.num_threads,
        }
    })))
}

async fn dependencies(app: web::Data<AppState>) -> HttpResponse {
    // Without REGISTRY_URL the orchestrator runs standalone: it signs and
    // checks its own tokens and keeps its own droplet directory.
    let registry_status = if app.settings.registry_url.is_some() {
        "unknown"
    } else {
        "not_configured"
    };
    HttpResponse::Ok().json(json!({
        "required": [
            {"id": 3, "name": "Registry v2", "status": registry_status, "last_check": null}
        ],
        "optional": [
            {"id": 5, "name": "Dashboard", "status": "unknown", "last_check": null},
            {"id": 8, "name": "Verifier", "status": "unknown", "last_check": null}
        ],
        "missing": []
    }))
}
