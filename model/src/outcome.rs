//! What the model predicts for one step, in the agent's terms: a value
//! shaped like the JSON the agent's op yields (`{start_addr}`, a number,
//! `{ranges, alignment}`, …) or an errno name, plus the rule that decided
//! it.  [`Outcome::check`] compares a prediction with what the agent
//! reported ([`Reported`], built from the step's `Actual` with [`Datum`],
//! which deserializes from the agent's JSON through serde);
//! [`Outcome::expectation`] writes the `expect = …` of a scenario step.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};

use crate::dma::Segment;
use crate::errno::Errno;
use crate::rule::Rule;

/// What `spapr.tce_info` yields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TceInfo {
    /// `VFIO_IOMMU_SPAPR_INFO_DDW` (1) on a v2 container with DDW.
    pub flags: u32,
    /// Start of the default (32-bit) window.
    pub dma32_window_start: u32,
    /// Its size.
    pub dma32_window_size: u32,
    /// IOMMU page sizes a window may have (bit n: 2^n bytes).
    pub pgsizes: u64,
    /// How many windows the PE has.
    pub max_dynamic_windows_supported: u32,
    /// Most TCE levels.
    pub levels: u32,
}

/// What an op that succeeded yields.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Value {
    /// JSON `null` (`mock.add_reserved`, `mock.access_rw`).
    Null,
    /// A number: an ioctl's return value (0, or the 1 of bug 0001), an
    /// IOVA (`ioas.map`, `ioas.copy`), a length (`ioas.unmap`).
    U64(u64),
    /// `{start_addr}` of `spapr.create_window`.
    StartAddr(u64),
    /// `{ranges: [[start, last]…], alignment}` of `ioas.iova_ranges`.
    IovaRanges {
        /// The usable ranges, inclusive.
        ranges: Vec<(u64, u64)>,
        /// `out_iova_alignment`.
        alignment: u64,
    },
    /// The fields of `spapr.tce_info`.
    TceInfo(TceInfo),
    /// Something the model does not predict: a new object (buffer, IOAS,
    /// mock domain, access, HWPT id) or a DMA's timing.  Any success matches.
    Object,
}

/// How an op ends.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Reply {
    /// It succeeded with this value.
    Value(Value),
    /// It failed with this errno.
    Errno(Errno),
    /// The guest kernel crashed: the agent never answers.
    Crash,
}

/// The prediction for one step.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Outcome {
    /// How it ends.
    pub reply: Reply,
    /// The rule that decided it.
    pub rule: Rule,
    /// Rules that fired on the way without deciding the reply (e.g. the
    /// default window created on demand before a map).
    pub also: Vec<Rule>,
    /// For a DMA or an access: which buffer bytes each piece of the IOVA
    /// range reached (on failure: the pieces written before it).
    pub dma: Vec<Segment>,
    /// Text the kernel log will contain (a `WARNING:`), if the op makes
    /// the kernel warn; a scenario step must then declare it
    /// (`expect_kernel_warning`).
    pub kernel_warning: Option<&'static str>,
}

impl Outcome {
    /// A success.
    pub fn value(v: Value, rule: Rule) -> Outcome {
        Outcome {
            reply: Reply::Value(v),
            rule,
            also: Vec::new(),
            dma: Vec::new(),
            kernel_warning: None,
        }
    }

    /// A failure.
    pub fn errno(e: Errno, rule: Rule) -> Outcome {
        Outcome {
            reply: Reply::Errno(e),
            ..Outcome::value(Value::Null, rule)
        }
    }

    /// A kernel crash.
    pub fn crash(rule: Rule) -> Outcome {
        Outcome {
            reply: Reply::Crash,
            ..Outcome::value(Value::Null, rule)
        }
    }

    /// With a side rule noted.
    pub fn also(mut self, r: Rule) -> Outcome {
        if !self.also.contains(&r) {
            self.also.push(r);
        }
        self
    }

    /// With side rules noted (in order).
    pub fn also_all(mut self, rules: &[Rule]) -> Outcome {
        for r in rules {
            self = self.also(*r);
        }
        self
    }

    /// Whether it succeeded.
    pub fn is_ok(&self) -> bool {
        matches!(self.reply, Reply::Value(_))
    }

    /// The errno, if it failed with one.
    pub fn errno_of(&self) -> Option<Errno> {
        match self.reply {
            Reply::Errno(e) => Some(e),
            _ => None,
        }
    }

    /// The number it yielded, if it yielded one.
    pub fn number(&self) -> Option<u64> {
        match self.reply {
            Reply::Value(Value::U64(n)) | Reply::Value(Value::StartAddr(n)) => Some(n),
            _ => None,
        }
    }

