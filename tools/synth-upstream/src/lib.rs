#![doc = include_str!("../README.md")]

pub mod geojson;
pub mod model;
pub mod server;

pub use model::{Catalogue, Deleted, Filter, SynthConfig, SynthEvent};
pub use server::{Stats, StatsSnapshot, SynthServer, Upstream, configure, serve};
