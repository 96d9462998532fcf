//! Command-line definitions only.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "driftwatch",
    version,
    about = "Flags every Kubernetes change made outside the sanctioned deployment pipeline.",
    long_about = None
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service: audit webhook, metrics and health endpoints.
    Serve(ServeArgs),
    /// Read audit logs and print one finding per line (the forensic backfill).
    Replay(ReplayArgs),
    /// Work with the policy.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// YAML config; without it the embedded defaults apply.
    #[arg(long, env = "DRIFTWATCH_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address for the webhook and API (overrides server.listen).
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Directory for driftwatch's own state (overrides history.data_dir).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// YAML config; without it the embedded defaults apply.
    #[arg(long, env = "DRIFTWATCH_CONFIG")]
    pub config: Option<PathBuf>,
    /// Cluster name for events (overrides `cluster` in the config).
    #[arg(long)]
    pub cluster: Option<String>,
    /// Audit log files: JSON lines, EventLists, pretty-printed Events; `-` is stdin.
    #[arg(default_value = "-")]
    pub files: Vec<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Validate a config file and summarize the policy it declares.
    Check {
        #[arg(long, env = "DRIFTWATCH_CONFIG")]
        config: Option<PathBuf>,
    },
}
