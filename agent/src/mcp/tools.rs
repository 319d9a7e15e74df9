//! The tool table (name, scope, hints, description, input schema) and the dispatch of a call:
//! scope check, argument check, parse, run, and the result as compact JSON text.

use std::sync::{Arc, OnceLock};

use cortex_model::token::Scope;
use rmcp::model::{CallToolResult, ContentBlock, JsonObject, Tool, ToolAnnotations};
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::args::*;
use super::backend::Backend;
use super::error::{ToolError, ToolResult};
use super::wait::Progress;
use super::{node_tools, schema, task_tools};
use crate::api::Caller;

/// One call: where it goes, who makes it, and how to report back.
pub struct Call<'a> {
    pub backend: &'a Backend,
    /// `None` only on the stdio bridge before the coordinator said who the token is; the
    /// coordinator still checks every write.
    pub caller: Option<&'a Caller>,
    pub progress: Option<Progress>,
    pub cancelled: CancellationToken,
}

impl Call<'_> {
    /// Parses the arguments into `T`; an error names the path of the bad value.
    pub fn parse<T: DeserializeOwned>(args: JsonObject) -> ToolResult<T> {
        serde_path_to_error::deserialize(Value::Object(args)).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            if path.is_empty() || path == "." {
                ToolError::invalid(format!("invalid arguments: {inner}"))
            } else {
                ToolError::invalid(format!("invalid argument `{path}`: {inner}"))
            }
        })
    }
}

struct Def {
    name: &'static str,
    title: &'static str,
    scope: Scope,
    /// Changes nothing (read tools).
    read_only: bool,
    /// Takes something away (drain, cancel, reject).
    destructive: bool,
    idempotent: bool,
    description: &'static str,
    schema: fn() -> Arc<JsonObject>,
}

const fn read(
    name: &'static str,
    title: &'static str,
    description: &'static str,
    schema: fn() -> Arc<JsonObject>,
) -> Def {
    Def {
        name,
        title,
        scope: Scope::Read,
        read_only: true,
        destructive: false,
        idempotent: true,
        description,
        schema,
    }
}

const fn write(
    name: &'static str,
    title: &'static str,
    destructive: bool,
    idempotent: bool,
    description: &'static str,
    schema: fn() -> Arc<JsonObject>,
) -> Def {
    Def {
        name,
        title,
        scope: Scope::Operate,
        read_only: false,
        destructive,
        idempotent,
        description,
        schema,
    }
}

