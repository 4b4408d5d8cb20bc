//! A small reader of C uAPI headers, for the layout tests: struct and union
//! definitions whose members are fixed-size integers (`__u32 a;`,
//! `__aligned_u64 b;`, `__u8 c[4];`) or nested, possibly anonymous,
//! aggregates, laid out as a 64-bit C compiler lays them out; the values
//! of `enum` constants and numeric `#define`s; and the `_IO(type, nr)`
//! request macros.  Anything else in the text (comments, other
//! preprocessor lines, declarations) is skipped.

use std::collections::BTreeMap;
use std::path::PathBuf;

/// Where a member lies: byte offset and size.
pub type Place = (usize, usize);

/// A struct's (or union's) layout.
#[derive(Debug, Clone, Default)]
pub struct Layout {
    /// `sizeof`.
    pub size: usize,
    /// `_Alignof`.
    pub align: usize,
    /// Every member by its path (`dirty.iova` inside the member `dirty`;
    /// an anonymous member's fields are the parent's), aggregates included.
    pub fields: BTreeMap<String, Place>,
}

impl Layout {
    /// The members directly inside `prefix` (`""`: the top level).
    pub fn children(&self, prefix: &str) -> Vec<&str> {
        let dotted = if prefix.is_empty() {
            String::new()
        } else {
            format!("{prefix}.")
        };
        self.fields
            .keys()
            .filter_map(|k| k.strip_prefix(&dotted))
            .filter(|rest| !rest.contains('.'))
            .collect()
    }
}

/// What a header defines.
#[derive(Debug, Default)]
pub struct Header {
    /// Struct and union layouts by tag.
    pub structs: BTreeMap<String, Layout>,
    /// `enum` constants and numeric `#define`s.
    pub consts: BTreeMap<String, u64>,
    /// `#define NAME _IO(type, nr)`: type and number.
    pub requests: BTreeMap<String, (u64, u64)>,
}

/// The newest tree of Linux `line` (`"7.2"`) in iobench's source cache
/// (`$IOBENCH_CACHE/src`, else `~/.cache/iobench/src`), or why there is none.
pub fn linux_tree(line: &str) -> Result<PathBuf, String> {
    let cache = std::env::var_os("IOBENCH_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/iobench")))
        .ok_or("neither IOBENCH_CACHE nor HOME is set")?;
    let src = cache.join("src");
    let prefix = format!("linux-source-{line}_");
    let mut trees: Vec<PathBuf> = std::fs::read_dir(&src)
        .map_err(|e| format!("{}: {e}", src.display()))?
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path())
        .filter(|p| p.join("include/uapi/linux/iommufd.h").is_file())
        .collect();
    trees.sort();
    trees.pop().ok_or_else(|| {
        format!(
            "no {prefix}* tree with include/uapi/linux/iommufd.h under {}",
            src.display()
        )
    })
}

impl Header {
    /// Reads header text (several headers may be concatenated, included ones first).
    pub fn parse(text: &str) -> Result<Header, String> {
        let mut h = Header::default();
        let mut code = String::new();
        let mut directives = Vec::new();
        for line in logical_lines(&strip_comments(text)) {
            match line.trim_start().strip_prefix('#') {
                Some(directive) => directives.push(directive.trim_start().to_string()),
                None => {
                    code.push_str(&line);
                    code.push('\n');
                }
            }
        }
        // Defines may name enum constants and enum values defines: defines,
        // then the code, then the defines again.
        for d in &directives {
            h.define(d);
        }
        let toks = tokens(&code);
        let mut p = Parser { toks: &toks, at: 0 };
        while let Some(t) = p.next() {
            match t {
                "struct" | "union" if p.peek_at(1) == Some("{") => {
                    let tag = p.next().unwrap_or_default().to_string();
                    p.expect("{")?;
                    let layout = p.body(t == "union", &h.structs)?;
                    h.structs.insert(tag, layout);
                }
                "enum" => h.enumeration(&mut p)?,
                _ => {}
            }
        }
        for d in &directives {
            h.define(d);
        }
        Ok(h)
    }

    /// A `#define` (without the `#`): a numeric value or an `_IO` request;
    /// other directives and macros are skipped.
    fn define(&mut self, directive: &str) {
        let Some(rest) = directive.strip_prefix("define") else {
            return;
        };
        let rest = rest.trim_start();
        let name_len = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        let (name, value) = rest.split_at(name_len);
        if name.is_empty() || value.starts_with('(') {
            return; // a function-like macro
        }
        let value = tokens(value);
        if let [io, open, args @ .., close] = value.as_slice() {
            if io == "_IO" && open == "(" && close == ")" {
                if let Some(comma) = args.iter().position(|t| t == ",") {
                    let ty = eval(&args[..comma], &self.consts);
                    let nr = eval(&args[comma + 1..], &self.consts);
                    if let (Some(ty), Some(nr)) = (ty, nr) {
                        self.requests.insert(name.to_string(), (ty, nr));
                    }
                }
                return;
            }
        }
        if let Some(v) = eval(&value, &self.consts) {
            self.consts.insert(name.to_string(), v);
        }
    }

