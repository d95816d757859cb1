//! `gpudock agent`: serve this host's metrics for an appliance, and
//! `gpudock agent enroll --token T`, the one-time command from the node page.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::metrics::agent;

#[derive(Args)]
pub struct AgentArgs {
    #[command(subcommand)]
    command: Option<AgentCommand>,
    /// HTTPS listen address.
    #[arg(long, env = "GPUDOCK_AGENT_LISTEN", default_value = "0.0.0.0:9401")]
    listen: SocketAddr,
    /// Holds the token's hash and the agent's TLS pair.
    #[arg(
        long,
        env = "GPUDOCK_AGENT_DATA_DIR",
        default_value = "/var/lib/gpudock-agent",
        global = true
    )]
    data_dir: PathBuf,
    /// Docker's data root, whose filesystem is reported.
    #[arg(
        long,
        env = "GPUDOCK_AGENT_DOCKER_ROOT",
        default_value = "/var/lib/docker"
    )]
    docker_root: String,
}

#[derive(Subcommand)]
enum AgentCommand {
    /// Store the node's token (as given by the appliance's node page) and
    /// make this agent's certificate; prints its SHA-256 fingerprint.
    Enroll {
        #[arg(long, env = "GPUDOCK_AGENT_TOKEN")]
        token: String,
    },
    /// Read the GPUs (NVML) and the host once and print them as JSON (a
    /// check on a new host; needs no enrolment).
    Probe,
}

pub fn run(args: AgentArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        Some(AgentCommand::Enroll { token }) => {
            let fp = agent::enroll(&args.data_dir, &token)?;
            println!("enrolled: token stored in {}", args.data_dir.display());
            println!("certificate SHA-256: {fp}");
            println!("start it with: systemctl enable --now gpudock-agent");
            Ok(ExitCode::SUCCESS)
        }
        Some(AgentCommand::Probe) => {
            let gpus = crate::metrics::nvml::Gpus::new();
            let host = crate::metrics::host::read(&[&args.docker_root]);
            let read = gpus.read();
            gpus.stop();
            let out = match &read {
                Ok(list) => serde_json::json!({"gpus": list, "host": host}),
                Err(why) => serde_json::json!({"gpus": [], "gpu_absent": why, "host": host}),
            };
            println!("{}", serde_json::to_string_pretty(&out)?);
            Ok(if read.is_ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(3)
            })
        }
        None => {
            let listener = std::net::TcpListener::bind(args.listen)
                .with_context(|| format!("while binding {}", args.listen))?;
            let opts = agent::Options {
                data_dir: args.data_dir,
                docker_root: args.docker_root,
            };
            super::runtime()?.block_on(async {
                let stop = async {
                    let name = super::shutdown_signal().await;
                    log::info!("{name} received: agent stopping");
                };
                agent::serve(opts, listener, stop).await
            })?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
