//! Line coverage of the files under study, as a text summary and one HTML
//! page per file: the file's source with hit lines green and instrumented
//! lines no run reached red (instrumented = the line of some KCOV call
//! site of the vmlinux, see [`super::sites`]).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

/// The files `cargo xtask coverage` reports, relative to the kernel tree;
/// a `*` matches within one file name.
pub const FILES: &[&str] = &[
    "drivers/vfio/vfio_iommu_spapr_tce.c",
    "arch/powerpc/platforms/pseries/iommu.c",
    "arch/powerpc/kernel/iommu.c",
    "drivers/iommu/iommufd/*.c",
    "arch/powerpc/kernel/eeh*.c",
    "arch/powerpc/platforms/pseries/eeh_pseries.c",
];

/// Whether `file` matches `pattern` (a `*` stands for any run of
/// characters other than `/`).
pub fn matches(pattern: &str, file: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == file,
        Some((head, tail)) => {
            file.len() >= head.len() + tail.len()
                && file.starts_with(head)
                && file.ends_with(tail)
                && !file[head.len()..file.len() - tail.len()].contains('/')
        }
    }
}

/// Whether `file` is one of [`FILES`].
pub fn studied(file: &str) -> bool {
    FILES.iter().any(|p| matches(p, file))
}

/// One file's line coverage.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FileCoverage {
    /// Path relative to the kernel tree.
    pub file: String,
    /// Lines with a KCOV call site.
    pub instrumented: BTreeSet<u32>,
    /// Of those, the lines some run reached.
    pub hit: BTreeSet<u32>,
    /// Functions (symbols) with sites in this file of which none was hit.
    pub unreached: BTreeSet<String>,
}

impl FileCoverage {
    /// Hit lines as a percentage of instrumented lines (0 for none).
    pub fn percent(&self) -> f64 {
        if self.instrumented.is_empty() {
            0.0
        } else {
            100.0 * self.hit.len() as f64 / self.instrumented.len() as f64
        }
    }
}

/// Per file, from each site's `(file, line, function)` and whether it was
/// hit: the instrumented and hit lines, and the functions none of whose
/// sites in the file was hit.  Files come sorted.
pub fn aggregate<'a>(
    sites: impl IntoIterator<Item = ((&'a str, u32, &'a str), bool)>,
) -> Vec<FileCoverage> {
    let mut files: BTreeMap<&str, FileCoverage> = BTreeMap::new();
    let mut functions: BTreeMap<(&str, &str), bool> = BTreeMap::new();
    for ((file, line, function), hit) in sites {
        let f = files.entry(file).or_insert_with(|| FileCoverage {
            file: file.to_string(),
            ..FileCoverage::default()
        });
        f.instrumented.insert(line);
        if hit {
            f.hit.insert(line);
        }
        *functions.entry((file, function)).or_default() |= hit;
    }
    for ((file, function), hit) in functions {
        if !hit && let Some(f) = files.get_mut(file) {
            f.unreached.insert(function.to_string());
        }
    }
    files.into_values().collect()
}

/// The text summary: one line per file (lines hit / instrumented,
/// percent), then the total; patterns of [`FILES`] no file of this kernel
/// matched are named as not built.
pub fn summary(files: &[FileCoverage]) -> String {
    let mut out = String::new();
    let width = files.iter().map(|f| f.file.len()).max().unwrap_or(0).max(4);
    let _ = writeln!(
        out,
        "{:<width$}  {:>6} / {:<6}  {:>6}",
        "file", "hit", "lines", "%"
    );
    let (mut hit, mut all) = (0, 0);
    for f in files {
        let _ = writeln!(
            out,
            "{:<width$}  {:>6} / {:<6}  {:>5.1}%",
            f.file,
            f.hit.len(),
            f.instrumented.len(),
            f.percent()
        );
        hit += f.hit.len();
        all += f.instrumented.len();
    }
    let total = FileCoverage {
        instrumented: (0..all as u32).collect(),
        hit: (0..hit as u32).collect(),
        ..FileCoverage::default()
    };
    let _ = writeln!(
        out,
        "{:<width$}  {:>6} / {:<6}  {:>5.1}%",
        "total",
        hit,
        all,
        total.percent()
    );
    for p in FILES {
        if !files.iter().any(|f| matches(p, &f.file)) {
            let _ = writeln!(out, "{p}: not in this kernel");
        }
    }
    out
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:sans-serif}\
table{border-collapse:collapse;font-family:monospace;font-size:13px}\
td{padding:0 6px;white-space:pre}td.n{text-align:right;color:#888}\
tr.hit{background:#c8f7c5}tr.miss{background:#f7c5c5}";

/// The page of one file: a header with its numbers and unreached
/// functions, then every source line, numbered, hit lines green
/// (`class="hit"`) and instrumented lines not hit red (`class="miss"`).
/// Without the source, only the instrumented lines are listed.
pub fn html(f: &FileCoverage, source: Option<&str>, title: &str) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{t}</title>\
         <style>{STYLE}</style></head><body>\n<h1>{t}</h1>\n<p>{} of {} instrumented lines hit ({:.1}%).</p>\n",
        f.hit.len(),
        f.instrumented.len(),
        f.percent(),
        t = escape(title),
    );
    if !f.unreached.is_empty() {
        let names: Vec<String> = f.unreached.iter().map(|n| escape(n)).collect();
        let _ = writeln!(out, "<p>Functions never entered: {}</p>", names.join(", "));
    }
    out.push_str("<table>\n");
    let row = |out: &mut String, n: u32, text: &str| {
        let class = if f.hit.contains(&n) {
            " class=\"hit\""
        } else if f.instrumented.contains(&n) {
            " class=\"miss\""
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "<tr{class} id=\"L{n}\"><td class=\"n\">{n}</td><td>{}</td></tr>",
            escape(text)
        );
    };
    match source {
        Some(src) => {
            for (i, text) in src.lines().enumerate() {
                row(&mut out, i as u32 + 1, text);
            }
        }
        None => {
            for &n in &f.instrumented {
                row(&mut out, n, "(source not found)");
            }
        }
    }
    out.push_str("</table>\n</body></html>\n");
    out
}

