//! Issue #11: no cache tier serves what the system has already changed beyond the reader's
//! replica lag, whatever fills it afterwards.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use serde_json::json;

use crate::support::schedule::{Rng, seeds};
use crate::support::{Client, EndpointFault, Options, Response, Shape, Stack, each_shape, kv, signed_up};

/// A published note by a new author; waits until every replica has it.
fn published_note(stack: &mut Stack, author: &Client) -> String {
    let created = stack.send(author.post("/api/notes").json(json!({"title": "hello", "body": "world"})).send());
    assert_eq!(created.status(), 201, "{}", created.text());
    let id = created.json()["note"]["id"].as_str().unwrap().to_string();
    let published = stack.send(author.put(&format!("/api/notes/{id}/publication")).send());
    assert_eq!(published.status(), 200, "{}", published.text());
    stack.advance(1_000.0);
    id
}

#[test]
fn an_unpublished_note_is_not_refilled_from_a_lagging_replica() {
    let mut stack = Stack::monolith();
    let author = stack.client_in_region("na");
    signed_up(&mut stack, &author, "author@example.com");
    let id = published_note(&mut stack, &author);
    let eu = stack.client_in_region("eu");
    let na = stack.client_in_region("na");
    let path = format!("/api/public/notes/{id}");
    // Warm both tiers from the caught-up eu replica.
    assert_eq!(stack.send(eu.get(&path).send()).status(), 200);

    stack.set_lag(stack.notes_db(), "eu", 4_000.0);
    let unpublished = stack.send(author.delete(&format!("/api/notes/{id}/publication")).send());
    assert_eq!(unpublished.status(), 200, "{}", unpublished.text());
    // Allowed: the eu replica is 4 s behind.
    let during_lag = stack.send(eu.get(&path).send());
    assert_eq!(during_lag.status(), 200, "{}", during_lag.text());

    stack.advance(6_500.0);
    for (client, region) in [(&eu, "eu"), (&na, "na")] {
        let after = stack.send(client.get(&path).send());
        assert_eq!(after.status(), 404, "{region} after the lag: {} {:?}", after.text(), after.header("server-timing"));
        let feed = stack.send(client.get("/api/public/notes").send());
        let listed = feed.json()["notes"].as_array().unwrap().iter().any(|note| note["id"] == id.as_str());
        assert!(!listed, "{region}: the feed still lists the unpublished note ({})", feed.cache_status());
    }
}

/// A review found that an answer's replication index can name a change its rows do not show:
/// sqld (and devdb) label an answer with the index when it ended, so a replica that applied the
/// unpublish while it read the note answered the published note at the unpublish's index. That
/// passed the floor the unpublish left, and the cache served the unpublished note for its TTL.
/// Such an answer may be shown (the replica was behind when it read), never kept.
#[test]
fn a_read_that_replication_overtakes_is_never_kept_in_the_cache() {
    each_shape(|mut stack| {
        let author = stack.client_in_region("na");
        signed_up(&mut stack, &author, "author@example.com");
        let id = published_note(&mut stack, &author);
        let eu = stack.client_in_region("eu");
        let path = format!("/api/public/notes/{id}");
        stack.replicate();
        stack.set_lag(stack.notes_db(), "eu", 60_000.0);
        let unpublished = stack.send(author.delete(&format!("/api/notes/{id}/publication")).send());
        assert_eq!(unpublished.status(), 200, "{}", unpublished.text());
        stack.replicate_during_reads(stack.notes_db(), "eu");

        let overtaken = stack.send(eu.get(&path).send());
        assert_eq!(overtaken.status(), 200, "the replica read before the unpublish landed: {}", overtaken.text());
        for again in 0..3 {
            let read = stack.send(eu.get(&path).send());
            assert_eq!(
                read.status(),
                404,
                "read {again} after the replica applied the unpublish: {} ({})",
                read.text(),
                read.cache_status()
            );
        }
    });
}

