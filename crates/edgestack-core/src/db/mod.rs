//! The database as the core sees it: parameterized statements, Hrana 3 pipelines, typed rows.
//!
//! SQL text is `&'static str`, so a statement can only be written in the source with `?`
//! placeholders; values travel separately as Hrana arguments. No code path builds SQL from input.
//! A statement is typed by the [`FromRow`] reader of its rows; pushing it on a [`Pipeline`] gives
//! a [`StatementHandle`], the only way to read its result or recognise its failure.

mod pipeline;
mod rows;

use std::marker::PhantomData;

pub use libsql_hrana::proto::Value;
pub use pipeline::{DbError, PRIMARY_FENCED, Pipeline, PipelineKind, PipelineOutcome, StatementError, StatementHandle};
pub use rows::{FromRow, ReadError, Row, Rows};

/// One parameterized statement whose rows are read as `R` (`()`: not read, at most counted).
pub struct Statement<R = ()> {
    pub sql: &'static str,
    pub args: Vec<Value>,
    reader: PhantomData<fn() -> R>,
}

impl<R: FromRow> Statement<R> {
    pub fn new(sql: &'static str, args: Vec<Value>) -> Self {
        Self { sql, args, reader: PhantomData }
    }

    /// The columns each row must have: what its reader declares.
    pub fn columns(&self) -> &'static [&'static str] {
        R::COLUMNS
    }

    /// The same statement, its rows read as `S` (which must find its columns there too).
    pub fn read_as<S: FromRow>(self) -> Statement<S> {
        Statement { sql: self.sql, args: self.args, reader: PhantomData }
    }
}

impl<R> Clone for Statement<R> {
    fn clone(&self) -> Self {
        Self { sql: self.sql, args: self.args.clone(), reader: PhantomData }
    }
}

impl<R> std::fmt::Debug for Statement<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Statement").field("sql", &self.sql).field("args", &self.args).finish()
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
