//! Placeholder: the local libSQL server lands here.
