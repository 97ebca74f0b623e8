//! config: the server's settings, read once at start-up from flags and environment
//! (`carnet serve --help` lists them) and passed down explicitly.

use clap::Args;
use std::path::PathBuf;

/// `carnet serve` flags; each has a `CARNET_*` environment variable.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address and port to listen on.
    #[arg(long, env = "CARNET_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: String,

    /// Directory for Carnet's own files (the embedded SQLite database by default).
    #[arg(long, env = "CARNET_DATA_DIR", default_value = "./carnet-data")]
    pub data_dir: PathBuf,

    /// Database: sqlite://PATH or postgres://USER@HOST:PORT/DB.
    /// Default: sqlite://DATA_DIR/carnet.sqlite3.
    #[arg(long, env = "CARNET_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// Public URL of the FHIR base, used in links (Location, Bundle links, fullUrl).
    /// Default: http://LISTEN/fhir (with the port actually bound).
    #[arg(long, env = "CARNET_BASE_URL")]
    pub base_url: Option<String>,

    /// Path the FHIR API is served under.
    #[arg(long, env = "CARNET_FHIR_PATH", default_value = "/fhir")]
    pub fhir_path: String,

    /// Largest request body accepted, in bytes (larger: 413).
    #[arg(long, env = "CARNET_MAX_BODY_BYTES", default_value_t = 16 * 1024 * 1024)]
    pub max_body_bytes: usize,

    /// Entries per page of a history Bundle when the client gives no _count.
    #[arg(long, env = "CARNET_DEFAULT_PAGE_SIZE", default_value_t = 50)]
    pub default_page_size: i64,

    /// Largest _count honoured.
    #[arg(long, env = "CARNET_MAX_PAGE_SIZE", default_value_t = 1000)]
    pub max_page_size: i64,

    /// Database connections in the pool.
    #[arg(long, env = "CARNET_DB_POOL_SIZE", default_value_t = 8)]
    pub db_pool_size: u32,

    /// HTTP worker threads (default: one per core).
    #[arg(long, env = "CARNET_WORKERS")]
    pub workers: Option<usize>,

    /// Seconds given to in-flight requests on SIGTERM before the server stops
    /// (SIGINT, i.e. Ctrl-C, stops at once).
    #[arg(long, env = "CARNET_SHUTDOWN_TIMEOUT", default_value_t = 30)]
    pub shutdown_timeout: u64,

    /// Log format: text or json.
    #[arg(long, env = "CARNET_LOG_FORMAT", default_value = "text")]
    pub log_format: String,

    /// Identity providers (JSON: issuer, client id, secret or the environment variable
    /// holding it, scopes, acr_values, identifier claim) for the SMART login of patients
    /// and professionals. Without it, only backend services and --dev tokens work.
    #[arg(long, env = "CARNET_IDENTITY_CONFIG")]
    pub identity_config: Option<PathBuf>,

    /// Development mode: also accept the tokens `carnet dev-token` prints. Never in
    /// production; refused unless listening on a loopback address.
    #[arg(long, env = "CARNET_DEV")]
    pub dev: bool,

    /// Limits on request input: nesting depth, elements, Bundle entries, includes…
    #[command(flatten)]
    pub limits: crate::fhir::limits::Limits,

    /// Emergency access (break the glass) when the patient said nothing: `opt-in` (the
    /// default, as Mon espace santé's documents say: only if the patient allowed it) or
    /// `opt-out` (article L1111-17 of the Code de la santé publique: unless the patient
    /// objected). A patient's own permit or objection always decides.
    #[arg(long, env = "CARNET_EMERGENCY_ACCESS", default_value = "opt-in",
        value_parser = ["opt-in", "opt-out"])]
    pub emergency_access: String,

    /// Benchmarks only (needs --dev): the patient's rules are not asked, every access is
    /// allowed (and still traced). What the consent engine costs is measured against it.
    #[arg(long, hide = true)]
    pub bench_allow_all: bool,
}

/// Settings resolved from [`ServeArgs`] once the listening port is known.
#[derive(Debug, Clone)]
pub struct Settings {
    pub base_url: String,
    pub fhir_path: String,
    pub max_body_bytes: usize,
    pub default_page_size: i64,
    pub max_page_size: i64,
    pub limits: crate::fhir::limits::Limits,
}

impl ServeArgs {
    pub fn database_url(&self) -> String {
        self.database_url.clone().unwrap_or_else(|| {
            format!(
                "sqlite://{}",
                self.data_dir.join("carnet.sqlite3").display()
            )
        })
    }

    /// `/fhir` → `/fhir`; `fhir/` → `/fhir`; `/` → ``.
    pub fn normalised_fhir_path(&self) -> String {
        let trimmed = self.fhir_path.trim_matches('/');
        if trimmed.is_empty() {
            String::new()
        } else {
            format!("/{trimmed}")
        }
    }
}