const DEFS: [Def; 19] = [
    read(
        "cluster_status",
        "Cluster status",
        "The cluster at a glance: Raft leader, term and commit index, the answering coordinator's role, node counts by state, version. Start here.",
        schema::input::<NoArgs>,
    ),
    read(
        "list_nodes",
        "List nodes",
        "Nodes with state, role, CPUs, memory, GPUs, measured f64 GFLOP/s and labels, one line each, by id. Filter by state, role or labels; paged with limit/offset.",
        schema::input::<ListNodesArgs>,
    ),
    read(
        "get_node",
        "Show a node",
        "One node in full: inventory (CPU, memory, disks, NICs, GPUs), benchmark figures, labels, container images, join details.",
        schema::input::<NodeArgs>,
    ),
    read(
        "list_pending_nodes",
        "List pending nodes",
        "Machines asking to join, waiting for a person's approval, with the verification code each shows on its console. Before approve_node, ask the user to confirm that code.",
        schema::input::<NoArgs>,
    ),
    write(
        "approve_node",
        "Approve a node",
        false,
        false,
        "Approve a pending node: its certificate is signed and it becomes ready for work. Ask the user first. Needs scope operate.",
        schema::input::<NodeArgs>,
    ),
    write(
        "reject_node",
        "Reject a node",
        true,
        false,
        "Reject a pending node; it is told why and stops asking. Ask the user first. Needs scope operate.",
        schema::input::<RejectArgs>,
    ),
    write(
        "drain_node",
        "Drain a node",
        true,
        true,
        "Drain a node: it stays in the cluster but gets no new tasks (until undrain_node), also after it goes down and comes back. Ask the user first. Needs scope operate.",
        schema::input::<NodeArgs>,
    ),
    write(
        "undrain_node",
        "Undrain a node",
        false,
        true,
        "End a drain: the node takes new tasks again (READY if it is alive). Needs scope operate.",
        schema::input::<NodeArgs>,
    ),
    write(
        "run_benchmark",
        "Benchmark a node again",
        false,
        false,
        "Ask a node to run its self-benchmark again (full run by default, about 20 s; quick: 5 s) and record the figures on its node record, which placement (min_gflops, min_mem_bw, fastest) uses. Tasks running there slow the measurement. Returns at once with the request, or with wait_seconds the recorded figures and when they were measured. Needs scope operate.",
        schema::input::<RunBenchmarkArgs>,
    ),
    write(
        "run_network_benchmark",
        "Measure network throughput to a node",
        false,
        false,
        "Measure TCP throughput between the coordinator serving this call and a node, both ways (one plain-TCP stream each way, no TLS; counted by the receiver every 500 ms after a 0.5 s warm-up). The coordinator is the measuring end (measured_by): `send` is coordinator → node, `receive` node → coordinator, in Mbit/s with median, min, max and CV. The node records the result on its record (get_node: net_bench). One run per node at a time; ready, suspect or draining nodes only. Returns at once, or with wait_seconds the figures. Needs scope operate.",
        schema::input::<RunNetBenchmarkArgs>,
    ),
    write(
        "submit_task",
        "Run a task",
        false,
        false,
        "Run one command on the cluster: a plain process, an nspawn or a Podman container, with resources, placement constraints, timeout, retries and dependencies. Returns the task id at once; with wait_seconds it waits for the end (reporting progress) and returns the exit code and the end of the output. Needs scope operate.",
        schema::input::<SubmitTaskArgs>,
    ),
    write(
        "run_on_all_nodes",
        "Run on every node",
        false,
        false,
        "Run the same command once on every ready node (or on `count` distinct nodes), e.g. to check or set up each machine. Returns the group id and task ids; with wait_seconds, each copy's node, exit code and end of output. Needs scope operate.",
        schema::input::<RunOnAllArgs>,
    ),
    read(
        "get_task",
        "Show a task",
        "One task in full: spec, state, attempts (node, times, result), exit code, error. For its output use task_logs.",
        schema::input::<TaskIdArgs>,
    ),
    read(
        "list_tasks",
        "List tasks",
        "Recent tasks, newest first, one line each (id, state, command, node, exit code). Filter by states, node, workflow, group or dead-lettered; next page with before = next_before.",
        schema::input::<ListTasksArgs>,
    ),
    read(
        "task_logs",
        "Read a task's output",
        "A task's output: stdout and stderr interleaved in arrival order; Cortex's own notes start with [cortex]. Page with offset = next_offset, or read the end with tail. eof is true once the task has ended and all of it was read.",
        schema::input::<TaskLogsArgs>,
    ),
    write(
        "cancel_task",
        "Cancel a task",
        true,
        true,
        "Cancel a task (its whole process tree is killed) and every task that depends on it. Needs scope operate.",
        schema::input::<CancelArgs>,
    ),
    write(
        "submit_workflow",
        "Run a workflow",
        false,
        false,
        "Submit several named tasks at once (all or none) as a DAG: depends_on names other tasks of the workflow; a failed task cancels its dependents. With wait_seconds, waits for the whole workflow. Needs scope operate.",
        schema::input::<WorkflowArgs>,
    ),
    read(
        "get_workflow",
        "Show a workflow",
        "A workflow's aggregate status and each task's state, by workflow id or name.",
        schema::input::<WorkflowKeyArgs>,
    ),
    read(
        "list_events",
        "Cluster events",
        "The cluster's event timeline, oldest first: joins, approvals, node state changes, drains. The most recent `limit` by default; follow with after_seq = last_seq.",
        schema::input::<ListEventsArgs>,
    ),
];

fn tool(d: &Def) -> Tool {
    Tool::new(d.name, d.description, (d.schema)())
        .with_title(d.title)
        .with_annotations(
            ToolAnnotations::with_title(d.title)
                .read_only(d.read_only)
                .destructive(d.destructive)
                .idempotent(d.idempotent)
                .open_world(false),
        )
}

fn all() -> &'static [Tool] {
    static TOOLS: OnceLock<Vec<Tool>> = OnceLock::new();
    TOOLS.get_or_init(|| DEFS.iter().map(tool).collect())
}

