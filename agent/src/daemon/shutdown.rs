//! SIGINT and SIGTERM become one shutdown signal that every server watches.

use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

pub struct Shutdown {
    token: CancellationToken,
}

impl Shutdown {
    pub fn install() -> anyhow::Result<Shutdown> {
        let token = CancellationToken::new();
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let t = token.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = term.recv() => tracing::info!("received SIGTERM"),
                _ = int.recv() => tracing::info!("received SIGINT"),
            }
            t.cancel();
        });
        Ok(Shutdown { token })
    }

    pub fn token(&self) -> CancellationToken {
        self.token.clone()
    }

    pub async fn wait(&self) {
        self.token.cancelled().await
    }
}
