//! The schema compatibility check: every migration must keep the previous release working,
//! because blue and green share one database during a rollout (expand → migrate → contract).
//!
//! Statements are classified by their leading keywords. Expanding ones (new tables, columns,
//! indexes) and data changes are always allowed. Contracting ones (drops, renames, column
//! changes) break code that still uses the old shape, so they are allowed only in a file marked
//! as a contract step — named `*.contract.sql` or starting with the line `-- edgestack:contract`.
//!
//! When a contract step is allowed: only once no live release reads or writes what it removes,
//! i.e. the release that stopped using it is at 100 % everywhere. So a contract file ships in a
//! release of its own: `check_release` refuses a contract step that arrives together with other
//! new migrations (the usual mistake: add the new column and drop the old one in one go).

/// The first-line marker of a contract step.
pub const CONTRACT_MARKER: &str = "-- edgestack:contract";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Adds schema the previous release ignores.
    Expand,
    /// Changes rows, not shape (backfills).
    Migrate,
    /// Removes or renames schema the previous release may use.
    Contract,
    /// Breaks the previous release whatever the step (e.g. a NOT NULL column without default:
    /// the previous release's INSERTs do not fill it).
    Breaking,
    /// Transaction control and the like.
    Neutral,
    /// Not understood: refused outside a contract step, so a human looks at it.
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classified {
    pub kind: Kind,
    /// The statement, whitespace collapsed, for messages.
    pub statement: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub file: String,
    pub statement: String,
    pub reason: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}\n    {}", self.file, self.reason, self.statement)
    }
}

/// A migration file's name and text.
#[derive(Debug, Clone)]
pub struct MigrationFile {
    pub name: String,
    pub sql: String,
}

impl MigrationFile {
    pub fn is_contract_step(&self) -> bool {
        self.name.ends_with(".contract.sql")
            || self.sql.lines().map(str::trim).find(|line| !line.is_empty()).is_some_and(|line| line == CONTRACT_MARKER)
    }
}

/// Checks one file; an empty list means it keeps the previous release working.
pub fn check_file(file: &MigrationFile) -> Vec<Violation> {
    let contract_step = file.is_contract_step();
    let mut violations = Vec::new();
    for classified in split_statements(&file.sql).iter().map(|statement| classify(statement)) {
        let reason = match classified.kind {
            Kind::Expand | Kind::Migrate | Kind::Neutral => None,
            Kind::Contract if contract_step => None,
            Kind::Contract => Some(format!(
                "contracting statement outside a contract step (rename the file `*.contract.sql` or start it with `{CONTRACT_MARKER}`, and ship it only after the release that stopped using this is at 100 %)"
            )),
            Kind::Breaking => Some(
                "breaks the previous release in any step (add the column with a DEFAULT, or nullable, then backfill)"
                    .to_string(),
            ),
            Kind::Unknown if contract_step => None,
            Kind::Unknown => {
                Some("statement not recognized as expand or migrate; refused outside a contract step".into())
            }
        };
        if let Some(reason) = reason {
            violations.push(Violation { file: file.name.clone(), statement: classified.statement, reason });
        }
    }
    violations
}

/// Checks the migrations a release adds (`new_files`): each file on its own, and a contract step
/// only alone.
pub fn check_release(new_files: &[MigrationFile]) -> Vec<Violation> {
    let mut violations: Vec<Violation> = new_files.iter().flat_map(check_file).collect();
    if new_files.len() > 1 {
        for file in new_files.iter().filter(|file| file.is_contract_step()) {
            violations.push(Violation {
                file: file.name.clone(),
                statement: String::new(),
                reason: "a contract step must be the only new migration of its release".into(),
            });
        }
    }
    violations
}

