//! The module boundaries of ARCHITECTURE.md, checked on the source text: no import circle
//! between files.
//!
//! The graph has one node per file under `src/` and an edge from a file to every file whose
//! items it names (`use` trees, and inline `crate::…` / `super::…` / `self::…` paths). A path
//! that stops at a module's `mod.rs` and names something the module re-exports (`pub use
//! child::Name`) counts as naming the child that defines it, so a facade never hides a circle.
//! `mod x;` declarations and the re-exports themselves are not edges: they are the module's
//! table of contents, not a dependency of its own code.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

/// A file's module path below `crate` (`["api", "client"]`), and whether it is a module root
/// (`mod.rs` / `lib.rs`), whose `self` is itself rather than its parent.
#[derive(Debug, Clone)]
struct ModFile {
    rel: String,
    module: Vec<String>,
}

struct Crate {
    src: PathBuf,
    /// Module path → file (relative to `src/`).
    files: BTreeMap<Vec<String>, ModFile>,
    /// Module path → (re-exported name → full path it stands for).
    reexports: HashMap<Vec<String>, HashMap<String, Vec<String>>>,
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code without comments, string and char literals (their text could look like paths).
fn code_only(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < bytes.len() {
        let rest = &text[i..];
        if rest.starts_with("//") {
            let end = rest.find('\n').map_or(bytes.len(), |n| i + n);
            i = end;
        } else if rest.starts_with("/*") {
            let end = rest.find("*/").map_or(bytes.len(), |n| i + n + 2);
            i = end;
        } else if rest.starts_with("r#\"") || rest.starts_with("r\"") {
            let hashes = rest[1..].chars().take_while(|&c| c == '#').count();
            let close = format!("\"{}", "#".repeat(hashes));
            let start = i + 2 + hashes;
            let end = text[start..]
                .find(&close)
                .map_or(bytes.len(), |n| start + n + close.len());
            out.push_str("\"\"");
            i = end;
        } else if bytes[i] == b'"' {
            let mut j = i + 1;
            while j < bytes.len() && bytes[j] != b'"' {
                j += if bytes[j] == b'\\' { 2 } else { 1 };
            }
            out.push_str("\"\"");
            i = j + 1;
        } else if bytes[i] == b'\'' && is_char_literal(&text[i..]) {
            let close = text[i + 1..]
                .char_indices()
                .skip(1)
                .find(|&(_, c)| c == '\'')
                .map_or(bytes.len(), |(n, _)| i + 1 + n + 1);
            out.push_str("' '");
            i = close;
        } else {
            let c = rest.chars().next().unwrap();
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

/// `'a'`, `'\n'`, `'\u{1b}'` — but not a lifetime `'a`.
fn is_char_literal(rest: &str) -> bool {
    let mut chars = rest.chars().skip(1);
    match chars.next() {
        Some('\\') => true,
        Some(_) => chars.next() == Some('\''),
        None => false,
    }
}

/// Expands a `use` tree (`a::{b, c::{d, e as f}, self}`) into full paths (aliases dropped,
/// globs kept as `*`).
fn expand_use_tree(tree: &str) -> Vec<Vec<String>> {
    fn split_top(text: &str) -> Vec<&str> {
        let (mut depth, mut start, mut parts) = (0, 0, Vec::new());
        for (i, c) in text.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    parts.push(&text[start..i]);
                    start = i + 1;
                }
                _ => {}
            }
        }
        parts.push(&text[start..]);
        parts
    }
    fn expand(prefix: &[String], tree: &str, out: &mut Vec<Vec<String>>) {
        let tree = tree.trim();
        if tree.is_empty() {
            return;
        }
        if let Some(open) = tree.find('{') {
            let head = tree[..open].trim().trim_end_matches("::");
            let inner = &tree[open + 1..tree.rfind('}').unwrap()];
            let mut base = prefix.to_vec();
            base.extend(
                head.split("::")
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned),
            );
            for part in split_top(inner) {
                if part.trim() == "self" {
                    out.push(base.clone());
                } else {
                    expand(&base, part, out);
                }
            }
        } else {
            let path = tree.split(" as ").next().unwrap().trim();
            let mut full = prefix.to_vec();
            full.extend(path.split("::").map(|s| s.trim().to_owned()));
            out.push(full);
        }
    }
    let mut out = Vec::new();
    expand(&[], tree, &mut out);
    out
}

