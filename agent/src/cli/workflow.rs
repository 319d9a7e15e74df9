//! `cortex workflow submit|show|list`: a DAG of tasks from one YAML or JSON file.
//!
//! ```yaml
//! name: pipeline
//! tasks:
//!   - name: build
//!     command: [sh, -c, "make"]
//!   - name: test
//!     command: [sh, -c, "make test"]
//!     depends_on: [build]
//! ```

use std::path::Path;
use std::process::ExitCode;

use cortex_model::task::TaskSpec;
use cortex_proto::v1 as pb;
use serde::Deserialize;

use super::output::{self, Output};
use crate::api::tasks::{SubmitInput, Submitted, WorkflowView};
use crate::client::{Client, ClientArgs};

#[derive(Debug, clap::Subcommand)]
pub enum WorkflowCommand {
    /// Submit a workflow file (YAML or JSON); all its tasks are created or none. Needs scope
    /// operate.
    Submit {
        file: std::path::PathBuf,
        /// Wait until every task has finished; exit 0 only if all succeeded.
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// A workflow (by id or name) with its tasks and aggregate status.
    Show {
        key: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Workflows, newest first.
    List(ClientArgs),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkflowFile {
    pub name: String,
    pub tasks: Vec<TaskSpec>,
}

/// Parses a workflow file; errors name the file, the position and the field.
pub fn parse(path: &Path, text: &str) -> anyhow::Result<WorkflowFile> {
    let json = path.extension().is_some_and(|e| e == "json") || text.trim_start().starts_with('{');
    if json {
        serde_json::from_str(text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
    } else {
        yaml_serde::from_str(text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
    }
}

pub async fn run(cmd: WorkflowCommand, out: Output) -> anyhow::Result<ExitCode> {
    match cmd {
        WorkflowCommand::Submit { file, wait, client } => {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
            let wf = parse(&file, &text)?;
            let input = SubmitInput {
                tasks: wf.tasks,
                workflow: Some(wf.name),
                fanout: Default::default(),
            };
            let mut c = Client::connect(&client).await?;
            let req = c.request(pb::JsonRequest {
                input_json: serde_json::to_string(&input)?,
            });
            let resp = c.grpc.submit_tasks(req).await.map_err(|e| c.error(e))?;
            let submitted: Submitted = serde_json::from_str(&resp.into_inner().json)?;
            let id = submitted.workflow.clone().unwrap_or_default();
            if !wait {
                if out == Output::Json {
                    output::print_json(&submitted)?;
                } else {
                    println!(
                        "workflow {id} submitted with {} tasks; `cortex workflow show {id}` follows it",
                        submitted.task_ids.len()
                    );
                }
                return Ok(ExitCode::SUCCESS);
            }
            let mut finished = Vec::new();
            for t in &submitted.task_ids {
                let c = Client::connect(&client).await?;
                finished.push(super::run::follow(c, t.clone(), None, false).await?);
            }
            let view = show(&mut c, &id).await?;
            print_view(&view, out)?;
            Ok(ExitCode::from(if view.aggregate.status == "succeeded" {
                0
            } else {
                1
            }))
        }
        WorkflowCommand::Show { key, client } => {
            let mut c = Client::connect(&client).await?;
            let view = show(&mut c, &key).await?;
            print_view(&view, out)?;
            Ok(ExitCode::SUCCESS)
        }
        WorkflowCommand::List(client) => {
            let mut c = Client::connect(&client).await?;
            let req = c.request(pb::JsonRequest::default());
            let resp = c.grpc.list_workflows(req).await.map_err(|e| c.error(e))?;
            let list: Vec<cortex_model::task::WorkflowRecord> =
                serde_json::from_str(&resp.into_inner().json)?;
            if out == Output::Json {
                output::print_json(&serde_json::json!({ "workflows": list }))?;
            } else if list.is_empty() {
                println!("no workflows — `cortex workflow submit pipeline.yaml` submits one");
            } else {
                let rows: Vec<Vec<String>> = list
                    .iter()
                    .map(|w| vec![w.id.clone(), w.name.clone(), w.task_ids.len().to_string()])
                    .collect();
                print!("{}", output::table(&["id", "name", "tasks"], &rows));
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn show(c: &mut Client, key: &str) -> anyhow::Result<WorkflowView> {
    let req = c.request(pb::KeyRequest { key: key.to_string() });
    let resp = c.grpc.get_workflow(req).await.map_err(|e| c.error(e))?;
    Ok(serde_json::from_str(&resp.into_inner().json)?)
}

fn print_view(v: &WorkflowView, out: Output) -> anyhow::Result<()> {
    if out == Output::Json {
        return output::print_json(v);
    }
    println!(
        "workflow {} ({}): {}",
        v.workflow.name, v.workflow.id, v.aggregate.status
    );
    print!(
        "{}",
        output::table(
            &["id", "name", "kind", "state", "attempt", "node", "exit", "command"],
            &super::task::rows(&v.tasks)
        )
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_errors_name_the_field() {
        let p = Path::new("w.yaml");
        let ok = parse(p, "name: w\ntasks:\n  - name: a\n    command: [\"true\"]\n  - name: b\n    command: [\"true\"]\n    depends_on: [a]\n").unwrap();
        assert_eq!(ok.tasks[1].depends_on, vec!["a"]);
        let e = parse(p, "name: w\ntasks:\n  - comand: [x]\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("comand") && e.contains("w.yaml"), "{e}");
        let e = parse(p, "name: w\ntasks: [\n").unwrap_err().to_string();
        assert!(e.contains("w.yaml"), "{e}");
    }
}
