//! Placeholder: the release command lands here.
