//! Accounts endpoints: sign-up, sign-in, sign-out, the current user, password changes, account
//! deletion, and (services shape) the identities `notes` trusts. See
//! [docs/api.md § Accounts](../../../../docs/api.md#accounts).

use serde::{Deserialize, Serialize};

use crate::accounts::device::{COOKIE_NAME as DEVICE_COOKIE, DeviceToken};
use crate::accounts::password::{TypedPassword, UNKNOWN_ACCOUNT_HASH, Verification};
use crate::accounts::session::{SessionAuth, clear_cookie};
use crate::accounts::sql::SignInAttempt;
use crate::accounts::throttle::{self, DEVICE_LIFETIME_MS, DEVICES_PER_ACCOUNT};
use crate::accounts::{Email, Password, SessionToken, ThrottleState, User, UserCredentials, email, sql};
use crate::caller::Caller;
use crate::db::{Pipeline, Statement, StatementError};
use crate::error::ApiError;
use crate::ids::new_id;
use crate::services::identity::{IDENTITY_TTL_MS, clear_identity_cookie, set_identity_cookie};
use crate::services::internal_api::IssuedIdentity;

use super::outbox;
use super::{ApiResponse, Context, Database, Limiter, Platform};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Credentials {
    email: String,
    password: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PasswordChange {
    current_password: String,
    new_password: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeletionConfirmation {
    password: String,
}

#[derive(Serialize)]
struct UserBody<'a> {
    user: &'a User,
}

fn user_response(status: u16, user: &User) -> Result<ApiResponse, ApiError> {
    ApiResponse::json(status, &UserBody { user })
}

/// `typed` as a password, compared in its RFC 8265 form (`TypedPassword`).
fn typed_password<'a, P: Platform>(context: &Context<'_, P>, typed: &'a str) -> TypedPassword<'a> {
    TypedPassword::new(typed, |text, form| context.platform.normalize(text, form))
}

fn hash_failure<P: Platform>(context: &Context<'_, P>, error: String) -> ApiError {
    context.platform.log(&format!("password hashing failed: {error}"));
    ApiError::Internal
}

/// A new account's first session: the token for the cookie and the statement that stores its hash.
fn new_session<P: Platform>(context: &Context<'_, P>, user_id: &str) -> Result<(SessionToken, Statement), ApiError> {
    let token = SessionToken::from_random(context.random()?);
    let now = context.request.now_ms;
    let statement = sql::insert_session(&token.hash(), user_id, now, now + context.config.session.absolute_ms);
    Ok((token, statement))
}

/// Sets the session cookie and, in the services shape, the identity the entry forwards to
/// `notes`, so the first notes request after signing in needs no hop back here.
fn with_session_cookie<P: Platform>(
    context: &Context<'_, P>,
    response: ApiResponse,
    token: &SessionToken,
    user_id: &str,
) -> ApiResponse {
    let response =
        response.with_header("Set-Cookie", token.set_cookie(context.config.session.cookie_max_age_seconds()));
    match &context.config.identity_signer {
        Some(signer) => {
            let lifetime = identity_lifetime_ms(context);
            let identity = signer.sign(user_id, &token.hash(), context.request.now_ms, lifetime);
            response.with_header("Set-Cookie", set_identity_cookie(&identity, lifetime))
        }
        None => response,
    }
}

/// An identity lives no longer than the interval at which session activity is recorded, so
/// notes activity (which refreshes the identity here) keeps a session alive as in one Worker.
fn identity_lifetime_ms<P: Platform>(context: &Context<'_, P>) -> i64 {
    context.config.session.touch_interval_ms().min(IDENTITY_TTL_MS)
}

fn with_cookies_cleared<P: Platform>(context: &Context<'_, P>, response: ApiResponse) -> ApiResponse {
    let response = response.with_header("Set-Cookie", clear_cookie());
    match context.config.identity_signer {
        Some(_) => response.with_header("Set-Cookie", clear_identity_cookie()),
        None => response,
    }
}

/// The client the per-client limits count: the address the runtime saw, an IPv6 one by its
/// /64 (`throttle::client_network`).
fn client_address<P: Platform>(context: &Context<'_, P>) -> String {
    throttle::client_network(context.request.client_ip().unwrap_or("unknown"))
}

/// Counts this request against `limiter`'s budget for `key`; over budget → `over`.
///
/// Fails closed: a limiter that cannot answer (binding missing or failing) refuses the request
/// with 503. Failing open would silently drop the per-client limits — one address guessing
/// across every account, or hashing sign-ups, without bound — and a missing binding would go
/// unnoticed; refused, it shows at once (the release gate sees the 5xx), and what it costs is
/// sign-in and sign-up availability while the limiter is down.
async fn within_budget<P: Platform>(
    context: &Context<'_, P>,
    limiter: Limiter,
    key: &str,
    over: ApiError,
) -> Result<(), ApiError> {
    match context.platform.within_rate_limit(limiter, key).await {
        Ok(true) => Ok(()),
        Ok(false) => Err(over),
        Err(error) => {
            context.platform.log(&format!("rate limiter {limiter:?} unavailable, request refused: {error}"));
            Err(ApiError::RateLimiterUnavailable)
        }
    }
}

/// Untrusted sign-in attempts from one address, across all accounts (credential stuffing).
async fn check_client_budget<P: Platform>(context: &Context<'_, P>) -> Result<(), ApiError> {
    let key = format!("client:{}", client_address(context));
    within_budget(context, Limiter::SignInPerClient, &key, ApiError::RateLimited).await
}

/// The device cookie the browser sent, if well-formed.
fn device_token<P: Platform>(context: &Context<'_, P>) -> Option<DeviceToken> {
    context.request.cookies(DEVICE_COOKIE).find_map(DeviceToken::parse)
}

/// Makes the browser a trusted device of `user_id`: the statements that store a new device
/// token (keeping the account's most recent devices), and its cookie.
fn new_device<P: Platform>(
    context: &Context<'_, P>,
    pipeline: &mut Pipeline,
    user_id: &str,
) -> Result<String, ApiError> {
    let device = DeviceToken::from_random(context.random()?);
    pipeline.push(sql::insert_trusted_device(&device.hash(), user_id, context.request.now_ms));
    pipeline.push(sql::forget_old_devices(user_id, DEVICES_PER_ACCOUNT));
    Ok(device.set_cookie(DEVICE_LIFETIME_MS / 1000))
}

/// Whole seconds from `now` until `at`, at least one: a `Retry-After` never says 0.
fn seconds_until(at: i64, now: i64) -> u32 {
    u32::try_from(((at - now).max(1) + 999) / 1000).unwrap_or(u32::MAX)
}

/// `POST /api/accounts` — sign up. Body `{"email", "password"}`. Answers `201 {"user"}` with
/// the session cookie (and, in the services shape, the identity cookie) and a device cookie; a
/// session the client already had ends.
/// Errors: `400 invalid_email`, `400 weak_password` (8–128 characters, not a common one),
/// `409 email_taken`, `429 rate_limited` (sign-ups per client), `503 rate_limiter_unavailable`,
/// the body errors, the database errors. [docs/api.md § Accounts](../../../../docs/api.md#accounts)
///
/// ASVS 5.0 6.2.4: the password is checked against the common list (`Password::parse`).
/// ASVS 5.0 2.4.1: sign-ups are limited per client address before any hashing, so neither
/// account creation nor Argon2's CPU is free to automate. The 409 does tell that an email has
/// an account (ASVS 6.3.8, level 3, is not met): without a mail channel to send the outcome out
/// of band, the same answer for both would leave a user who mistyped nothing to go on. The
/// limit bounds that probing to the sign-up budget per address (docs/api.md says so).
pub async fn sign_up<P: Platform>(context: &Context<'_, P>) -> Result<ApiResponse, ApiError> {
    let input: Credentials = context.json_body()?;
    let email = Email::parse(&input.email, |text, form| context.platform.normalize(text, form))?;
    let password = Password::parse(&typed_password(context, &input.password))?;
    let key = format!("signup:{}", client_address(context));
    within_budget(context, Limiter::SignUpPerClient, &key, ApiError::SignUpRateLimited).await?;
    let database = context.database()?;
    let password_hash = context.hasher().hash(&password, &context.random()?).map_err(|e| hash_failure(context, e))?;
    let user_id = new_id(context.random()?);
    let now = context.request.now_ms;
    let (token, session) = new_session(context, &user_id)?;
    let mut pipeline = Pipeline::write();
    let new_user = pipeline.push(sql::insert_user(&user_id, email.as_str(), &password_hash, now));
    pipeline.push(session);
    // As at sign-in: the session the client already had ends, not left valid beside the new one
    // with its cookie overwritten.
    if let Some(previous) = context.request.session_token() {
        pipeline.push(sql::delete_session(&previous.hash()));
    }
    let device_cookie = new_device(context, &mut pipeline, &user_id)?;
    match database.run(&pipeline).await {
        Err(error) if error.of_statement(new_user).is_some_and(StatementError::is_unique_violation) => {
            return Err(ApiError::EmailTaken);
        }
        outcome => outcome?,
    };
    let user = User { id: user_id, email: email.as_str().to_string(), created_at: now };
    let response = with_session_cookie(context, user_response(201, &user)?, &token, &user.id);
    Ok(response.with_header("Set-Cookie", device_cookie))
}

/// A sign-in attempt as the primary counted it ([`count_attempt`]).
struct CountedAttempt {
    /// The request's device is a trusted device of the account.
    trusted: bool,
    /// An untrusted attempt was past the account's delay, and counted.
    admitted: bool,
    /// When the account's next untrusted attempt may be checked, if it has been throttled.
    throttled: Option<ThrottleState>,
    credentials: Option<UserCredentials>,
}

/// Checks the attempt against the limit for a trusted device (`as_trusted`: per device) or an
/// untrusted one (per client address), then, in one write transaction on the primary (a
/// replica could still hold a password that was just changed, and the count must be one for
/// every Worker), counts it as that kind — each counting statement holds only for its own
/// kind, so an attempt the primary sees as the other kind is not counted at all (`trusted`
/// then differs from `as_trusted`) — and reads the throttle and the credentials.
async fn count_attempt<P: Platform>(
    context: &Context<'_, P>,
    database: &Database<'_, P>,
    attempt: &SignInAttempt,
    as_trusted: bool,
) -> Result<CountedAttempt, ApiError> {
    match &attempt.device_hash {
        Some(device_hash) if as_trusted => {
            let key = format!("device:{device_hash}");
            within_budget(context, Limiter::SignInPerDevice, &key, ApiError::RateLimited).await?;
        }
        _ => check_client_budget(context).await?,
    }
    let mut pipeline = Pipeline::write();
    pipeline.push(sql::forget_stale_attempts(attempt.now));
    let trusted = pipeline.push(sql::trusted_device(attempt));
    let admitted = (!as_trusted).then(|| pipeline.push(sql::admit_untrusted_attempt(attempt)));
    if as_trusted {
        pipeline.push(sql::count_trusted_attempt(attempt));
    }
    let throttled = pipeline.push(sql::throttle_state(&attempt.account_key));
    let credentials = pipeline.push(sql::user_credentials(attempt));
    let outcome = database.run(&pipeline).await?;
    Ok(CountedAttempt {
        trusted: outcome.first(trusted)?.is_some(),
        admitted: match admitted {
            Some(admitted) => outcome.first(admitted)?.is_some(),
            None => false,
        },
        throttled: outcome.first(throttled)?,
        credentials: outcome.first(credentials)?,
    })
}

/// `POST /api/sessions` — sign in. Body `{"email", "password"}`. Answers `200 {"user"}` with a
/// new session cookie (and identity cookie), and a device cookie; a session the client already
/// had ends. Errors: `401 invalid_credentials` (never says which field), `429 rate_limited`
/// with `Retry-After`, `503 rate_limiter_unavailable`, the body errors, the database errors.
/// [docs/api.md § Accounts](../../../../docs/api.md#accounts)
///
/// ASVS 5.0 6.3.1 (and 6.1.1, documented in `accounts::throttle`): guessing is slowed per
/// account (progressive, global) and per client address, and a device the owner signed in on
/// before is held up by neither, so strangers' failures cannot lock the owner out. An attempt
/// a limit refuses is not counted (`count_attempt`). One write transaction on the primary checks
/// and counts the attempt and reads the credentials: the same one round trip before hashing
/// that the credentials read alone used to cost (two for a device cookie the account does not
/// trust).
pub async fn sign_in<P: Platform>(context: &Context<'_, P>) -> Result<ApiResponse, ApiError> {
    let input: Credentials = context.json_body()?;
    let device = device_token(context);
    let now = context.request.now_ms;
    // Folded, not parsed: a malformed email cannot belong to an account, yet it is still counted
    // and still costs a verification, so neither the answer nor its timing tells which field
    // was wrong.
    let email = email::fold(&input.email, |text, form| context.platform.normalize(text, form));
    let attempt = SignInAttempt {
        device_hash: device.as_ref().map(DeviceToken::hash),
        account_key: throttle::account_key(&email),
        email_as_typed: input.email.trim().to_lowercase(),
        email,
        now,
    };
    // Which limit guards an attempt depends on whether its device is trusted, which only the
    // primary knows, and an attempt a limit refuses must not count. So a device cookie is taken
    // as trusted first (its owner's usual case: one round trip); when the primary says
    // otherwise, nothing was counted, and the attempt goes again as an untrusted one. Trust
    // only ends (a success on an untrusted device makes a new one), so two passes suffice.
    let database = context.database()?;
    let mut counted = count_attempt(context, &database, &attempt, device.is_some()).await?;
    if counted.trusted != device.is_some() {
        counted = count_attempt(context, &database, &attempt, counted.trusted).await?;
    }
    let CountedAttempt { trusted, admitted, throttled, credentials } = counted;
    if !trusted && !admitted {
        let next_allowed_at = throttled.map_or(now, |state| state.next_allowed_at);
        return Err(ApiError::SignInPaused { retry_after_seconds: seconds_until(next_allowed_at, now) });
    }
    let stored_hash = credentials.as_ref().map_or(UNKNOWN_ACCOUNT_HASH, |found| found.password_hash.as_str());
    let hasher = context.hasher();
    let password = typed_password(context, &input.password);
    let verification = hasher.verify(&password, stored_hash);
    let (Some(credentials), Verification::Match | Verification::MatchNeedsRehash) = (credentials, &verification) else {
        return Err(ApiError::InvalidCredentials);
    };
    let UserCredentials { user, password_hash: verified_hash } = credentials;
    let token = SessionToken::from_random(context.random()?);
    let mut pipeline = Pipeline::write();
    let expires_at = now + context.config.session.absolute_ms;
    // First: unless the account still has the password just verified, it rolls the write back.
    let session = pipeline.push(sql::insert_verified_session(&token.hash(), &user.id, now, expires_at, &verified_hash));
    if verification == Verification::MatchNeedsRehash {
        let rehashed =
            hasher.hash(&Password::verified(&password), &context.random()?).map_err(|e| hash_failure(context, e))?;
        pipeline.push(sql::update_password_hash(&user.id, &rehashed, now));
    }
    // An account an earlier release stored under its address as typed (before NFC and
    // A-labels) takes the folded form now, unless another account holds it: from then on a
    // look-alike sign-up finds the address taken, as it does for accounts made since.
    let refolded = (user.email != attempt.email)
        .then(|| pipeline.push(sql::store_folded_email(&user.id, &user.email, &attempt.email, now)));
    // A session the client already had is replaced, not kept beside the new one.
    if let Some(previous) = context.request.session_token() {
        pipeline.push(sql::delete_session(&previous.hash()));
    }
    let device_cookie = match (&attempt.device_hash, trusted) {
        (Some(device_hash), true) => {
            pipeline.push(sql::device_signed_in(device_hash, now));
            None
        }
        _ => {
            pipeline.push(sql::reset_attempts(&attempt.account_key));
            Some(new_device(context, &mut pipeline, &user.id)?)
        }
    };
    let outcome = database.run(&pipeline).await.map_err(|error| match error.of_statement(session) {
        // Changed or deleted since the check: the password is not the account's any more.
        Some(refused) if refused.is_not_null_violation() => ApiError::InvalidCredentials,
        _ => error.into(),
    })?;
    let user = match refolded {
        Some(refolded) => outcome.first(refolded)?.unwrap_or(user),
        None => user,
    };
    let response = with_session_cookie(context, user_response(200, &user)?, &token, &user.id);
    Ok(match device_cookie {
        Some(cookie) => response.with_header("Set-Cookie", cookie),
        None => response,
    })
}

/// `DELETE /api/sessions/current` — sign out. No body. Answers `204` with the cookies cleared.
/// Errors: `401 unauthenticated` (cookies cleared too, whatever the session cookie held), the
/// database errors. [docs/api.md § Accounts](../../../../docs/api.md#accounts)
pub async fn sign_out<P: Platform>(context: &Context<'_, P>) -> Result<ApiResponse, ApiError> {
    let Ok((token, _)) = context.session() else {
        return Ok(with_cookies_cleared(context, ApiResponse::error(&ApiError::Unauthenticated)));
    };
    let database = context.database()?;
    let mut pipeline = Pipeline::write();
    let ended = pipeline.push(sql::delete_session(&token.hash()));
    if database.run(&pipeline).await?.first(ended)?.is_none() {
        return Ok(with_cookies_cleared(context, ApiResponse::error(&ApiError::Unauthenticated)));
    }
    Ok(with_cookies_cleared(context, ApiResponse::empty(204)))
}

/// Answers with `answer(session token, user)` for the signed-in user, read on the nearest
/// replica like any signed-in read, recording activity when it is due.
async fn for_signed_in_user<P: Platform>(
    context: &Context<'_, P>,
    answer: impl FnOnce(&SessionToken, &User) -> Result<ApiResponse, ApiError>,
) -> Result<ApiResponse, ApiError> {
    let (token, auth) = context.session()?;
    let database = context.database()?;
    let mut pipeline = Pipeline::read();
    let signed_in = pipeline.push(sql::session_user(&auth));
    let signed_in = database.run(&pipeline).await?.first(signed_in)?.ok_or(ApiError::Unauthenticated)?;
    context.record_activity_if_stale(&database, &Caller::Session(auth), Some(signed_in.last_seen_at));
    answer(&token, &signed_in.user)
}

/// `GET /api/me` — the signed-in user. Answers `200 {"user"}`.
/// Errors: `401 unauthenticated`, the database errors. [docs/api.md § Accounts](../../../../docs/api.md#accounts)
pub async fn me<P: Platform>(context: &Context<'_, P>) -> Result<ApiResponse, ApiError> {
    for_signed_in_user(context, |_, user| user_response(200, user)).await
}

/// The signed-in user's id once `password` is proven to be theirs: read from the primary (a
/// replica could hold a password that was just changed). What the caller then writes is
/// conditioned on the session still being active ([`sql::ConfirmedAccount`]): the check and the
/// write are two round trips, and a password change may end the session in between. Limited
/// per session, never per account (ASVS 5.0 6.3.1): a stranger's failed sign-ins cannot stop the owner from changing
/// the password or deleting the account, and a stolen session guesses slowly.
async fn confirm_password<P: Platform>(
    context: &Context<'_, P>,
    database: &Database<'_, P>,
    auth: &SessionAuth,
    password: &str,
) -> Result<String, ApiError> {
    let key = format!("session:{}", auth.token_hash);
    within_budget(context, Limiter::SignInPerDevice, &key, ApiError::RateLimited).await?;
    let mut pipeline = Pipeline::authoritative_read();
    let credentials = pipeline.push(sql::session_credentials(auth));
    let credentials = database.run(&pipeline).await?.first(credentials)?.ok_or(ApiError::Unauthenticated)?;
    if context.hasher().verify(&typed_password(context, password), &credentials.password_hash) == Verification::Mismatch
    {
        return Err(ApiError::InvalidCredentials);
    }
    Ok(credentials.user.id)
}

/// `PUT /api/me/password` — change the password. Body `{"current_password", "new_password"}`.
/// Answers `204` with a new session cookie; every other session of the account ends.
/// Errors: `401 unauthenticated`, `401 invalid_credentials`, `400 weak_password`,
/// `429 rate_limited`, `503 rate_limiter_unavailable`, the body errors, the database errors.
/// [docs/api.md § Accounts](../../../../docs/api.md#accounts)
///
/// ASVS 5.0 6.2.4: the new password is checked against the common list (`Password::parse`).
pub async fn change_password<P: Platform>(context: &Context<'_, P>) -> Result<ApiResponse, ApiError> {
    let input: PasswordChange = context.json_body()?;
    let (_, auth) = context.session()?;
    let new_password = Password::parse(&typed_password(context, &input.new_password))?;
    let database = context.database()?;
    let user_id = confirm_password(context, &database, &auth, &input.current_password).await?;
    let new_hash = context.hasher().hash(&new_password, &context.random()?).map_err(|e| hash_failure(context, e))?;
    let user_id = user_id.as_str();
    let confirmed = sql::ConfirmedAccount { auth: &auth, user_id };
    let token = SessionToken::from_random(context.random()?);
    let now = context.request.now_ms;
    // Every session of the account ends, this one included; the caller gets a fresh one — made
    // first, so that a change or a deletion since the check rolls the whole write back.
    let mut pipeline = Pipeline::write();
    let expires_at = now + context.config.session.absolute_ms;
    let session = pipeline.push(sql::insert_confirmed_session(&confirmed, &token.hash(), now, expires_at));
    pipeline.push(sql::update_password_hash(user_id, &new_hash, now));
    pipeline.push(sql::delete_other_sessions(user_id, &token.hash()));
    database.run(&pipeline).await.map_err(|error| match error.of_statement(session) {
        // Another change ended this session after the check.
        Some(refused) if refused.is_not_null_violation() => ApiError::Unauthenticated,
        _ => error.into(),
    })?;
    Ok(with_session_cookie(context, ApiResponse::empty(204), &token, user_id))
}

/// `DELETE /api/me` — delete the account, its sessions and its notes (`outbox::delete_account`).
/// Body `{"password"}`. Answers `204` with the cookies cleared.
/// Errors: `401 unauthenticated`, `401 invalid_credentials`, `429 rate_limited`,
/// `503 rate_limiter_unavailable`, the body errors, the database errors.
/// [docs/api.md § Accounts](../../../../docs/api.md#accounts)
pub async fn delete_account<P: Platform>(context: &Context<'_, P>) -> Result<ApiResponse, ApiError> {
    let input: DeletionConfirmation = context.json_body()?;
    let (_, auth) = context.session()?;
    let database = context.database()?;
    let user_id = confirm_password(context, &database, &auth, &input.password).await?;
    let confirmed = sql::ConfirmedAccount { auth: &auth, user_id: &user_id };
    let notes_token = outbox::delete_account(context, &database, &confirmed).await?;
    let response = with_cookies_cleared(context, ApiResponse::empty(204));
    Ok(match notes_token {
        Some(cookie) => response.with_header("Set-Cookie", cookie),
        None => response,
    })
}

/// `POST /internal/identity` — internal (entry → accounts), with the browser's cookies: a signed
/// identity for the request's session, which `notes` trusts for up to a minute. No body.
/// Answers `200` [`IssuedIdentity`]. Errors: `401 unauthenticated`, `500 internal` (no signing
/// key), the database errors. Not a client route: [docs/services.md](../../../../docs/services.md#who-is-calling-a-signed-identity-not-a-hop-per-request);
/// the client API is [docs/api.md](../../../../docs/api.md).
pub async fn issue_identity<P: Platform>(context: &Context<'_, P>) -> Result<ApiResponse, ApiError> {
    let signer = context.config.identity_signer.as_ref().ok_or(ApiError::Internal)?;
    for_signed_in_user(context, |token, user| {
        let lifetime_ms = identity_lifetime_ms(context);
        let identity = signer.sign(&user.id, &token.hash(), context.request.now_ms, lifetime_ms);
        ApiResponse::json(200, &IssuedIdentity { identity, lifetime_ms })
    })
    .await
}
