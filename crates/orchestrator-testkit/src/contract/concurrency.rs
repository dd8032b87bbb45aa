//! The store contract for concurrency limits: limits kept by key, an
//! assignment beyond a key's limit refused whatever races, and claims that
//! leave out the tasks of a key at its limit.

use futures_util::future::join_all;
use orchestrator_domain::{Task, TaskId, TaskUpdate};
use orchestrator_ports::{StoreError, StoreResult};
use uuid::Uuid;

use super::{Actor, NewTask, at, by, claim_ids, claim_query, new_task, register, transition, walk};
use crate::Stores;

async fn keyed(stores: &Stores, key: Option<&str>) -> Task {
    let task = NewTask {
        concurrency_key: key.map(str::to_owned),
        ..new_task("keyed", 5, None)
    };
    stores
        .tasks
        .create_task(task, Uuid::new_v4(), by("alice"), at(0))
        .await
        .expect("create task")
}

async fn assign_to(stores: &Stores, task: &Task, droplet: i64) -> StoreResult<Task> {
    let t = transition(task, TaskUpdate::Assign { droplet_id: droplet }, Actor::SYSTEM, 1);
    stores.tasks.apply_transition(t).await
}

fn sorted(mut ids: Vec<TaskId>) -> Vec<TaskId> {
    ids.sort_unstable();
    ids
}

/// Limits are kept by key, replaced by a new one, listed and removed.
pub async fn a_keys_limit_is_set_read_listed_and_removed(stores: &Stores) {
    let limits = &stores.limits;
    let set = limits
        .set_concurrency_limit("tenant-b", 2, Some("admin".into()), at(1))
        .await
        .expect("set");
    assert_eq!((set.limit.max_running, set.running), (2, 0));
    assert_eq!(set.limit.updated_by.as_deref(), Some("admin"));
    limits
        .set_concurrency_limit("tenant-a", 5, None, at(2))
        .await
        .expect("set");
    let changed = limits
        .set_concurrency_limit("tenant-b", 1, None, at(3))
        .await
        .expect("replaced");
    assert_eq!((changed.limit.max_running, changed.limit.updated_at), (1, at(3)));
    assert_eq!(limits.concurrency_limit("tenant-b").await.expect("get"), changed);
    let keys: Vec<String> = limits
        .concurrency_limits()
        .await
        .expect("list")
        .into_iter()
        .map(|u| u.limit.key)
        .collect();
    assert_eq!(keys, ["tenant-a", "tenant-b"]);
    limits.delete_concurrency_limit("tenant-b").await.expect("delete");
    let gone = limits.concurrency_limit("tenant-b").await;
    assert!(matches!(gone, Err(StoreError::UnknownName { .. })), "{gone:?}");
    let again = limits.delete_concurrency_limit("tenant-b").await;
    assert!(matches!(again, Err(StoreError::UnknownName { .. })), "{again:?}");
}

/// A key at its limit refuses one more assignment and its tasks are left
/// out of claims until one of its runs ends; tasks of other keys, of no
/// key, or of a key without a limit are not held.
pub async fn a_key_at_its_limit_holds_its_tasks_back(stores: &Stores) {
    register(stores, 8, &[], 0).await;
    stores
        .limits
        .set_concurrency_limit("tenant-a", 1, None, at(0))
        .await
        .expect("limit");
    let first = keyed(stores, Some("tenant-a")).await;
    let second = keyed(stores, Some("tenant-a")).await;
    let free = keyed(stores, None).await;
    let unlimited = keyed(stores, Some("tenant-z")).await;
    assert_eq!(
        stores
            .tasks
            .get_task(first.id)
            .await
            .expect("get")
            .concurrency_key
            .as_deref(),
        Some("tenant-a")
    );
    let all = sorted(vec![first.id, second.id, free.id, unlimited.id]);
    let claimed = claim_ids(stores, claim_query(&[], true, 10)).await;
    assert_eq!(sorted(claimed.clone()), all, "no task of the key runs yet");
    stores.tasks.release_claims(&claimed).await.expect("release");

    let running = assign_to(stores, &first, 8).await.expect("room for one");
    let refused = assign_to(stores, &second, 8).await;
    assert!(
        matches!(&refused, Err(StoreError::ConcurrencyLimited { key, running: 1, max_running: 1 }) if key == "tenant-a"),
        "{refused:?}"
    );
    assert_eq!(
        stores.tasks.get_task(second.id).await.expect("get").status,
        orchestrator_domain::TaskStatus::Pending
    );
    assert_eq!(
        stores
            .limits
            .concurrency_limit("tenant-a")
            .await
            .expect("usage")
            .running,
        1
    );
    let claimed = claim_ids(stores, claim_query(&[], true, 10)).await;
    assert_eq!(
        sorted(claimed.clone()),
        sorted(vec![free.id, unlimited.id]),
        "the full key's task is left out"
    );
    stores.tasks.release_claims(&claimed).await.expect("release");

    walk(
        stores,
        &running,
        &[(TaskUpdate::Start, 2), (TaskUpdate::Complete { result: None }, 3)],
    )
    .await;
    let claimed = claim_ids(stores, claim_query(&[], true, 10)).await;
    assert!(
        claimed.contains(&second.id),
        "a slot of the key freed: {claimed:?}"
    );
    stores.tasks.release_claims(&claimed).await.expect("release");
    assign_to(stores, &second, 8).await.expect("its turn");
}

/// Assignments racing for a key's last slots: exactly the limit succeed.
pub async fn concurrent_assignments_never_exceed_a_keys_limit(stores: &Stores) {
    // Room on the droplet for all of them (10 slots): only the key holds them back.
    register(stores, 8, &[], 0).await;
    stores
        .limits
        .set_concurrency_limit("tenant-a", 3, None, at(0))
        .await
        .expect("limit");
    let mut tasks = Vec::new();
    for _ in 0..8 {
        tasks.push(keyed(stores, Some("tenant-a")).await);
    }
    let outcomes = join_all(tasks.iter().map(|t| assign_to(stores, t, 8))).await;
    let assigned = outcomes.iter().filter(|o| o.is_ok()).count();
    let limited = outcomes
        .iter()
        .filter(|o| matches!(o, Err(StoreError::ConcurrencyLimited { .. })))
        .count();
    assert_eq!((assigned, limited), (3, 5), "{outcomes:?}");
}
