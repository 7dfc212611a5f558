//! Prompt templates: how a word pair becomes the sentence the encoder reads.

use crate::error::{Error, Result};

/// The reference's default template (note the curly apostrophe U+2019).
pub const DEFAULT_TEMPLATE: &str = "I wasn\u{2019}t aware of this relationship, but I just read in the encyclopedia that <subj> is the <mask> of <obj>";

/// A validated prompt template with `<subj>`, `<obj>` and `<mask>` placeholders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template(String);

impl Template {
    /// Checks that every placeholder is present.
    pub fn new(template: &str) -> Result<Self> {
        if ["<subj>", "<obj>", "<mask>"]
            .iter()
            .all(|p| template.contains(p))
        {
            Ok(Template(template.to_string()))
        } else {
            Err(Error::Template {
                template: template.to_string(),
            })
        }
    }

    /// The template text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Fills the template the way the reference does: `<subj>`, then `<obj>`, then `<mask>`
    /// (sequential replacement, so the order is part of the contract).
    pub fn fill(&self, head: &str, tail: &str, mask_token: &str) -> String {
        self.0
            .replace("<subj>", head)
            .replace("<obj>", tail)
            .replace("<mask>", mask_token)
    }
}

impl Default for Template {
    fn default() -> Self {
        Template(DEFAULT_TEMPLATE.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_in_reference_order() {
        let t = Template::default();
        assert_eq!(
            t.fill("paris", "france", "[MASK]"),
            "I wasn\u{2019}t aware of this relationship, but I just read in the encyclopedia that paris is the [MASK] of france"
        );
    }

    #[test]
    fn rejects_missing_placeholder() {
        assert!(matches!(
            Template::new("<subj> and <obj>"),
            Err(Error::Template { .. })
        ));
    }
}