    /// The `expect` of a scenario step for it: `None` when the step should
    /// carry none (an unpredicted object or timing, or `null`, which the
    /// default `Ok` expectation covers; or a crash, which no step can
    /// expect).
    pub fn expectation(&self) -> Option<Expectation> {
        match &self.reply {
            Reply::Value(Value::Object | Value::Null) | Reply::Crash => None,
            Reply::Value(v) => Some(Expectation::Value(value_toml(v))),
            Reply::Errno(e) => Some(Expectation::Errno(*e)),
        }
    }

    /// Compares the prediction with what the agent reported.
    pub fn check(&self, reported: &Reported) -> Verdict {
        let ok = match (&self.reply, reported) {
            (Reply::Crash, Reported::Broken) => true,
            (Reply::Errno(e), Reported::Errno(name)) => e.name() == name,
            (Reply::Value(v), Reported::Value(d)) => value_matches(v, d),
            _ => false,
        };
        if ok {
            Verdict::Match
        } else {
            Verdict::Mismatch {
                expected: self.to_string(),
                actual: reported.to_string(),
                rule: self.rule,
            }
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.reply {
            Reply::Value(v) => write!(f, "ok {}", value_toml(v)),
            Reply::Errno(e) => write!(f, "{e}"),
            Reply::Crash => f.write_str("kernel crash"),
        }
    }
}

/// A number as a scenario writes it: small ones in decimal, the rest as
/// `"0x…"` text (TOML integers stop at 2^63), `u64::MAX` as `"max"`.
pub fn toml_number(n: u64) -> String {
    if n == u64::MAX {
        "\"max\"".into()
    } else if n < 0x1000 {
        n.to_string()
    } else {
        format!("\"{n:#x}\"")
    }
}

/// A value as a TOML inline value of an `expect = { value = … }`.
pub fn value_toml(v: &Value) -> String {
    match v {
        Value::Null => "{}".into(),
        Value::U64(n) => toml_number(*n),
        Value::StartAddr(a) => format!("{{ start_addr = {} }}", toml_number(*a)),
        Value::IovaRanges { ranges, alignment } => {
            let r: Vec<String> = ranges
                .iter()
                .map(|(s, l)| format!("[{}, {}]", toml_number(*s), toml_number(*l)))
                .collect();
            format!(
                "{{ ranges = [{}], alignment = {} }}",
                r.join(", "),
                toml_number(*alignment)
            )
        }
        Value::TceInfo(i) => format!(
            "{{ flags = {}, dma32_window_start = {}, dma32_window_size = {}, pgsizes = {}, max_dynamic_windows_supported = {}, levels = {} }}",
            i.flags,
            toml_number(i.dma32_window_start.into()),
            toml_number(i.dma32_window_size.into()),
            toml_number(i.pgsizes),
            i.max_dynamic_windows_supported,
            i.levels
        ),
        Value::Object => "{}".into(),
    }
}

/// The `expect` of a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expectation {
    /// `expect = { value = … }`, the value as TOML.
    Value(String),
    /// `expect = { errno = "…" }`.
    Errno(Errno),
}

impl Expectation {
    /// The inline table, e.g. `{ errno = "EINVAL" }`.
    pub fn to_toml(&self) -> String {
        match self {
            Expectation::Value(v) => format!("{{ value = {v} }}"),
            Expectation::Errno(e) => format!("{{ errno = \"{}\" }}", e.name()),
        }
    }
}

/// What the agent reported for a step (its `Actual`).
#[derive(Debug, Clone, PartialEq)]
pub enum Reported {
    /// Success with this value.
    Value(Datum),
    /// Failure with this errno name.
    Errno(String),
    /// The agent could not run the op (never predicted).
    Error(String),
    /// The guest broke during the step (panic, hang, agent gone).
    Broken,
}

impl fmt::Display for Reported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reported::Value(d) => write!(f, "ok {d}"),
            Reported::Errno(e) => f.write_str(e),
            Reported::Error(e) => write!(f, "agent error: {e}"),
            Reported::Broken => f.write_str("the guest broke"),
        }
    }
}

/// The comparison of a prediction with a report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// They agree.
    Match,
    /// They do not.
    Mismatch {
        /// The prediction.
        expected: String,
        /// The report.
        actual: String,
        /// The rule behind the prediction.
        rule: Rule,
    },
}

/// A JSON-like value as the agent yields it; deserializes from any serde
/// format (e.g. `serde_json::from_value::<Datum>(v)`) and serializes back.
#[derive(Debug, Clone, PartialEq)]
pub enum Datum {
    /// `null`.
    Null,
    /// `true`/`false`.
    Bool(bool),
    /// A non-negative integer.
    U64(u64),
    /// A negative integer.
    I64(i64),
    /// A non-integer number.
    F64(f64),
    /// Text.
    Str(String),
    /// An array.
    List(Vec<Datum>),
    /// An object, in order.
    Map(Vec<(String, Datum)>),
}

