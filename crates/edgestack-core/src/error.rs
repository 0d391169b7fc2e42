//! The one place an error becomes HTTP. Domain modules return their own small error enums and
//! know nothing of statuses; [`ApiError`] gathers them with the app's own refusals, `From` impls
//! let `?` do the mapping, and [`ApiError::describe`] gives each its status, `code`, message and
//! header — the API's whole error vocabulary in one table (docs/api.md lists the codes).
//! Rendered as `{"error": {"code", "message"}}`; internal details never go in the message.

use std::borrow::Cow;

use serde::Serialize;

use crate::accounts::{InvalidEmail, WeakPassword};
use crate::csp_report::CspReportError;
use crate::csrf::CsrfRefusal;
use crate::db::DbError;
use crate::json_body::BodyError;
use crate::notes::{NoteInputError, PageError};
use crate::routes::RouteError;
use crate::services::Service;
use crate::services::identity::IdentityError;
use crate::services::internal_api::VersionError;

/// Every way a request can fail, as the client is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    /// No route for the method and path (404 or 405).
    Route(RouteError),
    /// A route this deployment's service does not serve.
    NotInThisService,
    /// A path outside `/api` that reached a Worker without static assets (the worker's edge).
    NoSuchPath,
    /// A note that does not exist or is not the caller's: the same answer for both.
    NoSuchNote,
    /// `If-Match` is neither `*` nor a list of entity tags.
    InvalidIfMatch,
    /// The note exists but is not the version `If-Match` names (RFC 9110 §13.1.1): someone
    /// changed it since the client read it.
    PreconditionFailed,
    /// An internal request in an API version this build does not serve.
    InternalApiVersion(VersionError),
    Csrf(CsrfRefusal),
    Body(BodyError),
    /// JSON, but neither CSP report format.
    NotACspReport,
    NoteInput(NoteInputError),
    Page(PageError),
    Email(InvalidEmail),
    Password(WeakPassword),
    /// No valid session (or identity).
    Unauthenticated,
    /// Sign-in or a password confirmation failed; never says which field was wrong.
    InvalidCredentials,
    /// The sign-in budget of this client (untrusted attempts) or of this known device or
    /// session (trusted attempts, password confirmations) is spent for the limiter's window.
    RateLimited,
    /// Untrusted sign-ins for this email are paused after repeated attempts (progressive delay,
    /// `accounts::throttle`); a device that signed in before is not held up by it.
    SignInPaused {
        retry_after_seconds: u32,
    },
    /// This client has signed up too often within the limiter's window.
    SignUpRateLimited,
    /// A rate limiter could not answer: the request is refused rather than let through
    /// unlimited (fail closed).
    RateLimiterUnavailable,
    /// The request body did not arrive in time (`BODY_DEADLINE_MS` in the worker's edge).
    BodyTimeout,
    /// Creating or growing this note would pass the owner's quota (`notes::quota`).
    NoteQuotaExceeded,
    EmailTaken,
    DatabaseNotConfigured,
    /// The database could not answer; the cause is logged, never shown.
    Database(DbError),
    /// A service binding call failed.
    ServiceUnavailable(Service),
    /// A service answered something this build cannot read.
    UnexpectedServiceAnswer(Service),
    /// The configuration does not parse (logged where it is read), or `notes` cannot verify the
    /// identities the entry verified (`IDENTITY_PUBLIC_KEY` not the entry's; logged there).
    Misconfigured,
    /// `EDGESTACK_INJECT_FAULT=errors`.
    InjectedFault,
    /// A failure of our own (randomness, hashing, serialization), logged where it happened.
    Internal,
}

/// How an [`ApiError`] is answered.
#[derive(Debug)]
pub struct Described<'a> {
    pub status: u16,
    pub code: &'static str,
    pub message: Cow<'a, str>,
    /// The one header some errors need: `Allow` (405) or `Retry-After` (429, 503).
    pub header: Option<(&'static str, Cow<'a, str>)>,
}

/// Seconds a client waits before retrying a database or service that did not answer.
pub const RETRY_UNAVAILABLE_SECONDS: &str = "5";
/// Seconds a client waits when no database is configured: a deployment, not a blip.
const RETRY_NOT_CONFIGURED_SECONDS: &str = "60";