    /// `enum [tag] { A = expr, B, … };` after the `enum` keyword.
    fn enumeration(&mut self, p: &mut Parser<'_>) -> Result<(), String> {
        if p.peek() != Some("{") {
            p.next();
        }
        if p.peek() != Some("{") {
            return Ok(()); // `enum tag name;` and the like
        }
        p.expect("{")?;
        // The next implicit value; unknown after a value this reader cannot evaluate.
        let mut next = Some(0u64);
        while p.peek() != Some("}") {
            let name = p.next().ok_or("unterminated enum")?.to_string();
            if p.peek() == Some("=") {
                p.next();
                let start = p.at;
                let mut depth = 0i32;
                while let Some(t) = p.peek() {
                    match t {
                        "(" => depth += 1,
                        ")" => depth -= 1,
                        "," | "}" if depth == 0 => break,
                        _ => {}
                    }
                    p.next();
                }
                next = eval(&p.toks[start..p.at], &self.consts);
            }
            if let Some(v) = next {
                self.consts.insert(name, v);
            }
            next = next.map(|v| v.wrapping_add(1));
            if p.peek() == Some(",") {
                p.next();
            }
        }
        p.expect("}")
    }
}

/// The text without `/* … */` and `// …` comments.
fn strip_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    loop {
        let block = rest.find("/*");
        let line = rest.find("//");
        match (block, line) {
            (Some(b), l) if l.is_none_or(|l| b < l) => {
                out.push_str(&rest[..b]);
                let end = rest[b + 2..]
                    .find("*/")
                    .map_or(rest.len(), |e| b + 2 + e + 2);
                // Keep line breaks so logical lines stay apart.
                out.extend(rest[b..end].chars().filter(|&c| c == '\n'));
                rest = &rest[end..];
            }
            (_, Some(l)) => {
                out.push_str(&rest[..l]);
                rest = &rest[l + rest[l..].find('\n').unwrap_or(rest.len() - l)..];
            }
            _ => {
                out.push_str(rest);
                return out;
            }
        }
    }
}

/// Lines with backslash continuations joined.
fn logical_lines(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in text.lines() {
        match line.strip_suffix('\\') {
            Some(head) => cur.push_str(head),
            None => {
                cur.push_str(line);
                out.push(std::mem::take(&mut cur));
            }
        }
    }
    out.push(cur);
    out
}

/// C tokens: identifiers, numbers, character literals (`';'`), `<<`,
/// `>>`, and single punctuation characters.
fn tokens(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let start = i;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if c.is_ascii_alphanumeric() || c == '_' {
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
        } else if c == '\'' && i + 2 < chars.len() && chars[i + 2] == '\'' {
            i += 3;
        } else if (c == '<' || c == '>') && chars.get(i + 1) == Some(&c) {
            i += 2;
        } else {
            i += 1;
        }
        out.push(chars[start..i].iter().collect());
    }
    out
}

/// A number literal (`0x8b`, `1U`, `';'`).
fn number(t: &str) -> Option<u64> {
    if let Some(c) = t.strip_prefix('\'').and_then(|r| r.strip_suffix('\'')) {
        return c.chars().next().map(|c| c as u64);
    }
    if !t.starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    let t = t.trim_end_matches(['u', 'U', 'l', 'L']);
    match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => t.parse().ok(),
    }
}

/// Evaluates a constant expression of numbers, known names, parentheses
/// and `| ^ & << >> + - *`.
fn eval(toks: &[String], consts: &BTreeMap<String, u64>) -> Option<u64> {
    let mut at = 0;
    let v = expr(toks, &mut at, 0, consts)?;
    (at == toks.len()).then_some(v)
}

fn expr(toks: &[String], at: &mut usize, min: u8, consts: &BTreeMap<String, u64>) -> Option<u64> {
    let mut lhs = match toks.get(*at)?.as_str() {
        "(" => {
            *at += 1;
            let v = expr(toks, at, 0, consts)?;
            (toks.get(*at)? == ")").then_some(())?;
            v
        }
        t => number(t).or_else(|| consts.get(t).copied())?,
    };
    *at += 1;
    while let Some(op) = toks.get(*at) {
        let prec = match op.as_str() {
            "|" => 1,
            "^" => 2,
            "&" => 3,
            "<<" | ">>" => 4,
            "+" | "-" => 5,
            "*" => 6,
            _ => break,
        };
        if prec <= min {
            break;
        }
        *at += 1;
        let rhs = expr(toks, at, prec, consts)?;
        lhs = match op.as_str() {
            "|" => lhs | rhs,
            "^" => lhs ^ rhs,
            "&" => lhs & rhs,
            "<<" => lhs.checked_shl(u32::try_from(rhs).ok()?)?,
            ">>" => lhs.checked_shr(u32::try_from(rhs).ok()?)?,
            "+" => lhs.wrapping_add(rhs),
            "-" => lhs.wrapping_sub(rhs),
            _ => lhs.wrapping_mul(rhs),
        };
    }
    Some(lhs)
}

