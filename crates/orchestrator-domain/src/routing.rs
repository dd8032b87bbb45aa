//! The routing policy: which droplet gets a task, and the rule that decided.
//!
//! Eligible droplets are active, have the required capability (or none is
//! required) and hold fewer tasks than their capacity. Among them the least
//! loaded wins; ties go to the one idle longest, then to the lowest id so
//! that the choice is deterministic.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{Capability, Droplet, DropletId, DropletStatus};

/// Whether a droplet of `capacity` slots that holds `held` tasks (those in
/// a status that [occupies a slot](crate::TaskStatus::occupies_droplet))
/// has room for one more: the one definition the router and both stores'
/// slot checks use.
pub fn has_room(held: u32, capacity: u32) -> bool {
    held < capacity
}

/// A droplet as the router sees it: its state plus how many tasks it holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub droplet_id: DropletId,
    pub status: DropletStatus,
    pub capabilities: Vec<Capability>,
    pub active_tasks: u32,
    pub capacity: u32,
    /// Since when it has had no new work: its last assignment, or its registration.
    pub idle_since: DateTime<Utc>,
}

impl Candidate {
    pub fn new(droplet: &Droplet, active_tasks: u32) -> Self {
        Candidate {
            droplet_id: droplet.droplet_id,
            status: droplet.status,
            capabilities: droplet.capabilities.clone(),
            active_tasks,
            capacity: droplet.max_concurrent_tasks,
            idle_since: droplet.last_assigned_at.unwrap_or(droplet.registered_at),
        }
    }

    fn can_run(&self, required: Option<&Capability>) -> bool {
        self.status == DropletStatus::Active && required.is_none_or(|c| self.capabilities.contains(c))
    }

    /// Whether it can take one more task ([`has_room`]).
    pub fn has_room(&self) -> bool {
        has_room(self.active_tasks, self.capacity)
    }
}

/// The rule that settled a placement.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlacementRule {
    /// Only one eligible droplet.
    OnlyCandidate,
    /// It held fewer tasks than every other eligible droplet.
    LeastLoaded,
    /// Tied on load; it had been idle longest.
    LongestIdle,
    /// Tied on load and idle time; lowest droplet id.
    LowestId,
}

/// Where a task goes, or why it stays pending.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Placement {
    Assign {
        droplet_id: DropletId,
        rule: PlacementRule,
    },
    /// No active droplet has the required capability.
    NoCapableDroplet,
    /// Capable droplets exist but every one is at capacity.
    AllCapableFull,
}

/// A capable droplet as the policy weighed it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Considered {
    pub droplet_id: DropletId,
    pub active_tasks: u32,
    pub capacity: u32,
    pub idle_since: DateTime<Utc>,
    /// False when it was full.
    pub eligible: bool,
}

/// Why an assignment went where it did: the `metadata` the router writes
/// on its `pending → assigned` history entry.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlacementRecord {
    /// The droplet chosen.
    pub droplet_id: DropletId,
    /// The rule that settled it.
    pub rule: PlacementRule,
    /// The router (process) that made it.
    pub router: Uuid,
    /// Every active droplet with the capability.
    pub candidates_total: usize,
    /// The first of them, ranked as the policy ranked them (eligible first).
    pub candidates: Vec<Considered>,
}

/// A placement with what it was decided among: every active droplet with
/// the capability, in the order the policy ranks them (eligible first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    pub placement: Placement,
    pub considered: Vec<Considered>,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct RoutingPolicy;

impl RoutingPolicy {
    pub fn place(required: Option<&Capability>, candidates: &[Candidate]) -> Placement {
        Self::explain(required, candidates).placement
    }

    /// The placement and the droplets it was chosen among.
    pub fn explain(required: Option<&Capability>, candidates: &[Candidate]) -> Explanation {
        let mut capable: Vec<&Candidate> = candidates.iter().filter(|c| c.can_run(required)).collect();
        capable.sort_by_key(|c| (!c.has_room(), c.active_tasks, c.idle_since, c.droplet_id));
        let considered = capable
            .iter()
            .map(|c| Considered {
                droplet_id: c.droplet_id,
                active_tasks: c.active_tasks,
                capacity: c.capacity,
                idle_since: c.idle_since,
                eligible: c.has_room(),
            })
            .collect();
        Explanation {
            placement: Self::decide(&capable),
            considered,
        }
    }

