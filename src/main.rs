//! The `carnet` command: `carnet serve` runs the FHIR server.

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use carnet::app::Application;
use carnet::config::ServeArgs;

/// Carnet: a FHIR R4 server for a personal health record.
#[derive(Parser)]
#[command(
    name = "carnet",
    version,
    about,
    long_about = None,
    after_help = "`carnet serve --help` lists the server's settings: --listen, --data-dir, --database-url, \
--base-url… (each also CARNET_* in the environment)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the FHIR server (SQLite in --data-dir unless --database-url says otherwise).
    Serve(ServeArgs),
    /// Print a development access token (last line of output), accepted only by
    /// `carnet serve --dev` with the same --data-dir.
    DevToken(DevTokenArgs),
}

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("subject").required(true).args(["patient", "practitioner", "system"])))]
struct DevTokenArgs {
    /// Directory of the server's files (its signing key is there).
    #[arg(long, env = "CARNET_DATA_DIR", default_value = "./carnet-data")]
    data_dir: std::path::PathBuf,
    /// A patient's token (patient/*.cruds on their own record), by Patient id.
    #[arg(long)]
    patient: Option<String>,
    /// A professional's token (user/*.cruds), by Practitioner id.
    #[arg(long)]
    practitioner: Option<String>,
    /// A backend service's token (system/*.cruds).
    #[arg(long)]
    system: bool,
    /// Scopes to grant instead of the default (space-separated), e.g. "system/Patient.rs".
    #[arg(long)]
    scope: Option<String>,
    /// Lifetime in seconds.
    #[arg(long, default_value_t = 3600)]
    lifetime: i64,
}

fn dev_token(args: DevTokenArgs) -> Result<String, String> {
    use carnet::auth::{dev_token, token::TokenService, DevSubject};
    let subject = match (args.patient, args.practitioner) {
        (Some(p), _) => DevSubject::Patient(p),
        (_, Some(p)) => DevSubject::Practitioner(p),
        _ => DevSubject::System,
    };
    let key = carnet::auth::keys::SigningKey::load_or_create(&args.data_dir)?;
    let tokens = TokenService::new(key, true);
    dev_token(
        &tokens,
        &subject,
        args.scope.as_deref(),
        args.lifetime.max(1),
    )
}

fn init_logging(format: &str) {
    // Info level never carries resource content; RUST_LOG=debug adds library detail.
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    if format == "json" {
        builder.json().flatten_event(true).init();
    } else {
        builder.init();
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::DevToken(args) => match dev_token(args) {
            Ok(token) => {
                eprintln!("A development token: accepted only by `carnet serve --dev` with the same --data-dir.");
                println!("{token}");
                std::process::ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("carnet dev-token: {e}");
                std::process::ExitCode::FAILURE
            }
        },
        Command::Serve(args) => {
            init_logging(&args.log_format);
            let runtime = match actix_web::rt::System::new().block_on(async {
                let app = Application::build(&args)?;
                app.run().await.map_err(|e| e.to_string())
            }) {
                Ok(()) => {
                    tracing::info!("carnet stopped");
                    return std::process::ExitCode::SUCCESS;
                }
                Err(e) => e,
            };
            tracing::error!(error = %runtime, "carnet could not run");
            eprintln!("carnet: {runtime}");
            std::process::ExitCode::FAILURE
        }
    }
}
