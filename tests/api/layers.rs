//! The layout of `src/` (docs/architecture.md): files import only downwards. Two rules,
//! read from the code's own `use` lines and `crate::`/`super::`/`self::` paths:
//! - no circle among files (a parent `mod.rs` that takes names from its children while they
//!   take names from it counts as one);
//! - a top-level module imports only modules below it in [`LAYERS`] (the repository never
//!   names a feature, the access point never names the repository, nothing names `http`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The top-level modules of `src/`, lowest first.
const LAYERS: &[&str] = &[
    "error",
    "resource",
    "fhir",
    "config",
    "consent",
    "auth",
    "access",
    "repository",
    "record",
    "subscriptions",
    "jobs",
    "identity",
    "oauth",
    "http",
    "app",
];

type Module = Vec<String>;

/// Every module file of `src/`, by module path (`src/a/b.rs` and `src/a/b/mod.rs` are
/// `a::b`; `lib.rs` and `main.rs` are the root).
fn module_files(dir: &Path, prefix: &Module, out: &mut BTreeMap<Module, PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("src/ is readable")
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        let name = path.file_stem().unwrap().to_string_lossy().to_string();
        if path.is_dir() {
            let mut p = prefix.clone();
            p.push(name);
            module_files(&path, &p, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let mut m = prefix.clone();
            if !matches!(name.as_str(), "mod" | "lib" | "main") {
                m.push(name.clone());
            }
            if name != "main" {
                out.insert(m, path);
            }
        }
    }
}

/// The code of a file without comments, string literals and `#[cfg(test)]` modules.
fn code_of(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    };
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < b.len() {
        if b[i..].starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i..].starts_with(b"/*") {
            i += 2;
            while i + 1 < b.len() && !b[i..].starts_with(b"*/") {
                i += 1;
            }
            i += 2;
        } else if b[i] == b'r' && (b[i + 1..].starts_with(b"\"") || b[i + 1..].starts_with(b"#")) {
            // A raw string: r"…" or r#"…"#.
            let mut j = i + 1;
            let mut hashes = 0;
            while j < b.len() && b[j] == b'#' {
                hashes += 1;
                j += 1;
            }
            if j < b.len() && b[j] == b'"' {
                let close: Vec<u8> = std::iter::once(b'"')
                    .chain(std::iter::repeat_n(b'#', hashes))
                    .collect();
                j += 1;
                while j < b.len() && !b[j..].starts_with(&close) {
                    j += 1;
                }
                i = j + close.len();
                out.push_str("\"\"");
            } else {
                out.push('r');
                i += 1;
            }
        } else if b[i] == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push_str("\"\"");
        } else if b[i] == b'\'' && i + 2 < b.len() && (b[i + 2] == b'\'' || b[i + 1] == b'\\') {
            // A char literal ('"', '\n'), not a lifetime.
            let mut j = i + 1;
            if b[j] == b'\\' {
                j += 1;
            }
            j += 1;
            while j < b.len() && b[j] != b'\'' {
                j += 1;
            }
            i = j + 1;
            out.push_str("' '");
        } else {
            out.push(b[i] as char);
            i += 1;
        }
    }
    out
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Expands a `use` tree (`a::{b, c::{d, e}}`) into its paths.
fn expand(tree: &str) -> Vec<String> {
    let tree = tree.trim();
    let Some(open) = tree.find('{') else {
        let head = tree.split(" as ").next().unwrap_or("").trim();
        return vec![head.to_string()];
    };
    let prefix = tree[..open].trim_end_matches("::").trim();
    let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
    let (mut depth, mut start, mut parts) = (0, 0, Vec::new());
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    parts
        .into_iter()
        .filter(|p| !p.trim().is_empty())
        .flat_map(expand)
        .map(|p| match (prefix.is_empty(), p.as_str()) {
            (true, _) => p,
            (false, "self") => prefix.to_string(),
            (false, _) => format!("{prefix}::{p}"),
        })
        .collect()
}

