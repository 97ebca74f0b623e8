//! A real OpenID Connect provider for the identity tests: `oidc-provider` (panva), run by
//! `tests/oidc/provider.mjs` on loopback (installed from `tests/oidc/package-lock.json` with
//! `npm ci` the first time it is needed). See `tests/oidc/README.md` for its pages.

use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;

fn oidc_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/oidc")
}

/// `npm ci` once per test run, when `node_modules` lacks the provider.
fn install() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let dir = oidc_dir();
        if dir.join("node_modules/oidc-provider/package.json").exists() {
            return;
        }
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .stdout(Stdio::null())
            .status()
            .expect("npm (Node.js) is needed for the identity tests: apt-get install nodejs npm");
        assert!(status.success(), "npm ci in tests/oidc failed");
    });
}

/// A running provider; killed when dropped.
pub struct Provider {
    pub issuer: String,
    child: Child,
    _stdin: ChildStdin,
    _config: tempfile::NamedTempFile,
}

impl Provider {
    /// Starts a provider with one client (`client_id`/`secret`, redirecting to `redirect_uri`)
    /// and `accounts` (login → claims).
    pub fn start(
        client_id: &str,
        secret: &str,
        redirect_uri: &str,
        accounts: Value,
        acr: &[&str],
    ) -> Provider {
        install();
        let config = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(
            config.path(),
            json!({
                "port": 0,
                "clients": [{"client_id": client_id, "client_secret": secret, "redirect_uris": [redirect_uri]}],
                "accounts": accounts,
                "acr_values": acr,
            })
            .to_string(),
        )
        .unwrap();
        let mut child = Command::new("node")
            .arg(oidc_dir().join("provider.mjs"))
            .arg(config.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("node (Node.js) is needed for the identity tests");
        let stdin = child.stdin.take().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let issuer = line
            .trim()
            .strip_prefix("READY ")
            .unwrap_or_else(|| panic!("the provider did not start: {line:?}"))
            .to_string();
        Provider {
            issuer,
            child,
            _stdin: stdin,
            _config: config,
        }
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