/// The index page: one row per file with its numbers, linking `page(file)`.
pub fn index(files: &[FileCoverage], title: &str, page: impl Fn(&str) -> String) -> String {
    let mut out = format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{t}</title>\
         <style>{STYLE}</style></head><body>\n<h1>{t}</h1>\n<table>\n",
        t = escape(title)
    );
    for f in files {
        let _ = writeln!(
            out,
            "<tr><td><a href=\"{}\">{}</a></td><td class=\"n\">{} / {}</td><td class=\"n\">{:.1}%</td></tr>",
            escape(&page(&f.file)),
            escape(&f.file),
            f.hit.len(),
            f.instrumented.len(),
            f.percent()
        );
    }
    out.push_str("</table>\n</body></html>\n");
    out
}

/// The page's file name for `file`: its path with `/` as `_`.
pub fn page_name(file: &str) -> String {
    format!("{}.html", file.replace('/', "_"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_within_one_directory() {
        assert!(matches(
            "drivers/iommu/iommufd/*.c",
            "drivers/iommu/iommufd/main.c"
        ));
        assert!(!matches(
            "drivers/iommu/iommufd/*.c",
            "drivers/iommu/iommufd/x/main.c"
        ));
        assert!(!matches(
            "drivers/iommu/iommufd/*.c",
            "drivers/iommu/iommufd/main.h"
        ));
        assert!(matches(
            "arch/powerpc/kernel/eeh*.c",
            "arch/powerpc/kernel/eeh.c"
        ));
        assert!(matches(
            "arch/powerpc/kernel/eeh*.c",
            "arch/powerpc/kernel/eeh_pe.c"
        ));
        assert!(!matches(
            "arch/powerpc/kernel/eeh*.c",
            "arch/powerpc/kernel/iommu.c"
        ));
        assert!(studied("drivers/vfio/vfio_iommu_spapr_tce.c"));
        assert!(!studied("drivers/vfio/vfio_main.c"));
    }

    fn sample() -> Vec<FileCoverage> {
        aggregate([
            (("a.c", 10, "f"), true),
            (("a.c", 10, "f"), false),
            (("a.c", 11, "f"), false),
            (("a.c", 20, "g"), false),
            (("a.c", 21, "g"), false),
            (("b.c", 5, "h"), true),
        ])
    }

    #[test]
    fn sites_aggregate_to_lines_and_unreached_functions() {
        let files = sample();
        assert_eq!(files.len(), 2);
        let a = &files[0];
        assert_eq!(a.file, "a.c");
        assert_eq!(a.instrumented, BTreeSet::from([10, 11, 20, 21]));
        // A line with a hit site and an unhit one is hit.
        assert_eq!(a.hit, BTreeSet::from([10]));
        assert_eq!(a.unreached, BTreeSet::from(["g".to_string()]));
        assert_eq!(a.percent(), 25.0);
        assert_eq!(files[1].percent(), 100.0);
        assert_eq!(FileCoverage::default().percent(), 0.0);
    }

    #[test]
    fn summary_has_a_line_per_file_and_a_total() {
        let s = summary(&sample());
        let lines: Vec<&str> = s.lines().collect();
        assert!(
            lines[1].starts_with("a.c")
                && lines[1].contains("1 / 4")
                && lines[1].ends_with("25.0%"),
            "{s}"
        );
        assert!(
            lines[2].starts_with("b.c") && lines[2].ends_with("100.0%"),
            "{s}"
        );
        assert!(
            lines[3].starts_with("total")
                && lines[3].contains("2 / 5")
                && lines[3].ends_with("40.0%"),
            "{s}"
        );
        assert!(
            s.contains("drivers/vfio/vfio_iommu_spapr_tce.c: not in this kernel"),
            "{s}"
        );
    }

    #[test]
    fn html_colours_hit_and_missed_lines_and_escapes_source() {
        let f = &sample()[0];
        let src = (1..=21)
            .map(|i| {
                if i == 11 {
                    "if (a < b && c)".to_string()
                } else {
                    format!("line {i}")
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        let page = html(f, Some(&src), "a.c");
        assert!(
            page.contains(
                "<tr class=\"hit\" id=\"L10\"><td class=\"n\">10</td><td>line 10</td></tr>"
            ),
            "{page}"
        );
        assert!(page.contains("<tr class=\"miss\" id=\"L11\"><td class=\"n\">11</td><td>if (a &lt; b &amp;&amp; c)</td></tr>"), "{page}");
        assert!(page.contains("<tr id=\"L12\">"), "{page}");
        assert!(page.contains("1 of 4 instrumented lines hit (25.0%)"));
        assert!(page.contains("Functions never entered: g"));
        assert_eq!(page.matches("<tr").count(), 21);
        let bare = html(f, None, "a.c");
        assert_eq!(bare.matches("<tr").count(), 4);
        let idx = index(&sample(), "cov", page_name);
        assert!(idx.contains("<a href=\"a.c.html\">a.c</a>"), "{idx}");
        assert_eq!(page_name("drivers/vfio/x.c"), "drivers_vfio_x.c.html");
    }
}