impl ApiError {
    /// The status, `code`, message and header of every error: the one table.
    pub fn describe(&self) -> Described<'_> {
        use Cow::{Borrowed, Owned};
        let (status, code, message): (u16, &'static str, Cow<'_, str>) = match self {
            Self::Route(error @ RouteError::NoRoute { .. }) => (404, "not_found", Owned(error.to_string())),
            Self::Route(error @ RouteError::MethodNotAllowed { .. }) => {
                (405, "method_not_allowed", Owned(error.to_string()))
            }
            Self::NotInThisService => (404, "not_found", Borrowed("no such route in this service")),
            Self::NoSuchPath => (404, "not_found", Borrowed("no such path")),
            Self::NoSuchNote => (404, "not_found", Borrowed("no such note")),
            Self::InternalApiVersion(error) => (400, "unsupported_internal_api", Owned(error.to_string())),
            Self::Csrf(refusal) => (403, "csrf", Owned(refusal.to_string())),
            Self::Body(error) => {
                let (status, code) = match error {
                    BodyError::InvalidContentLength => (400, "invalid_content_length"),
                    BodyError::TooLarge => (413, "body_too_large"),
                    BodyError::Unreadable => (400, "unreadable_body"),
                    BodyError::NotJson => (415, "unsupported_media_type"),
                    BodyError::Encoded => (415, "unsupported_content_encoding"),
                    BodyError::Empty => (400, "empty_body"),
                    BodyError::Malformed(_) => (400, "invalid_json"),
                    BodyError::UnexpectedShape(_) => (400, "invalid_body"),
                };
                (status, code, Owned(error.to_string()))
            }
            Self::NotACspReport => (400, "invalid_body", Owned(CspReportError::NotAReport.to_string())),
            Self::NoteInput(error) => {
                let code = match error {
                    NoteInputError::InvalidTitle => "invalid_title",
                    NoteInputError::InvalidBodyText => "invalid_body_text",
                    NoteInputError::NothingToChange => "nothing_to_change",
                };
                (400, code, Owned(error.to_string()))
            }
            Self::Page(error) => {
                let code = match error {
                    PageError::InvalidLimit => "invalid_limit",
                    PageError::InvalidCursor => "invalid_cursor",
                    PageError::Repeated(_) => "repeated_parameter",
                };
                (400, code, Owned(error.to_string()))
            }
            Self::Email(error) => (400, "invalid_email", Owned(error.to_string())),
            Self::Password(error) => (400, "weak_password", Owned(error.to_string())),
            Self::Unauthenticated => (401, "unauthenticated", Borrowed("sign in first")),
            Self::InvalidCredentials => (401, "invalid_credentials", Borrowed("the email or the password is wrong")),
            Self::RateLimited => {
                // Also a session's password confirmations (changing the password, deleting the account).
                (429, "rate_limited", Borrowed("too many sign-in or password attempts; wait a minute"))
            }
            Self::SignInPaused { retry_after_seconds } => (
                429,
                "rate_limited",
                Owned(format!(
                    "too many sign-in attempts for this account; wait {retry_after_seconds} s, or sign in on a device you have signed in on before"
                )),
            ),
            Self::SignUpRateLimited => {
                (429, "rate_limited", Borrowed("too many sign-ups from this client; wait a minute"))
            }
            Self::RateLimiterUnavailable => (
                503,
                "rate_limiter_unavailable",
                Borrowed("sign-in and password checks are briefly unavailable; try again shortly"),
            ),
            Self::BodyTimeout => (408, "body_timeout", Borrowed("the request body did not arrive in time")),
            Self::NoteQuotaExceeded => (403, "quota_exceeded", Owned(crate::notes::quota::EXCEEDED.to_string())),
            Self::InvalidIfMatch => {
                (400, "invalid_if_match", Borrowed("If-Match must be * or a comma-separated list of entity tags"))
            }
            Self::PreconditionFailed => (
                412,
                "precondition_failed",
                Borrowed("the note does not match the request's If-Match or If-None-Match; read it again"),
            ),
            Self::EmailTaken => (409, "email_taken", Borrowed("an account with this email already exists")),
            Self::DatabaseNotConfigured => {
                (503, "database_not_configured", Borrowed("no database is configured for this deployment"))
            }
            Self::Database(DbError::Unavailable(_)) => {
                (503, "database_unavailable", Borrowed("the database is not reachable; try again shortly"))
            }
            Self::Database(DbError::Protocol(_)) => {
                (502, "database_error", Borrowed("the database gave an unexpected answer"))
            }
            // A refused statement is our bug (or a constraint a handler did not expect).
            Self::Database(DbError::Statement { .. }) | Self::Internal => (500, "internal", Borrowed("internal error")),
            Self::ServiceUnavailable(service) => (
                503,
                "service_unavailable",
                Owned(format!("the {} service is not reachable; try again shortly", service.as_str())),
            ),
            Self::UnexpectedServiceAnswer(service) => {
                (502, "service_error", Owned(format!("the {} service gave an unexpected answer", service.as_str())))
            }
            Self::Misconfigured => (500, "misconfigured", Borrowed("the service is misconfigured")),
            Self::InjectedFault => {
                (500, "injected_fault", Borrowed("this build injects errors (EDGESTACK_INJECT_FAULT)"))
            }
        };
        let header = match self {
            Self::Route(RouteError::MethodNotAllowed { allow, .. }) => Some(("Allow", Borrowed(allow.as_str()))),
            Self::RateLimited | Self::SignUpRateLimited => {
                Some(("Retry-After", Owned(crate::app::RATE_LIMIT_WINDOW_SECONDS.to_string())))
            }
            Self::SignInPaused { retry_after_seconds } => Some(("Retry-After", Owned(retry_after_seconds.to_string()))),
            Self::RateLimiterUnavailable => Some(("Retry-After", Borrowed(RETRY_UNAVAILABLE_SECONDS))),
            Self::DatabaseNotConfigured => Some(("Retry-After", Borrowed(RETRY_NOT_CONFIGURED_SECONDS))),
            // RFC 9110 §15.5.16: a 415 for a content coding says which codings are accepted.
            Self::Body(BodyError::Encoded) => Some(("Accept-Encoding", Borrowed("identity"))),
            Self::Database(DbError::Unavailable(_)) | Self::ServiceUnavailable(_) => {
                Some(("Retry-After", Borrowed(RETRY_UNAVAILABLE_SECONDS)))
            }
            _ => None,
        };
        Described { status, code, message, header }
    }

    pub fn status(&self) -> u16 {
        self.describe().status
    }

    pub fn code(&self) -> &'static str {
        self.describe().code
    }

    pub fn message(&self) -> Cow<'_, str> {
        self.describe().message
    }

    /// The response headers the error needs besides `Content-Type`.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        self.describe().header.map(|(name, value)| (name, value.into_owned())).into_iter().collect()
    }

    /// What the platform's log should say about the cause, for errors whose cause the client is
    /// not told and that nobody logged where they happened.
    pub fn cause_to_log(&self) -> Option<String> {
        match self {
            Self::Database(error) => Some(format!("database: {error}")),
            _ => None,
        }
    }

    pub fn body_json(&self) -> String {
        self.describe().body_json()
    }
}

