//! `cortex image import|list`: the container images of this host's node, for Podman tasks on
//! machines without a registry. Local operations on the node's own image store (under its data
//! directory); the node publishes its list to the cluster within seconds, and placement sends
//! a Podman task only to nodes that have its image.

use std::path::PathBuf;

use super::output::{self, Output};

#[derive(Debug, clap::Subcommand)]
pub enum ImageCommand {
    /// Import a rootfs tarball (`tar -C rootfs -cf rootfs.tar .`) as an image.
    Import {
        /// The tarball (.tar, optionally compressed as podman accepts it).
        tarball: PathBuf,
        /// The image reference, e.g. localhost/tools:1.
        reference: String,
        /// The node's data directory (default: the configured one).
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
    },
    /// List the images in this node's store.
    List {
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
    },
}

fn exec_config(data_dir: Option<PathBuf>) -> anyhow::Result<cortex_exec::ExecConfig> {
    let data_dir = match data_dir {
        Some(d) => d,
        None => {
            crate::config::load(
                &crate::config::Sources::system(),
                &crate::config::FlagOverrides::default(),
            )?
            .data_dir
        }
    };
    if !data_dir.is_dir() {
        anyhow::bail!(
            "--data-dir {}: not a directory (give the data directory of the node on this host)",
            data_dir.display()
        );
    }
    Ok(cortex_exec::ExecConfig {
        work_root: data_dir.join("exec"),
        podman_socket: None,
        cgroup_parent: "cortex-cli".into(),
        users: cortex_exec::UserPolicy::default(),
        scratch_root: cortex_exec::default_scratch_root("cortex-cli"),
    })
}

pub async fn run(cmd: ImageCommand, out: Output) -> anyhow::Result<()> {
    match cmd {
        ImageCommand::Import {
            tarball,
            reference,
            data_dir,
        } => {
            if !tarball.is_file() {
                anyhow::bail!("{}: no such file (give a rootfs tarball)", tarball.display());
            }
            let config = exec_config(data_dir)?;
            cortex_exec::import_image(&config, &tarball, &reference)
                .await
                .map_err(|e| anyhow::anyhow!("importing {}: {e}", tarball.display()))?;
            if out == Output::Json {
                return output::print_json(&serde_json::json!({ "imported": reference }));
            }
            println!("imported {reference}; this node publishes it to the cluster within 10 s");
        }
        ImageCommand::List { data_dir } => {
            let config = exec_config(data_dir)?;
            let images = if cortex_exec::podman_store_exists(&config) {
                cortex_exec::list_images(&config)
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?
            } else {
                Vec::new()
            };
            if out == Output::Json {
                return output::print_json(&serde_json::json!({ "images": images }));
            }
            if images.is_empty() {
                println!("no images — `cortex image import rootfs.tar localhost/name:tag` adds one");
            }
            for i in images {
                println!("{i}");
            }
        }
    }
    Ok(())
}
