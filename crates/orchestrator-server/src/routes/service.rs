//! The mesh's service conventions (`service-template-readme.md`): `GET
//! /readyz`, whether this process can take work now, and `GET
//! /v1/metadata`, what it is and what it serves, for the gateway's
//! discovery. Both public and bare, like `/health`.

use actix_web::{HttpResponse, web};
use orchestrator_api::public::{Endpoint, Metadata, Readiness, ReadinessChecks};
use serde_json::Value;

use crate::routes::health::features;
use crate::routes::resource;
use crate::startup::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("", "/readyz").get(readiness).build())
        .service(resource("", "/v1/metadata").get(metadata).build());
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
    let store = app.status.readiness().await;
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
