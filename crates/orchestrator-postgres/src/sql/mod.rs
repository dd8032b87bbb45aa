//! Every raw SQL statement of the crate, grouped by the table it is mainly
//! about; the modules that run them hold the logic around them. Queries
//! written with diesel's query builder stay where they run.
//!
//! `tasks` and `droplets` each have one column list, the columns their row
//! type reads ([`tasks::COLUMNS`], [`droplets::COLUMNS`]); every statement
//! that returns whole rows is built from it at compile time (`statement!`,
//! `qualified!`), so that a column added to a row type is added to all of
//! them at once.
//!
//! A statement's parameters are named in its text (`:name`) and declared
//! once with their types (`named_statement!`); a struct of the same names
//! binds them, so that no call site counts `$n` positions, and a name the
//! text and the declaration do not share fails the build. The two
//! statements of the migration lock keep `$1`: they run on the migration
//! harness's synchronous connection.

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

/// A statement's text with its parameters named (`:name`) made into
/// PostgreSQL's positional form (`$1`) at compile time; a name's position
/// is its place in the list. The build fails when the text uses a name
/// the list does not have, or the list has a name the text never uses.
/// `::` (a cast) and quoted literals are left as they are.
macro_rules! positional {
    ($text:expr, [$($name:expr),+ $(,)?]) => {{
        const NAMES: &[&str] = &[$($name),+];
        const BYTES: [u8; $crate::sql::positional_len($text, NAMES)] =
            $crate::sql::positional($text, NAMES);
        $crate::sql::utf8(&BYTES)
    }};
}

