//! The read-heavy workload: simulated users per region, signed up once, then a seeded mix of
//! ~90 % reads and ~10 % writes, each request timed on the client.

use std::time::{Duration, Instant};

use serde_json::json;

use super::client::{Answer, DataPathReport, UserClient};
use super::stack::Stack;
use super::topology::{PRIMARY_REGION, REGIONS};

/// How much work one configuration gets; from `REGION_LAB_*` environment variables so a quick
/// run (`REGION_LAB_REQUESTS=10 REGION_LAB_LEVELS=1`) needs no code change.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Settings {
    /// Signed-in users per region who write as well as read (80 % reads, 20 % writes).
    pub authors_per_region: usize,
    /// Signed-in users per region who only read. With as many readers as authors the whole
    /// mix is 90 % reads, 10 % writes; the split shows what read-your-writes costs writers.
    pub readers_per_region: usize,
    pub warmup_requests_per_user: usize,
    pub measured_requests_per_user: usize,
    /// Upper bound of the measured window per configuration, whatever the request count.
    pub max_measured_seconds: u64,
    /// Each user pauses a random 0..=this many ms between requests (a closed loop with think
    /// time, so two cores are not simply saturated).
    pub max_think_ms: u64,
    pub seeded_public_notes: usize,
    /// `REGION_LAB_LEVELS`, e.g. `1,4`; all when unset.
    #[serde(skip)]
    pub levels: Option<String>,
}

impl Settings {
    pub fn from_env() -> Result<Self, String> {
        fn number(name: &str, default: u64) -> Result<u64, String> {
            match std::env::var(name) {
                Ok(text) => text.trim().parse().map_err(|_| format!("{name} must be a whole number, not {text:?}")),
                Err(_) => Ok(default),
            }
        }
        let count = |name: &str, default: u64| number(name, default).map(|n| usize::try_from(n).unwrap_or(usize::MAX));
        Ok(Self {
            authors_per_region: count("REGION_LAB_AUTHORS", 3)?,
            readers_per_region: count("REGION_LAB_READERS", 3)?,
            warmup_requests_per_user: count("REGION_LAB_WARMUP", 5)?,
            measured_requests_per_user: count("REGION_LAB_REQUESTS", 60)?.max(1),
            max_measured_seconds: number("REGION_LAB_SECONDS", 90)?.max(1),
            max_think_ms: number("REGION_LAB_THINK_MS", 150)?,
            seeded_public_notes: count("REGION_LAB_SEED_NOTES", 24)?.max(1),
            levels: std::env::var("REGION_LAB_LEVELS").ok(),
        })
        .and_then(|settings| {
            if settings.authors_per_region + settings.readers_per_region == 0 {
                Err("REGION_LAB_AUTHORS and REGION_LAB_READERS are both 0: nobody to simulate".to_string())
            } else {
                Ok(settings)
            }
        })
    }

    pub fn users_per_region(&self) -> usize {
        self.authors_per_region + self.readers_per_region
    }
}

/// The two kinds of simulated users.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Author,
    Reader,
}

impl Role {
    pub const ALL: [Role; 2] = [Role::Author, Role::Reader];
}

/// What a simulated user does in one step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    PublicFeed,
    PublicNote,
    MyNotes,
    Me,
    CreateNote,
    PublishNote,
}

impl Operation {
    pub const ALL: [Operation; 6] = [
        Operation::PublicFeed,
        Operation::PublicNote,
        Operation::MyNotes,
        Operation::Me,
        Operation::CreateNote,
        Operation::PublishNote,
    ];

    /// Share of a role's requests in percent: authors 80 % reads and 20 % writes, readers only
    /// read, so equal numbers of each make the 90 / 10 mix.
    fn weight(self, role: Role) -> u64 {
        match (role, self) {
            (Role::Author, Operation::PublicFeed | Operation::PublicNote) => 25,
            (Role::Author, Operation::MyNotes | Operation::Me) => 15,
            (Role::Author, Operation::CreateNote | Operation::PublishNote) => 10,
            (Role::Reader, Operation::PublicFeed | Operation::PublicNote) => 35,
            (Role::Reader, Operation::MyNotes | Operation::Me) => 15,
            (Role::Reader, Operation::CreateNote | Operation::PublishNote) => 0,
        }
    }

    pub fn is_write(self) -> bool {
        matches!(self, Operation::CreateNote | Operation::PublishNote)
    }

