//! Workflows: tasks that depend on others, submitted together. The rules
//! live here: what a valid workflow is (unique keys, known dependencies,
//! no cycle, at most [`MAX_WORKFLOW_TASKS`]), when a dependant may run, what
//! a dependency that ends badly does to it, and how its dependencies'
//! results reach it.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::bounded_text;
use crate::{NewTask, Task, TaskDraft, TaskId, TaskStatus, ValidationError};

/// A workflow's id.
pub type WorkflowId = i64;

/// Most tasks one workflow may hold.
pub const MAX_WORKFLOW_TASKS: usize = 100;
/// Longest key of a task within its workflow.
pub const MAX_WORKFLOW_KEY_CHARS: usize = 100;

/// What a dependant does when a dependency fails with nothing left to
/// retry, or is cancelled.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DependencyFailure {
    /// It is cancelled, with a history row naming the dependency.
    #[default]
    Cancel,
    /// It runs all the same once every dependency has finished.
    RunAnyway,
}

/// One task of a workflow as a client sends it: the body of `POST /tasks`
/// with its `key`, the keys it `depends_on`, and `on_dependency_failure`.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkflowTaskDraft {
    pub key: String,
    pub depends_on: Vec<String>,
    pub on_dependency_failure: Option<DependencyFailure>,
    pub task: TaskDraft,
}

impl WorkflowTaskDraft {
    /// Reads one task of a workflow body; `at` names it in errors
    /// (`tasks[2]`). The workflow's own fields are taken out, the rest is
    /// read as `POST /tasks` reads its body.
    pub fn from_json(value: Value, at: &str) -> Result<Self, ValidationError> {
        let Value::Object(mut fields) = value else {
            return Err(ValidationError::new(
                at,
                "each task of a workflow is a JSON object",
            ));
        };
        let key = match fields.remove("key") {
            Some(Value::String(key)) => key,
            _ => return Err(ValidationError::new(format!("{at}.key"), "key must be a string")),
        };
        let depends_on = match fields.remove("depends_on") {
            None | Some(Value::Null) => Vec::new(),
            Some(keys) => serde_json::from_value(keys).map_err(|_| {
                ValidationError::new(format!("{at}.depends_on"), "depends_on must be a list of keys")
            })?,
        };
        let on_dependency_failure = match fields.remove("on_dependency_failure") {
            None | Some(Value::Null) => None,
            Some(policy) => Some(serde_json::from_value(policy).map_err(|_| {
                ValidationError::new(
                    format!("{at}.on_dependency_failure"),
                    "on_dependency_failure must be cancel or run_anyway",
                )
            })?),
        };
        let task = serde_json::from_value(Value::Object(fields))
            .map_err(|e| ValidationError::new(at, format!("not a task: {e}")))?;
        Ok(Self {
            key,
            depends_on,
            on_dependency_failure,
            task,
        })
    }
}

/// A workflow as a client sends it (`POST /workflows`).
#[derive(Debug, Clone, PartialEq)]
pub struct WorkflowDraft {
    pub name: Option<String>,
    pub tasks: Vec<WorkflowTaskDraft>,
}

/// One valid task of a workflow.
#[derive(Debug, Clone, PartialEq)]
pub struct NewWorkflowTask {
    pub key: String,
    /// Its dependencies, as positions in [`NewWorkflow::tasks`].
    pub depends_on: Vec<usize>,
    pub on_dependency_failure: DependencyFailure,
    pub task: NewTask,
}

/// A valid workflow: its tasks in an order where each comes after its
/// dependencies.
#[derive(Debug, Clone, PartialEq)]
pub struct NewWorkflow {
    pub name: Option<String>,
    pub tasks: Vec<NewWorkflowTask>,
}

impl NewWorkflow {
    /// Validates a draft at `now`: every task as `POST /tasks` would, keys
    /// unique, dependencies known, no cycle; errors name the task
    /// (`tasks[2].depends_on`).
    pub fn parse(draft: WorkflowDraft, now: DateTime<Utc>) -> Result<Self, ValidationError> {
        if draft.tasks.is_empty() || draft.tasks.len() > MAX_WORKFLOW_TASKS {
            return Err(ValidationError::new(
                "tasks",
                format!(
                    "a workflow holds 1 to {MAX_WORKFLOW_TASKS} tasks, got {}",
                    draft.tasks.len()
                ),
            ));
        }
        let name = draft
            .name
            .as_deref()
            .map(|name| bounded_text("name", name, MAX_WORKFLOW_KEY_CHARS))
            .transpose()?;
        let positions = key_positions(&draft.tasks)?;
        let mut tasks = Vec::with_capacity(draft.tasks.len());
        for (i, task) in draft.tasks.into_iter().enumerate() {
            tasks.push(new_task(i, task, &positions, now)?);
        }
        let order = dependency_order(&tasks)?;
        Ok(Self {
            name,
            tasks: reorder(tasks, &order),
        })
    }
}

