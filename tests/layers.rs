//! The layers point one way: app, cli -> run -> models -> train, backend -> data -> core.
//!
//! Reads every file under src/ and fails when a module names (`crate::X`, or `noisescope::X` in
//! the binary) a module its layer may not import, climbs out of its module with `super::`, or when
//! the imports between top-level modules form a circle. Test code inside src/ counts too.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// What each top-level module may import (besides itself). `error` is the library's error type,
/// shared by every layer; `train` sits beside `backend` (neither imports the other).
const ALLOWED: &[(&str, &[&str])] = &[
    ("error", &[]),
    ("core", &["error"]),
    ("data", &["core", "error"]),
    ("backend", &["data", "core", "error"]),
    ("train", &["data", "core", "error"]),
    ("models", &["train", "backend", "data", "core", "error"]),
    (
        "run",
        &["models", "train", "backend", "data", "core", "error"],
    ),
    (
        "app",
        &["run", "models", "train", "backend", "data", "core", "error"],
    ),
    // The binary (main.rs and cli/) reaches the library as `noisescope::`.
    (
        "cli",
        &[
            "app", "run", "models", "train", "backend", "data", "core", "error",
        ],
    ),
];

fn allowed(module: &str) -> Option<&'static [&'static str]> {
    ALLOWED.iter().find(|(m, _)| *m == module).map(|(_, a)| *a)
}

/// The top-level module a file under src/ belongs to, and how deep it sits in the module tree
/// (src/core/mod.rs: 1, src/core/estimate.rs: 2); `None` for lib.rs.
fn module_of(relative: &Path) -> Option<(String, usize)> {
    let parts: Vec<String> = relative
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let first = parts.first()?;
    let top = match first.as_str() {
        "lib.rs" => return None,
        "main.rs" => "cli".to_string(),
        file if parts.len() == 1 => file.trim_end_matches(".rs").to_string(),
        dir => dir.to_string(),
    };
    let last = parts.last()?;
    let depth = if last == "mod.rs" || last == "main.rs" {
        parts.len() - 1
    } else {
        parts.len()
    };
    Some((top, depth.max(1)))
}

/// The code of a file without comments (line comments and doc comments).
fn code_of(text: &str) -> String {
    text.lines()
        .map(|line| match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The top-level modules named after `prefix::` in `code`, with `use prefix::{a::x, b}` groups
/// read to their first segments.
fn imports_of(code: &str, prefix: &str) -> BTreeSet<String> {
    let needle = format!("{prefix}::");
    let mut found = BTreeSet::new();
    let mut rest = code;
    while let Some(at) = rest.find(&needle) {
        let before = rest[..at].chars().last();
        rest = &rest[at + needle.len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 1;
            let mut item = String::new();
            let mut items = Vec::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 1 => {
                        items.push(std::mem::take(&mut item));
                        continue;
                    }
                    _ => {}
                }
                if depth == 0 {
                    break;
                }
                item.push(c);
            }
            items.push(item);
            for item in items {
                let name = first_segment(item.trim());
                if !name.is_empty() {
                    found.insert(name);
                }
            }
        } else {
            let name = first_segment(rest);
            if !name.is_empty() {
                found.insert(name);
            }
        }
    }
    found
}

