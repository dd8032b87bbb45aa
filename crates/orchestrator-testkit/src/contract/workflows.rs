//! The store contract for workflows: stored whole in one commit, dependants
//! kept out of routing until settled, and settling as the domain says.

use futures_util::future::join_all;
use orchestrator_domain::workflow::SETTLED_BY;
use orchestrator_domain::{
    NewWorkflow, Task, TaskId, TaskStatus, TaskUpdate, WorkflowDraft, WorkflowTaskDraft,
};
use orchestrator_ports::{Settled, StoreError, StoredWorkflow};
use serde_json::{Value, json};
use uuid::Uuid;

use super::{at, by, claim_ids, claim_query, register, walk};
use crate::Stores;

/// `fetch`, then `clean` (which runs anyway when `fetch` fails), then
/// `report` (cancelled when either fails); `other` stands alone.
fn pipeline() -> NewWorkflow {
    let tasks = json!([
        { "key": "report", "task_type": "report", "depends_on": ["fetch", "clean"], "data": { "to": "ops" } },
        { "key": "clean", "task_type": "clean", "depends_on": ["fetch"], "on_dependency_failure": "run_anyway" },
        { "key": "fetch", "task_type": "fetch", "max_retries": 0 },
        { "key": "other", "task_type": "other" },
    ]);
    let tasks = tasks
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
        .map(|(i, t)| WorkflowTaskDraft::from_json(t.clone(), &format!("tasks[{i}]")).expect("a task"))
        .collect();
    let draft = WorkflowDraft {
        name: Some("nightly".into()),
        tasks,
    };
    NewWorkflow::parse(draft, at(0)).expect("a valid workflow")
}

async fn submit(stores: &Stores) -> StoredWorkflow {
    let workflow = pipeline();
    let traces = (0..workflow.tasks.len()).map(|_| Uuid::new_v4()).collect();
    stores
        .workflows
        .create_workflow(workflow, traces, by("alice"), at(1))
        .await
        .expect("create workflow")
}

/// The task of `workflow` under `key`.
fn task<'w>(workflow: &'w StoredWorkflow, key: &str) -> &'w Task {
    &workflow
        .members
        .iter()
        .find(|m| m.key == key)
        .unwrap_or_else(|| panic!("no task '{key}'"))
        .task
}

fn released(settled: &[Settled]) -> Vec<TaskId> {
    settled
        .iter()
        .filter_map(|s| match s {
            Settled::Released(t) => Some(t.id),
            Settled::Cancelled(_) => None,
        })
        .collect()
}

fn cancelled(settled: &[Settled]) -> Vec<TaskId> {
    settled
        .iter()
        .filter_map(|s| match s {
            Settled::Cancelled(t) => Some(t.id),
            Settled::Released(_) => None,
        })
        .collect()
}

/// Runs `task` to its end on droplet 8: `outcome` completes or fails it.
async fn finish(stores: &Stores, task: &Task, outcome: TaskUpdate) -> Task {
    walk(
        stores,
        task,
        &[
            (TaskUpdate::Assign { droplet_id: 8 }, 2),
            (TaskUpdate::Start, 3),
            (outcome, 4),
        ],
    )
    .await
}

