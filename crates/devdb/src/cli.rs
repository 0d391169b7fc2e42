//! Command line: `devdb serve | promote | follow | migrate | bench`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(name = "devdb", version, about = "Local libSQL server (Hrana over HTTP) for dev and tests")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum RoleArg {
    Primary,
    Replica,
}

#[derive(clap::Args, Debug, Clone)]
pub struct ServeArgs {
    #[arg(long, value_enum, default_value = "primary")]
    pub role: RoleArg,
    /// Replica only: base URL of the primary, e.g. http://127.0.0.1:8080.
    #[arg(long, required_if_eq("role", "replica"))]
    pub primary: Option<String>,
    /// SQLite database file (created if missing).
    #[arg(long)]
    pub db: PathBuf,
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// Bearer token clients must send (a replica also uses it to pull from the primary).
    #[arg(long, env = "DEVDB_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Added before answering every Hrana request (stands for a distant region).
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// Replica only: delay before replicated changes are applied.
    #[arg(long, default_value_t = 0)]
    pub lag_ms: u64,
    /// The URL other nodes reach this one at (default: http:// and the listening address).
    #[arg(long)]
    pub advertise_url: Option<String>,
}

#[derive(clap::Args, Debug)]
pub struct PromoteArgs {
    /// The replica (or fenced node) to promote, e.g. http://127.0.0.1:8081.
    #[arg(long)]
    pub url: String,
    #[arg(long, env = "DEVDB_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

#[derive(clap::Args, Debug)]
pub struct FollowArgs {
    /// The replica (or fenced node) to re-point.
    #[arg(long)]
    pub url: String,
    /// The primary it should follow from now on.
    #[arg(long)]
    pub primary: String,
    /// Drop the node's data and copy the primary's from the start (when its log diverged).
    #[arg(long)]
    pub resync: bool,
    #[arg(long, env = "DEVDB_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

#[derive(clap::Args, Debug)]
pub struct MigrateArgs {
    /// Database URL (devdb or Turso), e.g. http://127.0.0.1:8080.
    #[arg(long)]
    pub url: String,
    #[arg(long, env = "DEVDB_TOKEN", hide_env_values = true)]
    pub token: String,
    /// Folder of `*.sql` files, applied in lexical order.
    #[arg(long)]
    pub dir: PathBuf,
}

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Primary to measure; without it, bench starts its own primary and replica.
    #[arg(long)]
    pub url: Option<String>,
    #[arg(long, env = "DEVDB_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Replica of `--url` for the convergence figure.
    #[arg(long)]
    pub replica_url: Option<String>,
    /// Seconds per throughput measurement.
    #[arg(long, default_value_t = 3)]
    pub seconds: u64,
}

#[derive(Subcommand)]
enum Command {
    /// Serve a database over Hrana/HTTP as a primary or a replica.
    Serve(ServeArgs),
    /// Make a running replica the primary at a new term (the old primary is fenced).
    Promote(PromoteArgs),
    /// Make a running replica or fenced node follow another primary.
    Follow(FollowArgs),
    /// Apply migrations/*.sql once each, in order, through the libSQL client.
    Migrate(MigrateArgs),
    /// Measure pipeline throughput from one client and replica convergence time.
    Bench(BenchArgs),
}

/// How long devdb waits, once it has stopped serving, for blocking work still running.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("devdb: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = rt.block_on(async {
        match cli.command {
            Command::Serve(args) => crate::serve::run(args).await,
            Command::Promote(args) => crate::admin::promote(args).await,
            Command::Follow(args) => crate::admin::follow(args).await,
            Command::Migrate(args) => crate::migrate::run(args).await,
            Command::Bench(args) => crate::bench::run(args).await,
        }
    });
    // Statements were interrupted at shutdown (`cancel`); a blocking thread still inside SQLite
    // (a writer waiting for the lock) must not keep the process alive: dropping the runtime
    // would wait for it.
    rt.shutdown_timeout(SHUTDOWN_GRACE);
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("devdb: {message}");
            ExitCode::FAILURE
        }
    }
}
