//! Message tags and the `tag` filter of a consume (`TagA||TagB`, `*` or absent for all).

use super::error::{invalid_argument, AliyunError};

/// Aliyun's limit on a tag.
pub const MAX_TAG_CHARS: usize = 64;

/// A tag a message may carry: 1..=64 characters, no `|` (it separates tags in filters), no
/// control characters, no surrounding blanks.
pub fn validate_tag(t: &str) -> Result<(), AliyunError> {
    let n = t.chars().count();
    if n == 0 || n > MAX_TAG_CHARS {
        return Err(invalid_argument(format!(
            "The MessageTag must be 1 to {MAX_TAG_CHARS} characters, not {n}."
        )));
    }
    if t.contains('|') || t.chars().any(char::is_control) || t.trim() != t {
        return Err(invalid_argument(format!(
            "The MessageTag {t:?} may contain neither '|', control characters nor surrounding blanks."
        )));
    }
    Ok(())
}

/// Which tags a consume wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagFilter {
    /// No `tag`, an empty one or `*`: every message, tagged or not.
    All,
    /// Messages carrying one of these tags (distinct, in the order sent); untagged ones do not
    /// match.
    AnyOf(Vec<String>),
}

impl TagFilter {
    /// From the (already URL-decoded) `tag` parameter, `TagA||TagB`; `InvalidArgument` if a
    /// part is not a valid tag.
    pub fn parse(tag: Option<&str>) -> Result<Self, AliyunError> {
        let Some(t) = tag.map(str::trim).filter(|t| !t.is_empty() && *t != "*") else {
            return Ok(TagFilter::All);
        };
        let mut tags = Vec::new();
        for part in t.split("||").map(str::trim) {
            validate_tag(part)?;
            if !tags.iter().any(|x| x == part) {
                tags.push(part.to_owned());
            }
        }
        Ok(TagFilter::AnyOf(tags))
    }

    /// Whether a message with this tag (None: untagged) is wanted.
    pub fn matches(&self, tag: Option<&str>) -> bool {
        match self {
            TagFilter::All => true,
            TagFilter::AnyOf(tags) => tag.is_some_and(|t| tags.iter().any(|x| x == t)),
        }
    }

    /// RocketMQ's subscription expression for the broker-side filter.
    pub fn expression(&self) -> String {
        match self {
            TagFilter::All => "*".into(),
            TagFilter::AnyOf(tags) => tags.join(" || "),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_and_filters() {
        assert!(validate_tag("TagA").is_ok());
        assert!(validate_tag(&"t".repeat(64)).is_ok());
        for bad in ["", "a|b", " a", "a\n", &"t".repeat(65)] {
            assert!(validate_tag(bad).is_err(), "{bad:?}");
        }
        assert_eq!(TagFilter::parse(None).unwrap(), TagFilter::All);
        assert_eq!(TagFilter::parse(Some("*")).unwrap(), TagFilter::All);
        let f = TagFilter::parse(Some("TagA||TagB||TagA")).unwrap();
        assert_eq!(f.expression(), "TagA || TagB");
        assert!(f.matches(Some("TagA")) && !f.matches(None) && !f.matches(Some("TagC")));
        assert!(TagFilter::parse(Some("TagA||")).is_err());
    }
}
