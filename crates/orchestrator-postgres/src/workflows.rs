//! `WorkflowStore` on PostgreSQL (migration 25): `workflows`, the place of
//! each task in its workflow (`workflow_tasks`) and its dependencies
//! (`task_dependencies`). A waiting task is queued with its gate at
//! 'infinity' ([`crate::sql::workflows`]); settling locks those queue rows,
//! reads the dependencies and applies the domain's [`settle`], in one
//! transaction.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::BigInt;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use orchestrator_domain::workflow::{SETTLED_BY, settle};
use orchestrator_domain::{DependencyFailure, NewWorkflow, Settlement, Task, TaskId, TaskStatus, WorkflowId};
use orchestrator_ports::{
    ChangeRecord, Settled, StoreError, StoreResult, StoredWorkflow, Transition, WorkflowMember, WorkflowStore,
};
use uuid::Uuid;

use crate::batch::apply_batch;
use crate::creates::{Creation, insert_on};
use crate::error::{TxError, store_error};
use crate::rows::{TaskRow, naive, utc};
use crate::schema::{droplets, task_dependencies, workflow_tasks, workflows};
use crate::sql;
use crate::store::PgStore;
use crate::views::task_view;

#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = workflows, check_for_backend(diesel::pg::Pg))]
struct WorkflowRow {
    id: i64,
    name: Option<String>,
    created_by: Option<String>,
    created_at: NaiveDateTime,
}

#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = workflow_tasks, check_for_backend(diesel::pg::Pg))]
struct MemberRow {
    task_id: i64,
    workflow_id: i64,
    key: String,
    on_dependency_failure: String,
}

#[derive(Debug, QueryableByName)]
struct IdRow {
    #[diesel(sql_type = BigInt)]
    id: i64,
}

fn policy_of(row: &MemberRow) -> StoreResult<DependencyFailure> {
    match row.on_dependency_failure.as_str() {
        "cancel" => Ok(DependencyFailure::Cancel),
        "run_anyway" => Ok(DependencyFailure::RunAnyway),
        _ => Err(StoreError::Unavailable(format!(
            "task {} holds a dependency policy the orchestrator cannot read",
            row.task_id
        ))),
    }
}

fn policy_text(policy: DependencyFailure) -> &'static str {
    match policy {
        DependencyFailure::Cancel => "cancel",
        DependencyFailure::RunAnyway => "run_anyway",
    }
}

fn ids(rows: Vec<IdRow>) -> Vec<i64> {
    rows.into_iter().map(|r| r.id).collect()
}

/// The tasks of `ids` as the API shows them, by id.
async fn tasks_by_id(conn: &mut AsyncPgConnection, ids: &[i64]) -> Result<HashMap<TaskId, Task>, TxError> {
    let rows: Vec<(TaskRow, Option<i32>)> = task_view::table
        .left_join(droplets::table)
        .filter(task_view::id.eq_any(ids))
        .select((TaskRow::as_select(), droplets::droplet_id.nullable()))
        .load(conn)
        .await?;
    let mut tasks = HashMap::with_capacity(rows.len());
    for (row, droplet) in rows {
        let task = row.into_task(droplet)?;
        tasks.insert(task.id, task);
    }
    Ok(tasks)
}

/// The dependencies of each of `tasks`.
async fn dependencies_of(
    conn: &mut AsyncPgConnection,
    tasks: &[i64],
) -> Result<HashMap<TaskId, Vec<TaskId>>, TxError> {
    let edges: Vec<(i64, i64)> = task_dependencies::table
        .filter(task_dependencies::task_id.eq_any(tasks))
        .select((task_dependencies::task_id, task_dependencies::depends_on))
        .order((task_dependencies::task_id, task_dependencies::depends_on))
        .load(conn)
        .await?;
    let mut by_task: HashMap<TaskId, Vec<TaskId>> = HashMap::new();
    for (task, dependency) in edges {
        by_task.entry(task).or_default().push(dependency);
    }
    Ok(by_task)
}

/// The workflows of `rows` with their tasks, in a fixed number of reads.
async fn assemble(
    conn: &mut AsyncPgConnection,
    rows: Vec<WorkflowRow>,
) -> Result<Vec<StoredWorkflow>, TxError> {
    let workflow_ids: Vec<i64> = rows.iter().map(|w| w.id).collect();
    let members: Vec<MemberRow> = workflow_tasks::table
        .filter(workflow_tasks::workflow_id.eq_any(&workflow_ids))
        .order((workflow_tasks::workflow_id, workflow_tasks::position))
        .select(MemberRow::as_select())
        .load(conn)
        .await?;
    let task_ids: Vec<i64> = members.iter().map(|m| m.task_id).collect();
    let mut tasks = tasks_by_id(conn, &task_ids).await?;
    let mut dependencies = dependencies_of(conn, &task_ids).await?;
    let waiting: Vec<i64> = ids(sql::workflows::WaitingAmong { tasks: &task_ids }
        .planned_per_call()
        .load(conn)
        .await?);
    let mut by_workflow: HashMap<WorkflowId, Vec<WorkflowMember>> = HashMap::new();
    for member in members {
        let Some(task) = tasks.remove(&member.task_id) else {
            continue;
        };
        by_workflow
            .entry(member.workflow_id)
            .or_default()
            .push(WorkflowMember {
                on_dependency_failure: policy_of(&member)?,
                depends_on: dependencies.remove(&member.task_id).unwrap_or_default(),
                waiting: waiting.contains(&member.task_id),
                key: member.key,
                task,
            });
    }
    Ok(rows
        .into_iter()
        .map(|row| StoredWorkflow {
            members: by_workflow.remove(&row.id).unwrap_or_default(),
            id: row.id,
            name: row.name,
            created_by: row.created_by,
            created_at: utc(row.created_at),
        })
        .collect())
}