/// Size and alignment of a scalar type, as on a 64-bit Linux target.
fn scalar(ty: &str) -> Option<(usize, usize)> {
    let bits: usize = ty
        .trim_start_matches("__aligned_")
        .trim_start_matches("__")
        .trim_start_matches(['u', 's'])
        .trim_start_matches("le")
        .trim_start_matches("be")
        .parse()
        .ok()?;
    matches!(bits, 8 | 16 | 32 | 64).then_some((bits / 8, bits / 8))
}

fn round_up(n: usize, align: usize) -> usize {
    n.div_ceil(align) * align
}

struct Parser<'a> {
    toks: &'a [String],
    at: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<&'a str> {
        self.peek_at(0)
    }

    fn peek_at(&self, n: usize) -> Option<&'a str> {
        self.toks.get(self.at + n).map(String::as_str)
    }

    fn next(&mut self) -> Option<&'a str> {
        let t = self.peek();
        self.at += 1;
        t
    }

    fn expect(&mut self, want: &str) -> Result<(), String> {
        match self.next() {
            Some(t) if t == want => Ok(()),
            other => Err(format!("expected {want:?}, found {other:?}")),
        }
    }

    /// The members of a struct or union up to its closing `}`.
    fn body(&mut self, union: bool, known: &BTreeMap<String, Layout>) -> Result<Layout, String> {
        let mut l = Layout {
            align: 1,
            ..Layout::default()
        };
        let mut end = 0;
        while self.peek() != Some("}") {
            let t = self.next().ok_or("unterminated struct")?;
            // The member's layout (an aggregate's fields, if it is one) and name.
            let (member, name) = if t == "struct" || t == "union" {
                let inner = if self.peek() == Some("{") {
                    self.next();
                    self.body(t == "union", known)?
                } else {
                    let tag = self.next().ok_or("struct without a tag")?;
                    let inner = known.get(tag).cloned();
                    if self.peek() == Some("{") {
                        self.next();
                        self.body(t == "union", known)?
                    } else {
                        inner.ok_or_else(|| format!("struct {tag} is not defined before use"))?
                    }
                };
                let name = (self.peek() != Some(";")).then(|| self.next()).flatten();
                (inner, name)
            } else {
                let (size, align) = scalar(t).ok_or_else(|| format!("unknown type {t}"))?;
                let name = self.next().ok_or("member without a name")?;
                let mut size = size;
                if self.peek() == Some("[") {
                    self.next();
                    let start = self.at;
                    while self.peek().is_some_and(|t| t != "]") {
                        self.next();
                    }
                    let n = eval(&self.toks[start..self.at], &BTreeMap::new())
                        .ok_or_else(|| format!("{name}: array length is not a number"))?;
                    self.expect("]")?;
                    size *= n as usize;
                }
                let scalar = Layout {
                    size,
                    align,
                    fields: BTreeMap::new(),
                };
                (scalar, Some(name))
            };
            self.expect(";")?;
            let offset = if union {
                0
            } else {
                round_up(end, member.align)
            };
            end = end.max(offset + member.size);
            l.align = l.align.max(member.align);
            let prefix = name.map(|n| format!("{n}.")).unwrap_or_default();
            for (path, (o, s)) in &member.fields {
                l.fields.insert(format!("{prefix}{path}"), (offset + o, *s));
            }
            if let Some(n) = name {
                l.fields.insert(n.to_string(), (offset, member.size));
            }
        }
        self.expect("}")?;
        l.size = round_up(end, l.align);
        Ok(l)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lays_out_nested_anonymous_and_array_members() {
        let h = Header::parse(
            "#define T (';')\n#define LONG _IO(T, \\\n  B + 2)\n\
             enum { B = 0x80, C, D = (1U << 4) | 1 };\n\
             /* struct nope { */ struct s {\n\t__u32 a; // x\n\t__aligned_u64 b;\n\
             \tunion {\n\t\tstruct { __u32 x; __u8 y[3]; } one;\n\t\t__u16 two;\n\t};\n\
             #define IN_BODY 1\n\t__u8 c[5];\n};\n",
        )
        .unwrap();
        let s = &h.structs["s"];
        assert_eq!((s.size, s.align), (32, 8));
        assert_eq!(s.fields["b"], (8, 8));
        assert_eq!(s.fields["one"], (16, 8));
        assert_eq!(s.fields["one.y"], (20, 3));
        assert_eq!(s.fields["two"], (16, 2));
        assert_eq!(s.fields["c"], (24, 5));
        assert_eq!(s.children(""), ["a", "b", "c", "one", "two"]);
        assert_eq!(s.children("one"), ["x", "y"]);
        assert_eq!((h.consts["C"], h.consts["D"]), (0x81, 17));
        assert_eq!(h.requests["LONG"], (b';' as u64, 0x82));
        assert_eq!(h.consts["IN_BODY"], 1);
    }
}
