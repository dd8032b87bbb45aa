//! Who may do what (API.md, "Who may do what").

use orchestrator_domain::{Caller, DropletId, Permission};

use crate::{AppError, AppResult};

pub(crate) fn require(caller: &Caller, permission: Permission) -> AppResult<()> {
    if caller.can(permission) {
        Ok(())
    } else {
        Err(AppError::Forbidden(format!(
            "this action needs the '{permission}' permission"
        )))
    }
}

/// A droplet acts for itself with `write`; an admin may act for any droplet.
pub(crate) fn require_droplet_or_admin(caller: &Caller, droplet: DropletId) -> AppResult<()> {
    if caller.is_admin() || (caller.is_droplet(droplet) && caller.can(Permission::Write)) {
        Ok(())
    } else {
        Err(AppError::Forbidden(format!(
            "only droplet {droplet} itself (with 'write') or an admin may do this"
        )))
    }
}
