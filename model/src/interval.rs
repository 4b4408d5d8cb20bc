//! Inclusive IOVA ranges `[start, last]` and the span walk of the kernel's
//! interval trees (`lib/interval_tree.c` `interval_tree_span_iter_*`):
//! within `[first, last]`, maximal "used" spans (overlapping or touching
//! nodes merge) and the holes between them.  iommufd's IOVA_RANGES, its
//! automatic IOVA allocation and the seed's window checks are all walks of
//! this kind.

/// One span of a walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Span {
    /// Covered by one or more nodes.
    Used(u64, u64),
    /// Covered by none.
    Hole(u64, u64),
}

/// Whether `[a0, a1]` and `[b0, b1]` share an address.
pub fn overlaps(a: (u64, u64), b: (u64, u64)) -> bool {
    a.0 <= b.1 && b.0 <= a.1
}

/// Whether any node meets `[start, last]`.
pub fn any_overlap<'a>(nodes: impl IntoIterator<Item = &'a (u64, u64)>, r: (u64, u64)) -> bool {
    nodes.into_iter().any(|n| overlaps(*n, r))
}

/// The spans of `nodes` within `[first, last]`, in address order, as
/// `interval_tree_for_each_span` reports them (used spans clipped to the
/// walk's bounds).
pub fn spans(nodes: &[(u64, u64)], first: u64, last: u64) -> Vec<Span> {
    let mut v: Vec<(u64, u64)> = nodes
        .iter()
        .copied()
        .filter(|n| overlaps(*n, (first, last)))
        .map(|(s, l)| (s.max(first), l.min(last)))
        .collect();
    v.sort();
    let mut merged: Vec<(u64, u64)> = Vec::new();
    for (s, l) in v {
        match merged.last_mut() {
            Some(m) if s <= m.1.saturating_add(1) => m.1 = m.1.max(l),
            _ => merged.push((s, l)),
        }
    }
    let mut out = Vec::new();
    let mut cur = first;
    let mut done = false;
    for (s, l) in merged {
        if s > cur {
            out.push(Span::Hole(cur, s - 1));
        }
        out.push(Span::Used(s, l));
        if l == last {
            done = true;
            break;
        }
        cur = l + 1;
    }
    if !done {
        out.push(Span::Hole(cur, last));
    }
    out
}

/// The holes of `nodes` within `[first, last]`.
pub fn holes(nodes: &[(u64, u64)], first: u64, last: u64) -> Vec<(u64, u64)> {
    spans(nodes, first, last)
        .into_iter()
        .filter_map(|s| match s {
            Span::Hole(a, b) => Some((a, b)),
            Span::Used(..) => None,
        })
        .collect()
}

/// The used spans of `nodes` within `[first, last]`.
pub fn used(nodes: &[(u64, u64)], first: u64, last: u64) -> Vec<(u64, u64)> {
    spans(nodes, first, last)
        .into_iter()
        .filter_map(|s| match s {
            Span::Used(a, b) => Some((a, b)),
            Span::Hole(..) => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{Span, holes, spans, used};

    #[test]
    fn spans_merge_touching_nodes_and_clip() {
        let n = [(10, 19), (20, 29), (40, 49), (45, 60)];
        assert_eq!(
            spans(&n, 0, 100),
            vec![
                Span::Hole(0, 9),
                Span::Used(10, 29),
                Span::Hole(30, 39),
                Span::Used(40, 60),
                Span::Hole(61, 100),
            ]
        );
        assert_eq!(used(&n, 15, 42), vec![(15, 29), (40, 42)]);
        assert_eq!(holes(&[], 5, 9), vec![(5, 9)]);
        assert_eq!(holes(&[(0, u64::MAX)], 0, u64::MAX), vec![]);
        assert_eq!(holes(&[(0, 9)], 0, u64::MAX), vec![(10, u64::MAX)]);
        assert_eq!(holes(&[(5, u64::MAX)], 0, u64::MAX), vec![(0, 4)]);
    }
}