impl Described<'_> {
    /// `{"error": {"code", "message"}}`.
    pub fn body_json(&self) -> String {
        let body = ErrorBody { error: ErrorDetail { code: self.code, message: &self.message } };
        // Serializing two string fields cannot fail; the fallback keeps this path panic-free.
        serde_json::to_string(&body)
            .unwrap_or_else(|_| r#"{"error":{"code":"internal","message":"internal error"}}"#.to_string())
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

#[derive(Serialize)]
struct ErrorDetail<'a> {
    code: &'a str,
    message: &'a str,
}

impl From<RouteError> for ApiError {
    fn from(error: RouteError) -> Self {
        Self::Route(error)
    }
}

impl From<VersionError> for ApiError {
    fn from(error: VersionError) -> Self {
        Self::InternalApiVersion(error)
    }
}

impl From<CsrfRefusal> for ApiError {
    fn from(refusal: CsrfRefusal) -> Self {
        Self::Csrf(refusal)
    }
}

impl From<BodyError> for ApiError {
    fn from(error: BodyError) -> Self {
        Self::Body(error)
    }
}

impl From<CspReportError> for ApiError {
    fn from(error: CspReportError) -> Self {
        match error {
            CspReportError::Body(error) => Self::Body(error),
            CspReportError::NotAReport => Self::NotACspReport,
        }
    }
}

impl From<NoteInputError> for ApiError {
    fn from(error: NoteInputError) -> Self {
        Self::NoteInput(error)
    }
}

impl From<PageError> for ApiError {
    fn from(error: PageError) -> Self {
        Self::Page(error)
    }
}

impl From<InvalidEmail> for ApiError {
    fn from(error: InvalidEmail) -> Self {
        Self::Email(error)
    }
}

impl From<WeakPassword> for ApiError {
    fn from(error: WeakPassword) -> Self {
        Self::Password(error)
    }
}

/// An identity that does not verify is no identity: the caller is not signed in.
/// `notes` gets only identities the entry verified: one it refuses for what the caller's session
/// or the time says is `401`; one it cannot read or verify at all is its configuration's fault
/// (a public key the entry does not share), a `500` the release gate counts, never a client's
/// `401` that signs every user out ([`IdentityError::is_about_the_caller`]).
impl From<IdentityError> for ApiError {
    fn from(error: IdentityError) -> Self {
        if error.is_about_the_caller() { Self::Unauthenticated } else { Self::Misconfigured }
    }
}

impl From<DbError> for ApiError {
    fn from(error: DbError) -> Self {
        Self::Database(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::StatementError;
    use crate::routes::Method;

    fn check(error: ApiError, status: u16, code: &str, header: Option<(&str, &str)>) {
        let described = error.describe();
        let actual = (described.status, described.code, described.header.as_ref().map(|(n, v)| (*n, v.as_ref())));
        assert_eq!(actual, (status, code, header), "{error:?}");
        assert!(!described.message.is_empty(), "{error:?} has a message");
    }

    /// Every status, code and header the API answered with before the errors became one enum.
    #[test]
    fn every_error_keeps_its_status_code_and_header() {
        let retry = |seconds| Some(("Retry-After", seconds));
        check(ApiError::Route(RouteError::NoRoute { path: "/api/x".into() }), 404, "not_found", None);
        let wrong_method = RouteError::MethodNotAllowed { method: Method::Put, allow: "GET, HEAD".into() };
        check(ApiError::Route(wrong_method), 405, "method_not_allowed", Some(("Allow", "GET, HEAD")));
        check(ApiError::NotInThisService, 404, "not_found", None);
        check(ApiError::NoSuchPath, 404, "not_found", None);
        check(ApiError::NoSuchNote, 404, "not_found", None);
        check(ApiError::InternalApiVersion(VersionError::Missing), 400, "unsupported_internal_api", None);
        check(ApiError::Csrf(CsrfRefusal::NoProof), 403, "csrf", None);
        for (error, status, code) in [
            (BodyError::InvalidContentLength, 400, "invalid_content_length"),
            (BodyError::TooLarge, 413, "body_too_large"),
            (BodyError::Unreadable, 400, "unreadable_body"),
            (BodyError::NotJson, 415, "unsupported_media_type"),
            (BodyError::Empty, 400, "empty_body"),
            (BodyError::Malformed("x".into()), 400, "invalid_json"),
            (BodyError::UnexpectedShape("x".into()), 400, "invalid_body"),
        ] {
            check(ApiError::from(error.clone()), status, code, None);
            check(ApiError::from(CspReportError::Body(error)), status, code, None);
        }
        let identity_only = Some(("Accept-Encoding", "identity"));
        check(ApiError::from(BodyError::Encoded), 415, "unsupported_content_encoding", identity_only);
        check(ApiError::from(CspReportError::NotAReport), 400, "invalid_body", None);
        check(ApiError::NoteInput(NoteInputError::InvalidTitle), 400, "invalid_title", None);
        check(ApiError::NoteInput(NoteInputError::InvalidBodyText), 400, "invalid_body_text", None);
        check(ApiError::NoteInput(NoteInputError::NothingToChange), 400, "nothing_to_change", None);
        check(ApiError::Page(PageError::InvalidLimit), 400, "invalid_limit", None);
        check(ApiError::Page(PageError::InvalidCursor), 400, "invalid_cursor", None);
        check(ApiError::Page(PageError::Repeated("limit")), 400, "repeated_parameter", None);
        check(ApiError::Email(InvalidEmail), 400, "invalid_email", None);
        check(ApiError::Password(WeakPassword::Length), 400, "weak_password", None);
        check(ApiError::Password(WeakPassword::Common), 400, "weak_password", None);
        check(ApiError::Unauthenticated, 401, "unauthenticated", None);
        for about_the_caller in [IdentityError::Expired, IdentityError::OtherSession, IdentityError::NotYetValid] {
            check(ApiError::from(about_the_caller), 401, "unauthenticated", None);
        }
        for unreadable in [
            IdentityError::Malformed,
            IdentityError::BadSignature,
            IdentityError::UnsupportedVersion,
            IdentityError::WrongType,
            IdentityError::WrongAudience,
        ] {
            check(ApiError::from(unreadable), 500, "misconfigured", None);
        }
        check(ApiError::InvalidCredentials, 401, "invalid_credentials", None);
        check(ApiError::RateLimited, 429, "rate_limited", retry("60"));
        check(ApiError::SignInPaused { retry_after_seconds: 16 }, 429, "rate_limited", retry("16"));
        check(ApiError::SignUpRateLimited, 429, "rate_limited", retry("60"));
        check(ApiError::RateLimiterUnavailable, 503, "rate_limiter_unavailable", retry("5"));
        check(ApiError::BodyTimeout, 408, "body_timeout", None);
        check(ApiError::NoteQuotaExceeded, 403, "quota_exceeded", None);
        check(ApiError::InvalidIfMatch, 400, "invalid_if_match", None);
        check(ApiError::PreconditionFailed, 412, "precondition_failed", None);
        check(ApiError::EmailTaken, 409, "email_taken", None);
        check(ApiError::DatabaseNotConfigured, 503, "database_not_configured", retry("60"));
        check(ApiError::from(DbError::Unavailable("x".into())), 503, "database_unavailable", retry("5"));
        check(ApiError::from(DbError::Protocol("x".into())), 502, "database_error", None);
        let refused = StatementError { message: "m".into(), code: "c".into() };
        check(ApiError::from(DbError::Statement { index: 0, error: refused }), 500, "internal", None);
        check(ApiError::ServiceUnavailable(Service::Accounts), 503, "service_unavailable", retry("5"));
        check(ApiError::UnexpectedServiceAnswer(Service::Accounts), 502, "service_error", None);
        check(ApiError::Misconfigured, 500, "misconfigured", None);
        check(ApiError::InjectedFault, 500, "injected_fault", None);
        check(ApiError::Internal, 500, "internal", None);
    }

    #[test]
    fn body_has_code_and_message_only() {
        let error = ApiError::Body(BodyError::Malformed("expected value at line 1".into()));
        let body: serde_json::Value = serde_json::from_str(&error.body_json()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"error": {"code": "invalid_json", "message": "malformed JSON body: expected value at line 1"}})
        );
    }

    #[test]
    fn message_is_escaped() {
        let error = ApiError::Body(BodyError::Malformed("quote \" and newline \n".into()));
        let body: serde_json::Value = serde_json::from_str(&error.body_json()).unwrap();
        assert_eq!(body["error"]["message"], "malformed JSON body: quote \" and newline \n");
    }

    #[test]
    fn database_causes_are_logged_never_shown() {
        let error = ApiError::from(DbError::Protocol("token sk-secret refused".into()));
        assert!(!error.body_json().contains("secret"));
        assert!(error.cause_to_log().is_some_and(|line| line.contains("sk-secret")));
        assert_eq!(ApiError::Unauthenticated.cause_to_log(), None);
    }
}