/// The same race against read-your-writes: the author's edit lands on the replica while it
/// reads the note for the author, whose token the answer's index meets. The author must still
/// see the edit (from the primary), never the replica's older rows.
#[test]
fn an_authors_read_that_replication_overtakes_still_shows_the_authors_write() {
    each_shape(|mut stack| {
        let author = stack.client_in_region("eu");
        signed_up(&mut stack, &author, "author@example.com");
        let created = stack.send(author.post("/api/notes").json(json!({"title": "first", "body": "b"})).send());
        assert_eq!(created.status(), 201, "{}", created.text());
        let id = created.json()["note"]["id"].as_str().unwrap().to_string();
        stack.advance(1_000.0);
        stack.replicate();
        stack.set_lag(stack.notes_db(), "eu", 60_000.0);
        let edited = stack.send(author.patch(&format!("/api/notes/{id}")).json(json!({"title": "second"})).send());
        assert_eq!(edited.status(), 200, "{}", edited.text());
        stack.replicate_during_reads(stack.notes_db(), "eu");

        let read = stack.send(author.get(&format!("/api/notes/{id}")).send());
        assert_eq!(read.status(), 200, "{}", read.text());
        assert_eq!(
            read.json()["note"]["title"],
            "second",
            "the author's own edit ({:?})",
            read.header("server-timing")
        );
    });
}

/// Two misses of one note in one isolate, under way at once: the one from a fresh source (the
/// primary) puts the edited note in the memory tier and is served; the other, from a replica
/// that has not applied the edit, ends later. It replaced the newer entry, and the isolate's
/// readers saw the edit undone for the memory tier's 5 s (review finding: within the bound
/// for a location the floor has not reached, yet a reader saw the note go back). An older read
/// never replaces a newer entry; it is served to its own reader, as one below a floor is.
#[test]
fn a_read_that_ends_after_a_newer_one_does_not_replace_its_entry() {
    for shape in [Shape::Monolith, Shape::Services] {
        println!("--- shape: {shape:?}");
        let mut stack = Stack::new(Options { shape, locations: vec!["na", "eu"], ..Options::default() });
        let author = stack.client("na");
        signed_up(&mut stack, &author, "author@example.com");
        let id = published_note(&mut stack, &author);
        stack.replicate();
        let path = format!("/api/public/notes/{id}");
        // Far from the change (KV has not brought its floor here): one reader near the eu
        // replica, one whose reads go to the primary.
        let (replica_reader, primary_reader) = (stack.client("eu").in_region("eu"), stack.client("eu").in_region("na"));
        stack.set_lag(stack.notes_db(), "eu", 10_000.0);
        let edited = stack.send(author.patch(&format!("/api/notes/{id}")).json(json!({"title": "edited"})).send());
        assert_eq!(edited.status(), 200, "{}", edited.text());
        let slow = EndpointFault { extra_latency_ms: 120.0, ..EndpointFault::default() };
        stack.net.set_fault(stack.notes_db(), Some("eu"), slow);

        let older = stack.rt.spawn(replica_reader.get(&path).send());
        stack.advance(5.0);
        let newer = stack.send(primary_reader.get(&path).send());
        let older = stack.rt.wait(older);
        assert_eq!(
            (newer.json()["note"]["title"].as_str(), newer.db_targets()),
            (Some("edited"), vec!["primary".into()])
        );
        assert_eq!(older.json()["note"]["title"], "hello", "the lagging replica's own answer, served to its reader");
        for _ in 0..4 {
            stack.advance(1_000.0);
            let again = stack.send(primary_reader.get(&path).send());
            assert_eq!(again.json()["note"]["title"], "edited", "the edit went back ({})", again.cache_status());
        }
    }
}