/// A raw statement with named, typed parameters, declared once: the text
/// names each parameter (`:name`); the declaration gives each its SQL type
/// and the Rust type bound to it; the statement's constant is its
/// positional text, and a struct of the same parameters binds them, by
/// name, in the right places:
///
/// ```ignore
/// named_statement! {
///     /// What it does.
///     pub(crate) COUNT_HELD: CountHeld<'a> { droplets: Array<Integer> = &'a [i32] }
///         = "SELECT ... WHERE d.droplet_id = ANY(:droplets)";
/// }
/// CountHeld { droplets: &targets }.query().load::<HeldRow>(conn)
/// ```
macro_rules! named_statement {
    (
        $(#[$meta:meta])*
        $vis:vis $name:ident: $(#[$pmeta:meta])* $params:ident $(<$lt:lifetime>)? {
            $($param:ident: $sql:ty = $rust:ty),+ $(,)?
        } = $text:expr;
    ) => {
        $(#[$meta])*
        $vis const $name: &str = positional!($text, [$(stringify!($param)),+]);

        #[doc = concat!("The parameters of [`", stringify!($name), "`], by name.")]
        $(#[$pmeta])*
        $vis struct $params $(<$lt>)? {
            $(pub(crate) $param: $rust),+
        }

        impl $(<$lt>)? $params $(<$lt>)? {
            /// The statement with its parameters bound, prepared once per connection.
            #[allow(dead_code, reason = "some statements are only planned per call")]
            pub(crate) fn query(
                self,
            ) -> $crate::prepared::Prepared<
                impl diesel::query_builder::Query<SqlType = diesel::sql_types::Untyped>
                    + diesel::query_builder::QueryFragment<diesel::pg::Pg>
                    + diesel::query_builder::QueryId
                    + Send,
            > {
                use $crate::prepared::Prepare;
                self.planned_per_call().prepared()
            }

            /// The statement with its parameters bound, planned anew at
            /// each call for the values bound (`diesel::sql_query`'s way).
            #[allow(dead_code, reason = "only some statements are planned per call")]
            pub(crate) fn planned_per_call(
                self,
            ) -> impl diesel::query_builder::Query<SqlType = diesel::sql_types::Untyped>
                + diesel::query_builder::QueryFragment<diesel::pg::Pg>
                + diesel::query_builder::QueryId
                + Send {
                diesel::sql_query($name)
                    $(.bind::<$sql, _>(self.$param))+
            }
        }
    };
}

pub(crate) mod catalog;
pub(crate) mod concurrency;
pub(crate) mod droplets;
pub(crate) mod heartbeats;
pub(crate) mod history;
pub(crate) mod idempotency;
pub(crate) mod locks;
pub(crate) mod notifications;
pub(crate) mod tasks;
pub(crate) mod workflows;

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

/// The parameter a statement's text names at `i` (`:name`, not `::`), as
/// its end and its place in `names`; `None` when nothing is named there.
const fn named_at(text: &[u8], i: usize, names: &[&str]) -> Option<(usize, usize)> {
    if text[i] != b':' || i + 1 >= text.len() || !starts_name(text[i + 1]) || (i > 0 && text[i - 1] == b':') {
        return None;
    }
    let mut end = i + 1;
    while end < text.len() && (starts_name(text[end]) || text[end].is_ascii_digit()) {
        end += 1;
    }
    let mut n = 0;
    while n < names.len() {
        if same(names[n].as_bytes(), text, i + 1, end) {
            return Some((end, n));
        }
        n += 1;
    }
    panic!("a statement names a parameter its declaration does not have")
}

const fn starts_name(byte: u8) -> bool {
    byte.is_ascii_lowercase() || byte == b'_'
}

/// Whether `text[from..to]` is `name`.
const fn same(name: &[u8], text: &[u8], from: usize, to: usize) -> bool {
    if name.len() != to - from {
        return false;
    }
    let mut k = 0;
    while k < name.len() {
        if name[k] != text[from + k] {
            return false;
        }
        k += 1;
    }
    true
}

/// Digits of `$n` for the parameter at `place` (0-based).
const fn digits(place: usize) -> usize {
    if place + 1 >= 10 { 2 } else { 1 }
}

pub(crate) const fn positional_len(text: &str, names: &[&str]) -> usize {
    assert!(
        !names.is_empty() && names.len() < 100,
        "a statement has 1 to 99 parameters"
    );
    let text = text.as_bytes();
    let mut used = [false; 100];
    let (mut len, mut i, mut quoted) = (0, 0, false);
    while i < text.len() {
        if text[i] == b'\'' {
            quoted = !quoted;
        }
        assert!(
            quoted || text[i] != b'$' || i + 1 >= text.len() || !text[i + 1].is_ascii_digit(),
            "a statement with named parameters has no positional ones"
        );
        if !quoted && let Some((end, place)) = named_at(text, i, names) {
            used[place] = true;
            len += 1 + digits(place);
            i = end;
            continue;
        }
        len += 1;
        i += 1;
    }
    let mut n = 0;
    while n < names.len() {
        assert!(used[n], "a statement declares a parameter its text never uses");
        n += 1;
    }
    len
}

pub(crate) const fn positional<const N: usize>(text: &str, names: &[&str]) -> [u8; N] {
    let text = text.as_bytes();
    let mut out = [0; N];
    let (mut at, mut i, mut quoted) = (0, 0, false);
    while i < text.len() {
        if text[i] == b'\'' {
            quoted = !quoted;
        }
        if !quoted && let Some((end, place)) = named_at(text, i, names) {
            out[at] = b'$';
            at += 1;
            let number = place + 1;
            if number >= 10 {
                out[at] = b'0' + (number / 10) as u8;
                at += 1;
            }
            out[at] = b'0' + (number % 10) as u8;
            at += 1;
            i = end;
            continue;
        }
        out[at] = text[i];
        at += 1;
        i += 1;
    }
    assert!(at == N, "the statement's length was miscounted");
    out
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
    fn named_parameters_become_positional_in_their_declared_order() {
        assert_eq!(
            positional!(
                "SELECT :b::int8, ARRAY[1:2], ':a' WHERE x = :a OR y = :b",
                ["a", "b"]
            ),
            "SELECT $2::int8, ARRAY[1:2], ':a' WHERE x = $1 OR y = $2"
        );
        const MANY: &str = positional!(
            ":p1 :p2 :p3 :p4 :p5 :p6 :p7 :p8 :p9 :p10 :p11",
            ["p1", "p2", "p3", "p4", "p5", "p6", "p7", "p8", "p9", "p10", "p11"]
        );
        assert_eq!(MANY, "$1 $2 $3 $4 $5 $6 $7 $8 $9 $10 $11");
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