/// A workflow comes back whole, in dependency order; its dependants are
/// pending but out of routing, the others routable at once.
pub async fn a_workflow_is_stored_whole_and_its_dependants_wait(stores: &Stores) {
    register(stores, 8, &[], 0).await;
    let made = submit(stores).await;
    let keys: Vec<&str> = made.members.iter().map(|m| m.key.as_str()).collect();
    assert_eq!(keys, ["fetch", "clean", "report", "other"]);
    assert_eq!(
        (made.name.as_deref(), made.created_by.as_deref()),
        (Some("nightly"), Some("alice"))
    );
    let (fetch, clean, report) = (task(&made, "fetch"), task(&made, "clean"), task(&made, "report"));
    assert_eq!(made.members[1].depends_on, [fetch.id]);
    assert_eq!(made.members[2].depends_on, {
        let mut ids = vec![fetch.id, clean.id];
        ids.sort_unstable();
        ids
    });
    let waiting: Vec<bool> = made.members.iter().map(|m| m.waiting).collect();
    assert_eq!(waiting, [false, true, true, false]);
    assert!(made.members.iter().all(|m| m.task.status == TaskStatus::Pending));
    assert_eq!(report.payload, json!({ "to": "ops" }));
    assert_eq!(
        stores.tasks.task_history(clean.id).await.expect("history").len(),
        1
    );

    let claimed = claim_ids(stores, claim_query(&[], true, 10)).await;
    let mut routable = vec![fetch.id, task(&made, "other").id];
    routable.sort_unstable();
    assert_eq!(
        {
            let mut c = claimed.clone();
            c.sort_unstable();
            c
        },
        routable,
        "only the tasks that wait for nothing are routable"
    );
    stores.tasks.release_claims(&claimed).await.expect("release");
    assert_eq!(stores.tasks.next_due_at().await.expect("next due"), None);

    assert_eq!(stores.workflows.get_workflow(made.id).await.expect("get"), made);
    assert_eq!(
        stores.workflows.workflow_of(report.id).await.expect("of"),
        Some(made.id)
    );
    let loose = super::create(stores, "loose", 5, 0).await;
    assert_eq!(stores.workflows.workflow_of(loose.id).await.expect("of"), None);
    let second = submit(stores).await;
    let listed: Vec<i64> = stores
        .workflows
        .list_workflows(10)
        .await
        .expect("list")
        .iter()
        .map(|w| w.id)
        .collect();
    assert_eq!(listed, [second.id, made.id], "newest first");
    let missing = stores.workflows.get_workflow(second.id + 100).await;
    assert!(
        matches!(
            missing,
            Err(StoreError::NotFound {
                entity: "workflow",
                ..
            })
        ),
        "{missing:?}"
    );
}

/// When every dependency completed, a dependant is released with their
/// results and becomes routable; settling again changes nothing.
pub async fn a_dependant_is_released_with_its_dependencies_results(stores: &Stores) {
    register(stores, 8, &[], 0).await;
    let made = submit(stores).await;
    let (fetch, clean, report) = (task(&made, "fetch"), task(&made, "clean"), task(&made, "report"));
    let done = finish(
        stores,
        fetch,
        TaskUpdate::Complete {
            result: Some(json!({ "rows": 3 })),
        },
    )
    .await;
    assert_eq!(
        stores.workflows.unsettled(10).await.expect("unsettled"),
        [fetch.id]
    );

    let settled = stores
        .workflows
        .settle_dependants(&[done.id], at(5))
        .await
        .expect("settle");
    assert_eq!(
        (released(&settled), cancelled(&settled)),
        (vec![clean.id], vec![])
    );
    let stored = stores.tasks.get_task(clean.id).await.expect("get");
    assert_eq!(stored.status, TaskStatus::Pending);
    assert_eq!(
        stored.payload["parent_results"][fetch.id.to_string()],
        json!({ "rows": 3 })
    );
    // `report` still waits (for `clean`), so the sweep still looks at
    // `fetch`; settling it again changes nothing.
    assert_eq!(
        stores.workflows.unsettled(10).await.expect("unsettled"),
        [fetch.id]
    );
    let again = stores
        .workflows
        .settle_dependants(&[done.id], at(6))
        .await
        .expect("settle");
    assert!(again.is_empty(), "{again:?}");
    assert!(
        claim_ids(stores, claim_query(&[], true, 10))
            .await
            .contains(&clean.id)
    );
    let workflow = stores.workflows.get_workflow(made.id).await.expect("get");
    let waiting: Vec<bool> = workflow.members.iter().map(|m| m.waiting).collect();
    assert_eq!(
        waiting,
        [false, false, true, false],
        "report still waits for clean"
    );
    let _ = report;
}