/// A note can be born public (`"published": true` on create): every cached feed page must
/// then list it as soon as one published later would be (docs/edge-data-path.md). A report
/// found a create that left cached pages stale until they expired.
#[test]
fn a_note_created_published_reaches_every_cached_feed_page() {
    let mut stack = Stack::monolith();
    let author = stack.client_in_region("na");
    signed_up(&mut stack, &author, "author@example.com");
    let readers = [stack.client_in_region("na"), stack.client_in_region("eu")];
    let pages = ["/api/public/notes", "/api/public/notes?limit=5"];
    for reader in &readers {
        for page in pages {
            assert_eq!(stack.send(reader.get(page).send()).status(), 200);
            let again = stack.send(reader.get(page).send());
            assert!(
                again.cache_status().starts_with("hit"),
                "{page} is cached before the create: {}",
                again.cache_status()
            );
        }
    }
    let body = json!({"title": "born public", "body": "b", "published": true});
    let created = stack.send(author.post("/api/notes").json(body).send());
    assert_eq!(created.status(), 201, "{}", created.text());
    let id = created.json()["note"]["id"].as_str().unwrap().to_string();
    stack.advance(100.0);
    for (reader, region) in readers.iter().zip(["na", "eu"]) {
        for page in pages {
            let feed = stack.send(reader.get(page).send());
            let listed = feed.json()["notes"].as_array().unwrap().iter().any(|note| note["id"] == id.as_str());
            assert!(listed, "{region} {page} does not list the new public note ({})", feed.cache_status());
        }
    }
}

/// The public state of one note as anonymous readers must see it: its title while published.
type PublicState = Option<String>;

