//! Kernel releases as the agent reports them (`uname -r`: `7.2.13`,
//! `6.12.95-debug`) and as scenarios name them (`fixed_in = ["7.2.8"]`):
//! whether a release already has an upstream fix.

/// `major.minor.patch` (or `major.minor`), as `fixed_in` wants them.
pub fn is_release(v: &str) -> bool {
    let parts: Vec<&str> = v.split('.').collect();
    (2..=3).contains(&parts.len())
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

/// True if kernel release `release` (`7.2.13`, `6.12.95-debug`) has the fix,
/// by `fixed_in`: the first release of each stable series that has it (a
/// later release of the same series has it too, and so does every series
/// newer than all of them, e.g. mainline).
pub fn released_with_fix(release: &str, fixed_in: &[String]) -> bool {
    fn version(s: &str) -> Option<(u32, u32, u32)> {
        let mut it = s
            .split(|c: char| !c.is_ascii_digit())
            .take(3)
            .map(|n| n.parse::<u32>().ok());
        Some((it.next()??, it.next()??, it.next().flatten().unwrap_or(0)))
    }
    let Some(k) = version(release) else {
        return false;
    };
    let fixes: Vec<(u32, u32, u32)> = fixed_in.iter().filter_map(|v| version(v)).collect();
    fixes
        .iter()
        .any(|&(ma, mi, p)| (k.0, k.1) == (ma, mi) && k.2 >= p)
        || fixes
            .iter()
            .map(|&(ma, mi, _)| (ma, mi))
            .max()
            .is_some_and(|newest| (k.0, k.1) > newest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases_with_the_fix_upstream() {
        let f = |k: &str, v: &[&str]| {
            released_with_fix(k, &v.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        };
        assert!(f("7.2.13", &["7.2.8"]));
        assert!(f("7.2.8", &["7.2.8"]));
        assert!(!f("7.2.7", &["7.2.8"]));
        assert!(!f("6.12.95", &["7.2.8"]));
        assert!(f("7.3.0-rc1", &["7.2.8"]), "a newer series has it");
        assert!(f("6.12.120", &["6.12.120", "7.2.8"]));
        assert!(!f("6.12.95", &["6.12.120", "7.2.8"]));
        assert!(f("6.12.95-iobench", &["6.12.95"]));
        assert!(!f("7.2.13", &[]));
        assert!(!f("garbage", &["7.2.8"]));
        assert!(is_release("7.2.8") && is_release("7.3"));
        assert!(!is_release("7.x") && !is_release("7"));
    }
}
