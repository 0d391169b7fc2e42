//! Production health from Workers Analytics Engine: the SQL the release command sends and the
//! parsing of its JSON answer.
//!
//! The worker writes one data point per API response into the dataset `edgestack_requests`:
//! `index1` and `blob1` = version id, `blob2` = route, `blob3` = status class (`2xx` … `5xx`),
//! `double1` = latency in ms. Analytics Engine samples at high volume, so every sum is weighted
//! by `_sample_interval`.

use serde_json::Value;

use crate::stats::VersionCounts;

pub const DATASET: &str = "edgestack_requests";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnalyticsError {
    /// A version id that is not a UUID would be pasted into SQL; refused.
    BadVersionId(String),
    BadAnswer(String),
}

impl std::fmt::Display for AnalyticsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::BadVersionId(id) => write!(f, "`{id}` is not a version id"),
            Self::BadAnswer(why) => write!(f, "unexpected Analytics Engine answer: {why}"),
        }
    }
}

impl std::error::Error for AnalyticsError {}

/// `id` if it has the shape of a Worker version id, a UUID (8-4-4-4-12 hexadecimal digits);
/// checking the shape is what keeps [`window_query`] free of injection, and the release command
/// checks both versions with it before any stage (`cli::wrangler`).
pub fn checked_id(id: &str) -> Result<&str, AnalyticsError> {
    let valid = id.len() == 36
        && id
            .bytes()
            .enumerate()
            .all(|(i, b)| if [8, 13, 18, 23].contains(&i) { b == b'-' } else { b.is_ascii_hexdigit() });
    if valid { Ok(id) } else { Err(AnalyticsError::BadVersionId(id.to_string())) }
}

/// The query for the last `window_seconds`, one row per version.
pub fn window_query(old_id: &str, new_id: &str, window_seconds: u32) -> Result<String, AnalyticsError> {
    let (old_id, new_id) = (checked_id(old_id)?, checked_id(new_id)?);
    Ok(format!(
        "SELECT blob1 AS version_id, \
SUM(_sample_interval) AS requests, \
SUM(IF(blob3 = '5xx', _sample_interval, 0)) AS errors, \
quantileExactWeighted(0.95)(double1, _sample_interval) AS p95_ms \
FROM {DATASET} \
WHERE timestamp > NOW() - INTERVAL '{window_seconds}' SECOND AND blob1 IN ('{old_id}', '{new_id}') \
GROUP BY version_id \
FORMAT JSON"
    ))
}

/// Reads `{"data": [{"version_id", "requests", "errors", "p95_ms"}, …]}` into (old, new) counts.
/// Numbers may come as JSON numbers or as strings (64-bit values do); a version without a row had
/// no traffic.
///
/// Errors ([`AnalyticsError::BadAnswer`]): no `data` array; a row of either version whose
/// `requests` or `errors` is missing, null, negative or not a finite number (read as 0, an
/// unreadable `errors` would give a failing canary a clean record); two rows for one version.
/// A `p95_ms` that cannot be read is `None`, which the gate never passes on (`gate::evaluate`).
pub fn parse_window(body: &str, old_id: &str, new_id: &str) -> Result<(VersionCounts, VersionCounts), AnalyticsError> {
    let answer: Value = serde_json::from_str(body).map_err(|e| AnalyticsError::BadAnswer(e.to_string()))?;
    let rows = answer["data"].as_array().ok_or_else(|| AnalyticsError::BadAnswer("no `data` array".into()))?;
    let (mut old, mut new) = (None, None);
    for row in rows {
        let slot = match row["version_id"].as_str() {
            Some(id) if id == old_id => &mut old,
            Some(id) if id == new_id => &mut new,
            _ => continue,
        };
        let count = |field: &str| {
            number(&row[field]).filter(|n| *n >= 0.0).map(|n| n as u64).ok_or_else(|| {
                AnalyticsError::BadAnswer(format!("`{field}` of version {} is {}", row["version_id"], row[field]))
            })
        };
        let requests = count("requests")?;
        let counts = VersionCounts {
            requests,
            errors: count("errors")?,
            p95_ms: number(&row["p95_ms"]),
            latency_samples: requests,
        };
        if slot.replace(counts).is_some() {
            return Err(AnalyticsError::BadAnswer(format!("two rows for version {}", row["version_id"])));
        }
    }
    Ok((old.unwrap_or_default(), new.unwrap_or_default()))
}

