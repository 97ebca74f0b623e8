//! `carnet-fuzz`: a long fuzz run against a real `carnet serve` process.
//!
//! It starts the server (`--carnet`, by default the `carnet` binary beside this one) on a
//! fresh data directory (SQLite, or `--database-url`), signs a development token, files
//! a few resources (some kept as sentinels), then sends `--cases` hostile requests from
//! `--threads` connections. It reports every 5xx, every connection the server dropped
//! without an answer, a crash (the process gone), the server's memory (current and peak
//! RSS) and whether the sentinels are unchanged at the end. Each finding is written to
//! `--findings` with the request that caused it; the same `--seed` replays the run.
//!
//! ```sh
//! cargo build --release -p carnet -p carnet-fuzz
//! target/release/carnet-fuzz --cases 1000000
//! ```
//! Exit status: 0 when nothing was found, 1 otherwise.

use carnet_fuzz::{Case, Generator, HttpClient, Sent};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

struct Args {
    cases: u64,
    seed: u64,
    threads: usize,
    carnet: PathBuf,
    database_url: Option<String>,
    findings: PathBuf,
    examples: PathBuf,
}

fn usage() -> ! {
    eprintln!(
        "usage: carnet-fuzz [--cases N] [--seed S] [--threads T] [--carnet PATH] \
         [--database-url URL] [--findings DIR] [--examples DIR]"
    );
    std::process::exit(2)
}

fn parse_args() -> Args {
    let exe = std::env::current_exe().unwrap_or_default();
    let mut a = Args {
        cases: 100_000,
        seed: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(1),
        threads: 4,
        carnet: exe.with_file_name("carnet"),
        database_url: None,
        findings: PathBuf::from("fuzz-findings"),
        examples: PathBuf::from("tests/fixtures/examples"),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| usage());
        match flag.as_str() {
            "--cases" => a.cases = value().parse().unwrap_or_else(|_| usage()),
            "--seed" => a.seed = value().parse().unwrap_or_else(|_| usage()),
            "--threads" => a.threads = value().parse().unwrap_or_else(|_| usage()),
            "--carnet" => a.carnet = value().into(),
            "--database-url" => a.database_url = Some(value()),
            "--findings" => a.findings = value().into(),
            "--examples" => a.examples = value().into(),
            _ => usage(),
        }
    }
    a
}

