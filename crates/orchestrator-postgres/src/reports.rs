//! Droplets' reports, many at a time. A report carries its conditions (the
//! droplet, the attempt) and the change it asks for; a batch of them reads
//! its tasks in one statement, lets the domain judge each report
//! ([`Task::apply_report`]) and writes those that stand in one grouped
//! compare-and-set ([`crate::batch`]). So a report costs its caller one
//! call and no read of its own: two statements serve a whole batch.

use std::collections::HashMap;
use std::future::Future;

use diesel::QueryableByName;
use diesel::sql_types::{Integer, Nullable, Text};
use diesel_async::pooled_connection::deadpool::Pool;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use orchestrator_domain::Task;
use orchestrator_ports::{Report, ReportOutcome, StoreError, StoreResult, Transition};

use crate::error::{pool_error, store_error};
use crate::group_commit::{self, Work};
use crate::rows::TaskRow;
use crate::sql;

impl Work for Report {
    type Outcome = StoreResult<ReportOutcome>;

    fn task_id(&self) -> i64 {
        self.task_id
    }

    fn kind(&self) -> bool {
        false
    }

    fn commit(
        pool: Pool<AsyncPgConnection>,
        batch: Vec<Self>,
    ) -> impl Future<Output = Vec<Self::Outcome>> + Send {
        commit_reports(pool, batch)
    }

    fn interrupted() -> Self::Outcome {
        Err(StoreError::Unavailable(
            "the commit of this report was interrupted; read the task to see whether it was applied".into(),
        ))
    }
}

#[derive(QueryableByName)]
struct ReadRow {
    #[diesel(embed)]
    task: TaskRow,
    #[diesel(sql_type = Nullable<Integer>)]
    external_droplet_id: Option<i32>,
    #[diesel(sql_type = Nullable<Text>)]
    droplet_name: Option<String>,
}

/// A report that stands, on its way to the write: its place in the batch,
/// the status it leaves and its droplet's name.
struct Standing {
    index: usize,
    from: orchestrator_domain::TaskStatus,
    droplet_name: Option<String>,
}

async fn commit_reports(
    pool: Pool<AsyncPgConnection>,
    reports: Vec<Report>,
) -> Vec<StoreResult<ReportOutcome>> {
    let ids: Vec<i64> = reports.iter().map(|r| r.task_id).collect();
    let mut read = match read_tasks(&pool, &ids).await {
        Ok(read) => read,
        Err(err) => return reports.iter().map(|_| Err(err.clone())).collect(),
    };
    let mut outcomes: Vec<Option<StoreResult<ReportOutcome>>> = reports.iter().map(|_| None).collect();
    let mut standing = Vec::new();
    let mut transitions = Vec::new();
    for (index, report) in reports.into_iter().enumerate() {
        let Some((task, droplet_name)) = read.remove(&report.task_id) else {
            outcomes[index] = Some(Err(StoreError::NotFound {
                entity: "task",
                id: report.task_id,
            }));
            continue;
        };
        match task.apply_report(report.droplet, report.attempt, report.update, report.at) {
            None => outcomes[index] = Some(Ok(ReportOutcome::NotApplied { current: Some(task) })),
            Some(next) => {
                standing.push(Standing {
                    index,
                    from: task.status,
                    droplet_name,
                });
                transitions.push(Transition {
                    expected_status: task.status,
                    expected_droplet: task.assigned_droplet_id,
                    expected_attempt: task.attempt,
                    task: next,
                    record: report.record,
                });
            }
        }
    }
    if !transitions.is_empty() {
        let written = group_commit::commit(pool, transitions).await;
        for (report, outcome) in standing.into_iter().zip(written) {
            outcomes[report.index] = Some(match outcome {
                Ok(task) => Ok(ReportOutcome::Applied {
                    from: report.from,
                    task,
                    droplet_name: report.droplet_name,
                }),
                // It changed between the read and the write.
                Err(StoreError::Conflict(_)) => Ok(ReportOutcome::NotApplied { current: None }),
                Err(err) => Err(err),
            });
        }
    }
    outcomes
        .into_iter()
        .map(|o| o.unwrap_or_else(|| Err(StoreError::Unavailable("a report was left unanswered".into()))))
        .collect()
}

/// The tasks `ids` with their droplets' names, by id.
async fn read_tasks(
    pool: &Pool<AsyncPgConnection>,
    ids: &[i64],
) -> StoreResult<HashMap<i64, (Task, Option<String>)>> {
    let mut conn = pool.get().await.map_err(pool_error)?;
    let rows: Vec<ReadRow> = sql::tasks::ReadForReports { tasks: ids }
        .query()
        .load(&mut conn)
        .await
        .map_err(store_error)?;
    rows.into_iter()
        .map(|row| {
            let task = row.task.into_task(row.external_droplet_id)?;
            Ok((task.id, (task, row.droplet_name)))
        })
        .collect()
}
