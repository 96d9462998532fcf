//! Thin: parse the command line, start telemetry, load config, run; map
//! errors to exit codes (0 ok, 1 rejected input, 2 usage or config error).

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use tokio_util::sync::CancellationToken;

use driftwatch::cli::{
    Cli, Command, Output, PolicyCommand, ReplayArgs, ServeArgs, SuggestArgs, SuggestOutput,
    WhoChangedArgs,
};
use driftwatch::config::Config;
use driftwatch::engine::{Engine, IngestError, Stats};
use driftwatch::model::{FindingType, VerdictKind};
use driftwatch::sinks::{Sinks, stdout::StdoutSink};
use driftwatch::sources::file::{ReplayError, Reported, replay_input};
use driftwatch::telemetry;
use driftwatch::telemetry::events::{Emit, Listening, Shutdown, ShutdownStage};

/// The engine allocates and frees many small JSON values, some on another
/// thread than made them (decoding runs ahead of judging): glibc's malloc
/// spent a fifth of replay's time there (README, Performance).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const EXIT_REJECTED: u8 = 1;
const EXIT_USAGE: u8 = 2;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(EXIT_USAGE)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::Replay(args) => replay(args),
        Command::WhoChanged(args) => who_changed(*args),
        Command::Policy { command } => match command {
            PolicyCommand::Check { config } => policy_check(config.as_deref()),
            PolicyCommand::Suggest(args) => policy_suggest(&args),
        },
    }
}

fn load_config(path: Option<&Path>) -> Result<Config, ExitCode> {
    match path {
        None => Ok(Config::default()),
        Some(path) => Config::load(path).map_err(|e| {
            eprintln!("driftwatch: {e}");
            ExitCode::from(EXIT_USAGE)
        }),
    }
}

