//! carnet-fuzz: hostile inputs for a FHIR server, made from a seed so that every finding
//! can be replayed. The generators start from real resources (the official R4 examples)
//! and damage them the ways attackers and broken clients do: nesting, width, size,
//! control characters and invalid UTF-8, wrong types, truncation, XML entities, odd
//! headers, search parameters, JSON Patches and Bundles.
//!
//! [`Generator::case`] gives one HTTP request; [`HttpClient`] sends raw bytes (so that
//! headers no HTTP library would send can be sent) over a kept-alive connection. Used by
//! the `carnet-fuzz` command (a long run against a `carnet serve` process) and by the
//! test suite (a bounded run against the in-process server).

use serde_json::{json, Map, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// A small, fast, seedable generator (SplitMix64): the same seed gives the same cases.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9e37_79b9_7f4a_7c15)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
    pub fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// One HTTP request to send.
#[derive(Debug, Clone)]
pub struct Case {
    pub kind: &'static str,
    pub method: String,
    /// Path and query under the FHIR base (`/Patient?name=x`), or an absolute path
    /// starting with `//` for paths outside it (`//auth/login/x`).
    pub target: String,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

impl Case {
    /// The request as text for a report (the body cut to `max` bytes).
    pub fn describe(&self, max: usize) -> String {
        let body = String::from_utf8_lossy(&self.body[..self.body.len().min(max)]).into_owned();
        let headers: Vec<String> = self
            .headers
            .iter()
            .map(|(k, v)| format!("{k}: {}", String::from_utf8_lossy(v)))
            .collect();
        format!(
            "[{}] {} {}\n{}\n{} ({} bytes)",
            self.kind,
            self.method,
            self.target,
            headers.join("\n"),
            body,
            self.body.len()
        )
    }
}

const TYPES: &[&str] = &[
    "Patient",
    "Practitioner",
    "PractitionerRole",
    "Organization",
    "RelatedPerson",
    "DocumentReference",
    "Binary",
    "Immunization",
    "Appointment",
    "Consent",
    "AuditEvent",
    "Communication",
    "Subscription",
    "Observation",
    "Bundle",
    "patient",
    "",
];

const PARAMS: &[&str] = &[
    "_id",
    "_lastUpdated",
    "identifier",
    "name",
    "family",
    "given",
    "birthdate",
    "gender",
    "patient",
    "subject",
    "date",
    "type",
    "status",
    "description",
    "code",
    "vaccine-code",
    "actor",
    "agent",
    "entity",
    "outcome",
    "general-practitioner",
    "patient.birthdate",
    "subject:Patient.name",
    "_has:DocumentReference:patient:status",
    "_count",
    "_sort",
    "_total",
    "_summary",
    "_elements",
    "_include",
    "_revinclude",
    "_include:iterate",
    "_type",
    "_format",
    "_pretty",
    "_since",
    "_getpages",
    "_getpagesoffset",
    "_cursor",
    "_content",
    "_text",
];

const MODIFIERS: &[&str] = &[
    "",
    "",
    "",
    ":exact",
    ":contains",
    ":missing",
    ":not",
    ":text",
    ":of-type",
    ":identifier",
    ":above",
    ":below",
    ":in",
    ":Patient",
    ":iterate",
    ":",
    "::",
];

const PREFIXES: &[&str] = &[
    "", "", "eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap", "zz",
];

/// Values that break parsers: control characters, invalid UTF-8 (percent-encoded), huge
/// numbers, separators, escapes.
const NASTY: &[&str] = &[
    "%00",
    "%ff",
    "%c3%28",
    "%ed%a0%80",
    "%0a",
    "%0d%0a",
    "\\",
    "\\,",
    "\\|",
    "|",
    "||",
    ",,,,",
    "$",
    "%",
    "%2",
    "%zz",
    "99999999999999999999999",
    "-1",
    "0",
    "1e400",
    "NaN",
    "2020-13-45",
    "2020-02-30T25:61:61Z",
    "9999-12-31T23:59:59.999999999+14:00",
    "0000",
    "urn:uuid:",
    "Patient/",
    "Patient/../../etc/passwd",
    "http://example.org/fhir/Patient/1",
    "%E2%80%AE",
    "%F0%9F%92%A9",
    "*",
    "'; DROP TABLE resources; --",
    "\" OR 1=1 --",
    "<script>",
    "..",
    "Pat%69ent",
];

/// Makes hostile requests from seed resources.
pub struct Generator {
    pub rng: Rng,
    seeds: Vec<Value>,
    xml_seeds: Vec<String>,
    /// Ids of resources that exist (reads, updates, patches aim at them).
    pub known: Vec<(String, String)>,
}

impl Generator {
    /// `seeds`: valid resources to damage; `xml_seeds`: the same or others as R4 XML.
    pub fn new(seed: u64, seeds: Vec<Value>, xml_seeds: Vec<String>) -> Generator {
        Generator {
            rng: Rng::new(seed),
            seeds,
            xml_seeds,
            known: Vec::new(),
        }
    }

    fn seed(&mut self) -> Value {
        if self.seeds.is_empty() {
            return json!({"resourceType": "Patient", "name": [{"family": "Seed"}]});
        }
        self.seeds[self.rng.below(self.seeds.len())].clone()
    }

    fn nasty_string(&mut self) -> String {
        let r = &mut self.rng;
        match r.below(10) {
            0 => "\u{0}".into(),
            1 => "a".repeat(1 + r.below(100_000)),
            2 => "\u{202e}\u{feff}\u{fffd}\u{1f4a9}".into(),
            3 => "\\u0000".into(),
            4 => "\r\n\t\u{7}".into(),
            5 => "<div xmlns=\"http://www.w3.org/1999/xhtml\"><script>x</script></div>".into(),
            6 => "é".repeat(1 + r.below(1000)),
            7 => String::new(),
            8 => " ".into(),
            _ => format!("{}", r.next_u64()),
        }
    }

    fn nasty_value(&mut self, depth: usize) -> Value {
        match self.rng.below(12) {
            0 => Value::Null,
            1 => json!(true),
            2 => json!(self.rng.next_u64() as i64),
            3 => json!(1e308),
            4 => json!(-0.0),
            5 => json!(self.nasty_string()),
            6 if depth < 4 => {
                let n = self.rng.below(4);
                Value::Array((0..n).map(|_| self.nasty_value(depth + 1)).collect())
            }
            7 if depth < 4 => {
                let mut m = Map::new();
                for _ in 0..self.rng.below(4) {
                    let k = self
                        .rng
                        .pick(&[
                            "url",
                            "value",
                            "extension",
                            "id",
                            "_x",
                            "resourceType",
                            "reference",
                            "system",
                            "code",
                        ])
                        .to_string();
                    m.insert(k, self.nasty_value(depth + 1));
                }
                Value::Object(m)
            }
            8 => json!([]),
            9 => json!({}),
            10 => json!("2020-02-30"),
            _ => json!(format!("Patient/{}", self.rng.next_u64())),
        }
    }

    /// A resource damaged in one or a few ways (or left intact now and then).
    pub fn resource(&mut self) -> Value {
        let mut v = self.seed();
        let rounds = 1 + self.rng.below(3);
        for _ in 0..rounds {
            self.damage(&mut v);
        }
        if !v.is_object() {
            v = json!({"resourceType": "Patient", "extension": [v]});
        }
        v
    }

    fn damage(&mut self, v: &mut Value) {
        if !v.is_object() {
            *v = json!({"resourceType": "Patient"});
        }
        match self.rng.below(14) {
            0 => {} // intact
            1 => {
                // Deep nesting of extensions, around the limits.
                // (Deeper ones are made as text: see `deep_json`.)
                let levels = *self.rng.pick(&[30usize, 31, 32, 33, 40, 61, 64, 100, 130]);
                let mut inner = json!({"url": "http://x/e", "valueString": "leaf"});
                for _ in 0..levels {
                    inner = json!({"url": "http://x/e", "extension": [inner]});
                }
                v["extension"] = json!([inner]);
            }
            2 => {
                // Wide arrays.
                let n = *self.rng.pick(&[10_000usize, 10_001, 50_000, 200_000]);
                v["name"] = json!([{"given": vec!["g"; n]}]);
            }
            3 => {
                if let Some(o) = v.as_object_mut() {
                    let keys: Vec<String> = o.keys().cloned().collect();
                    if !keys.is_empty() {
                        let k = keys[self.rng.below(keys.len())].clone();
                        o.remove(&k);
                    }
                }
            }
            4 => {
                let path = self.random_path(v);
                let nv = self.nasty_value(0);
                set_at(v, &path, nv);
            }
            5 => {
                let k = self
                    .rng
                    .pick(&[
                        "colour",
                        "_name",
                        "resourceType",
                        "id",
                        "meta",
                        "text",
                        "contained",
                        "fhir_comments",
                        "",
                    ])
                    .to_string();
                let nv = self.nasty_value(0);
                v[k] = nv;
            }
            6 => v["resourceType"] = json!(self.rng.pick(TYPES).to_string()),
            7 => v["id"] = json!(self.nasty_string()),
            8 => {
                // Contained resources, possibly nested.
                let inner = self.seed();
                v["contained"] =
                    json!([inner, {"resourceType": "Bundle", "entry": [{"resource": v.clone()}]}]);
            }
            9 => {
                v["meta"] = json!({"security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": self.nasty_string()}], "versionId": self.nasty_string()})
            }
            10 => v["text"] = json!({"status": "generated", "div": self.nasty_string()}),
            11 => {
                let s = self.nasty_string();
                let path = self.random_path(v);
                set_at(v, &path, json!(s));
            }
            12 => v["subject"] = json!({"reference": self.nasty_string()}),
            _ => v["birthDate"] = json!(self.rng.pick(NASTY).to_string()),
        }
    }

    fn random_path(&mut self, v: &Value) -> Vec<PathStep> {
        let mut path = Vec::new();
        let mut cur = v;
        for _ in 0..self.rng.below(6) {
            match cur {
                Value::Object(o) if !o.is_empty() => {
                    let k = o.keys().nth(self.rng.below(o.len())).unwrap().clone();
                    cur = &o[&k];
                    path.push(PathStep::Key(k));
                }
                Value::Array(a) if !a.is_empty() => {
                    let i = self.rng.below(a.len());
                    cur = &a[i];
                    path.push(PathStep::Index(i));
                }
                _ => break,
            }
        }
        path
    }

    /// Damage at the byte level: truncation, a flipped byte, invalid UTF-8, a BOM,
    /// duplicate keys, huge numbers.
    pub fn bytes_damage(&mut self, mut b: Vec<u8>) -> Vec<u8> {
        match self.rng.below(9) {
            0 if !b.is_empty() => {
                let at = self.rng.below(b.len());
                b.truncate(at)
            }
            1 if !b.is_empty() => {
                let at = self.rng.below(b.len());
                b[at] = self.rng.next_u64() as u8
            }
            2 => b.extend_from_slice(&[0xff, 0xfe, 0xc3, 0x28]),
            3 => {
                let mut v = vec![0xef, 0xbb, 0xbf];
                v.extend(b);
                b = v
            }
            4 if b.len() > 1 => {
                // A duplicate member name.
                let pos = b.len() - 1;
                b.splice(pos..pos, br#","resourceType":"Patient""#.iter().copied());
            }
            5 => {
                let n = *self.rng.pick(&[1000usize, 100_000, 2_000_000]);
                let open = if self.rng.chance(2) { "[" } else { "{\"a\":" };
                b = open.repeat(n).into_bytes();
            }
            6 => b = b"{\"resourceType\":\"Patient\",\"multipleBirthInteger\":1e999999}".to_vec(),
            7 => b.extend(std::iter::repeat_n(b' ', self.rng.below(100_000))),
            _ => {}
        }
        b
    }

    fn xml(&mut self) -> Vec<u8> {
        let base = if self.xml_seeds.is_empty() {
            "<Patient xmlns=\"http://hl7.org/fhir\"><name><family value=\"X\"/></name></Patient>"
                .to_string()
        } else {
            self.xml_seeds[self.rng.below(self.xml_seeds.len())].clone()
        };
        let ns = "<Patient xmlns=\"http://hl7.org/fhir\">";
        match self.rng.below(12) {
            0 => base.into_bytes(),
            1 => {
                let n = *self.rng.pick(&[30usize, 60, 64, 66, 70, 71, 100, 1000, 3000, 50_000]);
                format!("{ns}{}{}</Patient>", "<extension url=\"x\">".repeat(n), "</extension>".repeat(n)).into_bytes()
            }
            2 => {
                let n = *self.rng.pick(&[3000usize, 100_000]);
                format!("{ns}{}{}</Patient>", "<a>".repeat(n), "</a>".repeat(n)).into_bytes()
            }
            3 => {
                let n = *self.rng.pick(&[64usize, 65, 1000, 100_000]);
                let attrs: String = (0..n).map(|i| format!(" a{i}=\"1\"")).collect();
                format!("<Patient xmlns=\"http://hl7.org/fhir\"{attrs}/>").into_bytes()
            }
            4 => format!(
                "<?xml version=\"1.0\"?><!DOCTYPE p [<!ENTITY a \"aaaaaaaaaa\"><!ENTITY b \"&a;&a;&a;&a;&a;&a;&a;&a;\"><!ENTITY c \"&b;&b;&b;&b;&b;&b;&b;&b;\">]>{ns}<name><family value=\"&c;\"/></name></Patient>"
            )
            .into_bytes(),
            5 => format!(
                "<?xml version=\"1.0\"?><!DOCTYPE p [<!ENTITY x SYSTEM \"file:///etc/passwd\">]>{ns}<name><family value=\"&x;\"/></name></Patient>"
            )
            .into_bytes(),
            6 => format!("{ns}<text><status value=\"generated\"/><div xmlns=\"http://www.w3.org/1999/xhtml\">{}{}</div></text></Patient>", "<div>".repeat(5000), "</div>".repeat(5000)).into_bytes(),
            7 => format!("{ns}<name><family value=\"{}\"/></name></Patient>", self.nasty_string().replace('"', "&quot;")).into_bytes(),
            8 => format!("{ns}<![CDATA[ {} ]]></Patient>", self.nasty_string()).into_bytes(),
            9 => b"<Patient xmlns=\"http://hl7.org/fhir\"><name><family value=\"X\"/></name></Patient><Patient/>".to_vec(),
            10 => format!("{ns}<birthDate value=\"{}\"/><gender value=\"robot\"/></Patient>", self.rng.pick(NASTY)).into_bytes(),
            _ => {
                let b = base.into_bytes();
                self.bytes_damage(b)
            }
        }
    }

    fn query(&mut self) -> String {
        let n = 1 + self.rng.below(5);
        let mut parts = Vec::new();
        for _ in 0..n {
            let name = format!("{}{}", self.rng.pick(PARAMS), self.rng.pick(MODIFIERS));
            let value = match self.rng.below(8) {
                0 => self.rng.pick(NASTY).to_string(),
                1 => format!(
                    "{}{}",
                    self.rng.pick(PREFIXES),
                    self.rng
                        .pick(&["2020", "2020-01-01", "2020-01-01T00:00:00Z", "1"])
                ),
                2 => format!(
                    "{}|{}",
                    self.rng
                        .pick(&["urn:oid:1.2.250.1.213.1.4.8", "", "http://loinc.org"]),
                    self.rng.pick(&["123", "", "a,b"])
                ),
                3 => (0..self.rng.below(300))
                    .map(|i| format!("v{i}"))
                    .collect::<Vec<_>>()
                    .join(","),
                4 => {
                    let t = self.rng.pick(TYPES).to_string();
                    (0..1 + self.rng.below(500))
                        .map(|_| t.clone())
                        .collect::<Vec<_>>()
                        .join(",")
                }
                5 => format!(
                    "{}:{}",
                    self.rng.pick(TYPES),
                    self.rng.pick(&["subject", "patient", "*", "author", "x"])
                ),
                6 => self.known_ref(),
                _ => percent(&self.nasty_string()),
            };
            parts.push(format!("{name}={value}"));
        }
        if self.rng.chance(20) {
            // Very many parameters.
            for i in 0..1000 {
                parts.push(format!("name=a{i}"));
            }
        }
        parts.join("&")
    }

    fn known_ref(&mut self) -> String {
        if self.known.is_empty() {
            return "Patient/unknown".into();
        }
        let (t, id) = self.known[self.rng.below(self.known.len())].clone();
        format!("{t}/{id}")
    }

    fn known_id(&mut self) -> (String, String) {
        if self.known.is_empty() || self.rng.chance(4) {
            let t = self.rng.pick(TYPES).to_string();
            let id = match self.rng.below(4) {
                0 => percent(self.rng.pick::<&str>(NASTY)),
                1 => "a".repeat(65),
                2 => "x".into(),
                _ => format!("{:x}", self.rng.next_u64()),
            };
            return (t, id);
        }
        self.known[self.rng.below(self.known.len())].clone()
    }

    fn header(&mut self) -> (String, Vec<u8>) {
        let name = self
            .rng
            .pick(&[
                "If-Match",
                "If-None-Match",
                "If-None-Exist",
                "Prefer",
                "Accept",
                "If-Modified-Since",
                "X-Request-Id",
                "Content-Type",
                "Accept-Charset",
                "X-Forwarded-For",
            ])
            .to_string();
        let value: Vec<u8> = match self.rng.below(9) {
            0 => "é".as_bytes().to_vec(),
            1 => vec![0xff, 0xfe, b'1'],
            2 => b"W/\"1\"".to_vec(),
            3 => b"*".to_vec(),
            4 => b"return=minimal, handling=strict".to_vec(),
            5 => "x".repeat(self.rng.below(20_000)).into_bytes(),
            6 => format!("identifier={}", self.rng.pick(NASTY)).into_bytes(),
            7 => b"Tue, 01 Dec 2026 10:00:00 GMT".to_vec(),
            _ => b"W/\"1\", W/\"2\", garbage".to_vec(),
        };
        (name, value)
    }

    fn patch(&mut self) -> Vec<u8> {
        let ops: Vec<Value> = (0..self.rng.below(5))
            .map(|_| {
                let op = self
                    .rng
                    .pick(&[
                        "add", "remove", "replace", "move", "copy", "test", "explode",
                    ])
                    .to_string();
                let path = self
                    .rng
                    .pick(&[
                        "/status",
                        "/securityLabel",
                        "/securityLabel/-",
                        "/securityLabel/0",
                        "/extension",
                        "/extension/-",
                        "/subject",
                        "/content/0/attachment/url",
                        "",
                        "/",
                        "/~1/~0",
                        "/securityLabel/99999999999999999999",
                        "/extension/0/extension/0/extension",
                    ])
                    .to_string();
                let mut o = json!({"op": op, "path": path});
                if self.rng.chance(2) {
                    o["value"] = self.nasty_value(0);
                }
                if self.rng.chance(4) {
                    o["from"] = json!("/status");
                }
                o
            })
            .collect();
        let v = match self.rng.below(12) {
            0 => self.nasty_value(0),
            // A value copied into itself again and again: depth doubles at each step.
            1 => {
                let mut chain = vec![json!({"op": "add", "path": "/x", "value": {"x": {}}})];
                let mut at = String::from("/x");
                for _ in 0..self.rng.below(20) {
                    at.push_str("/x");
                    chain.push(json!({"op": "copy", "from": "/x", "path": at.clone()}));
                }
                json!(chain)
            }
            // The whole document copied beside itself: size doubles at each step.
            2 => json!((0..self.rng.below(40))
                .map(|i| json!({"op": "copy", "from": "", "path": format!("/x{i}")}))
                .collect::<Vec<_>>()),
            _ => json!(ops),
        };
        let b = serde_json::to_vec(&v).unwrap_or_default();
        if self.rng.chance(5) {
            self.bytes_damage(b)
        } else {
            b
        }
    }

    fn bundle(&mut self) -> Vec<u8> {
        let kind = self
            .rng
            .pick(&["batch", "transaction", "document", "searchset", "batch"])
            .to_string();
        let n = *self.rng.pick(&[0usize, 1, 2, 5, 20, 501, 10_001]);
        let entries: Vec<Value> = (0..n.min(10_001))
            .map(|i| {
                let method = self.rng.pick(&["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "get", ""]).to_string();
                let (t, id) = self.known_id();
                let url = match self.rng.below(6) {
                    0 => t.clone(),
                    1 => format!("{t}/{id}"),
                    2 => format!("{t}?{}", self.query()),
                    3 => format!("{t}/{id}/_history/{}", self.rng.below(5)),
                    4 => self.rng.pick(NASTY).to_string(),
                    _ => format!("http://elsewhere/fhir/{t}"),
                };
                let mut e = json!({"fullUrl": format!("urn:uuid:00000000-0000-0000-0000-{i:012}"), "request": {"method": method, "url": url}});
                if self.rng.chance(2) {
                    e["resource"] = if n > 100 { json!({"resourceType": "Patient"}) } else { self.resource() };
                }
                if self.rng.chance(6) {
                    e["request"]["ifMatch"] = json!(self.nasty_string());
                }
                if self.rng.chance(6) {
                    e["request"]["ifNoneExist"] = json!(self.query());
                }
                e
            })
            .collect();
        let b =
            serde_json::to_vec(&json!({"resourceType": "Bundle", "type": kind, "entry": entries}))
                .unwrap_or_default();
        if self.rng.chance(8) {
            self.bytes_damage(b)
        } else {
            b
        }
    }

    /// One hostile request.
    pub fn case(&mut self) -> Case {
        let json_ct = b"application/fhir+json".to_vec();
        let mut case = Case {
            kind: "",
            method: "GET".into(),
            target: String::new(),
            headers: Vec::new(),
            body: Vec::new(),
        };
        match self.rng.below(20) {
            0..=3 => {
                case.kind = "create-json";
                let r = self.resource();
                case.method = "POST".into();
                case.target = format!(
                    "/{}",
                    r.get("resourceType")
                        .and_then(Value::as_str)
                        .filter(|t| !t.is_empty() && t.chars().all(|c| c.is_ascii_alphanumeric()))
                        .unwrap_or("Patient")
                );
                case.body = serde_json::to_vec(&r).unwrap_or_default();
                if self.rng.chance(4) {
                    case.body = self.bytes_damage(case.body);
                } else if self.rng.chance(8) {
                    let levels = *self.rng.pick(&[33usize, 62, 64, 65, 128, 1000, 100_000]);
                    case.body = deep_json(levels);
                }
                case.headers.push(("Content-Type".into(), json_ct));
            }
            4..=5 => {
                case.kind = "create-xml";
                case.method = "POST".into();
                case.target = "/Patient".into();
                case.body = self.xml();
                case.headers
                    .push(("Content-Type".into(), b"application/fhir+xml".to_vec()));
            }
            6..=7 => {
                case.kind = "update";
                let (t, id) = self.known_id();
                let mut r = self.resource();
                r["resourceType"] = json!(t);
                r["id"] = json!(id);
                case.method = "PUT".into();
                case.target = format!("/{t}/{id}");
                if self.rng.chance(3) {
                    case.body = self.xml();
                    case.headers
                        .push(("Content-Type".into(), b"application/fhir+xml".to_vec()));
                } else {
                    case.body = serde_json::to_vec(&r).unwrap_or_default();
                    case.headers.push(("Content-Type".into(), json_ct));
                }
            }
            8..=10 => {
                case.kind = "search";
                case.target = format!("/{}?{}", self.rng.pick(TYPES), self.query());
            }
            11 => {
                case.kind = "system-search";
                case.target = format!("?{}", self.query());
            }
            12 => {
                case.kind = "read";
                let (t, id) = self.known_id();
                let suffix = self
                    .rng
                    .pick(&[
                        "",
                        "/_history",
                        "/_history/1",
                        "/_history/x",
                        "/$everything",
                        "/DocumentReference",
                        "?_format=xml",
                        "?_pretty=true",
                        "/_history?_count=-1",
                        "?_format=%00",
                    ])
                    .to_string();
                case.target = format!("/{t}/{id}{suffix}");
            }
            13..=14 => {
                case.kind = "bundle";
                case.method = "POST".into();
                case.target = "".into();
                case.body = self.bundle();
                case.headers.push(("Content-Type".into(), json_ct));
            }
            15 => {
                case.kind = "patch";
                let (t, id) = self.known_id();
                case.method = "PATCH".into();
                case.target = format!("/{t}/{id}");
                case.body = self.patch();
                case.headers.push((
                    "Content-Type".into(),
                    b"application/json-patch+json".to_vec(),
                ));
            }
            16 => {
                case.kind = "search-post";
                case.method = "POST".into();
                case.target = format!("/{}/_search", self.rng.pick(TYPES));
                case.body = self.query().into_bytes();
                case.headers.push((
                    "Content-Type".into(),
                    b"application/x-www-form-urlencoded".to_vec(),
                ));
            }
            17 => {
                case.kind = "auth";
                case.method = self.rng.pick(&["GET", "POST"]).to_string();
                let long = "a".repeat(self.rng.below(3000));
                let (q1, q2) = (self.query(), self.query());
                let nasty = percent(self.rng.pick::<&str>(NASTY));
                let choices = [
                    format!("login/{long}"),
                    format!("authorize?{q1}"),
                    format!("consent/{nasty}"),
                    "token".to_string(),
                    format!("callback/x?{q2}"),
                    "introspect".to_string(),
                    "revoke".to_string(),
                ];
                case.target = format!("//auth/{}", self.rng.pick(&choices));
                if case.method == "POST" {
                    case.body = self.query().into_bytes();
                    case.headers.push((
                        "Content-Type".into(),
                        b"application/x-www-form-urlencoded".to_vec(),
                    ));
                }
            }
            18 => {
                case.kind = "delete";
                let (t, id) = self.known_id();
                case.method = "DELETE".into();
                case.target = format!("/{t}/{id}");
            }
            _ => {
                case.kind = "method";
                case.method = self
                    .rng
                    .pick(&["OPTIONS", "TRACE", "HEAD", "CONNECT", "FOO", "PUT"])
                    .to_string();
                case.target = format!("/{}", self.rng.pick(TYPES));
            }
        }
        for _ in 0..self.rng.below(3) {
            let h = self.header();
            case.headers.push(h);
        }
        case
    }
}

/// A Patient whose extensions nest `levels` deep, written as text (a JSON value that deep
/// could not even be built or dropped without recursion).
pub fn deep_json(levels: usize) -> Vec<u8> {
    let mut s = String::with_capacity(levels * 40);
    s.push_str(r#"{"resourceType":"Patient""#);
    for _ in 0..levels {
        s.push_str(r#","extension":[{"url":"http://x/e""#);
    }
    s.push_str(r#","valueString":"leaf""#);
    for _ in 0..levels {
        s.push_str("}]");
    }
    s.push('}');
    s.into_bytes()
}

#[derive(Debug, Clone)]
enum PathStep {
    Key(String),
    Index(usize),
}

fn set_at(v: &mut Value, path: &[PathStep], new: Value) {
    let mut cur = v;
    for step in path {
        cur = match (step, cur) {
            (PathStep::Key(k), Value::Object(o)) => match o.get_mut(k) {
                Some(c) => c,
                None => return,
            },
            (PathStep::Index(i), Value::Array(a)) => match a.get_mut(*i) {
                Some(c) => c,
                None => return,
            },
            _ => return,
        };
    }
    *cur = new;
}

/// Percent-encodes everything but unreserved characters (keeps `%` sequences already
/// there as they are, so NASTY values stay hostile).
fn percent(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~%".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The start of a [`Sent::Failed`] message when the server closed the connection before
/// the client had written the whole request (it refused it early, without an answer the
/// client could read): not a server failure.
pub const EARLY: &str = "closed while the request was being sent";

/// The outcome of one request as the client saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sent {
    /// The HTTP status and the body's length.
    Status(u16, usize),
    /// The connection failed (refused, reset, closed before an answer, timed out).
    Failed(String),
}

/// A minimal HTTP/1.1 client over one kept-alive connection, sending the bytes as given.
pub struct HttpClient {
    addr: String,
    host: String,
    /// The FHIR base path (`/fhir`).
    base_path: String,
    token: String,
    conn: Option<BufReader<TcpStream>>,
    timeout: Duration,
}

impl HttpClient {
    /// `base`: the FHIR base URL (`http://127.0.0.1:8080/fhir`).
    pub fn new(base: &str, token: &str) -> HttpClient {
        let rest = base.trim_start_matches("http://");
        let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
        HttpClient {
            addr: host.to_string(),
            host: host.to_string(),
            base_path: format!("/{}", path.trim_end_matches('/')),
            token: token.to_string(),
            conn: None,
            timeout: Duration::from_secs(60),
        }
    }

    pub fn send(&mut self, case: &Case) -> Sent {
        // A kept-alive connection the server closed after its last answer fails at once:
        // the request is sent again on a new connection (as HTTP clients do).
        let reused = self.conn.is_some();
        match self.try_send(case) {
            Ok(s) => s,
            Err(_) if reused => {
                self.conn = None;
                match self.try_send(case) {
                    Ok(s) => s,
                    Err(e) => {
                        self.conn = None;
                        Sent::Failed(e)
                    }
                }
            }
            Err(e) => {
                self.conn = None;
                Sent::Failed(e)
            }
        }
    }

    fn try_send(&mut self, case: &Case) -> Result<Sent, String> {
        if self.conn.is_none() {
            let s = TcpStream::connect(&self.addr).map_err(|e| format!("connect: {e}"))?;
            s.set_read_timeout(Some(self.timeout)).ok();
            s.set_write_timeout(Some(self.timeout)).ok();
            s.set_nodelay(true).ok();
            self.conn = Some(BufReader::new(s));
        }
        let path = match case.target.strip_prefix("//") {
            Some(outside) => format!("/{outside}"),
            None => format!("{}{}", self.base_path, case.target),
        };
        // A target with a space or control byte would not be one request line.
        let path: String = path
            .chars()
            .map(|c| {
                if c.is_ascii_graphic() {
                    c.to_string()
                } else {
                    percent(&c.to_string())
                }
            })
            .collect();
        let mut req: Vec<u8> = Vec::with_capacity(case.body.len() + 512);
        req.extend_from_slice(
            format!("{} {path} HTTP/1.1\r\nHost: {}\r\n", case.method, self.host).as_bytes(),
        );
        req.extend_from_slice(format!("Authorization: Bearer {}\r\n", self.token).as_bytes());
        for (k, v) in &case.headers {
            if v.iter().any(|b| *b == b'\r' || *b == b'\n' || *b == 0) {
                continue;
            }
            req.extend_from_slice(k.as_bytes());
            req.extend_from_slice(b": ");
            req.extend_from_slice(v);
            req.extend_from_slice(b"\r\n");
        }
        req.extend_from_slice(format!("Content-Length: {}\r\n\r\n", case.body.len()).as_bytes());
        req.extend_from_slice(&case.body);
        let conn = self.conn.as_mut().unwrap();
        // A server may answer before reading a whole body (and then close): the answer is
        // still read when the write fails.
        let written = conn.get_mut().write_all(&req);
        let mut line = String::new();
        if let Err(e) = conn.read_line(&mut line) {
            return Err(match written {
                Err(w) => format!("{EARLY}: write: {w}, read: {e}"),
                Ok(()) => format!("read: {e}"),
            });
        }
        if line.is_empty() {
            return Err(match written {
                Err(w) => format!("{EARLY}: write: {w}"),
                Ok(()) => "closed before an answer".into(),
            });
        }
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("not an HTTP status line: {line:?}"))?;
        let mut length: Option<usize> = None;
        let mut chunked = false;
        let mut close = false;
        loop {
            let mut h = String::new();
            conn.read_line(&mut h).map_err(|e| format!("read: {e}"))?;
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            let lower = h.to_ascii_lowercase();
            if let Some(v) = lower.strip_prefix("content-length:") {
                length = v.trim().parse().ok();
            } else if lower.starts_with("transfer-encoding:") && lower.contains("chunked") {
                chunked = true;
            } else if lower.starts_with("connection:") && lower.contains("close") {
                close = true;
            }
        }
        let mut n = 0usize;
        if case.method == "HEAD" || status == 204 || status == 304 {
        } else if chunked {
            loop {
                let mut size = String::new();
                conn.read_line(&mut size)
                    .map_err(|e| format!("read: {e}"))?;
                let size =
                    usize::from_str_radix(size.trim(), 16).map_err(|_| "bad chunk".to_string())?;
                let mut chunk = vec![0u8; size + 2];
                conn.read_exact(&mut chunk)
                    .map_err(|e| format!("read: {e}"))?;
                n += size;
                if size == 0 {
                    break;
                }
            }
        } else if let Some(len) = length {
            let mut body = vec![0u8; len];
            conn.read_exact(&mut body)
                .map_err(|e| format!("read: {e}"))?;
            n = len;
        } else {
            let mut rest = Vec::new();
            conn.read_to_end(&mut rest).ok();
            n = rest.len();
            close = true;
        }
        if close {
            self.conn = None;
        }
        Ok(Sent::Status(status, n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_cases() {
        let mut a = Generator::new(7, vec![], vec![]);
        let mut b = Generator::new(7, vec![], vec![]);
        for _ in 0..200 {
            let (x, y) = (a.case(), b.case());
            assert_eq!((x.method, x.target, x.body), (y.method, y.target, y.body));
        }
    }
}