impl Datum {
    /// A field of an object.
    pub fn get(&self, key: &str) -> Option<&Datum> {
        match self {
            Datum::Map(m) => m.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The number it holds (an integer, or `"0x…"`/decimal text).
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Datum::U64(n) => Some(*n),
            Datum::Str(s) => match s.strip_prefix("0x") {
                Some(h) => u64::from_str_radix(h, 16).ok(),
                None if s == "max" => Some(u64::MAX),
                None => s.parse().ok(),
            },
            _ => None,
        }
    }
}

impl fmt::Display for Datum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Datum::Null => f.write_str("null"),
            Datum::Bool(b) => write!(f, "{b}"),
            Datum::U64(n) if *n >= 0x1000 => write!(f, "{n:#x}"),
            Datum::U64(n) => write!(f, "{n}"),
            Datum::I64(n) => write!(f, "{n}"),
            Datum::F64(n) => write!(f, "{n}"),
            Datum::Str(s) => write!(f, "{s:?}"),
            Datum::List(l) => {
                f.write_str("[")?;
                for (i, d) in l.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{d}")?;
                }
                f.write_str("]")
            }
            Datum::Map(m) => {
                f.write_str("{")?;
                for (i, (k, d)) in m.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, " {k}: {d}")?;
                }
                f.write_str(" }")
            }
        }
    }
}

fn field_is(d: &Datum, key: &str, want: u64) -> bool {
    d.get(key).and_then(Datum::as_u64) == Some(want)
}

/// Whether a reported value is the predicted one.
pub fn value_matches(v: &Value, d: &Datum) -> bool {
    match v {
        Value::Object => true,
        Value::Null => *d == Datum::Null,
        Value::U64(n) => d.as_u64() == Some(*n),
        Value::StartAddr(a) => field_is(d, "start_addr", *a),
        Value::IovaRanges { ranges, alignment } => {
            let Some(Datum::List(got)) = d.get("ranges") else {
                return false;
            };
            field_is(d, "alignment", *alignment)
                && got.len() == ranges.len()
                && got.iter().zip(ranges).all(|(g, (s, l))| match g {
                    Datum::List(p) if p.len() == 2 => {
                        p[0].as_u64() == Some(*s) && p[1].as_u64() == Some(*l)
                    }
                    _ => false,
                })
        }
        Value::TceInfo(i) => {
            field_is(d, "flags", i.flags.into())
                && field_is(d, "dma32_window_start", i.dma32_window_start.into())
                && field_is(d, "dma32_window_size", i.dma32_window_size.into())
                && field_is(d, "pgsizes", i.pgsizes)
                && field_is(
                    d,
                    "max_dynamic_windows_supported",
                    i.max_dynamic_windows_supported.into(),
                )
                && field_is(d, "levels", i.levels.into())
        }
    }
}

impl Serialize for Datum {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Datum::Null => s.serialize_unit(),
            Datum::Bool(b) => s.serialize_bool(*b),
            Datum::U64(n) => s.serialize_u64(*n),
            Datum::I64(n) => s.serialize_i64(*n),
            Datum::F64(n) => s.serialize_f64(*n),
            Datum::Str(t) => s.serialize_str(t),
            Datum::List(l) => {
                let mut seq = s.serialize_seq(Some(l.len()))?;
                for d in l {
                    seq.serialize_element(d)?;
                }
                seq.end()
            }
            Datum::Map(m) => {
                let mut map = s.serialize_map(Some(m.len()))?;
                for (k, d) in m {
                    map.serialize_entry(k, d)?;
                }
                map.end()
            }
        }
    }
}

struct DatumVisitor;

