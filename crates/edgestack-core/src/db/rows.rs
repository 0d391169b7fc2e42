//! Query results read by column name, so a reordered SELECT cannot shift values silently.

use libsql_hrana::proto::Value;

#[derive(Debug, Clone, Default)]
pub struct Rows {
    columns: Vec<String>,
    rows: Vec<Vec<Value>>,
    pub affected_row_count: u64,
}

#[derive(Debug, Clone, Copy)]
pub struct Row<'a> {
    columns: &'a [String],
    values: &'a [Value],
}

impl Rows {
    pub fn new(columns: Vec<String>, rows: Vec<Vec<Value>>, affected_row_count: u64) -> Self {
        Self { columns, rows, affected_row_count }
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn first(&self) -> Option<Row<'_>> {
        self.iter().next()
    }

    pub fn iter(&self) -> impl Iterator<Item = Row<'_>> {
        self.rows.iter().map(|values| Row { columns: &self.columns, values })
    }
}

impl<'a> Row<'a> {
    fn value(&self, column: &str) -> Option<&'a Value> {
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

    pub fn is_null(&self, column: &str) -> bool {
        matches!(self.value(column), Some(Value::Null))
    }
}
