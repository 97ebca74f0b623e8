//! app: builds and runs the server from its settings (used by `carnet serve` and by the
//! integration tests, which start it on port 0).

use actix_web::web;
use std::net::{SocketAddr, TcpListener};

use crate::access::AccessPoint;
use crate::config::{ServeArgs, Settings};
use crate::fhir::instant;
use crate::http::{self, AppState};
use crate::repository::{redact_url, Repository};

pub struct Application {
    server: actix_web::dev::Server,
    /// For the notification worker.
    repo: Repository,
    addr: SocketAddr,
    base_url: String,
}

impl Application {
    /// Opens the database (running migrations), binds the listener and prepares the server.
    pub fn build(args: &ServeArgs) -> Result<Application, String> {
        let listener = TcpListener::bind(&args.listen)
            .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
        Self::build_on(args, listener)
    }

    /// [`Application::build`] on a listener already bound (its address replaces
    /// `args.listen`): for callers that must know the port before the server is built.
    pub fn build_on(args: &ServeArgs, listener: TcpListener) -> Result<Application, String> {
        let database_url = args.database_url();
        let limits = args.limits.checked()?;
        let key = crate::auth::keys::SigningKey::load_or_create(&args.data_dir)?;
        let dev_key = if args.dev {
            Some(crate::auth::keys::SigningKey::load_or_create_dev(
                &args.data_dir,
            )?)
        } else {
            None
        };
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let fhir_path = args.normalised_fhir_path();
        let base_url = args
            .base_url
            .clone()
            .map(|u| u.trim_end_matches('/').to_string())
            .unwrap_or_else(|| format!("http://{addr}{fhir_path}"));
        let endpoints = crate::oauth::Endpoints::new(&base_url, &fhir_path);
        let identity_config = match &args.identity_config {
            Some(path) => Some(crate::identity::IdentityConfig::load(path)?),
            None => None,
        };
        let login_identifiers = identity_config
            .iter()
            .flat_map(|c| &c.providers)
            .map(|p| {
                (
                    p.kind.resource_type().to_string(),
                    p.identifier.system.clone(),
                )
            })
            .collect();
        let identity = match identity_config {
            Some(config) => {
                for p in &config.providers {
                    tracing::info!(provider = %p.name, issuer = %p.issuer, kind = ?p.kind, "identity provider configured");
                }
                Some(crate::identity::Identity::new(config, &endpoints.origin)?)
            }
            None => None,
        };
        if args.bench_allow_all && !args.dev {
            return Err("--bench-allow-all is for benchmarks, with --dev only".into());
        }
        let mut access = AccessPoint::new(&base_url)
            .with_login_identifiers(login_identifiers)
            .with_emergency_by_default(args.emergency_access == "opt-out");
        if args.bench_allow_all {
            tracing::warn!(
                "BENCHMARK MODE (--bench-allow-all): the patients' rules are not applied"
            );
            access = access.allowing_all();
        }
        let mut repo = Repository::open(&database_url, args.db_pool_size, access, &base_url)?
            .with_limits(limits);
        for hook in write_hooks(&base_url) {
            repo = repo.with_hook(hook);
        }
        if args.dev {
            if !addr.ip().is_loopback() {
                return Err(format!(
                    "--dev is refused on {addr}: development tokens are for a loopback address only"
                ));
            }
            tracing::warn!(
                "DEVELOPMENT MODE (--dev): tokens printed by `carnet dev-token` are accepted; \
                 never run a real record this way"
            );
        }
        tracing::info!(
            listen = %addr,
            base_url = %base_url,
            database = %redact_url(&database_url),
            backend = repo.backend().name(),
            "carnet starting"
        );
        let worker_repo = repo.clone();
        let state = web::Data::new(AppState {
            repo,
            settings: Settings {
                base_url: base_url.clone(),
                fhir_path,
                max_body_bytes: args.max_body_bytes,
                default_page_size: args.default_page_size.max(1),
                max_page_size: args.max_page_size.max(1),
                limits,
            },
            started_at: instant::format_us(instant::now_us()),
            endpoints,
        });
        let registry = state.clone();

        let auth = web::Data::new(crate::auth::Authenticator {
            tokens: crate::auth::token::TokenService::new(key, dev_key)
                .with_retired(crate::auth::keys::load_retired(&args.data_dir)?),
            // Fails closed: a registry that cannot be read stops the tokens.
            grant_active: Box::new(move |grant_id, may_wait| {
                registry.repo.grant_active(grant_id, may_wait)
            }),
        });
        let upstreams = web::Data::new(http::oauth::Upstreams(identity));
        let mut server = actix_web::HttpServer::new(move || {
            http::app(state.clone(), auth.clone(), upstreams.clone())
        })
        .shutdown_timeout(args.shutdown_timeout);
        if let Some(w) = args.workers {
            server = server.workers(w.max(1));
        }
        let server = server
            .listen(listener)
            .map_err(|e| format!("cannot start the HTTP server: {e}"))?
            .run();
        Ok(Application {
            server,
            repo: worker_repo,
            addr,
            base_url,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// A handle that stops the server (gracefully or not).
    pub fn handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }

    /// Serves until stopped (SIGTERM finishes in-flight requests first; SIGINT stops at once).
    /// The Subscription notifications are sent meanwhile.
    pub async fn run(self) -> std::io::Result<()> {
        let worker = actix_web::rt::spawn(crate::jobs::delivery::run(self.repo));
        let result = self.server.await;
        worker.abort();
        result
    }
}

/// The features' write hooks, in the order they run: the patient's rules stamp first (the
/// hooks after it judge accesses with the fresh rules), then subscriptions (kept, then
/// matched), then the notice of a new document. Every repository that writes FHIR
/// resources registers them all.
pub fn write_hooks(base_url: &str) -> Vec<std::sync::Arc<dyn crate::repository::WriteHook>> {
    vec![
        std::sync::Arc::new(crate::record::rules::RulesStamp),
        std::sync::Arc::new(crate::subscriptions::Subscriptions::new(base_url)),
        std::sync::Arc::new(crate::record::documents::NewDocumentNotice),
    ]
}