/// The paths a file names: its `use` trees, and every `crate::…`, `super::…`, `self::…` or
/// `child::…` (a module it declares) path in its code.
fn paths_named(code: &str) -> (Vec<String>, BTreeSet<String>) {
    // `pub(in crate::a)` names a visibility, not an import.
    let mut code = code.to_string();
    while let Some(i) = code.find("pub(in ") {
        let end = code[i..].find(')').map_or(code.len(), |j| i + j + 1);
        code.replace_range(i..end, "pub");
    }
    let code = code.as_str();
    let mut children = BTreeSet::new();
    let mut paths = Vec::new();
    let words: Vec<&str> = code.split_whitespace().collect();
    for w in words.windows(2) {
        if w[0] == "mod" {
            let name: String = w[1].chars().take_while(|c| is_ident(*c)).collect();
            if w[1][name.len()..].starts_with(';') {
                children.insert(name);
            }
        }
    }
    let mut rest = code;
    while let Some(i) = rest.find("use ") {
        let before = rest[..i].chars().last();
        let after = &rest[i + 4..];
        if before.is_none_or(|c| !is_ident(c)) {
            if let Some(end) = after.find(';') {
                paths.extend(expand(&after[..end]));
            }
        }
        rest = after;
    }
    let chars: Vec<char> = code.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if is_ident(chars[i]) && (i == 0 || !is_ident(chars[i - 1]) && chars[i - 1] != ':') {
            let mut j = i;
            let mut path = String::new();
            loop {
                let start = j;
                while j < chars.len() && is_ident(chars[j]) {
                    j += 1;
                }
                path.extend(&chars[start..j]);
                if j + 2 < chars.len() && chars[j] == ':' && chars[j + 1] == ':' {
                    if !is_ident(chars[j + 2]) {
                        break;
                    }
                    path.push_str("::");
                    j += 2;
                } else {
                    break;
                }
            }
            let head = path.split("::").next().unwrap_or("");
            if path.contains("::")
                && (matches!(head, "crate" | "super" | "self") || children.contains(head))
            {
                paths.push(path);
            }
            i = j.max(i + 1);
        } else {
            i += 1;
        }
    }
    (paths, children)
}

/// The module file a path starting in `module` names (the longest module prefix).
fn resolve(
    module: &Module,
    is_mod_file: bool,
    path: &str,
    children: &BTreeSet<String>,
    files: &BTreeMap<Module, PathBuf>,
) -> Option<Module> {
    let segs: Vec<&str> = path.split("::").collect();
    let mut base: Module = match segs[0] {
        "crate" => Vec::new(),
        "super" => {
            let mut m = module.clone();
            m.pop();
            m
        }
        "self" => module.clone(),
        child if children.contains(child) => {
            let mut m = module.clone();
            m.push(child.to_string());
            m
        }
        _ => return None,
    };
    let _ = is_mod_file;
    let mut rest = &segs[1..];
    if segs[0] != "crate" && segs[0] != "super" && segs[0] != "self" {
        rest = &segs[1..];
    }
    while rest.first() == Some(&"super") {
        base.pop();
        rest = &rest[1..];
    }
    let mut best = None;
    let mut m = base.clone();
    if files.contains_key(&m) {
        best = Some(m.clone());
    }
    for s in rest {
        m.push(s.to_string());
        if files.contains_key(&m) {
            best = Some(m.clone());
        }
    }
    best.filter(|b| !b.is_empty())
}

fn name(m: &Module) -> String {
    m.join("::")
}

/// The file-level import graph of `src/`.
fn graph() -> BTreeMap<Module, BTreeSet<Module>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = BTreeMap::new();
    module_files(&src, &Vec::new(), &mut files);
    let mut edges: BTreeMap<Module, BTreeSet<Module>> = BTreeMap::new();
    for (module, path) in &files {
        let code = code_of(&std::fs::read_to_string(path).unwrap());
        let (paths, children) = paths_named(&code);
        let is_mod = path.file_name().is_some_and(|n| n == "mod.rs");
        let out = edges.entry(module.clone()).or_default();
        for p in paths {
            if let Some(target) = resolve(module, is_mod, &p, &children, &files) {
                // A file naming its own ancestors' module path (`use super::*` of nothing)
                // is not an import of a name.
                if &target != module && !(p.ends_with("::*") && target.len() < module.len()) {
                    out.insert(target);
                }
            }
        }
    }
    edges
}

/// The circles of the graph (Tarjan's strongly connected components of more than one file).
fn circles(edges: &BTreeMap<Module, BTreeSet<Module>>) -> Vec<Vec<Module>> {
    struct State<'a> {
        edges: &'a BTreeMap<Module, BTreeSet<Module>>,
        index: BTreeMap<Module, usize>,
        low: BTreeMap<Module, usize>,
        stack: Vec<Module>,
        on: BTreeSet<Module>,
        next: usize,
        out: Vec<Vec<Module>>,
    }
    fn visit(s: &mut State, v: &Module) {
        s.index.insert(v.clone(), s.next);
        s.low.insert(v.clone(), s.next);
        s.next += 1;
        s.stack.push(v.clone());
        s.on.insert(v.clone());
        for w in s.edges.get(v).cloned().unwrap_or_default() {
            if !s.index.contains_key(&w) {
                visit(s, &w);
                let l = s.low[v].min(s.low[&w]);
                s.low.insert(v.clone(), l);
            } else if s.on.contains(&w) {
                let l = s.low[v].min(s.index[&w]);
                s.low.insert(v.clone(), l);
            }
        }
        if s.low[v] == s.index[v] {
            let mut comp = Vec::new();
            loop {
                let w = s.stack.pop().unwrap();
                s.on.remove(&w);
                comp.push(w.clone());
                if &w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                s.out.push(comp);
            }
        }
    }
    let mut s = State {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in edges.keys() {
        if !s.index.contains_key(v) {
            visit(&mut s, v);
        }
    }
    s.out
}

