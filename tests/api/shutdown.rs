//! The `carnet` binary itself: `--help`, and a graceful shutdown on SIGTERM that finishes
//! the request in flight.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

#[test]
fn help_documents_the_serve_flags_and_their_environment() {
    let out = Command::new(env!("CARGO_BIN_EXE_carnet"))
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--listen",
        "CARNET_LISTEN",
        "--data-dir",
        "CARNET_DATA_DIR",
        "--database-url",
        "CARNET_DATABASE_URL",
        "--base-url",
        "CARNET_BASE_URL",
        "--max-body-bytes",
    ] {
        assert!(text.contains(flag), "carnet serve --help lacks {flag}");
    }
}

#[test]
fn sigterm_finishes_the_request_in_flight_then_exits() {
    let dir = tempfile::tempdir().unwrap();
    // The token `carnet dev-token` prints on its last line, for `carnet serve --dev`.
    let out = Command::new(env!("CARGO_BIN_EXE_carnet"))
        .args(["dev-token", "--system", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    let token = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .last()
        .unwrap()
        .to_string();
    let mut child = Command::new(env!("CARGO_BIN_EXE_carnet"))
        .args(["serve", "--dev", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .env("CARNET_LOG_FORMAT", "json")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().expect("server output").unwrap();
        if line.contains("carnet starting") {
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            break v["listen"].as_str().unwrap().to_string();
        }
    };
    // Keep draining the log so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    let body =
        serde_json::json!({"resourceType": "Patient", "name": [{"family": "EnVol"}]}).to_string();
    let mut stream = TcpStream::connect(&addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    write!(stream, "POST /fhir/Patient HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/fhir+json\r\nAuthorization: Bearer {token}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len()).unwrap();
    let (first, rest) = body.split_at(10);
    stream.write_all(first.as_bytes()).unwrap();
    stream.flush().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    std::thread::sleep(Duration::from_millis(300));
    stream.write_all(rest.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(
        response.starts_with("HTTP/1.1 201"),
        "the in-flight request completes: {response}"
    );
    let exit = child.wait().unwrap();
    assert!(exit.success(), "carnet exits cleanly after SIGTERM: {exit}");
}
