//! Valid inputs and fixed times for tests.

use chrono::{DateTime, TimeZone, Utc};
use orchestrator_domain::{
    Actor, Capability, DropletId, DropletRegistration, NewTask, Priority, RegistrationDraft, Task, TaskDraft,
    TaskUpdate,
};
use orchestrator_ports::{ChangeRecord, Transition};

/// A routing round's plan that assigns every task of `pending` to `droplet`.
pub fn assign_all_to(droplet: DropletId, pending: &[Task]) -> Vec<Transition> {
    pending
        .iter()
        .map(|task| Transition {
            expected_status: task.status,
            expected_attempt: task.attempt,
            expected_droplet: None,
            task: task
                .apply(
                    TaskUpdate::Assign { droplet_id: droplet },
                    Actor::SYSTEM,
                    Utc::now(),
                )
                .expect("a pending task is assignable"),
            record: ChangeRecord::default(),
        })
        .collect()
}

/// A fixed instant `secs` seconds after an arbitrary epoch.
pub fn at(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_763_200_000 + secs, 0)
        .single()
        .unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
}

pub fn capability(name: &str) -> Capability {
    Capability::new(name).unwrap_or_else(|e| panic!("fixture capability {name}: {e}"))
}

/// A valid task of `task_type` with the given priority and capability.
pub fn new_task(task_type: &str, priority: i64, capability: Option<&str>) -> NewTask {
    let draft = TaskDraft {
        task_type: task_type.to_owned(),
        title: Some(format!("{task_type} task")),
        priority: Some(priority),
        required_capability: capability.map(str::to_owned),
        ..TaskDraft::default()
    };
    NewTask::parse(draft, at(0)).unwrap_or_else(|e| panic!("fixture task: {e}"))
}

pub fn priority(value: i64) -> Priority {
    Priority::new(value).unwrap_or_else(|e| panic!("fixture priority: {e}"))
}

/// A valid registration of droplet `id` with these capabilities.
pub fn registration(id: DropletId, capabilities: &[&str]) -> DropletRegistration {
    DropletRegistration::parse(RegistrationDraft {
        droplet_id: id,
        name: format!("droplet-{id}"),
        endpoint: format!("http://127.0.0.1:1/{id}"),
        capabilities: capabilities.iter().map(|c| (*c).to_owned()).collect(),
        ..RegistrationDraft::default()
    })
    .unwrap_or_else(|e| panic!("fixture registration: {e}"))
}
