//! The `ferrobase` command line: `serve` (default), `migrate`,
//! `project create|list|show|delete`, `cluster add|list|set|remove`,
//! `admin create|reset-password`, `doctor`.
//!
//! Every command works against the same data dir (or `DATABASE_URL`), also
//! while a server is running: a command that finds the embedded cluster
//! running uses it and leaves it running; one that had to start it stops it
//! again when done. A running server records its public URL in the data dir
//! (`server-url`), so the URLs the commands print are the server's.

mod doctor;

use std::io::IsTerminal as _;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use crate::config::{Config, LogFormat};
use crate::platform::{Platform, ProjectRef, admins, clusters, projects};

/// Ferrobase: the open, self-hostable backend-as-a-service.
///
/// With no command it serves the platform: on its embedded defaults it runs a
/// private Postgres under ./ferrobase-data, creates an admin and a `default`
/// project, and prints how to reach them.
#[derive(Debug, Parser)]
#[command(
    name = "ferrobase",
    version,
    about,
    after_help = "Examples:\n  ferrobase                         serve on http://127.0.0.1:8080\n  ferrobase doctor                  check this machine and say what to fix\n  ferrobase project create my-app   create a project and print its keys\n\nEvery option is also an environment variable (shown in brackets)."
)]
pub struct Cli {
    /// Settings (each also read from its environment variable).
    #[command(flatten)]
    pub config: Config,
    /// What to do (default: serve).
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the platform (the default).
    Serve,
    /// Apply pending control-plane and project migrations, then exit.
    Migrate,
    /// Manage projects.
    #[command(subcommand)]
    Project(ProjectCommand),
    /// Print the OpenAPI document (what `/openapi.json` serves) and exit;
    /// needs no database. `cargo xtask dashboard` generates the dashboard's
    /// API types from it.
    Openapi,
    /// Manage the Postgres clusters projects are placed on.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Manage platform admins.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Generate code from a project.
    #[command(subcommand)]
    Gen(GenCommand),
    /// Back up projects (database dump, stored files, control-plane rows
    /// with secrets still sealed, a manifest with checksums) into
    /// `{to}/{ref}/`.
    Backup {
        /// Project ref (or --all).
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        project_ref: Option<String>,
        /// Every ready project.
        #[arg(long)]
        all: bool,
        /// Directory to write into, or `s3://bucket/prefix` (credentials:
        /// `FERROBASE_BACKUP_S3_*`, else `FERROBASE_S3_*`).
        #[arg(long)]
        to: String,
    },
    /// Restore a project from its backup (`{to}/{ref}` of `ferrobase
    /// backup`, a directory or `s3://bucket/prefix/{ref}`): under its own ref
    /// (refused while a project has it, unless --force) or a new one.
    Restore {
        /// The project's backup: a directory holding manifest.json, or `s3://bucket/prefix/{ref}`.
        source: String,
        /// Restore under this ref instead (side by side with the original).
        #[arg(long = "ref")]
        new_ref: Option<String>,
        /// Replace the project that has the ref (it is deleted first, after
        /// the backup is checked).
        #[arg(long)]
        force: bool,
        /// Superuser connection string of the Postgres cluster to restore the
        /// database onto (default: the control plane's cluster).
        #[arg(long, env = "FERROBASE_RESTORE_DATABASE_URL", hide_env_values = true)]
        database_url: Option<String>,
        /// Print one JSON object (the project with its keys) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Check this machine for what Ferrobase needs (Postgres, data dir,
    /// port, Deno, disk) and say what to fix; exits non-zero on a problem.
    Doctor {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `ferrobase project …`
#[derive(Debug, Subcommand)]
pub enum ProjectCommand {
    /// Create a project and print its URL and keys.
    Create {
        /// Project ref: 3-40 lowercase letters, digits and '-'.
        project_ref: String,
        /// Display name.
        #[arg(long)]
        name: Option<String>,
        /// Superuser connection string of another Postgres cluster to put
        /// the project's database on (default: the control plane's).
        #[arg(long, env = "FERROBASE_PROJECT_DATABASE_URL", hide_env_values = true)]
        database_url: Option<String>,
        /// A registered cluster to put it on (default: the registered cluster
        /// with the most headroom, or the control plane's when none is).
        #[arg(long, conflicts_with = "database_url")]
        cluster: Option<String>,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// List projects.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show one project with its keys.
    Show {
        /// Project ref.
        project_ref: String,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Delete a project and its database (irreversible).
    Delete {
        /// Project ref.
        project_ref: String,
    },
}

/// `ferrobase cluster …`
#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Register a Postgres cluster new projects may be placed on (its
    /// connection string is stored encrypted and never printed).
    Add {
        /// Cluster name: 3-40 lowercase letters, digits and '-'.
        name: String,
        /// Superuser connection string of the cluster.
        #[arg(long, env = "FERROBASE_CLUSTER_DATABASE_URL", hide_env_values = true)]
        database_url: String,
        /// Most projects to place on it (default: no limit).
        #[arg(long)]
        max_projects: Option<i64>,
    },
    /// List registered clusters with their project counts.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Change a cluster's limit.
    Set {
        /// Cluster name.
        name: String,
        /// Most projects to place on it.
        #[arg(
            long,
            conflicts_with = "no_limit",
            required_unless_present = "no_limit"
        )]
        max_projects: Option<i64>,
        /// Remove the limit.
        #[arg(long)]
        no_limit: bool,
    },
    /// Unregister a cluster that holds no project.
    Remove {
        /// Cluster name.
        name: String,
    },
}

/// `ferrobase gen …`
#[derive(Debug, Subcommand)]
pub enum GenCommand {
    /// Print TypeScript (postgrest-js / supabase-js `Database`) or Rust
    /// (serde structs for the SDK) types of a project's exposed schemas.
    Types {
        /// Project ref.
        #[arg(long = "project")]
        project_ref: String,
        /// Output language.
        #[arg(long, value_enum, default_value = "typescript")]
        lang: crate::typegen::Lang,
    },
}

/// `ferrobase admin …`
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Create a platform admin (password generated and printed when not given).
    Create {
        /// Admin email.
        email: String,
        /// Password (read from FERROBASE_NEW_ADMIN_PASSWORD when set).
        #[arg(long, env = "FERROBASE_NEW_ADMIN_PASSWORD", hide_env_values = true)]
        password: Option<String>,
    },
    /// Set a new password for an admin (generated and printed when not given).
    ResetPassword {
        /// Admin email.
        email: String,
        /// New password (read from FERROBASE_NEW_ADMIN_PASSWORD when set).
        #[arg(long, env = "FERROBASE_NEW_ADMIN_PASSWORD", hide_env_values = true)]
        password: Option<String>,
    },
}

/// The log filter when `RUST_LOG` is unset: ours at `level`, third-party
/// crates (refinery's per-migration lines, Postgres notices, …) at `warn`.
pub fn default_log_filter(level: &str) -> String {
    format!("warn,ferrobase_server={level},ferrobase={level}")
}

/// Installs the tracing subscriber on stderr, filtered by `RUST_LOG` (else
/// `default_filter`): compact and coloured on a terminal, one JSON object per
/// line otherwise or when the format is `json`.
pub fn init_tracing(format: LogFormat, default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let terminal = std::io::stderr().is_terminal();
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Pretty => false,
        LogFormat::Auto => !terminal,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init()
    } else {
        builder
            .compact()
            .with_ansi(terminal)
            .with_target(false)
            .try_init()
    };
}