/// A finite number, given as a JSON number or a string of one.
fn number(value: &Value) -> Option<f64> {
    value.as_f64().or_else(|| value.as_str().and_then(|text| text.trim().parse().ok())).filter(|n: &f64| n.is_finite())
}

#[cfg(test)]
mod tests {
    use super::*;

    const OLD: &str = "11111111-2222-3333-4444-555555555555";
    const NEW: &str = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee";

    #[test]
    fn query_filters_both_versions_and_weights_by_sample_interval() {
        let sql = window_query(OLD, NEW, 300).unwrap();
        assert!(sql.contains(&format!("blob1 IN ('{OLD}', '{NEW}')")), "{sql}");
        assert!(sql.contains("INTERVAL '300' SECOND"), "{sql}");
        assert!(sql.contains("SUM(_sample_interval)") && sql.contains("FORMAT JSON"), "{sql}");
    }

    #[test]
    fn ids_that_are_not_uuids_are_refused() {
        assert!(window_query("x' OR 1=1 --", NEW, 60).is_err());
        assert!(window_query(OLD, "", 60).is_err());
    }

    #[test]
    fn answer_is_parsed_with_string_or_number_fields() {
        let body = format!(
            r#"{{"meta":[],"data":[{{"version_id":"{OLD}","requests":"1200","errors":"3","p95_ms":41.5}},
            {{"version_id":"{NEW}","requests":35,"errors":9,"p95_ms":"380"}}],"rows":2}}"#
        );
        let (old, new) = parse_window(&body, OLD, NEW).unwrap();
        assert_eq!((old.requests, old.errors, old.p95_ms), (1200, 3, Some(41.5)));
        assert_eq!((new.requests, new.errors, new.p95_ms), (35, 9, Some(380.0)));
    }

    #[test]
    fn missing_rows_mean_no_traffic() {
        let (old, new) = parse_window(r#"{"data":[]}"#, OLD, NEW).unwrap();
        assert_eq!((old.requests, new.requests), (0, 0));
        assert!(parse_window(r#"{"errors":["bad token"]}"#, OLD, NEW).is_err());
    }

    /// A count the gate cannot read for one of the two versions is an unreadable answer, never
    /// zero: an `errors` read as 0 would give a failing canary a clean record and promote it.
    #[test]
    fn a_count_that_cannot_be_read_is_a_bad_answer_not_zero() {
        for bad in ["null", "\"n/a\"", "\"nan\"", "\"inf\"", "-5", "\"-5\"", "1.5e400", "[]", "{}", "true"] {
            for field in ["requests", "errors"] {
                let (requests, errors) = if field == "requests" { (bad, "40") } else { ("500", bad) };
                let body = format!(
                    r#"{{"data":[{{"version_id":"{OLD}","requests":5000,"errors":0,"p95_ms":40}},{{"version_id":"{NEW}","requests":{requests},"errors":{errors},"p95_ms":40}}]}}"#
                );
                let answer = parse_window(&body, OLD, NEW);
                assert!(matches!(answer, Err(AnalyticsError::BadAnswer(_))), "{field} {bad}: {answer:?}");
            }
        }
        let missing = format!(r#"{{"data":[{{"version_id":"{NEW}","requests":500,"p95_ms":40}}]}}"#);
        assert!(parse_window(&missing, OLD, NEW).is_err(), "a row without `errors`");
        // One version twice: which row counts would be a guess.
        let twice = format!(
            r#"{{"data":[{{"version_id":"{NEW}","requests":500,"errors":400}},{{"version_id":"{NEW}","requests":500,"errors":0}}]}}"#
        );
        assert!(parse_window(&twice, OLD, NEW).is_err(), "two rows for one version");
        // Rows of other versions are not read at all; huge counts stay counts.
        let other = format!(
            r#"{{"data":[{{"version_id":"x","requests":null}},{{"version_id":"{NEW}","requests":"18446744073709551615","errors":1e30,"p95_ms":null}}]}}"#
        );
        let (old, new) = parse_window(&other, OLD, NEW).unwrap();
        assert_eq!((old.requests, new.requests, new.errors, new.p95_ms), (0, u64::MAX, u64::MAX, None));
    }
}