fn serve(args: ServeArgs) -> ExitCode {
    telemetry::init_logging();
    let mut config = match load_config(args.config.as_deref()) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if let Some(listen) = args.listen {
        config.server.listen = listen;
    }
    if let Some(dir) = args.data_dir {
        config.history.data_dir = dir;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("driftwatch: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let shutdown = CancellationToken::new();
        let pipelines = config.policy.pipelines.len();
        let server = match driftwatch::app::Server::bind(config, shutdown.clone()).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("driftwatch: {e}");
                return ExitCode::FAILURE;
            }
        };
        if let Some(url) = server.url() {
            Listening {
                url: &url,
                pipelines,
            }
            .emit();
        }
        let signal = shutdown.clone();
        tokio::spawn(async move {
            driftwatch::app::shutdown_signal().await;
            Shutdown {
                stage: ShutdownStage::Signalled,
            }
            .emit();
            signal.cancel();
        });
        match server.run().await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("driftwatch: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

fn replay(args: ReplayArgs) -> ExitCode {
    // Rejections are reported below as FILE:LINE messages; keep logs quiet.
    if std::env::var_os("RUST_LOG").is_none() {
        // SAFETY-free: set before any thread is started.
        init_quiet_logging();
    } else {
        telemetry::init_logging();
    }
    let mut config = match load_config(args.config.as_deref()) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if let Some(cluster) = args.cluster {
        config.cluster = cluster;
    }
    // Replay writes to stdout whatever the config says about sinks.
    let sinks = Sinks::new(vec![Box::new(StdoutSink::default())]);
    let store = match args.data_dir.as_deref().map(driftwatch::store::Store::open) {
        None => None,
        Some(Ok(store)) => Some(store),
        Some(Err(e)) => {
            eprintln!("driftwatch: {e}");
            return ExitCode::FAILURE;
        }
    };
    let config = Arc::new(config);
    let mut engine = match Engine::new(Arc::clone(&config), store, sinks) {
        Ok(engine) => engine,
        Err(e) => {
            eprintln!("driftwatch: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut ingest = |input| {
        engine
            .ingest_ready(vec![input])
            .pop()
            .unwrap_or(Err(IngestError::Stopped))
    };
    let mut total = Stats::default();
    let mut failed_inputs = 0u64;
    let mut on_reject = |name: &str, r: Reported<'_>| eprintln!("{}", r.display(name));
    for path in &args.files {
        match replay_input(path, None, &config, &mut ingest, &mut on_reject) {
            Ok(stats) => total.add(&stats),
            Err(ReplayError::Ingest(e)) => {
                eprintln!("driftwatch: {e}");
                return ExitCode::FAILURE;
            }
            Err(e) => {
                eprintln!("{e}");
                failed_inputs += 1;
            }
        }
    }
    print_summary(&total, args.files.len(), failed_inputs);
    if total.rejected > 0 || failed_inputs > 0 {
        ExitCode::from(EXIT_REJECTED)
    } else {
        ExitCode::SUCCESS
    }
}

fn who_changed(args: WhoChangedArgs) -> ExitCode {
    use driftwatch::forensics::{self, ServerOptions};
    let mut filter = match forensics::target(&args.target) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("driftwatch: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    if filter.namespace.is_none() {
        filter.namespace = args.namespace;
    }
    filter.cluster = args.cluster;
    filter.since = args.since;
    filter.until = args.until;
    filter.field = args.field;
    filter.actor = args.actor;
    filter.verdict = args.verdict;
    filter.finding_type = args.finding_type;
    filter.limit = Some(args.limit.min(driftwatch::store::query::MAX_LIMIT));
    let items = match &args.server {
        Some(server) => {
            let options = ServerOptions {
                token: args.token,
                ca_cert: args.ca_cert,
                client_cert: args.client_cert,
                client_key: args.client_key,
            };
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt.block_on(forensics::from_server(server, &filter, &options)),
                Err(e) => {
                    eprintln!("driftwatch: cannot start the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
        None => forensics::from_store(&args.data_dir, &filter),
    };
    let items = match items {
        Ok(items) => items,
        Err(e @ forensics::ForensicsError::Query(_)) => {
            eprintln!("driftwatch: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
        Err(e) => {
            eprintln!("driftwatch: {e}");
            return ExitCode::FAILURE;
        }
    };
    match args.output {
        Output::Json => {
            for item in &items {
                match serde_json::to_string(item) {
                    Ok(line) => println!("{line}"),
                    Err(e) => eprintln!("driftwatch: {e}"),
                }
            }
        }
        Output::Table => {
            if items.is_empty() {
                eprintln!("no recorded changes to {}", args.target);
            } else {
                print!("{}", forensics::table(&items));
            }
        }
    }
    ExitCode::SUCCESS
}

fn init_quiet_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("error"))
        .with_writer(std::io::stderr)
        .log_internal_errors(false)
        .try_init();
}

fn print_summary(s: &Stats, inputs: usize, failed_inputs: u64) {
    let types = FindingType::ALL
        .iter()
        .map(|t| (t, s.findings_of(*t)))
        .filter(|(_, n)| *n > 0)
        .map(|(t, n)| format!("{}={n}", t.as_str()))
        .collect::<Vec<_>>();
    let types = if types.is_empty() {
        "none".to_owned()
    } else {
        types.join(" ")
    };
    eprintln!(
        "replayed {inputs} input(s){}: {} documents, {} events, {} mutations ({} deduplicated); verdicts: ignored={} system={} sanctioned={} drift={} allowed={}; findings: {} ({types}); rejected: {}",
        if failed_inputs > 0 {
            format!(" ({failed_inputs} unreadable)")
        } else {
            String::new()
        },
        s.documents,
        s.events,
        s.mutations(),
        s.deduplicated(),
        s.verdict(VerdictKind::Ignored),
        s.verdict(VerdictKind::System),
        s.verdict(VerdictKind::Sanctioned),
        s.verdict(VerdictKind::Drift),
        s.verdict(VerdictKind::Allowed),
        s.findings_total(),
        s.rejected,
    );
}

fn policy_check(path: Option<&Path>) -> ExitCode {
    let config = match load_config(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let shown = path.map_or_else(
        || "embedded defaults".to_owned(),
        |p| p.display().to_string(),
    );
    println!("{shown}: ok");
    println!("cluster: {}", config.cluster);
    for p in &config.policy.pipelines {
        println!(
            "pipeline {}: {} user(s), {} group(s), {} user-agent pattern(s), {} source CIDR(s)",
            p.name,
            p.users.len(),
            p.groups.len(),
            p.user_agents.len(),
            p.source_cidrs.len()
        );
    }
    println!(
        "system identities: {} user(s), {} group(s), nodes {}",
        config.policy.system.users.len(),
        config.policy.system.groups.len(),
        if config.policy.system.nodes {
            "on"
        } else {
            "off"
        }
    );
    // Every allowance with the risk it creates: what a reviewer signs off.
    let quiet = &config.policy.quiet;
    for rule in driftwatch::classify::quiet::Quiet::ALL {
        if quiet.on.contains(&rule) {
            println!("quiet rule {}: risk: {}", rule.as_str(), rule.risk());
        }
    }
    for a in &config.policy.allowances {
        println!("allowance {}: risk: {}", a.name, a.risk.trim());
    }
    ExitCode::SUCCESS
}

fn policy_suggest(args: &SuggestArgs) -> ExitCode {
    if std::env::var_os("RUST_LOG").is_none() {
        init_quiet_logging();
    } else {
        telemetry::init_logging();
    }
    let config = match load_config(args.config.as_deref()) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let shown = args.config.as_deref().map_or_else(
        || "embedded defaults".to_owned(),
        |p| p.display().to_string(),
    );
    let min = usize::try_from(args.min_findings).unwrap_or(usize::MAX);
    let found = match driftwatch::suggest::suggest(&config, &shown, &args.files, min) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("driftwatch: {e}");
            return ExitCode::from(if e.is_usage() {
                EXIT_USAGE
            } else {
                EXIT_REJECTED
            });
        }
    };
    for r in &found.rejections {
        eprintln!("{r}");
    }
    match args.output {
        SuggestOutput::Yaml => print!("{}", driftwatch::suggest::yaml(&found)),
        SuggestOutput::Json => println!("{}", driftwatch::suggest::json(&found)),
    }
    eprintln!(
        "suggested {} allowance(s) removing {} of {} findings; {} stay reported; rejected: {}",
        found.proposals.len(),
        found.removed(),
        found.findings,
        found.remaining,
        found.rejections.len()
    );
    if found.rejections.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_REJECTED)
    }
}