/// Stores a workflow in the caller's transaction.
async fn create_in(
    conn: &mut AsyncPgConnection,
    workflow: NewWorkflow,
    trace_ids: Vec<Uuid>,
    record: ChangeRecord,
    at: DateTime<Utc>,
) -> Result<WorkflowRow, TxError> {
    let row: WorkflowRow = diesel::insert_into(workflows::table)
        .values((
            workflows::name.eq(&workflow.name),
            workflows::created_by.eq(&record.changed_by),
            workflows::created_at.eq(naive(at)),
        ))
        .returning(WorkflowRow::as_returning())
        .get_result(conn)
        .await?;
    let creations: Vec<Creation> = workflow
        .tasks
        .iter()
        .zip(&trace_ids)
        .map(|(member, trace_id)| Creation {
            task: member.task.clone(),
            trace_id: *trace_id,
            record: record.clone(),
            at,
        })
        .collect();
    let mut task_ids = Vec::with_capacity(creations.len());
    for created in insert_on(conn, &creations).await? {
        task_ids.push(created?.id);
    }
    let mut members = Vec::with_capacity(task_ids.len());
    let mut edges = Vec::new();
    let mut held = Vec::new();
    for (position, (member, task_id)) in workflow.tasks.iter().zip(&task_ids).enumerate() {
        members.push((
            workflow_tasks::task_id.eq(*task_id),
            workflow_tasks::workflow_id.eq(row.id),
            workflow_tasks::key.eq(member.key.as_str()),
            workflow_tasks::position.eq(i32::try_from(position).unwrap_or(i32::MAX)),
            workflow_tasks::on_dependency_failure.eq(policy_text(member.on_dependency_failure)),
        ));
        for &dependency in &member.depends_on {
            edges.push((
                task_dependencies::task_id.eq(*task_id),
                task_dependencies::depends_on.eq(task_ids[dependency]),
            ));
        }
        if !member.depends_on.is_empty() {
            held.push(*task_id);
        }
    }
    diesel::insert_into(workflow_tasks::table)
        .values(&members)
        .execute(conn)
        .await?;
    if !edges.is_empty() {
        diesel::insert_into(task_dependencies::table)
            .values(&edges)
            .execute(conn)
            .await?;
        sql::workflows::Hold { tasks: &held }
            .planned_per_call()
            .execute(conn)
            .await?;
    }
    Ok(row)
}

/// Settles the waiting dependants of `ended`, then of those it cancelled,
/// in the caller's transaction.
async fn settle_in(
    conn: &mut AsyncPgConnection,
    ended: &[TaskId],
    at: DateTime<Utc>,
) -> Result<Vec<Settled>, TxError> {
    let mut settled = Vec::new();
    let mut frontier = ended.to_vec();
    while !frontier.is_empty() {
        let cancelled = settle_round(conn, &frontier, at, &mut settled).await?;
        frontier = cancelled;
    }
    Ok(settled)
}

