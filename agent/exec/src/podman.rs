//! The `podman` executor: a container through the Podman REST API (libpod v4).
//!
//! One attempt is one container, `cortex-<name>`: create (image, argv, env, workdir, network,
//! limits) → attach → start → forward its output and wait for it → read its exit code and OOM
//! flag from `inspect` → remove it (always, on every path). A timeout or a cancel sends
//! `SIGKILL`, waits for the exit and removes the container. (Cancel with the token: a `run`
//! future dropped midway leaves its container to the next start of the service, which removes
//! every `cortex-` container it finds.)
//!
//! The environment is exactly the spec's plus what podman adds itself (`PATH`, `TERM`, `HOME`,
//! `container`, `HOSTNAME`); nothing of the agent's reaches the service or the container.
//!
//! Images come from the local store only (no registry is assumed reachable): [`import_image`]
//! turns a rootfs tarball into an image, [`list_images`] lists what the node can run.

mod client;
mod frames;
mod host;
mod service;
mod spec;

use std::path::Path;
use std::pin::pin;
use std::time::Duration;

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::Method;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use self::client::{ApiError, Client};
use self::spec::{cgroup_parent, create_body, validate, validate_reference};
use crate::{ExecConfig, ExecError, ExecSpec, Exit, Output};

/// Every container we create is named `cortex-<attempt name>`.
pub(crate) const NAME_PREFIX: &str = "cortex-";

/// After the container exits its output stream ends at once (attach) or within a few hundred
/// milliseconds (logs: podman polls the file); this bounds how long we keep reading.
const LOG_DRAIN: Duration = Duration::from_secs(5);

/// How long the fast exit poll runs after the output stream ended (see [`wait_for_exit`]).
const FAST_WAIT: Duration = Duration::from_secs(2);

/// How long a killed container may take to be reported exited.
const KILL_WAIT: Duration = Duration::from_secs(10);

pub(crate) async fn run(
    config: &ExecConfig,
    spec: ExecSpec,
    output: mpsc::Sender<Output>,
    cancel: CancellationToken,
) -> Result<Exit, ExecError> {
    let image = validate(&spec)?;
    let name = format!("{NAME_PREFIX}{}", spec.name);
    let podman = service::connect(config).await?;
    let client = &podman.client;
    match client
        .call(Method::GET, &format!("/images/{image}/exists"), None)
        .await
    {
        Ok(_) => {}
        Err(e) if e.is_not_found() => {
            return Err(ExecError::InvalidSpec {
                field: "image",
                message: format!(
                    "{image:?} is not in this node's image store; import it with `cortex image import <tar> --name {image}`"
                ),
            })
        }
        Err(e) => return Err(api_error(format!("looking up image {image}"), e)),
    }
    let cgroup_parent = podman.cgroupfs.then(|| cgroup_parent(config));
    let body = create_body(&spec, &name, image, cgroup_parent.as_deref());
    let outcome = attempt(client, &name, &body, spec.timeout, output, &cancel).await;
    if let Err(e) = remove(client, &name).await {
        tracing::warn!(container = %name, error = %e, "removing the container");
        if outcome.is_ok() {
            return Err(api_error(format!("removing container {name}"), e));
        }
    }
    outcome
}

/// Creates, starts, follows and waits for the container; the caller removes it.
async fn attempt(
    client: &Client,
    name: &str,
    body: &serde_json::Value,
    timeout: Option<Duration>,
    output: mpsc::Sender<Output>,
    cancel: &CancellationToken,
) -> Result<Exit, ExecError> {
    let cancelled = Exit {
        cancelled: true,
        ..Exit::default()
    };
    create(client, name, body).await?;

    // Attach before start: podman initialises the container and connects to conmon's attach
    // socket before it answers, so nothing the task writes is missed, and the stream ends
    // when the task exits. (`logs?follow=true` also misses nothing but ends only after a
    // 250 ms poll; it is the fallback.)
    let attach_path = format!("/containers/{name}/attach?stream=true&stdout=true&stderr=true");
    let attached = tokio::select! {
        r = client.stream(Method::POST, &attach_path) => match r {
            Ok(body) => Some(body),
            Err(e) => {
                tracing::warn!(container = %name, error = %e, "attach failed; following the logs instead");
                None
            }
        },
        () = cancel.cancelled() => return Ok(cancelled),
    };

    let started = Instant::now();
    let start_path = format!("/containers/{name}/start");
    tokio::select! {
        r = client.call(Method::POST, &start_path, None) => r.map_err(|e| start_error(name, e))?,
        () = cancel.cancelled() => return Ok(cancelled),
    };

    let exited = CancellationToken::new();
    let output_ended = CancellationToken::new();
    let reader = tokio::spawn(forward_output(
        client.clone(),
        name.to_string(),
        attached,
        output,
        exited.clone(),
        output_ended.clone(),
    ));
    let ended = async {
        let deadline = async {
            match timeout {
                Some(t) => tokio::time::sleep_until(started + t).await,
                None => std::future::pending().await,
            }
        };
        let mut exit = Exit::default();
        tokio::select! {
            r = wait_for_exit(client, name, &output_ended) => {
                r.map_err(|e| api_error(format!("waiting for container {name}"), e))?;
            }
            () = cancel.cancelled() => exit.cancelled = true,
            () = deadline => exit.timed_out = true,
        }
        if exit.cancelled || exit.timed_out {
            kill(client, name).await?;
        }
        Ok::<_, ExecError>(exit)
    }
    .await;
    exited.cancel();
    let mut exit = match ended {
        Ok(exit) => exit,
        Err(e) => {
            reader.abort();
            return Err(e);
        }
    };
    if reader.await.is_err() {
        tracing::warn!(container = %name, "the output reader failed");
    }

    let state = inspect(client, name).await?;
    exit.oom_killed = state.oom_killed;
    // The runtime reports a signal death as 128 + signal, like a shell, so `exit 137` and
    // SIGKILL look the same: read it as the signal (what it nearly always is).
    match state.exit_code {
        c @ 129..=192 => exit.signal = Some(c - 128),
        c => exit.code = Some(c),
    }
    Ok(exit)
}

