//! Test harness: starts the real Carnet server on a random port, with a fresh database
//! per test (a temporary SQLite file, or a new PostgreSQL database), and speaks HTTP to it.

mod actors;
mod keys;

pub(crate) use actors::*;
pub(crate) use keys::*;

use carnet::app::Application;
use carnet::config::ServeArgs;
use diesel::{Connection, RunQueryDsl};
use serde_json::Value;
use std::path::PathBuf;
use std::sync::Once;

#[derive(Debug, Clone, PartialEq)]
pub enum Backend {
    Sqlite,
    /// Admin URL of the PostgreSQL server the test databases are created on.
    Postgres(String),
}

const DEFAULT_PG: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// The PostgreSQL backend if one is reachable. Without one, the test says it is skipped
/// and why, unless `CARNET_TEST_REQUIRE_POSTGRES=1` (as in CI), where that is a failure.
pub fn postgres(test: &str) -> Option<Backend> {
    let url = std::env::var("CARNET_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_PG.into());
    match diesel::PgConnection::establish(&url) {
        Ok(_) => Some(Backend::Postgres(url)),
        Err(e) => {
            if std::env::var("CARNET_TEST_REQUIRE_POSTGRES").as_deref() == Ok("1") {
                panic!("PostgreSQL is required (CARNET_TEST_REQUIRE_POSTGRES=1) but {url} is unreachable: {e}");
            }
            // Written to stderr directly: libtest captures eprintln! of passing tests.
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED postgres::{test}: no PostgreSQL at {url} ({e}); set CARNET_TEST_POSTGRES_URL to run the PostgreSQL suite"
            );
            None
        }
    }
}

/// Runs each named case on SQLite and on PostgreSQL: `both_backends!(case_a, case_b);`
/// generates `sqlite::case_a`, `postgres::case_a`, … calling `case_a(Backend)`.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[actix_web::test]
                async fn $name() {
                    super::$name($crate::helpers::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[actix_web::test]
                async fn $name() {
                    if let Some(b) = $crate::helpers::postgres(stringify!($name)) {
                        super::$name(b).await
                    }
                }
            )*
        }
    };
}

static LOGGING: Once = Once::new();

fn init_logging() {
    LOGGING.call_once(|| {
        if std::env::var("CARNET_TEST_LOG").is_ok() {
            let _ = tracing_subscriber::fmt().with_test_writer().try_init();
        }
    });
}

/// Where a test's data lives; dropping it removes it.
pub struct Database {
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    pg: Option<(String, String)>,
}

impl Database {
    pub fn new(backend: &Backend) -> Database {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("tempdir");
                let url = format!("sqlite://{}", dir.path().join("carnet.sqlite3").display());
                Database {
                    url,
                    _dir: Some(dir),
                    pg: None,
                }
            }
            Backend::Postgres(admin) => {
                let name = format!("carnet_test_{}", uuid::Uuid::new_v4().simple());
                let mut conn =
                    diesel::PgConnection::establish(admin).expect("postgres admin connection");
                diesel::sql_query(format!("CREATE DATABASE {name}"))
                    .execute(&mut conn)
                    .expect("create database");
                let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(admin);
                Database {
                    url: format!("{base}/{name}"),
                    _dir: None,
                    pg: Some((admin.clone(), name)),
                }
            }
        }
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        if let Some((admin, name)) = &self.pg {
            if let Ok(mut conn) = diesel::PgConnection::establish(admin) {
                let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut conn);
            }
        }
    }
}

pub struct TestApp {
    pub base: String,
    /// A client whose requests carry a backend token with `system/*.cruds`.
    pub client: reqwest::Client,
    _db: Database,
    /// The server's data directory (its token signing key).
    _data: tempfile::TempDir,
    handle: Option<actix_web::dev::ServerHandle>,
    pub args: ServeArgs,
}

pub fn serve_args(database_url: &str, data_dir: PathBuf) -> ServeArgs {
    ServeArgs {
        listen: "127.0.0.1:0".into(),
        data_dir,
        database_url: Some(database_url.to_string()),
        base_url: None,
        fhir_path: "/fhir".into(),
        max_body_bytes: 1024 * 1024,
        default_page_size: 50,
        max_page_size: 1000,
        db_pool_size: 4,
        workers: Some(2),
        shutdown_timeout: 5,
        // The property test's world (and its oracle) is article L1111-17's: emergency
        // access unless the patient objected. The tests of the seed's default (only if the
        // patient allowed it, what `carnet serve` does) ask for it.
        emergency_access: "opt-out".into(),
        log_format: "text".into(),
        dev: true,
        bench_allow_all: false,
        identity_config: None,
        limits: Default::default(),
    }
}

fn start(
    args: &ServeArgs,
    listener: Option<std::net::TcpListener>,
) -> (String, actix_web::dev::ServerHandle) {
    let app = match listener {
        Some(l) => Application::build_on(args, l),
        None => Application::build(args),
    }
    .expect("server starts");
    let base = app.base_url().to_string();
    let handle = app.handle();
    actix_web::rt::spawn(app.run());
    (base, handle)
}

/// Starts the server on a fresh database of `backend`.
pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_with(backend, |_| {}).await
}

/// Starts the server with settings adjusted by `tune`.
pub async fn spawn_with(backend: Backend, tune: impl FnOnce(&mut ServeArgs)) -> TestApp {
    spawn_on(backend, None, tune).await
}

