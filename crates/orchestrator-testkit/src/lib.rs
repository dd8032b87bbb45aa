#![doc = include_str!("../README.md")]

pub mod contract;
pub mod fixtures;
pub mod pg;

use std::any::Any;
use std::sync::Arc;

use orchestrator_ports::{
    AnalyticsStore, ConcurrencyStore, DropletStore, ScheduleStore, TaskStore, WorkflowStore,
};

/// The stores under test. `guard` keeps whatever backs them alive (a
/// throwaway database, say) until the test ends.
pub struct Stores {
    pub tasks: Arc<dyn TaskStore>,
    pub droplets: Arc<dyn DropletStore>,
    pub analytics: Arc<dyn AnalyticsStore>,
    pub schedules: Arc<dyn ScheduleStore>,
    pub workflows: Arc<dyn WorkflowStore>,
    pub limits: Arc<dyn ConcurrencyStore>,
    pub guard: Option<Box<dyn Any + Send + Sync>>,
}

impl std::fmt::Debug for Stores {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Stores")
    }
}

impl Stores {
    /// Stores backed by one object that implements both ports.
    pub fn from_one<
        S: TaskStore
            + DropletStore
            + AnalyticsStore
            + ScheduleStore
            + WorkflowStore
            + ConcurrencyStore
            + 'static,
    >(
        store: S,
    ) -> Self {
        let store = Arc::new(store);
        Stores {
            tasks: store.clone(),
            droplets: store.clone(),
            analytics: store.clone(),
            schedules: store.clone(),
            workflows: store.clone(),
            limits: store,
            guard: None,
        }
    }
}

/// Expands to one `#[tokio::test]` per contract case, each given fresh
/// stores by `$make` (an expression evaluating to a future of [`Stores`]).
#[macro_export]
macro_rules! store_contract_tests {
    ($make:expr) => {
        $crate::store_contract_tests!(@cases $make;
            create_task_is_pending_with_first_history_row,
            trace_ids_are_unique,
            a_batch_of_creations_is_all_or_nothing,
            an_idempotency_key_creates_once_per_caller_and_day,
            concurrent_requests_with_one_key_create_once,
            unknown_task_is_not_found,
            list_filters_paginates_and_counts,
            list_filters_by_capability_and_searches_titles_and_trace_ids,
            list_is_newest_first,
            offset_pages_are_slices_of_the_whole_list,
            transition_applies_with_its_history_row,
            stale_status_is_a_conflict_and_changes_nothing,
            a_report_applies_when_it_stands_and_answers_the_task_otherwise,
            reports_arriving_together_each_get_their_outcome,
            wrong_droplet_is_a_conflict,
            concurrent_transitions_have_one_winner,
            a_report_read_before_a_reassignment_never_lands_on_the_new_attempt,
            a_completion_and_a_recovery_have_one_winner,
            two_completions_have_one_winner,
            claims_come_by_priority_then_age,
            claims_take_the_earlier_deadline_first_within_a_priority,
            claims_leave_out_what_no_free_droplet_can_take,
            claimed_tasks_are_hidden_until_released_or_moved,
            claims_skip_tasks_waiting_out_a_retry_backoff,
            claims_wait_for_a_tasks_run_at,
            schedules_are_created_listed_changed_and_deleted,
            a_fire_time_makes_one_task_whatever_races,
            a_workflow_is_stored_whole_and_its_dependants_wait,
            a_dependant_is_released_with_its_dependencies_results,
            a_failure_cancels_dependants_unless_they_run_anyway,
            concurrent_settlings_release_once,
            a_keys_limit_is_set_read_listed_and_removed,
            a_key_at_its_limit_holds_its_tasks_back,
            concurrent_assignments_never_exceed_a_keys_limit,
            silent_droplets_become_inactive,
            recovery_finds_each_kind_of_stuck_task,
            a_restarted_droplets_work_is_found_and_a_resumed_ones_kept,
            runs_past_their_timeout_are_found_and_progress_extends_them,
            stopped_tasks_never_hide_a_dead_droplets_work,
            a_drained_droplet_keeps_its_work_while_it_beats,
            a_manual_retry_clears_the_stop_request,
            live_tasks_are_counted_apart_from_finished_ones,
            pages_follow_a_cursor_in_either_direction,
            old_heartbeats_are_deleted_in_bounded_batches,
            an_assignment_beyond_capacity_is_refused,
            an_assignment_to_an_inactive_droplet_is_refused,
            concurrent_assignments_never_overfill_a_droplet,
            a_burst_of_changes_gives_each_its_own_outcome,
            active_counts_cover_assigned_and_in_progress,
            assignment_marks_the_droplet_busy,
            tasks_are_counted_by_status,
            register_creates_then_updates,
            heartbeat_revives_unless_deactivated_by_admin,
            droplets_filter_by_status_and_capability,
            unknown_droplet_is_not_found,
            analytics_describe_a_known_set_of_tasks,
            tasks_by_type_count_held_tasks_by_their_status,
            deadline_risks_are_flagged_once,
            attempts_count_assignments_and_refused_reports_are_recorded,
            rescues_are_counted_by_capability,
            cancel_requests_are_recorded_on_running_tasks,
            directory_sync_describes_droplets_without_reviving_them,
            directory_keeps_the_registrys_service_ids,
            finished_tasks_are_deleted_after_their_retention_with_their_history,
            heartbeats_are_kept_as_samples_and_last_heartbeat_is_exact,
        );
    };
    (@cases $make:expr; $($case:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let stores: $crate::Stores = $make.await;
                $crate::contract::$case(&stores).await;
            }
        )+
    };
}
