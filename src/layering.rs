//! The dependency rule, checked on the source tree: infrastructure knows no
//! capability (nor the composition root), and a capability reaches another
//! only through its `mod.rs` API, never its `store`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Shared plumbing: may use only each other.
const INFRASTRUCTURE: &[&str] = &[
    "app",
    "audit",
    "config",
    "datadir",
    "db",
    "docker",
    "error",
    "escape",
    "fsutil",
    "hashing",
    "i18n",
    "ids",
    "jobs",
    "live",
    "logging",
    "metrics",
    "paging",
    "ratelimit",
    "secrets",
    "sshclient",
    "tls",
    "validate",
    "web",
];

/// Features: use infrastructure and each other's `mod.rs` API.
const CAPABILITIES: &[&str] = &[
    "accounts",
    "alerts",
    "auth",
    "backup",
    "catalog",
    "datasets",
    "delivery",
    "files",
    "instances",
    "jumpbox",
    "leases",
    "monitor",
    "nodes",
    "proxy",
    "reach",
    "sessions",
    "sshkeys",
    "terminal",
    "usage",
];

/// A capability's internals that no other capability reaches: its SQL and
/// its HTTP handlers (the composition root mounts the handlers' routes).
const PRIVATE: &[&str] = &[
    "store",
    "session_store",
    "pages",
    "admin_pages",
    "api",
    "web",
];

/// The composition root: wires everything; nothing below it imports it.
const COMPOSITION: &[&str] = &["cli", "server"];

/// The module a file belongs to for the rule: its top-level module, except
/// the audit pages, which are a capability beside the audit core.
fn owner(rel: &Path) -> String {
    let s = rel.to_string_lossy().replace('\\', "/");
    if s == "audit/web.rs" {
        return "audit::web".into();
    }
    let first = s.split('/').next().unwrap_or_default();
    first.trim_end_matches(".rs").to_string()
}

fn is_infrastructure(owner: &str) -> bool {
    INFRASTRUCTURE.contains(&owner)
}

/// The first segment (or `audit::web`) names something infrastructure may
/// not use.
fn forbidden_for_infrastructure(path: &[String]) -> bool {
    let first = path.first().map_or("", String::as_str);
    CAPABILITIES.contains(&first)
        || COMPOSITION.contains(&first)
        || (first == "audit" && path.get(1).is_some_and(|s| s == "web"))
}

/// Every `crate::…` path in `src` (use trees expanded, `self` dropped) with
/// the local name it is bound to when it is a `use` of a module.
fn crate_paths(src: &str) -> Vec<(Vec<String>, String)> {
    let text: String = src
        .lines()
        .map(|l| l.split("//").next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n");
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(at) = text[from..].find("crate::") {
        let start = from + at;
        from = start + "crate::".len();
        let before = start.checked_sub(1).map(|i| bytes[i]);
        if before.is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'$') {
            continue;
        }
        let (trees, _) = parse_tree(bytes, from);
        out.extend(trees);
    }
    out
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && b[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}

fn ident(b: &[u8], i: usize) -> (String, usize) {
    let mut j = i;
    while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_' || b[j] == b'*') {
        j += 1;
    }
    (String::from_utf8_lossy(&b[i..j]).into_owned(), j)
}

/// Parses one use tree at `i`: `a::b`, `a::{b, c::d}`, `a as x`, `{…}`.
fn parse_tree(b: &[u8], i: usize) -> (Vec<(Vec<String>, String)>, usize) {
    let i = skip_ws(b, i);
    if b.get(i) == Some(&b'{') {
        let mut out = Vec::new();
        let mut j = i + 1;
        loop {
            j = skip_ws(b, j);
            match b.get(j) {
                None => return (out, j),
                Some(b'}') => return (out, j + 1),
                Some(b',') => j += 1,
                Some(_) => {
                    let (trees, next) = parse_tree(b, j);
                    if next == j {
                        return (out, j);
                    }
                    out.extend(trees);
                    j = next;
                }
            }
        }
    }
    let (name, j) = ident(b, i);
    if name.is_empty() {
        return (Vec::new(), i);
    }
    if b[j..].starts_with(b"::") {
        let (trees, next) = parse_tree(b, j + 2);
        if !trees.is_empty() {
            let prefixed = trees
                .into_iter()
                .map(|(mut p, alias)| {
                    p.insert(0, name.clone());
                    if p.last().is_some_and(|s| s == "self") {
                        p.pop();
                    }
                    let alias = if alias == "self" { name.clone() } else { alias };
                    (p, alias)
                })
                .collect();
            return (prefixed, next);
        }
    }
    let k = skip_ws(b, j);
    if b[k..].starts_with(b"as ") {
        let (alias, next) = ident(b, skip_ws(b, k + 3));
        return (vec![(vec![name], alias)], next);
    }
    (vec![(vec![name.clone()], name)], j)
}

