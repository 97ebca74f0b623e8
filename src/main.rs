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
