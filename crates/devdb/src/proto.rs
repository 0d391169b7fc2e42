//! Hrana 3 wire types (JSON encoding), defined once for the server side.
//!
//! `libsql-hrana`'s types are client-shaped (borrowed strings, protobuf derives); owning our own
//! keeps parsing strict (unknown request types and malformed integers are rejected) and lets the
//! server answer every malformed body with a 4xx JSON error.

use base64::Engine as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Debug, Deserialize)]
pub struct PipelineReqBody {
    #[serde(default)]
    pub baton: Option<String>,
    pub requests: Vec<StreamRequest>,
}

#[derive(Debug, Serialize)]
pub struct PipelineRespBody {
    pub baton: Option<String>,
    pub base_url: Option<String>,
    pub results: Vec<StreamResult>,
}

#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StreamResult {
    Ok { response: StreamResponse },
    Error { error: Error },
}

#[derive(Debug, Deserialize)]
pub struct CursorReqBody {
    #[serde(default)]
    pub baton: Option<String>,
    pub batch: Batch,
}

#[derive(Debug, Serialize)]
pub struct CursorRespBody {
    pub baton: Option<String>,
    pub base_url: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StreamRequest {
    Close {},
    Execute {
        stmt: Stmt,
    },
    Batch {
        batch: Batch,
    },
    Sequence {
        #[serde(default)]
        sql: Option<String>,
        #[serde(default)]
        sql_id: Option<i32>,
        #[serde(default, deserialize_with = "opt_u64_from_str")]
        replication_index: Option<u64>,
    },
    Describe {
        #[serde(default)]
        sql: Option<String>,
        #[serde(default)]
        sql_id: Option<i32>,
        #[serde(default, deserialize_with = "opt_u64_from_str")]
        replication_index: Option<u64>,
    },
    StoreSql {
        sql_id: i32,
        sql: String,
    },
    CloseSql {
        sql_id: i32,
    },
    GetAutocommit {},
}

#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StreamResponse {
    Close {},
    Execute { result: StmtResult },
    Batch { result: BatchResult },
    Sequence {},
    Describe { result: DescribeResult },
    StoreSql {},
    CloseSql {},
    GetAutocommit { is_autocommit: bool },
}

/// A Hrana error: SQLite's message and a code such as `SQLITE_CONSTRAINT_PRIMARYKEY`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Error {
    pub message: String,
    pub code: String,
}

impl Error {
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        Self { message: message.into(), code: code.to_owned() }
    }
}

#[derive(Debug, Deserialize)]
pub struct Stmt {
    #[serde(default)]
    pub sql: Option<String>,
    #[serde(default)]
    pub sql_id: Option<i32>,
    #[serde(default)]
    pub args: Vec<Value>,
    #[serde(default)]
    pub named_args: Vec<NamedArg>,
    #[serde(default)]
    pub want_rows: Option<bool>,
    /// Read-your-writes: the server waits until it has applied at least this index.
    #[serde(default, deserialize_with = "opt_u64_from_str")]
    pub replication_index: Option<u64>,
}

#[derive(Debug, Deserialize)]
pub struct NamedArg {
    pub name: String,
    pub value: Value,
}