/// Classifies one statement (comments already stripped by `split_statements`).
pub fn classify(statement: &str) -> Classified {
    let upper = statement.to_ascii_uppercase();
    let words: Vec<&str> = upper.split_whitespace().collect();
    let starts = |prefix: &[&str]| words.len() >= prefix.len() && words.iter().zip(prefix).all(|(a, b)| a == b);
    let has = |word: &str| words.contains(&word);
    let kind = if starts(&["CREATE", "UNIQUE"]) || refusing_trigger(&upper, &words) {
        // A new constraint on existing rows' writes: the previous release may still write what
        // it refuses (its writes would fail), so it ships once no live release does.
        Kind::Contract
    } else if starts(&["CREATE"]) {
        // CREATE INDEX, [TEMP] TABLE, VIEW, TRIGGER, VIRTUAL TABLE: all new objects.
        Kind::Expand
    } else if starts(&["ALTER", "TABLE"]) {
        classify_alter(&words)
    } else if starts(&["DROP"]) {
        Kind::Contract
    } else if ["INSERT", "UPDATE", "DELETE", "REPLACE"].iter().any(|w| starts(&[w]))
        || (starts(&["WITH"]) && (has("INSERT") || has("UPDATE") || has("DELETE")))
    {
        Kind::Migrate
    } else if ["BEGIN", "COMMIT", "END", "SAVEPOINT", "RELEASE", "ANALYZE"].iter().any(|w| starts(&[w])) {
        Kind::Neutral
    } else {
        Kind::Unknown
    };
    Classified { kind, statement: words_of(statement) }
}

/// A `CREATE TRIGGER` whose body can refuse the write that fires it (`RAISE(ABORT | FAIL |
/// ROLLBACK, …)`): a constraint as much as a unique index is. `RAISE(IGNORE)` skips a row
/// silently, which the previous release would not see as a failure either; it stays Expand.
fn refusing_trigger(upper: &str, words: &[&str]) -> bool {
    let is_trigger = words.first() == Some(&"CREATE") && words.iter().take(4).any(|w| *w == "TRIGGER");
    let compact: String = upper.chars().filter(|c| !c.is_whitespace()).collect();
    is_trigger && ["RAISE(ABORT", "RAISE(FAIL", "RAISE(ROLLBACK"].iter().any(|raise| compact.contains(raise))
}

fn classify_alter(words: &[&str]) -> Kind {
    // ALTER TABLE <name> <action> ...
    let action = &words[3.min(words.len())..];
    match action {
        ["ADD", rest @ ..] => {
            let column = rest.strip_prefix(&["COLUMN"]).unwrap_or(rest);
            let text = column.join(" ");
            let not_null = text.contains("NOT NULL");
            let has_default = column.contains(&"DEFAULT");
            // A primary key or unique column cannot be added to existing rows either way.
            if (not_null && !has_default) || column.contains(&"UNIQUE") || text.contains("PRIMARY KEY") {
                Kind::Breaking
            } else {
                Kind::Expand
            }
        }
        ["RENAME", ..] | ["DROP", ..] | ["ALTER", ..] => Kind::Contract,
        _ => Kind::Unknown,
    }
}

fn words_of(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Splits SQL text into statements on `;`, skipping `--` and `/* */` comments and not splitting
/// inside quotes or trigger bodies (`BEGIN … END`).
pub fn split_statements(sql: &str) -> Vec<String> {
    let mut statements = Vec::new();
    let mut current = String::new();
    // The statement with its quoted text left out: only words SQLite reads as keywords may open
    // or close a trigger body (a `'begin'` in a string must not keep it open past its `END`).
    let mut code = String::new();
    let mut chars = sql.chars().peekable();
    let mut quote: Option<char> = None;
    while let Some(c) = chars.next() {
        if let Some(q) = quote {
            current.push(c);
            if c == q {
                quote = None;
                code.push(' ');
            }
            continue;
        }
        match c {
            '\'' | '"' | '`' => {
                quote = Some(c);
                current.push(c);
            }
            '[' => {
                quote = Some(']');
                current.push(c);
            }
            '-' if chars.peek() == Some(&'-') => {
                for next in chars.by_ref() {
                    if next == '\n' {
                        break;
                    }
                }
                current.push(' ');
                code.push(' ');
            }
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut previous = ' ';
                for next in chars.by_ref() {
                    if previous == '*' && next == '/' {
                        break;
                    }
                    previous = next;
                }
                current.push(' ');
                code.push(' ');
            }
            ';' if !inside_trigger_body(&code) => {
                push_statement(&mut statements, &current);
                current.clear();
                code.clear();
            }
            _ => {
                current.push(c);
                code.push(c);
            }
        }
    }
    push_statement(&mut statements, &current);
    statements
}

