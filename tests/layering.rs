//! No import circle among the modules of one folder: for every module, its children form a
//! graph (an edge where code of one names another, through `crate::` or `super::`), and the
//! graph has no cycle. A cycle means two concerns that cannot be read, tested or moved apart.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A module's path from the crate root: `["release", "deploy"]`.
type Module = Vec<String>;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module a file holds (`mod.rs`, `lib.rs` and `main.rs` hold their folder's).
fn module_of(src: &Path, file: &Path) -> Module {
    let relative = file
        .strip_prefix(src)
        .expect("under src")
        .with_extension("");
    let mut parts: Module = relative
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// The code of a file before its tests, without comment lines (doc links name modules too).
fn code(file: &Path) -> String {
    let text = std::fs::read_to_string(file).expect("read source");
    let before_tests = text.split("#[cfg(test)]").next().unwrap_or_default();
    before_tests
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Sibling edges: (A, B) where A and B are children of one module and A's code names B.
fn sibling_edges(src: &Path) -> BTreeSet<(Module, Module)> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let modules: BTreeSet<Module> = files.iter().map(|f| module_of(src, f)).collect();
    let path = regex::Regex::new(r"\b(crate|super)((?:::\w+)+)").expect("regex");
    let mut edges = BTreeSet::new();
    for file in &files {
        let from = module_of(src, file);
        for found in path.captures_iter(&code(file)) {
            let mut segments: Vec<String> = found[2]
                .trim_start_matches("::")
                .split("::")
                .map(str::to_string)
                .collect();
            let mut target = match &found[1] {
                "crate" => Vec::new(),
                // `super` of a module is its parent, whichever file holds it.
                _ => from[..from.len().saturating_sub(1)].to_vec(),
            };
            while segments.first().map(String::as_str) == Some("super") {
                target.pop();
                segments.remove(0);
            }
            target.extend(segments);
            while !target.is_empty() && !modules.contains(&target) {
                target.pop();
            }
            let common = from.iter().zip(&target).take_while(|(a, b)| a == b).count();
            if common < from.len() && common < target.len() {
                edges.insert((from[..=common].to_vec(), target[..=common].to_vec()));
            }
        }
    }
    edges
}

/// Every cycle's modules, found by depth-first search.
fn cycles(edges: &BTreeSet<(Module, Module)>) -> Vec<Vec<Module>> {
    let mut graph: BTreeMap<&Module, Vec<&Module>> = BTreeMap::new();
    for (a, b) in edges {
        graph.entry(a).or_default().push(b);
    }
    let mut found = Vec::new();
    let mut done: BTreeSet<&Module> = BTreeSet::new();
    fn visit<'a>(
        node: &'a Module,
        graph: &BTreeMap<&'a Module, Vec<&'a Module>>,
        stack: &mut Vec<&'a Module>,
        done: &mut BTreeSet<&'a Module>,
        found: &mut Vec<Vec<Module>>,
    ) {
        if let Some(at) = stack.iter().position(|m| *m == node) {
            found.push(stack[at..].iter().map(|m| (*m).clone()).collect());
            return;
        }
        if done.contains(node) {
            return;
        }
        stack.push(node);
        for next in graph.get(node).into_iter().flatten() {
            visit(next, graph, stack, done, found);
        }
        stack.pop();
        done.insert(node);
    }
    for node in graph.keys() {
        visit(node, &graph, &mut Vec::new(), &mut done, &mut found);
    }
    found
}

#[test]
fn no_module_imports_a_sibling_that_imports_it_back() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let found = cycles(&sibling_edges(&src));
    let shown: Vec<String> = found
        .iter()
        .map(|cycle| {
            let mut names: Vec<String> = cycle.iter().map(|m| m.join("/")).collect();
            names.push(names[0].clone());
            names.join(" -> ")
        })
        .collect();
    assert!(shown.is_empty(), "import circles:\n{}", shown.join("\n"));
}

#[test]
fn the_circle_check_sees_a_circle() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    std::fs::create_dir_all(src.join("release")).unwrap();
    std::fs::write(src.join("lib.rs"), "pub mod release;\n").unwrap();
    std::fs::write(src.join("release/mod.rs"), "pub mod a;\npub mod b;\n").unwrap();
    std::fs::write(
        src.join("release/a.rs"),
        "use super::b::B;\n// super::c in a comment\n",
    )
    .unwrap();
    std::fs::write(src.join("release/b.rs"), "use crate::release::a::A;\n").unwrap();
    let found = cycles(&sibling_edges(src));
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].len(), 2);
}

/// Lines of non-test code that format a value with `{:?}`, except inside `Debug` impls
/// (`write!(f, …)`): `Debug` text (`Some("x")`, `Deadline(InProgress)`, `["a", "b"]`) is
/// for programmers, and every message of this binary reaches an operator or a job log.
fn debug_formatting(src: &Path) -> Vec<String> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    files.sort();
    let mut found = Vec::new();
    for file in files {
        for line in code(&file).lines() {
            let formats_debug = line.contains(":?}") || line.contains(":#?}");
            if formats_debug && !line.contains("write!(f") {
                found.push(format!(
                    "{}: {}",
                    file.strip_prefix(src).unwrap_or(&file).display(),
                    line.trim()
                ));
            }
        }
    }
    found
}

#[test]
fn no_message_formats_with_debug() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let found = debug_formatting(&src);
    assert!(
        found.is_empty(),
        "Debug formatting outside tests and Debug impls:\n{}",
        found.join("\n")
    );
}
