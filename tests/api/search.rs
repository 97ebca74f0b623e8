//! Search battery: a generated data set (accented names, dates at every precision,
//! references in every form), and for each query the expected ids computed here, by this
//! test's own rules, compared with what the server answers across all its pages.

// The date expectations keep the shape of the spec's definitions (gt OR eq), unsimplified.
#![allow(clippy::nonminimal_bool)]

use crate::both_backends;
use crate::helpers::*;
use serde_json::{json, Value};
use std::collections::BTreeSet;

/// A small deterministic generator (no randomness between runs).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[(self.next() as usize) % items.len()]
    }
}

const FAMILIES: &[&str] = &[
    "Lévêque",
    "Leveque",
    "Dupré",
    "Dupont",
    "Müller",
    "Garçon",
    "Éluard",
    "Lefèvre",
    "Martin",
    "Zoë-Bernard",
];
const GIVENS: &[&str] = &[
    "Hélène", "Helene", "Zoé", "Noël", "Anaïs", "Jean", "Chloé", "Élodie",
];

/// This test's own folding: lower case, the accents of French names removed.
fn fold(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            'é' | 'è' | 'ê' | 'ë' | 'É' | 'È' | 'Ê' | 'Ë' => 'e',
            'à' | 'â' | 'ä' | 'À' | 'Â' => 'a',
            'ç' | 'Ç' => 'c',
            'ï' | 'î' | 'Ï' | 'Î' => 'i',
            'ô' | 'ö' | 'Ô' => 'o',
            'ü' | 'û' | 'ù' | 'Ü' => 'u',
            other => other.to_ascii_lowercase(),
        })
        .collect()
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
fn days(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// The [start, end) day range a date of any precision covers, in days.
fn range(date: &str) -> (i64, i64) {
    let p: Vec<i64> = date.split('-').map(|x| x.parse().unwrap()).collect();
    match p.len() {
        1 => (days(p[0], 1, 1), days(p[0] + 1, 1, 1)),
        2 => (
            days(p[0], p[1], 1),
            if p[1] == 12 {
                days(p[0] + 1, 1, 1)
            } else {
                days(p[0], p[1] + 1, 1)
            },
        ),
        _ => (days(p[0], p[1], p[2]), days(p[0], p[1], p[2]) + 1),
    }
}

struct Person {
    id: String,
    family: String,
    given: String,
    gender: &'static str,
    birth: String,
    nir: String,
    gp: String,
}

struct Doc {
    id: String,
    patient: String,
    date_day: (i64, i64, i64),
    status: &'static str,
}

/// Every page of a search, following `next` links; the ids of the matches.
async fn all_ids(app: &TestApp, query: &str) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    let mut url = app.url(query);
    loop {
        let res = app
            .client
            .get(&url)
            .header("Prefer", "handling=strict")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{query}");
        let page: Value = res.json().await.unwrap();
        assert_eq!(page["type"], "searchset");
        for e in page["entry"].as_array().cloned().unwrap_or_default() {
            assert_eq!(e["search"]["mode"], "match");
            assert!(
                ids.insert(e["resource"]["id"].as_str().unwrap().to_string()),
                "{query}: an entry seen twice"
            );
        }
        match page["link"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["relation"] == "next")
        {
            Some(next) => url = next["url"].as_str().unwrap().to_string(),
            None => break,
        }
    }
    ids
}

