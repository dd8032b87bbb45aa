//! Workflows in memory: the membership of each task and the edges between
//! them, beside the tasks; a waiting task is pending but left out of
//! routing until settled.

use std::collections::{HashSet, VecDeque};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use orchestrator_domain::workflow::{SETTLED_BY, settle};
use orchestrator_domain::{
    DependencyFailure, HistoryEntry, NewWorkflow, Settlement, Task, TaskId, TaskStatus, WorkflowId,
};
use orchestrator_ports::{
    ChangeRecord, Settled, StoreError, StoreResult, StoredWorkflow, WorkflowMember, WorkflowStore,
};
use uuid::Uuid;

use super::{MemoryStore, State, trace_id_taken};

/// A stored workflow, its tasks in order.
#[derive(Debug)]
pub(super) struct WorkflowRecord {
    name: Option<String>,
    created_by: Option<String>,
    created_at: DateTime<Utc>,
    tasks: Vec<TaskId>,
}

/// What a task of a workflow is to it.
#[derive(Debug)]
pub(super) struct Membership {
    workflow: WorkflowId,
    key: String,
    depends_on: Vec<TaskId>,
    policy: DependencyFailure,
    waiting: bool,
}

impl State {
    /// Whether task `id` is held out of routing for its dependencies.
    pub(super) fn is_waiting(&self, id: TaskId) -> bool {
        self.memberships.get(&id).is_some_and(|m| m.waiting)
    }

    /// Forgets what workflows knew of a deleted task; a workflow left
    /// without tasks goes too.
    pub(super) fn forget_member(&mut self, id: TaskId) {
        let Some(membership) = self.memberships.remove(&id) else {
            return;
        };
        self.dependants.remove(&id);
        if let Some(workflow) = self.workflows.get_mut(&membership.workflow) {
            workflow.tasks.retain(|t| *t != id);
            if workflow.tasks.is_empty() {
                self.workflows.remove(&membership.workflow);
            }
        }
    }

    fn stored_workflow(&self, id: WorkflowId) -> StoreResult<StoredWorkflow> {
        let record = self.workflows.get(&id).ok_or(StoreError::NotFound {
            entity: "workflow",
            id,
        })?;
        let members = record
            .tasks
            .iter()
            .filter_map(|task_id| {
                let membership = self.memberships.get(task_id)?;
                Some(WorkflowMember {
                    key: membership.key.clone(),
                    task: self.tasks.get(task_id)?.clone(),
                    depends_on: membership.depends_on.clone(),
                    on_dependency_failure: membership.policy,
                    waiting: membership.waiting && self.tasks.get(task_id)?.status == TaskStatus::Pending,
                })
            })
            .collect();
        Ok(StoredWorkflow {
            id,
            name: record.name.clone(),
            created_by: record.created_by.clone(),
            created_at: record.created_at,
            members,
        })
    }

    /// Settles the waiting dependants of `ended`, and theirs in turn when
    /// cancelled.
    fn settle_dependants(&mut self, ended: &[TaskId], at: DateTime<Utc>) -> Vec<Settled> {
        let mut to_visit: VecDeque<TaskId> = ended.iter().copied().collect();
        let mut settled = Vec::new();
        while let Some(id) = to_visit.pop_front() {
            if self.is_waiting(id)
                && self
                    .tasks
                    .get(&id)
                    .is_none_or(|t| t.status != TaskStatus::Pending)
            {
                self.stop_waiting(id);
            }
            let dependants = self.dependants.get(&id).cloned().unwrap_or_default();
            for dependant in dependants {
                if let Some(outcome) = self.settle_one(dependant, at) {
                    if let Settled::Cancelled(task) = &outcome {
                        to_visit.push_back(task.id);
                    }
                    settled.push(outcome);
                }
            }
        }
        settled
    }

    fn stop_waiting(&mut self, id: TaskId) {
        if let Some(membership) = self.memberships.get_mut(&id) {
            membership.waiting = false;
        }
    }

