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
    /// Manage the registry of client applications (who may obtain tokens).
    Client(ClientArgs),
    /// Manage the server's token signing key.
    Keys(KeysArgs),
}

#[derive(clap::Args)]
struct KeysArgs {
    /// Directory of the server's files (its signing key is in keys/).
    #[arg(
        long,
        env = "CARNET_DATA_DIR",
        default_value = "./carnet-data",
        global = true
    )]
    data_dir: std::path::PathBuf,
    #[command(subcommand)]
    action: KeysAction,
}

#[derive(Subcommand)]
enum KeysAction {
    /// Retire the signing key and create a new one. Restart the server(s) to sign with the
    /// new key; tokens signed with the retired key keep verifying for a day.
    Rotate,
}

#[derive(clap::Args)]
struct ClientArgs {
    /// Directory of the server's files (the embedded database by default).
    #[arg(
        long,
        env = "CARNET_DATA_DIR",
        default_value = "./carnet-data",
        global = true
    )]
    data_dir: std::path::PathBuf,
    /// Database: sqlite://PATH or postgres://… (default: sqlite://DATA_DIR/carnet.sqlite3).
    #[arg(
        long,
        env = "CARNET_DATABASE_URL",
        hide_env_values = true,
        global = true
    )]
    database_url: Option<String>,
    #[command(subcommand)]
    action: ClientAction,
}

#[derive(Subcommand)]
enum ClientAction {
    /// Register a client (or replace its registration; a suspension stays).
    Add {
        /// The client id it will present.
        #[arg(long)]
        client_id: String,
        /// A name for people (shown on consent screens).
        #[arg(long)]
        name: String,
        /// The most it may be granted, space-separated (e.g. "system/*.rs").
        #[arg(long)]
        scope: String,
        /// Its public keys (a JWKS file): makes it a confidential client using
        /// private_key_jwt (RS384 or ES384).
        #[arg(long)]
        jwks_file: Option<std::path::PathBuf>,
        /// Redirect URI (repeat for several), for apps using the authorization code flow.
        #[arg(long)]
        redirect_uri: Vec<String>,
        /// Carnet's own patient portal: only through it may a patient lift a block, withdraw
        /// an objection or unmask a document (never through a third-party app).
        #[arg(long)]
        first_party: bool,
        /// The identity and account registry (Patient, RelatedPerson, guardianship, the
        /// directory): reads and writes those, and no clinical data.
        #[arg(long, conflicts_with_all = ["establishment", "first_party"])]
        registry: bool,
        /// A hospital or practice system acting for its professionals: the Organization
        /// (`Organization/ID` or `ID`) it is. It obtains a token for one of the
        /// professionals the directory lists there (a PractitionerRole of that
        /// organization) with a JWT bearer grant (RFC 7523) signed with its key; give it
        /// `user/` scopes. Needs --jwks-file.
        #[arg(long, value_name = "ORGANIZATION", requires = "jwks_file")]
        establishment: Option<String>,
    },
    /// Suspend a client: its tokens stop working at once, and it gets no new ones.
    Suspend { client_id: String },
    /// Lift a suspension.
    Resume { client_id: String },
    /// List the registered clients.
    List,
}

/// A redirect URI an app may register: absolute, no fragment, https (http on a loopback
/// address only), or an app's own scheme (not javascript:, data:, file:).
fn check_redirect_uri(uri: &str) -> Result<(), String> {
    let url = url::Url::parse(uri).map_err(|e| format!("redirect URI {uri}: {e}"))?;
    if url.fragment().is_some() {
        return Err(format!("redirect URI {uri}: no fragment allowed"));
    }
    let loopback = matches!(url.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"));
    let ok = match url.scheme() {
        "https" => true,
        "http" => loopback,
        "javascript" | "data" | "file" | "vbscript" | "blob" => false,
        _ => true,
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "redirect URI {uri}: use https (http only on a loopback address) or the app's own scheme"
        ))
    }
}

