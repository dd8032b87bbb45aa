//! The analytics endpoints of spec section 5: figures over a time range,
//! computed by the store.

use std::sync::Arc;
use std::time::{Duration, Instant};

use orchestrator_domain::{Caller, DropletId, DropletStatus, Permission, TaskStatus, ValidationError};
use orchestrator_ports::{
    AnalyticsStore, DropletFilter, RoutingStats, TaskPerformance, Throughput, TimeWindow, TypeBreakdown,
};

use crate::authz::require;
use crate::{AppResult, Ports};

/// The windows the analytics cover (the API's `time_range`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeRange {
    Hour,
    Day,
    Week,
    Month,
}

impl TimeRange {
    /// Parses `time_range`; absent means the last 24 hours.
    pub fn parse(text: Option<&str>) -> Result<Self, ValidationError> {
        match text.map(str::trim) {
            None | Some("24h") => Ok(TimeRange::Day),
            Some("1h") => Ok(TimeRange::Hour),
            Some("7d") => Ok(TimeRange::Week),
            Some("30d") => Ok(TimeRange::Month),
            Some(other) => Err(ValidationError::new(
                "time_range",
                format!("'{other}' is not a range; use 1h, 24h, 7d or 30d"),
            )),
        }
    }

    pub fn duration(self) -> Duration {
        let hours = match self {
            TimeRange::Hour => 1,
            TimeRange::Day => 24,
            TimeRange::Week => 24 * 7,
            TimeRange::Month => 24 * 30,
        };
        Duration::from_secs(hours * 3600)
    }
}

/// Tasks and droplets by status now, and throughput over a range.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub time_range: TimeRange,
    /// All tasks now, by status.
    pub tasks_by_status: std::collections::BTreeMap<TaskStatus, u64>,
    /// All tasks now.
    pub tasks_total: u64,
    /// All droplets now, by status.
    pub droplets_by_status: std::collections::BTreeMap<DropletStatus, u64>,
    /// All droplets now.
    pub droplets_total: u64,
    pub throughput: Throughput,
    /// Tasks finished per hour over the range.
    pub finished_per_hour: f64,
}

/// The droplets by status, and the active ones late on their heartbeat.
#[derive(Debug, Clone, PartialEq)]
pub struct DropletHealth {
    pub total: u64,
    pub by_status: std::collections::BTreeMap<DropletStatus, u64>,
    /// `active` droplets whose last heartbeat (or registration)
    /// is older than the interval they were told to beat at.
    pub late_heartbeats: u64,
    pub heartbeat_interval_seconds: u64,
}

/// How the tasks that finished over a range fared, and their success rate.
#[derive(Debug, Clone, PartialEq)]
pub struct Performance {
    pub time_range: TimeRange,
    pub figures: TaskPerformance,
    /// Completed out of finished; `None` when nothing finished.
    pub success_rate: Option<f64>,
}

impl Performance {
    fn of(time_range: TimeRange, figures: TaskPerformance) -> Self {
        #[allow(clippy::cast_precision_loss, reason = "task counts are far below 2^52")]
        let success_rate = (figures.finished > 0).then(|| figures.completed as f64 / figures.finished as f64);
        Performance {
            time_range,
            figures,
            success_rate,
        }
    }
}

/// One slice of [`MetricsService::last_hour`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SeriesPoint {
    /// The slice's end (exclusive).
    pub until: chrono::DateTime<chrono::Utc>,
    pub created: u64,
    pub finished: u64,
    /// Median creation-to-assignment of the tasks assigned in the slice.
    pub median_wait_seconds: Option<f64>,
}

#[derive(Clone)]
pub struct MetricsService {
    ports: Ports,
    analytics: Arc<dyn AnalyticsStore>,
}

impl std::fmt::Debug for MetricsService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MetricsService")
    }
}

impl MetricsService {
    pub fn new(ports: Ports, analytics: Arc<dyn AnalyticsStore>) -> Self {
        MetricsService { ports, analytics }
    }

    fn window(&self, range: TimeRange) -> TimeWindow {
        let until = self.ports.clock.now();
        let since = until - chrono::Duration::from_std(range.duration()).unwrap_or(chrono::Duration::zero());
        // `until` is exclusive; a change stamped this very instant counts.
        TimeWindow {
            since,
            until: until + chrono::Duration::milliseconds(1),
        }
    }

    pub async fn summary(&self, caller: &Caller, range: TimeRange) -> AppResult<Summary> {
        require(caller, Permission::Read)?;
        let tasks = self.ports.tasks.count_tasks_by_status().await?;
        let droplets = self.ports.droplets.count_droplets_by_status().await?;
        let throughput = self.analytics.throughput(self.window(range)).await?;
        #[allow(clippy::cast_precision_loss, reason = "counts and hours are small")]
        let finished_per_hour = throughput.finished as f64 / (range.duration().as_secs() as f64 / 3600.0);
        Ok(Summary {
            time_range: range,
            tasks_total: tasks.values().sum(),
            tasks_by_status: tasks.into_iter().collect(),
            droplets_total: droplets.values().sum(),
            droplets_by_status: droplets.into_iter().collect(),
            throughput,
            finished_per_hour,
        })
    }