/// Each key's position; a key empty, too long or given twice is refused.
fn key_positions(tasks: &[WorkflowTaskDraft]) -> Result<HashMap<String, usize>, ValidationError> {
    let mut positions = HashMap::new();
    for (i, task) in tasks.iter().enumerate() {
        let key = bounded_text(&format!("tasks[{i}].key"), &task.key, MAX_WORKFLOW_KEY_CHARS)?;
        if positions.insert(key.clone(), i).is_some() {
            return Err(ValidationError::new(
                format!("tasks[{i}].key"),
                format!("key '{key}' is given to two tasks"),
            ));
        }
    }
    Ok(positions)
}

fn new_task(
    i: usize,
    draft: WorkflowTaskDraft,
    positions: &HashMap<String, usize>,
    now: DateTime<Utc>,
) -> Result<NewWorkflowTask, ValidationError> {
    let mut depends_on = Vec::with_capacity(draft.depends_on.len());
    for key in &draft.depends_on {
        let Some(&at) = positions.get(key.trim()) else {
            return Err(ValidationError::new(
                format!("tasks[{i}].depends_on"),
                format!("no task of the workflow has the key '{key}'"),
            ));
        };
        if at == i {
            return Err(ValidationError::new(
                format!("tasks[{i}].depends_on"),
                "a task cannot depend on itself",
            ));
        }
        if !depends_on.contains(&at) {
            depends_on.push(at);
        }
    }
    let task = NewTask::parse(draft.task, now)
        .map_err(|e| ValidationError::new(format!("tasks[{i}].{}", e.field), e.message))?;
    Ok(NewWorkflowTask {
        key: draft.key.trim().to_owned(),
        depends_on,
        on_dependency_failure: draft.on_dependency_failure.unwrap_or_default(),
        task,
    })
}

/// The positions in an order where each task follows its dependencies
/// (Kahn's algorithm, lowest position first among the ready ones); a cycle
/// is refused naming a task on it.
fn dependency_order(tasks: &[NewWorkflowTask]) -> Result<Vec<usize>, ValidationError> {
    let mut waiting_on: Vec<usize> = tasks.iter().map(|t| t.depends_on.len()).collect();
    let mut dependants: Vec<Vec<usize>> = vec![Vec::new(); tasks.len()];
    for (i, task) in tasks.iter().enumerate() {
        for &dependency in &task.depends_on {
            dependants[dependency].push(i);
        }
    }
    let mut ready: std::collections::BTreeSet<usize> =
        (0..tasks.len()).filter(|&i| waiting_on[i] == 0).collect();
    let mut order = Vec::with_capacity(tasks.len());
    while let Some(i) = ready.pop_first() {
        order.push(i);
        for &dependant in &dependants[i] {
            waiting_on[dependant] -= 1;
            if waiting_on[dependant] == 0 {
                ready.insert(dependant);
            }
        }
    }
    match (0..tasks.len()).find(|&i| waiting_on[i] > 0) {
        Some(i) => Err(ValidationError::new(
            format!("tasks[{i}].depends_on"),
            format!("task '{}' is on a cycle of dependencies", tasks[i].key),
        )),
        None => Ok(order),
    }
}

/// `tasks` in `order`, their dependencies renumbered to match.
fn reorder(tasks: Vec<NewWorkflowTask>, order: &[usize]) -> Vec<NewWorkflowTask> {
    let mut new_position = vec![0; order.len()];
    for (position, &old) in order.iter().enumerate() {
        new_position[old] = position;
    }
    let mut slots: Vec<Option<NewWorkflowTask>> = tasks.into_iter().map(Some).collect();
    order
        .iter()
        .filter_map(|&old| slots[old].take())
        .map(|mut task| {
            task.depends_on = task.depends_on.iter().map(|&d| new_position[d]).collect();
            task
        })
        .collect()
}

