//! Request bodies from arbitrary bytes: the strict JSON reader, envelope
//! unwrapping, and the validation of every body a droplet or client sends.
//! Any input must give a value or a client error, never a panic, and the
//! error must render.

#![no_main]

use libfuzzer_sys::fuzz_target;
use orchestrator_domain::{DropletRegistration, HeartbeatReport, NewTask, RegistrationDraft, TaskDraft};
use orchestrator_server::envelope::parse_request_body;
use orchestrator_server::error::ApiError;

fn rendered(err: ApiError) {
    let _ = err.body().to_string();
}

fuzz_target!(|data: &[u8]| {
    match parse_request_body::<TaskDraft>(data) {
        Ok((draft, _)) => {
            if let Err(err) = NewTask::parse(draft, chrono::Utc::now()) {
                let _ = err.to_string();
            }
        }
        Err(err) => rendered(err),
    }
    match parse_request_body::<RegistrationDraft>(data) {
        Ok((draft, _)) => {
            if let Err(err) = DropletRegistration::parse(draft) {
                let _ = err.to_string();
            }
        }
        Err(err) => rendered(err),
    }
    if let Ok((report, _)) = parse_request_body::<HeartbeatReport>(data)
        && let Some(metrics) = &report.metrics
    {
        let _ = orchestrator_domain::storable_json("metrics", metrics);
    }
    if let Err(err) = parse_request_body::<serde_json::Value>(data) {
        rendered(err);
    }
});
