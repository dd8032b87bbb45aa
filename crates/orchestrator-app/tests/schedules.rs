//! Schedules fire on the domain's controlled clock: at their fire times,
//! the last one only after a stop, never while paused, and not over an
//! unfinished task when told to skip.

mod support;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use orchestrator_app::{AppError, SchedulePatch, ScheduleService};
use orchestrator_domain::{
    Caller, CatchUp, Overlap, Permission, Permissions, ScheduleDraft, TaskDraft, TaskStatus,
};
use orchestrator_memory::MemoryStore;
use orchestrator_ports::{TaskFilter, TaskStore};
use support::MovableClock;

/// 1 January 2026 at 00:mm:ss UTC.
fn at(minutes: u32, seconds: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, minutes, seconds)
        .single()
        .expect("a valid time")
}

fn writer() -> Caller {
    Caller {
        subject: "alice".into(),
        permissions: Permissions::new([Permission::Write]),
        droplet_id: None,
    }
}

fn every_minute(overlap: Overlap) -> ScheduleDraft {
    ScheduleDraft {
        name: "minutely".into(),
        cron: "* * * * *".into(),
        timezone: None,
        task: TaskDraft {
            task_type: "tick".into(),
            ..TaskDraft::default()
        },
        overlap: Some(overlap),
        catch_up: None,
    }
}

struct World {
    clock: MovableClock,
    store: Arc<MemoryStore>,
    schedules: ScheduleService,
}

fn world(start: DateTime<Utc>) -> World {
    let clock = MovableClock::at(start);
    let store = Arc::new(MemoryStore::new());
    let ports = support::memory_ports_over(store.clone(), clock.clone());
    let schedules = ScheduleService::new(ports, store.clone());
    World {
        clock,
        store,
        schedules,
    }
}

async fn task_count(store: &MemoryStore) -> u64 {
    store
        .list_tasks(&TaskFilter::default())
        .await
        .expect("list")
        .total
}

#[tokio::test]
async fn a_schedule_fires_at_its_times_and_only_the_last_missed_one_after_a_stop() {
    let w = world(at(0, 30));
    let made = w
        .schedules
        .create(&writer(), every_minute(Overlap::Allow))
        .await
        .expect("created");
    assert_eq!(made.next_runs, [1, 2, 3, 4, 5].map(|m| at(m, 0)));

    w.clock.set(at(0, 40));
    assert_eq!(
        w.schedules.fire_due().await,
        Duration::from_secs(10),
        "it reads the schedules again within 10 s"
    );
    w.clock.set(at(0, 55));
    assert_eq!(
        w.schedules.fire_due().await,
        Duration::from_secs(5),
        "until 00:01"
    );
    assert_eq!(task_count(&w.store).await, 0);

    // Nothing ran from 00:00:40 to 00:05:10: one fire, for 00:05.
    w.clock.set(at(5, 10));
    w.schedules.fire_due().await;
    assert_eq!(task_count(&w.store).await, 1);
    let view = w.schedules.get(&writer(), "minutely").await.expect("get");
    let task = w
        .store
        .get_task(view.schedule.last_task_id.expect("the fire's task"))
        .await
        .expect("task");
    assert_eq!(
        (task.task_type.as_str(), task.created_by.as_deref()),
        ("tick", Some("alice"))
    );
    let history = w.store.task_history(task.id).await.expect("history");
    assert_eq!(
        history[0].reason.as_deref(),
        Some("fired by schedule minutely for 2026-01-01T00:05:00+00:00")
    );
    w.schedules.fire_due().await;
    assert_eq!(task_count(&w.store).await, 1, "a fire time fires once");
    let view = w.schedules.get(&writer(), "minutely").await.expect("get");
    assert_eq!(
        (view.schedule.fires, view.schedule.last_fire_at),
        (1, Some(at(5, 0)))
    );
    assert_eq!(view.next_runs[0], at(6, 0));
}

#[tokio::test]
async fn a_paused_schedule_fires_nothing_and_resumes_from_then_on() {
    let w = world(at(0, 0));
    w.schedules
        .create(&writer(), every_minute(Overlap::Allow))
        .await
        .expect("created");
    let paused = w
        .schedules
        .set_paused(&writer(), "minutely", true)
        .await
        .expect("paused");
    assert!(paused.next_runs.is_empty());
    w.clock.set(at(3, 30));
    w.schedules.fire_due().await;
    assert_eq!(task_count(&w.store).await, 0);
    w.schedules
        .set_paused(&writer(), "minutely", false)
        .await
        .expect("resumed");
    w.schedules.fire_due().await;
    assert_eq!(
        task_count(&w.store).await,
        0,
        "what was missed while paused is not fired"
    );
    w.clock.set(at(4, 0));
    w.schedules.fire_due().await;
    assert_eq!(task_count(&w.store).await, 1);
}

