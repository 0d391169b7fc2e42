//! Level 5 under races (docs/services.md): seeded schedules in which several users sign up, sign
//! in on several devices, write and publish notes, change passwords, sign out and delete their
//! accounts at once, while the schedule breaks and slows the notes service (its binding, its
//! Worker, its database) and the replicas, moves replica lags, and runs the outbox's cron at
//! random moments. Every exchange is recorded; the oracle then holds each answer to the
//! statuses docs/api.md lists, and each ended session, deleted account and quota to the bounds
//! docs/services.md states. `EDGESTACK_CONSISTENCY_SEEDS=N` runs seeds 1 to N,
//! `EDGESTACK_CONSISTENCY_SEED=n` replays one (`support::schedule`).

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use edgestack_core::accounts::session::COOKIE_NAME as SESSION_COOKIE;
use edgestack_core::app::deliver_pending_deletions;
use edgestack_core::notes::quota::{MAX_BYTES, MAX_NOTES};
use edgestack_core::services::identity::IDENTITY_TTL_MS;
use serde_json::json;

use crate::support::runtime::Clock;
use crate::support::schedule::{Rng, seeds};
use crate::support::{Call, Client, EndpointFault, Options, Response, Shape, Stack, Worker};

/// What a recorded exchange was, for its allowed statuses and the session bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    SignIn,
    SignOut,
    Me,
    ChangePassword,
    DeleteAccount,
    Create,
    ListMine,
    GetMine,
    Edit,
    Publication,
    DeleteNote,
    PublicNote,
    PublicFeed,
    /// A change to another user's note.
    Tamper,
}

impl Op {
    /// docs/api.md: each route's answers, plus the `503` any route reaching a database or a
    /// service may give. Nothing here is misconfigured, so `500` and `502` are never allowed.
    fn allowed(self) -> &'static [u16] {
        match self {
            Op::SignIn => &[200, 401, 429, 503],
            Op::SignOut => &[204, 401, 503],
            Op::Me | Op::ListMine => &[200, 401, 503],
            Op::ChangePassword | Op::DeleteAccount => &[204, 401, 429, 503],
            Op::Create => &[201, 401, 403, 503],
            Op::GetMine | Op::Publication => &[200, 401, 404, 503],
            Op::Edit => &[200, 401, 403, 404, 503],
            Op::DeleteNote => &[204, 401, 404, 503],
            Op::PublicNote => &[200, 404, 503],
            Op::PublicFeed => &[200, 503],
            Op::Tamper => &[401, 404, 503],
        }
    }

    /// A signed-in notes write: the entry has `accounts` check the session first.
    fn is_notes_write(self) -> bool {
        matches!(self, Op::Create | Op::Edit | Op::Publication | Op::DeleteNote)
    }

    /// A signed-in notes read: travels with the identity cookie while it is valid.
    fn is_notes_read(self) -> bool {
        matches!(self, Op::ListMine | Op::GetMine)
    }

    /// Checked on the accounts primary: refused as soon as the session ended there.
    fn is_checked_on_the_primary(self) -> bool {
        matches!(self, Op::SignOut | Op::ChangePassword | Op::DeleteAccount)
    }
}

/// One request and its answer.
struct Exchange {
    op: Op,
    user: usize,
    device: String,
    /// The session cookie it was sent with.
    token: Option<String>,
    region: &'static str,
    started: f64,
    finished: f64,
    status: u16,
    code: String,
    /// Note ids a public read showed.
    seen: Vec<String>,
    /// Its `Server-Timing`: which databases answered, for a failure's report.
    timing: String,
}

/// A session as the run issued it: whose, and under which of the user's passwords.
#[derive(Clone, Copy)]
struct SessionInfo {
    user: usize,
    generation: usize,
}

#[derive(Default)]
struct UserState {
    tag: String,
    email: String,
    id: String,
    /// Its passwords in the order they were set; `generation` is the last acknowledged.
    passwords: Vec<String>,
    generation: usize,
    /// A password change answered neither yes nor no: it may have run.
    password_uncertain: bool,
    /// When each acknowledged change took effect (ack time, new generation).
    changes: Vec<(f64, usize)>,
    /// When a password change or a deletion of this user was first sent: from then on its
    /// sessions may end without the run knowing exactly when.
    first_risky_start: Option<f64>,
    /// When the deletion was acknowledged or first seen done on the accounts primary.
    deleted: Option<f64>,
    /// When its outbox row was first seen gone after the deletion: `notes` acknowledged.
    delivered: Option<f64>,
    /// Notes the user created (acknowledged) and notes some device asked to delete.
    notes: BTreeSet<String>,
    delete_sent: BTreeSet<String>,
    heavy: bool,
}

