//! Placeholder: the local canary gateway lands here.
