//! Query results read by column name, through readers that declare the columns they read: a
//! reordered SELECT cannot shift values silently, a reader sees no column it did not declare,
//! and a test prepares every statement against the migrations to check the declared columns
//! are there (`tests/app/schema.rs`).

use libsql_hrana::proto::Value;

/// How one row of a statement's result becomes a value.
pub trait FromRow: Sized {
    /// Every column `from_row` reads, by name. A statement typed with this reader must return
    /// them all; [`Row`] shows `from_row` nothing else.
    const COLUMNS: &'static [&'static str];

    /// `None` when a value has an unexpected type: the caller reports a protocol error.
    fn from_row(row: Row<'_>) -> Option<Self>;
}

/// The reader of statements whose rows are not read (or only counted).
impl FromRow for () {
    const COLUMNS: &'static [&'static str] = &[];

    fn from_row(_: Row<'_>) -> Option<Self> {
        Some(())
    }
}

#[derive(Debug, Clone, Default)]
pub struct Rows {
    columns: Vec<String>,
    rows: Vec<Vec<Value>>,
    pub affected_row_count: u64,
}

/// One row as a [`FromRow`] reader sees it: only the columns it declared.
#[derive(Debug, Clone, Copy)]
pub struct Row<'a> {
    declared: &'static [&'static str],
    columns: &'a [String],
    values: &'a [Value],
}

/// Why rows could not be read: the statement and its reader disagree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadError {
    MissingColumn(&'static str),
    UnreadableRow,
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::MissingColumn(column) => write!(f, "no column `{column}` in the result"),
            Self::UnreadableRow => f.write_str("a row with a value of an unexpected type"),
        }
    }
}

impl Rows {
    pub fn new(columns: Vec<String>, rows: Vec<Vec<Value>>, affected_row_count: u64) -> Self {
        Self { columns, rows, affected_row_count }
    }

    /// Every row as `R`.
    pub fn read<R: FromRow>(&self) -> Result<Vec<R>, ReadError> {
        self.check_columns::<R>()?;
        self.rows.iter().map(|values| self.row::<R>(values)).collect()
    }

    /// The first row as `R`, if there is one.
    pub fn first<R: FromRow>(&self) -> Result<Option<R>, ReadError> {
        self.check_columns::<R>()?;
        self.rows.first().map(|values| self.row::<R>(values)).transpose()
    }

    /// Checked once per result, so a missing column fails even an empty one.
    fn check_columns<R: FromRow>(&self) -> Result<(), ReadError> {
        match R::COLUMNS.iter().find(|wanted| !self.columns.iter().any(|name| name == *wanted)) {
            Some(missing) => Err(ReadError::MissingColumn(missing)),
            None => Ok(()),
        }
    }

    fn row<R: FromRow>(&self, values: &[Value]) -> Result<R, ReadError> {
        R::from_row(Row { declared: R::COLUMNS, columns: &self.columns, values }).ok_or(ReadError::UnreadableRow)
    }
}

impl<'a> Row<'a> {
    fn value(&self, column: &str) -> Option<&'a Value> {
        if !self.declared.contains(&column) {
            return None;
        }
        let index = self.columns.iter().position(|name| name == column)?;
        self.values.get(index)
    }

    pub fn text(&self, column: &str) -> Option<&'a str> {
        match self.value(column)? {
            Value::Text { value } => Some(value),
            _ => None,
        }
    }

    pub fn integer(&self, column: &str) -> Option<i64> {
        match self.value(column)? {
            Value::Integer { value } => Some(*value),
            _ => None,
        }
    }

    /// A text column that may be `NULL`; `None` (the outer one) for any other value.
    pub fn optional_text(&self, column: &str) -> Option<Option<&'a str>> {
        match self.value(column)? {
            Value::Text { value } => Some(Some(value)),
            Value::Null => Some(None),
            _ => None,
        }
    }

    /// An integer column that may be `NULL`; `None` (the outer one) for any other value.
    pub fn optional_integer(&self, column: &str) -> Option<Option<i64>> {
        match self.value(column)? {
            Value::Integer { value } => Some(Some(*value)),
            Value::Null => Some(None),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Named {
        name: String,
    }

    impl FromRow for Named {
        const COLUMNS: &'static [&'static str] = &["name"];

        fn from_row(row: Row<'_>) -> Option<Self> {
            Some(Self { name: row.text("name")?.to_string() })
        }
    }

    /// Reads a column it did not declare.
    struct Sneaky;

    impl FromRow for Sneaky {
        const COLUMNS: &'static [&'static str] = &["name"];

        fn from_row(row: Row<'_>) -> Option<Self> {
            row.text("secret").map(|_| Self)
        }
    }

    fn text(value: &str) -> Value {
        Value::Text { value: value.into() }
    }

    fn rows(columns: &[&str], rows: Vec<Vec<Value>>) -> Rows {
        Rows::new(columns.iter().map(|c| c.to_string()).collect(), rows, 0)
    }

    #[test]
    fn columns_are_found_by_name_wherever_they_are() {
        let result = rows(&["id", "name"], vec![vec![text("1"), text("a")], vec![text("2"), text("b")]]);
        let names: Vec<String> = result.read::<Named>().unwrap().into_iter().map(|n| n.name).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(result.first::<Named>().unwrap().map(|n| n.name).as_deref(), Some("a"));
    }

    #[test]
    fn a_missing_column_fails_even_without_rows() {
        assert_eq!(rows(&["id"], vec![]).read::<Named>().err(), Some(ReadError::MissingColumn("name")));
        assert_eq!(rows(&["id"], vec![]).first::<Named>().err(), Some(ReadError::MissingColumn("name")));
    }

    #[test]
    fn a_reader_sees_only_what_it_declared_and_the_right_types() {
        let result = rows(&["name", "secret"], vec![vec![text("a"), text("s")]]);
        assert_eq!(result.first::<Sneaky>().err(), Some(ReadError::UnreadableRow));
        let mistyped = rows(&["name"], vec![vec![Value::Integer { value: 1 }]]);
        assert_eq!(mistyped.read::<Named>().err(), Some(ReadError::UnreadableRow));
        assert_eq!(rows(&["x"], vec![vec![text("x")]; 3]).read::<()>().unwrap().len(), 3);
    }
}