    pub fn label(self) -> &'static str {
        match self {
            Operation::PublicFeed => "GET /api/public/notes",
            Operation::PublicNote => "GET /api/public/notes/{id}",
            Operation::MyNotes => "GET /api/notes",
            Operation::Me => "GET /api/me",
            Operation::CreateNote => "POST /api/notes",
            Operation::PublishNote => "PUT /api/notes/{id}/publication",
        }
    }

    fn pick(rng: &mut Rng, role: Role) -> Operation {
        let total: u64 = Self::ALL.iter().map(|operation| operation.weight(role)).sum();
        let mut roll = rng.below(total);
        for operation in Self::ALL {
            if roll < operation.weight(role) {
                return operation;
            }
            roll -= operation.weight(role);
        }
        Operation::PublicFeed
    }
}

/// One timed request.
#[derive(Debug, Clone)]
pub struct Sample {
    pub region: &'static str,
    pub role: Role,
    pub operation: Operation,
    pub latency_ms: f64,
    /// `None`: the request failed before any answer (connection error, timeout).
    pub status: Option<u16>,
    pub ok: bool,
    pub report: DataPathReport,
}

/// splitmix64: a few lines of deterministic randomness, so every configuration replays the
/// same sequence of operations per user (comparable runs) without a dependency.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..bound` (`0` when `bound` is 0); the modulo bias is irrelevant here.
    pub fn below(&mut self, bound: u64) -> u64 {
        if bound == 0 { 0 } else { self.next_u64() % bound }
    }
}

pub struct User {
    pub region: &'static str,
    role: Role,
    client: UserClient,
    rng: Rng,
    /// Notes this user created and has not published yet (what `PublishNote` publishes).
    unpublished: Vec<String>,
    written: usize,
}

const PASSWORD: &str = "region lab password";

/// Signs up the authors and readers of every region through that region's worker,
/// regions in parallel (sign-up hashes a password: CPU the measured window must not include).
pub fn sign_up_users(stack: &Stack, settings: &Settings, run_tag: &str) -> Result<Vec<User>, String> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = REGIONS
            .iter()
            .enumerate()
            .map(|(region_index, region)| {
                scope.spawn(move || -> Result<Vec<User>, String> {
                    let base_url = stack.worker(region)?.base_url.clone();
                    (0..settings.users_per_region())
                        .map(|user_index| {
                            let role =
                                if user_index < settings.authors_per_region { Role::Author } else { Role::Reader };
                            let mut client = UserClient::new(&base_url);
                            let email = format!("{run_tag}-{region}-{user_index}@region-lab.example");
                            let answer = client.write(
                                "POST",
                                "/api/accounts",
                                Some(&json!({"email": email, "password": PASSWORD})),
                            )?;
                            expect_status(&answer, 201, "sign-up")?;
                            let seed = (region_index as u64) << 32 | user_index as u64;
                            Ok(User { region, role, client, rng: Rng::new(seed), unpublished: Vec::new(), written: 0 })
                        })
                        .collect()
                })
            })
            .collect();
        let mut users = Vec::new();
        for handle in handles {
            users.extend(handle.join().map_err(|_| "a sign-up thread panicked".to_string())??);
        }
        Ok(users)
    })
}

/// Publishes notes from one author in the primary's region, so public reads find something.
pub fn seed_public_notes(stack: &Stack, settings: &Settings, run_tag: &str) -> Result<Vec<String>, String> {
    let mut author = UserClient::new(&stack.worker(PRIMARY_REGION)?.base_url);
    let email = format!("{run_tag}-author@region-lab.example");
    let answer = author.write("POST", "/api/accounts", Some(&json!({"email": email, "password": PASSWORD})))?;
    expect_status(&answer, 201, "author sign-up")?;
    let mut ids = Vec::new();
    for n in 0..settings.seeded_public_notes {
        let note = json!({
            "title": format!("Seeded note {n}"),
            "body": format!("Public note {n} of the region lab. ").repeat(8),
            "published": true,
        });
        let answer = author.write("POST", "/api/notes", Some(&note))?;
        expect_status(&answer, 201, "seeding a note")?;
        ids.push(note_id(&answer)?);
    }
    Ok(ids)
}

