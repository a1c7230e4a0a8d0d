//! Tag expressions and Java `String.hashCode` (docs/protocol.md §12.4): the broker filters by these
//! numbers.

/// Java's `String.hashCode()` over UTF-16 code units, wrapping like a Java `int`.
pub fn java_string_hash(s: &str) -> i32 {
    s.encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(c as i32))
}

/// A parsed TAG subscription expression: `*` / empty = all, else tags separated by `||`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagFilter {
    /// Every message (`*` or empty).
    All,
    /// Messages with one of these tags.
    Tags(Vec<String>),
}

impl TagFilter {
    /// Reads `*`, `A`, `A || B`.
    pub fn parse(expr: &str) -> Self {
        let expr = expr.trim();
        if expr.is_empty() || expr == "*" {
            return TagFilter::All;
        }
        let mut tags: Vec<String> = Vec::new();
        for t in expr.split("||").map(str::trim).filter(|t| !t.is_empty()) {
            if !tags.iter().any(|x| x == t) {
                tags.push(t.to_owned());
            }
        }
        if tags.is_empty() {
            TagFilter::All
        } else {
            TagFilter::Tags(tags)
        }
    }

    /// The hash codes the broker compares consume-queue entries with (`codeSet`).
    pub fn codes(&self) -> Vec<i32> {
        match self {
            TagFilter::All => Vec::new(),
            TagFilter::Tags(t) => t.iter().map(|t| java_string_hash(t)).collect(),
        }
    }

    /// The client-side re-check by exact string (hashes can collide). Untagged messages never
    /// match a tag list, as on the broker.
    pub fn matches(&self, tag: Option<&str>) -> bool {
        match self {
            TagFilter::All => true,
            TagFilter::Tags(t) => tag.is_some_and(|tag| t.iter().any(|x| x == tag)),
        }
    }

    /// The expression in canonical form (`A||B`, or `*`).
    pub fn expression(&self) -> String {
        match self {
            TagFilter::All => "*".into(),
            TagFilter::Tags(t) => t.join("||"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_example_h() {
        assert_eq!(java_string_hash("TagA"), 2_598_919);
        assert_eq!(java_string_hash("TagB"), 2_598_920);
        assert_eq!(java_string_hash("*"), 42);
        assert_eq!(java_string_hash("tag-中"), 110_138_554);
        // outside the BMP: two surrogate units, as Java counts them
        assert_eq!(java_string_hash("😀"), 0xD83D * 31 + 0xDE00);
    }

    #[test]
    fn expressions() {
        assert_eq!(TagFilter::parse(" * "), TagFilter::All);
        assert_eq!(TagFilter::parse("||"), TagFilter::All);
        let f = TagFilter::parse("TagA || TagB||TagA");
        assert_eq!(f, TagFilter::Tags(vec!["TagA".into(), "TagB".into()]));
        assert_eq!(f.codes(), vec![2_598_919, 2_598_920]);
        assert!(f.matches(Some("TagB")));
        assert!(!f.matches(Some("TagC")));
        assert!(!f.matches(None));
        assert!(TagFilter::All.matches(None));
    }
}