#[derive(Debug, Serialize)]
pub struct StmtResult {
    pub cols: Vec<Col>,
    pub rows: Vec<Vec<Value>>,
    pub affected_row_count: u64,
    #[serde(serialize_with = "opt_i64_as_str")]
    pub last_insert_rowid: Option<i64>,
    #[serde(serialize_with = "opt_u64_as_str")]
    pub replication_index: Option<u64>,
    pub rows_read: u64,
    pub rows_written: u64,
    pub query_duration_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Col {
    pub name: Option<String>,
    pub decltype: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct Batch {
    pub steps: Vec<BatchStep>,
    /// Read-your-writes: the server waits until it has applied at least this index.
    #[serde(default, deserialize_with = "opt_u64_from_str")]
    pub replication_index: Option<u64>,
}

#[derive(Debug, Deserialize)]
pub struct BatchStep {
    #[serde(default)]
    pub condition: Option<BatchCond>,
    pub stmt: Stmt,
}

#[derive(Debug, Serialize)]
pub struct BatchResult {
    pub step_results: Vec<Option<StmtResult>>,
    pub step_errors: Vec<Option<Error>>,
    #[serde(serialize_with = "opt_u64_as_str")]
    pub replication_index: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum BatchCond {
    Ok { step: u32 },
    Error { step: u32 },
    Not { cond: Box<BatchCond> },
    And { conds: Vec<BatchCond> },
    Or { conds: Vec<BatchCond> },
    IsAutocommit {},
}

#[derive(Debug, Serialize)]
pub struct DescribeResult {
    pub params: Vec<DescribeParam>,
    pub cols: Vec<DescribeCol>,
    pub is_explain: bool,
    pub is_readonly: bool,
}

#[derive(Debug, Serialize)]
pub struct DescribeParam {
    pub name: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct DescribeCol {
    pub name: String,
    pub decltype: Option<String>,
}

/// Cursor entries, one JSON object per line after the [`CursorRespBody`] line.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum CursorEntry {
    StepBegin {
        step: u32,
        cols: Vec<Col>,
    },
    StepEnd {
        affected_row_count: u64,
        #[serde(serialize_with = "opt_i64_as_str")]
        last_insert_rowid: Option<i64>,
        /// The `libsql` 0.10 Rust client reads this misspelled field; the spec's name is above.
        #[serde(serialize_with = "opt_i64_as_str")]
        last_inserted_rowid: Option<i64>,
    },
    StepError {
        step: u32,
        error: Error,
    },
    Row {
        row: Vec<Value>,
    },
    Error {
        error: Error,
    },
}

/// A SQLite value as Hrana encodes it: integers as decimal strings, blobs as base64.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Integer(i64),
    Float(f64),
    Text(String),
    Blob(Vec<u8>),
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WireValue {
    Null {},
    Integer { value: String },
    Float { value: f64 },
    Text { value: String },
    Blob { base64: String },
}

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let wire = match self {
            Value::Null => WireValue::Null {},
            Value::Integer(i) => WireValue::Integer { value: i.to_string() },
            // JSON has no NaN/infinity; SQLite stores NaN as NULL, and infinities are encoded as
            // the largest finite doubles would be lossy, so they go out as null.
            Value::Float(f) if !f.is_finite() => WireValue::Null {},
            Value::Float(f) => WireValue::Float { value: *f },
            Value::Text(t) => WireValue::Text { value: t.clone() },
            Value::Blob(b) => WireValue::Blob { base64: base64::engine::general_purpose::STANDARD.encode(b) },
        };
        wire.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        Ok(match WireValue::deserialize(d)? {
            WireValue::Null {} => Value::Null,
            WireValue::Integer { value } => Value::Integer(
                value.parse().map_err(|_| D::Error::custom("integer value is not a decimal i64 string"))?,
            ),
            WireValue::Float { value } => Value::Float(value),
            WireValue::Text { value } => Value::Text(value),
            WireValue::Blob { base64 } => {
                Value::Blob(decode_base64(&base64).ok_or_else(|| D::Error::custom("blob value is not valid base64"))?)
            }
        })
    }
}

/// Clients differ on padding, so accept base64 with or without it.
fn decode_base64(s: &str) -> Option<Vec<u8>> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
    STANDARD.decode(s).ok().or_else(|| STANDARD_NO_PAD.decode(s.trim_end_matches('=')).ok())
}

/// The spec encodes 64-bit indexes as decimal strings; accept a plain number too.
fn opt_u64_from_str<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    use serde::de::Error as _;
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Index {
        Str(String),
        Num(u64),
    }
    match Option::<Index>::deserialize(d)? {
        None => Ok(None),
        Some(Index::Num(n)) => Ok(Some(n)),
        Some(Index::Str(s)) => {
            s.parse().map(Some).map_err(|_| D::Error::custom("replication_index is not a decimal u64 string"))
        }
    }
}

impl Batch {
    /// The highest replication index this batch asks to have been applied.
    pub fn wanted_index(&self) -> Option<u64> {
        self.steps.iter().filter_map(|s| s.stmt.replication_index).chain(self.replication_index).max()
    }
}

impl StreamRequest {
    /// The highest replication index this request asks to have been applied.
    pub fn wanted_index(&self) -> Option<u64> {
        match self {
            StreamRequest::Execute { stmt } => stmt.replication_index,
            StreamRequest::Batch { batch } => batch.wanted_index(),
            StreamRequest::Sequence { replication_index, .. } | StreamRequest::Describe { replication_index, .. } => {
                *replication_index
            }
            _ => None,
        }
    }
}

fn opt_i64_as_str<S: Serializer>(v: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => s.serialize_str(&v.to_string()),
        None => s.serialize_none(),
    }
}

fn opt_u64_as_str<S: Serializer>(v: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => s.serialize_str(&v.to_string()),
        None => s.serialize_none(),
    }
}

/// A 64-bit index as the spec writes them, a decimal string (JSON numbers lose precision in
/// JavaScript above 2^53); a plain number is accepted too. For devdb's own control documents.
pub mod u64_as_str {
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&v.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        use serde::de::Error as _;
        super::opt_u64_from_str(d)?.ok_or_else(|| D::Error::custom("expected a decimal u64 string"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_as_the_spec_encodes_them() {
        let vals = vec![
            Value::Null,
            Value::Integer(i64::MIN),
            Value::Float(1.5),
            Value::Text("é\"\n".into()),
            Value::Blob(vec![0, 255, 10]),
        ];
        let json = serde_json::to_string(&vals).unwrap();
        assert!(json.contains(r#"{"type":"integer","value":"-9223372036854775808"}"#));
        assert!(json.contains(r#"{"type":"blob","base64":"AP8K"}"#));
        let back: Vec<Value> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, vals);
    }

    #[test]
    fn rejects_out_of_range_integers_and_unknown_requests() {
        assert!(serde_json::from_str::<Value>(r#"{"type":"integer","value":"1e400"}"#).is_err());
        assert!(serde_json::from_str::<Value>(r#"{"type":"integer","value":5}"#).is_err());
        assert!(serde_json::from_str::<PipelineReqBody>(r#"{"requests":[{"type":"drop_db"}]}"#).is_err());
    }
}
