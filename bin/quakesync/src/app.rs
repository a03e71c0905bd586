//! Composition: configuration in, store + source + engine out.

use std::sync::Arc;
use std::time::Duration;

use quake_api::HttpOptions;
use quake_store::{Store, StoreOptions};
use sync_engine::{Engine, EngineConfig, Source};

use crate::config::Config;

/// Connects the pool and, unless told not to, applies migrations.
pub async fn store(config: &Config, migrate: bool) -> Result<Store, String> {
    let options = StoreOptions {
        pool_size: config.database.pool_size.get_u32(),
        ..StoreOptions::default()
    };
    let url = &config.database.url;
    let store = Store::connect(url.expose(), options)
        .await
        .map_err(|e| format!("cannot open the database {}: {e}", url.redacted()))?;
    if migrate {
        let applied = store
            .migrate()
            .await
            .map_err(|e| format!("cannot migrate the database {}: {e}", url.redacted()))?;
        if applied > 0 {
            log::info!("Applied {applied} migration(s) to {}", store.url_redacted());
        }
    }
    Ok(store)
}

pub fn http_options(config: &Config) -> HttpOptions {
    HttpOptions {
        timeout: Duration::from_secs(config.sync.http_timeout_secs.get()),
        max_retries: config.sync.max_retries,
        max_response_bytes: config
            .sync
            .max_response_mb
            .get()
            .saturating_mul(1024 * 1024),
        ..HttpOptions::default()
    }
}

/// The configured upstream.
pub fn source(config: &Config) -> Result<Arc<dyn Source>, String> {
    let kind = config.source.kind;
    kind.source(config.source_url(), http_options(config))
        .map_err(|e| e.to_string())
}

pub fn engine_config(config: &Config) -> EngineConfig {
    EngineConfig {
        batch_size: config.sync.batch_size.get_u32(),
        overlap: Duration::from_secs(config.sync.overlap_secs),
        start_time: config.source.start_time,
        min_magnitude: config.source.min_magnitude.map(f64::from),
        max_pages: config.sync.max_pages.get(),
        ..EngineConfig::default()
    }
}

pub async fn engine(config: &Config, migrate: bool) -> Result<Engine, String> {
    engine_with_source(config, migrate, source(config)?).await
}

/// The engine over a given source (`backfill` gives its own FDSN client).
pub async fn engine_with_source(
    config: &Config,
    migrate: bool,
    source: Arc<dyn Source>,
) -> Result<Engine, String> {
    let store = store(config, migrate).await?;
    let engine = Engine::new(store, source, engine_config(config));
    engine
        .load_status()
        .await
        .map_err(|e| format!("cannot read the sync state: {e}"))?;
    Ok(engine)
}

/// SIGTERM and SIGINT, both installed at once (so neither kills the process while the
/// other is awaited).
pub struct StopSignals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl StopSignals {
    pub fn install() -> std::io::Result<StopSignals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(StopSignals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// The name of the next signal to arrive.
    pub async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}