/// The `use` statements of `code`: (is `pub use`, expanded paths).
fn use_statements(code: &str) -> Vec<(bool, Vec<Vec<String>>)> {
    let mut found = Vec::new();
    let mut rest = code;
    while let Some(at) = find_word(rest, "use") {
        let before = rest[..at].trim_end();
        let public = before.ends_with("pub") || before.ends_with(')') && before.contains("pub(");
        let after = &rest[at + 3..];
        let Some(end) = after.find(';') else { break };
        found.push((public, expand_use_tree(&after[..end])));
        rest = &after[end..];
    }
    found
}

fn find_word(text: &str, word: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = text[from..].find(word).map(|i| from + i) {
        let before = text[..i].chars().next_back();
        let after = text[i + word.len()..].chars().next();
        let boundary = |c: Option<char>| c.is_none_or(|c| !(c.is_alphanumeric() || c == '_'));
        if boundary(before) && after.is_some_and(char::is_whitespace) {
            return Some(i);
        }
        from = i + word.len();
    }
    None
}

/// Inline paths starting with `crate::`, `super::` or `self::`.
fn inline_paths(code: &str) -> Vec<Vec<String>> {
    ["crate", "super", "self"]
        .into_iter()
        .flat_map(|start| {
            inline_uses_of(code, start)
                .into_iter()
                .map(move |mut path| {
                    path.insert(0, start.to_owned());
                    path
                })
        })
        .collect()
}

/// The paths after `name::` wherever `name::` starts a path in `code` (`db::items::get` for
/// `db`), without the leading `name`.
fn inline_uses_of(code: &str, name: &str) -> Vec<Vec<String>> {
    let needle = format!("{name}::");
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(i) = code[from..].find(&needle).map(|i| from + i) {
        from = i + needle.len();
        let before = code[..i].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        let rest: String = code[from..]
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
            .collect();
        out.push(
            rest.split("::")
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
        );
    }
    out
}

impl Crate {
    fn load() -> Self {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut paths = Vec::new();
        rust_files(&src, &mut paths);
        let mut files = BTreeMap::new();
        for path in paths {
            let rel = path
                .strip_prefix(&src)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let mut module: Vec<String> = rel
                .trim_end_matches(".rs")
                .split('/')
                .map(str::to_owned)
                .collect();
            if matches!(
                module.last().map(String::as_str),
                Some("mod" | "lib" | "main")
            ) {
                module.pop();
            }
            if rel == "main.rs" {
                continue;
            }
            files.insert(module.clone(), ModFile { rel, module });
        }
        let mut krate = Crate {
            src,
            files,
            reexports: HashMap::new(),
        };
        let roots: Vec<ModFile> = krate.files.values().cloned().collect();
        for file in roots {
            let code = code_only(&std::fs::read_to_string(krate.src.join(&file.rel)).unwrap());
            let mut names = HashMap::new();
            for (public, paths) in use_statements(&code) {
                if !public {
                    continue;
                }
                for path in paths {
                    let full = krate.absolute(&file, &path);
                    if let Some(name) = full.last().filter(|n| *n != "*") {
                        names.insert(name.clone(), full.clone());
                    }
                }
            }
            krate.reexports.insert(file.module.clone(), names);
        }
        krate
    }

    /// `path` as written in `file`, made absolute (without the leading `crate`). Paths that
    /// start elsewhere (`std::…`, a dependency, a child module named directly) are taken as
    /// relative to the file's module, which the resolver then finds or ignores.
    fn absolute(&self, file: &ModFile, path: &[String]) -> Vec<String> {
        let mut module = file.module.clone();
        let mut rest = path;
        match rest.first().map(String::as_str) {
            Some("crate") => {
                module.clear();
                rest = &rest[1..];
            }
            Some("super" | "self") => {
                while let Some(first) = rest.first() {
                    match first.as_str() {
                        "super" => {
                            module.pop();
                        }
                        "self" => {}
                        _ => break,
                    }
                    rest = &rest[1..];
                }
            }
            _ => {}
        }
        module.extend(rest.iter().cloned());
        module
    }

