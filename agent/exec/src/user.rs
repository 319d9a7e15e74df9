//! Which user an attempt's process runs as.
//!
//! An `exec` attempt runs as the spec's `user`, else the node's default (`nobody` unless
//! configured), never as root unless the node allows it: a task is somebody else's code on
//! this machine, and the agent itself runs as root. The ids are looked up here, in the agent
//! (NSS may allocate, lock and read files), and the child only makes the system calls.
//! A node whose agent is not root cannot switch users: it runs attempts as itself and refuses
//! a spec that names someone else.

use crate::ExecError;

/// The node's rules for attempt users (`[tasks]` of its configuration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserPolicy {
    /// The user of an exec attempt whose spec names none; `None` = the agent's own user.
    pub default_user: Option<String>,
    /// Whether a spec may ask for root (uid 0).
    pub allow_root: bool,
}

impl Default for UserPolicy {
    fn default() -> Self {
        UserPolicy {
            default_user: Some("nobody".into()),
            allow_root: false,
        }
    }
}

/// The credentials an attempt switches to before exec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ids {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups (the user's groups from the group database, primary included).
    pub groups: Vec<u32>,
}

fn invalid(message: String) -> ExecError {
    ExecError::InvalidSpec {
        field: "user",
        message,
    }
}

/// The user an exec attempt runs as: `None` = unchanged (the agent's own user).
pub(crate) fn resolve(requested: Option<&str>, policy: &UserPolicy) -> Result<Option<Ids>, ExecError> {
    let Some(wanted) = requested.or(policy.default_user.as_deref()) else {
        return Ok(None);
    };
    let ids = lookup(wanted)?;
    if ids.uid == 0 && !policy.allow_root {
        return Err(invalid(format!(
            "this node does not run tasks as root (set tasks.allow_root = true in its configuration to allow it); ask for another user or none (default {})",
            policy.default_user.as_deref().unwrap_or("the agent's own user")
        )));
    }
    let own = nix::unistd::geteuid().as_raw();
    if ids.uid == own {
        return Ok(None);
    }
    if own != 0 {
        if requested.is_none() {
            // The default cannot apply: the agent has no right to switch users.
            return Ok(None);
        }
        return Err(ExecError::Unavailable(format!(
            "running a task as {wanted} needs the agent to run as root (it runs as uid {own})"
        )));
    }
    Ok(Some(ids))
}

/// Looks up a user by name or numeric uid in the node's user database.
fn lookup(wanted: &str) -> Result<Ids, ExecError> {
    use nix::unistd::{Uid, User};
    let numeric = wanted.parse::<u32>().ok();
    let found = match numeric {
        Some(uid) => User::from_uid(Uid::from_raw(uid)),
        None => User::from_name(wanted),
    }
    .map_err(|e| ExecError::Io {
        context: format!("looking up user {wanted}"),
        source: std::io::Error::from(e),
    })?;
    let user = match (found, numeric) {
        (Some(u), _) => u,
        // A uid without an entry is still a uid (e.g. one picked for the task): its own group.
        (None, Some(uid)) => {
            return Ok(Ids {
                name: wanted.to_string(),
                uid,
                gid: uid,
                groups: vec![uid],
            })
        }
        (None, None) => return Err(invalid(format!("there is no user {wanted} on this node"))),
    };
    let name = std::ffi::CString::new(user.name.as_bytes())
        .map_err(|_| invalid(format!("user {wanted} has an invalid name")))?;
    let groups = nix::unistd::getgrouplist(&name, user.gid)
        .map(|gs| gs.into_iter().map(|g| g.as_raw()).collect())
        .unwrap_or_else(|_| vec![user.gid.as_raw()]);
    Ok(Ids {
        name: user.name,
        uid: user.uid.as_raw(),
        gid: user.gid.as_raw(),
        groups,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root_agent() -> bool {
        nix::unistd::geteuid().is_root()
    }

    #[test]
    fn nobody_by_default_root_only_when_allowed() {
        let policy = UserPolicy::default();
        let ids = resolve(None, &policy).expect("nobody exists");
        if root_agent() {
            let ids = ids.expect("a switch");
            assert_eq!(ids.name, "nobody");
            assert_ne!(ids.uid, 0);
            assert!(ids.groups.contains(&ids.gid), "{ids:?}");
        }
        for root in ["root", "0"] {
            let e = resolve(Some(root), &policy).expect_err("root refused");
            assert!(
                matches!(&e, ExecError::InvalidSpec { field: "user", message } if message.contains("tasks.allow_root")),
                "{e}"
            );
        }
        let open = UserPolicy {
            allow_root: true,
            ..UserPolicy::default()
        };
        if root_agent() {
            // The agent is root already: nothing to switch.
            assert_eq!(resolve(Some("root"), &open).expect("allowed"), None);
        }
    }

    #[test]
    fn unknown_users_are_named_and_bare_uids_are_accepted() {
        let policy = UserPolicy::default();
        let e = resolve(Some("no-such-user-xyz"), &policy).expect_err("unknown");
        assert!(e.to_string().contains("no-such-user-xyz"), "{e}");
        if root_agent() {
            let ids = resolve(Some("4000123"), &policy)
                .expect("a bare uid")
                .expect("switch");
            assert_eq!((ids.uid, ids.gid), (4000123, 4000123));
        }
        let none = UserPolicy {
            default_user: None,
            allow_root: false,
        };
        assert_eq!(resolve(None, &none).expect("own user"), None);
    }
}
