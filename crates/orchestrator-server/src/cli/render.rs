//! Tables and lines for people. Scripts use `--json`, never these.

use std::fmt::Write;

use chrono::{DateTime, SecondsFormat, Utc};
use orchestrator_client::schedules::ScheduleBody;
use orchestrator_client::{Cancelled, FeedEvent, TaskCreated, TaskPage, TaskRecord};
use orchestrator_domain::Droplet;

/// Columns padded to their widest cell, two spaces apart; the last is not padded.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let header: Vec<String> = header.iter().map(|h| (*h).to_owned()).collect();
    let mut text = String::new();
    for row in std::iter::once(&header).chain(rows) {
        let last = row.len().saturating_sub(1);
        for (i, (cell, width)) in row.iter().zip(&widths).enumerate() {
            let cell = if i == last {
                cell.clone()
            } else {
                format!("{cell:<width$}  ")
            };
            text.push_str(&cell);
        }
        text.push('\n');
    }
    text
}

/// `key: value` lines, the keys aligned.
fn fields(pairs: &[(&str, String)]) -> String {
    let width = pairs.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 1;
    pairs.iter().fold(String::new(), |mut text, (key, value)| {
        let _ = writeln!(text, "{:<width$} {value}", format!("{key}:"));
        text
    })
}

fn time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn optional_time(at: Option<DateTime<Utc>>) -> String {
    at.map_or_else(|| "-".to_owned(), time)
}

fn or_dash(text: Option<impl ToString>) -> String {
    text.map_or_else(|| "-".to_owned(), |t| t.to_string())
}

/// `value` as the server sent it: one line of JSON.
fn json(value: &impl serde::Serialize) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

pub fn created(created: &TaskCreated) -> String {
    fields(&[
        ("task", created.task_id.to_string()),
        ("status", created.status.to_string()),
        ("trace_id", created.trace_id.to_string()),
        ("created_at", time(created.created_at)),
        (
            "assignment in",
            format!("~{} s", created.estimated_assignment_seconds),
        ),
    ])
}

pub fn task_page(page: &TaskPage) -> String {
    let rows: Vec<Vec<String>> = page
        .tasks
        .iter()
        .map(|record| {
            let task = &record.task;
            vec![
                task.id.to_string(),
                task.status.to_string(),
                task.priority.value().to_string(),
                task.task_type.clone(),
                or_dash(task.required_capability.as_ref().map(|c| c.as_str().to_owned())),
                or_dash(task.assigned_droplet_id),
                time(task.created_at),
                task.title.clone(),
            ]
        })
        .collect();
    let header = [
        "ID",
        "STATUS",
        "PRI",
        "TYPE",
        "CAPABILITY",
        "DROPLET",
        "CREATED",
        "TITLE",
    ];
    let mut text = table(&header, &rows);
    let first = if page.tasks.is_empty() { 0 } else { page.offset + 1 };
    let last = page.offset + page.tasks.len() as u64;
    let _ = writeln!(text, "{first}-{last} of {} tasks", page.total);
    text
}

pub fn task(record: &TaskRecord) -> String {
    let task = &record.task;
    let droplet = match (&task.assigned_droplet_id, &record.assigned_droplet_name) {
        (Some(id), Some(name)) => format!("{id} ({name})"),
        (id, _) => or_dash(*id),
    };
    let mut pairs = vec![
        ("task", task.id.to_string()),
        ("title", task.title.clone()),
        ("type", task.task_type.clone()),
        ("status", task.status.to_string()),
        ("priority", task.priority.value().to_string()),
        (
            "capability",
            or_dash(task.required_capability.as_ref().map(|c| c.as_str().to_owned())),
        ),
        ("droplet", droplet),
        ("attempt", task.attempt.to_string()),
        ("retries", format!("{} of {}", task.retry_count, task.max_retries)),
        ("deadline", optional_time(task.deadline)),
        ("created_at", time(task.created_at)),
        ("completed_at", optional_time(task.completed_at)),
        ("payload", task.payload.to_string()),
        ("result", or_dash(task.result.as_ref())),
        ("error", or_dash(task.error_message.as_ref())),
    ];
    if let Some(routing) = &record.routing {
        pairs.push(("routing", json(routing)));
    }
    let mut text = fields(&pairs);
    if !record.history().is_empty() {
        text.push('\n');
        text.push_str(&history(record));
    }
    text
}

fn history(record: &TaskRecord) -> String {
    let rows: Vec<Vec<String>> = record
        .history()
        .iter()
        .map(|entry| {
            vec![
                time(entry.changed_at),
                or_dash(entry.from_status),
                entry.to_status.to_string(),
                or_dash(entry.changed_by.as_ref()),
                or_dash(entry.reason.as_ref()),
            ]
        })
        .collect();
    table(&["AT", "FROM", "TO", "BY", "REASON"], &rows)
}

pub fn cancelled(cancelled: &Cancelled) -> String {
    format!("task {} is {}\n", cancelled.task_id, cancelled.status)
}

