//! Permissions and callers: `admin` implies `write`, `write` implies `read`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{DropletId, ValidationError};

/// What a token lets its holder do. Ordered: `Read < Write < Admin`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Permission {
    Read,
    Write,
    Admin,
}

impl Permission {
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::Read => "read",
            Permission::Write => "write",
            Permission::Admin => "admin",
        }
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Permission {
    type Err = ValidationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "read" => Ok(Permission::Read),
            "write" => Ok(Permission::Write),
            "admin" => Ok(Permission::Admin),
            other => Err(ValidationError::new(
                "permissions",
                format!("unknown permission '{other}'; expected read, write or admin"),
            )),
        }
    }
}

/// The permissions a caller was granted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Permissions(Vec<Permission>);

impl Permissions {
    pub fn new(granted: impl IntoIterator<Item = Permission>) -> Self {
        let mut granted: Vec<Permission> = granted.into_iter().collect();
        granted.sort();
        granted.dedup();
        Permissions(granted)
    }

    /// True when a granted permission is `required` or implies it.
    pub fn allows(&self, required: Permission) -> bool {
        self.0.iter().any(|granted| *granted >= required)
    }

    /// True when every permission of `other` is allowed by these.
    pub fn covers(&self, other: &Permissions) -> bool {
        other.0.iter().all(|p| self.allows(*p))
    }

    pub fn iter(&self) -> impl Iterator<Item = Permission> + '_ {
        self.0.iter().copied()
    }
}

/// Who is making a request, as established by their token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub subject: String,
    pub permissions: Permissions,
    /// Set when the caller is a droplet acting for itself.
    pub droplet_id: Option<DropletId>,
}

impl Caller {
    pub fn can(&self, permission: Permission) -> bool {
        self.permissions.allows(permission)
    }

    pub fn is_admin(&self) -> bool {
        self.can(Permission::Admin)
    }

    /// True when the caller is droplet `id` itself.
    pub fn is_droplet(&self, id: DropletId) -> bool {
        self.droplet_id == Some(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Permission::*;

    #[test]
    fn each_level_implies_those_below() {
        let expected = [
            (Read, [true, false, false]),
            (Write, [true, true, false]),
            (Admin, [true, true, true]),
        ];
        for (granted, allows) in expected {
            let set = Permissions::new([granted]);
            assert_eq!(
                [set.allows(Read), set.allows(Write), set.allows(Admin)],
                allows,
                "{granted}"
            );
        }
        assert!(!Permissions::default().allows(Read));
    }

    #[test]
    fn covers_compares_whole_sets() {
        let write = Permissions::new([Write]);
        assert!(write.covers(&Permissions::new([Read, Write])));
        assert!(!write.covers(&Permissions::new([Admin])));
    }

    #[test]
    fn parses_and_dedupes() {
        assert_eq!(" admin".parse::<Permission>(), Ok(Admin));
        assert!("root".parse::<Permission>().is_err());
        assert_eq!(Permissions::new([Write, Read, Write]).iter().count(), 2);
    }
}
