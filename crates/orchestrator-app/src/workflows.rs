//! Workflows: their use cases (`/workflows`) and the service that settles
//! dependants. A task that ends is settled by the replica that ended it,
//! at once (its event); a sweep every [`SWEEP`] settles what a crash cut
//! short. Settling is one transaction in the store and idempotent, so
//! replicas may settle the same end.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::{FutureExt, StreamExt};
use orchestrator_domain::workflow::{Readiness, has_ended, readiness};
use orchestrator_domain::{
    Caller, DomainEvent, NewWorkflow, Permission, TaskId, TaskStatus, WorkflowDraft, WorkflowId,
    WorkflowState,
};
use orchestrator_ports::{ChangeRecord, Settled, StoredWorkflow, WorkflowMember, WorkflowStore};
use uuid::Uuid;

use crate::authz::require;
use crate::{AppError, AppResult, Ports, Services, TaskService};

/// How often the settling service looks for ends no event settled.
pub const SWEEP: Duration = Duration::from_secs(30);
/// Most ended tasks one sweep settles.
const SWEEP_LIMIT: u32 = 500;
/// The most workflows `GET /workflows` lists.
pub const MAX_LISTED: u32 = 100;

/// A workflow with its state.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkflowView {
    pub workflow: StoredWorkflow,
    pub state: WorkflowState,
}

/// The use cases of `/workflows`, and the service that settles dependants.
#[derive(Clone)]
pub struct WorkflowService {
    ports: Ports,
    workflows: Arc<dyn WorkflowStore>,
    tasks: TaskService,
}

impl std::fmt::Debug for WorkflowService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WorkflowService")
    }
}

impl WorkflowService {
    /// `tasks` cancels a workflow's tasks, each as `POST /tasks/{id}/cancel` would.
    pub fn new(ports: Ports, workflows: Arc<dyn WorkflowStore>, tasks: TaskService) -> Self {
        Self {
            ports,
            workflows,
            tasks,
        }
    }

    fn view(&self, workflow: StoredWorkflow) -> WorkflowView {
        let state = WorkflowState::of(workflow.members.iter().map(|m| &m.task), self.ports.clock.now());
        WorkflowView { workflow, state }
    }

    /// Submits a workflow (`write`): every task in one commit, those with
    /// dependencies waiting for them.
    pub async fn create(&self, caller: &Caller, draft: WorkflowDraft) -> AppResult<WorkflowView> {
        require(caller, Permission::Write)?;
        let now = self.ports.clock.now();
        let workflow = NewWorkflow::parse(draft, now)?;
        let traces = workflow.tasks.iter().map(|_| Uuid::new_v4()).collect();
        let record = ChangeRecord {
            changed_by: Some(caller.subject.clone()),
            reason: Some(match &workflow.name {
                Some(name) => format!("task created in workflow {name}"),
                None => "task created in a workflow".into(),
            }),
            metadata: None,
        };
        let stored = self
            .workflows
            .create_workflow(workflow, traces, record, now)
            .await?;
        for member in &stored.members {
            self.ports
                .events
                .publish(DomainEvent::TaskCreated(member.task.clone()))
                .await;
        }
        Ok(self.view(stored))
    }

    pub async fn get(&self, caller: &Caller, id: WorkflowId) -> AppResult<WorkflowView> {
        require(caller, Permission::Read)?;
        Ok(self.view(self.workflows.get_workflow(id).await?))
    }

    /// The newest `limit` workflows (at most [`MAX_LISTED`]), newest first.
    pub async fn list(&self, caller: &Caller, limit: u32) -> AppResult<Vec<WorkflowView>> {
        require(caller, Permission::Read)?;
        let all = self.workflows.list_workflows(limit.clamp(1, MAX_LISTED)).await?;
        Ok(all.into_iter().map(|w| self.view(w)).collect())
    }

    /// Cancels what has not finished of workflow `id`, its creator or an
    /// admin: dependants first, so that none is released meanwhile; a
    /// running task is asked to stop (`cancel-request`). What finished
    /// stays as it is.
    pub async fn cancel(&self, caller: &Caller, id: WorkflowId) -> AppResult<WorkflowView> {
        require(caller, Permission::Write)?;
        let workflow = self.workflows.get_workflow(id).await?;
        for member in workflow.members.iter().rev() {
            let task = &member.task;
            let outcome = match task.status {
                TaskStatus::Pending | TaskStatus::Assigned => {
                    self.tasks.cancel(caller, task.id).await.map(drop)
                }
                TaskStatus::InProgress => self.tasks.request_cancel(caller, task.id).await.map(drop),
                TaskStatus::Completed | TaskStatus::Failed | TaskStatus::Cancelled => Ok(()),
            };
            match outcome {
                // It moved on meanwhile (finished, or settled by its
                // dependency's cancellation): nothing left to cancel.
                Ok(()) | Err(AppError::InvalidTransition { .. } | AppError::Conflict(_)) => {}
                Err(err) => return Err(err),
            }
        }
        self.get(caller, id).await
    }