fn first_segment(path: &str) -> String {
    path.chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

/// Whether some `super::` run in the code climbs above the file's module, a file at `depth` in
/// the module tree; inline `mod name { ... }` blocks add a level for the code inside them.
fn climbs_out(code: &str, depth: usize) -> bool {
    let bytes = code.as_bytes();
    let word_before = |at: usize| {
        at > 0
            && (bytes[at - 1].is_ascii_alphanumeric()
                || bytes[at - 1] == b'_'
                || bytes[at - 1] == b':')
    };
    // Brace depths at which the open inline modules started.
    let mut inline: Vec<usize> = Vec::new();
    let mut braces = 0usize;
    let mut at = 0;
    while at < bytes.len() {
        let Some(rest) = code.get(at..) else {
            at += 1;
            continue;
        };
        if rest.starts_with("mod ") && !word_before(at) {
            let after = rest[4..].trim_start();
            let name: String = after
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if after[name.len()..].trim_start().starts_with('{') {
                inline.push(braces + 1);
            }
        } else if rest.starts_with("super::") && !word_before(at) {
            let mut count = 0;
            let mut tail = rest;
            while let Some(next) = tail.strip_prefix("super::") {
                count += 1;
                tail = next;
            }
            if count >= depth + inline.len() {
                return true;
            }
            at += rest.len() - tail.len();
            continue;
        }
        match bytes[at] {
            b'{' => braces += 1,
            b'}' => {
                if inline.last() == Some(&braces) {
                    inline.pop();
                }
                braces = braces.saturating_sub(1);
            }
            _ => {}
        }
        at += 1;
    }
    false
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        panic!("cannot read {}", dir.display())
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every import of one top-level module by another: (from, to) -> the files that make it.
type Edges = BTreeMap<(String, String), Vec<String>>;

/// The imports between top-level modules, and every file that breaks a rule.
fn edges_and_violations() -> (Edges, Vec<String>) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    assert!(
        files.len() > 20,
        "found only {} files under src/",
        files.len()
    );
    let mut edges = Edges::new();
    let mut violations = Vec::new();
    for file in files {
        let relative = file.strip_prefix(&src).unwrap_or(&file).to_path_buf();
        let Some((module, depth)) = module_of(&relative) else {
            continue;
        };
        let name = relative.display().to_string();
        let Some(may) = allowed(&module) else {
            violations.push(format!(
                "{name}: module `{module}` has no row in the layer table"
            ));
            continue;
        };
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        let code = code_of(&text);
        let prefix = if module == "cli" {
            "noisescope"
        } else {
            "crate"
        };
        for target in imports_of(&code, prefix) {
            if target == module || (module == "cli" && target == "cli") {
                continue;
            }
            if !may.contains(&target.as_str()) {
                violations.push(format!(
                    "{name}: `{module}` imports `{target}`, which is not below it"
                ));
            }
            edges
                .entry((module.clone(), target))
                .or_default()
                .push(name.clone());
        }
        if climbs_out(&code, depth) {
            violations.push(format!(
                "{name}: `super::` climbs out of `{module}`; name other modules with `crate::`"
            ));
        }
    }
    (edges, violations)
}

/// A circle in a directed graph, if there is one.
fn find_circle(edges: &BTreeSet<(String, String)>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        edges: &BTreeSet<(String, String)>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut circle = path[at..].to_vec();
            circle.push(node.to_string());
            return Some(circle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for (_, to) in edges.iter().filter(|(from, _)| from == node) {
            if let Some(circle) = visit(to, edges, path, done) {
                return Some(circle);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for (from, _) in edges {
        if let Some(circle) = visit(from, edges, &mut Vec::new(), &mut done) {
            return Some(circle);
        }
    }
    None
}

#[test]
fn every_import_points_down() {
    let (edges, violations) = edges_and_violations();
    assert!(
        violations.is_empty(),
        "imports against the layers:\n{}",
        violations.join("\n")
    );
    // The modules do import each other: the scan sees the real graph.
    for (from, to) in [("run", "models"), ("models", "backend"), ("data", "core")] {
        assert!(
            edges.contains_key(&(from.to_string(), to.to_string())),
            "no {from} -> {to} import found: {edges:?}"
        );
    }
}

#[test]
fn there_are_no_import_circles() {
    let (edges, _) = edges_and_violations();
    let found: BTreeSet<(String, String)> = edges.into_keys().collect();
    assert_eq!(find_circle(&found), None, "import circle among {found:?}");
    let table: BTreeSet<(String, String)> = ALLOWED
        .iter()
        .flat_map(|(m, may)| may.iter().map(move |t| (m.to_string(), t.to_string())))
        .collect();
    assert_eq!(find_circle(&table), None, "the layer table has a circle");
}

#[test]
fn the_scanner_finds_what_it_should() {
    let code = code_of(
        "use crate::{core::{Batch, dot}, data::DataSet};\n\
         use crate::run::RunSpec; // crate::app::Ignored\n\
         /// [`crate::models::Doc`]\n\
         fn f() { let _ = crate::backend::Compute::cpu(); let _ = mycrate::app::X; }",
    );
    let found: Vec<String> = imports_of(&code, "crate").into_iter().collect();
    assert_eq!(found, ["backend", "core", "data", "run"]);
    assert!(climbs_out("use super::super::run::X;", 2));
    assert!(!climbs_out("use super::Y;", 2));
    assert!(climbs_out("use super::Y;", 1));
    assert!(!climbs_out("mod tests { use super::*; }", 1));
    assert!(climbs_out("mod tests { use super::super::*; }", 1));
    assert_eq!(
        module_of(Path::new("core/estimate.rs")),
        Some(("core".into(), 2))
    );
    assert_eq!(module_of(Path::new("app/mod.rs")), Some(("app".into(), 1)));
    assert_eq!(module_of(Path::new("error.rs")), Some(("error".into(), 1)));
    assert_eq!(module_of(Path::new("main.rs")), Some(("cli".into(), 1)));
    assert_eq!(module_of(Path::new("lib.rs")), None);
    let circle: BTreeSet<(String, String)> = [("a", "b"), ("b", "c"), ("c", "a")]
        .iter()
        .map(|(x, y)| (x.to_string(), y.to_string()))
        .collect();
    assert!(find_circle(&circle).is_some());
    // A core file naming run breaks the rule.
    assert!(!allowed("core").unwrap_or(&[]).contains(&"run"));
}
