//! What tests reach beside the front door: rows read straight from a database's primary (not
//! through a Worker), one service called as its binding would call it, the accounts Worker's
//! cron, requests without the browser's defaults, and both deployment shapes in turn.

use std::rc::Rc;

use edgestack_core::app::deliver_pending_deletions;
use serde_json::{Value, json};

use super::{Call, Client, Options, Response, Shape, Stack, Worker, next_client_address};

/// The password `signed_up` and `signed_up_user` use.
pub const PASSWORD: &str = "correct horse battery";

/// Runs `test` on a fresh stack of each shape: the single Worker, then entry + accounts + notes.
/// The shape is printed first, so a failure's captured output names it.
pub fn each_shape(mut test: impl FnMut(Stack)) {
    for shape in [Shape::Monolith, Shape::Services] {
        println!("--- shape: {shape:?}");
        test(Stack::new(Options { shape, ..Options::default() }));
    }
}

impl Stack {
    /// Every row of `sql` on database `database`'s primary, each value as its JSON text or
    /// `null`. Read from the cluster itself, so injected network faults do not apply; it counts
    /// as one pipeline on the primary (take pipeline counts before calling it).
    pub fn query(&self, database: &str, sql: &str) -> Vec<Vec<Option<String>>> {
        let body = json!({"requests": [{"type": "execute", "stmt": {"sql": sql}}, {"type": "close"}]});
        let body = serde_json::to_vec(&body).unwrap();
        let now = self.now_ms();
        let answer = self.net.cluster(database, |cluster| cluster.pipeline(None, &body, now));
        let answer: Value = serde_json::from_slice(&answer.unwrap_or_else(|e| panic!("{sql}: {e}"))).unwrap();
        let result = &answer["results"][0];
        assert_eq!(result["type"], "ok", "{sql}: {result}");
        let rows = result["response"]["result"]["rows"].as_array().cloned().unwrap_or_default();
        rows.iter()
            .map(|row| {
                row.as_array()
                    .unwrap()
                    .iter()
                    .map(|value| match &value["value"] {
                        Value::String(text) => Some(text.clone()),
                        Value::Null => None,
                        other => Some(other.to_string()),
                    })
                    .collect()
            })
            .collect()
    }

    /// The first column of every row of `sql` on `database`'s primary (`NULL` as "NULL").
    pub fn query_text(&self, database: &str, sql: &str) -> Vec<String> {
        self.query(database, sql)
            .into_iter()
            .map(|row| row.into_iter().next().flatten().unwrap_or_else(|| "NULL".to_string()))
            .collect()
    }

    /// Every table, index and trigger of `database`, to prove nothing changed the schema.
    pub fn schema(&self, database: &str) -> Vec<String> {
        self.query_text(
            database,
            "SELECT type || ' ' || name || ' ' || coalesce(sql, '') FROM sqlite_schema ORDER BY name",
        )
    }