    /// The last hour in `buckets` equal slices, oldest first: tasks created
    /// and finished in each, and the median time from creation to
    /// assignment of the tasks assigned in it (the dashboard's chart).
    pub async fn last_hour(&self, caller: &Caller, buckets: u32) -> AppResult<Vec<SeriesPoint>> {
        require(caller, Permission::Read)?;
        let buckets = buckets.clamp(1, 60);
        let now = self.ports.clock.now();
        let step = chrono::Duration::minutes(60) / i32::try_from(buckets).unwrap_or(1);
        let mut points = Vec::with_capacity(buckets as usize);
        for i in (0..buckets).rev() {
            let until = now - step * i32::try_from(i).unwrap_or(0) + chrono::Duration::milliseconds(1);
            let window = TimeWindow {
                since: until - step,
                until,
            };
            let throughput = self.analytics.throughput(window).await?;
            let waits = self.analytics.task_performance(window, None, None).await?;
            points.push(SeriesPoint {
                until,
                created: throughput.created,
                finished: throughput.finished,
                median_wait_seconds: waits.queue_wait_seconds.p50,
            });
        }
        Ok(points)
    }

    pub async fn performance(
        &self,
        caller: &Caller,
        range: TimeRange,
        task_type: Option<String>,
    ) -> AppResult<Performance> {
        require(caller, Permission::Read)?;
        let figures = self
            .analytics
            .task_performance(self.window(range), task_type, None)
            .await?;
        Ok(Performance::of(range, figures))
    }

    /// A droplet's performance; an unknown droplet is `NotFound`.
    pub async fn droplet_performance(
        &self,
        caller: &Caller,
        droplet: DropletId,
        range: TimeRange,
    ) -> AppResult<Performance> {
        require(caller, Permission::Read)?;
        self.ports.droplets.get_droplet(droplet).await?;
        let figures = self
            .analytics
            .task_performance(self.window(range), None, Some(droplet))
            .await?;
        Ok(Performance::of(range, figures))
    }

    pub async fn by_type(&self, caller: &Caller, range: TimeRange) -> AppResult<Vec<TypeBreakdown>> {
        require(caller, Permission::Read)?;
        Ok(self.analytics.tasks_by_type(self.window(range)).await?)
    }

    pub async fn routing(&self, caller: &Caller, range: TimeRange) -> AppResult<RoutingStats> {
        require(caller, Permission::Read)?;
        Ok(self.analytics.routing_stats(self.window(range)).await?)
    }

    /// Work rescued or refused in `range`, by capability: the part of
    /// [`Self::routing`] the dashboard's overview shows, without reading
    /// every task assigned in the range.
    pub async fn rescues(
        &self,
        caller: &Caller,
        range: TimeRange,
    ) -> AppResult<Vec<orchestrator_ports::RescueCounts>> {
        require(caller, Permission::Read)?;
        Ok(self.analytics.rescues(self.window(range)).await?)
    }

    /// Pending tasks by priority, for the Prometheus gauges (no caller: the
    /// scrape endpoint is open when enabled).
    pub async fn pending_by_priority(&self) -> AppResult<std::collections::BTreeMap<u8, u64>> {
        Ok(self.analytics.pending_by_priority().await?)
    }

    /// Heartbeats the store holds back, and those it gave up during outages
    /// (for the Prometheus gauges, like the queue depth).
    pub fn heartbeat_backlog(&self) -> orchestrator_ports::HeartbeatBacklog {
        self.ports.droplets.heartbeat_backlog()
    }

    /// The droplets by status, and how many of those expected to beat
    /// (`active`) have been silent longer than `interval`, the
    /// heartbeat interval they were given.
    pub async fn droplet_health(&self, caller: &Caller, interval: Duration) -> AppResult<DropletHealth> {
        require(caller, Permission::Read)?;
        let droplets = self
            .ports
            .droplets
            .list_droplets(&DropletFilter::default())
            .await?;
        let now = self.ports.clock.now();
        let late_after = chrono::Duration::from_std(interval).unwrap_or(chrono::Duration::MAX);
        let mut by_status = std::collections::BTreeMap::new();
        let mut late_heartbeats = 0;
        for droplet in &droplets {
            *by_status.entry(droplet.status).or_insert(0) += 1;
            let expected = droplet.status == DropletStatus::Active;
            let last_sign = droplet.last_heartbeat.unwrap_or(droplet.registered_at);
            late_heartbeats += u64::from(expected && now - last_sign > late_after);
        }
        Ok(DropletHealth {
            total: droplets.len() as u64,
            by_status,
            late_heartbeats,
            heartbeat_interval_seconds: interval.as_secs(),
        })
    }

    /// How long the store takes to answer a small query.
    pub async fn store_latency(&self, caller: &Caller) -> AppResult<Duration> {
        require(caller, Permission::Read)?;
        let started = Instant::now();
        self.ports.droplets.count_droplets_by_status().await?;
        Ok(started.elapsed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_four_ranges_parse() {
        assert_eq!(TimeRange::parse(None), Ok(TimeRange::Day));
        assert_eq!(TimeRange::parse(Some("7d")), Ok(TimeRange::Week));
        assert_eq!(
            TimeRange::parse(Some("30d")).map(TimeRange::duration),
            Ok(Duration::from_secs(2_592_000))
        );
        for bad in ["", "2h", "1H", "week", "-1h"] {
            assert!(TimeRange::parse(Some(bad)).is_err(), "{bad}");
        }
    }
}
