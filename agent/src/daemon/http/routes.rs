//! The JSON API's route table: the router is built from it and `GET /api/v1` serves it, so the
//! documentation index and the credential test (`tests/refusals.rs`) can never miss a route.

use axum::extract::State;
use axum::routing::{delete, get, post, MethodRouter};
use cortex_model::token::Scope;
use serde::Serialize;
use serde_json::json;

use super::support::{ok, HttpResult};
use super::{nodes, tasks, tokens};
use crate::api::NodeApi;

/// One route as documented: `scope` is the least token scope it needs (`None`: open read).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct RouteInfo {
    pub method: &'static str,
    pub path: &'static str,
    pub scope: Option<Scope>,
    pub summary: &'static str,
}

impl RouteInfo {
    /// Everything but GET changes the cluster.
    pub fn mutating(&self) -> bool {
        self.method != "GET"
    }
}

pub(super) struct Route {
    pub info: RouteInfo,
    pub handler: fn() -> MethodRouter<NodeApi>,
}

const fn r(
    method: &'static str,
    path: &'static str,
    scope: Option<Scope>,
    summary: &'static str,
    handler: fn() -> MethodRouter<NodeApi>,
) -> Route {
    Route {
        info: RouteInfo {
            method,
            path,
            scope,
            summary,
        },
        handler,
    }
}

const READ: Option<Scope> = Some(Scope::Read);
const OPERATE: Option<Scope> = Some(Scope::Operate);
const ADMIN: Option<Scope> = Some(Scope::Admin);

static TABLE: &[Route] = &[
    r("GET", "/api/v1", None, "this table", || get(index)),
    r(
        "GET",
        "/api/v1/cluster",
        None,
        "cluster status (leader, term, indexes, nodes by state)",
        || get(nodes::cluster),
    ),
    r(
        "GET",
        "/api/v1/whoami",
        READ,
        "the bearer token's id and scope",
        || get(nodes::whoami),
    ),
    r(
        "GET",
        "/api/v1/nodes",
        None,
        "nodes; filters state, role, label=key=value",
        || get(nodes::list),
    ),
    r(
        "GET",
        "/api/v1/nodes/{key}",
        None,
        "one node by id or name",
        || get(nodes::get),
    ),
    r(
        "DELETE",
        "/api/v1/nodes/{key}",
        ADMIN,
        "remove a node (Raft membership, then state)",
        || delete(nodes::remove),
    ),
    r(
        "POST",
        "/api/v1/nodes/{key}/approve",
        OPERATE,
        "approve a pending node",
        || post(nodes::approve),
    ),
    r(
        "POST",
        "/api/v1/nodes/{key}/reject",
        OPERATE,
        "reject a pending node; body {reason}",
        || post(nodes::reject),
    ),
    r(
        "POST",
        "/api/v1/nodes/{key}/drain",
        OPERATE,
        "drain a node: no new work",
        || post(nodes::drain),
    ),
    r(
        "POST",
        "/api/v1/nodes/{key}/undrain",
        OPERATE,
        "end a drain: the node takes new work again",
        || post(nodes::undrain),
    ),
    r(
        "POST",
        "/api/v1/nodes/{key}/bench",
        OPERATE,
        "ask a node to run its self-benchmark again; body {quick}",
        || post(nodes::bench),
    ),
    r(
        "POST",
        "/api/v1/nodes/{key}/net-bench",
        OPERATE,
        "TCP throughput between this coordinator (it measures) and the node; body {seconds}",
        || post(nodes::net_bench),
    ),
    r(
        "POST",
        "/api/v1/nodes/{key}/labels",
        OPERATE,
        "set/remove labels; body {set, remove}",
        || post(nodes::labels),
    ),
    r(
        "GET",
        "/api/v1/images",
        None,
        "container images each node published",
        || get(nodes::images),
    ),
    r(
        "GET",
        "/api/v1/events",
        None,
        "the event timeline; after, limit",
        || get(nodes::events),
    ),
    r(
        "GET",
        "/api/v1/tokens",
        ADMIN,
        "API and join tokens (never their secrets)",
        || get(tokens::list),
    ),
    r(
        "POST",
        "/api/v1/tokens",
        OPERATE,
        "create a token (join: operate, api: admin)",
        || post(tokens::create),
    ),
    r("DELETE", "/api/v1/tokens/{id}", ADMIN, "revoke a token", || {
        delete(tokens::revoke)
    }),
    r(
        "GET",
        "/api/v1/tasks",
        None,
        "tasks, newest first; state, dead, group, workflow, node, limit, before",
        || get(tasks::list),
    ),
    r(
        "POST",
        "/api/v1/tasks",
        OPERATE,
        "submit tasks (one, several, fan-out)",
        || post(tasks::submit),
    ),
    r(
        "POST",
        "/api/v1/tasks/cancel",
        OPERATE,
        "cancel tasks; body {ids, reason}",
        || post(tasks::cancel_many),
    ),
    r("GET", "/api/v1/tasks/{id}", None, "one task", || get(tasks::get)),
    r(
        "GET",
        "/api/v1/tasks/{id}/logs",
        None,
        "a task's log from offset; max_bytes, wait_ms (follow)",
        || get(tasks::logs),
    ),
    r(
        "POST",
        "/api/v1/tasks/{id}/cancel",
        OPERATE,
        "cancel one task; body {reason}",
        || post(tasks::cancel),
    ),
    r(
        "GET",
        "/api/v1/dead-letters",
        None,
        "tasks that failed after their last retry",
        || get(tasks::dead),
    ),
    r(
        "GET",
        "/api/v1/groups/{id}",
        None,
        "a fan-out group's aggregate status",
        || get(tasks::group),
    ),
    r("GET", "/api/v1/workflows", None, "workflows", || {
        get(tasks::workflows)
    }),
    r(
        "POST",
        "/api/v1/workflows",
        OPERATE,
        "submit a workflow; body {name, tasks}",
        || post(tasks::submit_workflow),
    ),
    r(
        "GET",
        "/api/v1/workflows/{key}",
        None,
        "a workflow with its tasks",
        || get(tasks::workflow),
    ),
];

pub(super) fn table() -> &'static [Route] {
    TABLE
}

/// The documented routes, in table order.
pub fn routes() -> impl Iterator<Item = &'static RouteInfo> {
    TABLE.iter().map(|r| &r.info)
}

async fn index(State(_api): State<NodeApi>) -> HttpResult {
    let routes: Vec<_> = routes()
        .map(|r| {
            json!({
                "method": r.method,
                "path": r.path,
                "scope": r.scope.map(Scope::as_str),
                "mutating": r.mutating(),
                "summary": r.summary,
            })
        })
        .collect();
    ok(&json!({ "version": "v1", "routes": routes }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_mutating_route_needs_a_scope_above_read() {
        for r in routes() {
            if r.mutating() {
                assert!(
                    r.scope.is_some_and(|s| s > Scope::Read),
                    "{} {} mutates without operate/admin",
                    r.method,
                    r.path
                );
            }
        }
    }

    #[test]
    fn paths_are_versioned_and_unique() {
        let mut seen = std::collections::BTreeSet::new();
        for r in routes() {
            assert!(r.path.starts_with("/api/v1"), "{}", r.path);
            assert!(seen.insert((r.method, r.path)), "{} {} twice", r.method, r.path);
        }
    }
}
