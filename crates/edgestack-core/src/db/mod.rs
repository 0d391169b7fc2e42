//! The database as the core sees it: parameterized statements, Hrana 3 pipelines, typed rows.
//!
//! SQL text is `&'static str`, so a statement can only be written in the source with `?`
//! placeholders; values travel separately as Hrana arguments. No code path builds SQL from input.

mod pipeline;
mod rows;

pub use libsql_hrana::proto::Value;
pub use pipeline::{DbError, Pipeline, PipelineKind, PipelineOutcome, StatementError};
pub use rows::{Row, Rows};

/// One parameterized statement.
#[derive(Debug, Clone)]
pub struct Statement {
    pub sql: &'static str,
    pub args: Vec<Value>,
}

impl Statement {
    pub fn new(sql: &'static str, args: Vec<Value>) -> Self {
        Self { sql, args }
    }
}

pub fn text(value: impl AsRef<str>) -> Value {
    Value::Text { value: value.as_ref().into() }
}

pub fn integer(value: i64) -> Value {
    Value::Integer { value }
}

pub fn null() -> Value {
    Value::Null
}

pub fn optional_text(value: Option<impl AsRef<str>>) -> Value {
    value.map_or(Value::Null, text)
}
