//! Composition: configuration in, store + source + engine out.

use quake_store::Store;
use sync_engine::Engine;

use crate::config::Config;

/// Connects the pool and, unless told not to, applies migrations.
pub async fn store(config: &Config, migrate: bool) -> Result<Store, String> {
    let url = config.database.url.redacted();
    let store = (config.database.connect().await)
        .map_err(|e| format!("cannot open the database {url}: {e}"))?;
    if migrate {
        let applied = (store.migrate().await)
            .map_err(|e| format!("cannot migrate the database {url}: {e}"))?;
        if applied > 0 {
            log::info!("Applied {applied} migration(s) to {url}");
        }
    }
    Ok(store)
}

/// The engine over the configured source.
pub async fn engine(config: &Config, migrate: bool) -> Result<Engine, String> {
    let http = config.sync.http_options();
    let source = config.source.source(http).map_err(|e| e.to_string())?;
    let store = store(config, migrate).await?;
    let engine = Engine::new(store, source, config.sync.engine_config(&config.source));
    (engine.load_status().await).map_err(|e| format!("cannot read the sync state: {e}"))?;
    Ok(engine)
}

/// The next SIGTERM or SIGINT, by name. Both handlers are installed at once, so neither
/// signal kills the process while the other is awaited.
pub fn stop_signal() -> std::io::Result<impl Future<Output = &'static str>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        }
    })
}