/// Starts the server on `listener` (already bound, so its port is known beforehand and
/// cannot be taken by anything else in between), with settings adjusted by `tune`.
pub async fn spawn_on(
    backend: Backend,
    listener: Option<std::net::TcpListener>,
    tune: impl FnOnce(&mut ServeArgs),
) -> TestApp {
    init_logging();
    let db = Database::new(&backend);
    let data = tempfile::tempdir().expect("data dir");
    let mut args = serve_args(&db.url, data.path().to_path_buf());
    tune(&mut args);
    let (base, handle) = start(&args, listener);
    let token = dev_token(&args.data_dir, &carnet::auth::DevSubject::System, None);
    TestApp {
        base,
        client: client_with(&token),
        _data: data,
        _db: db,
        handle: Some(handle),
        args,
    }
}

/// A development token signed with the key in `data_dir` (as `carnet dev-token` prints).
pub fn dev_token(
    data_dir: &std::path::Path,
    subject: &carnet::auth::DevSubject,
    scope: Option<&str>,
) -> String {
    dev_token_with(data_dir, subject, scope, &Default::default())
}

/// [`dev_token`] with a purpose of use or a patient in context.
pub fn dev_token_with(
    data_dir: &std::path::Path,
    subject: &carnet::auth::DevSubject,
    scope: Option<&str>,
    options: &carnet::auth::DevOptions,
) -> String {
    let key = carnet::auth::keys::SigningKey::load_or_create(data_dir).expect("signing key");
    let dev = carnet::auth::keys::SigningKey::load_or_create_dev(data_dir).expect("dev key");
    let tokens = carnet::auth::token::TokenService::new(key, Some(dev));
    carnet::auth::dev_token_with(&tokens, subject, scope, 600, options).expect("token")
}

/// A client sending `token` as its bearer token on every request.
pub fn client_with(token: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {token}").parse().expect("header"),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .expect("client")
}

pub const FHIR_JSON: &str = "application/fhir+json";
pub const FHIR_XML: &str = "application/fhir+xml";

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}/{}", self.base, path.trim_start_matches('/'))
    }

    /// Stops the server (gracefully) and starts a new one on the same database.
    pub async fn restart(&mut self) {
        if let Some(h) = self.handle.take() {
            h.stop(true).await;
        }
        let (base, handle) = start(&self.args, None);
        self.base = base;
        self.handle = Some(handle);
    }

    pub async fn post(&self, path: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .header("Content-Type", FHIR_JSON)
            .body(body.to_string())
            .send()
            .await
            .expect("POST")
    }

    pub async fn put(&self, path: &str, body: &Value) -> reqwest::Response {
        self.client
            .put(self.url(path))
            .header("Content-Type", FHIR_JSON)
            .body(body.to_string())
            .send()
            .await
            .expect("PUT")
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .header("Accept", FHIR_JSON)
            .send()
            .await
            .expect("GET")
    }

    pub async fn delete(&self, path: &str) -> reqwest::Response {
        self.client
            .delete(self.url(path))
            .send()
            .await
            .expect("DELETE")
    }

    /// Creates a resource and returns the stored version (with its server id).
    pub async fn create(&self, resource: &Value) -> Value {
        let rtype = resource["resourceType"]
            .as_str()
            .expect("resourceType")
            .to_string();
        let res = self.post(&rtype, resource).await;
        assert_eq!(res.status(), 201, "creating {rtype}");
        res.json().await.expect("created resource")
    }

    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        let res = self.get(path).await;
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            // Stop without waiting so that the database can be dropped.
            drop(h.stop(false));
        }
    }
}

/// The official examples kept in tests/fixtures/examples, as (file name, resource).
pub fn examples() -> Vec<(String, Value)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/examples");
    let mut out: Vec<(String, Value)> = std::fs::read_dir(&dir)
        .expect("examples dir")
        .map(|e| {
            let path = e.expect("entry").path();
            let text = std::fs::read_to_string(&path).expect("example");
            (
                path.file_name().unwrap().to_string_lossy().into_owned(),
                serde_json::from_str(&text).expect("example JSON"),
            )
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

pub fn fixture(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("fixture JSON")
}

/// The resource without what the server owns (id, meta.versionId, meta.lastUpdated).
pub fn without_server_fields(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(o) = v.as_object_mut() {
        o.remove("id");
        let empty_meta = match o.get_mut("meta").and_then(Value::as_object_mut) {
            Some(meta) => {
                meta.remove("versionId");
                meta.remove("lastUpdated");
                meta.is_empty()
            }
            None => false,
        };
        if empty_meta {
            o.remove("meta");
        }
    }
    v
}

/// The diagnostics and expressions of an OperationOutcome, for assertions.
pub fn outcome_text(v: &Value) -> String {
    assert_eq!(
        v["resourceType"], "OperationOutcome",
        "expected an OperationOutcome, got {v}"
    );
    v["issue"]
        .as_array()
        .map(|issues| {
            issues
                .iter()
                .map(|i| format!("{} {}", i["diagnostics"], i["expression"]))
                .collect::<Vec<_>>()
                .join("; ")
        })
        .unwrap_or_default()
}

/// Runs `carnet client …` (the admin command) against the test server's database; its
/// output.
pub fn carnet_client(app: &TestApp, args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_carnet"))
        .arg("client")
        .args(args)
        .arg("--database-url")
        .arg(app.args.database_url())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "carnet client {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A backend service's access token from the token endpoint `token_url`
/// (`client_credentials` with a signed assertion of `key`, a fresh jti).
pub async fn service_token(token_url: &str, key: &ClientKey, client: &str, scope: &str) -> String {
    let jti = uuid::Uuid::new_v4().to_string();
    let assertion = key.assertion(client, token_url, 120, &jti);
    let res = reqwest::Client::new()
        .post(token_url)
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", scope),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", &assertion),
        ])
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let body: Value = res.json().await.unwrap();
    assert_eq!(status, 200, "{body}");
    body["access_token"].as_str().unwrap().to_string()
}