#[tokio::test]
async fn a_skipping_schedule_waits_for_its_previous_task_to_finish() {
    let w = world(at(0, 30));
    w.schedules
        .create(&writer(), every_minute(Overlap::Skip))
        .await
        .expect("created");
    w.clock.set(at(1, 0));
    w.schedules.fire_due().await;
    assert_eq!(task_count(&w.store).await, 1);
    w.clock.set(at(2, 0));
    w.schedules.fire_due().await;
    let view = w.schedules.get(&writer(), "minutely").await.expect("get");
    assert_eq!(
        (view.schedule.fires, view.schedule.skips),
        (1, 1),
        "the first task is still pending"
    );
    let first = view.schedule.last_task_id.expect("a task");
    let task = w.store.get_task(first).await.expect("task");
    let cancelled = orchestrator_ports::Transition {
        expected_status: task.status,
        expected_attempt: task.attempt,
        expected_droplet: None,
        task: task
            .apply(
                orchestrator_domain::TaskUpdate::Cancel,
                orchestrator_domain::Actor::from_roles(&[orchestrator_domain::Role::Admin]),
                at(2, 10),
            )
            .expect("cancel"),
        record: orchestrator_ports::ChangeRecord::default(),
    };
    w.store.apply_transition(cancelled).await.expect("cancelled");
    assert_eq!(
        w.store.get_task(first).await.expect("task").status,
        TaskStatus::Cancelled
    );
    w.clock.set(at(3, 0));
    w.schedules.fire_due().await;
    assert_eq!(task_count(&w.store).await, 2);
}

#[tokio::test]
async fn a_schedule_is_changed_and_deleted_by_name_and_a_bad_change_is_refused() {
    let w = world(at(0, 0));
    w.schedules
        .create(&writer(), every_minute(Overlap::Allow))
        .await
        .expect("created");
    let hourly = SchedulePatch {
        cron: Some("0 * * * *".into()),
        timezone: Some("Asia/Kolkata".into()),
        ..SchedulePatch::default()
    };
    let changed = w
        .schedules
        .update(&writer(), "minutely", hourly)
        .await
        .expect("changed");
    // Kolkata is UTC+5:30: its hours start at :30 in UTC.
    assert_eq!(changed.next_runs[0], at(30, 0));
    let bad = SchedulePatch {
        cron: Some("every day".into()),
        ..SchedulePatch::default()
    };
    let refused = w.schedules.update(&writer(), "minutely", bad).await;
    assert!(
        matches!(&refused, Err(AppError::Validation(e)) if e.field == "cron"),
        "{refused:?}"
    );
    w.schedules.delete(&writer(), "minutely").await.expect("deleted");
    let gone = w.schedules.get(&writer(), "minutely").await;
    assert!(matches!(gone, Err(AppError::UnknownName { .. })), "{gone:?}");
    w.clock.set(at(45, 0));
    w.schedules.fire_due().await;
    assert_eq!(task_count(&w.store).await, 0, "a deleted schedule fires no more");
}

#[tokio::test]
async fn a_schedule_that_does_not_catch_up_lets_missed_times_pass() {
    let w = world(at(0, 30));
    let draft = ScheduleDraft {
        cron: "*/10 * * * *".into(),
        catch_up: Some(CatchUp::None),
        ..every_minute(Overlap::Allow)
    };
    w.schedules.create(&writer(), draft).await.expect("created");
    // 00:10 dealt with 20 s late: on time, it fires.
    w.clock.set(at(10, 20));
    w.schedules.fire_due().await;
    assert_eq!(task_count(&w.store).await, 1);
    // Down from 00:10:20 to 00:35: 00:30 is five minutes late and passes.
    w.clock.set(at(35, 0));
    w.schedules.fire_due().await;
    assert_eq!(task_count(&w.store).await, 1, "a missed time is let pass");
    let view = w.schedules.get(&writer(), "minutely").await.expect("get");
    assert_eq!(
        (
            view.schedule.fires,
            view.schedule.skips,
            view.schedule.last_fire_at
        ),
        (1, 1, Some(at(30, 0)))
    );
    assert_eq!(view.next_runs[0], at(40, 0), "the next one on time fires");
    w.clock.set(at(40, 1));
    w.schedules.fire_due().await;
    assert_eq!(task_count(&w.store).await, 2);
}