/// A dependency that fails for good cancels its dependants with the
/// `cancel` policy, naming it, and theirs in turn; `run_anyway` ones are
/// released. Retention then deletes the workflow with its last task.
pub async fn a_failure_cancels_dependants_unless_they_run_anyway(stores: &Stores) {
    register(stores, 8, &[], 0).await;
    let made = submit(stores).await;
    let (fetch, clean, report) = (task(&made, "fetch"), task(&made, "clean"), task(&made, "report"));
    let failed = finish(
        stores,
        fetch,
        TaskUpdate::Fail {
            error_message: Some("down".into()),
        },
    )
    .await;
    let settled = stores
        .workflows
        .settle_dependants(&[failed.id], at(5))
        .await
        .expect("settle");
    assert_eq!(
        (released(&settled), cancelled(&settled)),
        (vec![clean.id], vec![report.id])
    );
    let history = stores.tasks.task_history(report.id).await.expect("history");
    let last = history.last().expect("a row");
    assert_eq!(
        (last.from_status, last.to_status),
        (Some(TaskStatus::Pending), TaskStatus::Cancelled)
    );
    assert_eq!(last.changed_by.as_deref(), Some(SETTLED_BY));
    assert!(
        last.reason
            .as_deref()
            .is_some_and(|r| r.contains(&fetch.id.to_string())),
        "{last:?}"
    );
    assert_eq!(last.metadata, Some(json!({ "dependency": fetch.id })));
    let parents = stores.tasks.get_task(clean.id).await.expect("get").payload;
    assert_eq!(parents["parent_results"][fetch.id.to_string()], Value::Null);

    // A cancelled dependency cancels in cascade: a second workflow whose
    // `fetch` is cancelled before it ran cancels `report`, whose `clean`
    // runs anyway.
    let second = submit(stores).await;
    let fetch2 = task(&second, "fetch");
    let creator = orchestrator_domain::Actor::from_roles(&[orchestrator_domain::Role::Creator]);
    let gone = super::transition(fetch2, TaskUpdate::Cancel, creator, 2);
    let gone = stores.tasks.apply_transition(gone).await.expect("cancel");
    let settled = stores
        .workflows
        .settle_dependants(&[gone.id], at(5))
        .await
        .expect("settle");
    assert_eq!(released(&settled), [task(&second, "clean").id]);
    assert_eq!(cancelled(&settled), [task(&second, "report").id]);

    // A waiting task cancelled by hand is the usual change, and stops waiting.
    let third = submit(stores).await;
    let report3 = task(&third, "report");
    let by_hand = super::transition(report3, TaskUpdate::Cancel, creator, 2);
    stores
        .tasks
        .apply_transition(by_hand)
        .await
        .expect("a waiting task can be cancelled");
    let third = stores.workflows.get_workflow(third.id).await.expect("get");
    assert!(!third.members.iter().any(|m| m.key == "report" && m.waiting));

    let everything: Vec<&Task> = made.members.iter().map(|m| &m.task).collect();
    for member in everything
        .iter()
        .filter(|t| t.id != fetch.id && t.id != report.id)
    {
        let current = stores.tasks.get_task(member.id).await.expect("get");
        finish(stores, &current, TaskUpdate::Complete { result: None }).await;
    }
    let deleted = stores
        .tasks
        .delete_finished_tasks(chrono::Utc::now() + chrono::Duration::days(1), 1000)
        .await
        .expect("retention");
    assert!(deleted >= 4, "{deleted}");
    let gone = stores.workflows.get_workflow(made.id).await;
    assert!(matches!(gone, Err(StoreError::NotFound { .. })), "{gone:?}");
    assert!(
        stores.workflows.get_workflow(third.id).await.is_ok(),
        "an unfinished workflow stays"
    );
}

/// Settlings racing over one end release each dependant once.
pub async fn concurrent_settlings_release_once(stores: &Stores) {
    register(stores, 8, &[], 0).await;
    let made = submit(stores).await;
    let fetch = task(&made, "fetch");
    let done = finish(stores, fetch, TaskUpdate::Complete { result: None }).await;
    let ended = [done.id];
    let outcomes = join_all((0..4).map(|_| stores.workflows.settle_dependants(&ended, at(5)))).await;
    let all: Vec<Settled> = outcomes.into_iter().flat_map(|o| o.expect("settle")).collect();
    assert_eq!(released(&all), [task(&made, "clean").id], "{all:?}");
}
