//! The modules of `src/core` and of `src/emulator` import each other without cycles, so
//! each can be read (and changed) knowing only what it imports: a newcomer's map, held
//! by a test. Dependencies are read from the source text: `super::x`, `super::{x, y}` and
//! `crate::core::x` / `crate::emulator::x` outside comments and test modules.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Code only: tests may import anything (comments are skipped line by line below).
fn code_of(text: &str) -> &str {
    text.split("#[cfg(test)]").next().unwrap_or("")
}

fn imports(dir: &str) -> BTreeMap<String, BTreeSet<String>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut modules = BTreeMap::new();
    for entry in std::fs::read_dir(&root).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().to_string();
        if path.extension().is_some_and(|e| e == "rs") && name != "mod" {
            let text = std::fs::read_to_string(&path).unwrap();
            modules.insert(name, code_of(&text).to_string());
        } else if path.is_dir() {
            // A module in a folder (`proxy/`) is one node: the code of all its files.
            let mut text = String::new();
            for file in std::fs::read_dir(&path).unwrap() {
                text += code_of(&std::fs::read_to_string(file.unwrap().path()).unwrap());
            }
            modules.insert(name, text);
        }
    }
    let crate_prefix = format!(
        "crate::{}::",
        Path::new(dir).file_name().unwrap().to_string_lossy()
    );
    let names: BTreeSet<String> = modules.keys().cloned().collect();
    modules
        .iter()
        .map(|(name, text)| {
            let code = text;
            let mut deps = BTreeSet::new();
            for line in code.lines().map(str::trim).filter(|l| !l.starts_with("//")) {
                for prefix in ["super::", crate_prefix.as_str()] {
                    let mut rest = line;
                    while let Some(at) = rest.find(prefix) {
                        rest = &rest[at + prefix.len()..];
                        let group = match rest.strip_prefix('{') {
                            Some(g) => &g[..g.find('}').unwrap_or(g.len())],
                            None => rest,
                        };
                        for word in group.split(|c: char| !(c.is_alphanumeric() || c == '_')) {
                            if names.contains(word) && word != name {
                                deps.insert(word.to_string());
                            }
                            if !rest.starts_with('{') {
                                break;
                            }
                        }
                    }
                }
            }
            (name.clone(), deps)
        })
        .collect()
}

/// A cycle in `graph`, if there is one, as the modules along it.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        done: &mut BTreeSet<String>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|p| p == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in &graph[node] {
            if let Some(c) = visit(next, graph, done, path) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|n| visit(n, graph, &mut done, &mut Vec::new()))
}

#[test]
fn core_modules_import_each_other_without_cycles() {
    let graph = imports("src/core");
    assert!(
        graph["connection"].contains("ack"),
        "the reader sees imports"
    );
    assert!(
        graph["proxy"].contains("error") && graph["proxy"].contains("redact"),
        "a folder module's files are read: {:?}",
        graph["proxy"]
    );
    assert_eq!(find_cycle(&graph), None, "{graph:#?}");
}

#[test]
fn emulator_modules_import_each_other_without_cycles() {
    let graph = imports("src/emulator");
    assert!(
        graph["delivery"].contains("conn_handle"),
        "the reader sees imports"
    );
    assert_eq!(find_cycle(&graph), None, "{graph:#?}");
}

#[test]
fn a_cycle_is_found() {
    let graph: BTreeMap<String, BTreeSet<String>> = [("a", "b"), ("b", "c"), ("c", "a")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), BTreeSet::from([v.to_string()])))
        .collect();
    assert_eq!(
        find_cycle(&graph),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
}