/// Waits until podman reports the container exited. podman polls for the exit at the interval
/// asked for: a slow poll (250 ms, next to no CPU) runs throughout, and a fast one (10 ms,
/// about 5% of a core while it lasts) only for a moment after the output stream ended, which
/// is when the task normally exits.
async fn wait_for_exit(
    client: &Client,
    name: &str,
    output_ended: &CancellationToken,
) -> Result<(), ApiError> {
    let slow_path = format!("/containers/{name}/wait?condition=exited&interval=250ms");
    let mut slow = pin!(client.call(Method::POST, &slow_path, None));
    tokio::select! {
        r = &mut slow => return r.map(drop),
        () = output_ended.cancelled() => {}
    }
    let fast_path = format!("/containers/{name}/wait?condition=exited&interval=10ms");
    match tokio::time::timeout(FAST_WAIT, client.call(Method::POST, &fast_path, None)).await {
        Ok(r) => r.map(drop),
        // The task closed its stdout and stderr but runs on.
        Err(_) => slow.await.map(drop),
    }
}

/// `containers/create`; a container left with the same name by a crashed run is replaced.
async fn create(client: &Client, name: &str, body: &serde_json::Value) -> Result<(), ExecError> {
    let mut replaced = false;
    loop {
        match client.call(Method::POST, "/containers/create", Some(body)).await {
            Ok(_) => return Ok(()),
            Err(e) if !replaced && e.message().contains("already in use") => {
                tracing::warn!(container = %name, "removing a leftover container of the same name");
                remove(client, name)
                    .await
                    .map_err(|e| api_error(format!("removing leftover container {name}"), e))?;
                replaced = true;
            }
            Err(e) => return Err(api_error(format!("creating container {name}"), e)),
        }
    }
}

/// `SIGKILL`, then wait (bounded) until podman reports the container exited.
async fn kill(client: &Client, name: &str) -> Result<(), ExecError> {
    let path = format!("/containers/{name}/kill?signal=SIGKILL");
    if let Err(e) = client.call(Method::POST, &path, None).await {
        // 409: it exited on its own in the meantime.
        if !matches!(&e, ApiError::Status { status, .. } if status.as_u16() == 409) {
            return Err(api_error(format!("killing container {name}"), e));
        }
    }
    let wait_path = format!("/containers/{name}/wait?condition=exited&interval=10ms");
    match tokio::time::timeout(KILL_WAIT, client.call(Method::POST, &wait_path, None)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(api_error(format!("waiting for killed container {name}"), e)),
        Err(_) => Err(ExecError::Unavailable(format!(
            "container {name} was sent SIGKILL but podman did not report it exited within {} s",
            KILL_WAIT.as_secs()
        ))),
    }
}

/// Forwards the container's output (the attach stream, or else the followed logs) until
/// podman ends the stream, or [`LOG_DRAIN`] after the container exited; then fires
/// `output_ended`. A full `output` channel holds the reader (back-pressure); a closed one
/// ends it.
async fn forward_output(
    client: Client,
    name: String,
    attached: Option<Incoming>,
    output: mpsc::Sender<Output>,
    exited: CancellationToken,
    output_ended: CancellationToken,
) {
    let _ended = output_ended.drop_guard();
    let mut body = match attached {
        Some(body) => body,
        None => {
            let path = format!("/containers/{name}/logs?follow=true&stdout=true&stderr=true");
            match client.stream(Method::GET, &path).await {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(container = %name, error = %e, "following the container's logs");
                    return;
                }
            }
        }
    };
    let mut grace = pin!(async {
        exited.cancelled().await;
        tokio::time::sleep(LOG_DRAIN).await;
    });
    let mut demux = frames::Demux::default();
    loop {
        let frame = tokio::select! {
            f = body.frame() => f,
            () = &mut grace => {
                tracing::warn!(container = %name, "the output stream did not end after the container exited; output may be cut short");
                break;
            }
        };
        let data = match frame {
            None => break,
            Some(Err(e)) => {
                tracing::warn!(container = %name, error = %e, "reading the container's output");
                break;
            }
            Some(Ok(f)) => match f.into_data() {
                Ok(d) => d,
                Err(_) => continue,
            },
        };
        for chunk in demux.push(&data) {
            if output.send(chunk).await.is_err() {
                return;
            }
        }
    }
    if demux.leftover() > 0 {
        tracing::warn!(container = %name, bytes = demux.leftover(), "the output stream ended inside a frame");
    }
}