/// The rule's violations in one file, as readable lines.
fn violations(rel: &Path, src: &str) -> BTreeSet<String> {
    let me = owner(rel);
    let me_top = me.split("::").next().unwrap_or_default().to_string();
    let mut out = BTreeSet::new();
    let paths = crate_paths(src);
    for (path, _) in &paths {
        let shown = format!("crate::{}", path.join("::"));
        if is_infrastructure(&me) && forbidden_for_infrastructure(path) {
            out.insert(format!("{}: infrastructure uses {shown}", rel.display()));
        }
        if !is_infrastructure(&me) && !COMPOSITION.contains(&me.as_str()) {
            let first = path.first().map_or("", String::as_str);
            if COMPOSITION.contains(&first) {
                out.insert(format!("{}: a capability uses {shown}", rel.display()));
            }
        }
        let first = path.first().map_or("", String::as_str);
        let second = path.get(1).map_or("", String::as_str);
        if first != me_top && matches!(second, "store" | "session_store") {
            out.insert(format!(
                "{}: uses another module's store {shown}",
                rel.display()
            ));
        } else if first != me_top
            && PRIVATE.contains(&second)
            && CAPABILITIES.contains(&first)
            && !COMPOSITION.contains(&me.as_str())
        {
            out.insert(format!(
                "{}: uses another capability's handlers {shown}",
                rel.display()
            ));
        }
    }
    // `use crate::auth;` then `auth::store::…`.
    for (path, alias) in &paths {
        let [module] = path.as_slice() else { continue };
        if module == &me_top || !CAPABILITIES.contains(&module.as_str()) {
            continue;
        }
        let needle = format!("{alias}::store");
        let hit = src.match_indices(&needle).any(|(i, _)| {
            let before = src[..i].chars().next_back();
            let after = src[i + needle.len()..].chars().next();
            !before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':')
                && !after.is_some_and(|c| c.is_alphanumeric() || c == '_')
        });
        if hit {
            out.insert(format!(
                "{}: uses another module's store {needle}",
                rel.display()
            ));
        }
    }
    out
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for path in entries.filter_map(|e| e.ok()).map(|e| e.path()) {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn dependencies_point_one_way() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    assert!(files.len() > 50, "found only {} files", files.len());
    let mut all = BTreeSet::new();
    for file in &files {
        let rel = file.strip_prefix(&src).unwrap_or(file);
        if rel == Path::new("layering.rs") {
            continue;
        }
        let text = std::fs::read_to_string(file).unwrap();
        all.extend(violations(rel, &text));
    }
    assert!(all.is_empty(), "layering violations:\n{}", {
        let v: Vec<_> = all.into_iter().collect();
        v.join("\n")
    });
}

#[test]
fn the_scanner_sees_every_form_of_import() {
    let src = "use crate::auth::{self, store as s};\n\
               use crate::{app::App, catalog::{model, store::x}};\n\
               // crate::nodes::store in a comment\n\
               fn f() { auth::store::get(); crate::instances::store::list(); }";
    let v = violations(Path::new("web/x.rs"), src);
    let text = v.into_iter().collect::<Vec<_>>().join("\n");
    for want in [
        "infrastructure uses crate::auth\n",
        "infrastructure uses crate::auth::store",
        "infrastructure uses crate::catalog::model",
        "store crate::catalog::store::x",
        "store crate::instances::store::list",
        "store auth::store",
    ] {
        assert!(
            format!("{text}\n").contains(want),
            "{want} missing in:\n{text}"
        );
    }
    assert!(!text.contains("nodes"), "comments are not code:\n{text}");
    assert!(!text.contains("crate::app"), "{text}");
    let pages = violations(
        Path::new("nodes/x.rs"),
        "use crate::catalog::pages::FormValues;",
    );
    assert_eq!(pages.len(), 1, "{pages:?}");
    let root = violations(Path::new("server.rs"), "crate::nodes::pages::routes()");
    assert!(root.is_empty(), "{root:?}");
    let own = violations(Path::new("auth/x.rs"), "use crate::auth::store;");
    assert!(own.is_empty(), "{own:?}");
    let audit_pages = violations(Path::new("audit/web.rs"), "use crate::auth::CurrentUser;");
    assert!(audit_pages.is_empty(), "{audit_pages:?}");
    let audit_core = violations(Path::new("audit/mod.rs"), "use crate::auth::model::User;");
    assert_eq!(audit_core.len(), 1, "{audit_core:?}");
}
