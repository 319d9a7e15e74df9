//! `cortex task list|show|logs|cancel`.

use cortex_model::task::{TaskRecord, TaskState};
use cortex_proto::v1 as pb;

use super::output::{self, Output};
use crate::api::tasks::{LogSlice, TaskFilter};
use crate::client::{Client, ClientArgs};

#[derive(Debug, clap::Subcommand)]
pub enum TaskCommand {
    /// Recent tasks, newest first.
    List {
        /// Only tasks in this state (repeatable): pending, placed, running, succeeded, failed,
        /// cancelled, lost.
        #[arg(long = "state", value_name = "STATE")]
        states: Vec<String>,
        /// Only the dead-letter list: tasks that failed after exhausting their retries.
        #[arg(long)]
        dead: bool,
        /// Only tasks of this fan-out group.
        #[arg(long)]
        group: Option<String>,
        /// Only tasks of this workflow (id).
        #[arg(long)]
        workflow: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// One task with its attempts.
    Show {
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// A task's output (stdout to stdout, stderr and Cortex's notes to stderr).
    Logs {
        id: String,
        /// Keep following until the task finishes.
        #[arg(short = 'f', long)]
        follow: bool,
        /// Start at this byte offset.
        #[arg(long, default_value_t = 0)]
        offset: u64,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Cancel tasks (and whatever depends on them); kills their processes. Needs scope operate.
    Cancel {
        #[arg(required = true)]
        ids: Vec<String>,
        #[arg(long, default_value = "")]
        reason: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

pub async fn run(cmd: TaskCommand, out: Output) -> anyhow::Result<()> {
    match cmd {
        TaskCommand::List {
            states,
            dead,
            group,
            workflow,
            limit,
            client,
        } => {
            let states = states
                .iter()
                .map(|s| {
                    TaskState::parse(s).ok_or_else(|| {
                        anyhow::anyhow!("--state {s:?}: one of pending, placed, running, succeeded, failed, cancelled, lost")
                    })
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let filter = TaskFilter {
                states,
                dead,
                group,
                workflow,
                limit,
                ..Default::default()
            };
            let mut c = Client::connect(&client).await?;
            let tasks: Vec<TaskRecord> = list(&mut c, &filter).await?;
            if out == Output::Json {
                return output::print_json(&serde_json::json!({ "tasks": tasks }));
            }
            if tasks.is_empty() {
                println!(
                    "no tasks{} — try `cortex run -- uname -a`",
                    if dead { " in the dead-letter list" } else { "" }
                );
                return Ok(());
            }
            print!(
                "{}",
                output::table(
                    &["id", "name", "kind", "state", "attempt", "node", "exit", "command"],
                    &rows(&tasks)
                )
            );
            Ok(())
        }
        TaskCommand::Show { id, client } => {
            let mut c = Client::connect(&client).await?;
            let t = get(&mut c, &id).await?;
            if out == Output::Json {
                return output::print_json(&t);
            }
            print!("{}", render(&t));
            Ok(())
        }
        TaskCommand::Logs {
            id,
            follow,
            offset,
            client,
        } => {
            let mut c = Client::connect(&client).await?;
            if follow {
                super::run::follow(c, id, None, true).await?;
                return Ok(());
            }
            let mut offset = offset;
            loop {
                let req = c.request(pb::TaskLogsRequest {
                    id: id.clone(),
                    offset,
                    max_bytes: 0,
                    follow: false,
                });
                let resp = c.grpc.task_logs(req).await.map_err(|e| c.error(e))?;
                let slice: LogSlice = serde_json::from_str(&resp.into_inner().json)?;
                if out == Output::Json {
                    return output::print_json(&slice);
                }
                super::run::print_logs(&slice);
                if slice.next_offset >= slice.size || slice.next_offset == offset {
                    return Ok(());
                }
                offset = slice.next_offset;
            }
        }
        TaskCommand::Cancel { ids, reason, client } => {
            let mut c = Client::connect(&client).await?;
            let req = c.request(pb::JsonRequest {
                input_json: serde_json::json!({ "ids": ids, "reason": reason }).to_string(),
            });
            let resp = c.grpc.cancel_tasks(req).await.map_err(|e| c.error(e))?;
            let cancelled: Vec<String> = serde_json::from_str(&resp.into_inner().json)?;
            if out == Output::Json {
                return output::print_json(&serde_json::json!({ "cancelled": cancelled }));
            }
            println!("cancelled {}", cancelled.join(", "));
            Ok(())
        }
    }
}

pub async fn list(c: &mut Client, f: &TaskFilter) -> anyhow::Result<Vec<TaskRecord>> {
    let req = c.request(pb::JsonRequest {
        input_json: serde_json::to_string(f)?,
    });
    let resp = c.grpc.list_tasks(req).await.map_err(|e| c.error(e))?;
    Ok(serde_json::from_str(&resp.into_inner().json)?)
}

pub async fn get(c: &mut Client, id: &str) -> anyhow::Result<TaskRecord> {
    let req = c.request(pb::KeyRequest { key: id.to_string() });
    let resp = c.grpc.get_task(req).await.map_err(|e| c.error(e))?;
    Ok(serde_json::from_str(&resp.into_inner().json)?)
}

pub fn rows(tasks: &[TaskRecord]) -> Vec<Vec<String>> {
    tasks
        .iter()
        .map(|t| {
            let mut cmd = t.spec.command.join(" ");
            if cmd.len() > 40 {
                cmd = format!("{}…", cmd.chars().take(39).collect::<String>());
            }
            vec![
                t.id.clone(),
                t.spec.name.clone().unwrap_or_default(),
                t.spec.kind.as_str().into(),
                if t.dead {
                    format!("{} (dead)", t.state.as_str())
                } else {
                    t.state.as_str().into()
                },
                t.attempt.to_string(),
                output::opt(t.node_id.or(t.attempts.last().map(|a| a.node_id))),
                output::opt(t.exit_code),
                cmd,
            ]
        })
        .collect()
}

fn render(t: &TaskRecord) -> String {
    let mut s = output::fields(&[
        ("id", t.id.clone()),
        ("name", t.spec.name.clone().unwrap_or_default()),
        (
            "state",
            if t.dead {
                format!("{} (dead letter)", t.state.as_str())
            } else {
                t.state.as_str().into()
            },
        ),
        ("kind", t.spec.kind.as_str().into()),
        ("command", t.spec.command.join(" ")),
        ("image", t.spec.image.clone().unwrap_or_default()),
        ("exit code", output::opt(t.exit_code)),
        ("error", t.error.clone().unwrap_or_default()),
        (
            "attempt",
            format!("{} of at most {}", t.attempt, t.spec.retry.max_attempts),
        ),
        ("group", t.group.clone().unwrap_or_default()),
        ("workflow", t.workflow.clone().unwrap_or_default()),
        ("depends on", t.depends_on.join(", ")),
        ("env", t.spec.env.keys().cloned().collect::<Vec<_>>().join(", ")),
    ]);
    if !t.attempts.is_empty() {
        s.push_str("attempts:\n");
        for a in &t.attempts {
            let took = match (a.started_at_ms, a.ended_at_ms) {
                (Some(b), Some(e)) => output::duration_ms(e.saturating_sub(b)),
                _ => "-".into(),
            };
            let result = a
                .result
                .as_ref()
                .map(|r| serde_json::to_string(r).unwrap_or_default())
                .unwrap_or_else(|| "running".into());
            s.push_str(&format!(
                "  #{} on node {}  {}  {}\n",
                a.attempt, a.node_id, took, result
            ));
        }
    }
    s
}
