//! gpudock: a GPU lab appliance in one binary. The library holds everything;
//! `main.rs` only calls `cli::main`.

pub mod app;
pub mod audit;
pub mod auth;
pub mod cli;
pub mod config;
pub mod db;
pub mod error;
pub mod fsutil;
pub mod i18n;
pub mod logging;
pub mod secrets;
#[cfg(test)]
pub mod testutil;
pub mod tls;
pub mod web;

pub use app::App;
pub use config::Config;
