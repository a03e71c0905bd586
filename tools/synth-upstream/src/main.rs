//! `synth-upstream`: serves the synthetic catalogue until SIGINT/SIGTERM.
//!
//! `cargo run --release -p synth-upstream -- --events 1000000 --bind 127.0.0.1:8099`, then
//! point quakesync at it: `QUAKESYNC_SOURCE_URL=http://127.0.0.1:8099/fdsnws/event/1/query`.

use std::process::ExitCode;

use actix_web::{App, HttpServer};
use chrono::{DateTime, Utc};
use synth_upstream::{SynthConfig, Upstream, configure};

fn usage() -> ExitCode {
    eprintln!(
        "usage: synth-upstream [--events N] [--seed S] [--start RFC3339] [--end RFC3339] [--now RFC3339] [--bind ADDR]\n\
         defaults: 100000 events, seed 17, 2000-01-01 .. 2026-01-01, now = end + 30 days, 127.0.0.1:8099"
    );
    ExitCode::from(2)
}

fn time(v: &str) -> Option<DateTime<Utc>> {
    quake_core::parse_utc(v)
}

#[actix_web::main]
async fn main() -> ExitCode {
    let mut cfg = SynthConfig::default();
    let mut now = None;
    let mut bind = "127.0.0.1:8099".to_string();
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let Some(value) = args.next() else {
            return usage();
        };
        let ok = match flag.as_str() {
            "--events" => value.parse().map(|n| cfg.events = n).is_ok(),
            "--seed" => value.parse().map(|n| cfg.seed = n).is_ok(),
            "--start" => time(&value).map(|t| cfg.start = t).is_some(),
            "--end" => time(&value).map(|t| cfg.end = t).is_some(),
            "--now" => time(&value).map(|t| now = Some(t)).is_some(),
            "--bind" => {
                bind = value.clone();
                true
            }
            _ => false,
        };
        if !ok {
            eprintln!("synth-upstream: bad {flag} {value:?}");
            return usage();
        }
    }
    cfg.now = now.unwrap_or(cfg.end + chrono::Duration::days(30));
    eprintln!(
        "synth-upstream: {} events, seed {}, {} .. {}, now {}, on http://{bind}/fdsnws/event/1/query",
        cfg.events,
        cfg.seed,
        cfg.start.to_rfc3339(),
        cfg.end.to_rfc3339(),
        cfg.now.to_rfc3339()
    );
    let upstream = std::sync::Arc::new(Upstream::new(cfg));
    let server = HttpServer::new(move || App::new().configure(|c| configure(c, upstream.clone())))
        .workers(2)
        .bind(&bind);
    match server {
        Ok(s) => match s.run().await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("synth-upstream: {e}");
                ExitCode::FAILURE
            }
        },
        Err(e) => {
            eprintln!("synth-upstream: cannot bind {bind}: {e}");
            ExitCode::FAILURE
        }
    }
}