    /// Settles the dependants of `ended` and publishes what changed:
    /// `task_released` for each released, `task_cancelled` for each
    /// cancelled. Returns how many changed.
    pub async fn settle(&self, ended: &[TaskId]) -> AppResult<usize> {
        let settled = self
            .workflows
            .settle_dependants(ended, self.ports.clock.now())
            .await?;
        let changed = settled.len();
        for outcome in settled {
            let event = match outcome {
                Settled::Released(task) => DomainEvent::TaskReleased(task),
                Settled::Cancelled(task) => DomainEvent::TaskCancelled(task),
            };
            self.ports.events.publish(event).await;
        }
        Ok(changed)
    }

    /// Settles the ends no event settled (a crash between an end's commit
    /// and its settling); returns how many tasks changed.
    pub async fn sweep(&self) -> AppResult<usize> {
        let ended = self.workflows.unsettled(SWEEP_LIMIT).await?;
        if ended.is_empty() {
            return Ok(0);
        }
        self.settle(&ended).await
    }

    /// Settles the dependants of each task this process ends, and sweeps
    /// every [`SWEEP`], as the service `workflows: settle dependants`.
    pub fn start(&self, services: &Services) {
        let service = self.clone();
        let mut events = self.ports.events.subscribe();
        services.spawn("workflows: settle dependants", async move {
            let mut sweep = tokio::time::interval(SWEEP);
            loop {
                tokio::select! {
                    event = events.next() => {
                        let Some(event) = event else { break };
                        let mut ended = Vec::new();
                        service.note_end(&event, &mut ended);
                        // The events already here go in the same settling.
                        while let Some(Some(event)) = events.next().now_or_never() {
                            service.note_end(&event, &mut ended);
                        }
                        if !ended.is_empty() {
                            service.settle_logged(&ended).await;
                        }
                    }
                    _ = sweep.tick() => {
                        if let Err(err) = service.sweep().await {
                            tracing::warn!(error = %err, "workflow sweep failed; the next one retries");
                        }
                    }
                }
            }
        });
    }

    /// Adds the task of `event` to `ended` when it ended for good.
    fn note_end(&self, event: &DomainEvent, ended: &mut Vec<TaskId>) {
        if let DomainEvent::TaskCompleted(task)
        | DomainEvent::TaskFailed(task)
        | DomainEvent::TaskCancelled(task) = event
            && has_ended(task, self.ports.clock.now())
        {
            ended.push(task.id);
        }
    }

    async fn settle_logged(&self, ended: &[TaskId]) {
        match self.settle(ended).await {
            Ok(0) => {}
            Ok(changed) => tracing::debug!(changed, "dependants settled"),
            Err(err) => tracing::warn!(error = %err, "settling dependants failed; the sweep retries"),
        }
    }
}

/// Why `task`, pending, waits for its workflow at `now`: the workflow and
/// the dependencies it waits for; `None` when it waits for none.
pub async fn waiting_for(
    workflows: &dyn WorkflowStore,
    task: TaskId,
    now: DateTime<Utc>,
) -> AppResult<Option<(WorkflowId, Vec<TaskId>)>> {
    let Some(id) = workflows.workflow_of(task).await? else {
        return Ok(None);
    };
    let workflow = workflows.get_workflow(id).await?;
    let Some(member) = workflow.members.iter().find(|m| m.task.id == task && m.waiting) else {
        return Ok(None);
    };
    Ok(
        match readiness(
            member.on_dependency_failure,
            &dependencies(&workflow, member),
            now,
        ) {
            Readiness::WaitingFor(ids) => Some((id, ids)),
            // Its settling is under way: the event or the sweep settles it.
            Readiness::Ready | Readiness::Cancelled { .. } => Some((id, member.depends_on.clone())),
        },
    )
}

/// The tasks `member` depends on, as the workflow holds them.
fn dependencies(workflow: &StoredWorkflow, member: &WorkflowMember) -> Vec<orchestrator_domain::Task> {
    workflow
        .members
        .iter()
        .filter(|m| member.depends_on.contains(&m.task.id))
        .map(|m| m.task.clone())
        .collect()
}
