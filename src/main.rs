use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

/// tollgate: session border controller appliance.
#[derive(Parser)]
#[command(name = "tollgate", version, about)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the appliance.
    Run {
        /// Path to the TOML configuration.
        #[arg(long, conflicts_with = "default", required_unless_present = "default")]
        config: Option<std::path::PathBuf>,
        /// Run the embedded loopback demo configuration.
        #[arg(long)]
        default: bool,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Run { config, default } => {
            let cfg = match (config, default) {
                (Some(path), _) => {
                    tollgate::config::load_file(&path).map_err(|e| anyhow::anyhow!("{e}"))?
                }
                (None, _) => tollgate::config::load_str(
                    tollgate::config::DEFAULT_CONFIG,
                    "<default>".as_ref(),
                )
                .map_err(|e| anyhow::anyhow!("{e}"))?,
            };
            let filter = EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new(&cfg.log.level));
            tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_writer(std::io::stderr)
                .init();
            tollgate::app::run(cfg)
        }
    }
}