#[derive(Default)]
struct World {
    users: Vec<UserState>,
    sessions: BTreeMap<String, SessionInfo>,
    /// Acknowledged sign-outs and sign-ins that replaced a session: token → ack time.
    ended: BTreeMap<String, f64>,
    /// Tokens something not acknowledged may have ended, from when that was sent.
    maybe_ended: BTreeMap<String, f64>,
    exchanges: Vec<Exchange>,
    /// `(time, database, region, lag)` each time a replica's lag changed.
    lags: Vec<(f64, &'static str, &'static str, f64)>,
    violations: Vec<String>,
    counter: u64,
    /// Notes with a change answered 503 (it may have run without invalidating their cached
    /// copies): note id → when the last such answer came.
    unacknowledged: BTreeMap<String, f64>,
}

impl World {
    fn max_lag(&self, database: &str, region: &str, from: f64, to: f64) -> f64 {
        if region == "na" {
            return 0.0;
        }
        let matching = |(_, d, r, _): &&(f64, &str, &str, f64)| *d == database && *r == region;
        let before = self.lags.iter().filter(matching).rfind(|(at, ..)| *at <= from).map_or(0.0, |l| l.3);
        let during = self.lags.iter().filter(matching).filter(|(at, ..)| *at > from && *at <= to).map(|l| l.3);
        during.fold(before, f64::max)
    }

    fn next(&mut self) -> u64 {
        self.counter += 1;
        self.counter
    }
}

type Shared<T> = Rc<RefCell<T>>;

