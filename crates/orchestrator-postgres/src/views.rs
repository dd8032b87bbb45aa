//! The views as diesel sees them, declared by hand: `diesel print-schema`
//! prints tables only. `migrations::verify_schema` checks the columns the
//! store relies on against the database.

diesel::table! {
    /// Every task as the API shows it (migration 18): its run row over its
    /// `tasks` row while a droplet holds it. `stored_status` is the status
    /// in `tasks` (`pending` for all unfinished work), `run_status` the one
    /// in `task_runs`: a filter on them uses the index of the table that
    /// holds the status. `deadline_risk_at` is left out: no statement
    /// reads it through the view.
    task_view (id) {
        id -> Int8,
        trace_id -> Uuid,
        task_type -> Varchar,
        title -> Varchar,
        description -> Nullable<Text>,
        payload -> Jsonb,
        required_capability -> Nullable<Varchar>,
        assigned_droplet_id -> Nullable<Int8>,
        status -> Varchar,
        priority -> Nullable<Int4>,
        created_at -> Nullable<Timestamp>,
        assigned_at -> Nullable<Timestamp>,
        started_at -> Nullable<Timestamp>,
        completed_at -> Nullable<Timestamp>,
        deadline -> Nullable<Timestamp>,
        result -> Nullable<Jsonb>,
        error_message -> Nullable<Text>,
        retry_count -> Nullable<Int4>,
        max_retries -> Nullable<Int4>,
        created_by -> Nullable<Varchar>,
        updated_at -> Nullable<Timestamp>,
        retry_after -> Nullable<Timestamp>,
        attempt -> Int4,
        cancel_requested_at -> Nullable<Timestamp>,
        timeout_seconds -> Nullable<Int4>,
        progress -> Nullable<Int2>,
        progress_message -> Nullable<Text>,
        progress_at -> Nullable<Timestamp>,
        requeues -> Int4,
        stored_status -> Varchar,
        run_status -> Nullable<Varchar>,
        run_at -> Nullable<Timestamp>,
        concurrency_key -> Nullable<Varchar>,
    }
}

diesel::joinable!(task_view -> droplets (assigned_droplet_id));
diesel::allow_tables_to_appear_in_same_query!(task_view, droplets);

use crate::schema::droplets;