#[derive(Debug, serde::Deserialize)]
struct Inspected {
    #[serde(rename = "State")]
    state: State,
}

#[derive(Debug, serde::Deserialize)]
struct State {
    #[serde(rename = "ExitCode", default)]
    exit_code: i32,
    #[serde(rename = "OOMKilled", default)]
    oom_killed: bool,
}

async fn inspect(client: &Client, name: &str) -> Result<State, ExecError> {
    let i: Inspected = client
        .json(Method::GET, &format!("/containers/{name}/json"), None)
        .await
        .map_err(|e| api_error(format!("inspecting container {name}"), e))?;
    Ok(i.state)
}

/// Removes a container, killing it if it runs; one that is already gone is fine.
pub(crate) async fn remove(client: &Client, name_or_id: &str) -> Result<(), ApiError> {
    let path = format!("/containers/{name_or_id}?force=true&timeout=0");
    match client.call(Method::DELETE, &path, None).await {
        Err(e) if !e.is_not_found() => Err(e),
        _ => Ok(()),
    }
}

/// A failed `start`: a missing or non-executable program is the spec's fault (runc says
/// `exec: "prog": executable file not found in $PATH`, or `... : permission denied`).
fn start_error(name: &str, e: ApiError) -> ExecError {
    let m = e.message();
    let exec_failed = m.contains("exec: \"")
        && (m.contains("executable file not found")
            || m.contains("no such file or directory")
            || m.contains("permission denied"));
    if exec_failed {
        return ExecError::InvalidSpec {
            field: "command",
            message: m.to_string(),
        };
    }
    api_error(format!("starting container {name}"), e)
}

/// An API failure as an [`ExecError`]: an unreachable service is `Unavailable`, an error
/// answer carries podman's message.
fn api_error(context: String, e: ApiError) -> ExecError {
    match e {
        ApiError::Transport(m) => ExecError::Unavailable(format!("{context}: podman service: {m}")),
        ApiError::Status { message, .. } => ExecError::Io {
            context,
            source: std::io::Error::other(message),
        },
    }
}

/// Imports a rootfs tarball (`.tar`, or compressed: podman detects gzip/zstd/xz) as image
/// `reference` in the store the podman executor uses (`cortex image import`).
pub async fn import_image(config: &ExecConfig, tarball: &Path, reference: &str) -> Result<(), ExecError> {
    validate_reference("reference", reference)?;
    let open_error = |source| ExecError::Io {
        context: format!("opening {}", tarball.display()),
        source,
    };
    let file = tokio::fs::File::open(tarball).await.map_err(open_error)?;
    let meta = file.metadata().await.map_err(open_error)?;
    if !meta.is_file() {
        return Err(ExecError::InvalidSpec {
            field: "tarball",
            message: format!("{} is not a file", tarball.display()),
        });
    }
    let podman = service::connect(config).await?;
    let path = format!("/images/import?reference={reference}");
    podman
        .client
        .upload(&path, "application/x-tar", file, meta.len())
        .await
        .map_err(|e| api_error(format!("importing {} as {reference}", tarball.display()), e))?;
    Ok(())
}

/// The image references in the store the podman executor uses, sorted (what this node can run).
pub async fn list_images(config: &ExecConfig) -> Result<Vec<String>, ExecError> {
    #[derive(serde::Deserialize)]
    struct Listed {
        #[serde(rename = "Names", default)]
        names: Option<Vec<String>>,
        #[serde(rename = "RepoTags", default)]
        repo_tags: Option<Vec<String>>,
    }
    let podman = service::connect(config).await?;
    let listed: Vec<Listed> = podman
        .client
        .json(Method::GET, "/images/json", None)
        .await
        .map_err(|e| api_error("listing images".into(), e))?;
    let mut refs: Vec<String> = listed
        .into_iter()
        .flat_map(|i| {
            i.names
                .unwrap_or_default()
                .into_iter()
                .chain(i.repo_tags.unwrap_or_default())
        })
        .filter(|r| !r.is_empty() && !r.contains("<none>"))
        .collect();
    refs.sort();
    refs.dedup();
    Ok(refs)
}
