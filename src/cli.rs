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
    /// Who changed an object: its stored history, oldest first.
    WhoChanged(Box<WhoChangedArgs>),
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
    /// Also record history in this directory's store (the backfill).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Audit log files: JSON lines, EventLists, pretty-printed Events; `-` is stdin.
    #[arg(default_value = "-")]
    pub files: Vec<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct WhoChangedArgs {
    /// KIND/NAME, with kubectl's short names: deploy/api, cm/settings, sts/db.
    pub target: String,
    /// Namespace; without it every namespace is searched.
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// Only changes newer than this: 7d, 24h, 30m, or an RFC 3339 time.
    #[arg(long)]
    pub since: Option<String>,
    /// Only changes older than this: a duration before now, or an RFC 3339 time.
    #[arg(long)]
    pub until: Option<String>,
    /// Only changes that touched this field path or below it (spec.replicas).
    #[arg(long)]
    pub field: Option<String>,
    /// Only this cluster.
    #[arg(long)]
    pub cluster: Option<String>,
    /// Only changes made by this user (the effective identity).
    #[arg(long)]
    pub actor: Option<String>,
    /// Only changes with this verdict: drift, sanctioned or system.
    #[arg(long)]
    pub verdict: Option<String>,
    /// Only findings of this type (out_of_band_change, interactive_access, ...).
    #[arg(long = "type")]
    pub finding_type: Option<String>,
    /// Read the history store in this directory.
    #[arg(long, conflicts_with = "server", default_value = "./data")]
    pub data_dir: std::path::PathBuf,
    /// Ask a running driftwatch instead (http://127.0.0.1:8080).
    #[arg(long)]
    pub server: Option<String>,
    /// Bearer token for a server with server.auth.query_tokens_file.
    #[arg(
        long,
        env = "DRIFTWATCH_TOKEN",
        requires = "server",
        hide_env_values = true
    )]
    pub token: Option<String>,
    /// CA certificate (PEM) that signed the server's certificate.
    #[arg(long, requires = "server")]
    pub ca_cert: Option<PathBuf>,
    /// Client certificate (PEM), for a server that requires one.
    #[arg(long, requires_all = ["server", "client_key"])]
    pub client_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, requires = "client_cert")]
    pub client_key: Option<PathBuf>,
    #[arg(long, short = 'o', value_enum, default_value_t = Output::Table)]
    pub output: Output,
    /// At most this many changes (the newest).
    #[arg(long, default_value_t = 100)]
    pub limit: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Table,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Validate a config file and summarize the policy it declares.
    Check {
        #[arg(long, env = "DRIFTWATCH_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Propose scoped allowances that would silence the automation seen in
    /// audit logs, each measured by replaying the logs with it.
    Suggest(SuggestArgs),
}

#[derive(Debug, clap::Args)]
pub struct SuggestArgs {
    /// Audit log files: JSON lines, EventLists, cloud envelopes. They are
    /// replayed more than once, so standard input is not accepted.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// YAML config the logs are judged under; without it the embedded defaults.
    #[arg(long, env = "DRIFTWATCH_CONFIG")]
    pub config: Option<PathBuf>,
    /// Leave out any scope that removes fewer findings than this.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..))]
    pub min_findings: u64,
    /// `yaml`: a config file to review and paste; `json`: for machines.
    #[arg(long, short = 'o', value_enum, default_value_t = SuggestOutput::Yaml)]
    pub output: SuggestOutput,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SuggestOutput {
    Yaml,
    Json,
}