    /// The file that defines what `path` (absolute) names, following re-exports.
    fn resolve(&self, path: &[String], depth: usize) -> Option<&ModFile> {
        let mut best = None;
        for len in (0..=path.len()).rev() {
            if let Some(file) = self.files.get(&path[..len]) {
                best = Some((len, file));
                break;
            }
        }
        let (len, file) = best?;
        if depth < 8
            && let Some(name) = path.get(len)
            && let Some(target) = self.reexports.get(&file.module).and_then(|r| r.get(name))
            && target.as_slice() != path
        {
            let mut next = target.clone();
            next.extend(path[len + 1..].iter().cloned());
            return self.resolve(&next, depth + 1).or(Some(file));
        }
        Some(file)
    }

    /// file → the files its own code names.
    fn edges(&self) -> BTreeMap<String, BTreeSet<String>> {
        let mut graph = BTreeMap::new();
        for file in self.files.values() {
            let code = code_only(&std::fs::read_to_string(self.src.join(&file.rel)).unwrap());
            // A file's unit tests may use anything; they are not part of its dependencies.
            let code = match code.find("#[cfg(test)]") {
                Some(at) => &code[..at],
                None => &code[..],
            };
            let mut paths: Vec<Vec<String>> = use_statements(code)
                .into_iter()
                .filter(|(public, _)| !public)
                .flat_map(|(_, paths)| paths)
                .collect();
            paths.extend(inline_paths(code));
            // A module brought in by `use` (`use crate::db;`) and then named inline
            // (`db::items::get(…)`): follow the inline path from the imported module.
            let modules: Vec<(String, Vec<String>)> = paths
                .iter()
                .filter(|p| {
                    matches!(
                        p.first().map(String::as_str),
                        Some("crate" | "super" | "self")
                    )
                })
                .map(|p| self.absolute(file, p))
                .filter(|full| self.files.contains_key(full))
                .filter_map(|full| Some((full.last()?.clone(), full)))
                .collect();
            for (name, module) in modules {
                for inline in inline_uses_of(code, &name) {
                    let mut full = vec!["crate".to_owned()];
                    full.extend(module.iter().cloned());
                    full.extend(inline);
                    paths.push(full);
                }
            }
            let targets = graph.entry(file.rel.clone()).or_insert_with(BTreeSet::new);
            for path in paths {
                if !matches!(
                    path.first().map(String::as_str),
                    Some("crate" | "super" | "self")
                ) {
                    continue;
                }
                let full = self.absolute(file, &path);
                if let Some(target) = self.resolve(&full, 0)
                    && target.rel != file.rel
                    && !target.module.is_empty()
                {
                    targets.insert(target.rel.clone());
                }
            }
        }
        graph
    }
}

/// Every pair of files that reach each other, as "a → … → b → … → a" (one line per strongly
/// connected group of files).
fn circles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    let reach = |from: &str| {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.to_owned()];
        while let Some(node) = todo.pop() {
            for next in graph.get(&node).into_iter().flatten() {
                if seen.insert(next.clone()) {
                    todo.push(next.clone());
                }
            }
        }
        seen
    };
    let reachable: BTreeMap<&String, BTreeSet<String>> =
        graph.keys().map(|k| (k, reach(k))).collect();
    let mut groups: Vec<BTreeSet<String>> = Vec::new();
    for (node, seen) in &reachable {
        if !seen.contains(*node) || groups.iter().any(|g| g.contains(*node)) {
            continue;
        }
        let group: BTreeSet<String> = seen
            .iter()
            .filter(|other| reachable[other].contains(*node))
            .cloned()
            .collect();
        groups.push(group);
    }
    groups
        .into_iter()
        .map(|group| {
            let edges: Vec<String> = group
                .iter()
                .flat_map(|from| {
                    graph[from]
                        .iter()
                        .filter(|to| group.contains(*to))
                        .map(move |to| format!("{from} → {to}"))
                })
                .collect();
            edges.join(", ")
        })
        .collect()
}

