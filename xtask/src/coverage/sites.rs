//! The KCOV call sites of a vmlinux and their source lines.
//!
//! A kernel built with KCOV calls `__sanitizer_cov_trace_pc` at the start
//! of every basic block, and the agent gets the calls' return addresses.
//! `objdump -d` of the vmlinux lists every call site; the one before a
//! return address is the call instruction `arch` long before it (5 bytes
//! on x86_64, 4 on ppc64le), which is how the kernel's own tooling
//! (syzkaller's `PreviousInstructionPC`) maps PCs too.  `addr2line -f`
//! (one batched run over all sites) names each site's function, file and
//! line; its innermost frame is the line the block is on, in a header if
//! it came from an inline function there, and the inlined function's own
//! name.  The lines of a file's sites are its
//! instrumented lines.  The map is built once per vmlinux and kept in a
//! TSV next to the report (`sites-<key>.tsv`).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use harness::machine::Arch;

/// The call instruction's length before a KCOV return address.
pub fn call_len(arch: Arch) -> u64 {
    match arch {
        Arch::X86_64 => 5,
        Arch::Ppc64le => 4,
    }
}

fn tool(arch: Arch, name: &str) -> String {
    match arch {
        Arch::X86_64 => name.to_string(),
        Arch::Ppc64le => format!("powerpc64le-linux-gnu-{name}"),
    }
}

/// Every KCOV call site of a kernel, with its file (relative to the
/// kernel tree) and line.
#[derive(Debug, Clone, Default)]
pub struct SiteMap {
    /// Call length to take off a PC.
    call_len: u64,
    /// Call address → (index into `files`, line, index into `functions`).
    sites: HashMap<u64, (u32, u32, u32)>,
    files: Vec<String>,
    /// The functions (symbols) the sites are in.
    functions: Vec<String>,
}

/// One call site: its address, file, line and the function (symbol) it is in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Site {
    /// The call instruction's address.
    pub addr: u64,
    /// Source file, relative to the kernel tree.
    pub file: String,
    /// Source line.
    pub line: u32,
    /// The symbol the call is in (an inlined function's caller).
    pub function: String,
}

impl SiteMap {
    /// A map of `arch` from its sites; files are taken as they are.
    pub fn from_sites(arch: Arch, sites: impl IntoIterator<Item = Site>) -> SiteMap {
        let mut map = SiteMap {
            call_len: call_len(arch),
            ..SiteMap::default()
        };
        let mut files: HashMap<String, u32> = HashMap::new();
        let mut functions: HashMap<String, u32> = HashMap::new();
        for s in sites {
            let f = *files.entry(s.file.clone()).or_insert_with(|| {
                map.files.push(s.file);
                (map.files.len() - 1) as u32
            });
            let g = *functions.entry(s.function.clone()).or_insert_with(|| {
                map.functions.push(s.function);
                (map.functions.len() - 1) as u32
            });
            map.sites.insert(s.addr, (f, s.line, g));
        }
        map
    }

    /// The map of `vmlinux` (of `arch`), from `cache` if it is there, else
    /// made with objdump and addr2line and written to `cache`.  `roots`
    /// are the prefixes to take off file names (source and build trees).
    pub fn load(vmlinux: &Path, arch: Arch, roots: &[PathBuf], cache: &Path) -> Result<SiteMap> {
        if let Ok(text) = std::fs::read_to_string(cache) {
            return Ok(SiteMap::from_tsv(arch, &text));
        }
        let stage = crate::progress::Stage::start(format!(
            "coverage: mapping the KCOV call sites of {} (once per kernel)",
            vmlinux.display()
        ));
        let calls = call_sites(vmlinux, arch)?;
        if calls.is_empty() {
            bail!(
                "{}: no calls to __sanitizer_cov_trace_pc; not a KCOV kernel (build with --kcov)",
                vmlinux.display()
            );
        }
        let addrs: Vec<u64> = calls.iter().map(|c| c.0).collect();
        let lines = addr2line(vmlinux, arch, &addrs)?;
        // addr2line's function is the inlined one the line is in; the
        // symbol is the fallback.
        let sites = calls
            .into_iter()
            .zip(lines)
            .filter_map(|((addr, symbol), l)| {
                Some(Site {
                    addr,
                    file: relative(&l.file, roots)?,
                    line: l.line,
                    function: if l.function == "??" {
                        symbol
                    } else {
                        l.function
                    },
                })
            });
        let map = SiteMap::from_sites(arch, sites);
        if let Some(dir) = cache.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(cache, map.to_tsv())
            .with_context(|| format!("writing {}", cache.display()))?;
        stage.done();
        Ok(map)
    }

    fn to_tsv(&self) -> String {
        let mut rows: Vec<(&u64, &(u32, u32, u32))> = self.sites.iter().collect();
        rows.sort();
        let mut out = String::new();
        for (a, (f, l, g)) in rows {
            out.push_str(&format!(
                "{a:x}\t{}\t{l}\t{}\n",
                self.files[*f as usize], self.functions[*g as usize]
            ));
        }
        out
    }

