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
        fill(&self.0, head, tail, mask_token)
    }

    /// [`Template::fill`] of the part through both words ([`Template::through_both_words`]).
    pub fn fill_through_both_words(&self, head: &str, tail: &str, mask_token: &str) -> String {
        fill(self.through_both_words(), head, tail, mask_token)
    }
}

impl Template {
    /// The template up to the end of the first place where each word has appeared: the part
    /// of a prompt that must survive truncation for the prompt to hold both words whole.
    /// What follows it (the rest of the template, later repeats of the words) the reference
    /// truncates away without two pairs' prompts becoming the same.
    pub fn through_both_words(&self) -> &str {
        let end = ["<subj>", "<obj>"]
            .iter()
            .filter_map(|p| self.0.find(p).map(|i| i + p.len()))
            .max()
            .unwrap_or(self.0.len());
        &self.0[..end]
    }
}

/// The reference's sequential replacement, on any template text.
fn fill(text: &str, head: &str, tail: &str, mask_token: &str) -> String {
    text.replace("<subj>", head)
        .replace("<obj>", tail)
        .replace("<mask>", mask_token)
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
    fn the_part_through_both_words() {
        let t = Template::default();
        assert!(t
            .through_both_words()
            .ends_with("<subj> is the <mask> of <obj>"));
        let t = Template::new("<obj> then <subj>: <mask>, and <subj> again").unwrap();
        assert_eq!(t.through_both_words(), "<obj> then <subj>");
    }

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