#[test]
fn the_import_graph_reads_use_trees_inline_paths_and_re_exports() {
    assert_eq!(
        expand_use_tree("crate::api::{self, ApiError, types::{Analysis, Sub as S}}"),
        vec![
            vec!["crate", "api"],
            vec!["crate", "api", "ApiError"],
            vec!["crate", "api", "types", "Analysis"],
            vec!["crate", "api", "types", "Sub"],
        ]
    );
    let code = code_only(
        "// use crate::x;\nlet s = \"crate::y\"; let c = '\"'; crate::z::f(); fn a<'a>() {}",
    );
    assert_eq!(inline_paths(&code), vec![vec!["crate", "z", "f"]]);
    let krate = Crate::load();
    let graph = krate.edges();
    // Known edges, one through a facade: the scanner's batch names `crate::storage::Store`,
    // which `storage/mod.rs` re-exports from `storage/store.rs`.
    assert!(
        graph["intake/scanner/batch.rs"].contains("storage/store.rs"),
        "{:?}",
        graph["intake/scanner/batch.rs"]
    );
    // And one through a module imported by name (`use crate::db;` then
    // `db::items::find_recorded_sources`), re-exported by `db/items.rs` from `db/items/intake.rs`.
    assert!(
        graph["intake/scanner/batch.rs"].contains("db/items/intake.rs"),
        "{:?}",
        graph["intake/scanner/batch.rs"]
    );
    let two_way = BTreeMap::from([
        ("a.rs".to_owned(), BTreeSet::from(["b.rs".to_owned()])),
        ("b.rs".to_owned(), BTreeSet::from(["a.rs".to_owned()])),
        ("c.rs".to_owned(), BTreeSet::from(["a.rs".to_owned()])),
    ]);
    assert_eq!(circles(&two_way), vec!["a.rs → b.rs, b.rs → a.rs"]);
}

#[test]
fn no_file_imports_a_file_that_imports_it_back() {
    let graph = Crate::load().edges();
    let found = circles(&graph);
    assert!(
        found.is_empty(),
        "import circles between files under src/ (break them by moving the shared part into \
         a module both can use):\n{}",
        found.join("\n")
    );
}

/// Joe Sandbox's wire vocabulary: endpoint paths, form fields, reply fields and message texts
/// that only `api` (and the simulator, which plays the server) may spell out.
const VENDOR_WORDS: &[&str] = &[
    "/api/v2",
    "server/online",
    "server/info",
    "server/systems",
    "server/lia_countries",
    "server/languages",
    "account/info",
    "submission/new",
    "submission/info",
    "submission/list",
    "submission/delete",
    "analysis/search",
    "analysis/info",
    "analysis/list",
    "analysis/download",
    "analysis/delete",
    "apikey",
    "chunked-sample",
    "most_relevant_analysis",
    "analysisid",
    "pagination_next",
    "queuesize",
    "include-shared",
];

/// The string literals of `code` (their raw text between the quotes).
fn string_literals(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let rest = &text[i..];
        if rest.starts_with("//") {
            i = rest.find('\n').map_or(bytes.len(), |n| i + n);
        } else if rest.starts_with("r#\"") || rest.starts_with("r\"") {
            let hashes = rest[1..].chars().take_while(|&c| c == '#').count();
            let close = format!("\"{}", "#".repeat(hashes));
            let start = i + 2 + hashes;
            let end = text[start..]
                .find(&close)
                .map_or(bytes.len(), |n| start + n);
            out.push(text[start..end].to_owned());
            i = end + close.len();
        } else if bytes[i] == b'"' {
            let mut j = i + 1;
            while j < bytes.len() && bytes[j] != b'"' {
                j += if bytes[j] == b'\\' { 2 } else { 1 };
            }
            out.push(text[i + 1..j.min(bytes.len())].to_owned());
            i = j + 1;
        } else if bytes[i] == b'\'' && is_char_literal(rest) {
            i += rest[1..]
                .char_indices()
                .skip(1)
                .find(|&(_, c)| c == '\'')
                .map_or(1, |(n, _)| n + 2);
        } else {
            i += rest.chars().next().unwrap().len_utf8();
        }
    }
    out
}

/// Every `.rs` file under `src/`: (its path relative to `src/`, its full path).
fn src_files() -> Vec<(String, PathBuf)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut paths = Vec::new();
    rust_files(&src, &mut paths);
    paths
        .into_iter()
        .map(|path| {
            let rel = path
                .strip_prefix(&src)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            (rel, path)
        })
        .collect()
}