    fn from_tsv(arch: Arch, text: &str) -> SiteMap {
        SiteMap::from_sites(
            arch,
            text.lines().filter_map(|l| {
                let mut it = l.split('\t');
                Some(Site {
                    addr: u64::from_str_radix(it.next()?, 16).ok()?,
                    file: it.next()?.to_string(),
                    line: it.next()?.parse().ok()?,
                    function: it.next()?.to_string(),
                })
            }),
        )
    }

    /// How many call sites there are.
    pub fn site_count(&self) -> usize {
        self.sites.len()
    }

    /// The call site a KCOV PC returns to, if it is one of this kernel's.
    pub fn site_of(&self, pc: u64) -> Option<u64> {
        let site = pc.wrapping_sub(self.call_len);
        self.sites.contains_key(&site).then_some(site)
    }

    /// A call site's file and line.
    pub fn line(&self, site: u64) -> Option<(&str, u32)> {
        self.sites
            .get(&site)
            .map(|&(f, l, _)| (self.files[f as usize].as_str(), l))
    }

    /// The function (symbol) a call site is in.
    pub fn function(&self, site: u64) -> Option<&str> {
        self.sites
            .get(&site)
            .map(|&(_, _, g)| self.functions[g as usize].as_str())
    }

    /// Every site in the files `keep` accepts.
    pub fn sites_in(&self, keep: impl Fn(&str) -> bool) -> Vec<u64> {
        let mut out: Vec<u64> = self
            .sites
            .iter()
            .filter(|(_, (f, _, _))| keep(&self.files[*f as usize]))
            .map(|(a, _)| *a)
            .collect();
        out.sort_unstable();
        out
    }
}

/// `path` relative to the first of `roots` it is under, with `./` and
/// `../` taken off the front; None for addr2line's `??`.
pub fn relative(path: &str, roots: &[PathBuf]) -> Option<String> {
    if path.starts_with("??") || path.is_empty() {
        return None;
    }
    let mut p = Path::new(path);
    for r in roots {
        if let Ok(rest) = p.strip_prefix(r) {
            p = rest;
            break;
        }
    }
    let mut s = p.to_string_lossy().into_owned();
    loop {
        if let Some(r) = s.strip_prefix("./") {
            s = r.to_string();
        } else if let Some(r) = s.strip_prefix("../") {
            s = r.to_string();
        } else {
            break;
        }
    }
    Some(s)
}

/// The call sites in `objdump -d` output: the address of each call (x86
/// `call`, ppc `bl`) to `__sanitizer_cov_trace_pc`, and the symbol it is in.
pub fn parse_calls(objdump: impl BufRead) -> Result<Vec<(u64, String)>> {
    let mut out = Vec::new();
    let mut function = String::new();
    for line in objdump.lines() {
        let line = line?;
        // `c000000000012340 <foo>:` starts a symbol.
        if let Some(name) = line
            .strip_suffix(">:")
            .and_then(|l| l.split_once(" <"))
            .map(|(_, n)| n)
        {
            function = name.to_string();
            continue;
        }
        if !line.contains("<__sanitizer_cov_trace_pc") {
            continue;
        }
        let mut cols = line.split('\t');
        let Some(addr) = cols.next() else { continue };
        let Some(addr) = addr.trim().strip_suffix(':') else {
            continue;
        };
        let insn = cols.next().unwrap_or("").trim_start();
        let is_call =
            insn.starts_with("call") || insn.starts_with("bl ") || insn.starts_with("bl\t");
        // `__sanitizer_cov_trace_pc+0x8` is ppc64's local entry point; a
        // longer name is another function (`…_trace_pc_guard`).
        let target_ok = insn.contains("<__sanitizer_cov_trace_pc>")
            || insn.contains("<__sanitizer_cov_trace_pc+");
        if let (true, true, Ok(a)) = (is_call, target_ok, u64::from_str_radix(addr, 16)) {
            out.push((a, function.clone()));
        }
    }
    Ok(out)
}

fn call_sites(vmlinux: &Path, arch: Arch) -> Result<Vec<(u64, String)>> {
    let objdump = tool(arch, "objdump");
    crate::deps::require(&[&objdump, &tool(arch, "addr2line")])?;
    let mut child = Command::new(&objdump)
        .args(["-d", "--no-show-raw-insn", "-j", ".text"])
        .arg(vmlinux)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("running {objdump}"))?;
    let calls = parse_calls(BufReader::new(child.stdout.take().expect("piped")))?;
    let status = child.wait()?;
    if !status.success() {
        bail!("{objdump} -d {} failed: {status}", vmlinux.display());
    }
    Ok(calls)
}

