//! `/schedules`: cron schedules that submit a task at each fire time.
//! Reading needs `read`; the rest `write`.

pub use orchestrator_api::schedules::{ScheduleBody, ScheduleDeleted, SchedulePatchBody};
use orchestrator_api::schedules::{ScheduleList, ScheduleReply};
pub use orchestrator_domain::{Overlap, ScheduleDraft};

use crate::{Client, ClientError};

impl Client {
    /// Creates a schedule; a name taken is `conflict` (409).
    pub async fn create_schedule(&self, draft: &ScheduleDraft) -> Result<ScheduleBody, ClientError> {
        let reply: ScheduleReply = self
            .send(reqwest::Method::POST, "/schedules", Some(draft))
            .await?;
        Ok(reply.schedule)
    }

    /// Every schedule, by name, with its next fire times.
    pub async fn schedules(&self) -> Result<Vec<ScheduleBody>, ClientError> {
        let reply: ScheduleList = self.send(reqwest::Method::GET, "/schedules", None::<&()>).await?;
        Ok(reply.schedules)
    }

    pub async fn schedule(&self, name: &str) -> Result<ScheduleBody, ClientError> {
        self.schedule_call(reqwest::Method::GET, name, "", None).await
    }

    /// Replaces the fields `patch` gives.
    pub async fn update_schedule(
        &self,
        name: &str,
        patch: &SchedulePatchBody,
    ) -> Result<ScheduleBody, ClientError> {
        self.schedule_call(reqwest::Method::PATCH, name, "", Some(patch))
            .await
    }

    /// It fires nothing until resumed.
    pub async fn pause_schedule(&self, name: &str) -> Result<ScheduleBody, ClientError> {
        self.schedule_call(reqwest::Method::POST, name, "/pause", None)
            .await
    }

    /// It fires from its next fire time on, none of those it missed.
    pub async fn resume_schedule(&self, name: &str) -> Result<ScheduleBody, ClientError> {
        self.schedule_call(reqwest::Method::POST, name, "/resume", None)
            .await
    }

    /// The tasks it made stay.
    pub async fn delete_schedule(&self, name: &str) -> Result<ScheduleDeleted, ClientError> {
        self.send(
            reqwest::Method::DELETE,
            &format!("/schedules/{name}"),
            None::<&()>,
        )
        .await
    }

    async fn schedule_call(
        &self,
        method: reqwest::Method,
        name: &str,
        action: &str,
        body: Option<&SchedulePatchBody>,
    ) -> Result<ScheduleBody, ClientError> {
        let reply: ScheduleReply = self
            .send(method, &format!("/schedules/{name}{action}"), body)
            .await?;
        Ok(reply.schedule)
    }
}
