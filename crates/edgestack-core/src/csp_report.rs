//! Content-Security-Policy violation reports, the target of the CSP's `report-uri`.
//!
//! Browsers send either the legacy `application/csp-report` object or a Reporting API array;
//! both become the same short summary for the log. Nothing is stored.

use std::fmt;

use serde::Deserialize;
use serde_json::Value;

use crate::json_body::{BodyError, parse_json};

/// Where browsers post violations; named in the CSP header.
pub const REPORT_PATH: &str = "/api/csp-reports";
/// Content type of the legacy report format, which is JSON without a `+json` suffix.
pub const LEGACY_CONTENT_TYPE: &str = "application/csp-report";

const MAX_REPORTS: usize = 20;
const MAX_FIELD_CHARS: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CspViolation {
    pub document: String,
    pub directive: String,
    pub blocked: String,
}

/// Why a report was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CspReportError {
    /// Not JSON at all, empty, or too large.
    Body(BodyError),
    /// JSON, but neither report format.
    NotAReport,
}

impl fmt::Display for CspReportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Body(error) => error.fmt(f),
            Self::NotAReport => f.write_str("expected a {\"csp-report\": {...}} object or a Reporting API array"),
        }
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ReportBody {
    Legacy {
        #[serde(rename = "csp-report")]
        report: LegacyReport,
    },
    Reporting(Vec<ReportingEntry>),
}

#[derive(Deserialize)]
struct LegacyReport {
    #[serde(rename = "document-uri", default)]
    document_uri: String,
    #[serde(rename = "effective-directive", default)]
    effective_directive: Option<String>,
    #[serde(rename = "violated-directive", default)]
    violated_directive: String,
    #[serde(rename = "blocked-uri", default)]
    blocked_uri: String,
}

#[derive(Deserialize)]
struct ReportingEntry {
    #[serde(rename = "type")]
    kind: String,
    body: ReportingBody,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReportingBody {
    #[serde(rename = "documentURL", default)]
    document_url: String,
    #[serde(default)]
    effective_directive: String,
    #[serde(rename = "blockedURL", default)]
    blocked_url: String,
}

/// The violations in a report body (at most [`MAX_REPORTS`], fields clipped).
///
/// # Errors
/// [`CspReportError::Body`] when the body is not JSON (or empty, or too large);
/// [`CspReportError::NotAReport`] when it is neither format — including a report or entry given
/// as an array of its fields, which serde's derived structs would take in field order.
pub fn parse_reports(body: &[u8]) -> Result<Vec<CspViolation>, CspReportError> {
    let value: Value = parse_json(body).map_err(CspReportError::Body)?;
    if !has_report_shape(&value) {
        return Err(CspReportError::NotAReport);
    }
    let parsed: ReportBody = serde_json::from_value(value).map_err(|_| CspReportError::NotAReport)?;
    let violations: Vec<CspViolation> = match parsed {
        ReportBody::Legacy { report } => vec![CspViolation {
            document: clip(&report.document_uri),
            directive: clip(report.effective_directive.as_deref().unwrap_or(&report.violated_directive)),
            blocked: clip(&report.blocked_uri),
        }],
        ReportBody::Reporting(entries) => entries
            .iter()
            .filter(|entry| entry.kind == "csp-violation")
            .take(MAX_REPORTS)
            .map(|entry| CspViolation {
                document: clip(&entry.body.document_url),
                directive: clip(&entry.body.effective_directive),
                blocked: clip(&entry.body.blocked_url),
            })
            .collect(),
    };
    Ok(violations)
}

/// Objects wherever either format has one: the legacy body and its `csp-report`, or every
/// Reporting API entry and its `body`.
fn has_report_shape(value: &Value) -> bool {
    match value {
        Value::Object(fields) => fields.get("csp-report").is_some_and(Value::is_object),
        Value::Array(entries) => entries
            .iter()
            .all(|entry| entry.as_object().is_some_and(|entry| entry.get("body").is_some_and(Value::is_object))),
        _ => false,
    }
}

/// Reports are attacker-controlled text headed for the log: keep them short, and on one line —
/// control characters and Unicode's line and paragraph separators are written as escapes
/// (`\n`, `\u{2028}`), so a report cannot forge a log line of its own (ASVS 5.0 16.4.1).
fn clip(value: &str) -> String {
    let mut clipped = String::new();
    for c in value.chars().take(MAX_FIELD_CHARS) {
        if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}') {
            clipped.extend(c.escape_default());
        } else {
            clipped.push(c);
        }
    }
    clipped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_field_stays_on_one_line() {
        assert_eq!(clip("a\nb\r\u{1b}[31m\u{2028}c\u{85}é"), "a\\nb\\r\\u{1b}[31m\\u{2028}c\\u{85}é");
    }

    #[test]
    fn legacy_report() {
        let body = br#"{"csp-report":{"document-uri":"https://app/","violated-directive":"script-src","blocked-uri":"https://evil/x.js"}}"#;
        assert_eq!(
            parse_reports(body).unwrap(),
            vec![CspViolation {
                document: "https://app/".into(),
                directive: "script-src".into(),
                blocked: "https://evil/x.js".into()
            }]
        );
    }

    #[test]
    fn reporting_api_array_keeps_only_csp_entries() {
        let body = br#"[{"type":"csp-violation","url":"u","body":{"documentURL":"https://app/","effectiveDirective":"img-src","blockedURL":"data"}},
                       {"type":"deprecation","url":"u","body":{}}]"#;
        let reports = parse_reports(body).unwrap();
        assert_eq!(reports.len(), 1);
        assert_eq!(reports[0].directive, "img-src");
    }

    /// A review found a report or an entry given as an array of its fields taken in field order
    /// (and logged as a violation), as serde's derived structs allow.
    #[test]
    fn malformed_reports_are_400() {
        let fields_as_arrays: [&[u8]; 3] = [
            br#"{"csp-report":["https://app/","script-src","script-src","https://evil/x.js"]}"#,
            br#"[["csp-violation",{"documentURL":"https://app/"}]]"#,
            br#"[{"type":"csp-violation","body":["https://app/","img-src","data"]}]"#,
        ];
        for body in [&b"{"[..], b"{}", b"\"text\"", b"[1,2]", b""].into_iter().chain(fields_as_arrays) {
            let error = crate::error::ApiError::from(parse_reports(body).unwrap_err());
            assert_eq!(error.status(), 400, "{}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn long_fields_are_clipped() {
        let body = format!(r#"{{"csp-report":{{"blocked-uri":"{}"}}}}"#, "x".repeat(10_000));
        assert_eq!(parse_reports(body.as_bytes()).unwrap()[0].blocked.len(), MAX_FIELD_CHARS);
    }
}
