//! What kind of statement a SQL text is, read from its tokens the way sqld's parser sorts them.
//!
//! sqld reports `affected_row_count` only for INSERT, UPDATE and DELETE (SQLite leaves
//! `changes()` untouched by other statements), and `last_insert_rowid` only for INSERT; it
//! knows the kind because it parses every statement. SQLite has no API for a prepared
//! statement's kind, so devdb reads the leading keywords, skipping comments, quoted text and a
//! `WITH` clause's common table expressions (`WITH x AS (...) INSERT ...` is an INSERT).

/// The statement kinds whose results differ on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `INSERT` or `REPLACE`: reports `changes()` and the last insert rowid.
    Insert,
    /// `UPDATE` or `DELETE`: reports `changes()`.
    UpdateOrDelete,
    /// Nothing but whitespace, comments and semicolons.
    Empty,
    /// Everything else (queries, DDL, transaction control, PRAGMA, EXPLAIN ...).
    Other,
}

impl Kind {
    pub fn of(sql: &str) -> Kind {
        let mut tokens = Tokens { rest: sql };
        let Some(first) = tokens.next() else {
            return Kind::Empty;
        };
        match first {
            Token::Word(w) if w.eq_ignore_ascii_case("WITH") => Self::after_with(tokens),
            Token::Word(w) => Self::from_keyword(w),
            _ => Kind::Other,
        }
    }

    /// The statement after a `WITH` clause starts with the first keyword that follows a closing
    /// parenthesis at nesting depth 0 (each common table expression ends with `AS (...)`).
    fn after_with(tokens: Tokens<'_>) -> Kind {
        let mut depth = 0usize;
        let mut after_close = false;
        for token in tokens {
            match token {
                Token::Open => depth += 1,
                Token::Close => depth = depth.saturating_sub(1),
                Token::Word(w) if depth == 0 && after_close && !w.eq_ignore_ascii_case("AS") => {
                    return Self::from_keyword(w);
                }
                _ => {}
            }
            after_close = matches!(token, Token::Close) && depth == 0;
        }
        Kind::Other
    }

    fn from_keyword(word: &str) -> Kind {
        if word.eq_ignore_ascii_case("INSERT") || word.eq_ignore_ascii_case("REPLACE") {
            Kind::Insert
        } else if word.eq_ignore_ascii_case("UPDATE") || word.eq_ignore_ascii_case("DELETE") {
            Kind::UpdateOrDelete
        } else {
            Kind::Other
        }
    }

    /// sqld's `affected_row_count`: `changes()` after INSERT, UPDATE and DELETE, else 0.
    pub fn counts_changes(self) -> bool {
        matches!(self, Kind::Insert | Kind::UpdateOrDelete)
    }

    /// sqld's `last_insert_rowid`: present after INSERT only, else null.
    pub fn reports_rowid(self) -> bool {
        self == Kind::Insert
    }
}

/// The first keyword of `sql` (after comments), upper-cased; empty if it starts otherwise.
pub fn first_keyword(sql: &str) -> String {
    match (Tokens { rest: sql }).next() {
        Some(Token::Word(w)) => w.to_ascii_uppercase(),
        _ => String::new(),
    }
}

/// Whether `sql` is `CREATE [TEMP] TABLE … AS …` (a table made from a query's rows) rather than
/// a table defined by its columns: the name is followed by `AS` before any parenthesis.
pub fn is_create_table_as(sql: &str) -> bool {
    let is =
        |token: Option<Token<'_>>, word: &str| matches!(token, Some(Token::Word(w)) if w.eq_ignore_ascii_case(word));
    let mut tokens = Tokens { rest: sql };
    if !is(tokens.next(), "CREATE") {
        return false;
    }
    let mut next = tokens.next();
    if is(next, "TEMP") || is(next, "TEMPORARY") {
        next = tokens.next();
    }
    if !is(next, "TABLE") {
        return false;
    }
    for token in tokens {
        match token {
            Token::Open => return false,
            Token::Word(w) if w.eq_ignore_ascii_case("AS") => return true,
            _ => {}
        }
    }
    false
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token<'a> {
    /// A bare word: keyword or unquoted identifier.
    Word(&'a str),
    Open,
    Close,
    /// Quoted text, numbers, parameters and punctuation: never a keyword.
    Other,
}

/// SQLite's lexical rules, reduced to what classification needs; statement separators (`;`)
/// are skipped, so only the first statement of a text should be classified.
struct Tokens<'a> {
    rest: &'a str,
}