#[test]
fn no_file_of_src_imports_in_a_circle() {
    let edges = graph();
    assert!(
        edges.len() > 40,
        "the graph was read ({} files)",
        edges.len()
    );
    let found: Vec<String> = circles(&edges)
        .iter()
        .map(|c| {
            let members: BTreeSet<&Module> = c.iter().collect();
            let ties: Vec<String> = c
                .iter()
                .flat_map(|a| {
                    edges[a]
                        .iter()
                        .filter(|b| members.contains(b))
                        .map(move |b| format!("{} -> {}", name(a), name(b)))
                })
                .collect();
            ties.join(", ")
        })
        .collect();
    assert!(found.is_empty(), "import circles: {found:#?}");
}

#[test]
fn top_level_modules_import_only_layers_below() {
    let edges = graph();
    let rank = |m: &Module| {
        LAYERS
            .iter()
            .position(|l| *l == m[0])
            .unwrap_or_else(|| panic!("{} is in no layer of tests/api/layers.rs", m[0]))
    };
    let mut upward = Vec::new();
    for (from, tos) in &edges {
        if from.is_empty() {
            continue;
        }
        for to in tos {
            if from[0] != to[0] && rank(to) > rank(from) {
                upward.push(format!("{} -> {}", name(from), name(to)));
            }
        }
    }
    assert!(
        upward.is_empty(),
        "imports that run up the layers: {upward:#?}"
    );
}

#[test]
fn the_layout_check_sees_a_planted_circle_and_paths_in_use_trees() {
    let m = |s: &str| -> Module { s.split("::").map(str::to_string).collect() };
    let mut edges = BTreeMap::new();
    edges.insert(m("a"), BTreeSet::from([m("b")]));
    edges.insert(m("b"), BTreeSet::from([m("c")]));
    edges.insert(m("c"), BTreeSet::from([m("a")]));
    edges.insert(m("d"), BTreeSet::from([m("a")]));
    let found = circles(&edges);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].len(), 3);
    assert_eq!(
        expand("crate::{access::{self, Visible}, auth::RequestContext as Ctx}"),
        vec![
            "crate::access",
            "crate::access::Visible",
            "crate::auth::RequestContext"
        ]
    );
    let (paths, children) = paths_named(
        "mod store;\nuse super::x::Y;\npub(in crate::a) fn f() { store::put(); crate::fhir::instant::now_us(); }\n",
    );
    assert!(children.contains("store"));
    assert!(paths.contains(&"super::x::Y".to_string()));
    assert!(paths.contains(&"store::put".to_string()));
    assert!(paths.contains(&"crate::fhir::instant::now_us".to_string()));
    assert!(
        !paths.iter().any(|p| p == "crate::a"),
        "a visibility is no import"
    );
    assert!(!code_of("// crate::not::this").contains("crate"));
    assert!(builds_literal(
        "let c = RequestContext { actor, client_id: x };",
        "RequestContext"
    ));
    assert!(!builds_literal(
        "impl FromRequest for RequestContext {\n    type Error = E;",
        "RequestContext"
    ));
}

/// Every file of `src/` with its module path and code (comments and strings removed).
fn sources() -> Vec<(Module, String)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = BTreeMap::new();
    module_files(&src, &Vec::new(), &mut files);
    files
        .into_iter()
        .map(|(m, p)| (m, code_of(&std::fs::read_to_string(p).unwrap())))
        .collect()
}

#[test]
fn only_the_access_point_makes_a_visible_and_only_auth_builds_a_context() {
    let mut doors = Vec::new();
    for (module, code) in sources() {
        let top = module.first().map(String::as_str).unwrap_or("");
        if top != "access" && code.contains("Visible(") {
            doors.push(format!("{} makes a Visible", name(&module)));
        }
        if top != "access" && builds_literal(&code, "WriteReceipt") {
            doors.push(format!("{} makes a WriteReceipt", name(&module)));
        }
        if top != "auth"
            && (builds_literal(&code, "RequestContext") || code.contains("from_claims("))
        {
            doors.push(format!("{} builds a RequestContext", name(&module)));
        }
        // Carnet's own contexts, each from the one place that needs it.
        let allowed: &[(&str, &str)] = &[
            ("RequestContext::service(", "oauth::authorize"),
            ("of_subscription_owner(", "repository::subscriptions"),
        ];
        for (ctor, place) in allowed {
            if top != "auth" && code.contains(ctor) && name(&module) != *place {
                doors.push(format!("{} calls {ctor}", name(&module)));
            }
        }
    }
    assert!(doors.is_empty(), "back doors of the seam: {doors:#?}");
}

/// Whether `code` builds a `ty { field: … }` literal (not `impl … for ty {`).
fn builds_literal(code: &str, ty: &str) -> bool {
    let pat = format!("{ty} {{");
    code.match_indices(&pat).any(|(i, _)| {
        let after = code[i + pat.len()..].trim_start();
        let field: String = after.chars().take_while(|c| is_ident(*c)).collect();
        !field.is_empty()
            && after[field.len()..]
                .trim_start()
                .starts_with([':', ',', '}'])
    })
}
