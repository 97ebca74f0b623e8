//! PostgreSQL goes away and comes back (issue 13, item 6): on a private cluster of its own
//! (the shared one at 5432 is never touched), requests during a fast restart answer 503
//! with Retry-After — never 500 —, Carnet recovers by itself, and every write it
//! acknowledged is there afterwards.

use crate::helpers::*;
use serde_json::json;
use std::path::PathBuf;
use std::process::Command;

/// A PostgreSQL cluster in a temporary directory, run as the `postgres` user.
struct PrivateCluster {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
}

impl PrivateCluster {
    /// None (with the reason) when this machine cannot run one: no server binaries, or
    /// not root (the cluster runs as `postgres`).
    fn start() -> Result<PrivateCluster, String> {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .map_err(|e| format!("no /usr/lib/postgresql: {e}"))?
            .flatten()
            .map(|e| e.path().join("bin"))
            .find(|p| p.join("pg_ctl").exists())
            .ok_or("no pg_ctl under /usr/lib/postgresql")?;
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let data = dir.path().join("data");
        std::fs::create_dir(&data).map_err(|e| e.to_string())?;
        let chown = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(dir.path())
            .status()
            .map_err(|e| e.to_string())?;
        if !chown.success() {
            return Err("cannot give the cluster directory to postgres (not root?)".into());
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .map_err(|e| e.to_string())?;
        let c = PrivateCluster { bin, dir, port };
        c.run(&[
            "initdb",
            "-D",
            &c.data(),
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
        ])?;
        c.pg_ctl(&["start", "-w"])?;
        Ok(c)
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn run(&self, args: &[&str]) -> Result<(), String> {
        let tool = self.bin.join(args[0]);
        let out = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(&tool)
            .args(&args[1..])
            .output()
            .map_err(|e| format!("{}: {e}", tool.display()))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{} failed: {}",
                tool.display(),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    fn pg_ctl(&self, args: &[&str]) -> Result<(), String> {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("log").display().to_string();
        let data = self.data();
        let mut all = vec!["pg_ctl", "-D", &data, "-l", &log, "-o", &opts];
        all.extend_from_slice(args);
        self.run(&all)
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        let _ = self.pg_ctl(&["stop", "-m", "immediate"]);
    }
}

#[actix_web::test]
async fn postgres_restart_answers_503_then_recovers_and_loses_no_acknowledged_write() {
    let cluster = match PrivateCluster::start() {
        Ok(c) => c,
        Err(e) => {
            if std::env::var("CARNET_TEST_REQUIRE_POSTGRES").as_deref() == Ok("1") {
                panic!("a private PostgreSQL cluster is required in CI: {e}");
            }
            eprintln!("SKIPPED postgres::pg_restart: {e}");
            return;
        }
    };
    let app = spawn_app(Backend::Postgres(cluster.url())).await;
    let p = app
        .create(&json!({"resourceType": "Patient", "name": [{"family": "Redémarrage"}]}))
        .await;
    let pid = p["id"].as_str().unwrap().to_string();

    // Four clients writing and reading without pause while the database restarts (so that
    // requests are in flight when the connections are terminated).
    let running = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let mut loads = Vec::new();
    for worker in 0..4 {
        let client = app.client.clone();
        let base = app.base.clone();
        let pid = pid.clone();
        let flag = running.clone();
        loads.push(actix_web::rt::spawn(async move {
            let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
            let mut acknowledged = Vec::new();
            let mut no_retry_after = 0;
            let mut i = 0;
            while flag.load(std::sync::atomic::Ordering::Relaxed) {
                i += 1;
                let res = if (i + worker) % 2 == 0 {
                    client
                        .post(format!("{base}/Immunization"))
                        .header("Content-Type", FHIR_JSON)
                        .body(
                            json!({"resourceType": "Immunization", "status": "completed",
                                "vaccineCode": {"text": format!("dose {worker}-{i}")},
                                "patient": {"reference": format!("Patient/{pid}")},
                                "occurrenceDateTime": "2026-01-01"})
                            .to_string(),
                        )
                        .send()
                        .await
                } else {
                    client.get(format!("{base}/Patient/{pid}")).send().await
                };
                let Ok(res) = res else { continue };
                let status = res.status().as_u16();
                if status == 503 && res.headers().get("retry-after").is_none() {
                    no_retry_after += 1;
                }
                *statuses.entry(status).or_default() += 1;
                if status == 201 {
                    let v: serde_json::Value = res.json().await.unwrap_or_default();
                    if let Some(id) = v["id"].as_str() {
                        acknowledged.push(id.to_string());
                    }
                }
            }
            (statuses, acknowledged, no_retry_after)
        }));
    }
    // pg_ctl blocks: run it beside the runtime, so that the clients keep going meanwhile.
    let cluster = std::sync::Arc::new(cluster);
    let ctl = |args: &'static [&'static str]| {
        let c = cluster.clone();
        actix_web::rt::task::spawn_blocking(move || c.pg_ctl(args))
    };
    actix_web::rt::time::sleep(std::time::Duration::from_millis(500)).await;
    // A fast restart (connections terminated by the administrator), then down for a moment.
    ctl(&["restart", "-m", "fast", "-w"])
        .await
        .unwrap()
        .expect("restart");
    actix_web::rt::time::sleep(std::time::Duration::from_millis(500)).await;
    ctl(&["stop", "-m", "fast", "-w"])
        .await
        .unwrap()
        .expect("stop");
    actix_web::rt::time::sleep(std::time::Duration::from_millis(1500)).await;
    ctl(&["start", "-w"]).await.unwrap().expect("start");
    // Recovered by itself: the next reads succeed (within a few seconds).
    let mut recovered = false;
    for _ in 0..100 {
        if app
            .get(&format!("Patient/{}", p["id"].as_str().unwrap()))
            .await
            .status()
            == 200
        {
            recovered = true;
            break;
        }
        actix_web::rt::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    running.store(false, std::sync::atomic::Ordering::Relaxed);
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    let mut acknowledged = Vec::new();
    let mut no_retry_after = 0;
    for load in loads {
        let (s, a, n) = load.await.unwrap();
        for (k, v) in s {
            *statuses.entry(k).or_default() += v;
        }
        acknowledged.extend(a);
        no_retry_after += n;
    }
    eprintln!("during the restart: {statuses:?}");
    assert!(recovered, "Carnet recovers once PostgreSQL is back");
    assert!(
        statuses.keys().all(|s| [200, 201, 503].contains(s)),
        "only successes and 503 while the database restarts: {statuses:?}"
    );
    // (Whether a 503 is seen depends on what was in flight when the connections were
    // terminated; requests that wait for a connection while the server is stopped are
    // answered once it is back.)
    assert_eq!(no_retry_after, 0, "every 503 says when to retry");
    for id in &acknowledged {
        let (status, _) = app.get_json(&format!("Immunization/{id}")).await;
        assert_eq!(status, 200, "acknowledged write Immunization/{id} is there");
    }
    assert!(!acknowledged.is_empty());
}
