// @generated automatically by Diesel CLI.

diesel::table! {
    concurrency_limits (key) {
        #[max_length = 100]
        key -> Varchar,
        max_running -> Int4,
        updated_by -> Nullable<Text>,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    droplets (id) {
        id -> Int8,
        droplet_id -> Int4,
        #[max_length = 100]
        name -> Varchar,
        #[max_length = 100]
        steward -> Nullable<Varchar>,
        #[max_length = 255]
        endpoint -> Varchar,
        capabilities -> Nullable<Jsonb>,
        #[max_length = 20]
        status -> Varchar,
        last_heartbeat -> Nullable<Timestamp>,
        registered_at -> Nullable<Timestamp>,
        updated_at -> Nullable<Timestamp>,
        max_concurrent_tasks -> Int4,
        manually_deactivated -> Bool,
        last_assigned_at -> Nullable<Timestamp>,
        service_id -> Nullable<Int8>,
        session_started_at -> Nullable<Timestamp>,
        heartbeat_sampled_at -> Nullable<Timestamp>,
        #[max_length = 100]
        listed_name -> Nullable<Varchar>,
    }
}

diesel::table! {
    heartbeats (id) {
        id -> Int8,
        droplet_id -> Int8,
        #[max_length = 20]
        status -> Varchar,
        metrics -> Nullable<Jsonb>,
        received_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    idempotency_keys (caller, key) {
        caller -> Text,
        key -> Text,
        fingerprint -> Text,
        task_ids -> Array<Nullable<Int8>>,
        created_at -> Timestamp,
    }
}

diesel::table! {
    schedule_fires (schedule_name, fire_at) {
        #[max_length = 100]
        schedule_name -> Varchar,
        fire_at -> Timestamp,
        task_id -> Int8,
    }
}

diesel::table! {
    schedules (name) {
        #[max_length = 100]
        name -> Varchar,
        cron -> Text,
        timezone -> Text,
        template -> Jsonb,
        #[max_length = 10]
        overlap -> Varchar,
        #[max_length = 10]
        catch_up -> Varchar,
        paused -> Bool,
        created_by -> Nullable<Text>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        last_fire_at -> Nullable<Timestamp>,
        last_task_id -> Nullable<Int8>,
        fires -> Int8,
        skips -> Int8,
    }
}

diesel::table! {
    task_counts (status, slot) {
        #[max_length = 20]
        status -> Varchar,
        slot -> Int2,
        n -> Int8,
    }
}

diesel::table! {
    task_dependencies (task_id, depends_on) {
        task_id -> Int8,
        depends_on -> Int8,
    }
}

diesel::table! {
    task_queue (task_id) {
        task_id -> Int8,
        priority -> Nullable<Int4>,
        deadline -> Nullable<Timestamp>,
        created_at -> Timestamp,
        #[max_length = 100]
        required_capability -> Nullable<Varchar>,
        attempt -> Int4,
        not_before -> Nullable<Timestamp>,
        routing_lease_until -> Nullable<Timestamp>,
        #[max_length = 100]
        concurrency_key -> Nullable<Varchar>,
    }
}

diesel::table! {
    task_runs (task_id) {
        task_id -> Int8,
        assigned_droplet_id -> Int8,
        #[max_length = 20]
        status -> Varchar,
        assigned_at -> Nullable<Timestamp>,
        started_at -> Nullable<Timestamp>,
        completed_at -> Nullable<Timestamp>,
        result -> Nullable<Jsonb>,
        error_message -> Nullable<Text>,
        retry_count -> Nullable<Int4>,
        updated_at -> Nullable<Timestamp>,
        retry_after -> Nullable<Timestamp>,
        attempt -> Int4,
        cancel_requested_at -> Nullable<Timestamp>,
        requeues -> Int4,
        progress -> Nullable<Int2>,
        progress_message -> Nullable<Text>,
        progress_at -> Nullable<Timestamp>,
        #[max_length = 100]
        concurrency_key -> Nullable<Varchar>,
    }
}

diesel::table! {
    task_state_history (id) {
        id -> Int8,
        task_id -> Int8,
        #[max_length = 20]
        from_status -> Nullable<Varchar>,
        #[max_length = 20]
        to_status -> Varchar,
        #[max_length = 100]
        changed_by -> Nullable<Varchar>,
        reason -> Nullable<Text>,
        metadata -> Nullable<Jsonb>,
        changed_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    tasks (id) {
        id -> Int8,
        trace_id -> Uuid,
        #[max_length = 50]
        task_type -> Varchar,
        #[max_length = 255]
        title -> Varchar,
        description -> Nullable<Text>,
        payload -> Jsonb,
        #[max_length = 100]
        required_capability -> Nullable<Varchar>,
        assigned_droplet_id -> Nullable<Int8>,
        #[max_length = 20]
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
        #[max_length = 100]
        created_by -> Nullable<Varchar>,
        updated_at -> Nullable<Timestamp>,
        retry_after -> Nullable<Timestamp>,
        deadline_risk_at -> Nullable<Timestamp>,
        attempt -> Int4,
        cancel_requested_at -> Nullable<Timestamp>,
        timeout_seconds -> Nullable<Int4>,
        progress -> Nullable<Int2>,
        progress_message -> Nullable<Text>,
        progress_at -> Nullable<Timestamp>,
        requeues -> Int4,
        run_at -> Nullable<Timestamp>,
        #[max_length = 100]
        concurrency_key -> Nullable<Varchar>,
    }
}

diesel::table! {
    workflow_tasks (task_id) {
        task_id -> Int8,
        workflow_id -> Int8,
        #[max_length = 100]
        key -> Varchar,
        position -> Int4,
        #[max_length = 10]
        on_dependency_failure -> Varchar,
    }
}

diesel::table! {
    workflows (id) {
        id -> Int8,
        #[max_length = 100]
        name -> Nullable<Varchar>,
        created_by -> Nullable<Text>,
        created_at -> Timestamp,
    }
}

diesel::joinable!(heartbeats -> droplets (droplet_id));
diesel::joinable!(tasks -> droplets (assigned_droplet_id));

diesel::allow_tables_to_appear_in_same_query!(
    concurrency_limits,
    droplets,
    heartbeats,
    idempotency_keys,
    schedule_fires,
    schedules,
    task_counts,
    task_dependencies,
    task_queue,
    task_runs,
    task_state_history,
    tasks,
    workflow_tasks,
    workflows,
);