impl<'a> Iterator for Tokens<'a> {
    type Item = Token<'a>;

    fn next(&mut self) -> Option<Token<'a>> {
        loop {
            self.rest = self.rest.trim_start_matches(|c: char| c.is_whitespace() || c == ';');
            if let Some(r) = self.rest.strip_prefix("--") {
                self.rest = r.split_once('\n').map_or("", |(_, after)| after);
            } else if let Some(r) = self.rest.strip_prefix("/*") {
                self.rest = r.split_once("*/").map_or("", |(_, after)| after);
            } else {
                break;
            }
        }
        let first = self.rest.chars().next()?;
        let (token, len) = match first {
            '(' => (Token::Open, 1),
            ')' => (Token::Close, 1),
            '\'' | '"' | '`' => (Token::Other, quoted_len(self.rest, first)),
            '[' => (Token::Other, self.rest.find(']').map_or(self.rest.len(), |i| i + 1)),
            c if c.is_alphabetic() || c == '_' => {
                let len =
                    self.rest.find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '$')).unwrap_or(self.rest.len());
                (Token::Word(&self.rest[..len]), len)
            }
            c => (Token::Other, c.len_utf8()),
        };
        self.rest = &self.rest[len..];
        Some(token)
    }
}

/// Length of a quoted string or identifier starting at `s` (a doubled quote is an escaped one);
/// an unterminated one runs to the end.
fn quoted_len(s: &str, quote: char) -> usize {
    let mut chars = s.char_indices().skip(1).peekable();
    while let Some((i, c)) = chars.next() {
        if c == quote {
            if chars.peek().is_some_and(|&(_, next)| next == quote) {
                chars.next();
            } else {
                return i + c.len_utf8();
            }
        }
    }
    s.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(sql: &str, expected: Kind) {
        assert_eq!(Kind::of(sql), expected, "{sql:?}");
    }

    #[test]
    fn sorts_statements_as_sqld_does() {
        check("INSERT INTO t VALUES (1)", Kind::Insert);
        check("  -- note\n /* c */ insert into t values (1)", Kind::Insert);
        check("REPLACE INTO t VALUES (1)", Kind::Insert);
        check("INSERT OR IGNORE INTO t SELECT * FROM u", Kind::Insert);
        check("INSERT INTO t VALUES (1) ON CONFLICT DO UPDATE SET a = 2", Kind::Insert);
        check("update t set a = 1", Kind::UpdateOrDelete);
        check("DELETE FROM t", Kind::UpdateOrDelete);
        check("WITH x(a) AS (SELECT 1) INSERT INTO t SELECT a FROM x", Kind::Insert);
        check(
            "WITH RECURSIVE x AS MATERIALIZED (SELECT ')' UNION SELECT 2), y AS (SELECT 3) DELETE FROM t",
            Kind::UpdateOrDelete,
        );
        check("WITH \"insert\" AS (SELECT (1)) SELECT * FROM \"insert\"", Kind::Other);
        check("WITH x AS (SELECT 1) UPDATE t SET a = (SELECT * FROM x)", Kind::UpdateOrDelete);
        check("SELECT 'INSERT'", Kind::Other);
        check("EXPLAIN INSERT INTO t VALUES (1)", Kind::Other);
        check("CREATE TABLE t AS SELECT 1", Kind::Other);
        check("BEGIN", Kind::Other);
        check("[insert]", Kind::Other);
        check("", Kind::Empty);
        check(" ; -- only a comment\n ;", Kind::Empty);
        check("/* unterminated", Kind::Empty);
    }

    #[test]
    fn tells_a_table_made_from_a_query_from_one_defined_by_its_columns() {
        for sql in [
            "CREATE TABLE t AS SELECT 1",
            "create temp table if not exists \"a b\" as with x as (select 1) select * from x",
        ] {
            assert!(is_create_table_as(sql), "{sql}");
        }
        for sql in
            ["CREATE TABLE t(a AS (1))", "CREATE TABLE t(a) STRICT", "CREATE VIEW v AS SELECT 1", "SELECT 1 AS a"]
        {
            assert!(!is_create_table_as(sql), "{sql}");
        }
    }

    #[test]
    fn first_keyword_skips_comments() {
        assert_eq!(first_keyword("  -- hi\n /* x */ begin immediate"), "BEGIN");
        assert_eq!(first_keyword("'text'"), "");
        assert_eq!(first_keyword(""), "");
    }
}
