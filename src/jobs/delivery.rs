//! delivery: sends the notifications of rest-hook Subscriptions. Each Carnet node runs one
//! worker: it claims the deliveries due (a lease, so that two nodes on one PostgreSQL never
//! send the same one at once), POSTs them, drops those the subscriber took (2xx) and
//! schedules the others again with exponential backoff (1 s, 2 s, 4 s… up to an hour), for
//! as long as the Subscription is active: a subscriber that is down gets everything when it
//! is back. It also writes the notices that fell due (the two-week notice of an
//! `INVISIBLE_PATIENT` document).

use crate::fhir::instant;
use crate::repository::{Outgoing, Repository};
use std::time::Duration;

/// How often the queue is looked at (a notification leaves within this of its write).
const POLL: Duration = Duration::from_millis(200);
/// How long a claimed delivery is this node's.
const LEASE_US: i64 = 60_000_000;
/// At most this many deliveries per round.
const BATCH: i64 = 50;
/// How long a subscriber has to answer.
const TIMEOUT: Duration = Duration::from_secs(10);
/// How often pending notices are looked for: a professional's access session, recorded with
/// its trace, becomes the patient's Communication within this (or at once when the patient
/// looks at their notices); a notice due later (the two-week notice) when it falls due.
pub const NOTICE_SWEEP_US: i64 = 200_000;

/// The wait before attempt `attempts + 1`.
pub fn backoff_us(attempts: i32) -> i64 {
    let exp = attempts.clamp(0, 12) as u32;
    (1_000_000i64 << exp).min(3_600_000_000)
}

/// Runs until the task is dropped.
pub async fn run(repo: Repository) {
    let client = match reqwest::Client::builder()
        .timeout(TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "no HTTP client: Subscription notifications are not sent");
            return;
        }
    };
    let mut last_sweep = 0i64;
    loop {
        let now = instant::now_us();
        if now - last_sweep >= NOTICE_SWEEP_US {
            last_sweep = now;
            let r = repo.clone();
            match actix_web::web::block(move || r.write_due_notices(None, now)).await {
                Ok(Ok(n)) if n > 0 => tracing::info!(notices = n, "due notices written"),
                Ok(Err(e)) => tracing::warn!(error = %e, "writing due notices failed"),
                _ => {}
            }
        }
        let r = repo.clone();
        let batch = match actix_web::web::block(move || r.claim_deliveries(LEASE_US, BATCH)).await {
            Ok(Ok(b)) => b,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "reading the notification queue failed");
                Vec::new()
            }
            Err(_) => Vec::new(),
        };
        let full = batch.len() as i64 == BATCH;
        for out in batch {
            let (seq, attempts) = (out.seq, out.attempts);
            let result = send(&client, out).await;
            let r = repo.clone();
            let _ = actix_web::web::block(move || match result {
                Ok(()) => r.delivered(seq),
                Err(why) => {
                    let attempts = attempts + 1;
                    tracing::info!(delivery = seq, attempts, error = %why, "notification not taken; retried later");
                    r.retry_delivery(
                        seq,
                        attempts,
                        instant::now_us() + backoff_us(attempts - 1),
                        &why,
                    )
                }
            })
            .await;
        }
        if !full {
            actix_web::rt::time::sleep(POLL).await;
        }
    }
}

/// One POST to the subscriber; Err says why it was not taken.
async fn send(client: &reqwest::Client, out: Outgoing) -> Result<(), String> {
    let mut req = client.post(&out.endpoint);
    for (name, value) in &out.headers {
        req = req.header(name, value);
    }
    req = match out.body {
        Some((mime, body)) => req.header("Content-Type", mime).body(body),
        None => req,
    };
    match req.send().await {
        Ok(resp) if resp.status().is_success() => Ok(()),
        Ok(resp) => Err(format!("the subscriber answered {}", resp.status())),
        // Without the URL: a subscriber's address may carry a secret.
        Err(e) => Err(format!(
            "the subscriber could not be reached ({})",
            e.without_url()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::backoff_us;

    #[test]
    fn backoff_doubles_up_to_an_hour() {
        assert_eq!(backoff_us(0), 1_000_000);
        assert_eq!(backoff_us(1), 2_000_000);
        assert_eq!(backoff_us(5), 32_000_000);
        assert_eq!(backoff_us(40), 3_600_000_000);
    }
}
