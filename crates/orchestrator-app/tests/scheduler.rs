//! The scheduler runs jobs on their intervals, records each run, keeps
//! going after errors, runs leader-only jobs on the leader only, and
//! pauses and resumes them.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use support::memory_ports;

use async_trait::async_trait;
use orchestrator_app::jobs::{JobSpec, task_router};
use orchestrator_app::scheduler::Job;
use orchestrator_app::{AppError, AppResult, Scheduler};
use orchestrator_ports::{MockLeaderElection, SystemClock};

const TICK: Duration = Duration::from_millis(40);

struct Counting {
    spec: &'static JobSpec,
    runs: AtomicU32,
    always_fails: bool,
}

#[async_trait]
impl Job for Counting {
    fn spec(&self) -> &'static JobSpec {
        self.spec
    }
    async fn run(&self) -> AppResult<()> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        if self.always_fails {
            Err(AppError::Unavailable("the store is down".into()))
        } else {
            Ok(())
        }
    }
}

fn job(id: &'static str, leader_only: bool, always_fails: bool) -> Arc<Counting> {
    // A job of the test's own, as each job's file declares one.
    let spec = Box::leak(Box::new(JobSpec {
        id,
        leader_only,
        interval_setting: "TEST_INTERVAL",
        default_interval_seconds: 1,
        reloadable: true,
    }));
    Arc::new(Counting {
        spec,
        runs: AtomicU32::new(0),
        always_fails,
    })
}

fn scheduler(leader: bool, jobs: &[Arc<Counting>]) -> Arc<Scheduler> {
    let mut election = MockLeaderElection::new();
    election.expect_is_leader().returning(move || leader);
    let mut scheduler = Scheduler::new(Arc::new(election), Arc::new(SystemClock));
    for job in jobs {
        scheduler.add(job.clone(), TICK);
    }
    Arc::new(scheduler)
}

#[tokio::test]
async fn jobs_run_on_their_interval_and_keep_going_after_errors() {
    let flaky = job("health_monitor", false, true);
    let scheduler = scheduler(true, std::slice::from_ref(&flaky));
    let services = orchestrator_app::Services::default();
    scheduler.start(&services);
    tokio::time::sleep(TICK * 5).await;
    let status = scheduler.jobs().remove(0);
    assert!(status.runs >= 3, "{status:?}");
    assert_eq!(u64::from(flaky.runs.load(Ordering::SeqCst)), status.runs);
    assert!(status.last_run_at.is_some() && status.next_run_at > status.last_run_at);
    assert_eq!(status.interval_seconds, 0);
    // Every run failed, each was counted, and the last error is kept.
    assert_eq!(status.failures, status.runs, "{status:?}");
    assert_eq!(
        status.last_error.as_deref(),
        Some("the store is unavailable: the store is down"),
        "{status:?}"
    );
}

#[tokio::test]
async fn leader_only_jobs_wait_on_a_replica_that_does_not_lead() {
    let everywhere = job("task_router", false, false);
    let leader_only = job("heartbeat_cleanup", true, false);
    let scheduler = scheduler(false, &[everywhere.clone(), leader_only.clone()]);
    let services = orchestrator_app::Services::default();
    scheduler.start(&services);
    tokio::time::sleep(TICK * 4).await;
    assert!(everywhere.runs.load(Ordering::SeqCst) >= 2);
    assert_eq!(leader_only.runs.load(Ordering::SeqCst), 0, "not the leader");
    let status = scheduler
        .jobs()
        .into_iter()
        .find(|j| j.id == "heartbeat_cleanup")
        .expect("job");
    assert!(!status.leader && status.next_run_at.is_some(), "{status:?}");
}

#[tokio::test]
async fn a_paused_job_does_not_run_until_resumed() {
    let one = job("health_monitor", false, false);
    let scheduler = scheduler(true, std::slice::from_ref(&one));
    assert!(scheduler.pause("health_monitor").await.expect("known").paused);
    let services = orchestrator_app::Services::default();
    scheduler.start(&services);
    tokio::time::sleep(TICK * 3).await;
    assert_eq!(one.runs.load(Ordering::SeqCst), 0);
    assert!(!scheduler.resume("health_monitor").expect("known").paused);
    tokio::time::sleep(TICK * 3).await;
    assert!(one.runs.load(Ordering::SeqCst) >= 1);
    let unknown = scheduler.pause("nope").await;
    assert!(
        matches!(unknown, Err(AppError::UnknownName { entity: "job", .. })),
        "{unknown:?}"
    );
    assert!(scheduler.pause_all().await.iter().all(|j| j.paused));
}

#[tokio::test]
async fn reloading_changes_intervals_and_recovery_and_names_what_changed() {
    use orchestrator_app::{ManagementService, Recovery, RecoverySettings, Tunables};
    use orchestrator_domain::{Caller, Permission, Permissions, RetryPolicy};
    let ports = memory_ports(SystemClock);
    let recovery_settings = RecoverySettings {
        heartbeat_timeout: Duration::from_secs(90),
        ack_timeout: Duration::from_secs(60),
        retry: RetryPolicy::default(),
        enabled: true,
        deadline_risk_floor: Duration::from_secs(60),
        run_timeout: Duration::from_secs(3600),
        max_requeues: 5,
    };
    let recovery = Recovery::new(ports, recovery_settings);
    let router_job = job("task_router", false, false);
    let scheduler = scheduler(true, std::slice::from_ref(&router_job));
    let before = Tunables {
        intervals: [(task_router::SPEC.id, TICK)].into_iter().collect(),
        recovery: recovery_settings,
    };
    let management = ManagementService::new(scheduler.clone(), recovery.clone(), before.clone());
    let admin = Caller {
        subject: "admin".into(),
        permissions: Permissions::new([Permission::Admin]),
        droplet_id: None,
    };
    let mut after = before.clone();
    after
        .intervals
        .insert(task_router::SPEC.id, Duration::from_secs(7));
    after.recovery.enabled = false;
    let changed = management.reload(&admin, after.clone()).expect("admin reloads");
    assert_eq!(changed, vec!["ROUTER_INTERVAL", "ENABLE_AUTO_RECOVERY"]);
    assert_eq!(scheduler.jobs()[0].interval_seconds, 7);
    assert!(!recovery.settings().enabled);
    assert_eq!(management.tunables(), after);
    assert!(
        management
            .reload(&admin, after.clone())
            .expect("again")
            .is_empty(),
        "nothing changed"
    );
    let reader = Caller {
        permissions: Permissions::new([Permission::Write]),
        ..admin
    };
    assert!(matches!(
        management.reload(&reader, before),
        Err(AppError::Forbidden(_))
    ));
}