fn push_statement(statements: &mut Vec<String>, text: &str) {
    let text = text.trim();
    if !text.is_empty() {
        statements.push(text.to_string());
    }
}

/// A `CREATE TRIGGER … BEGIN` whose `END` has not come yet, in a statement's text outside its
/// quotes: `BEGIN` and `CASE` each open a block that one `END` closes (SQLite's grammar: a
/// trigger body is `BEGIN … END`, a `CASE` expression inside it ends with `END` too).
fn inside_trigger_body(code: &str) -> bool {
    let upper = code.to_ascii_uppercase();
    let words: Vec<&str> =
        upper.split(|c: char| !c.is_ascii_alphanumeric() && c != '_').filter(|w| !w.is_empty()).collect();
    let is_trigger = words.first() == Some(&"CREATE") && words.iter().take(4).any(|w| *w == "TRIGGER");
    if !is_trigger {
        return false;
    }
    let opened = words.iter().filter(|w| matches!(**w, "BEGIN" | "CASE")).count();
    let ends = words.iter().filter(|w| **w == "END").count();
    opened > ends
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(sql: &str) -> Kind {
        classify(sql).kind
    }

    #[test]
    fn statements_are_classified() {
        for (sql, expected) in [
            ("CREATE TABLE t (a TEXT)", Kind::Expand),
            ("create index i on t (a)", Kind::Expand),
            ("create unique index i on t (a)", Kind::Contract),
            ("CREATE UNIQUE INDEX IF NOT EXISTS i ON t (a, b)", Kind::Contract),
            ("CREATE TRIGGER tr AFTER INSERT ON t BEGIN UPDATE u SET n = n + 1; END", Kind::Expand),
            (
                "CREATE TRIGGER tr BEFORE INSERT ON t WHEN new.a IS NULL BEGIN SELECT RAISE (ABORT, 'a needed'); END",
                Kind::Contract,
            ),
            ("CREATE TEMP TRIGGER tr BEFORE UPDATE ON t BEGIN SELECT raise(fail, 'no'); END", Kind::Contract),
            ("CREATE TRIGGER tr BEFORE INSERT ON t BEGIN SELECT RAISE(IGNORE); END", Kind::Expand),
            ("ALTER TABLE t ADD COLUMN c TEXT", Kind::Expand),
            ("ALTER TABLE t ADD c INTEGER NOT NULL DEFAULT 0", Kind::Expand),
            ("ALTER TABLE t ADD COLUMN c INTEGER NOT NULL", Kind::Breaking),
            ("ALTER TABLE t ADD COLUMN c TEXT UNIQUE", Kind::Breaking),
            ("ALTER TABLE t DROP COLUMN c", Kind::Contract),
            ("ALTER TABLE t RENAME COLUMN a TO b", Kind::Contract),
            ("ALTER TABLE t RENAME TO u", Kind::Contract),
            ("ALTER TABLE t ALTER COLUMN c TO c INTEGER", Kind::Contract),
            ("DROP TABLE t", Kind::Contract),
            ("DROP INDEX IF EXISTS i", Kind::Contract),
            ("UPDATE t SET c = a", Kind::Migrate),
            ("INSERT INTO t SELECT * FROM u", Kind::Migrate),
            ("BEGIN", Kind::Neutral),
            ("PRAGMA foreign_keys = OFF", Kind::Unknown),
        ] {
            assert_eq!(kind(sql), expected, "{sql}");
        }
    }

    #[test]
    fn splitting_skips_comments_and_quotes() {
        let sql =
            "-- a comment; with a semicolon\nCREATE TABLE t (a TEXT DEFAULT ';'); /* x; y */ UPDATE t SET a = 'b;c';\n";
        assert_eq!(split_statements(sql), ["CREATE TABLE t (a TEXT DEFAULT ';')", "UPDATE t SET a = 'b;c'"]);
    }

    #[test]
    fn trigger_bodies_stay_whole() {
        let sql = "CREATE TRIGGER tr AFTER INSERT ON t BEGIN UPDATE u SET n = n + 1; DELETE FROM v; END; DROP TABLE w;";
        let statements = split_statements(sql);
        assert_eq!(statements.len(), 2, "{statements:?}");
        assert_eq!(kind(&statements[0]), Kind::Expand);
        assert_eq!(kind(&statements[1]), Kind::Contract);
    }

    /// The words `begin` and `end` in a string or a quoted name are no keywords: counted as
    /// such, one `'begin'` kept the splitter inside the trigger past its `END;`, and the DROP
    /// after it (which SQLite runs on its own) was classified with the CREATE as Expand.
    #[test]
    fn keywords_in_quotes_neither_open_nor_close_a_trigger_body() {
        for (sql, dropped) in [
            (
                "CREATE TRIGGER notes_audit AFTER UPDATE ON notes BEGIN INSERT INTO audit (event) VALUES ('begin edit'); END;\nALTER TABLE notes DROP COLUMN published_at;\n",
                "ALTER TABLE notes DROP COLUMN published_at",
            ),
            ("CREATE TABLE \"trigger\" (kind TEXT DEFAULT 'begin');\nDROP TABLE notes;\n", "DROP TABLE notes"),
            (
                "CREATE TRIGGER t AFTER INSERT ON n BEGIN SELECT \"end\", [end], 'end;'; END; DROP TABLE n;",
                "DROP TABLE n",
            ),
        ] {
            let statements = split_statements(sql);
            assert_eq!(statements.len(), 2, "{statements:?}");
            let file = MigrationFile { name: "0004_audit.sql".into(), sql: sql.into() };
            let violations = check_file(&file);
            assert_eq!(violations.len(), 1, "a DROP outside a contract step must be refused: {violations:?}");
            assert_eq!(violations[0].statement, dropped);
        }
    }

    /// A `CASE … END` inside a trigger body does not end the body (it once split the trigger at
    /// its first inner `;`, refusing a migration SQLite runs as one statement).
    #[test]
    fn a_case_inside_a_trigger_body_keeps_it_whole() {
        let sql = "CREATE TRIGGER tr AFTER INSERT ON t BEGIN UPDATE u SET n = CASE WHEN new.a THEN 1 ELSE 0 END; DELETE FROM v; END; CREATE INDEX i ON t (a);";
        let statements = split_statements(sql);
        assert_eq!(statements.len(), 2, "{statements:?}");
        assert!(statements[0].ends_with("DELETE FROM v; END"), "{statements:?}");
        assert_eq!(kind(&statements[1]), Kind::Expand);
    }

    #[test]
    fn contract_steps_are_marked_by_name_or_first_line() {
        let file = |name: &str, sql: &str| MigrationFile { name: name.into(), sql: sql.into() };
        assert!(file("0003_drop.contract.sql", "DROP TABLE t;").is_contract_step());
        assert!(file("0003_drop.sql", "\n-- edgestack:contract\nDROP TABLE t;").is_contract_step());
        assert!(!file("0003_drop.sql", "-- drops t\n-- edgestack:contract\nDROP TABLE t;").is_contract_step());
    }

    #[test]
    fn contract_step_must_ship_alone() {
        let add = MigrationFile { name: "0003_add.sql".into(), sql: "ALTER TABLE t ADD COLUMN b TEXT;".into() };
        let drop = MigrationFile { name: "0004_drop.contract.sql".into(), sql: "ALTER TABLE t DROP COLUMN a;".into() };
        assert!(check_release(std::slice::from_ref(&drop)).is_empty());
        assert!(check_release(std::slice::from_ref(&add)).is_empty());
        let together = check_release(&[add, drop]);
        assert_eq!(together.len(), 1, "{together:?}");
        assert!(together[0].reason.contains("only new migration"));
    }
}
