//! Where a statement stands in its pipeline file, and the "unsupported" error that points there:
//! what the parser fills in and every compiler phase reports through.

use crate::PipelineError;

/// A statement's place in the file, for errors.
pub(crate) struct Origin<'a> {
    pub source_name: &'a str,
    /// The statement's text.
    pub text: String,
    /// 1-based line where the statement starts.
    pub line: u64,
    pub view: String,
}

impl Origin<'_> {
    /// An "unsupported" error at the line where `needle` first appears in the statement (or at
    /// the statement's first line).
    pub fn unsupported(&self, needle: &str, construct: impl Into<String>) -> PipelineError {
        let lower = self.text.to_ascii_lowercase();
        let offset = if needle.is_empty() {
            None
        } else {
            lower.find(&needle.to_ascii_lowercase())
        };
        let line = offset.map_or(self.line, |o| {
            self.line + self.text[..o].matches('\n').count() as u64
        });
        PipelineError::Unsupported {
            source_name: self.source_name.to_string(),
            line,
            view: self.view.clone(),
            construct: construct.into(),
        }
    }
}
