//! gpudock: a GPU lab appliance in one binary. The library holds everything;
//! `main.rs` only calls `cli::main`.

pub mod accounts;
pub mod alerts;
pub mod app;
pub mod audit;
pub mod auth;
pub mod backup;
pub mod catalog;
pub mod cli;
pub mod config;
pub mod datadir;
pub mod datasets;
pub mod db;
pub mod delivery;
pub mod docker;
pub mod error;
pub mod escape;
pub mod files;
pub mod fsutil;
pub mod hashing;
pub mod i18n;
pub mod ids;
pub mod instances;
pub mod jobs;
pub mod jumpbox;
#[cfg(test)]
mod layering;
pub mod leases;
pub mod live;
pub mod logging;
pub mod metrics;
pub mod monitor;
pub mod nodes;
pub mod paging;
pub mod proxy;
pub mod ratelimit;
pub mod reach;
pub mod secrets;
pub mod server;
pub mod sessions;
pub mod sshclient;
pub mod sshkeys;
pub mod terminal;
#[cfg(test)]
pub mod testutil;
pub mod tls;
pub mod usage;
pub mod validate;
pub mod web;

pub use app::App;
pub use config::Config;
