//! `ScheduleStore` on PostgreSQL: the `schedules` table and the unique keys
//! of their fires (`schedule_fires`, migration 24). A fire is one
//! transaction: the compare-and-set of the schedule's last fire time, the
//! task with its history row, and the fire's key.

use async_trait::async_trait;
use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use orchestrator_domain::{CatchUp, NewSchedule, Overlap, Schedule, Task, TaskDraft};
use orchestrator_ports::{Fire, ScheduleDefinition, ScheduleStore, StoreError, StoreResult};
use serde_json::Value;

use crate::creates::{Creation, insert_on};
use crate::error::{TxError, store_error};
use crate::rows::{naive, utc};
use crate::schema::{schedule_fires, schedules};
use crate::store::PgStore;

#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = schedules, check_for_backend(diesel::pg::Pg))]
struct ScheduleRow {
    name: String,
    cron: String,
    timezone: String,
    template: Value,
    overlap: String,
    catch_up: String,
    paused: bool,
    created_by: Option<String>,
    created_at: NaiveDateTime,
    updated_at: NaiveDateTime,
    last_fire_at: Option<NaiveDateTime>,
    last_task_id: Option<i64>,
    fires: i64,
    skips: i64,
}

impl ScheduleRow {
    fn into_schedule(self) -> StoreResult<Schedule> {
        let corrupt =
            |what: &str| StoreError::Unavailable(format!("schedule '{}' has a bad {what}", self.name));
        let template: TaskDraft =
            serde_json::from_value(self.template.clone()).map_err(|_| corrupt("template"))?;
        let overlap: Overlap = self.overlap.parse().map_err(|_| corrupt("overlap"))?;
        let catch_up: CatchUp = self.catch_up.parse().map_err(|_| corrupt("catch_up"))?;
        Ok(Schedule {
            name: self.name,
            cron: self.cron,
            timezone: self.timezone,
            template,
            overlap,
            catch_up,
            paused: self.paused,
            created_by: self.created_by,
            created_at: utc(self.created_at),
            updated_at: utc(self.updated_at),
            last_fire_at: self.last_fire_at.map(utc),
            last_task_id: self.last_task_id,
            fires: u64::try_from(self.fires).unwrap_or(0),
            skips: u64::try_from(self.skips).unwrap_or(0),
        })
    }
}

fn unknown(name: &str) -> StoreError {
    StoreError::UnknownName {
        entity: "schedule",
        name: name.to_owned(),
    }
}

fn template_json(template: &TaskDraft) -> StoreResult<Value> {
    serde_json::to_value(template).map_err(|e| StoreError::Unavailable(format!("a task template: {e}")))
}

#[async_trait]
impl ScheduleStore for PgStore {
    async fn create_schedule(
        &self,
        schedule: NewSchedule,
        created_by: Option<String>,
        at: DateTime<Utc>,
    ) -> StoreResult<Schedule> {
        let mut conn = self.conn().await?;
        let row: Option<ScheduleRow> = diesel::insert_into(schedules::table)
            .values((
                schedules::name.eq(&schedule.name),
                schedules::cron.eq(schedule.spec.expression()),
                schedules::timezone.eq(schedule.spec.timezone()),
                schedules::template.eq(template_json(&schedule.template)?),
                schedules::overlap.eq(schedule.overlap.as_str()),
                schedules::catch_up.eq(schedule.catch_up.as_str()),
                schedules::created_by.eq(created_by),
                schedules::created_at.eq(naive(at)),
                schedules::updated_at.eq(naive(at)),
            ))
            .on_conflict_do_nothing()
            .returning(ScheduleRow::as_returning())
            .get_result(&mut conn)
            .await
            .optional()
            .map_err(store_error)?;
        row.ok_or_else(|| {
            StoreError::Conflict(format!("a schedule named '{}' exists already", schedule.name))
        })?
        .into_schedule()
    }

    async fn get_schedule(&self, name: &str) -> StoreResult<Schedule> {
        let mut conn = self.conn().await?;
        let row: Option<ScheduleRow> = schedules::table
            .find(name)
            .select(ScheduleRow::as_select())
            .first(&mut conn)
            .await
            .optional()
            .map_err(store_error)?;
        row.ok_or_else(|| unknown(name))?.into_schedule()
    }

    async fn list_schedules(&self) -> StoreResult<Vec<Schedule>> {
        let mut conn = self.conn().await?;
        let rows: Vec<ScheduleRow> = schedules::table
            .order(schedules::name)
            .select(ScheduleRow::as_select())
            .load(&mut conn)
            .await
            .map_err(store_error)?;
        rows.into_iter().map(ScheduleRow::into_schedule).collect()
    }