/// Official examples as seeds (JSON, and the same rendered as XML).
pub fn load_seeds(dir: &Path) -> (Vec<Value>, Vec<String>) {
    let mut json = Vec::new();
    let mut xml = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        paths.sort();
        for p in paths {
            let Ok(text) = std::fs::read(&p) else {
                continue;
            };
            if let Ok(v) = serde_json::from_slice::<Value>(&text) {
                if let Ok(x) = carnet_model::json_to_xml(&text) {
                    xml.push(x);
                }
                json.push(v);
            }
        }
    }
    (json, xml)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn rss_kib(pid: u32) -> (u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

struct Server {
    child: Child,
    base: String,
    token: String,
}

fn start_server(args: &Args, data: &Path) -> Server {
    let port = free_port();
    let log = std::fs::File::create(data.join("server.log")).expect("server log");
    let log_out = log.try_clone().expect("server log");
    let mut cmd = Command::new(&args.carnet);
    cmd.arg("serve")
        .arg("--dev")
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data-dir")
        .arg(data)
        .env("RUST_LOG", "warn")
        .stdout(log_out)
        .stderr(log);
    if let Some(url) = &args.database_url {
        cmd.arg("--database-url").arg(url);
    }
    let child = cmd.spawn().unwrap_or_else(|e| {
        eprintln!("cannot start {}: {e}", args.carnet.display());
        std::process::exit(2)
    });
    let base = format!("http://127.0.0.1:{port}/fhir");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        if Instant::now() > deadline {
            eprintln!(
                "the server did not start: see {}",
                data.join("server.log").display()
            );
            std::process::exit(2)
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = Command::new(&args.carnet)
        .args(["dev-token", "--system", "--data-dir"])
        .arg(data)
        .output()
        .expect("carnet dev-token");
    let token = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .trim()
        .to_string();
    Server { child, base, token }
}

fn get_body(base: &str, token: &str, path: &str) -> Option<Vec<u8>> {
    // A plain GET through the same raw client, keeping the body.
    let rest = base.trim_start_matches("http://");
    let (host, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(host).ok()?;
    write!(
        s,
        "GET /{prefix}{path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut all = Vec::new();
    s.read_to_end(&mut all).ok()?;
    let split = all.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    Some(all[split..].to_vec())
}

/// Findings, each written to its own file as soon as it is found (a run stopped early
/// keeps what it found).
struct Findings {
    dir: PathBuf,
    seed: u64,
    all: Mutex<Vec<String>>,
}

impl Findings {
    fn push(&self, text: String) {
        let mut all = self.all.lock().unwrap();
        let _ = std::fs::write(
            self.dir
                .join(format!("finding-{}-{}.txt", self.seed, all.len())),
            &text,
        );
        all.push(text);
    }
}

fn main() {
    let args = parse_args();
    let data =
        std::env::temp_dir().join(format!("carnet-fuzz-{}-{}", std::process::id(), args.seed));
    std::fs::create_dir_all(&data).expect("data dir");
    std::fs::create_dir_all(&args.findings).expect("findings dir");
    let (seeds, xml_seeds) = load_seeds(&args.examples);
    println!(
        "carnet-fuzz: seed {}, {} cases, {} threads, {} seed resources, data in {}",
        args.seed,
        args.cases,
        args.threads,
        seeds.len(),
        data.display()
    );
    let mut server = start_server(&args, &data);
    let pid = server.child.id();

    // Resources that exist (reads, updates and patches aim at them); sentinels are only
    // read, and must be unchanged at the end.
    let mut known: Vec<(String, String)> = Vec::new();
    let mut client = HttpClient::new(&server.base, &server.token);
    let mut sentinels: Vec<(String, Vec<u8>)> = Vec::new();
    for (i, seed) in seeds.iter().enumerate() {
        let Some(t) = seed.get("resourceType").and_then(Value::as_str) else {
            continue;
        };
        let case = Case {
            kind: "setup",
            method: "POST".into(),
            target: format!("/{t}"),
            headers: vec![("Content-Type".into(), b"application/fhir+json".to_vec())],
            body: serde_json::to_vec(seed).unwrap_or_default(),
        };
        if let Sent::Status(201, _) = client.send(&case) {
            // The id is read back from the type's history (newest first).
            if let Some(body) = get_body(
                &server.base,
                &server.token,
                &format!("/{t}/_history?_count=1"),
            ) {
                let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                if let Some(id) = v.pointer("/entry/0/resource/id").and_then(Value::as_str) {
                    if i % 5 == 0 {
                        let path = format!("/{t}/{id}");
                        if let Some(b) = get_body(&server.base, &server.token, &path) {
                            sentinels.push((path, b));
                        }
                    } else {
                        known.push((t.to_string(), id.to_string()));
                    }
                }
            }
        }
    }
    println!(
        "filed {} resources, {} sentinels",
        known.len(),
        sentinels.len()
    );

    let next = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let errors5xx = Arc::new(AtomicU64::new(0));
    let busy = Arc::new(AtomicU64::new(0));
    let dropped = Arc::new(AtomicU64::new(0));
    let by_class = Arc::new(Mutex::new(std::collections::BTreeMap::<u16, u64>::new()));
    let crashed = Arc::new(AtomicBool::new(false));
    let findings = Arc::new(Findings {
        dir: args.findings.clone(),
        seed: args.seed,
        all: Mutex::new(Vec::new()),
    });
    let started = Instant::now();
    let mut handles = Vec::new();
    for t in 0..args.threads {
        let busy = busy.clone();
        let (next, done, errors5xx, dropped, by_class, crashed, findings) = (
            next.clone(),
            done.clone(),
            errors5xx.clone(),
            dropped.clone(),
            by_class.clone(),
            crashed.clone(),
            findings.clone(),
        );
        let mut gen = Generator::new(
            args.seed.wrapping_mul(1000).wrapping_add(t as u64),
            seeds.clone(),
            xml_seeds.clone(),
        );
        gen.known = known.clone();
        let mut client = HttpClient::new(&server.base, &server.token);
        let addr = server
            .base
            .trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap_or_default()
            .to_string();
        let total = args.cases;
        handles.push(std::thread::spawn(move || {
            while !crashed.load(Ordering::Relaxed) {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= total {
                    break;
                }
                let case = gen.case();
                let t0 = Instant::now();
                let sent = client.send(&case);
                let took = t0.elapsed();
                match &sent {
                    Sent::Status(s, _) => {
                        *by_class.lock().unwrap().entry(s / 100 * 100).or_default() += 1;
                        if *s == 503 {
                            // The database said it is busy: an honest answer, counted apart.
                            busy.fetch_add(1, Ordering::Relaxed);
                        } else if *s >= 500 {
                            errors5xx.fetch_add(1, Ordering::Relaxed);
                            findings.push(format!(
                                "5xx ({s}) case {n} of thread {t}:\n{}",
                                case.describe(2000)
                            ));
                        }
                    }
                    Sent::Failed(e) if e.starts_with(carnet_fuzz::EARLY) => {
                        *by_class.lock().unwrap().entry(0).or_default() += 1;
                    }
                    Sent::Failed(e) => {
                        dropped.fetch_add(1, Ordering::Relaxed);
                        findings.push(format!(
                            "no answer ({e}) case {n} of thread {t}:\n{}",
                            case.describe(2000)
                        ));
                        // Is the server still there?
                        if std::net::TcpStream::connect(addr.as_str()).is_err() {
                            crashed.store(true, Ordering::Relaxed);
                        }
                    }
                }
                if took > Duration::from_secs(10) {
                    findings.push(format!(
                        "slow ({:.1} s) case {n} of thread {t}:\n{}",
                        took.as_secs_f64(),
                        case.describe(500)
                    ));
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let mut last_print = Instant::now();
    let mut peak_rss = 0;
    while handles.iter().any(|h| !h.is_finished()) {
        std::thread::sleep(Duration::from_millis(200));
        if let Ok(Some(status)) = server.child.try_wait() {
            crashed.store(true, Ordering::Relaxed);
            findings.push(format!("CRASH: the server exited ({status})"));
            break;
        }
        let (rss, hwm) = rss_kib(pid);
        peak_rss = peak_rss.max(hwm);
        if last_print.elapsed() > Duration::from_secs(10) {
            last_print = Instant::now();
            let d = done.load(Ordering::Relaxed);
            println!(
                "{d} cases, {:.0}/s, 5xx {}, dropped {}, server RSS {} MiB (peak {} MiB)",
                d as f64 / started.elapsed().as_secs_f64(),
                errors5xx.load(Ordering::Relaxed),
                dropped.load(Ordering::Relaxed),
                rss / 1024,
                hwm / 1024
            );
        }
    }
    for h in handles {
        let _ = h.join();
    }
    let alive = server.child.try_wait().ok().flatten().is_none();
    let (rss, hwm) = rss_kib(pid);
    peak_rss = peak_rss.max(hwm);
    let mut changed = 0;
    if alive {
        for (path, before) in &sentinels {
            if get_body(&server.base, &server.token, path).as_deref() != Some(before.as_slice()) {
                changed += 1;
                findings.push(format!("sentinel {path} changed or unreadable"));
            }
        }
    }
    let d = done.load(Ordering::Relaxed);
    let found = findings.all.lock().unwrap().clone();
    println!(
        "carnet-fuzz: {d} cases in {:.0} s ({:.0}/s), statuses {:?}",
        started.elapsed().as_secs_f64(),
        d as f64 / started.elapsed().as_secs_f64(),
        by_class.lock().unwrap()
    );
    println!(
        "5xx: {} (and {} 503 busy), dropped connections: {}, crashes: {}, sentinels changed: {changed}/{}, server RSS {} MiB at the end, peak {} MiB",
        errors5xx.load(Ordering::Relaxed),
        busy.load(Ordering::Relaxed),
        dropped.load(Ordering::Relaxed),
        if alive { 0 } else { 1 },
        sentinels.len(),
        rss / 1024,
        peak_rss / 1024
    );
    if !found.is_empty() {
        println!(
            "{} findings written to {}",
            found.len(),
            args.findings.display()
        );
    }
    let _ = server.child.kill();
    let _ = server.child.wait();
    if found.is_empty() {
        let _ = std::fs::remove_dir_all(&data);
    }
    std::process::exit(if found.is_empty() { 0 } else { 1 });
}