    /// The databases of this stack's shape.
    pub fn databases(&self) -> &'static [&'static str] {
        match self.options.shape {
            Shape::Monolith => &["main"],
            Shape::Services => &["accounts", "notes"],
        }
    }

    /// Lets a little time pass and has every replica apply what its lag allows now. A cluster's
    /// replicas catch up only when it answers its next pipeline, with the lag they have then, so
    /// a test that raises a lag next calls this first, or the replica misses the last writes too.
    pub fn replicate(&mut self) {
        self.advance(10.0);
        let now = self.now_ms();
        for database in self.databases() {
            self.net.cluster(database, |cluster| cluster.catch_up(now)).unwrap();
        }
    }

    /// Pipelines answered so far by `database`'s primary (`None`) or replica `Some(region)`.
    pub fn pipelines(&self, database: &str, replica: Option<&str>) -> u64 {
        self.net.cluster(database, |cluster| cluster.pipelines(replica))
    }

    /// The replication index of `database`'s primary (`None`) or replica `Some(region)`.
    pub fn replication_index(&self, database: &str, replica: Option<&str>) -> u64 {
        self.net.cluster(database, |cluster| cluster.index(replica)).unwrap_or_else(|| panic!("no replica {replica:?}"))
    }

    /// Service `name` (`accounts` or `notes`) of the first location; only the services shape has any.
    pub fn service(&self, name: &str) -> Rc<Worker> {
        let location = &self.locations[self.options.locations[0]];
        location.services.get(name).cloned().unwrap_or_else(|| panic!("no {name} service in this shape"))
    }

    /// The first location's front Worker: the single Worker or the entry.
    pub fn front(&self) -> Rc<Worker> {
        self.locations[self.options.locations[0]].front.clone()
    }

    /// A browser of the first location naming `region`, whose requests reach a new isolate of
    /// the front Worker there (its vars, the location's KV): one that has seen nothing the
    /// others have — no memory tier, no floor, no primary record.
    pub fn client_of_another_isolate(&self, region: &'static str) -> Client {
        let front = self.front();
        let vars = front.vars.borrow().clone();
        let location = self.options.locations[0];
        let isolate = Rc::new(Worker::new(self.net.clone(), location, vars, self.kv.clone()));
        Client { region: Some(region), address: next_client_address(), ..self.client_of(isolate) }
    }

    /// A client whose requests reach `worker` itself, as another Worker's binding would.
    pub fn client_of(&self, worker: Rc<Worker>) -> Client {
        Client { front: worker, cookies: Default::default(), region: None, address: String::new() }
    }

    /// One run of the accounts Worker's cron (`scheduled`): `(delivered, still pending)`.
    pub fn run_deletion_cron(&mut self) -> (usize, usize) {
        let report = self.run_deletion_cron_report();
        (report.delivered, report.failed)
    }

    /// One run of the accounts Worker's cron, its whole report (rechecks included).
    pub fn run_deletion_cron_report(&mut self) -> edgestack_core::app::DeliveryReport {
        let accounts = self.service("accounts");
        let now = self.now_ms() as i64;
        let report = self.rt.run(async move {
            let config = accounts.config().unwrap();
            deliver_pending_deletions(&*accounts, &config, now).await
        });
        report.unwrap_or_else(|e| panic!("the cron could not read the outbox: {e}"))
    }

    /// Lines the Workers logged so far that contain `text`.
    pub fn logs_containing(&self, text: &str) -> Vec<String> {
        self.net.logs.borrow().iter().filter(|line| line.contains(text)).cloned().collect()
    }
}

impl Client {
    /// A request with none of the browser's defaults (no CSRF proof header), only the cookie
    /// jar and the region header.
    pub fn bare(&self, method: &'static str, path: &str) -> Call {
        Call {
            client: self.clone(),
            method,
            path: path.to_string(),
            headers: Vec::new(),
            body: Vec::new(),
            upload_ms: 0.0,
        }
    }

    /// The signed-in user's id (`GET /api/me`).
    pub fn user_id(&self, stack: &mut Stack) -> String {
        let me = stack.send(self.get("/api/me").send());
        assert_eq!(me.status(), 200, "{}", me.text());
        me.json()["user"]["id"].as_str().unwrap().to_string()
    }

    /// Creates a note (`{"title", "body"}`) and returns its id.
    pub fn create_note(&self, stack: &mut Stack, title: &str, body: &str) -> String {
        let created = stack.send(self.post("/api/notes").json(json!({"title": title, "body": body})).send());
        assert_eq!(created.status(), 201, "{}", created.text());
        created.json()["note"]["id"].as_str().unwrap().to_string()
    }

    /// Creates a note and publishes it; returns its id.
    pub fn publish_note(&self, stack: &mut Stack, title: &str, body: &str) -> String {
        let id = self.create_note(stack, title, body);
        let published = stack.send(self.put(&format!("/api/notes/{id}/publication")).send());
        assert_eq!(published.status(), 200, "{}", published.text());
        id
    }
}

/// A new browser in the first location, signed up as `email` with [`PASSWORD`].
pub fn signed_up_user(stack: &mut Stack, email: &str) -> Client {
    let client = stack.client(stack.options.locations[0]);
    super::signed_up(stack, &client, email);
    client
}

/// A stack of `shape` with the primary near `na`, a user signed up there as `email`, and the
/// same session in a second browser at `ap` (far from the primary).
pub fn one_user_near_and_far(shape: Shape, email: &str) -> (Stack, Client, Client) {
    let mut stack = Stack::new(Options { shape, locations: vec!["na", "ap"], ..Options::default() });
    let near = stack.client("na");
    super::signed_up(&mut stack, &near, email);
    let far = stack.client("ap");
    let session = edgestack_core::accounts::session::COOKIE_NAME;
    far.set_cookie(session, &near.cookie(session).unwrap());
    (stack, near, far)
}

impl Stack {
    /// Sends `first`, then `second` `after_ms` later while `first` is still under way, and
    /// returns both answers (`first`'s, `second`'s): two clients acting at once. From a far
    /// location `first` reaches the primary after `second` does, though its clock is earlier.
    pub fn overlapping(&mut self, first: Call, after_ms: f64, second: Call) -> (Response, Response) {
        let first = self.rt.spawn(first.send());
        self.advance(after_ms);
        let second = self.send(second.send());
        (self.rt.wait(first), second)
    }
}
