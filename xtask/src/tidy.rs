//! Repository hygiene, run as ordinary tests: every Rust module starts
//! with a `//!` doc, no trailing whitespace, no should-panic attributes;
//! every dependency a crate's `Cargo.toml` declares is used in its sources;
//! no module imports one that imports it back; and the README's two
//! commands are the ones `.ci/run` runs.  Only the
//! build directory `<root>/target` is skipped, not every directory of that
//! name (`harness/src/target/` is source).

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::{Path, PathBuf};

    use crate::cache::repo_root;

    /// The `.rs` files under `dir`, without the build directory
    /// `<root>/target` (by path: a source directory may be called `target`)
    /// and version-control directories.
    fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
        let build_dir = repo_root().join("target");
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                if p != build_dir && e.file_name() != ".git" {
                    rust_files(&p, out);
                }
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }

    #[test]
    fn source_directories_named_target_are_checked() {
        let mut files = Vec::new();
        rust_files(&repo_root(), &mut files);
        let target_src = repo_root().join("harness/src/target");
        assert!(
            files.iter().any(|f| f.starts_with(&target_src)),
            "{} is skipped",
            target_src.display()
        );
        let build_dir = repo_root().join("target");
        assert!(!files.iter().any(|f| f.starts_with(&build_dir)));
    }

    #[test]
    fn modules_are_documented_and_clean() {
        let mut files = Vec::new();
        rust_files(&repo_root(), &mut files);
        assert!(files.len() > 10);
        let mut problems = Vec::new();
        for f in &files {
            let text = std::fs::read_to_string(f).unwrap();
            let is_test_module = f.file_name().is_some_and(|n| n == "tests.rs");
            if !is_test_module && !text.starts_with("//!") && !text.starts_with("#!") {
                problems.push(format!("{}: does not start with a //! doc", f.display()));
            }
            for (i, line) in text.lines().enumerate() {
                if line.ends_with(' ') || line.ends_with('\t') {
                    problems.push(format!("{}:{}: trailing whitespace", f.display(), i + 1));
                }
            }
            if text.contains(concat!("#[should", "_panic")) {
                problems.push(format!(
                    "{}: a should-panic attribute hides what failed",
                    f.display()
                ));
            }
        }
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }

    /// The dependency names (as code spells them) a `Cargo.toml` declares,
    /// normal, dev and build, for any target.
    fn declared_dependencies(manifest: &toml::Table) -> Vec<String> {
        let sections = ["dependencies", "dev-dependencies", "build-dependencies"];
        let mut tables: Vec<&toml::Table> = sections
            .iter()
            .filter_map(|s| manifest.get(*s).and_then(toml::Value::as_table))
            .collect();
        if let Some(targets) = manifest.get("target").and_then(toml::Value::as_table) {
            for t in targets.values().filter_map(toml::Value::as_table) {
                tables.extend(
                    sections
                        .iter()
                        .filter_map(|s| t.get(*s).and_then(toml::Value::as_table)),
                );
            }
        }
        tables
            .into_iter()
            .flat_map(|t| t.keys())
            .map(|k| k.replace('-', "_"))
            .collect()
    }

    /// Whether `text` uses the crate `name` as a path (`name::…`, `use name`,
    /// `extern crate name`).
    fn uses_crate(text: &str, name: &str) -> bool {
        let word = |i: usize| {
            text[..i]
                .chars()
                .next_back()
                .is_none_or(|c| !(c.is_alphanumeric() || c == '_' || c == ':'))
        };
        text.match_indices(name).any(|(i, _)| {
            let rest = &text[i + name.len()..];
            word(i)
                && (rest.starts_with("::")
                    || (rest.starts_with([';', ' ', '\n'])
                        && (text[..i].ends_with("use ") || text[..i].ends_with("crate "))))
        })
    }

    #[test]
    fn uses_crate_sees_paths_only() {
        assert!(uses_crate("use serde::Deserialize;", "serde"));
        assert!(uses_crate("#[derive(thiserror::Error)]", "thiserror"));
        assert!(uses_crate("extern crate libc;", "libc"));
        assert!(!uses_crate("// serde_json is not serde", "serde"));
        assert!(!uses_crate("x::serde::y", "serde"));
        assert!(!uses_crate("use my_serde::X;", "serde"));
    }

    #[test]
    fn every_declared_dependency_is_used() {
        let root = repo_root();
        let workspace: toml::Table =
            toml::from_str(&std::fs::read_to_string(root.join("Cargo.toml")).unwrap()).unwrap();
        let members = workspace["workspace"]["members"].as_array().unwrap();
        assert!(members.len() >= 5);
        let mut problems = Vec::new();
        for m in members {
            let dir = root.join(m.as_str().unwrap());
            let manifest: toml::Table =
                toml::from_str(&std::fs::read_to_string(dir.join("Cargo.toml")).unwrap()).unwrap();
            let mut files = Vec::new();
            rust_files(&dir, &mut files);
            let text: String = files
                .iter()
                .map(|f| std::fs::read_to_string(f).unwrap())
                .collect();
            for dep in declared_dependencies(&manifest) {
                if !uses_crate(&text, &dep) {
                    problems.push(format!(
                        "{}/Cargo.toml declares {dep}, which its sources never use",
                        m.as_str().unwrap()
                    ));
                }
            }
        }
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }

    /// Source without comments, and without the test code at the end of a
    /// file (`#[cfg(test)]`): what a module's non-test code says.
    fn code_of(text: &str) -> String {
        let text = text.split("#[cfg(test)]").next().unwrap_or("");
        text.lines()
            .map(|l| l.split("//").next().unwrap_or(""))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The modules of the crate whose root is in `dir` (each top-level file
    /// or directory but the root and test files) and, for each, the modules
    /// its non-test code names as `crate::other`.
    fn module_graph(dir: &Path, root: &str) -> BTreeMap<String, BTreeSet<String>> {
        let mut modules: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if name == root || name == "tests.rs" || name == "tests" {
                continue;
            }
            if p.is_dir() {
                let mut files = Vec::new();
                rust_files(&p, &mut files);
                modules.entry(name).or_default().extend(files);
            } else if let Some(m) = name.strip_suffix(".rs") {
                modules.entry(m.to_string()).or_default().push(p);
            }
        }
        let names: BTreeSet<String> = modules.keys().cloned().collect();
        modules
            .into_iter()
            .map(|(m, files)| {
                let code: String = files
                    .iter()
                    .filter(|f| f.file_name().is_some_and(|n| n != "tests.rs"))
                    .map(|f| code_of(&std::fs::read_to_string(f).unwrap()))
                    .collect();
                let mut uses = BTreeSet::new();
                for (i, _) in code.match_indices("crate::") {
                    let rest = &code[i + "crate::".len()..];
                    let used: String = rest
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    uses.insert(used);
                }
                // `use crate::{a, b::C}`
                for (i, _) in code.match_indices("crate::{") {
                    let group = &code[i + "crate::{".len()..];
                    let group = &group[..group.find('}').unwrap_or(group.len())];
                    for item in group.split(',') {
                        uses.insert(item.trim().split("::").next().unwrap_or("").to_string());
                    }
                }
                uses.retain(|u| u != &m && names.contains(u));
                (m, uses)
            })
            .collect()
    }

    /// Modules that reach themselves through others: each circle once, as
    /// its members.
    fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
        let reachable = |from: &str| {
            let mut seen = BTreeSet::new();
            let mut todo = vec![from.to_string()];
            while let Some(m) = todo.pop() {
                for n in graph.get(&m).into_iter().flatten() {
                    if seen.insert(n.clone()) {
                        todo.push(n.clone());
                    }
                }
            }
            seen
        };
        let reach: BTreeMap<&String, BTreeSet<String>> =
            graph.keys().map(|m| (m, reachable(m))).collect();
        let mut circles = BTreeSet::new();
        for (m, r) in &reach {
            if r.contains(*m) {
                let circle: Vec<&str> = r
                    .iter()
                    .filter(|n| reach.get(n).is_some_and(|back| back.contains(*m)))
                    .map(String::as_str)
                    .collect();
                circles.insert(circle.join(", "));
            }
        }
        circles.into_iter().collect()
    }

    #[test]
    fn cycles_are_found() {
        let g = |edges: &[(&str, &str)]| {
            let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
            for (a, b) in edges {
                g.entry(a.to_string()).or_default().insert(b.to_string());
                g.entry(b.to_string()).or_default();
            }
            g
        };
        assert!(cycles(&g(&[("a", "b"), ("b", "c")])).is_empty());
        assert_eq!(cycles(&g(&[("a", "b"), ("b", "a")])), vec!["a, b"]);
        assert_eq!(
            cycles(&g(&[("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")])),
            vec!["a, b, c"]
        );
        assert_eq!(
            code_of("use crate::x; // crate::y\n#[cfg(test)]\nuse crate::z;"),
            "use crate::x; "
        );
    }

    #[test]
    fn no_module_imports_one_that_imports_it_back() {
        let root = repo_root();
        let crates = [
            ("proto/src", "lib.rs"),
            ("guest-agent/src", "main.rs"),
            ("harness/src", "lib.rs"),
            ("xtask/src", "main.rs"),
            ("tests/src", "lib.rs"),
            ("tests/vm", "main.rs"),
        ];
        let mut problems = Vec::new();
        for (dir, root_file) in crates {
            let graph = module_graph(&root.join(dir), root_file);
            assert!(!graph.is_empty(), "{dir}: no modules found");
            for c in cycles(&graph) {
                problems.push(format!("{dir}: {c} import each other in a circle"));
            }
        }
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }

    #[test]
    fn readme_commands_are_what_ci_runs() {
        let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
        let ci = std::fs::read_to_string(repo_root().join(".ci/run")).unwrap();
        for cmd in [
            "cargo xtask setup",
            "cargo test --workspace && cargo xtask test",
        ] {
            assert!(readme.contains(cmd), "README lacks {cmd:?}");
            assert!(ci.contains(cmd), ".ci/run lacks {cmd:?}");
        }
    }
}