/// Where a dependant stands, given its dependencies as they are now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    /// Every dependency completed (or, with `run_anyway`, finished): it
    /// may be routed.
    Ready,
    /// It waits for these dependencies (pending reason `waiting_for`).
    WaitingFor(Vec<TaskId>),
    /// A dependency failed for good or was cancelled, and the policy is
    /// `cancel`: it is cancelled, naming that dependency.
    Cancelled { because_of: TaskId },
}

/// How a dependency ended, as far as its dependants care, at `now`.
fn ended_badly(task: &Task, now: DateTime<Utc>) -> bool {
    task.status == TaskStatus::Cancelled || (task.status == TaskStatus::Failed && task.is_finished(now))
}

/// Where a task with `policy` stands given its `dependencies` at `now`.
pub fn readiness(policy: DependencyFailure, dependencies: &[Task], now: DateTime<Utc>) -> Readiness {
    if policy == DependencyFailure::Cancel
        && let Some(bad) = dependencies.iter().find(|d| ended_badly(d, now))
    {
        return Readiness::Cancelled { because_of: bad.id };
    }
    let waiting: Vec<TaskId> = dependencies
        .iter()
        .filter(|d| {
            !(d.status == TaskStatus::Completed
                || (policy == DependencyFailure::RunAnyway && ended_badly(d, now)))
        })
        .map(|d| d.id)
        .collect();
    if waiting.is_empty() {
        Readiness::Ready
    } else {
        Readiness::WaitingFor(waiting)
    }
}

/// What becomes of a waiting task, given its dependencies as they are now.
#[derive(Debug, Clone, PartialEq)]
pub enum Settlement {
    /// It keeps waiting for these dependencies.
    Wait(Vec<TaskId>),
    /// It is released: routable now, as this task (its payload carrying
    /// `parent_results`).
    Release(Task),
    /// It is cancelled by the system, as this task, because of the
    /// dependency `because_of`; `reason` is its history row's.
    Cancel {
        task: Task,
        because_of: TaskId,
        reason: String,
    },
    /// It is no longer pending (cancelled by hand): it stops waiting.
    Gone,
}

/// Who the history rows of settling name.
pub const SETTLED_BY: &str = "system:workflows";

/// Settles `task`, waiting with `policy`, at `at`, given its
/// `dependencies`: the one rule both stores apply.
pub fn settle(
    task: &Task,
    policy: DependencyFailure,
    dependencies: &[Task],
    at: DateTime<Utc>,
) -> Settlement {
    if task.status != TaskStatus::Pending {
        return Settlement::Gone;
    }
    match readiness(policy, dependencies, at) {
        Readiness::WaitingFor(ids) => Settlement::Wait(ids),
        Readiness::Ready => {
            let mut released = task.clone();
            released.payload = with_parent_results(&task.payload, dependencies);
            released.updated_at = at;
            Settlement::Release(released)
        }
        Readiness::Cancelled { because_of } => {
            let system = crate::Actor::from_roles(&[crate::Role::System]);
            match task.apply(crate::TaskUpdate::Cancel, system, at) {
                Ok(cancelled) => Settlement::Cancel {
                    task: cancelled,
                    because_of,
                    reason: dependencies.iter().find(|d| d.id == because_of).map_or_else(
                        || format!("cancelled: dependency task {because_of} ended badly"),
                        cancelled_because,
                    ),
                },
                Err(_) => Settlement::Gone,
            }
        }
    }
}

/// Where a workflow stands, from its tasks' states.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkflowState {
    /// Some task has not finished.
    Running,
    /// Every task completed.
    Completed,
    /// Every task finished, and one failed for good.
    Failed,
    /// Every task finished, none failed for good, and one was cancelled.
    Cancelled,
}

impl WorkflowState {
    /// The state of a workflow made of `tasks`, at `now`.
    pub fn of<'a>(tasks: impl IntoIterator<Item = &'a Task>, now: DateTime<Utc>) -> Self {
        let (mut failed, mut cancelled) = (false, false);
        for task in tasks {
            match task.status {
                TaskStatus::Completed => {}
                TaskStatus::Cancelled => cancelled = true,
                TaskStatus::Failed if task.is_finished(now) => failed = true,
                _ => return WorkflowState::Running,
            }
        }
        if failed {
            WorkflowState::Failed
        } else if cancelled {
            WorkflowState::Cancelled
        } else {
            WorkflowState::Completed
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            WorkflowState::Running => "running",
            WorkflowState::Completed => "completed",
            WorkflowState::Failed => "failed",
            WorkflowState::Cancelled => "cancelled",
        }
    }
}