pub fn cancel_requested(record: &TaskRecord) -> String {
    let droplet = or_dash(record.task.assigned_droplet_id);
    format!(
        "asked droplet {droplet} to stop task {} ({})\n",
        record.task.id, record.task.status
    )
}

pub fn retried(record: &TaskRecord) -> String {
    format!(
        "task {} is {} again (attempt {} done, {} of {} retries used)\n",
        record.task.id,
        record.task.status,
        record.task.attempt,
        record.task.retry_count,
        record.task.max_retries
    )
}

pub fn droplets(droplets: &[Droplet]) -> String {
    let rows: Vec<Vec<String>> = droplets
        .iter()
        .map(|d| {
            vec![
                d.droplet_id.to_string(),
                d.name.clone(),
                d.status.to_string(),
                d.max_concurrent_tasks.to_string(),
                optional_time(d.last_heartbeat),
                d.endpoint.clone(),
                capabilities(d),
            ]
        })
        .collect();
    let header = [
        "ID",
        "NAME",
        "STATUS",
        "SLOTS",
        "LAST HEARTBEAT",
        "ENDPOINT",
        "CAPABILITIES",
    ];
    let mut text = table(&header, &rows);
    let _ = writeln!(text, "{} droplets", droplets.len());
    text
}

fn capabilities(droplet: &Droplet) -> String {
    let names: Vec<&str> = droplet.capabilities.iter().map(|c| c.as_str()).collect();
    names.join(",")
}

pub fn droplet(droplet: &Droplet) -> String {
    fields(&[
        ("droplet", droplet.droplet_id.to_string()),
        ("name", droplet.name.clone()),
        ("status", droplet.status.to_string()),
        ("endpoint", droplet.endpoint.clone()),
        ("capabilities", capabilities(droplet)),
        ("slots", droplet.max_concurrent_tasks.to_string()),
        ("steward", or_dash(droplet.steward.as_ref())),
        ("deactivated", droplet.manually_deactivated.to_string()),
        ("last_heartbeat", optional_time(droplet.last_heartbeat)),
        ("registered_at", time(droplet.registered_at)),
    ])
}

/// `12:00:01.250Z  task_assigned  task 7 assigned to 21  "title"`.
pub fn event_line(event: &FeedEvent) -> String {
    let at = event.timestamp.to_rfc3339_opts(SecondsFormat::Millis, true);
    let subject = if let Some(task) = event.task() {
        let droplet = task
            .assigned_droplet_id
            .map(|d| format!(" droplet {d}"))
            .unwrap_or_default();
        format!("task {} {}{droplet}  {:?}", task.id, task.status, task.title)
    } else if let Some(droplet) = event.droplet() {
        format!(
            "droplet {} {} {}",
            droplet.droplet_id, droplet.name, droplet.status
        )
    } else {
        event.data.to_string()
    };
    format!("{at}  {:<24} {subject}", event.event)
}

pub fn schedules(schedules: &[ScheduleBody]) -> String {
    let rows: Vec<Vec<String>> = schedules
        .iter()
        .map(|s| {
            vec![
                s.name.clone(),
                s.cron.clone(),
                s.timezone.clone(),
                optional_time(s.next_runs.first().copied()),
                if s.paused { "paused" } else { "active" }.to_owned(),
                s.fires.to_string(),
                s.skips.to_string(),
                s.task.task_type.clone(),
            ]
        })
        .collect();
    let header = [
        "NAME",
        "CRON",
        "TIMEZONE",
        "NEXT RUN",
        "STATE",
        "FIRES",
        "SKIPS",
        "TASK TYPE",
    ];
    let mut text = table(&header, &rows);
    let _ = writeln!(text, "{} schedules", schedules.len());
    text
}

pub fn schedule(schedule: &ScheduleBody) -> String {
    let next: Vec<String> = schedule.next_runs.iter().copied().map(time).collect();
    fields(&[
        ("schedule", schedule.name.clone()),
        ("cron", schedule.cron.clone()),
        ("timezone", schedule.timezone.clone()),
        ("overlap", schedule.overlap.as_str().to_owned()),
        ("paused", schedule.paused.to_string()),
        ("task", json(&schedule.task)),
        (
            "next_runs",
            if next.is_empty() {
                "-".to_owned()
            } else {
                next.join(", ")
            },
        ),
        ("last_fire_at", optional_time(schedule.last_fire_at)),
        ("last_task_id", or_dash(schedule.last_task_id)),
        ("fires", schedule.fires.to_string()),
        ("skips", schedule.skips.to_string()),
        ("created_by", or_dash(schedule.created_by.as_ref())),
    ])
}

pub fn schedule_deleted(name: &str) -> String {
    format!("schedule {name} deleted; the tasks it made stay\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns_and_leave_the_last_unpadded() {
        let text = table(
            &["ID", "NAME"],
            &[vec!["1".into(), "echo".into()], vec!["100".into(), "e".into()]],
        );
        assert_eq!(text, "ID   NAME\n1    echo\n100  e\n");
    }

    #[test]
    fn fields_align_their_keys() {
        assert_eq!(
            fields(&[("a", "1".into()), ("long", "2".into())]),
            "a:    1\nlong: 2\n"
        );
    }
}
