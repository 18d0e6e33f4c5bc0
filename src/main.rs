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
    /// Check this machine against the tuning tollgate needs and print the command that fixes each problem.
    Doctor {
        /// Configuration whose media cores, interfaces and port range are checked (default: built-in demo).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Machine-readable findings.
        #[arg(long)]
        json: bool,
        /// Also list the checks that pass.
        #[arg(long, short)]
        verbose: bool,
    },
    /// Install the binary, systemd unit, sysctl drop-in and example config.
    Install {
        /// Install under this directory instead of / (staging, packaging, tests).
        #[arg(long, default_value = "/")]
        root: PathBuf,
        /// Where the binary goes, below the root.
        #[arg(long, default_value = "/usr/local")]
        prefix: PathBuf,
        /// Overwrite an existing /etc/tollgate/tollgate.toml.
        #[arg(long)]
        force_config: bool,
    },
    /// The whole deployment on this box (root): carrier, SBC and cloud in network namespaces, real SIP
    /// calls to the corporate number, audio both ways (SRTP to the cloud) and DTMF, then a report.
    Lab(LabArgs),
    /// Talk to the running daemon over its control socket.
    Ctl {
        /// Control socket (default: mgmt.control_socket of --config, else /run/tollgate/control.sock).
        #[arg(long)]
        socket: Option<PathBuf>,
        #[arg(long)]
        config: Option<PathBuf>,
        /// Print the reply as JSON instead of a table.
        #[arg(long, global = true)]
        json: bool,
        #[command(subcommand)]
        cmd: CtlCmd,
    },
}

#[derive(clap::Args)]
struct LabArgs {
    /// Calls to place.
    #[arg(long, default_value_t = 10)]
    calls: usize,
    /// Calls placed per second.
    #[arg(long, default_value_t = 10.0)]
    rate: f64,
    /// Seconds of audio once the calls are up.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Media plane: xdp where it attaches else socket (auto), or force one.
    #[arg(long, value_enum, default_value_t = tollgate::lab::run::LabMode::Auto)]
    mode: tollgate::lab::run::LabMode,
    /// Media loss above this percentage fails the run.
    #[arg(long, default_value_t = 0.1)]
    max_loss: f64,
    /// Plain RTP to the cloud instead of SRTP.
    #[arg(long)]
    plain: bool,
    /// Put rtpengine in the SBC namespace instead of tollgate (the media baseline; no SIP).
    #[arg(long, value_enum, default_value_t = tollgate::lab::run::Relay::Tollgate)]
    relay: tollgate::lab::run::Relay,
    /// Print the report as JSON (progress still goes to stderr).
    #[arg(long)]
    json: bool,
    /// Flood the carrier SIP port from a fourth namespace outside every ACL (INVITEs, scanner OPTIONS,
    /// garbage, as fast as one thread sends) while the calls are placed and talk, for at most SECONDS; the run
    /// then also checks that the flooder is banned and tollgate's memory stayed bounded.
    #[arg(long, value_name = "SECONDS")]
    flood: Option<f64>,
}

#[derive(Subcommand)]
enum CtlCmd {
    /// Live calls.
    Calls,
    /// One call with its legs and streams.
    Show {
        #[command(subcommand)]
        what: ShowWhat,
    },
    /// Trunks with active calls, CPS, ASR and target health.
    Trunks,
    /// Media flows on the workers.
    Flows,
    /// Counters.
    Stats,
    /// Reload the configuration (like SIGHUP); prints the changes or why the file was refused.
    Reload,
    /// Refuse new calls and let the live ones end (like SIGTERM, without exiting early).
    Drain {
        #[arg(long)]
        timeout: Option<u32>,
    },
    /// Source-address bans.
    Ban {
        #[command(subcommand)]
        what: BanWhat,
    },
    /// Copy the forwarding database ([forwarding] db of --config) to FILE; safe while tollgate runs.
    Backup { file: PathBuf },
    /// Replace the forwarding database by the backup FILE (checked first); stop tollgate before.
    Restore { file: PathBuf },
    /// Admin console users in the forwarding database (offline against the file).
    User {
        #[command(subcommand)]
        what: UserWhat,
    },
}

#[derive(Subcommand)]
enum UserWhat {
    /// Add a user; the password is read from stdin (first line; not echoed on a terminal).
    Add { name: String },
    /// Set a new password (read like `add`); the user's console sessions end.
    Passwd { name: String },
    /// Remove a user; its console sessions end at their next request.
    Del { name: String },
    /// List the users and when each was added.
    List,
}