/// One round: the waiting dependants of `ended`, locked and settled; the
/// ids of those cancelled, whose own dependants come next.
async fn settle_round(
    conn: &mut AsyncPgConnection,
    ended: &[TaskId],
    at: DateTime<Utc>,
    settled: &mut Vec<Settled>,
) -> Result<Vec<TaskId>, TxError> {
    let dependants = ids(sql::workflows::LockWaitingDependants { ended }
        .planned_per_call()
        .load(conn)
        .await?);
    if dependants.is_empty() {
        return Ok(Vec::new());
    }
    let policies: HashMap<TaskId, DependencyFailure> = workflow_tasks::table
        .filter(workflow_tasks::task_id.eq_any(&dependants))
        .select(MemberRow::as_select())
        .load::<MemberRow>(conn)
        .await?
        .iter()
        .map(|m| Ok((m.task_id, policy_of(m)?)))
        .collect::<StoreResult<_>>()?;
    let dependencies = dependencies_of(conn, &dependants).await?;
    let mut wanted: Vec<i64> = dependencies.values().flatten().copied().collect();
    wanted.extend(&dependants);
    let tasks = tasks_by_id(conn, &wanted).await?;
    let mut releases = sql::workflows::Release::default();
    let mut cancels = Vec::new();
    for id in &dependants {
        let (Some(task), Some(policy)) = (tasks.get(id), policies.get(id)) else {
            continue;
        };
        let of_it: Vec<Task> = dependencies
            .get(id)
            .into_iter()
            .flatten()
            .filter_map(|d| tasks.get(d).cloned())
            .collect();
        match settle(task, *policy, &of_it, at) {
            Settlement::Wait(_) | Settlement::Gone => {}
            Settlement::Release(released) => {
                releases.id.push(released.id);
                releases.payload.push(released.payload.clone());
                releases.updated_at.push(naive(released.updated_at));
                settled.push(Settled::Released(released));
            }
            Settlement::Cancel {
                task: cancelled,
                because_of,
                reason,
            } => cancels.push(Transition {
                expected_status: TaskStatus::Pending,
                expected_droplet: None,
                expected_attempt: task.attempt,
                task: cancelled,
                record: ChangeRecord {
                    changed_by: Some(SETTLED_BY.into()),
                    reason: Some(reason),
                    metadata: Some(serde_json::json!({ "dependency": because_of })),
                },
            }),
        }
    }
    if !releases.id.is_empty() {
        releases.planned_per_call().execute(conn).await?;
    }
    let mut cancelled = Vec::with_capacity(cancels.len());
    for outcome in apply_batch(conn, &cancels).await? {
        let task = outcome?;
        cancelled.push(task.id);
        settled.push(Settled::Cancelled(task));
    }
    Ok(cancelled)
}

#[async_trait]
impl WorkflowStore for PgStore {
    async fn create_workflow(
        &self,
        workflow: NewWorkflow,
        trace_ids: Vec<Uuid>,
        record: ChangeRecord,
        at: DateTime<Utc>,
    ) -> StoreResult<StoredWorkflow> {
        if trace_ids.len() != workflow.tasks.len() {
            return Err(StoreError::Unavailable(
                "one trace id per task of the workflow".into(),
            ));
        }
        let mut pooled = self.conn().await?;
        let conn: &mut AsyncPgConnection = &mut pooled;
        let stored = conn
            .transaction::<_, TxError, _>(async move |conn| {
                let row = create_in(conn, workflow, trace_ids, record, at).await?;
                assemble(conn, vec![row]).await
            })
            .await?;
        stored
            .into_iter()
            .next()
            .ok_or_else(|| StoreError::Unavailable("the store returned no created workflow".into()))
    }

    async fn get_workflow(&self, id: WorkflowId) -> StoreResult<StoredWorkflow> {
        let mut conn = self.conn().await?;
        let row: Option<WorkflowRow> = workflows::table
            .find(id)
            .select(WorkflowRow::as_select())
            .first(&mut conn)
            .await
            .optional()
            .map_err(store_error)?;
        let row = row.ok_or(StoreError::NotFound {
            entity: "workflow",
            id,
        })?;
        let mut stored = assemble(&mut conn, vec![row]).await?;
        stored.pop().ok_or(StoreError::NotFound {
            entity: "workflow",
            id,
        })
    }

    async fn list_workflows(&self, limit: u32) -> StoreResult<Vec<StoredWorkflow>> {
        let mut conn = self.conn().await?;
        let rows: Vec<WorkflowRow> = workflows::table
            .order(workflows::id.desc())
            .limit(i64::from(limit))
            .select(WorkflowRow::as_select())
            .load(&mut conn)
            .await
            .map_err(store_error)?;
        Ok(assemble(&mut conn, rows).await?)
    }

    async fn workflow_of(&self, task: TaskId) -> StoreResult<Option<WorkflowId>> {
        let mut conn = self.conn().await?;
        workflow_tasks::table
            .find(task)
            .select(workflow_tasks::workflow_id)
            .first(&mut conn)
            .await
            .optional()
            .map_err(store_error)
    }

    async fn settle_dependants(&self, ended: &[TaskId], at: DateTime<Utc>) -> StoreResult<Vec<Settled>> {
        if ended.is_empty() {
            return Ok(Vec::new());
        }
        let mut pooled = self.conn().await?;
        let conn: &mut AsyncPgConnection = &mut pooled;
        // Most ended tasks belong to no workflow: one read, outside a
        // transaction, tells so before any lock is taken.
        let any: Option<i64> = task_dependencies::table
            .filter(task_dependencies::depends_on.eq_any(ended))
            .select(task_dependencies::task_id)
            .first(conn)
            .await
            .optional()
            .map_err(store_error)?;
        if any.is_none() {
            return Ok(Vec::new());
        }
        let ended = ended.to_vec();
        Ok(conn
            .transaction::<_, TxError, _>(async move |conn| settle_in(conn, &ended, at).await)
            .await?)
    }

    async fn unsettled(&self, limit: u32) -> StoreResult<Vec<TaskId>> {
        let mut conn = self.conn().await?;
        let rows: Vec<IdRow> = sql::workflows::Unsettled {
            limit: i32::try_from(limit).unwrap_or(i32::MAX),
        }
        .planned_per_call()
        .load(&mut conn)
        .await
        .map_err(store_error)?;
        Ok(ids(rows))
    }
}