/// What the stack acknowledged, per note, in order: `(ack time, public state from then on)`.
#[derive(Default)]
struct History {
    notes: BTreeMap<String, Vec<(f64, PublicState)>>,
    /// `(time, region, lag)` each time a replica's lag changed.
    lags: Vec<(f64, &'static str, f64)>,
}

impl History {
    /// The highest lag replica `region` had at any time in `[from, to]`.
    fn max_lag(&self, region: &str, from: f64, to: f64) -> f64 {
        let before = self.lags.iter().rfind(|(at, r, _)| *r == region && *at <= from).map_or(0.0, |l| l.2);
        let during = self.lags.iter().filter(|(at, r, _)| *r == region && *at > from && *at <= to).map(|l| l.2);
        during.fold(before, f64::max)
    }
}

/// One anonymous or author read and what it showed for each note it covered.
struct Read {
    started: f64,
    region: &'static str,
    location: &'static str,
    /// The author's own read: it must reflect every write the author had acknowledged.
    by_author: bool,
    seen: BTreeMap<String, PublicState>,
}

/// How long after an acknowledgement a reader may still see the old state (docs/edge-data-path.md):
/// its replica's lag in the location that made the change; elsewhere also KV's propagation, a
/// refused KV write's retry and the memory tier's lifetime.
fn allowance(history: &History, read: &Read, acked: f64, writer_location: &str, kv_propagation_ms: f64) -> f64 {
    if read.by_author {
        return 0.0;
    }
    let lag = if read.region == "na" { 0.0 } else { history.max_lag(read.region, acked, read.started) };
    if read.location == writer_location {
        lag
    } else {
        lag.max(kv_propagation_ms + kv::WRITE_INTERVAL_MS) + edgestack_core::cache::MEMORY_TTL_MS
    }
}

/// Reads that showed a state the stack had replaced longer ago than the reader's allowance.
fn stale_reads(history: &History, reads: &[Read], writer_location: &str, kv_propagation_ms: f64) -> Vec<String> {
    let mut stale = Vec::new();
    for read in reads {
        for (id, seen) in &read.seen {
            let Some(states) = history.notes.get(id) else { continue };
            let acceptable = states.iter().enumerate().any(|(n, (_, state))| {
                let replaced_at = states.get(n + 1).map_or(f64::INFINITY, |(acked, _)| *acked);
                state == seen
                    && replaced_at + allowance(history, read, replaced_at, writer_location, kv_propagation_ms)
                        > read.started
            });
            if !acceptable {
                stale.push(format!(
                    "{} at {:.0} ms from {}/{} saw {id} as {seen:?}; history {states:?}",
                    if read.by_author { "author" } else { "reader" },
                    read.started,
                    read.location,
                    read.region
                ));
            }
        }
    }
    stale
}

/// What a public read answered about `ids`: a note's title if it is public, per note.
fn observed(response: &Response, path: &str, ids: &[String]) -> Option<BTreeMap<String, PublicState>> {
    if let Some(id) = path.strip_prefix("/api/public/notes/") {
        return match response.status() {
            200 => {
                Some(BTreeMap::from([(id.to_string(), response.json()["note"]["title"].as_str().map(str::to_string))]))
            }
            404 => Some(BTreeMap::from([(id.to_string(), None)])),
            other => panic!("public read {path} answered {other}: {}", response.text()),
        };
    }
    assert_eq!(response.status(), 200, "{}", response.text());
    let feed = response.json();
    let listed: BTreeMap<String, String> = feed["notes"]
        .as_array()?
        .iter()
        .map(|note| (note["id"].as_str().unwrap().to_string(), note["title"].as_str().unwrap().to_string()))
        .collect();
    assert!(feed["next_cursor"].is_null(), "every note fits on the first page");
    Some(ids.iter().map(|id| (id.clone(), listed.get(id).cloned())).collect())
}

struct Run {
    reads: usize,
    changes: usize,
    stale: Vec<String>,
}

/// One seeded run: an author makes `changes` random changes (create, private or published;
/// publish, unpublish, edit, delete) while replica lags move between 0 and 3 s (and ap's
/// replica applies what it lags behind while it reads) and anonymous readers in every region
/// (and the author) read the notes and the feed at random moments.
fn random_run(seed: u64, shape: Shape, locations: Vec<&'static str>, changes: usize) -> Run {
    let kv_propagation_ms = 2_000.0;
    let mut stack =
        Stack::new(Options { shape, locations: locations.clone(), kv_propagation_ms, seed, ..Options::default() });
    let multi_location = locations.len() > 1;
    let writer_location = locations[0];
    let author = if multi_location { stack.client(writer_location) } else { stack.client_in_region("na") };
    signed_up(&mut stack, &author, "author@example.com");
    // ap's answers are labelled as sqld's can be at worst: after replication that landed mid-read.
    stack.replicate_during_reads(stack.notes_db(), "ap");
    let readers: Vec<(Client, &'static str, &'static str)> = ["na", "eu", "ap"]
        .into_iter()
        .map(|region| {
            if multi_location {
                (stack.client(region), region, region)
            } else {
                (stack.client_in_region(region), region, writer_location)
            }
        })
        .collect();
    let history = Rc::new(RefCell::new(History::default()));
    let reads = Rc::new(RefCell::new(Vec::new()));
    let rng = Rc::new(RefCell::new(Rng::new(seed)));
    let ids = Rc::new(RefCell::new(Vec::<String>::new()));
    let clock = stack.rt.clock();
    let (net, notes_db) = (stack.net.clone(), stack.notes_db());

    // The author: one change at a time, as one person at one keyboard.
    let writer = {
        let (history, rng, ids, clock, author) =
            (history.clone(), rng.clone(), ids.clone(), clock.clone(), author.clone());
        async move {
            let mut titles = 0;
            for _ in 0..changes {
                let pause = rng.borrow_mut().below(1_200) as f64;
                clock.sleep(pause).await;
                if rng.borrow_mut().below(4) == 0 {
                    let region = ["eu", "ap"][rng.borrow_mut().below(2) as usize];
                    let lag = rng.borrow_mut().below(3_001) as f64;
                    net.cluster(notes_db, |cluster| cluster.set_lag(region, lag, clock.now_ms())).unwrap();
                    history.borrow_mut().lags.push((clock.now_ms(), region, lag));
                }
                let existing = ids.borrow().clone();
                let choice = if existing.len() < 3 { 0 } else { rng.borrow_mut().below(6) };
                titles += 1;
                let title = format!("title {titles}");
                let (call, id) = match (choice, existing.len()) {
                    (0, _) | (_, 0) => {
                        let published = rng.borrow_mut().below(2) == 0;
                        (
                            author
                                .post("/api/notes")
                                .json(json!({"title": title, "body": "b", "published": published})),
                            None,
                        )
                    }
                    (n, len) => {
                        let id = existing[rng.borrow_mut().below(len as u64) as usize].clone();
                        let call = match n {
                            1 | 2 => author.put(&format!("/api/notes/{id}/publication")),
                            3 => author.delete(&format!("/api/notes/{id}/publication")),
                            4 => author.patch(&format!("/api/notes/{id}")).json(json!({"title": title})),
                            _ => author.delete(&format!("/api/notes/{id}")),
                        };
                        (call, Some((id, n)))
                    }
                };
                let response = call.send().await;
                assert!(response.status() < 300, "{}", response.text());
                let acked = clock.now_ms();
                let mut history = history.borrow_mut();
                match id {
                    None => {
                        let note = response.json()["note"].clone();
                        let id = note["id"].as_str().unwrap().to_string();
                        ids.borrow_mut().push(id.clone());
                        let state = note["published_at"].as_i64().and(note["title"].as_str().map(str::to_string));
                        // Not public before it existed: until the create is acknowledged (and
                        // within a lagging replica's allowance after) a reader may not see it.
                        history.notes.insert(id, vec![(0.0, None), (acked, state)]);
                    }
                    Some((id, n)) => {
                        let state = if n == 5 {
                            ids.borrow_mut().retain(|known| *known != id);
                            None
                        } else {
                            let note = response.json()["note"].clone();
                            note["published_at"].as_i64().and(note["title"].as_str().map(str::to_string))
                        };
                        history.notes.get_mut(&id).unwrap().push((acked, state));
                    }
                }
            }
        }
    };
    let writer = stack.rt.spawn(writer);

    // Readers: a read every 0–300 ms, anywhere, of a random note or the feed; some by the author.
    let mut read_count = 0;
    while !writer.is_done() {
        let gap = rng.borrow_mut().below(300) as f64;
        stack.advance(gap);
        let known: Vec<String> = history.borrow().notes.keys().cloned().collect();
        if known.is_empty() {
            continue;
        }
        let by_author = rng.borrow_mut().below(5) == 0;
        let (client, region, location) = if by_author {
            (author.clone(), "na", writer_location)
        } else {
            readers[rng.borrow_mut().below(3) as usize].clone()
        };
        let path = if rng.borrow_mut().below(2) == 0 {
            "/api/public/notes".to_string()
        } else {
            format!("/api/public/notes/{}", known[rng.borrow_mut().below(known.len() as u64) as usize])
        };
        let (reads, clock) = (reads.clone(), clock.clone());
        read_count += 1;
        stack.rt.spawn(async move {
            let started = clock.now_ms();
            let response = client.get(&path).send().await;
            if let Some(seen) = observed(&response, &path, &known) {
                reads.borrow_mut().push(Read { started, region, location, by_author, seen });
            }
        });
    }
    stack.rt.settle();
    let history = history.borrow();
    let stale = stale_reads(&history, &reads.borrow(), writer_location, kv_propagation_ms);
    Run { reads: read_count, changes, stale }
}

fn check_random_runs(shape: Shape, locations: Vec<&'static str>) {
    let started = std::time::Instant::now();
    let (mut reads, mut changes, mut stale) = (0, 0, Vec::new());
    for seed in seeds(4) {
        let run = random_run(seed, shape, locations.clone(), 60);
        reads += run.reads;
        changes += run.changes;
        stale.extend(run.stale.into_iter().map(|read| format!("seed {seed}: {read}")));
    }
    println!(
        "{shape:?} in {} location(s): {changes} changes, {reads} reads, {} stale, {:.1} s",
        locations.len(),
        stale.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(changes >= 200, "at least 200 interleavings");
    assert!(stale.is_empty(), "{} stale reads:\n{}", stale.len(), stale.join("\n"));
}

#[test]
fn random_changes_and_reads_in_one_location_see_nothing_older_than_the_replica_lag() {
    check_random_runs(Shape::Monolith, vec!["na"]);
}

#[test]
fn random_changes_and_reads_in_three_locations_stay_within_the_stated_bound() {
    check_random_runs(Shape::Monolith, vec!["na", "eu", "ap"]);
}

#[test]
fn the_services_shape_keeps_the_same_bounds() {
    check_random_runs(Shape::Services, vec!["na"]);
    check_random_runs(Shape::Services, vec!["na", "eu", "ap"]);
}
