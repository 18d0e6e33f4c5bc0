use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use tollgate::config::{self, Config, MediaMode};

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
        /// Path to the TOML configuration; without it the built-in loopback demo configuration is used.
        #[arg(long, conflicts_with = "default")]
        config: Option<PathBuf>,
        /// Run the built-in loopback demo configuration (the same as giving no --config).
        #[arg(long)]
        default: bool,
    },
    /// Validate a configuration file: exit 0 with a summary, or 2 with every error as FILE:LINE:COL: reason.
    CheckConfig {
        /// Path to the TOML configuration.
        file: PathBuf,
    },
}

/// Exit status for an invalid configuration (distinct from 1, a runtime failure).
const EXIT_BAD_CONFIG: u8 = 2;

fn summary(c: &Config) -> String {
    let mode = match c.media.mode {
        MediaMode::Xdp => "xdp",
        MediaMode::Socket => "socket",
        MediaMode::Bypass => "bypass",
    };
    format!(
        "ok: node {}, {} listeners, {} trunks, {} rules, {} routes, media {}",
        c.node.name,
        c.listen.len(),
        c.trunks.len(),
        c.rules.len(),
        c.routes.len(),
        mode
    )
}

fn load(path: Option<&Path>) -> Result<Config, ExitCode> {
    let loaded = match path {
        Some(p) => config::load_file(p),
        None => config::load_str(config::DEFAULT_CONFIG, Path::new("<built-in demo config>")),
    };
    loaded.map_err(|errs| {
        eprintln!("{errs}");
        ExitCode::from(EXIT_BAD_CONFIG)
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::CheckConfig { file } => match load(Some(&file)) {
            Ok(c) => {
                println!("{}", summary(&c));
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Cmd::Run { config, default: _ } => {
            let cfg = match load(config.as_deref()) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let filter = tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&cfg.log.level));
            tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_writer(std::io::stderr)
                // journald and log files get plain text; colours only on a terminal.
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .init();
            tracing::info!("{}", summary(&cfg));
            match tollgate::app::run(cfg) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("tollgate: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
