//! `cortex run`: submit a task (or one per node), stream its output, exit with its code.
//! Ctrl-C cancels what was submitted.

use std::io::Write;
use std::process::ExitCode;

use cortex_model::task::{LogStream, TaskRecord, TaskState};
use cortex_proto::v1 as pb;

use super::output::{self, Output};
use super::spec_args::SpecArgs;
use crate::api::tasks::{Fanout, LogSlice, SubmitInput, Submitted};
use crate::client::{Client, ClientArgs};

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub spec: SpecArgs,
    /// One task on every ready node; output lines are prefixed with the node's name.
    #[arg(long, conflicts_with_all = ["nodes", "node"])]
    pub all: bool,
    /// One task on each of N distinct nodes.
    #[arg(long, value_name = "N")]
    pub nodes: Option<u32>,
    /// Print the task id(s) and return at once.
    #[arg(short = 'd', long)]
    pub detach: bool,
    #[command(flatten)]
    pub client: ClientArgs,
    /// The command and its arguments (after `--`).
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

pub async fn run(args: RunArgs, out: Output) -> anyhow::Result<ExitCode> {
    let spec = args.spec.to_spec(args.command.clone())?;
    let fanout = match (args.all, args.nodes) {
        (true, _) => Fanout::All,
        (false, Some(n)) => Fanout::Nodes(n),
        _ => Fanout::None,
    };
    let input = SubmitInput {
        tasks: vec![spec],
        workflow: None,
        fanout,
    };
    let mut client = Client::connect(&args.client).await?;
    let submitted = submit(&mut client, &input).await?;
    if args.detach {
        if out == Output::Json {
            output::print_json(&submitted)?;
        } else {
            for id in &submitted.task_ids {
                println!("{id}");
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let prefix = fanout != Fanout::None;
    let names = std::sync::Arc::new(if prefix {
        node_names(&mut client).await
    } else {
        Default::default()
    });
    let mut watchers = tokio::task::JoinSet::new();
    for id in submitted.task_ids.clone() {
        let c = Client::connect(&args.client).await?;
        let p = prefix.then(|| names.clone());
        watchers.spawn(follow(c, id, p, out == Output::Table));
    }
    let mut finished: Vec<TaskRecord> = Vec::new();
    loop {
        tokio::select! {
            r = watchers.join_next() => match r {
                Some(Ok(Ok(t))) => finished.push(t),
                Some(Ok(Err(e))) => return Err(e),
                Some(Err(e)) => anyhow::bail!("a watcher failed: {e}"),
                None => break,
            },
            _ = tokio::signal::ctrl_c() => {
                eprintln!("cortex: interrupted; cancelling {}", submitted.task_ids.join(", "));
                let _ = cancel(&mut client, &submitted.task_ids).await;
                return Ok(ExitCode::from(130));
            }
        }
    }
    finished.sort_by(|a, b| a.id.cmp(&b.id));
    if out == Output::Json {
        output::print_json(&serde_json::json!({
            "group": submitted.group,
            "tasks": finished,
        }))?;
    } else if prefix {
        let rows: Vec<Vec<String>> = finished
            .iter()
            .map(|t| {
                vec![
                    t.id.clone(),
                    t.attempts
                        .last()
                        .map(|a| {
                            names
                                .get(&a.node_id)
                                .cloned()
                                .unwrap_or_else(|| a.node_id.to_string())
                        })
                        .unwrap_or_default(),
                    t.state.as_str().into(),
                    output::opt(t.exit_code),
                ]
            })
            .collect();
        let ok = finished
            .iter()
            .filter(|t| t.state == TaskState::Succeeded)
            .count();
        eprint!("{}", output::table(&["task", "node", "state", "exit"], &rows));
        eprintln!(
            "{ok}/{} succeeded (group {})",
            finished.len(),
            submitted.group.clone().unwrap_or_default()
        );
    } else if let Some(t) = finished.first() {
        if t.state != TaskState::Succeeded {
            if let Some(e) = &t.error {
                eprintln!("cortex: task {} {}: {e}", t.id, t.state.as_str());
            }
        }
    }
    Ok(ExitCode::from(exit_code(&finished)))
}

async fn submit(client: &mut Client, input: &SubmitInput) -> anyhow::Result<Submitted> {
    let req = client.request(pb::JsonRequest {
        input_json: serde_json::to_string(input)?,
    });
    let resp = client.grpc.submit_tasks(req).await.map_err(|e| client.error(e))?;
    Ok(serde_json::from_str(&resp.into_inner().json)?)
}

pub async fn cancel(client: &mut Client, ids: &[String]) -> anyhow::Result<Vec<String>> {
    let req = client.request(pb::JsonRequest {
        input_json: serde_json::json!({ "ids": ids, "reason": "interrupted by the user (Ctrl-C)" })
            .to_string(),
    });
    let resp = client.grpc.cancel_tasks(req).await.map_err(|e| client.error(e))?;
    Ok(serde_json::from_str(&resp.into_inner().json)?)
}

async fn node_names(client: &mut Client) -> std::collections::BTreeMap<u64, String> {
    let req = client.request(pb::ListNodesRequest {});
    match client.grpc.list_nodes(req).await {
        Ok(r) => r.into_inner().nodes.into_iter().map(|n| (n.id, n.name)).collect(),
        Err(_) => Default::default(),
    }
}

/// The shell convention for the whole run: 0 if every task succeeded, else the first failed
/// task's exit code (1 if it has none), 130 if cancelled.
pub fn exit_code(tasks: &[TaskRecord]) -> u8 {
    for t in tasks {
        match t.state {
            TaskState::Succeeded => {}
            TaskState::Cancelled => return 130,
            _ => {
                return match t.exit_code {
                    Some(c) if (1..=255).contains(&c) => c as u8,
                    _ => 1,
                }
            }
        }
    }
    0
}

/// Streams one task's output until it finishes; returns its final record.
pub async fn follow(
    mut client: Client,
    id: String,
    prefix: Option<std::sync::Arc<std::collections::BTreeMap<u64, String>>>,
    print: bool,
) -> anyhow::Result<TaskRecord> {
    let mut offset = 0u64;
    let mut task: Option<TaskRecord> = None;
    let mut node_prefix = String::new();
    loop {
        let req = client.request(pb::TaskLogsRequest {
            id: id.clone(),
            offset,
            max_bytes: 0,
            follow: true,
        });
        let mut stream = match client.grpc.watch_task(req).await {
            Ok(s) => s.into_inner(),
            Err(e) => return Err(client.error(e)),
        };
        loop {
            match stream.message().await {
                Ok(Some(u)) => {
                    if !u.task_json.is_empty() {
                        let t: TaskRecord = serde_json::from_str(&u.task_json)?;
                        if let (Some(names), Some(a)) = (&prefix, t.attempts.last()) {
                            let name = names
                                .get(&a.node_id)
                                .cloned()
                                .unwrap_or_else(|| a.node_id.to_string());
                            node_prefix = format!("[{name}] ");
                        }
                        task = Some(t);
                    }
                    if !u.log_json.is_empty() {
                        let slice: LogSlice = serde_json::from_str(&u.log_json)?;
                        if print {
                            print_slice(&slice, prefix.is_some().then_some(node_prefix.as_str()));
                        }
                        offset = slice.next_offset;
                    }
                }
                Ok(None) => break,
                Err(s) => {
                    tracing::debug!("watch of {id} interrupted: {}", s.message());
                    break;
                }
            }
        }
        if let Some(t) = &task {
            if t.state.is_terminal() {
                return Ok(t.clone());
            }
        }
        // The stream ended early (coordinator restart, leader change): pick up where we were.
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// Prints a log slice: stdout to stdout, stderr and Cortex's notes to stderr.
pub fn print_logs(slice: &LogSlice) {
    print_slice(slice, None)
}

fn print_slice(slice: &LogSlice, prefix: Option<&str>) {
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    for c in &slice.chunks {
        let text: std::borrow::Cow<[u8]> = match prefix {
            Some(p) => {
                let mut v = Vec::new();
                for line in c.data.split_inclusive(|b| *b == b'\n') {
                    v.extend_from_slice(p.as_bytes());
                    v.extend_from_slice(line);
                }
                v.into()
            }
            None => (&c.data[..]).into(),
        };
        let _ = match c.stream {
            LogStream::Stdout => stdout.lock().write_all(&text),
            LogStream::Stderr | LogStream::System => stderr.lock().write_all(&text),
        };
    }
    let _ = stdout.lock().flush();
}