/// Whether a dependency has ended in a way its dependants act on: it
/// completed, was cancelled, or failed with nothing left to retry.
pub fn has_ended(task: &Task, now: DateTime<Utc>) -> bool {
    task.status == TaskStatus::Completed || ended_badly(task, now)
}

/// Why a dependant was cancelled, for its history row.
pub fn cancelled_because(dependency: &Task) -> String {
    format!(
        "cancelled: dependency task {} {}",
        dependency.id,
        if dependency.status == TaskStatus::Cancelled {
            "was cancelled"
        } else {
            "failed with no retries left"
        }
    )
}

/// The payload a dependant runs with: its own, with `parent_results`, its
/// dependencies' results keyed by their ids (a failed or cancelled one's
/// is `null`).
pub fn with_parent_results(payload: &Value, dependencies: &[Task]) -> Value {
    let results: BTreeMap<String, Value> = dependencies
        .iter()
        .map(|d| (d.id.to_string(), d.result.clone().unwrap_or(Value::Null)))
        .collect();
    let mut payload = payload.clone();
    if let Value::Object(fields) = &mut payload {
        fields.insert("parent_results".into(), serde_json::json!(results));
    }
    payload
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use serde_json::json;

    use super::*;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
            .single()
            .expect("a valid time")
    }

    fn draft(tasks: Value) -> WorkflowDraft {
        let tasks = tasks
            .as_array()
            .expect("a list")
            .iter()
            .enumerate()
            .map(|(i, t)| WorkflowTaskDraft::from_json(t.clone(), &format!("tasks[{i}]")).expect("a task"))
            .collect();
        WorkflowDraft { name: None, tasks }
    }

    fn refused(tasks: Value) -> ValidationError {
        NewWorkflow::parse(draft(tasks), now()).expect_err("refused")
    }

    #[test]
    fn a_workflow_is_ordered_so_that_each_task_follows_its_dependencies() {
        let made = NewWorkflow::parse(
            draft(json!([
                { "key": "report", "task_type": "report", "depends_on": ["fetch", "clean"] },
                { "key": "clean", "task_type": "clean", "depends_on": ["fetch"], "on_dependency_failure": "run_anyway" },
                { "key": "fetch", "task_type": "fetch", "data": { "url": "x" } },
            ])),
            now(),
        )
        .expect("valid");
        let keys: Vec<&str> = made.tasks.iter().map(|t| t.key.as_str()).collect();
        assert_eq!(keys, ["fetch", "clean", "report"]);
        assert_eq!(made.tasks[1].depends_on, [0]);
        assert_eq!(made.tasks[2].depends_on, [0, 1]);
        assert_eq!(made.tasks[1].on_dependency_failure, DependencyFailure::RunAnyway);
        assert_eq!(made.tasks[2].on_dependency_failure, DependencyFailure::Cancel);
        assert_eq!(made.tasks[0].task.payload, json!({ "url": "x" }));
    }

    #[test]
    fn a_bad_workflow_is_refused_naming_the_task() {
        let cycle = refused(json!([
            { "key": "a", "task_type": "t", "depends_on": ["b"] },
            { "key": "b", "task_type": "t", "depends_on": ["a"] },
            { "key": "c", "task_type": "t" },
        ]));
        assert_eq!(cycle.field, "tasks[0].depends_on");
        assert!(cycle.message.contains("cycle"), "{cycle:?}");
        let unknown = refused(json!([{ "key": "a", "task_type": "t", "depends_on": ["z"] }]));
        assert_eq!(unknown.field, "tasks[0].depends_on");
        let itself = refused(json!([{ "key": "a", "task_type": "t", "depends_on": ["a"] }]));
        assert_eq!(itself.field, "tasks[0].depends_on");
        let twice = refused(json!([{ "key": "a", "task_type": "t" }, { "key": "a", "task_type": "t" }]));
        assert_eq!(twice.field, "tasks[1].key");
        let untyped = refused(json!([{ "key": "a", "task_type": "t" }, { "key": "b", "task_type": "" }]));
        assert_eq!(untyped.field, "tasks[1].task_type");
        let too_many: Vec<Value> = (0..=MAX_WORKFLOW_TASKS)
            .map(|i| json!({ "key": i.to_string(), "task_type": "t" }))
            .collect();
        assert_eq!(refused(json!(too_many)).field, "tasks");
        assert_eq!(refused(json!([])).field, "tasks");
        let not_a_task = WorkflowTaskDraft::from_json(json!({ "key": "a", "tsk_type": "t" }), "tasks[0]");
        assert_eq!(not_a_task.expect_err("unknown field").field, "tasks[0]");
    }

    fn task(id: TaskId, status: TaskStatus, result: Option<Value>) -> Task {
        let draft = TaskDraft {
            task_type: "t".into(),
            max_retries: Some(0),
            ..TaskDraft::default()
        };
        Task {
            status,
            result,
            ..NewTask::parse(draft, now())
                .expect("valid")
                .into_task(id, uuid::Uuid::nil(), None, now())
        }
    }

    #[test]
    fn a_dependant_runs_when_all_completed_and_is_cancelled_by_a_bad_end_unless_told_to_run_anyway() {
        let done = task(1, TaskStatus::Completed, Some(json!({ "rows": 3 })));
        let running = task(2, TaskStatus::InProgress, None);
        let failed = task(3, TaskStatus::Failed, None);
        let cancel = DependencyFailure::Cancel;
        let anyway = DependencyFailure::RunAnyway;
        assert_eq!(
            readiness(cancel, std::slice::from_ref(&done), now()),
            Readiness::Ready
        );
        assert_eq!(readiness(cancel, &[], now()), Readiness::Ready);
        assert_eq!(
            readiness(cancel, &[done.clone(), running.clone()], now()),
            Readiness::WaitingFor(vec![2])
        );
        assert_eq!(
            readiness(cancel, &[running.clone(), failed.clone()], now()),
            Readiness::Cancelled { because_of: 3 }
        );
        assert_eq!(
            readiness(anyway, &[running.clone(), failed.clone()], now()),
            Readiness::WaitingFor(vec![2])
        );
        assert_eq!(
            readiness(anyway, &[done.clone(), failed.clone()], now()),
            Readiness::Ready
        );
        // A failure with retries left is not a bad end yet.
        let retrying = Task {
            max_retries: 3,
            ..failed.clone()
        };
        assert_eq!(
            readiness(cancel, &[retrying], now()),
            Readiness::WaitingFor(vec![3])
        );

        assert!(has_ended(&done, now()) && has_ended(&failed, now()));
        assert!(!has_ended(&running, now()));
        assert_eq!(
            cancelled_because(&failed),
            "cancelled: dependency task 3 failed with no retries left"
        );

        let waiting = task(9, TaskStatus::Pending, None);
        let Settlement::Cancel {
            task: cancelled,
            because_of,
            reason,
        } = settle(&waiting, cancel, &[done.clone(), failed.clone()], now())
        else {
            panic!("a failed dependency cancels a dependant with the cancel policy")
        };
        assert_eq!((cancelled.status, because_of), (TaskStatus::Cancelled, 3));
        assert!(reason.contains("task 3 failed"), "{reason}");
        let Settlement::Release(released) = settle(&waiting, anyway, &[done.clone(), failed.clone()], now())
        else {
            panic!("run_anyway releases once every dependency finished")
        };
        assert_eq!(released.payload["parent_results"]["1"], json!({ "rows": 3 }));
        assert_eq!(
            settle(&waiting, cancel, std::slice::from_ref(&running), now()),
            Settlement::Wait(vec![2])
        );
        assert_eq!(settle(&done, cancel, &[], now()), Settlement::Gone);

        let payload = with_parent_results(&json!({ "own": true }), &[done, failed]);
        assert_eq!(
            payload,
            json!({ "own": true, "parent_results": { "1": { "rows": 3 }, "3": null } })
        );
    }

    #[test]
    fn a_workflow_is_running_until_every_task_finished_then_takes_the_worst_end() {
        let of = |statuses: &[TaskStatus]| {
            let tasks: Vec<Task> = statuses.iter().map(|s| task(1, *s, None)).collect();
            WorkflowState::of(&tasks, now())
        };
        use TaskStatus::*;
        assert_eq!(of(&[Completed, Pending]), WorkflowState::Running);
        assert_eq!(of(&[Completed, Completed]), WorkflowState::Completed);
        assert_eq!(of(&[Completed, Cancelled]), WorkflowState::Cancelled);
        assert_eq!(of(&[Failed, Cancelled]), WorkflowState::Failed);
        let retrying = Task {
            max_retries: 2,
            ..task(1, Failed, None)
        };
        assert_eq!(WorkflowState::of([&retrying], now()), WorkflowState::Running);
    }
}
