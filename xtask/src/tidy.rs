//! Repository hygiene, run as ordinary tests: every Rust module starts
//! with a `//!` doc, no trailing whitespace, no should-panic attributes, and the
//! README's two commands are the ones `.ci/run` runs.

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use crate::cache::repo_root;

    fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            let name = e.file_name();
            if p.is_dir() && name != "target" && name != ".git" {
                rust_files(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
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
