//! The `exec` executor: a plain process in its own cgroups.

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::{ExecConfig, ExecError, ExecSpec, Exit, Output};

pub(crate) async fn run(
    config: &ExecConfig,
    spec: ExecSpec,
    output: mpsc::Sender<Output>,
    cancel: CancellationToken,
) -> Result<Exit, ExecError> {
    let _ = (config, spec, output, cancel);
    Err(ExecError::Unavailable(
        "the process executor is not implemented yet".into(),
    ))
}