/// Runs one `addr2line -f` over `addrs`; function, file and line of each,
/// in order (`??`/0 where it knows nothing).  Fed from a thread, so
/// neither side waits on a full pipe.
fn addr2line(vmlinux: &Path, arch: Arch, addrs: &[u64]) -> Result<Vec<Located>> {
    let bin = tool(arch, "addr2line");
    let mut child = Command::new(&bin)
        .arg("-f")
        .arg("-e")
        .arg(vmlinux)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("running {bin}"))?;
    let mut stdin = child.stdin.take().expect("piped");
    let input: Vec<u64> = addrs.to_vec();
    let feeder = std::thread::spawn(move || -> std::io::Result<()> {
        let mut w = std::io::BufWriter::new(&mut stdin);
        for a in input {
            writeln!(w, "{a:x}")?;
        }
        w.flush()
    });
    let out = parse_addr2line(BufReader::new(child.stdout.take().expect("piped")))?;
    feeder
        .join()
        .map_err(|_| anyhow::anyhow!("addr2line feeder panicked"))??;
    let status = child.wait()?;
    if !status.success() || out.len() != addrs.len() {
        bail!(
            "{bin} gave {} lines for {} addresses ({status})",
            out.len(),
            addrs.len()
        );
    }
    Ok(out)
}

/// What `addr2line -f` says of an address: the innermost function (an
/// inlined one's own name), file and line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    /// Function name, `??` if unknown.
    pub function: String,
    /// Source file as the debug info names it, `??` if unknown.
    pub file: String,
    /// Line, 0 if unknown.
    pub line: u32,
}

/// `addr2line -f` output: a function line, then `file:line` (`file:line
/// (discriminator N)` too), per address; `??` and line 0 where it does not
/// know.
pub fn parse_addr2line(r: impl BufRead) -> Result<Vec<Located>> {
    let mut out = Vec::new();
    let mut function = None;
    for line in r.lines() {
        let line = line?;
        let Some(f) = function.take() else {
            function = Some(line);
            continue;
        };
        let line = line.split(" (discriminator").next().unwrap_or(&line);
        let (file, n) = line.rsplit_once(':').unwrap_or((line, "0"));
        out.push(Located {
            function: f,
            file: file.to_string(),
            line: n.trim().parse().unwrap_or(0),
        });
    }
    Ok(out)
}

/// A site in `function` `f_<file>`, for tests.
#[cfg(test)]
pub fn site(addr: u64, file: &str, line: u32) -> Site {
    Site {
        addr,
        file: file.into(),
        line,
        function: format!("f_{file}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_are_found_on_both_arches() {
        let x86 = "\
ffffffff81001000 <foo>:
ffffffff81001000:\tendbr64
ffffffff81001004:\tcall   ffffffff81200000 <__sanitizer_cov_trace_pc>
ffffffff81001009:\tcall   ffffffff81200100 <__sanitizer_cov_trace_pc_guard>
ffffffff8100100e:\tjmp    ffffffff81200000 <__sanitizer_cov_trace_pc>
";
        assert_eq!(
            parse_calls(x86.as_bytes()).unwrap(),
            vec![(0xffffffff81001004, "foo".to_string())]
        );
        let ppc = "\
c000000000012340 <tce_iommu_ioctl>:
c000000000012340:\tmflr    r0
c000000000012344:\tbl      c00000000023b1c8 <__sanitizer_cov_trace_pc+0x8>
c000000000012348:\tnop
";
        assert_eq!(
            parse_calls(ppc.as_bytes()).unwrap(),
            vec![(0xc000000000012344, "tce_iommu_ioctl".to_string())]
        );
    }

    #[test]
    fn addr2line_output_and_paths_are_normalised() {
        let out = "tce_iommu_enable\n/k/src/drivers/vfio/a.c:12\n??\n??:0\n\
                   pfn_valid\n/k/src/include/linux/b.h:7 (discriminator 3)\n";
        let got = parse_addr2line(out.as_bytes()).unwrap();
        let at = |function: &str, file: &str, line| Located {
            function: function.into(),
            file: file.into(),
            line,
        };
        assert_eq!(
            got,
            vec![
                at("tce_iommu_enable", "/k/src/drivers/vfio/a.c", 12),
                at("??", "??", 0),
                at("pfn_valid", "/k/src/include/linux/b.h", 7)
            ]
        );
        let roots = [PathBuf::from("/k/src"), PathBuf::from("/k/build")];
        assert_eq!(
            relative(&got[0].file, &roots).as_deref(),
            Some("drivers/vfio/a.c")
        );
        assert_eq!(relative("??", &roots), None);
        assert_eq!(
            relative("../drivers/iommu/iommufd/main.c", &roots).as_deref(),
            Some("drivers/iommu/iommufd/main.c")
        );
    }

    #[test]
    fn pcs_map_back_to_their_call_and_the_tsv_round_trips() {
        let m = SiteMap::from_sites(
            Arch::Ppc64le,
            [site(0x100, "a.c", 3), site(0x200, "b.c", 9)],
        );
        assert_eq!(m.site_of(0x104), Some(0x100));
        assert_eq!(m.site_of(0x100), None);
        assert_eq!(m.line(0x200), Some(("b.c", 9)));
        let back = SiteMap::from_tsv(Arch::Ppc64le, &m.to_tsv());
        assert_eq!(back.site_count(), 2);
        assert_eq!(back.line(0x100), Some(("a.c", 3)));
        assert_eq!(back.function(0x200), Some("f_b.c"));
        let x86 = SiteMap::from_sites(Arch::X86_64, [site(0x100, "a.c", 3)]);
        assert_eq!(x86.site_of(0x105), Some(0x100));
    }
}