impl<'de> Visitor<'de> for DatumVisitor {
    type Value = Datum;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON-like value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Datum, E> {
        Ok(Datum::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Datum, E> {
        Ok(Datum::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Datum, D::Error> {
        Datum::deserialize(d)
    }

    fn visit_bool<E: de::Error>(self, b: bool) -> Result<Datum, E> {
        Ok(Datum::Bool(b))
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<Datum, E> {
        Ok(Datum::U64(n))
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<Datum, E> {
        Ok(u64::try_from(n).map_or(Datum::I64(n), Datum::U64))
    }

    fn visit_f64<E: de::Error>(self, n: f64) -> Result<Datum, E> {
        Ok(Datum::F64(n))
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Datum, E> {
        Ok(Datum::Str(s.to_string()))
    }

    fn visit_string<E: de::Error>(self, s: String) -> Result<Datum, E> {
        Ok(Datum::Str(s))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Datum, A::Error> {
        let mut v = Vec::new();
        while let Some(d) = a.next_element()? {
            v.push(d);
        }
        Ok(Datum::List(v))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Datum, A::Error> {
        let mut v = Vec::new();
        while let Some((k, d)) = a.next_entry::<String, Datum>()? {
            v.push((k, d));
        }
        Ok(Datum::Map(v))
    }
}

impl<'de> Deserialize<'de> for Datum {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Datum, D::Error> {
        d.deserialize_any(DatumVisitor)
    }
}

#[cfg(test)]
mod tests {
    use serde::de::IntoDeserializer;
    use serde::de::value::{Error, MapDeserializer, SeqDeserializer};

    use super::{Datum, Deserialize, Outcome, Reported, TceInfo, Value, Verdict};
    use crate::errno::Errno;
    use crate::rule::Rule;

    fn map(entries: Vec<(&str, Datum)>) -> Datum {
        Datum::Map(
            entries
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        )
    }

    #[test]
    fn predictions_compare_with_reports_by_shape() {
        let start = Outcome::value(Value::StartAddr(1 << 59), Rule::CreateDdw);
        let rep = Reported::Value(map(vec![("start_addr", Datum::U64(1 << 59))]));
        assert_eq!(start.check(&rep), Verdict::Match);
        let one = Outcome::value(Value::U64(1), Rule::MisalignedIovaReturnsOne);
        assert_eq!(one.check(&Reported::Value(Datum::U64(1))), Verdict::Match);
        assert!(matches!(
            one.check(&Reported::Errno("EINVAL".into())),
            Verdict::Mismatch {
                rule: Rule::MisalignedIovaReturnsOne,
                ..
            }
        ));
        let e = Outcome::errno(Errno::ENXIO, Rule::NoWindow);
        assert_eq!(e.check(&Reported::Errno("ENXIO".into())), Verdict::Match);
        let r = Outcome::value(
            Value::IovaRanges {
                ranges: vec![(0, u64::MAX)],
                alignment: 1,
            },
            Rule::IoasIovaRanges,
        );
        let got = map(vec![
            (
                "ranges",
                Datum::List(vec![Datum::List(vec![Datum::U64(0), Datum::U64(u64::MAX)])]),
            ),
            ("alignment", Datum::U64(1)),
        ]);
        assert_eq!(r.check(&Reported::Value(got)), Verdict::Match);
        let any = Outcome::value(Value::Object, Rule::MemAlloc);
        assert_eq!(any.check(&Reported::Value(Datum::Null)), Verdict::Match);
        assert!(matches!(
            any.check(&Reported::Broken),
            Verdict::Mismatch { .. }
        ));
        assert_eq!(
            Outcome::crash(Rule::MapPastEndCrash).check(&Reported::Broken),
            Verdict::Match
        );
    }

    #[test]
    fn expectations_are_scenario_toml() {
        let e = |o: Outcome| o.expectation().map(|x| x.to_toml());
        assert_eq!(
            e(Outcome::errno(
                Errno::EINVAL,
                Rule::MapSizeOrVaddrMisaligned
            ))
            .as_deref(),
            Some("{ errno = \"EINVAL\" }")
        );
        assert_eq!(
            e(Outcome::value(
                Value::StartAddr(0x800000000000000),
                Rule::CreateDdw
            ))
            .as_deref(),
            Some("{ value = { start_addr = \"0x800000000000000\" } }")
        );
        assert_eq!(
            e(Outcome::value(Value::U64(0), Rule::Map)).as_deref(),
            Some("{ value = 0 }")
        );
        assert_eq!(e(Outcome::value(Value::Object, Rule::IoasAlloc)), None);
        let info = TceInfo {
            flags: 1,
            dma32_window_start: 0,
            dma32_window_size: 1 << 30,
            pgsizes: 0x1211000,
            max_dynamic_windows_supported: 2,
            levels: 1,
        };
        assert!(
            e(Outcome::value(Value::TceInfo(info), Rule::SpaprInfo))
                .unwrap()
                .contains("pgsizes = \"0x1211000\"")
        );
    }

    #[test]
    fn datum_deserializes_from_any_format() {
        let d = Datum::deserialize(IntoDeserializer::<Error>::into_deserializer(7u64)).unwrap();
        assert_eq!(d, Datum::U64(7));
        let seq: SeqDeserializer<_, Error> = SeqDeserializer::new(vec![1u64, 2].into_iter());
        assert_eq!(
            Datum::deserialize(seq).unwrap(),
            Datum::List(vec![Datum::U64(1), Datum::U64(2)])
        );
        let m: MapDeserializer<_, Error> =
            MapDeserializer::new(vec![("start_addr", 5u64)].into_iter());
        assert_eq!(
            Datum::deserialize(m).unwrap().get("start_addr"),
            Some(&Datum::U64(5))
        );
        assert_eq!(Datum::Str("0x10".into()).as_u64(), Some(16));
    }
}