async fn search_battery_matches_independently_computed_results(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut rng = Lcg(7);
    let practitioners: Vec<String> = (0..6).map(|i| format!("dr{i}")).collect();
    let mut entries = Vec::new();
    for p in &practitioners {
        entries.push(json!({"resource": {"resourceType": "Practitioner", "id": p, "name": [{"family": format!("Docteur {p}")}]},
            "request": {"method": "PUT", "url": format!("Practitioner/{p}")}}));
    }
    let mut people = Vec::new();
    for i in 0..120 {
        let (y, m, d) = (
            1950 + (rng.next() % 60) as i64,
            1 + (rng.next() % 12) as i64,
            1 + (rng.next() % 28) as i64,
        );
        let birth = match i % 3 {
            0 => format!("{y}"),
            1 => format!("{y}-{m:02}"),
            _ => format!("{y}-{m:02}-{d:02}"),
        };
        let gp = rng.pick(&practitioners).clone();
        let person = Person {
            id: format!("pat{i}"),
            family: rng.pick(FAMILIES).to_string(),
            given: rng.pick(GIVENS).to_string(),
            gender: ["female", "male", "other"][(rng.next() % 3) as usize],
            birth,
            nir: format!("{}", 1_000_000_000_000u64 + i as u64),
            gp: gp.clone(),
        };
        // References in every form: relative, absolute to this server, typed bare id.
        let gp_ref = match i % 3 {
            0 => json!({"reference": format!("Practitioner/{gp}")}),
            1 => json!({"reference": app.url(&format!("Practitioner/{gp}"))}),
            _ => json!({"reference": format!("Practitioner/{gp}"), "type": "Practitioner"}),
        };
        entries.push(
            json!({"resource": {"resourceType": "Patient", "id": person.id,
            "identifier": [{"system": "urn:oid:1.2.250.1.213.1.4.8", "value": person.nir}],
            "name": [{"family": person.family, "given": [person.given]}], "gender": person.gender,
            "birthDate": person.birth, "generalPractitioner": [gp_ref]},
            "request": {"method": "PUT", "url": format!("Patient/{}", person.id)}}),
        );
        people.push(person);
    }
    let mut docs = Vec::new();
    for i in 0..150 {
        let patient = people[(rng.next() as usize) % 30].id.clone();
        let day = (
            2023 + (rng.next() % 2) as i64,
            1 + (rng.next() % 12) as i64,
            1 + (rng.next() % 28) as i64,
        );
        let doc = Doc {
            id: format!("doc{i}"),
            patient,
            date_day: day,
            status: ["current", "superseded"][(rng.next() % 2) as usize],
        };
        entries.push(json!({"resource": {"resourceType": "DocumentReference", "id": doc.id, "status": doc.status,
            "subject": {"reference": format!("Patient/{}", doc.patient)},
            "date": format!("{}-{:02}-{:02}T10:30:00+02:00", day.0, day.1, day.2),
            "content": [{"attachment": {"contentType": "application/pdf"}}]},
            "request": {"method": "PUT", "url": format!("DocumentReference/{}", doc.id)}}));
        docs.push(doc);
    }
    let res = app
        .post(
            "",
            &json!({"resourceType": "Bundle", "type": "transaction", "entry": entries}),
        )
        .await;
    assert_eq!(res.status(), 200);

    let ids = |f: &dyn Fn(&Person) -> bool| {
        people
            .iter()
            .filter(|p| f(p))
            .map(|p| p.id.clone())
            .collect::<BTreeSet<_>>()
    };
    let nonempty = std::cell::Cell::new(0usize);
    let check = |expected: BTreeSet<String>, got: BTreeSet<String>, q: &str| {
        if !expected.is_empty() {
            nonempty.set(nonempty.get() + 1);
        }
        assert_eq!(got, expected, "{q}");
    };
    // Strings: starts-with, accent- and case-insensitive; :exact; :contains.
    for (q, prefix) in [
        ("Patient?family=lev", "lev"),
        ("Patient?family=LÉV", "lev"),
        ("Patient?family=dup", "dup"),
        ("Patient?family=zoe", "zoe"),
    ] {
        check(
            ids(&|p| fold(&p.family).starts_with(prefix)),
            all_ids(&app, &format!("{q}&_count=7")).await,
            q,
        );
    }
    check(
        ids(&|p| p.given == "Hélène"),
        all_ids(&app, "Patient?given:exact=H%C3%A9l%C3%A8ne").await,
        "given:exact",
    );
    check(
        ids(&|p| fold(&p.family).contains("ev") || fold(&p.given).contains("ev")),
        all_ids(&app, "Patient?name:contains=ev").await,
        "name:contains",
    );
    check(
        ids(&|p| fold(&p.given).starts_with("helene")),
        all_ids(&app, "Patient?given=helene").await,
        "given=helene",
    );
    // Tokens: code, system|code, :not, OR with commas, AND with repeats.
    check(
        ids(&|p| p.gender == "female"),
        all_ids(&app, "Patient?gender=female").await,
        "gender",
    );
    check(
        ids(&|p| p.gender != "male"),
        all_ids(&app, "Patient?gender:not=male").await,
        "gender:not",
    );
    check(
        ids(&|p| p.gender == "female" || p.gender == "other"),
        all_ids(&app, "Patient?gender=female,other").await,
        "gender OR",
    );
    let nir = &people[17].nir;
    check(
        ids(&|p| &p.nir == nir),
        all_ids(
            &app,
            &format!("Patient?identifier=urn:oid:1.2.250.1.213.1.4.8|{nir}"),
        )
        .await,
        "identifier",
    );
    check(
        BTreeSet::new(),
        all_ids(&app, &format!("Patient?identifier=urn:oid:9.9|{nir}")).await,
        "identifier other system",
    );
    check(
        ids(&|p| p.gender == "female" && fold(&p.family).starts_with("lev")),
        all_ids(&app, "Patient?gender=female&family=lev").await,
        "AND",
    );
    // Dates at every precision, with prefixes.
    for (q, test) in [
        (
            "birthdate=1980",
            Box::new(|r: (i64, i64)| {
                let v = range("1980");
                r.0 >= v.0 && r.1 <= v.1
            }) as Box<dyn Fn((i64, i64)) -> bool>,
        ),
        (
            "birthdate=1980-05",
            Box::new(|r: (i64, i64)| {
                let v = range("1980-05");
                r.0 >= v.0 && r.1 <= v.1
            }),
        ),
        (
            "birthdate=ge1990-06",
            Box::new(|r: (i64, i64)| {
                let v = range("1990-06");
                r.1 > v.1 || (r.0 >= v.0 && r.1 <= v.1)
            }),
        ),
        (
            "birthdate=lt1960",
            Box::new(|r: (i64, i64)| r.0 < range("1960").0),
        ),
        (
            "birthdate=gt2000-01-15",
            Box::new(|r: (i64, i64)| r.1 > range("2000-01-15").1),
        ),
        (
            "birthdate=sa1999",
            Box::new(|r: (i64, i64)| r.0 >= range("1999").1),
        ),
        (
            "birthdate=eb1955-03",
            Box::new(|r: (i64, i64)| r.1 <= range("1955-03").0),
        ),
        (
            "birthdate=ne1970",
            Box::new(|r: (i64, i64)| {
                let v = range("1970");
                !(r.0 >= v.0 && r.1 <= v.1)
            }),
        ),
    ] {
        check(
            ids(&|p| test(range(&p.birth))),
            all_ids(&app, &format!("Patient?{q}")).await,
            q,
        );
    }
    // References: relative, bare id, absolute URL to this server, chained type modifier.
    let gp = "dr2";
    for q in [
        format!("Patient?general-practitioner=Practitioner/{gp}"),
        format!("Patient?general-practitioner={gp}"),
        format!(
            "Patient?general-practitioner={}",
            app.url(&format!("Practitioner/{gp}"))
        ),
        format!("Patient?general-practitioner:Practitioner={gp}"),
    ] {
        check(ids(&|p| p.gp == gp), all_ids(&app, &q).await, &q);
    }
    // Patient-scoped documents in a date range (dates with a time zone: 10:30+02:00 is 08:30Z).
    let patient = &docs[0].patient;
    let expected: BTreeSet<String> = docs
        .iter()
        .filter(|d| {
            &d.patient == patient
                && (d.date_day.0, d.date_day.1) >= (2023, 6)
                && d.date_day.0 == 2023
        })
        .map(|d| d.id.clone())
        .collect();
    check(
        expected,
        all_ids(
            &app,
            &format!("DocumentReference?patient=Patient/{patient}&date=ge2023-06&date=lt2024"),
        )
        .await,
        "documents in a range",
    );
    let expected: BTreeSet<String> = docs
        .iter()
        .filter(|d| d.status == "current" && &d.patient == patient)
        .map(|d| d.id.clone())
        .collect();
    check(
        expected,
        all_ids(
            &app,
            &format!("DocumentReference?subject={patient}&status=current"),
        )
        .await,
        "subject + status",
    );
    // Chained parameters and _has, one level.
    let owner = people.iter().find(|p| &p.id == patient).unwrap();
    let expected: BTreeSet<String> = docs
        .iter()
        .filter(|d| &d.patient == patient)
        .map(|d| d.id.clone())
        .collect();
    check(
        expected,
        all_ids(
            &app,
            &format!(
                "DocumentReference?patient.identifier=urn:oid:1.2.250.1.213.1.4.8|{}",
                owner.nir
            ),
        )
        .await,
        "patient.identifier",
    );
    let family_of = |id: &str| {
        people
            .iter()
            .find(|p| p.id == id)
            .map(|p| fold(&p.family))
            .unwrap_or_default()
    };
    let expected: BTreeSet<String> = docs
        .iter()
        .filter(|d| family_of(&d.patient).starts_with("dup"))
        .map(|d| d.id.clone())
        .collect();
    check(
        expected,
        all_ids(&app, "DocumentReference?subject:Patient.family=dup").await,
        "subject:Patient.family",
    );
    let expected: BTreeSet<String> = people
        .iter()
        .filter(|p| {
            docs.iter()
                .any(|d| d.patient == p.id && d.status == "superseded")
        })
        .map(|p| p.id.clone())
        .collect();
    check(
        expected,
        all_ids(
            &app,
            "Patient?_has:DocumentReference:subject:status=superseded",
        )
        .await,
        "_has",
    );
    let expected: BTreeSet<String> = people
        .iter()
        .filter(|p| p.gp == "dr1" && fold(&p.family).starts_with("l"))
        .map(|p| p.id.clone())
        .collect();
    check(
        expected,
        all_ids(
            &app,
            "Patient?general-practitioner.name=docteur%20dr1&family=l",
        )
        .await,
        "chain + AND",
    );
    // _include, _include:iterate and _revinclude: each brings exactly the related resources.
    let doc0 = &docs[0];
    let (_, b) = app.get_json(&format!("DocumentReference?_id={}&_include=DocumentReference:subject&_include:iterate=Patient:general-practitioner", doc0.id)).await;
    let mode = |b: &Value, m: &str| {
        b["entry"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["search"]["mode"] == m)
            .map(|e| {
                format!(
                    "{}/{}",
                    e["resource"]["resourceType"].as_str().unwrap(),
                    e["resource"]["id"].as_str().unwrap()
                )
            })
            .collect::<BTreeSet<_>>()
    };
    assert_eq!(
        mode(&b, "match"),
        [format!("DocumentReference/{}", doc0.id)]
            .into_iter()
            .collect()
    );
    assert_eq!(
        mode(&b, "include"),
        [
            format!("Patient/{}", owner.id),
            format!("Practitioner/{}", owner.gp)
        ]
        .into_iter()
        .collect()
    );
    let (_, b) = app
        .get_json(&format!(
            "Patient?_id={}&_revinclude=DocumentReference:subject",
            owner.id
        ))
        .await;
    let expected: BTreeSet<String> = docs
        .iter()
        .filter(|d| d.patient == owner.id)
        .map(|d| format!("DocumentReference/{}", d.id))
        .collect();
    assert!(!expected.is_empty());
    assert_eq!(mode(&b, "include"), expected);
    assert_eq!(b["total"], 1, "included resources are not counted in total");
    // _elements, _total=none, _summary=count.
    let (_, b) = app.get_json("Patient?_id=pat3&_elements=gender").await;
    let r = &b["entry"][0]["resource"];
    assert!(r.get("name").is_none() && r.get("gender").is_some());
    assert!(r["meta"]["tag"].to_string().contains("SUBSETTED"));
    let (_, b) = app.get_json("Patient?gender=female&_total=none").await;
    assert!(b.get("total").is_none());
    let (_, b) = app.get_json("Patient?gender=female&_summary=count").await;
    assert_eq!(b["total"], ids(&|p| p.gender == "female").len());
    assert!(b.get("entry").is_none());
    // Compartment search: the documents of one patient, with a further filter.
    let expected: BTreeSet<String> = docs
        .iter()
        .filter(|d| d.patient == owner.id && d.status == "current")
        .map(|d| d.id.clone())
        .collect();
    check(
        expected,
        all_ids(
            &app,
            &format!("Patient/{}/DocumentReference?status=current", owner.id),
        )
        .await,
        "compartment",
    );
    assert_eq!(
        app.get(&format!("Practitioner/{}/DocumentReference", owner.gp))
            .await
            .status(),
        404,
        "only the Patient compartment"
    );
    // _sort on a parameter, descending, with a stable tie-break on id.
    let (_, b) = app.get_json("Patient?_sort=-birthdate,_id&_count=5").await;
    let got: Vec<String> = b["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"]["id"].as_str().unwrap().to_string())
        .collect();
    let mut by_birth: Vec<&Person> = people.iter().collect();
    by_birth.sort_by(|a, b| {
        range(&b.birth)
            .1
            .cmp(&range(&a.birth).1)
            .then(a.id.cmp(&b.id))
    });
    assert_eq!(
        got,
        by_birth[..5]
            .iter()
            .map(|p| p.id.clone())
            .collect::<Vec<_>>(),
        "_sort=-birthdate,_id"
    );
    // Period ranges: ge/le by the spec's definitions (a period from 20 May to 10 June).
    app.put("DocumentReference/period-doc", &json!({"resourceType": "DocumentReference", "id": "period-doc", "status": "current",
        "context": {"period": {"start": "1990-05-20", "end": "1990-06-10"}}, "content": [{"attachment": {"contentType": "text/plain"}}]})).await;
    assert!(
        !all_ids(&app, "DocumentReference?period=ge1990-06")
            .await
            .contains("period-doc"),
        "ge: not after June, not within June"
    );
    assert!(
        all_ids(&app, "DocumentReference?period=le1990-06")
            .await
            .contains("period-doc"),
        "le: starts before June"
    );
    assert!(
        all_ids(&app, "DocumentReference?period=ap1990-06")
            .await
            .contains("period-doc"),
        "ap: overlaps June"
    );
    // System-level search over several types, and modifiers :missing, :of-type, :text.
    let expected: BTreeSet<String> = ["pat5".to_string(), "dr3".to_string()]
        .into_iter()
        .collect();
    check(
        expected,
        all_ids(&app, "?_type=Patient,Practitioner&_id=pat5,dr3,doc1").await,
        "_type",
    );
    let res = app
        .client
        .get(app.url("?_type=Patient,Organization&family=x"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        400,
        "family is not a parameter of Organization"
    );
    check(
        people.iter().map(|p| p.id.clone()).collect(),
        all_ids(&app, "Patient?general-practitioner:missing=false").await,
        ":missing=false",
    );
    check(
        BTreeSet::new(),
        all_ids(&app, "Patient?general-practitioner:missing=true").await,
        ":missing=true",
    );
    // The battery is only meaningful if most queries expect something.
    assert!(
        nonempty.get() >= 25,
        "only {} queries expected a non-empty result",
        nonempty.get()
    );
    // _id, _count=0 (total only), _sort.
    check(
        ["pat1", "pat2"].iter().map(|s| s.to_string()).collect(),
        all_ids(&app, "Patient?_id=pat1,pat2").await,
        "_id",
    );
    let (_, counted) = app.get_json("Patient?gender=female&_count=0").await;
    assert_eq!(counted["total"], ids(&|p| p.gender == "female").len());
    assert!(counted.get("entry").is_none());
    let (_, sorted) = app.get_json("Patient?_sort=-_id&_count=3").await;
    let first: Vec<&str> = sorted["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"]["id"].as_str().unwrap())
        .collect();
    let mut all: Vec<&str> = people.iter().map(|p| p.id.as_str()).collect();
    all.sort();
    all.reverse();
    assert_eq!(first, all[..3].to_vec(), "_sort=-_id");
    // Unknown parameters: ignored and reported by default, refused with handling=strict.
    let (status, lenient) = app.get_json("Patient?colour=blue&gender=male").await;
    assert_eq!(status, 200);
    assert_eq!(lenient["total"], ids(&|p| p.gender == "male").len());
    assert!(lenient
        .to_string()
        .contains("unknown search parameter 'colour'"));
    // POST _search answers the same as GET.
    let res = app
        .client
        .post(app.url("Patient/_search"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("family=lev&_count=500")
        .send()
        .await
        .unwrap();
    let posted: Value = res.json().await.unwrap();
    assert_eq!(
        posted["total"],
        ids(&|p| fold(&p.family).starts_with("lev")).len()
    );
}

async fn paging_sees_each_initial_match_once_while_others_write(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut entries = Vec::new();
    for i in 0..90 {
        entries.push(json!({"resource": {"resourceType": "Patient", "id": format!("p{i:03}"), "name": [{"family": "Pagination"}]},
            "request": {"method": "PUT", "url": format!("Patient/p{i:03}")}}));
    }
    assert_eq!(
        app.post(
            "",
            &json!({"resourceType": "Bundle", "type": "transaction", "entry": entries})
        )
        .await
        .status(),
        200
    );
    let initial: BTreeSet<String> = (0..90).map(|i| format!("p{i:03}")).collect();
    // Writes that start once the first page is served (when the result is fixed).
    let start_writer = |client: reqwest::Client, base: String| {
        actix_web::rt::spawn(async move {
            for i in 0..40 {
                let body = json!({"resourceType": "Patient", "name": [{"family": "Pagination"}]});
                client
                    .post(format!("{base}/Patient"))
                    .header("Content-Type", FHIR_JSON)
                    .body(body.to_string())
                    .send()
                    .await
                    .unwrap();
                let id = format!("p{:03}", (i * 7) % 90);
                let upd = json!({"resourceType": "Patient", "id": id, "name": [{"family": "Pagination"}], "active": i % 2 == 0});
                client
                    .put(format!("{base}/Patient/{id}"))
                    .header("Content-Type", FHIR_JSON)
                    .body(upd.to_string())
                    .send()
                    .await
                    .unwrap();
            }
        })
    };
    let mut writer = None;
    let mut seen: Vec<String> = Vec::new();
    let mut url = app.url("Patient?family=pagination&_count=7&_sort=-_lastUpdated");
    loop {
        let page: Value = app
            .client
            .get(&url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for e in page["entry"].as_array().cloned().unwrap_or_default() {
            seen.push(e["resource"]["id"].as_str().unwrap().to_string());
        }
        if writer.is_none() {
            writer = Some(start_writer(app.client.clone(), app.base.clone()));
        }
        match page["link"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["relation"] == "next")
        {
            Some(next) => url = next["url"].as_str().unwrap().to_string(),
            None => break,
        }
        actix_web::rt::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    writer.expect("the writer ran").await.unwrap();
    let unique: BTreeSet<String> = seen.iter().cloned().collect();
    assert_eq!(unique.len(), seen.len(), "no entry seen twice");
    assert_eq!(unique, initial, "every initial match seen, and only those");
    // A tampered or unknown page token is refused.
    let res = app
        .client
        .get(app.url("?_getpages=not-a-search&_getpagesoffset=0&_count=7"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 410);
}

/// `_summary`, `_elements` and `_include` shape every page of a result alike, not just the first.
async fn summary_elements_and_includes_hold_on_every_page(backend: Backend) {
    let app = spawn_app(backend).await;
    let gp = app
        .create(&json!({"resourceType": "Practitioner", "name": [{"family": "Médecin"}]}))
        .await;
    let gp_ref = format!("Practitioner/{}", gp["id"].as_str().unwrap());
    for i in 0..5 {
        app.create(&json!({
            "resourceType": "Patient",
            "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">Patient</div>"},
            "identifier": [{"system": "urn:carnet:test", "value": format!("shape-{i}")}],
            "name": [{"family": "Forme", "given": [format!("P{i}")]}],
            "maritalStatus": {"text": "M"},
            "contact": [{"name": {"family": "Proche"}}],
            "generalPractitioner": [{"reference": gp_ref}],
        }))
        .await;
    }
    let mut url = app
        .url("Patient?family=forme&_count=2&_summary=true&_include=Patient:general-practitioner");
    let mut pages = 0;
    let mut matches = 0;
    let mut second_page = None;
    loop {
        let b: Value = app
            .client
            .get(&url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        pages += 1;
        if pages == 2 {
            second_page = Some(url.clone());
        }
        let entries = b["entry"]
            .as_array()
            .unwrap_or_else(|| panic!("page {pages}: {b}"));
        for e in entries.iter().filter(|e| e["search"]["mode"] == "match") {
            matches += 1;
            let r = &e["resource"];
            assert!(
                r.get("name").is_some() && r.get("identifier").is_some(),
                "page {pages}: {r}"
            );
            assert!(
                r.get("text").is_none()
                    && r.get("maritalStatus").is_none()
                    && r.get("contact").is_none(),
                "page {pages}: non-summary elements kept: {r}"
            );
            assert!(r["meta"]["tag"].to_string().contains("SUBSETTED"));
        }
        let included: Vec<_> = entries
            .iter()
            .filter(|e| e["search"]["mode"] == "include")
            .map(|e| format!("Practitioner/{}", e["resource"]["id"].as_str().unwrap()))
            .collect();
        assert_eq!(
            included,
            vec![gp_ref.clone()],
            "page {pages} brings its practitioner"
        );
        match b["link"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["relation"] == "next")
        {
            Some(l) => url = l["url"].as_str().unwrap().to_string(),
            None => break,
        }
    }
    assert_eq!((pages, matches), (3, 5));
    // A page link is used as given: another size or an offset off the page grid is refused.
    let second_page = second_page.unwrap();
    assert!(
        second_page.contains("_getpagesoffset=2&_count=2"),
        "{second_page}"
    );
    for edited in [
        second_page.replace("_getpagesoffset=2", "_getpagesoffset=1"),
        second_page.replace("_count=2", "_count=5"),
        second_page.replace("_getpagesoffset=2", "_getpagesoffset=9223372036854775807"),
        second_page.replace("_getpagesoffset=2", "_getpagesoffset=-2"),
    ] {
        let res = app.client.get(&edited).send().await.unwrap();
        assert_eq!(res.status(), 400, "{edited}");
        let b: Value = res.json().await.unwrap();
        assert_eq!(b["resourceType"], "OperationOutcome");
    }
    assert_eq!(
        app.client.get(&second_page).send().await.unwrap().status(),
        200
    );
    // text: narrative and mandatory elements only; data: everything but the narrative.
    let (_, b) = app
        .get_json("Patient?family=forme&_summary=text&_count=1")
        .await;
    let r = &b["entry"][0]["resource"];
    assert!(r.get("text").is_some() && r.get("name").is_none(), "{r}");
    let (_, b) = app
        .get_json("Patient?family=forme&_summary=data&_count=1")
        .await;
    let r = &b["entry"][0]["resource"];
    assert!(r.get("text").is_none() && r.get("contact").is_some(), "{r}");
    // Nonsense is refused, whatever the handling.
    for q in [
        "Patient?_summary=maybe",
        "Patient?_summary=true&_elements=name",
    ] {
        let (status, b) = app.get_json(q).await;
        assert_eq!(status, 400, "{q}");
        assert_eq!(b["resourceType"], "OperationOutcome");
    }
}

/// An absolute reference to another server never stands for a resource of this one, and a
/// chained `_lastUpdated` tests the referenced resource.
async fn references_to_other_servers_are_not_local(backend: Backend) {
    let app = spawn_app(backend).await;
    let patient = app
        .create(&json!({"resourceType": "Patient", "name": [{"family": "Ailleurs"}]}))
        .await;
    let pid = patient["id"].as_str().unwrap();
    let patient_updated = patient["meta"]["lastUpdated"].as_str().unwrap().to_string();
    actix_web::rt::time::sleep(std::time::Duration::from_millis(5)).await;
    let doc = |subject: String| {
        json!({"resourceType": "DocumentReference", "status": "current",
            "content": [{"attachment": {"contentType": "text/plain", "url": "http://example.org/x"}}],
            "subject": {"reference": subject}})
    };
    let here = app.create(&doc(format!("Patient/{pid}"))).await;
    let elsewhere_url = format!("https://other.example/fhir/Patient/{pid}");
    let elsewhere = app.create(&doc(elsewhere_url.clone())).await;
    let (here, elsewhere) = (
        here["id"].as_str().unwrap().to_string(),
        elsewhere["id"].as_str().unwrap().to_string(),
    );
    let set = |ids: &[&String]| ids.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    assert_eq!(
        all_ids(&app, &format!("Patient/{pid}/DocumentReference")).await,
        set(&[&here]),
        "compartment"
    );
    assert_eq!(
        all_ids(&app, &format!("DocumentReference?subject=Patient/{pid}")).await,
        set(&[&here])
    );
    assert_eq!(
        all_ids(&app, &format!("DocumentReference?subject={elsewhere_url}")).await,
        set(&[&elsewhere])
    );
    let (_, b) = app
        .get_json(&format!(
            "DocumentReference?_id={elsewhere}&_include=DocumentReference:subject"
        ))
        .await;
    assert_eq!(
        b["entry"].as_array().unwrap().len(),
        1,
        "nothing included: {b}"
    );
    // The patient was last updated before the documents: the chain looks at the patient.
    let at = patient_updated.replace('+', "%2B");
    assert_eq!(
        all_ids(
            &app,
            &format!("DocumentReference?subject:Patient._lastUpdated=gt{at}")
        )
        .await,
        BTreeSet::new()
    );
    assert_eq!(
        all_ids(
            &app,
            &format!("DocumentReference?subject:Patient._lastUpdated=ge{at}")
        )
        .await,
        set(&[&here])
    );
}

both_backends!(
    references_to_other_servers_are_not_local,
    search_battery_matches_independently_computed_results,
    paging_sees_each_initial_match_once_while_others_write,
    summary_elements_and_includes_hold_on_every_page
);
