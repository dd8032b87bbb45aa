//! `/workflows`: tasks submitted together, some waiting for others.
//! Reading needs `read`; submitting and cancelling `write` (cancelling,
//! the workflow's creator or an admin).

pub use orchestrator_api::workflows::{
    WorkflowBody, WorkflowCreated, WorkflowSubmission, WorkflowTaskBody, WorkflowTaskId, WorkflowTaskState,
};
use orchestrator_api::workflows::{WorkflowList, WorkflowReply};
pub use orchestrator_domain::{DependencyFailure, WorkflowId, WorkflowState};

use crate::{Client, ClientError};

impl Client {
    /// Submits a workflow in one commit; a cycle, an unknown key or more
    /// than 100 tasks is `validation_failed` (422) naming the task.
    pub async fn create_workflow(
        &self,
        workflow: &WorkflowSubmission,
    ) -> Result<WorkflowCreated, ClientError> {
        self.send(reqwest::Method::POST, "/workflows", Some(workflow))
            .await
    }

    /// The newest `limit` workflows (1 to 100), newest first.
    pub async fn workflows(&self, limit: u32) -> Result<Vec<WorkflowBody>, ClientError> {
        let reply: WorkflowList = self
            .send(
                reqwest::Method::GET,
                &format!("/workflows?limit={limit}"),
                None::<&()>,
            )
            .await?;
        Ok(reply.workflows)
    }

    /// One workflow with each task's state, in dependency order.
    pub async fn workflow(&self, id: WorkflowId) -> Result<WorkflowBody, ClientError> {
        let reply: WorkflowReply = self
            .send(reqwest::Method::GET, &format!("/workflows/{id}"), None::<&()>)
            .await?;
        Ok(reply.workflow)
    }

    /// Cancels what has not finished; running tasks are asked to stop.
    pub async fn cancel_workflow(&self, id: WorkflowId) -> Result<WorkflowBody, ClientError> {
        let reply: WorkflowReply = self
            .send(
                reqwest::Method::POST,
                &format!("/workflows/{id}/cancel"),
                None::<&()>,
            )
            .await?;
        Ok(reply.workflow)
    }
}