    fn settle_one(&mut self, id: TaskId, at: DateTime<Utc>) -> Option<Settled> {
        let membership = self.memberships.get(&id).filter(|m| m.waiting)?;
        let task = self.tasks.get(&id)?;
        let dependencies: Vec<Task> = membership
            .depends_on
            .iter()
            .filter_map(|d| self.tasks.get(d).cloned())
            .collect();
        match settle(task, membership.policy, &dependencies, at) {
            Settlement::Wait(_) => None,
            Settlement::Gone => {
                self.stop_waiting(id);
                None
            }
            Settlement::Release(task) => {
                self.stop_waiting(id);
                self.tasks.insert(id, task.clone());
                Some(Settled::Released(task))
            }
            Settlement::Cancel {
                task,
                because_of,
                reason,
            } => {
                self.stop_waiting(id);
                self.tasks.insert(id, task.clone());
                self.push_history(|history_id| HistoryEntry {
                    id: history_id,
                    task_id: id,
                    from_status: Some(TaskStatus::Pending),
                    to_status: TaskStatus::Cancelled,
                    changed_by: Some(SETTLED_BY.into()),
                    reason: Some(reason),
                    metadata: Some(serde_json::json!({ "dependency": because_of })),
                    changed_at: at,
                });
                Some(Settled::Cancelled(task))
            }
        }
    }
}

#[async_trait]
impl WorkflowStore for MemoryStore {
    async fn create_workflow(
        &self,
        workflow: NewWorkflow,
        trace_ids: Vec<Uuid>,
        record: ChangeRecord,
        at: DateTime<Utc>,
    ) -> StoreResult<StoredWorkflow> {
        let mut state = self.lock();
        let mut seen = HashSet::new();
        if let Some(taken) = trace_ids
            .iter()
            .find(|trace| state.trace_ids.contains(*trace) || !seen.insert(**trace))
        {
            return Err(trace_id_taken(*taken));
        }
        if trace_ids.len() != workflow.tasks.len() {
            return Err(StoreError::Unavailable(
                "one trace id per task of the workflow".into(),
            ));
        }
        state.trace_ids.extend(seen);
        state.last_workflow_id += 1;
        let id = state.last_workflow_id;
        let mut ids: Vec<TaskId> = Vec::with_capacity(workflow.tasks.len());
        for (member, trace_id) in workflow.tasks.into_iter().zip(trace_ids) {
            let task = state.insert_task(member.task, trace_id, record.clone(), at);
            let depends_on: Vec<TaskId> = member.depends_on.iter().map(|&at| ids[at]).collect();
            for dependency in &depends_on {
                state.dependants.entry(*dependency).or_default().push(task.id);
            }
            state.memberships.insert(
                task.id,
                Membership {
                    workflow: id,
                    key: member.key,
                    waiting: !depends_on.is_empty(),
                    depends_on,
                    policy: member.on_dependency_failure,
                },
            );
            ids.push(task.id);
        }
        state.workflows.insert(
            id,
            WorkflowRecord {
                name: workflow.name,
                created_by: record.changed_by,
                created_at: at,
                tasks: ids,
            },
        );
        state.stored_workflow(id)
    }

    async fn get_workflow(&self, id: WorkflowId) -> StoreResult<StoredWorkflow> {
        self.lock().stored_workflow(id)
    }

    async fn list_workflows(&self, limit: u32) -> StoreResult<Vec<StoredWorkflow>> {
        let state = self.lock();
        state
            .workflows
            .keys()
            .rev()
            .take(limit as usize)
            .map(|id| state.stored_workflow(*id))
            .collect()
    }

    async fn workflow_of(&self, task: TaskId) -> StoreResult<Option<WorkflowId>> {
        Ok(self.lock().memberships.get(&task).map(|m| m.workflow))
    }

    async fn settle_dependants(&self, ended: &[TaskId], at: DateTime<Utc>) -> StoreResult<Vec<Settled>> {
        Ok(self.lock().settle_dependants(ended, at))
    }

    async fn unsettled(&self, limit: u32) -> StoreResult<Vec<TaskId>> {
        let state = self.lock();
        let finished = |id: &TaskId| {
            state.tasks.get(id).is_some_and(|t| {
                matches!(
                    t.status,
                    TaskStatus::Completed | TaskStatus::Cancelled | TaskStatus::Failed
                )
            })
        };
        let mut due: Vec<TaskId> = Vec::new();
        for (id, membership) in state.memberships.iter().filter(|(_, m)| m.waiting) {
            if state
                .tasks
                .get(id)
                .is_none_or(|t| t.status != TaskStatus::Pending)
            {
                due.push(*id);
            }
            due.extend(membership.depends_on.iter().filter(|d| finished(d)));
        }
        due.sort_unstable();
        due.dedup();
        due.truncate(limit as usize);
        Ok(due)
    }
}
