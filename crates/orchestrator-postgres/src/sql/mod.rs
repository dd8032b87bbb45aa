//! Every raw SQL statement of the crate, grouped by the table it is mainly
//! about; the modules that run them hold the logic around them. Queries
//! written with diesel's query builder stay where they run.
//!
//! `tasks` and `droplets` each have one column list, the columns their row
//! type reads ([`tasks::COLUMNS`], [`droplets::COLUMNS`]); every statement
//! that returns whole rows is built from it at compile time (`statement!`,
//! `qualified!`), so that a column added to a row type is added to all of
//! them at once.

/// The parts (`&str` consts or literals) joined into one `&'static str`
/// at compile time; `concat!` takes only literals.
macro_rules! statement {
    ($($part:expr),+ $(,)?) => {{
        const PARTS: &[&str] = &[$($part),+];
        const BYTES: [u8; $crate::sql::joined_len(PARTS)] = $crate::sql::join(PARTS);
        $crate::sql::utf8(&BYTES)
    }};
}

/// A column list (`"a, b"`) with each column qualified by `$prefix`
/// (`"t."`), for statements that read more than one table.
macro_rules! qualified {
    ($columns:expr, $prefix:expr) => {{
        const BYTES: [u8; $crate::sql::qualified_len($columns, $prefix)] =
            $crate::sql::qualify($columns, $prefix);
        $crate::sql::utf8(&BYTES)
    }};
}

pub(crate) mod catalog;
pub(crate) mod droplets;
pub(crate) mod heartbeats;
pub(crate) mod history;
pub(crate) mod idempotency;
pub(crate) mod locks;
pub(crate) mod notifications;
pub(crate) mod tasks;

/// A round trip that touches nothing: is the connection alive?
pub(crate) const PING: &str = "SELECT 1";

pub(crate) const fn joined_len(parts: &[&str]) -> usize {
    let mut len = 0;
    let mut i = 0;
    while i < parts.len() {
        len += parts[i].len();
        i += 1;
    }
    len
}

pub(crate) const fn join<const N: usize>(parts: &[&str]) -> [u8; N] {
    let mut out = [0; N];
    let mut at = 0;
    let mut i = 0;
    while i < parts.len() {
        at = copy(&mut out, at, parts[i].as_bytes());
        i += 1;
    }
    assert!(at == N, "the statement's length was miscounted");
    out
}

/// Whether a column's name starts at `i` of a list like `"a, b"`.
const fn starts_column(list: &[u8], i: usize) -> bool {
    list[i] != b' ' && (i == 0 || list[i - 1] == b' ')
}

pub(crate) const fn qualified_len(columns: &str, prefix: &str) -> usize {
    let list = columns.as_bytes();
    let mut len = list.len();
    let mut i = 0;
    while i < list.len() {
        if starts_column(list, i) {
            len += prefix.len();
        }
        i += 1;
    }
    len
}

pub(crate) const fn qualify<const N: usize>(columns: &str, prefix: &str) -> [u8; N] {
    let list = columns.as_bytes();
    let mut out = [0; N];
    let mut at = 0;
    let mut i = 0;
    while i < list.len() {
        if starts_column(list, i) {
            at = copy(&mut out, at, prefix.as_bytes());
        }
        out[at] = list[i];
        at += 1;
        i += 1;
    }
    assert!(at == N, "the column list's length was miscounted");
    out
}

/// Copies `bytes` into `out` at `at`; returns where they end.
const fn copy(out: &mut [u8], mut at: usize, bytes: &[u8]) -> usize {
    let mut i = 0;
    while i < bytes.len() {
        out[at] = bytes[i];
        at += 1;
        i += 1;
    }
    at
}

pub(crate) const fn utf8(bytes: &[u8]) -> &str {
    match std::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(_) => panic!("a statement joined from text is text"),
    }
}

#[cfg(test)]
mod tests {
    use diesel::pg::Pg;
    use diesel::query_builder::{QueryFragment, QueryId};
    use diesel::{QueryDsl, SelectableHelper};

    use crate::rows::{DropletRow, TaskRow};
    use crate::schema::droplets;
    use crate::views::task_view;

    /// The columns a diesel `SELECT` of one table reads, unqualified, in
    /// the form of the column lists.
    fn selected_columns(query: &(impl QueryFragment<Pg> + QueryId)) -> String {
        let sql = diesel::debug_query::<Pg, _>(query).to_string();
        let list = sql
            .strip_prefix("SELECT ")
            .and_then(|rest| rest.split(" FROM ").next())
            .unwrap_or_default();
        list.split(", ")
            .map(|column| column.rsplit('.').next().unwrap_or(column).trim_matches('"'))
            .collect::<Vec<_>>()
            .join(", ")
    }

    #[test]
    fn the_column_lists_are_what_the_row_types_read() {
        let task = selected_columns(&task_view::table.select(TaskRow::as_select()));
        assert_eq!(super::tasks::COLUMNS, task);
        let droplet = selected_columns(&droplets::table.select(DropletRow::as_select()));
        assert_eq!(super::droplets::COLUMNS, droplet);
    }

    #[test]
    fn statements_join_their_parts() {
        const COLUMNS: &str = "id, name";
        assert_eq!(
            statement!("SELECT ", COLUMNS, " FROM t"),
            "SELECT id, name FROM t"
        );
        assert_eq!(qualified!(COLUMNS, "t."), "t.id, t.name");
        assert_eq!(qualified!("id", "t."), "t.id");
    }
}

/// What the planner makes of a statement, for the tests that hold a
/// statement to its plan.
#[cfg(test)]
pub(crate) mod plans {
    use diesel::sql_types::Text;
    use diesel_async::{AsyncPgConnection, RunQueryDsl};

    #[derive(diesel::QueryableByName)]
    struct Line {
        #[diesel(sql_type = Text, column_name = "QUERY PLAN")]
        text: String,
    }

    /// The plan of `EXPLAIN (COSTS OFF) {statement}`, one line a node.
    pub(crate) async fn explain(
        conn: &mut AsyncPgConnection,
        statement: &str,
    ) -> Result<String, diesel::result::Error> {
        let lines: Vec<Line> = diesel::sql_query(format!("EXPLAIN (COSTS OFF) {statement}"))
            .load(conn)
            .await?;
        Ok(lines
            .into_iter()
            .map(|line| line.text)
            .collect::<Vec<_>>()
            .join("\n"))
    }
}