#[test]
fn no_joe_url_path_field_name_or_message_text_outside_api_and_the_simulator() {
    let mut found = Vec::new();
    for (rel, path) in src_files() {
        // `db` holds our schema, whose column names follow Joe's (`analysisid`).
        if rel.starts_with("api/") || rel.starts_with("simulator/") || rel.starts_with("db/") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        // Unit tests may quote the wire format to build their inputs.
        let text = match text.find("#[cfg(test)]") {
            Some(at) => &text[..at],
            None => &text[..],
        };
        for literal in string_literals(text) {
            for word in VENDOR_WORDS {
                if literal.contains(word) {
                    found.push(format!("{rel}: {word:?} in \"{literal}\""));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "Joe Sandbox's vocabulary outside src/api and src/simulator (give api a typed method, \
         error accessor or constant instead):\n{}",
        found.join("\n")
    );
}

/// What each top-level module of `src/` may use (ARCHITECTURE.md, "Bird's-eye view"). A new
/// module, or a new dependency between modules, is a decision: make it here, on purpose.
const ALLOWED: &[(&str, &[&str])] = &[
    ("text", &[]),
    ("worker", &[]),
    ("crashpoint", &[]),
    ("ioc", &[]),
    ("api", &["ioc", "text"]),
    ("storage", &["crashpoint", "text"]),
    ("db", &["ioc", "storage", "text"]),
    ("config", &["api", "text"]),
    ("telemetry", &["config", "text"]),
    ("index", &["api", "app", "db", "ioc", "text", "worker"]),
    ("simulator", &["api", "text"]),
    ("breaker", &["api", "config", "db", "text", "worker"]),
    (
        "app",
        &[
            "api", "breaker", "config", "db", "intake", "storage", "worker",
        ],
    ),
    (
        "intake",
        &[
            "api",
            "app",
            "config",
            "crashpoint",
            "db",
            "storage",
            "text",
            "worker",
        ],
    ),
    (
        "pipeline",
        &[
            "api",
            "app",
            "breaker",
            "config",
            "crashpoint",
            "db",
            "intake",
            "storage",
            "text",
            "worker",
        ],
    ),
    (
        "daemon",
        &[
            "api",
            "app",
            "breaker",
            "config",
            "crashpoint",
            "db",
            "index",
            "intake",
            "pipeline",
            "storage",
            "telemetry",
            "text",
            "worker",
        ],
    ),
    (
        "testing",
        &[
            "api",
            "app",
            "config",
            "db",
            "pipeline",
            "simulator",
            "storage",
            "text",
            "worker",
        ],
    ),
    (
        "cli",
        &[
            "api",
            "app",
            "config",
            "daemon",
            "db",
            "index",
            "intake",
            "ioc",
            "simulator",
            "storage",
            "telemetry",
            "testing",
            "text",
            "worker",
            "breaker",
            "pipeline",
        ],
    ),
];

#[test]
fn modules_use_only_the_modules_architecture_allows_them() {
    let graph = Crate::load().edges();
    let top = |f: &str| {
        f.split('/')
            .next()
            .unwrap()
            .trim_end_matches(".rs")
            .to_owned()
    };
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    let mut found = BTreeSet::new();
    for (from, tos) in &graph {
        let module = top(from);
        if module == "lib" {
            continue;
        }
        let Some(may) = allowed.get(module.as_str()) else {
            found.insert(format!(
                "{module}: not in ALLOWED (a new module: say what it may use)"
            ));
            continue;
        };
        for to in tos {
            let target = top(to);
            if target != module && !may.contains(&target.as_str()) {
                found.insert(format!("{from} uses {to}: {module} may not use {target}"));
            }
        }
    }
    assert!(
        found.is_empty(),
        "module rules broken:\n{}",
        found.into_iter().collect::<Vec<_>>().join("\n")
    );
}

/// A file this long holds more than one concern unless its module documentation says why not.
const LONG_FILE_LINES: usize = 600;
const LONG_FILE_REASON: &str = "Why one file:";

#[test]
fn a_file_over_600_lines_outside_the_simulator_says_at_its_top_why_it_is_one_file() {
    let mut found = Vec::new();
    for (rel, path) in src_files() {
        if rel.starts_with("simulator/") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let lines = text.lines().count();
        let head: String = text
            .lines()
            .take_while(|l| l.starts_with("//!") || l.trim().is_empty())
            .collect::<Vec<_>>()
            .join("\n");
        if lines > LONG_FILE_LINES && !head.contains(LONG_FILE_REASON) {
            found.push(format!("{rel}: {lines} lines"));
        }
    }
    assert!(
        found.is_empty(),
        "split these by concern, or say in their module docs `{LONG_FILE_REASON} …`:\n{}",
        found.join("\n")
    );
}