    async fn update_schedule(
        &self,
        name: &str,
        definition: ScheduleDefinition,
        at: DateTime<Utc>,
    ) -> StoreResult<Schedule> {
        let mut conn = self.conn().await?;
        let row: Option<ScheduleRow> = diesel::update(schedules::table.find(name))
            .set((
                schedules::cron.eq(definition.cron),
                schedules::timezone.eq(definition.timezone),
                schedules::template.eq(template_json(&definition.template)?),
                schedules::overlap.eq(definition.overlap.as_str()),
                schedules::catch_up.eq(definition.catch_up.as_str()),
                schedules::paused.eq(definition.paused),
                schedules::updated_at.eq(naive(at)),
            ))
            .returning(ScheduleRow::as_returning())
            .get_result(&mut conn)
            .await
            .optional()
            .map_err(store_error)?;
        row.ok_or_else(|| unknown(name))?.into_schedule()
    }

    async fn delete_schedule(&self, name: &str) -> StoreResult<()> {
        let mut pooled = self.conn().await?;
        let conn: &mut AsyncPgConnection = &mut pooled;
        let name = name.to_owned();
        conn.transaction::<_, TxError, _>(async move |conn| {
            diesel::delete(schedule_fires::table.filter(schedule_fires::schedule_name.eq(&name)))
                .execute(conn)
                .await?;
            let deleted = diesel::delete(schedules::table.find(&name)).execute(conn).await?;
            if deleted == 0 {
                return Err(TxError::Store(unknown(&name)));
            }
            Ok(())
        })
        .await?;
        Ok(())
    }

    async fn fire_schedule(&self, fire: Fire) -> StoreResult<Option<Task>> {
        let mut pooled = self.conn().await?;
        let conn: &mut AsyncPgConnection = &mut pooled;
        let task = conn
            .transaction::<_, TxError, _>(async move |conn| fire_in(conn, fire).await)
            .await?;
        Ok(task)
    }
}

/// The fire in the caller's transaction: the compare-and-set first, so
/// that replicas firing the same time wait for each other here and the
/// second finds the time dealt with.
async fn fire_in(conn: &mut AsyncPgConnection, fire: Fire) -> Result<Option<Task>, TxError> {
    let made = i64::from(fire.task.is_some());
    let expected = fire.expected_last_fire.map(naive);
    let moved = diesel::update(
        schedules::table
            .find(&fire.schedule)
            .filter(schedules::last_fire_at.is_not_distinct_from(expected)),
    )
    .set((
        schedules::last_fire_at.eq(naive(fire.at)),
        schedules::fires.eq(schedules::fires + made),
        schedules::skips.eq(schedules::skips + (1 - made)),
    ))
    .execute(conn)
    .await?;
    if moved == 0 {
        return Err(TxError::Store(lost(conn, &fire).await?));
    }
    diesel::delete(
        schedule_fires::table
            .filter(schedule_fires::schedule_name.eq(&fire.schedule))
            .filter(schedule_fires::fire_at.lt(naive(fire.at))),
    )
    .execute(conn)
    .await?;
    let Some(fired) = fire.task else {
        return Ok(None);
    };
    let creation = Creation {
        task: fired.task,
        trace_id: fired.trace_id,
        record: fired.record,
        at: fired.created_at,
    };
    let task = insert_on(conn, std::slice::from_ref(&creation))
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| TxError::Store(StoreError::Unavailable("a fire created no task".into())))??;
    diesel::insert_into(schedule_fires::table)
        .values((
            schedule_fires::schedule_name.eq(&fire.schedule),
            schedule_fires::fire_at.eq(naive(fire.at)),
            schedule_fires::task_id.eq(task.id),
        ))
        .execute(conn)
        .await?;
    diesel::update(schedules::table.find(&fire.schedule))
        .set(schedules::last_task_id.eq(task.id))
        .execute(conn)
        .await?;
    Ok(Some(task))
}

/// Why a fire's compare-and-set moved nothing: the schedule is gone, or
/// its fire time was dealt with already.
async fn lost(conn: &mut AsyncPgConnection, fire: &Fire) -> Result<StoreError, TxError> {
    let exists: i64 = schedules::table
        .find(&fire.schedule)
        .count()
        .get_result(conn)
        .await?;
    Ok(if exists == 0 {
        unknown(&fire.schedule)
    } else {
        StoreError::Conflict(format!(
            "schedule '{}' has dealt with its fire at {} already",
            fire.schedule, fire.at
        ))
    })
}