/// Parses the command line and runs it.
pub async fn run() -> ExitCode {
    let cli = Cli::parse();
    let serving = matches!(cli.command, None | Some(Command::Serve));
    let level = if serving { "info" } else { "warn" };
    init_tracing(cli.config.log_format, &default_log_filter(level));
    match execute(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn execute(cli: Cli) -> anyhow::Result<()> {
    let command = cli.command.unwrap_or(Command::Serve);
    let mut config = cli.config;
    match command {
        Command::Serve => return serve(config).await,
        Command::Doctor { json } => return doctor::run(&config, json).await,
        Command::Openapi => {
            println!("{}", crate::app::openapi::document_json()?);
            return Ok(());
        }
        _ => {}
    }
    if config.public_url.is_none() {
        config.public_url = recorded_server_url(&config.data_dir);
    }
    let platform = Platform::open(config).await?;
    let result = one_shot(&platform, command).await;
    platform.shutdown().await;
    result
}

/// File in the data dir where a running server records its public URL.
const SERVER_URL_FILE: &str = "server-url";

/// The public URL the last server on this data dir recorded, if any.
fn recorded_server_url(data_dir: &std::path::Path) -> Option<String> {
    let text = std::fs::read_to_string(data_dir.join(SERVER_URL_FILE)).ok()?;
    let url = text.trim();
    (url.starts_with("http://") || url.starts_with("https://")).then(|| url.to_owned())
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let listen = config.listen;
    let platform = Platform::open(config).await?;
    // The server owns the cluster for its lifetime, also one it adopted
    // after a crash, and stops it on shutdown; meanwhile it is supervised.
    let supervisor = platform.embedded().map(|pg| {
        pg.take_ownership();
        let platform = platform.clone();
        let every = std::time::Duration::from_millis(platform.config().pg_supervise_interval_ms);
        tokio::spawn(async move {
            if let Some(pg) = platform.embedded() {
                crate::db::embedded::supervise(pg, every).await;
            }
        })
    });
    let outcome = async {
        let report = platform.ensure_defaults().await?;
        let listener = tokio::net::TcpListener::bind(listen).await.map_err(|e| {
            anyhow::anyhow!(
                "cannot listen on {listen}: {e}; stop whatever uses that port or set FERROBASE_LISTEN"
            )
        })?;
        let data_dir = &platform.config().data_dir;
        if let Err(error) =
            std::fs::write(data_dir.join(SERVER_URL_FILE), platform.config().public_url())
        {
            tracing::warn!(%error, "could not record the server URL in the data dir");
        }
        tracing::info!(address = %listen, "listening");
        // Last, so it is the easiest thing to find on the terminal.
        println!("{}", report.banner());
        // Bring every project database up to date in the background; requests
        // are served meanwhile (migrations are additive, see migrations/README.md).
        let migrating = platform.clone();
        let migrations = tokio::spawn(async move {
            if let Err(error) = projects::migrate_all(&migrating).await {
                tracing::error!(%error, "project migrations failed");
            }
        });
        let app = crate::App::new(platform.clone());
        if let Some(error) = app.storage.error() {
            anyhow::bail!("storage backend (FERROBASE_STORAGE_URL / FERROBASE_S3_*): {error}");
        }
        println!("{}", crate::functions::banner_line(&app.functions));
        let served = crate::serve(app, listener, crate::app::shutdown_signal()).await;
        // Unfinished migrations resume at the next start; stop them before Postgres.
        migrations.abort();
        served?;
        anyhow::Ok(())
    }
    .await;
    // Stop supervising before the cluster is stopped on purpose.
    if let Some(task) = supervisor {
        task.abort();
    }
    platform.shutdown().await;
    outcome
}

fn password_or_generated(given: Option<String>) -> (String, bool) {
    match given {
        Some(p) => (p, false),
        None => (crate::crypto::random_token(18), true),
    }
}

async fn one_shot(platform: &Platform, command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve | Command::Doctor { .. } | Command::Openapi => {
            unreachable!("handled by execute()")
        }
        Command::Migrate => {
            for (r, n) in projects::migrate_all(platform).await? {
                println!("{r}: {n} migration(s) applied");
            }
            println!("control plane and projects are up to date");
        }
        Command::Project(ProjectCommand::Create {
            project_ref,
            name,
            database_url,
            cluster,
            json,
        }) => {
            let r = ProjectRef::parse(&project_ref)?;
            let placement =
                clusters::Placement::from_options(database_url.as_deref(), cluster.as_deref())?;
            let d = projects::create_on(platform, &r, name.as_deref(), "cli", placement).await?;
            if json {
                println!("{}", serde_json::to_string(&d)?);
            } else {
                print_details(&d);
            }
        }
        Command::Project(ProjectCommand::List { json }) => {
            let list = projects::list(platform).await?;
            if json {
                println!("{}", serde_json::to_string(&list)?);
            } else {
                for p in list {
                    println!("{:<40} {:<9} {}", p.project_ref, p.status, p.url);
                }
            }
        }
        Command::Project(ProjectCommand::Show { project_ref, json }) => {
            let r = ProjectRef::parse(&project_ref)?;
            let d = projects::get_details(platform, &r).await?;
            if json {
                println!("{}", serde_json::to_string(&d)?);
            } else {
                print_details(&d);
            }
        }
        Command::Project(ProjectCommand::Delete { project_ref }) => {
            let r = ProjectRef::parse(&project_ref)?;
            let id = projects::delete(platform, &r, "cli").await?;
            crate::storage::StorageHandle::from_config(platform.config())
                .purge_project(id)
                .await;
            println!("deleted project {r}");
        }
        Command::Cluster(command) => cluster_command(platform, command).await?,
        Command::Backup {
            project_ref,
            all,
            to,
        } => {
            let progress = crate::backup::Stderr;
            let to = crate::backup::target::Target::parse(&to, false)?;
            let r = match project_ref {
                Some(r) if !all => Some(ProjectRef::parse(&r)?),
                _ => None,
            };
            let written = crate::backup::backup_to(platform, r.as_ref(), &to, &progress).await?;
            for w in written {
                println!("{}", w.location);
            }
        }
        Command::Restore {
            source,
            new_ref,
            force,
            database_url,
            json,
        } => {
            let from = crate::backup::target::Target::parse(&source, false)?;
            let options = crate::backup::restore::RestoreOptions {
                new_ref: new_ref.as_deref().map(ProjectRef::parse).transpose()?,
                force,
                database_url,
            };
            let d = crate::backup::restore_from(platform, &from, &options, &crate::backup::Stderr)
                .await?;
            if json {
                println!("{}", serde_json::to_string(&d)?);
            } else {
                print_details(&d);
            }
        }
        Command::Gen(GenCommand::Types { project_ref, lang }) => {
            let r = ProjectRef::parse(&project_ref)?;
            print!("{}", crate::typegen::for_project(platform, &r, lang).await?);
        }
        Command::Admin(AdminCommand::Create { email, password }) => {
            let (pw, generated) = password_or_generated(password);
            admins::create(platform, &email, &pw).await?;
            println!("created admin {email}");
            if generated {
                println!("password: {pw}");
            }
        }
        Command::Admin(AdminCommand::ResetPassword { email, password }) => {
            let (pw, generated) = password_or_generated(password);
            admins::reset_password(platform, &email, &pw).await?;
            println!("password of {email} reset");
            if generated {
                println!("password: {pw}");
            }
        }
    }
    Ok(())
}

async fn cluster_command(platform: &Platform, command: ClusterCommand) -> anyhow::Result<()> {
    match command {
        ClusterCommand::Add {
            name,
            database_url,
            max_projects,
        } => {
            let new = clusters::NewCluster {
                name,
                database_url,
                max_projects,
            };
            let c = clusters::add(platform, &new, "cli").await?;
            println!("registered cluster {} ({})", c.name, c.address);
        }
        ClusterCommand::List { json } => {
            let list = clusters::list(platform).await?;
            if json {
                println!("{}", serde_json::to_string(&list)?);
            } else {
                println!(
                    "{:<40} {:<30} {:>8} {:>8}",
                    "name", "address", "projects", "max"
                );
                for c in list {
                    let max = c.max_projects.map_or("-".to_owned(), |m| m.to_string());
                    println!(
                        "{:<40} {:<30} {:>8} {:>8}",
                        c.name, c.address, c.projects, max
                    );
                }
            }
        }
        ClusterCommand::Set {
            name,
            max_projects,
            no_limit,
        } => {
            let max = if no_limit { None } else { max_projects };
            clusters::set_max_projects(platform, &name, max, "cli").await?;
            println!("cluster {name} updated");
        }
        ClusterCommand::Remove { name } => {
            clusters::remove(platform, &name, "cli").await?;
            println!("removed cluster {name}");
        }
    }
    Ok(())
}

fn print_details(d: &projects::ProjectDetails) {
    println!("ref               {}", d.project.project_ref);
    println!("url               {}", d.project.url);
    println!("anon_key          {}", d.anon_key);
    println!("service_role_key  {}", d.service_role_key);
    println!("db_url            {}", d.db_url);
}
