//! The task state machine: one table says which moves exist and who may make
//! them. Spec section 8 plus the recovery moves the system makes (R7).

use std::fmt;

use crate::TaskStatus;

/// The part someone plays towards one task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// The orchestrator itself: the router, recovery and retry logic.
    System,
    /// The droplet the task is assigned to.
    AssignedDroplet,
    /// Whoever created the task.
    Creator,
    /// A caller holding the `admin` permission.
    Admin,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::System, Role::AssignedDroplet, Role::Creator, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::AssignedDroplet => "assigned droplet",
            Role::Creator => "creator",
            Role::Admin => "admin",
        }
    }
}

/// Everyone asking for a move holds zero or more roles towards the task
/// (a caller can be its creator and an admin at once).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Actor {
    roles: [bool; 4],
}

impl Actor {
    pub const SYSTEM: Actor = Actor {
        roles: [true, false, false, false],
    };

    pub fn from_roles(roles: &[Role]) -> Self {
        roles
            .iter()
            .fold(Actor::default(), |actor, role| actor.with(*role))
    }

    pub fn with(mut self, role: Role) -> Self {
        self.roles[Self::index(role)] = true;
        self
    }

    pub fn holds(self, role: Role) -> bool {
        self.roles[Self::index(role)]
    }

    fn index(role: Role) -> usize {
        match role {
            Role::System => 0,
            Role::AssignedDroplet => 1,
            Role::Creator => 2,
            Role::Admin => 3,
        }
    }
}

/// One allowed move and the roles that may make it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransitionRule {
    pub from: TaskStatus,
    pub to: TaskStatus,
    pub allowed: &'static [Role],
    pub when: &'static str,
}

use Role::{Admin, AssignedDroplet, Creator, System};
use TaskStatus::{Assigned, Cancelled, Completed, Failed, InProgress, Pending};

/// Every move a task can make. Anything not listed is refused.
///
/// An admin may do what the assigned droplet may (API.md: "PATCH a task's
/// status: the droplet it is assigned to, or admin").
pub const TRANSITIONS: &[TransitionRule] = &[
    rule(Pending, Assigned, &[System], "the router picked a droplet"),
    rule(
        Pending,
        Cancelled,
        &[Creator, Admin, System],
        "cancelled before assignment; by the system when a task it depends on ended badly",
    ),
    rule(
        Assigned,
        InProgress,
        &[AssignedDroplet, Admin],
        "the droplet started the task",
    ),
    rule(
        Assigned,
        Cancelled,
        &[Creator, Admin],
        "cancelled before it started",
    ),
    rule(
        InProgress,
        Completed,
        &[AssignedDroplet, Admin],
        "the droplet finished the task",
    ),
    rule(
        InProgress,
        Failed,
        &[AssignedDroplet, Admin, System],
        "the task failed; or its droplet died or restarted, its run timed out or its deadline passed",
    ),
    rule(
        Failed,
        Pending,
        &[System, Creator, Admin],
        "retried: by the system while the budget lasts, by its creator or an admin once it is spent",
    ),
    rule(
        Assigned,
        Pending,
        &[System],
        "the droplet went inactive, restarted or did not start in time, or was deactivated with requeue",
    ),
    rule(Pending, Failed, &[System], "the deadline passed before it ran"),
    rule(
        Assigned,
        Failed,
        &[System],
        "the deadline passed before it ran, or no droplet started it after MAX_REQUEUES requeues",
    ),
];

const fn rule(
    from: TaskStatus,
    to: TaskStatus,
    allowed: &'static [Role],
    when: &'static str,
) -> TransitionRule {
    TransitionRule {
        from,
        to,
        allowed,
        when,
    }
}

/// Why a move was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    #[error("a task cannot move from {from} to {to}")]
    NoSuchTransition { from: TaskStatus, to: TaskStatus },
    #[error("moving a task from {from} to {to} is reserved to: {}", RoleList(allowed))]
    NotAllowedFor {
        from: TaskStatus,
        to: TaskStatus,
        allowed: &'static [Role],
    },
    #[error("the task has used all its retries ({retry_count} of {max_retries})")]
    RetriesExhausted { retry_count: u32, max_retries: u32 },
    #[error(
        "the task has retries left ({retry_count} of {max_retries} used) and is retried \
         automatically; only a task whose retries are spent is retried by hand"
    )]
    RetriesLeft { retry_count: u32, max_retries: u32 },
}