/// Sends `call` from `client`, records the exchange, and returns the answer.
async fn exchange(world: &Shared<World>, clock: &Clock, client: &Client, call: Call, op: Op, user: usize) -> Response {
    let token = client.cookie(SESSION_COOKIE);
    let started = clock.now_ms();
    let response = call.send().await;
    let finished = clock.now_ms();
    let status = response.status();
    let mut world = world.borrow_mut();
    let code = if status >= 400 {
        let body: serde_json::Value = serde_json::from_slice(&response.0.body).unwrap_or_default();
        body["error"]["code"].as_str().unwrap_or_default().to_string()
    } else {
        String::new()
    };
    let what = format!("{op:?} by u{user} ({}) at {started:.0}–{finished:.0} ms", client.address);
    if !op.allowed().contains(&status) {
        world.violations.push(format!("{what} answered {status}: {}", response.text()));
    } else if status >= 400 && code.is_empty() {
        world.violations.push(format!("{what}: {status} without an error code: {}", response.text()));
    } else if status == 503 && response.header("retry-after").is_none() {
        world.violations.push(format!("{what}: 503 without Retry-After"));
    }
    let seen = match (op, status) {
        (Op::PublicNote, 200) => vec![response.json()["note"]["id"].as_str().unwrap_or_default().to_string()],
        (Op::PublicFeed, 200) => response.json()["notes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|note| note["id"].as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    };
    world.exchanges.push(Exchange {
        op,
        user,
        device: client.address.clone(),
        token,
        region: client.region.unwrap_or("na"),
        started,
        finished,
        status,
        code,
        seen,
        timing: response.header("server-timing").unwrap_or_default().to_string(),
    });
    response
}

/// Registers the session a sign-in, sign-up or password change just gave `client`.
fn register_session(world: &Shared<World>, client: &Client, user: usize, generation: usize) {
    if let Some(token) = client.cookie(SESSION_COOKIE) {
        world.borrow_mut().sessions.insert(token, SessionInfo { user, generation });
    }
}

/// A browser with a copy of `client`'s cookies (a second tab, or a copied cookie jar).
fn copy_of(stack_client: &Client, template: &Client) -> Client {
    for (name, value) in template.cookie_header().split("; ").filter_map(|pair| pair.split_once('=')) {
        stack_client.set_cookie(name, value);
    }
    stack_client.clone()
}

struct Device {
    user: usize,
    client: Client,
    /// The device that deletes the account, if the user does.
    deletes_at: Option<usize>,
}

/// A device: `ops` actions, one at a time, with pauses between.
async fn device_task(
    world: Shared<World>,
    rng: Shared<Rng>,
    clock: Clock,
    device: Device,
    fresh_client: Rc<dyn Fn(&'static str) -> Option<Client>>,
    ops: usize,
) {
    let Device { user, client, deletes_at } = device;
    let region = client.region.unwrap_or("na");
    for step in 0..ops {
        let pause = rng.borrow_mut().below(1_500) as f64;
        clock.sleep(pause).await;
        if world.borrow().users[user].deleted.is_some() && deletes_at.is_some() {
            return;
        }
        // Told it is signed out, the device signs in again, now or after a few more tries.
        let refused = (world.borrow().exchanges.iter().rev().find(|ex| ex.device == client.address))
            .is_some_and(|ex| ex.status == 401 && ex.code == "unauthenticated");
        if refused && rng.borrow_mut().chance(50) {
            client.forget_cookie(SESSION_COOKIE);
        }
        let signed_in = client.cookie(SESSION_COOKIE).is_some();
        // From its chosen step on, the device deletes the account (signing in again first
        // when another device's password change ended its session).
        if signed_in && deletes_at.is_some_and(|at| step >= at) {
            delete_account(&world, &clock, &client, user, &fresh_client, &rng).await;
            continue;
        }
        if !signed_in {
            sign_in(&world, &clock, &client, user).await;
            continue;
        }
        let roll = rng.borrow_mut().below(100);
        let (own, others): (Vec<String>, Vec<String>) = {
            let world = world.borrow();
            let own = world.users[user].notes.iter().cloned().collect();
            let others = world
                .users
                .iter()
                .enumerate()
                .filter(|(n, _)| *n != user)
                .flat_map(|(_, other)| other.notes.iter().cloned())
                .collect();
            (own, others)
        };
        let n = world.borrow_mut().next();
        let tag = world.borrow().users[user].tag.clone();
        let heavy = world.borrow().users[user].heavy;
        let big = heavy && rng.borrow_mut().chance(50);
        let body = if big { "\u{1F600}".repeat(20_000) } else { format!("body {n}") };
        match roll {
            0..=24 => {
                let published = rng.borrow_mut().chance(50);
                let call = client
                    .post("/api/notes")
                    .json(json!({"title": format!("{tag} c{n}"), "body": body, "published": published}));
                let response = exchange(&world, &clock, &client, call, Op::Create, user).await;
                if response.status() == 201
                    && let Some(id) = response.json()["note"]["id"].as_str()
                {
                    world.borrow_mut().users[user].notes.insert(id.to_string());
                }
            }
            25..=39 if !own.is_empty() => {
                let id = rng.borrow_mut().pick(&own).clone();
                let change = if big { json!({"body": body}) } else { json!({"title": format!("{tag} e{n}")}) };
                let call = client.patch(&format!("/api/notes/{id}")).json(change);
                let response = exchange(&world, &clock, &client, call, Op::Edit, user).await;
                unacknowledged(&world, &clock, &id, &response);
            }
            40..=49 if !own.is_empty() => {
                let id = rng.borrow_mut().pick(&own).clone();
                let path = format!("/api/notes/{id}/publication");
                let publish = rng.borrow_mut().chance(60);
                let call = if publish { client.put(&path) } else { client.delete(&path) };
                let response = exchange(&world, &clock, &client, call, Op::Publication, user).await;
                unacknowledged(&world, &clock, &id, &response);
            }
            50..=55 if !own.is_empty() => {
                let id = rng.borrow_mut().pick(&own).clone();
                world.borrow_mut().users[user].delete_sent.insert(id.clone());
                let call = client.delete(&format!("/api/notes/{id}"));
                let response = exchange(&world, &clock, &client, call, Op::DeleteNote, user).await;
                unacknowledged(&world, &clock, &id, &response);
            }
            56..=62 => {
                exchange(&world, &clock, &client, client.get("/api/notes?limit=100"), Op::ListMine, user).await;
            }
            63..=69 if !own.is_empty() => {
                let id = rng.borrow_mut().pick(&own).clone();
                exchange(&world, &clock, &client, client.get(&format!("/api/notes/{id}")), Op::GetMine, user).await;
            }
            70..=74 => {
                exchange(&world, &clock, &client, client.get("/api/me"), Op::Me, user).await;
            }
            75..=80 if !others.is_empty() => {
                let id = rng.borrow_mut().pick(&others).clone();
                let kind = rng.borrow_mut().below(4);
                let call = match kind {
                    0 => client.patch(&format!("/api/notes/{id}")).json(json!({"title": format!("{tag} stolen {n}")})),
                    1 => client.delete(&format!("/api/notes/{id}")),
                    2 => client.put(&format!("/api/notes/{id}/publication")),
                    _ => client.delete(&format!("/api/notes/{id}/publication")),
                };
                exchange(&world, &clock, &client, call, Op::Tamper, user).await;
            }
            81..=86 => {
                // Signs out; a copy of its cookies (another tab) keeps trying for a while.
                let ghost = fresh_client(region).map(|fresh| copy_of(&fresh, &client));
                let token = client.cookie(SESSION_COOKIE);
                if let Some(token) = &token {
                    world.borrow_mut().maybe_ended.entry(token.clone()).or_insert(clock.now_ms());
                }
                let response =
                    exchange(&world, &clock, &client, client.delete("/api/sessions/current"), Op::SignOut, user).await;
                if let (204, Some(token)) = (response.status(), token) {
                    world.borrow_mut().ended.entry(token).or_insert(clock.now_ms());
                }
                if let Some(ghost) = ghost {
                    let (world, rng, clock) = (world.clone(), rng.clone(), clock.clone());
                    clock.clone().spawn(ghost_task(world, rng, clock, ghost, user));
                }
            }
            87..=88 => change_password(&world, &clock, &client, user).await,
            _ => {
                let feed = own.is_empty() || rng.borrow_mut().chance(40);
                let (call, op) = if feed {
                    (client.get("/api/public/notes?limit=100"), Op::PublicFeed)
                } else {
                    (client.get(&format!("/api/public/notes/{}", rng.borrow_mut().pick(&own))), Op::PublicNote)
                };
                exchange(&world, &clock, &client, call, op, user).await;
            }
        }
    }
}

/// Notes a change to note `id` that answered 503: it may have run, without the invalidation
/// its acknowledgement brings.
fn unacknowledged(world: &Shared<World>, clock: &Clock, id: &str, response: &Response) {
    if response.status() == 503 {
        world.borrow_mut().unacknowledged.insert(id.to_string(), clock.now_ms());
    }
}

/// A copy of a signed-out (or about to be deleted) device's cookies, replaying reads and writes.
async fn ghost_task(world: Shared<World>, rng: Shared<Rng>, clock: Clock, ghost: Client, user: usize) {
    for _ in 0..6 {
        let pause = rng.borrow_mut().below(20_000) as f64;
        clock.sleep(pause).await;
        let n = world.borrow_mut().next();
        let own: Vec<String> = world.borrow().users[user].notes.iter().cloned().collect();
        let kind = rng.borrow_mut().below(4);
        let (call, op) = match kind {
            0 => (ghost.post("/api/notes").json(json!({"title": format!("u{user} ghost {n}")})), Op::Create),
            1 => (ghost.get("/api/me"), Op::Me),
            2 if !own.is_empty() => {
                let id = own[rng.borrow_mut().below(own.len() as u64) as usize].clone();
                (ghost.get(&format!("/api/notes/{id}")), Op::GetMine)
            }
            _ => (ghost.get("/api/notes"), Op::ListMine),
        };
        exchange(&world, &clock, &ghost, call, op, user).await;
    }
}

async fn sign_in(world: &Shared<World>, clock: &Clock, client: &Client, user: usize) {
    let (email, candidates) = {
        let world = world.borrow();
        let state = &world.users[user];
        let mut candidates = vec![state.generation];
        if state.password_uncertain && state.generation + 1 < state.passwords.len() {
            candidates.push(state.generation + 1);
        }
        (state.email.clone(), candidates)
    };
    let replaced = client.cookie(SESSION_COOKIE);
    for generation in candidates {
        let password = world.borrow().users[user].passwords[generation].clone();
        if let Some(replaced) = &replaced {
            world.borrow_mut().maybe_ended.entry(replaced.clone()).or_insert(clock.now_ms());
        }
        let call = client.post("/api/sessions").json(json!({"email": email, "password": password}));
        let response = exchange(world, clock, client, call, Op::SignIn, user).await;
        if response.status() == 200 {
            register_session(world, client, user, generation);
            if let Some(replaced) = replaced {
                world.borrow_mut().ended.entry(replaced).or_insert(clock.now_ms());
            }
            return;
        }
    }
}

async fn change_password(world: &Shared<World>, clock: &Clock, client: &Client, user: usize) {
    let (current, next, generation) = {
        let mut world = world.borrow_mut();
        let n = world.next();
        let state = &mut world.users[user];
        if state.password_uncertain || state.deleted.is_some() || state.passwords.len() > 3 {
            return;
        }
        let next = format!("new passphrase {n} of {}", state.tag);
        state.passwords.push(next.clone());
        state.first_risky_start.get_or_insert(clock.now_ms());
        (state.passwords[state.generation].clone(), next, state.passwords.len() - 1)
    };
    let call = client.put("/api/me/password").json(json!({"current_password": current, "new_password": next}));
    let response = exchange(world, clock, client, call, Op::ChangePassword, user).await;
    let mut state = world.borrow_mut();
    let now = clock.now_ms();
    let user_state = &mut state.users[user];
    match response.status() {
        204 => {
            user_state.generation = generation;
            user_state.changes.push((now, generation));
        }
        // Refused before it wrote (a rate limit, an ended session): the password stays.
        401 | 429 => {
            user_state.passwords.pop();
        }
        _ => user_state.password_uncertain = true,
    }
    drop(state);
    if response.status() == 204 {
        register_session(world, client, user, generation);
    }
}

async fn delete_account(
    world: &Shared<World>,
    clock: &Clock,
    client: &Client,
    user: usize,
    fresh_client: &Rc<dyn Fn(&'static str) -> Option<Client>>,
    rng: &Shared<Rng>,
) {
    // A copy of the cookies (another tab) replays them after the deletion.
    if let Some(fresh) = fresh_client(client.region.unwrap_or("na")) {
        let ghost = copy_of(&fresh, client);
        let (world, rng, clock) = (world.clone(), rng.clone(), clock.clone());
        clock.clone().spawn(ghost_task(world, rng, clock, ghost, user));
    }
    let candidates = {
        let mut world = world.borrow_mut();
        let state = &mut world.users[user];
        state.first_risky_start.get_or_insert(clock.now_ms());
        let mut candidates = vec![state.passwords[state.generation].clone()];
        if state.password_uncertain && state.generation + 1 < state.passwords.len() {
            candidates.push(state.passwords[state.generation + 1].clone());
        }
        candidates
    };
    for password in candidates {
        let call = client.delete("/api/me").json(json!({"password": password}));
        let response = exchange(world, clock, client, call, Op::DeleteAccount, user).await;
        if response.status() == 204 {
            let now = clock.now_ms();
            world.borrow_mut().users[user].deleted.get_or_insert(now);
            return;
        }
        if response.status() == 401 && response.error_code() == "unauthenticated" {
            // Another device's password change ended this session: sign in again.
            client.forget_cookie(SESSION_COOKIE);
            return;
        }
    }
}

/// What the schedule can break, and how it puts it back.
#[derive(Clone)]
struct Breakables {
    notes_binding_of_accounts: Rc<Worker>,
    notes_binding_of_entry: Rc<Worker>,
    accounts: Rc<Worker>,
    entry: Rc<Worker>,
}

/// The longest one-way delay the schedule adds to the notes primary: a write the worker gave
/// up on may still commit that long after it was sent.
const MAX_ONE_WAY_MS: f64 = 6_000.0;

fn random_fault(stack: &Stack, rng: &mut Rng, breakables: &Breakables, world: &Shared<World>) {
    let now = stack.now_ms();
    match rng.below(16) {
        0 => {
            let fault = match rng.below(4) {
                0 => EndpointFault { down: true, ..EndpointFault::default() },
                1 => EndpointFault { failing: true, ..EndpointFault::default() },
                2 => EndpointFault {
                    extra_latency_ms: rng.below(MAX_ONE_WAY_MS as u64) as f64,
                    ..EndpointFault::default()
                },
                _ => EndpointFault::default(),
            };
            stack.net.set_fault("notes", None, fault);
        }
        1 | 2 => {
            let database = *rng.pick(&["notes", "accounts"]);
            let region = *rng.pick(&["eu", "ap"]);
            let fault = match rng.below(4) {
                0 => EndpointFault { down: true, ..EndpointFault::default() },
                1 => EndpointFault { failing: true, ..EndpointFault::default() },
                2 => EndpointFault { extra_latency_ms: rng.below(3_000) as f64, ..EndpointFault::default() },
                _ => EndpointFault::default(),
            };
            stack.net.set_fault(database, Some(region), fault);
        }
        3 | 4 => {
            let database = *rng.pick(&["notes", "accounts"]);
            let region = *rng.pick(&["eu", "ap"]);
            let lag = rng.below(3_001) as f64;
            stack.net.cluster(database, |cluster| cluster.set_lag(region, lag, now)).unwrap();
            world.borrow_mut().lags.push((now, database, region, lag));
        }
        5 => {
            let slow = match rng.below(3) {
                0 => format!("slow:{}", rng.below(30_000)),
                _ => String::new(),
            };
            breakables.notes_binding_of_accounts.set_var("EDGESTACK_INJECT_FAULT", &slow);
        }
        6 => {
            if rng.chance(50) {
                breakables.accounts.bindings.borrow_mut().remove("NOTES");
            } else {
                breakables.accounts.bindings.borrow_mut().insert("NOTES", breakables.notes_binding_of_accounts.clone());
            }
        }
        7 => {
            if rng.chance(30) {
                breakables.entry.bindings.borrow_mut().remove("NOTES");
            } else {
                breakables.entry.bindings.borrow_mut().insert("NOTES", breakables.notes_binding_of_entry.clone());
            }
        }
        _ => heal(stack, breakables),
    }
}

fn heal(stack: &Stack, breakables: &Breakables) {
    for database in ["notes", "accounts"] {
        for replica in [None, Some("eu"), Some("ap")] {
            stack.net.set_fault(database, replica, EndpointFault::default());
        }
    }
    breakables.notes_binding_of_accounts.set_var("EDGESTACK_INJECT_FAULT", "");
    breakables.accounts.bindings.borrow_mut().insert("NOTES", breakables.notes_binding_of_accounts.clone());
    breakables.entry.bindings.borrow_mut().insert("NOTES", breakables.notes_binding_of_entry.clone());
}

/// Notes the schedule's direct look at the accounts primary: deletions that went through
/// (also those answered 503) and deletions `notes` acknowledged (the outbox row gone).
fn observe_deletions(stack: &Stack, world: &Shared<World>) {
    let now = stack.now_ms();
    let mut world = world.borrow_mut();
    for user in world.users.iter_mut().filter(|user| user.delivered.is_none() && user.first_risky_start.is_some()) {
        let exists = !stack.query("accounts", &format!("SELECT 1 FROM users WHERE id = '{}'", user.id)).is_empty();
        if exists {
            continue;
        }
        user.deleted.get_or_insert(now);
        let pending = stack.query("accounts", &format!("SELECT 1 FROM deletion_outbox WHERE user_id = '{}'", user.id));
        if pending.is_empty() {
            user.delivered = Some(now);
        }
    }
}

/// How far behind the database that answered `ex` could have been from `from` until it
/// finished: the endpoint its `Server-Timing` names last (a read passes over a failed primary
/// to a replica, and from `ap` over its own replica to `eu`: ARCHITECTURE.md, read plan), or,
/// when it names none (a cache hit), any replica.
fn lag_of_answer(world: &World, database: &str, ex: &Exchange, from: f64) -> f64 {
    let answered = ex.timing.split(',').filter_map(|entry| entry.trim().strip_prefix("db;desc=")).next_back();
    match answered.map(|target| target.split(';').next().unwrap_or_default()) {
        Some("primary") => 0.0,
        Some(replica) => world.max_lag(database, replica.trim_start_matches("replica-"), from, ex.finished),
        None => any_replica_lag(world, database, from, ex.finished),
    }
}

/// The highest lag of any replica of `database` in `[from, to]`.
fn any_replica_lag(world: &World, database: &str, from: f64, to: f64) -> f64 {
    ["eu", "ap"].into_iter().map(|region| world.max_lag(database, region, from, to)).fold(0.0, f64::max)
}

/// When token `token` ended, as far as the run knows for sure.
fn end_of(world: &World, token: &str) -> Option<f64> {
    let info = world.sessions.get(token)?;
    let user = &world.users[info.user];
    let by_change = user.changes.iter().filter(|(_, generation)| *generation > info.generation).map(|(at, _)| *at);
    [world.ended.get(token).copied(), user.deleted].into_iter().flatten().chain(by_change).min_by(f64::total_cmp)
}

/// From when something may have ended `token` (sent, not necessarily acknowledged).
fn may_have_ended_from(world: &World, token: &str) -> Option<f64> {
    let info = world.sessions.get(token)?;
    let user = &world.users[info.user];
    [world.maybe_ended.get(token).copied(), user.first_risky_start, end_of(world, token)]
        .into_iter()
        .flatten()
        .min_by(f64::total_cmp)
}

/// docs/services.md's bounds, checked against every recorded exchange.
fn check_bounds(world: &World) -> Vec<String> {
    let mut violations = Vec::new();
    for ex in &world.exchanges {
        let what = || {
            format!(
                "{:?} by u{} ({} in {}) at {:.0}–{:.0} ms answered {} {}",
                ex.op, ex.user, ex.device, ex.region, ex.started, ex.finished, ex.status, ex.code
            ) + &format!(" [{}]", ex.timing)
        };
        // Public reads: a deleted account's notes are gone once `notes` acknowledged, within
        // the reader's notes replica lag.
        for id in &ex.seen {
            let Some(owner) = world.users.iter().find(|user| user.notes.contains(id)) else { continue };
            if let Some(delivered) = owner.delivered {
                // docs/edge-data-path.md: a change that committed without an answer leaves no
                // floor; the copies cached before it live out their lifetime (60 s), and the
                // account's deletion invalidates only the notes it finds.
                let lost_answer = world.unacknowledged.get(id).map_or(0.0, |at| {
                    at + MAX_ONE_WAY_MS + f64::from(edgestack_core::cache::KV_TTL_SECONDS) * 1000.0 - delivered
                });
                let allowance = lag_of_answer(world, "notes", ex, delivered).max(lost_answer);
                if ex.started > delivered + allowance {
                    violations.push(format!(
                        "{}: showed {id} of {}, deleted and delivered at {delivered:.0} ms (lag {allowance:.0})",
                        what(),
                        owner.tag
                    ));
                }
            }
        }
        let Some(token) = &ex.token else { continue };
        let Some(info) = world.sessions.get(token) else { continue };
        let user = &world.users[info.user];
        let succeeded = (200..300).contains(&ex.status);
        if succeeded && let Some(end) = end_of(world, token) {
            // The session checks of notes requests (the identity refresh) do not say which
            // accounts replica answered: any of them may have.
            let accounts_lag = any_replica_lag(world, "accounts", end, ex.finished);
            let mut deadline = if ex.op.is_checked_on_the_primary() {
                end
            } else if ex.op.is_notes_read() {
                end + accounts_lag + IDENTITY_TTL_MS as f64
            } else if ex.op.is_notes_write() {
                end + accounts_lag
            } else if ex.op == Op::Me {
                end + lag_of_answer(world, "accounts", ex, end)
            } else {
                f64::INFINITY
            };
            if let Some(delivered) = user.delivered.filter(|_| ex.op.is_notes_read() || ex.op.is_notes_write()) {
                let notes_lag = if ex.op.is_notes_write() { 0.0 } else { lag_of_answer(world, "notes", ex, delivered) };
                deadline = deadline.min(delivered + notes_lag);
            }
            if ex.started > deadline {
                violations.push(format!(
                    "{}: the session ended at {end:.0} ms (deleted {:?}, delivered {:?}); allowed until {deadline:.0} ms",
                    what(),
                    user.deleted,
                    user.delivered
                ));
            }
        }
        // A session nothing could have ended yet is never told it is signed out.
        if ex.status == 401
            && ex.code == "unauthenticated"
            && may_have_ended_from(world, token).is_none_or(|from| ex.finished < from)
        {
            violations.push(format!("{}: a live session was refused", what()));
        }
    }
    violations
}

/// One seeded run; returns the violations and how many exchanges it made.
fn random_run(seed: u64) -> (Vec<String>, usize) {
    let options = Options { shape: Shape::Services, kv_propagation_ms: 2_000.0, seed, ..Options::default() };
    let mut stack = Stack::new(options);
    let rng = Rc::new(RefCell::new(Rng::new(seed)));
    let world: Shared<World> = Rc::default();
    let clock = stack.rt.clock();
    stack.replicate_during_reads("notes", "ap");
    let regions: [&'static str; 3] = ["na", "eu", "ap"];
    let users = 3 + rng.borrow_mut().below(2) as usize;
    let mut devices = Vec::new();
    for user in 0..users {
        let tag = format!("u{user}");
        let email = format!("{tag}@example.com");
        let password = format!("first passphrase of {tag}");
        let first = stack.client_in_region(regions[rng.borrow_mut().below(3) as usize]);
        let call = first.post("/api/accounts").json(json!({"email": email, "password": password}));
        let response = stack.send(call.send());
        assert_eq!(response.status(), 201, "{}", response.text());
        let id = response.json()["user"]["id"].as_str().unwrap().to_string();
        world.borrow_mut().users.push(UserState {
            tag,
            email: email.clone(),
            id,
            passwords: vec![password.clone()],
            heavy: user == 0,
            ..UserState::default()
        });
        register_session(&world, &first, user, 0);
        let deletes = rng.borrow_mut().chance(60);
        let ops = 14 + rng.borrow_mut().below(10) as usize;
        let deletes_at = deletes.then(|| ops / 2 + rng.borrow_mut().below((ops / 2) as u64) as usize);
        devices.push((Device { user, client: first, deletes_at }, ops));
        let others = 1 + rng.borrow_mut().below(2);
        for _ in 0..others {
            let other = stack.client_in_region(regions[rng.borrow_mut().below(3) as usize]);
            let call = other.post("/api/sessions").json(json!({"email": email, "password": password}));
            assert_eq!(stack.send(call.send()).status(), 200);
            register_session(&world, &other, user, 0);
            devices.push((Device { user, client: other, deletes_at: None }, ops));
        }
    }
    // The heavy user holds all but about three full notes' worth of its quota (as private
    // notes, off the feed), so its concurrent big creates and edits meet the limit.
    let heavy_id = world.borrow().users[0].id.clone();
    stack.query(
        "notes",
        &format!(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 62) \
             INSERT INTO notes (id, owner_id, title, body, published_at, created_at, updated_at) \
             SELECT 'prefill-' || i, '{heavy_id}', 'u0 prefill ' || i, printf('%.*c', 80000, 'x'), NULL, i, i FROM n"
        ),
    );
    stack.replicate();

    let breakables = Breakables {
        notes_binding_of_accounts: stack.service("notes"),
        notes_binding_of_entry: stack.service("notes"),
        accounts: stack.service("accounts"),
        entry: stack.front(),
    };
    // New browsers for the tabs that copy a device's cookies (made here: tasks cannot reach
    // the stack).
    let spare: Shared<Vec<Client>> = Rc::new(RefCell::new((0..40).map(|_| stack.client_in_region("na")).collect()));
    let fresh_client: Rc<dyn Fn(&'static str) -> Option<Client>> = Rc::new(move |region| {
        let mut client = spare.borrow_mut().pop()?;
        client.region = Some(region);
        Some(client)
    });
    let tasks: Vec<_> = devices
        .into_iter()
        .map(|(device, ops)| {
            let task = device_task(world.clone(), rng.clone(), clock.clone(), device, fresh_client.clone(), ops);
            stack.rt.spawn(task)
        })
        .collect();

    // The schedule: every 0–400 ms, maybe a fault or a repair, a lag change, a cron run, an
    // anonymous read; and a look at the accounts primary for deletions.
    while tasks.iter().any(|task| !task.is_done()) {
        let gap = rng.borrow_mut().below(400) as f64;
        stack.advance(gap);
        observe_deletions(&stack, &world);
        if rng.borrow_mut().chance(15) {
            random_fault(&stack, &mut rng.borrow_mut(), &breakables, &world);
        }
        if rng.borrow_mut().chance(8) {
            let accounts = stack.service("accounts");
            let now = stack.now_ms() as i64;
            stack.rt.spawn(async move {
                let config = accounts.config().unwrap();
                let _ = deliver_pending_deletions(&*accounts, &config, now).await;
            });
        }
        if rng.borrow_mut().chance(40) {
            let reader = stack.client_in_region(regions[rng.borrow_mut().below(3) as usize]);
            let known: Vec<String> = world.borrow().users.iter().flat_map(|user| user.notes.iter().cloned()).collect();
            let feed = known.is_empty() || rng.borrow_mut().chance(40);
            let (call, op) = if feed {
                (reader.get("/api/public/notes?limit=100"), Op::PublicFeed)
            } else {
                (reader.get(&format!("/api/public/notes/{}", rng.borrow_mut().pick(&known))), Op::PublicNote)
            };
            let (world, clock) = (world.clone(), clock.clone());
            stack.rt.spawn(async move {
                exchange(&world, &clock, &reader, call, op, usize::MAX).await;
            });
        }
    }
    // Everything mended: the cron delivers what is left, and every bound has passed.
    heal(&stack, &breakables);
    stack.advance(30_000.0);
    stack.rt.settle();
    for _ in 0..3 {
        stack.run_deletion_cron();
        stack.advance(1_000.0);
    }
    observe_deletions(&stack, &world);
    stack.replicate();
    stack.advance(IDENTITY_TTL_MS as f64 + 5_000.0);
    stack.replicate();

    let mut violations = std::mem::take(&mut world.borrow_mut().violations);
    violations.extend(check_bounds(&world.borrow()));
    violations.extend(check_final_state(&mut stack, &world));
    let exchanges = world.borrow().exchanges.len();
    (violations, exchanges)
}

/// After the run: deleted accounts left nothing, live ones lost nothing, quotas held.
fn check_final_state(stack: &mut Stack, world: &Shared<World>) -> Vec<String> {
    let mut violations = Vec::new();
    let outbox = stack.query_text("accounts", "SELECT user_id FROM deletion_outbox");
    if !outbox.is_empty() {
        violations.push(format!("the outbox still holds {outbox:?} with everything mended"));
    }
    let world = world.borrow();
    let owners: BTreeMap<String, usize> =
        world.users.iter().enumerate().map(|(n, user)| (user.id.clone(), n)).collect();
    for row in stack.query("notes", "SELECT id, owner_id, title FROM notes") {
        let [Some(id), Some(owner), Some(title)] = [&row[0], &row[1], &row[2]] else { continue };
        match owners.get(owner) {
            None => violations.push(format!("note {id} ({title}) belongs to no user of the run")),
            Some(&n) => {
                let user = &world.users[n];
                if user.deleted.is_some() {
                    violations.push(format!("note {id} ({title}) of deleted {} survived", user.tag));
                }
                if !title.starts_with(&format!("{} ", user.tag)) {
                    violations.push(format!("note {id} of {} holds another user's title {title:?}", user.tag));
                }
            }
        }
    }
    for user in &world.users {
        let users = stack.query("accounts", &format!("SELECT 1 FROM users WHERE id = '{}'", user.id));
        let sessions =
            stack.query_text("accounts", &format!("SELECT count(*) FROM sessions WHERE user_id = '{}'", user.id));
        if user.deleted.is_some() {
            if !users.is_empty() || sessions != ["0"] {
                violations.push(format!("deleted {} still has its row or {sessions:?} sessions", user.tag));
            }
            let tombstone =
                stack.query("notes", &format!("SELECT 1 FROM deleted_owners WHERE user_id = '{}'", user.id));
            if tombstone.is_empty() {
                violations.push(format!("deleted {} has no tombstone in notes", user.tag));
            }
            continue;
        }
        if users.is_empty() {
            // Deleted by a deletion answered 503 and not seen before the end: fine if asked for.
            if user.first_risky_start.is_none() {
                violations.push(format!("{} was deleted though nobody asked", user.tag));
            }
            continue;
        }
        for id in user.notes.difference(&user.delete_sent) {
            let kept = stack.query("notes", &format!("SELECT owner_id FROM notes WHERE id = '{id}'"));
            if kept.len() != 1 || kept[0][0].as_deref() != Some(user.id.as_str()) {
                violations.push(format!("{}'s note {id}, never deleted, is gone or moved: {kept:?}", user.tag));
            }
        }
    }
    // Quotas: the usage rows agree with the notes, and no owner is past either limit.
    let usage = stack.query(
        "notes",
        "SELECT n.owner_id, count(*), sum(length(CAST(title AS BLOB)) + length(CAST(body AS BLOB))), \
         u.notes, u.bytes FROM notes n LEFT JOIN note_usage u ON u.owner_id = n.owner_id GROUP BY n.owner_id",
    );
    for row in usage {
        let number = |n: usize| row[n].as_deref().and_then(|v| v.parse::<i64>().ok());
        let (count, bytes) = (number(1).unwrap_or(0), number(2).unwrap_or(0));
        if (Some(count), Some(bytes)) != (number(3), number(4)) {
            violations.push(format!("note_usage disagrees with the notes: {row:?}"));
        }
        if count > MAX_NOTES || bytes > MAX_BYTES {
            violations.push(format!("{:?} is past its quota: {count} notes, {bytes} bytes", row[0]));
        }
    }
    let stray =
        stack.query_text("notes", "SELECT owner_id FROM note_usage WHERE owner_id NOT IN (SELECT owner_id FROM notes)");
    if !stray.is_empty() {
        violations.push(format!("usage rows without notes: {stray:?}"));
    }
    violations
}

#[test]
fn random_users_devices_faults_and_deletions_stay_within_the_documented_bounds() {
    let started = std::time::Instant::now();
    let (mut exchanges, mut violations) = (0, Vec::new());
    for seed in seeds(3) {
        let (found, made) = random_run(seed);
        exchanges += made;
        violations.extend(found.into_iter().map(|violation| format!("seed {seed}: {violation}")));
    }
    println!(
        "services under races: {exchanges} exchanges, {} violations, {:.1} s",
        violations.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(exchanges >= 150, "enough interleavings: {exchanges}");
    assert!(violations.is_empty(), "{} violations:\n{}", violations.len(), violations.join("\n"));
}