#[derive(Subcommand)]
enum ShowWhat {
    Call { id: String },
}

#[derive(Subcommand)]
enum BanWhat {
    List,
    Del { addr: String },
}

const DEFAULT_CONTROL_SOCKET: &str = "/run/tollgate/control.sock";

fn doctor(config: Option<&Path>, json: bool, verbose: bool) -> ExitCode {
    use tollgate::ops::doctor;
    let cfg = match load(config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let wants = doctor::Wants::from_config(&cfg);
    let findings = doctor::check_all(&doctor::gather(Path::new("/"), &wants), &wants);
    if json {
        match serde_json::to_string_pretty(&findings) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        print!("{}", doctor::render(&findings, verbose));
    }
    if findings.iter().any(|f| f.status == doctor::Status::Fail) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn install(root: PathBuf, prefix: PathBuf, force_config: bool) -> ExitCode {
    use tollgate::ops::install::{Action, InstallPlan};
    let binary = match std::env::current_exe() {
        Ok(b) => b,
        Err(e) => {
            eprintln!("cannot find the running binary: {e}");
            return ExitCode::FAILURE;
        }
    };
    let plan = InstallPlan {
        root,
        prefix,
        binary,
        force_config,
    };
    match plan.run() {
        Ok(actions) => {
            for a in &actions {
                match a {
                    Action::Wrote(p) => println!("installed {}", p.display()),
                    Action::KeptExisting(p) => println!("kept existing {}", p.display()),
                }
            }
            if plan.root == Path::new("/") {
                println!("{}", plan.next_steps());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("install failed: {e}");
            ExitCode::FAILURE
        }
    }
}

fn ctl(socket: Option<PathBuf>, config: Option<&Path>, json: bool, cmd: CtlCmd) -> ExitCode {
    use tollgate::mgmt::ctl::{self, CtlReply, CtlRequest};
    let req = match cmd {
        CtlCmd::Calls => CtlRequest::Calls,
        CtlCmd::Show {
            what: ShowWhat::Call { id },
        } => CtlRequest::ShowCall { id },
        CtlCmd::Trunks => CtlRequest::Trunks,
        CtlCmd::Flows => CtlRequest::Flows,
        CtlCmd::Stats => CtlRequest::Stats,
        CtlCmd::Reload => CtlRequest::Reload,
        CtlCmd::Drain { timeout } => CtlRequest::Drain { timeout_s: timeout },
        CtlCmd::Ban {
            what: BanWhat::List,
        } => CtlRequest::BanList,
        CtlCmd::Ban {
            what: BanWhat::Del { addr },
        } => CtlRequest::BanDel { addr },
        CtlCmd::Backup { file } => return forward_db(config, true, &file),
        CtlCmd::Restore { file } => return forward_db(config, false, &file),
        CtlCmd::User { what } => return user_cmd(config, what),
    };
    let socket = match (socket, config) {
        (Some(s), _) => s,
        (None, Some(c)) => match load(Some(c)) {
            Ok(cfg) => cfg.mgmt.control_socket,
            Err(code) => return code,
        },
        (None, None) => PathBuf::from(DEFAULT_CONTROL_SOCKET),
    };
    let reply = match ctl::request(&socket, &req) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&reply).unwrap_or_default()
        );
    } else {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        print!("{}", ctl::render_human(&reply, now_ms));
    }
    if matches!(reply, CtlReply::Error(_)) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Reads one line from stdin; on a terminal, prompts on stderr with echo off (`stty`, best effort).
fn read_password() -> std::io::Result<zeroize::Zeroizing<String>> {
    use std::io::IsTerminal;
    let tty = std::io::stdin().is_terminal();
    let stty = |arg: &str| {
        let _ = std::process::Command::new("stty")
            .arg(arg)
            .stdin(std::process::Stdio::inherit())
            .status();
    };
    if tty {
        eprint!("password: ");
        stty("-echo");
    }
    let mut line = zeroize::Zeroizing::new(String::new());
    let r = std::io::stdin().read_line(&mut line);
    if tty {
        stty("echo");
        eprintln!();
    }
    r?;
    while line.ends_with('\n') || line.ends_with('\r') {
        line.pop();
    }
    Ok(line)
}

fn user_cmd(config: Option<&Path>, what: UserWhat) -> ExitCode {
    use tollgate::forward::users;
    let cfg = match load(config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let Some(db) = cfg.forwarding.db else {
        eprintln!("no [forwarding] db in the configuration (give --config)");
        return ExitCode::from(EXIT_BAD_CONFIG);
    };
    let password = || {
        read_password().map_err(|e| {
            eprintln!("reading the password: {e}");
            ExitCode::FAILURE
        })
    };
    let done = match what {
        UserWhat::Add { name } => match password() {
            Ok(pw) => users::add_user(&db, &name, &pw).map(|()| format!("added user {name}")),
            Err(code) => return code,
        },
        UserWhat::Passwd { name } => match password() {
            Ok(pw) => users::set_password(&db, &name, &pw)
                .map(|()| format!("changed the password of {name}")),
            Err(code) => return code,
        },
        UserWhat::Del { name } => {
            users::remove_user(&db, &name).map(|()| format!("removed user {name}"))
        }
        UserWhat::List => users::list_users(&db).map(|all| {
            let mut out = format!("{:<24} ADDED (UTC)", "NAME");
            for (name, created) in all {
                let at = tollgate::forward::console::utc(created);
                out.push_str(&format!("\n{name:<24} {at}"));
            }
            out
        }),
    };
    match done {
        Ok(msg) => {
            println!("{msg}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("tollgate: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `ctl backup` / `ctl restore`: offline against the database file named by the configuration.
fn forward_db(config: Option<&Path>, backup: bool, file: &Path) -> ExitCode {
    use tollgate::forward::backup;
    let cfg = match load(config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let Some(db) = cfg.forwarding.db else {
        eprintln!("no [forwarding] db in the configuration (give --config)");
        return ExitCode::from(EXIT_BAD_CONFIG);
    };
    let r = if backup {
        backup::backup(&db, file).map(|n| format!("backed up {n} forwards to {}", file.display()))
    } else {
        backup::restore(&db, file).map(|n| format!("restored {n} forwards into {}", db.display()))
    };
    match r {
        Ok(msg) => {
            println!("{msg}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("tollgate: {e}");
            ExitCode::FAILURE
        }
    }
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

fn lab(a: LabArgs) -> ExitCode {
    let LabArgs {
        calls,
        rate,
        duration,
        mode,
        max_loss,
        plain,
        relay,
        json,
        flood,
    } = a;
    use tollgate::lab::{guard, run, topo};
    if !topo::is_root() {
        eprintln!(
            "{}",
            guard::needs_root_message(&std::env::args().collect::<Vec<_>>())
        );
        return ExitCode::from(2);
    }
    if calls == 0
        || calls > 2000
        || !(0.1..=1000.0).contains(&rate)
        || !(0.5..=3600.0).contains(&duration)
        || flood.is_some_and(|f| !(0.5..=600.0).contains(&f))
    {
        eprintln!(
            "tollgate lab: --calls 1..=2000, --rate 0.1..=1000, --duration 0.5..=3600 seconds, --flood 0.5..=600 seconds"
        );
        return ExitCode::from(2);
    }
    let stop = match guard::interrupt_flag() {
        Ok(f) => f,
        Err(e) => {
            eprintln!("tollgate lab: cannot catch Ctrl-C: {e}");
            return ExitCode::FAILURE;
        }
    };
    let binary = match std::env::current_exe() {
        Ok(b) => b,
        Err(e) => {
            eprintln!("cannot find the running binary: {e}");
            return ExitCode::FAILURE;
        }
    };
    let opts = run::LabOptions {
        relay,
        cloud_srtp: !plain,
        calls,
        rate,
        hold: std::time::Duration::from_secs_f64(duration),
        mode,
        binary,
        progress: true,
        max_loss_pct: max_loss,
        flood: flood.map(std::time::Duration::from_secs_f64),
    };
    match run::run(&opts, &stop) {
        Ok(report) => {
            if json {
                match serde_json::to_string_pretty(&report) {
                    Ok(s) => println!("{s}"),
                    Err(e) => eprintln!("{e}"),
                }
            } else {
                print!("{}", report.render());
            }
            if report.passed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("tollgate lab: {e}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Doctor {
            config,
            json,
            verbose,
        } => doctor(config.as_deref(), json, verbose),
        Cmd::Install {
            root,
            prefix,
            force_config,
        } => install(root, prefix, force_config),
        Cmd::Ctl {
            socket,
            config,
            json,
            cmd,
        } => ctl(socket, config.as_deref(), json, cmd),
        Cmd::Lab(args) => lab(args),
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
            match tollgate::app::run_from(cfg, config.clone()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("tollgate: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