struct RoleList(&'static [Role]);

impl fmt::Display for RoleList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.0.iter().map(|r| r.as_str()).collect();
        f.write_str(&names.join(", "))
    }
}

impl TaskStatus {
    /// The rule that lets `actor` move a task from `self` to `to`.
    pub fn transition(
        self,
        to: TaskStatus,
        actor: Actor,
    ) -> Result<&'static TransitionRule, TransitionError> {
        let rule = TRANSITIONS
            .iter()
            .find(|r| r.from == self && r.to == to)
            .ok_or(TransitionError::NoSuchTransition { from: self, to })?;
        if rule.allowed.iter().any(|role| actor.holds(*role)) {
            Ok(rule)
        } else {
            Err(TransitionError::NotAllowedFor {
                from: self,
                to,
                allowed: rule.allowed,
            })
        }
    }

    /// Statuses a task can never leave (a `failed` task may still be retried).
    pub fn is_terminal(self) -> bool {
        matches!(self, Completed | Cancelled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The spec's table (section 8) and API.md's recovery rows, written out
    /// independently of `TRANSITIONS` so that a change to either shows here.
    const EXPECTED: &[(TaskStatus, TaskStatus, Role)] = &[
        (Pending, Assigned, System),
        (Pending, Cancelled, Creator),
        (Pending, Cancelled, Admin),
        // A workflow's dependant whose dependency failed for good or was cancelled.
        (Pending, Cancelled, System),
        (Assigned, InProgress, AssignedDroplet),
        (Assigned, InProgress, Admin),
        (Assigned, Cancelled, Creator),
        (Assigned, Cancelled, Admin),
        (InProgress, Completed, AssignedDroplet),
        (InProgress, Completed, Admin),
        (InProgress, Failed, AssignedDroplet),
        (InProgress, Failed, Admin),
        (Failed, Pending, System),
        (Failed, Pending, Creator),
        (Failed, Pending, Admin),
        (Assigned, Pending, System),
        (InProgress, Failed, System),
        (Pending, Failed, System),
        (Assigned, Failed, System),
    ];

    #[test]
    fn every_from_to_actor_combination_matches_the_spec() {
        let mut checked = 0;
        for from in TaskStatus::ALL {
            for to in TaskStatus::ALL {
                for role in Role::ALL {
                    let expected = EXPECTED.contains(&(from, to, role));
                    let outcome = from.transition(to, Actor::from_roles(&[role]));
                    assert_eq!(outcome.is_ok(), expected, "{from} -> {to} by {}", role.as_str());
                    checked += 1;
                }
            }
        }
        assert_eq!(checked, 6 * 6 * 4);
    }

    #[test]
    fn refusals_say_whether_the_move_exists() {
        for from in TaskStatus::ALL {
            for to in TaskStatus::ALL {
                let exists = EXPECTED.iter().any(|(f, t, _)| *f == from && *t == to);
                let nobody = from.transition(to, Actor::default());
                match nobody {
                    Err(TransitionError::NotAllowedFor { .. }) => assert!(exists, "{from} -> {to}"),
                    Err(TransitionError::NoSuchTransition { .. }) => assert!(!exists, "{from} -> {to}"),
                    other => panic!("an actor with no role moved {from} -> {to}: {other:?}"),
                }
            }
        }
    }

    #[test]
    fn any_held_role_is_enough() {
        let creator_and_droplet = Actor::from_roles(&[Creator, AssignedDroplet]);
        assert!(Assigned.transition(Cancelled, creator_and_droplet).is_ok());
        assert!(Assigned.transition(InProgress, creator_and_droplet).is_ok());
        assert!(Pending.transition(Assigned, creator_and_droplet).is_err());
    }

    #[test]
    fn terminal_states_have_no_way_out() {
        for status in [Completed, Cancelled] {
            assert!(status.is_terminal());
            assert!(TRANSITIONS.iter().all(|r| r.from != status));
        }
    }

    #[test]
    fn refusal_names_who_may() {
        let err = Pending
            .transition(Cancelled, Actor::from_roles(&[AssignedDroplet]))
            .expect_err("refused");
        assert_eq!(
            err.to_string(),
            "moving a task from pending to cancelled is reserved to: creator, admin, system"
        );
    }
}