/// Every user does `requests` steps (stopping early at `deadline`), all users at once.
/// Returns the users (for the next phase) and the samples.
pub fn run_phase(
    users: Vec<User>,
    public_notes: &[String],
    settings: &Settings,
    requests: usize,
    deadline: Instant,
) -> Result<(Vec<User>, Vec<Sample>), String> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = users
            .into_iter()
            .map(|mut user| {
                scope.spawn(move || {
                    let mut samples = Vec::with_capacity(requests);
                    for _ in 0..requests {
                        if Instant::now() >= deadline {
                            break;
                        }
                        samples.push(user.step(public_notes));
                        let pause = user.rng.below(settings.max_think_ms + 1);
                        std::thread::sleep(Duration::from_millis(pause));
                    }
                    (user, samples)
                })
            })
            .collect();
        let mut users = Vec::new();
        let mut samples = Vec::new();
        for handle in handles {
            let (user, user_samples) = handle.join().map_err(|_| "a user thread panicked".to_string())?;
            users.push(user);
            samples.extend(user_samples);
        }
        Ok((users, samples))
    })
}

impl User {
    /// One request of the mix, timed. A failure is a sample too (counted, never hidden).
    fn step(&mut self, public_notes: &[String]) -> Sample {
        let mut operation = Operation::pick(&mut self.rng, self.role);
        if operation == Operation::PublishNote && self.unpublished.is_empty() {
            // Nothing to publish yet: writing a note is the other half of the same story.
            operation = Operation::CreateNote;
        }
        let outcome = match operation {
            Operation::PublicFeed => self.client.get("/api/public/notes?limit=20").map(|a| (a, 200)),
            Operation::PublicNote => {
                let index = usize::try_from(self.rng.below(public_notes.len() as u64)).unwrap_or(0);
                let id = public_notes.get(index).map(String::as_str).unwrap_or("missing");
                self.client.get(&format!("/api/public/notes/{id}")).map(|a| (a, 200))
            }
            Operation::MyNotes => self.client.get("/api/notes?limit=20").map(|a| (a, 200)),
            Operation::Me => self.client.get("/api/me").map(|a| (a, 200)),
            Operation::CreateNote => {
                self.written += 1;
                let title = format!("{} note {}", self.region, self.written);
                let note = json!({"title": title, "body": "written in the region lab"});
                self.client.write("POST", "/api/notes", Some(&note)).map(|a| (a, 201))
            }
            Operation::PublishNote => {
                let id = self.unpublished.pop().unwrap_or_default();
                self.client.write("PUT", &format!("/api/notes/{id}/publication"), None).map(|a| (a, 200))
            }
        };
        match outcome {
            Ok((answer, expected)) => {
                if operation == Operation::CreateNote
                    && answer.status == 201
                    && let Ok(id) = note_id(&answer)
                {
                    self.unpublished.push(id);
                }
                Sample {
                    region: self.region,
                    role: self.role,
                    operation,
                    latency_ms: answer.latency.as_secs_f64() * 1000.0,
                    status: Some(answer.status),
                    ok: answer.status == expected,
                    report: answer.report,
                }
            }
            Err(_) => Sample {
                region: self.region,
                role: self.role,
                operation,
                latency_ms: f64::NAN,
                status: None,
                ok: false,
                report: DataPathReport::default(),
            },
        }
    }
}

fn expect_status(answer: &Answer, expected: u16, what: &str) -> Result<(), String> {
    if answer.status == expected {
        Ok(())
    } else {
        Err(format!("{what}: expected {expected}, got {}: {}", answer.status, String::from_utf8_lossy(&answer.body)))
    }
}

fn note_id(answer: &Answer) -> Result<String, String> {
    answer
        .json()
        .and_then(|body| body["note"]["id"].as_str().map(String::from))
        .ok_or_else(|| format!("no note id in {}", String::from_utf8_lossy(&answer.body)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_authors_and_readers_make_ninety_percent_reads() {
        let mut rng = Rng::new(7);
        let picks: Vec<Operation> =
            (0..20_000).flat_map(|_| Role::ALL.map(|role| Operation::pick(&mut rng, role))).collect();
        let writes = picks.iter().filter(|operation| operation.is_write()).count();
        let share = writes as f64 / picks.len() as f64;
        assert!((0.09..0.11).contains(&share), "{share}");
        assert!(Operation::ALL.iter().all(|operation| picks.contains(operation)));
        assert!((0..1000).all(|_| !Operation::pick(&mut rng, Role::Reader).is_write()));
    }

    #[test]
    fn the_same_seed_replays_the_same_operations() {
        let sequence = |seed| {
            let mut rng = Rng::new(seed);
            (0..50).map(|_| Operation::pick(&mut rng, Role::Author)).collect::<Vec<_>>()
        };
        assert_eq!(sequence(3), sequence(3));
        assert_ne!(sequence(3), sequence(4));
    }
}