    /// `capable` is ranked: droplets with room first, then by load, idle time and id.
    fn decide(capable: &[&Candidate]) -> Placement {
        if capable.is_empty() {
            return Placement::NoCapableDroplet;
        }
        let eligible: Vec<&Candidate> = capable.iter().copied().filter(|c| c.has_room()).collect();
        match eligible.as_slice() {
            [] => Placement::AllCapableFull,
            [only] => Placement::Assign {
                droplet_id: only.droplet_id,
                rule: PlacementRule::OnlyCandidate,
            },
            [first, second, ..] => Placement::Assign {
                droplet_id: first.droplet_id,
                rule: if first.active_tasks != second.active_tasks {
                    PlacementRule::LeastLoaded
                } else if first.idle_since != second.idle_since {
                    PlacementRule::LongestIdle
                } else {
                    PlacementRule::LowestId
                },
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn cap(name: &str) -> Capability {
        Capability::new(name).expect("valid capability")
    }

    fn candidate(id: DropletId, caps: &[&str], active: u32, capacity: u32, idle_secs: i64) -> Candidate {
        Candidate {
            droplet_id: id,
            status: DropletStatus::Active,
            capabilities: caps.iter().map(|c| cap(c)).collect(),
            active_tasks: active,
            capacity,
            idle_since: Utc
                .timestamp_opt(1_700_000_000 + idle_secs, 0)
                .single()
                .expect("time"),
        }
    }

    fn assigned(id: DropletId, rule: PlacementRule) -> Placement {
        Placement::Assign { droplet_id: id, rule }
    }

    #[test]
    fn no_droplets_means_no_capable_droplet() {
        assert_eq!(RoutingPolicy::place(None, &[]), Placement::NoCapableDroplet);
    }

    #[test]
    fn capability_must_match() {
        let all = [
            candidate(1, &["build"], 0, 5, 0),
            candidate(2, &["verify"], 3, 5, 0),
        ];
        assert_eq!(
            RoutingPolicy::place(Some(&cap("verify")), &all),
            assigned(2, PlacementRule::OnlyCandidate)
        );
        assert_eq!(
            RoutingPolicy::place(Some(&cap("deploy")), &all),
            Placement::NoCapableDroplet
        );
    }

    #[test]
    fn no_required_capability_accepts_any_active_droplet() {
        let all = [candidate(1, &[], 2, 5, 0), candidate(2, &["verify"], 1, 5, 0)];
        assert_eq!(
            RoutingPolicy::place(None, &all),
            assigned(2, PlacementRule::LeastLoaded)
        );
    }

    #[test]
    fn inactive_and_error_droplets_are_skipped() {
        let mut inactive = candidate(1, &["x"], 0, 5, 0);
        inactive.status = DropletStatus::Inactive;
        let mut error = candidate(2, &["x"], 0, 5, 0);
        error.status = DropletStatus::Error;
        assert_eq!(
            RoutingPolicy::place(Some(&cap("x")), &[inactive, error]),
            Placement::NoCapableDroplet
        );
    }

    #[test]
    fn full_droplets_are_skipped() {
        let all = [candidate(1, &["x"], 5, 5, 0), candidate(2, &["x"], 1, 1, 0)];
        assert_eq!(
            RoutingPolicy::place(Some(&cap("x")), &all),
            Placement::AllCapableFull
        );
        let with_room = [candidate(1, &["x"], 5, 5, 0), candidate(2, &["x"], 4, 9, 0)];
        assert_eq!(
            RoutingPolicy::place(Some(&cap("x")), &with_room),
            assigned(2, PlacementRule::OnlyCandidate)
        );
    }

    #[test]
    fn least_loaded_wins() {
        let all = [
            candidate(1, &["x"], 3, 10, 0),
            candidate(2, &["x"], 1, 10, 50),
            candidate(3, &["x"], 2, 10, 0),
        ];
        assert_eq!(
            RoutingPolicy::place(Some(&cap("x")), &all),
            assigned(2, PlacementRule::LeastLoaded)
        );
    }

    #[test]
    fn equal_load_goes_to_longest_idle() {
        let all = [
            candidate(1, &["x"], 1, 10, 30),
            candidate(2, &["x"], 1, 10, 10),
            candidate(3, &["x"], 1, 10, 20),
        ];
        assert_eq!(
            RoutingPolicy::place(Some(&cap("x")), &all),
            assigned(2, PlacementRule::LongestIdle)
        );
    }

    #[test]
    fn full_tie_goes_to_lowest_id() {
        let all = [candidate(7, &["x"], 0, 10, 0), candidate(4, &["x"], 0, 10, 0)];
        assert_eq!(
            RoutingPolicy::place(Some(&cap("x")), &all),
            assigned(4, PlacementRule::LowestId)
        );
    }

    #[test]
    fn an_explanation_lists_every_capable_droplet_ranked_full_ones_last() {
        let candidates = [
            candidate(1, &["x"], 2, 2, 0),
            candidate(2, &["x"], 1, 5, 10),
            candidate(3, &["y"], 0, 5, 0),
            candidate(4, &["x"], 1, 5, 5),
        ];
        let explanation = RoutingPolicy::explain(Some(&cap("x")), &candidates);
        assert_eq!(
            explanation.placement,
            Placement::Assign {
                droplet_id: 4,
                rule: PlacementRule::LongestIdle
            }
        );
        let ranked: Vec<(DropletId, bool)> = explanation
            .considered
            .iter()
            .map(|c| (c.droplet_id, c.eligible))
            .collect();
        assert_eq!(
            ranked,
            [(4, true), (2, true), (1, false)],
            "droplet 3 lacks the capability"
        );
        assert_eq!(explanation.considered[2].active_tasks, 2);
    }
}