/// The tools a caller with `scope` may call (`None`: not known yet, so all of them).
pub fn list(scope: Option<Scope>) -> Vec<Tool> {
    DEFS.iter()
        .zip(all())
        .filter(|(d, _)| scope.is_none_or(|s| s.allows(d.scope)))
        .map(|(_, t)| t.clone())
        .collect()
}

pub fn get(name: &str) -> Option<Tool> {
    all().iter().find(|t| t.name == name).cloned()
}

fn ok(v: Value) -> CallToolResult {
    CallToolResult::success(vec![ContentBlock::text(v.to_string())])
}

fn failed(e: &ToolError) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(e.text())])
}

/// Runs tool `name`. `None` when there is no such tool (a protocol error for the caller).
pub async fn call(c: &Call<'_>, name: &str, args: Option<JsonObject>) -> Option<CallToolResult> {
    let (def, tool) = DEFS.iter().zip(all()).find(|(d, _)| d.name == name)?;
    if let Some(caller) = c.caller {
        if !caller.scope.allows(def.scope) {
            let e = ToolError::new(
                super::error::Kind::PermissionDenied,
                format!(
                    "{name} needs a token with scope {} (or higher); this one ({}) has scope {}",
                    def.scope.as_str(),
                    caller.token_id,
                    caller.scope.as_str()
                ),
            );
            return Some(failed(&e));
        }
    }
    let args = args.unwrap_or_default();
    if let Err(m) = schema::check(&args, &tool.input_schema) {
        return Some(failed(&ToolError::invalid(m)));
    }
    Some(match run(c, name, args).await {
        Ok(v) => ok(v),
        Err(e) => failed(&e),
    })
}

async fn run(c: &Call<'_>, name: &str, args: JsonObject) -> ToolResult<Value> {
    match name {
        "cluster_status" => node_tools::cluster_status(c).await,
        "list_nodes" => node_tools::list_nodes(c, Call::parse(args)?).await,
        "get_node" => node_tools::get_node(c, Call::parse(args)?).await,
        "list_pending_nodes" => node_tools::list_pending(c).await,
        "approve_node" => node_tools::approve(c, Call::parse(args)?).await,
        "reject_node" => node_tools::reject(c, Call::parse(args)?).await,
        "drain_node" => node_tools::drain(c, Call::parse(args)?).await,
        "undrain_node" => node_tools::undrain(c, Call::parse(args)?).await,
        "run_benchmark" => node_tools::run_benchmark(c, Call::parse(args)?).await,
        "run_network_benchmark" => node_tools::run_net_benchmark(c, Call::parse(args)?).await,
        "list_events" => node_tools::list_events(c, Call::parse(args)?).await,
        "submit_task" => task_tools::submit(c, Call::parse(args)?).await,
        "run_on_all_nodes" => task_tools::run_on_all(c, Call::parse(args)?).await,
        "submit_workflow" => task_tools::submit_workflow(c, Call::parse(args)?).await,
        "get_task" => task_tools::get(c, Call::parse(args)?).await,
        "list_tasks" => task_tools::list(c, Call::parse(args)?).await,
        "task_logs" => task_tools::logs(c, Call::parse(args)?).await,
        "cancel_task" => task_tools::cancel(c, Call::parse(args)?).await,
        "get_workflow" => task_tools::workflow(c, Call::parse(args)?).await,
        _ => Err(ToolError::new(
            super::error::Kind::Internal,
            format!("tool {name} has no handler"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_tool_has_an_object_schema_and_a_read_token_sees_only_reads() {
        for t in list(None) {
            assert_eq!(
                t.input_schema.get("type"),
                Some(&Value::from("object")),
                "{}",
                t.name
            );
            assert!(
                t.description.as_deref().is_some_and(|d| d.len() > 40),
                "{}",
                t.name
            );
        }
        let reads: Vec<String> = list(Some(Scope::Read))
            .iter()
            .map(|t| t.name.to_string())
            .collect();
        assert!(reads.contains(&"task_logs".to_string()));
        assert!(
            !reads.iter().any(|n| n == "submit_task" || n == "cancel_task"),
            "{reads:?}"
        );
        assert_eq!(list(Some(Scope::Operate)).len(), DEFS.len());
    }
}