fn client_command(args: ClientArgs) -> Result<String, String> {
    use carnet::repository::{ClientRow, Repository};
    let url = args.database_url.clone().unwrap_or_else(|| {
        format!(
            "sqlite://{}",
            args.data_dir.join("carnet.sqlite3").display()
        )
    });
    let repo = Repository::open(&url, 1, carnet::access::AccessPoint::new(""), "")?;
    let err = |e: carnet::error::FhirError| e.to_string();
    match args.action {
        ClientAction::Add {
            client_id,
            name,
            scope,
            jwks_file,
            redirect_uri,
            first_party,
            registry,
            establishment,
        } => {
            let organization = match establishment.as_deref() {
                None => None,
                Some(o) => {
                    let id = o.strip_prefix("Organization/").unwrap_or(o);
                    if !carnet::fhir::resource_types::is_valid_id(id) {
                        return Err(format!(
                            "--establishment {o}: an Organization id (or Organization/ID)"
                        ));
                    }
                    Some(id.to_string())
                }
            };
            let role = if registry {
                carnet::repository::REGISTRY
            } else if organization.is_some() {
                carnet::repository::ESTABLISHMENT
            } else {
                ""
            };
            for uri in &redirect_uri {
                check_redirect_uri(uri)?;
            }
            let jwks = match jwks_file {
                Some(path) => {
                    let text = std::fs::read_to_string(&path)
                        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                    let parsed: jsonwebtoken::jwk::JwkSet = serde_json::from_str(&text)
                        .map_err(|e| format!("{} is not a JWKS: {e}", path.display()))?;
                    if parsed.keys.is_empty() {
                        return Err(format!("{} has no key", path.display()));
                    }
                    text
                }
                None => String::new(),
            };
            repo.put_client(&ClientRow {
                client_id: client_id.clone(),
                name,
                confidential: !jwks.is_empty(),
                redirect_uris: serde_json::to_string(&redirect_uri).unwrap_or_default(),
                scopes: scope,
                jwks,
                suspended: false,
                created_us: time::OffsetDateTime::now_utc().unix_timestamp() * 1_000_000,
                first_party,
                role: role.to_string(),
                organization,
            })
            .map_err(err)?;
            Ok(format!("client {client_id} registered"))
        }
        ClientAction::Suspend { client_id } => match repo.suspend_client(&client_id, true) {
            Ok(true) => Ok(format!("client {client_id} suspended")),
            Ok(false) => Err(format!("no client {client_id}")),
            Err(e) => Err(err(e)),
        },
        ClientAction::Resume { client_id } => match repo.suspend_client(&client_id, false) {
            Ok(true) => Ok(format!("client {client_id} resumed")),
            Ok(false) => Err(format!("no client {client_id}")),
            Err(e) => Err(err(e)),
        },
        ClientAction::List => Ok(repo
            .clients()
            .map_err(err)?
            .iter()
            .map(|c| {
                let role = match (c.role.as_str(), &c.organization) {
                    ("", _) => String::new(),
                    (r, Some(o)) => format!("\t{r} Organization/{o}"),
                    (r, None) => format!("\t{r}"),
                };
                format!(
                    "{}\t{}\t{}\t{}\t{}{role}",
                    c.client_id,
                    if c.suspended { "suspended" } else { "active" },
                    if c.confidential {
                        "confidential"
                    } else {
                        "public"
                    },
                    c.scopes,
                    c.name
                )
            })
            .collect::<Vec<_>>()
            .join("\n")),
    }
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
    /// For a patient: the child they act for as legal representative; for a professional:
    /// the patient an emergency (--purpose) is declared for (Patient id).
    #[arg(long = "for")]
    acting_for: Option<String>,
    /// For a professional: purpose of use, BTG (break the glass, needs --reason) or ETREAT
    /// (SAMU regulation, needs --regulation).
    #[arg(long, requires = "practitioner", value_parser = ["BTG", "ETREAT", "TREAT"])]
    purpose: Option<String>,
    /// The written reason of an emergency access.
    #[arg(long, requires = "purpose")]
    reason: Option<String>,
    /// For a professional: acting as the SAMU regulating doctor (centre 15).
    #[arg(long, requires = "practitioner")]
    regulation: bool,
    /// Lifetime in seconds (at most a day).
    #[arg(long, default_value_t = 3600, value_parser = clap::value_parser!(i64).range(1..=86_400))]
    lifetime: i64,
}

fn dev_token(args: DevTokenArgs) -> Result<String, String> {
    use carnet::auth::{dev_token_with, token::TokenService, DevOptions, DevSubject};
    let subject = match (args.patient, args.practitioner) {
        (Some(p), _) => DevSubject::Patient(p),
        (_, Some(p)) => DevSubject::Practitioner(p),
        _ => DevSubject::System,
    };
    let key = carnet::auth::keys::SigningKey::load_or_create(&args.data_dir)?;
    let dev_key = carnet::auth::keys::SigningKey::load_or_create_dev(&args.data_dir)?;
    let tokens = TokenService::new(key, Some(dev_key));
    let options = DevOptions {
        acting_for: args.acting_for,
        purpose: args.purpose,
        reason: args.reason,
        regulation: args.regulation,
        third_party_app: false,
    };
    dev_token_with(
        &tokens,
        &subject,
        args.scope.as_deref(),
        args.lifetime.max(1),
        &options,
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
        Command::Client(args) => match client_command(args) {
            Ok(out) => {
                if !out.is_empty() {
                    println!("{out}");
                }
                std::process::ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("carnet client: {e}");
                std::process::ExitCode::FAILURE
            }
        },
        Command::Keys(args) => match args.action {
            KeysAction::Rotate => match carnet::auth::keys::rotate(&args.data_dir) {
                Ok((old, new)) => {
                    println!("signing key {old} retired (still verifies for a day); new signing key {new}: restart the server to use it");
                    std::process::ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("carnet keys rotate: {e}");
                    std::process::ExitCode::FAILURE
                }
            },
        },
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
