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

/// Files of `src/release` whose code before its tests is longer than `limit` lines: a file
/// that long holds more than one concern.
fn long_files(dir: &Path, limit: usize) -> Vec<String> {
    let mut files = Vec::new();
    rust_files(dir, &mut files);
    files.sort();
    files
        .iter()
        .filter_map(|file| {
            let text = std::fs::read_to_string(file).expect("read source");
            let lines = text
                .split("#[cfg(test)]")
                .next()
                .unwrap_or_default()
                .lines()
                .count();
            (lines > limit).then(|| format!("{}: {lines} lines", file.display()))
        })
        .collect()
}

#[test]
fn no_release_file_holds_more_than_one_concerns_worth_of_code() {
    let release = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/release");
    let found = long_files(&release, 600);
    assert!(
        found.is_empty(),
        "split these by concern:\n{}",
        found.join("\n")
    );
}

/// The exit tables: every error's exit class or code decided by one exhaustive match.
const EXIT_TABLES: [&str; 3] = [
    "src/stages/exit_class.rs",
    "src/commands/exit.rs",
    "src/exec/mod.rs",
];

#[test]
fn exit_tables_match_every_variant_by_name_and_have_no_other_door() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for table in EXIT_TABLES {
        let code = code(&root.join(table));
        // In the exec error module only its exit_code fn is a table; elsewhere the file is.
        let table_code = match code.find("pub fn exit_code") {
            Some(start) if table.ends_with("mod.rs") => code[start..]
                .split("\n    }\n")
                .next()
                .unwrap_or_default()
                .to_string(),
            _ => code,
        };
        let wildcards: Vec<&str> = table_code
            .lines()
            .filter(|l| l.trim_start().starts_with("_ =>") || l.contains("| _ =>"))
            .collect();
        assert!(
            wildcards.is_empty(),
            "{table}: a wildcard arm decides new variants silently: {wildcards:?}"
        );
    }
    // The process ends in main.rs, with the code a table decided, and nowhere else.
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    for file in files {
        let code = code(&file);
        assert!(
            !code.contains("process::exit("),
            "{}: exits around the exit tables",
            file.display()
        );
        if !file.ends_with("main.rs") {
            assert!(
                !code.contains("ExitCode::from("),
                "{}: picks an exit code outside main.rs",
                file.display()
            );
        }
    }
}

#[test]
fn the_exit_table_check_sees_a_wildcard() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("exit.rs");
    std::fs::write(
        &file,
        "fn f(e: E) -> u8 {\n    match e {\n        _ => 1,\n    }\n}\n",
    )
    .unwrap();
    assert!(code(&file)
        .lines()
        .any(|l| l.trim_start().starts_with("_ =>")));
    let long = dir.path().join("long.rs");
    std::fs::write(&long, "fn f() {}\n".repeat(601)).unwrap();
    assert_eq!(long_files(dir.path(), 600).len(), 1);
}
