//! The change log (table `event_changes`): one row per committed insert, update, deletion
//! or merge of an `earthquakes` row, what `GET /events/stream` serves.
//!
//! Writes: the write path ([`crate::write::apply_page`], both of its modes) appends the
//! changes of a page with a few multi-row INSERTs at the end of the page's own
//! transaction, so a change is visible exactly when the page is. On PostgreSQL the page
//! first takes `pg_advisory_xact_lock(`[`CHANGES_LOCK_KEY`]`)` (held until it commits), so
//! change sequence numbers are allocated in commit order: a reader that has read every row
//! up to seq N never later finds a smaller seq committed. It then calls
//! `pg_notify(`[`CHANGES_CHANNEL`]`, <highest seq>)`, delivered to every listener at commit.
//! SQLite serialises writers anyway; a commit wakes the subscribers of the same process.
//!
//! Reads: [`Store::changes`] is a subscription to the highest committed seq (PostgreSQL: one
//! `LISTEN` connection per store, reconnected with backoff, re-read after every reconnect;
//! SQLite: an in-process wake-up plus a slow poll). [`read_changes`] reads the rows after a
//! seq with the current state of their events; [`horizon`] and [`prune_changes`] implement
//! retention.

use std::sync::{LazyLock, Weak};
use std::time::Duration;

use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Nullable, Text};
use diesel_async::{RunQueryDsl, SimpleAsyncConnection};
use futures_util::StreamExt;
use serde::Serialize;
use tokio::sync::watch;

use crate::decision::{Decision, Write};
use crate::dispatch;
use crate::models::{Earthquake, EventRecord};
use crate::pool::{Backend, DbConn, Store};
use crate::schema::{earthquakes, event_changes};
use crate::types::Ts;

/// The PostgreSQL `NOTIFY` channel a committed page signals (payload: its highest seq).
pub const CHANGES_CHANNEL: &str = "quakesync_changes";

/// The transaction-level advisory lock a page holds from allocating its first change seq
/// until it commits (distinct from the sync and migration locks).
pub const CHANGES_LOCK_KEY: i64 = 0x7175_616b_6368_6e67; // "quakchng"

/// The `application_name` of the `LISTEN` connection (in `pg_stat_activity`).
pub const LISTEN_APPLICATION_NAME: &str = "quakesync listen";

/// How often a subscription re-reads the head without being woken: SQLite (a commit by
/// another process on the same file wakes no one here).
const SQLITE_POLL: Duration = Duration::from_secs(2);
/// PostgreSQL: the `LISTEN` connection is checked (and the head re-read) this often.
const PG_CHECK: Duration = Duration::from_secs(15);
/// How long the `LISTEN` connection's health check may take before it counts as lost.
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest wait between two attempts to reconnect the `LISTEN` connection.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Rows per INSERT statement of change rows (4 binds each).
const INSERT_CHUNK: usize = 1000;

/// What happened to an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    Insert,
    Update,
    /// The event was stored (inserted or updated) with status `deleted`.
    Delete,
    /// The event was marked `merged_into` another.
    Merge,
}

impl ChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Insert => "insert",
            ChangeKind::Update => "update",
            ChangeKind::Delete => "delete",
            ChangeKind::Merge => "merge",
        }
    }

    fn parse(s: &str) -> Option<ChangeKind> {
        Some(match s {
            "insert" => ChangeKind::Insert,
            "update" => ChangeKind::Update,
            "delete" => ChangeKind::Delete,
            "merge" => ChangeKind::Merge,
            _ => return None,
        })
    }
}

/// A change row to be written with a page.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct NewChange {
    event_id: String,
    kind: &'static str,
    merged_into: Option<String>,
}

/// Appends the changes a committed decision made: the record's own row (insert, update or
/// delete), then each row it merged.
pub(crate) fn changes_of(decision: &Decision, rec: &EventRecord, out: &mut Vec<NewChange>) {
    let kind = match (decision.write, rec.is_deleted()) {
        (Write::None, _) => None,
        (_, true) => Some(ChangeKind::Delete),
        (Write::Insert, false) => Some(ChangeKind::Insert),
        (Write::Update, false) => Some(ChangeKind::Update),
    };
    if let Some(kind) = kind {
        out.push(NewChange {
            event_id: rec.id.clone(),
            kind: kind.as_str(),
            merged_into: None,
        });
    }
    for m in &decision.merge {
        out.push(NewChange {
            event_id: m.clone(),
            kind: ChangeKind::Merge.as_str(),
            merged_into: Some(rec.id.clone()),
        });
    }
}

/// Writes a page's changes, in order, inside the page's transaction (see the module doc).
pub(crate) async fn record_changes(
    db: &mut DbConn<'_>,
    changes: &[NewChange],
    now: Ts,
) -> QueryResult<()> {
    if changes.is_empty() {
        return Ok(());
    }
    if let DbConn::Pg(c) = db {
        c.batch_execute(&format!("SELECT pg_advisory_xact_lock({CHANGES_LOCK_KEY})"))
            .await?;
    }
    match db {
        DbConn::Pg(c) => {
            let col = |f: fn(&NewChange) -> Option<&str>| -> Vec<Option<&str>> {
                changes.iter().map(f).collect()
            };
            diesel::sql_query(
                "INSERT INTO event_changes (event_id, kind, merged_into, committed_at) \
                 SELECT u.e, u.k, u.m, $4 FROM unnest($1::text[], $2::text[], $3::text[]) \
                 WITH ORDINALITY AS u(e, k, m, n) ORDER BY u.n",
            )
            .bind::<Array<Nullable<Text>>, _>(col(|c| Some(c.event_id.as_str())))
            .bind::<Array<Nullable<Text>>, _>(col(|c| Some(c.kind)))
            .bind::<Array<Nullable<Text>>, _>(col(|c| c.merged_into.as_deref()))
            .bind::<crate::schema::sql_types::UtcTs, _>(now)
            .execute(*c)
            .await?;
        }
        DbConn::Sqlite(c) => {
            for chunk in changes.chunks(INSERT_CHUNK) {
                let rows = vec!["(?, ?, ?, ?)"; chunk.len()].join(", ");
                let mut q = diesel::sql_query(format!(
                    "INSERT INTO event_changes (event_id, kind, merged_into, committed_at) VALUES {rows}"
                ))
                .into_boxed::<diesel::sqlite::Sqlite>();
                for ch in chunk {
                    q = q
                        .bind::<Text, _>(ch.event_id.clone())
                        .bind::<Text, _>(ch.kind)
                        .bind::<Nullable<Text>, _>(ch.merged_into.clone())
                        .bind::<crate::schema::sql_types::UtcTs, _>(now);
                }
                q.execute(*c).await?;
            }
        }
    }
    if let DbConn::Pg(c) = db {
        diesel::sql_query(format!(
            "SELECT pg_notify('{CHANGES_CHANNEL}', max(seq)::text) FROM event_changes"
        ))
        .execute(*c)
        .await?;
    }
    Ok(())
}

/// In-process wake-up of the SQLite subscriptions: bumped after each commit that wrote changes.
static SQLITE_COMMITS: LazyLock<watch::Sender<u64>> = LazyLock::new(|| watch::channel(0).0);

/// Wakes this process's SQLite subscriptions after a commit (harmless when nothing changed).
pub(crate) fn committed(backend: Backend) {
    if backend == Backend::Sqlite {
        SQLITE_COMMITS.send_modify(|n| *n = n.wrapping_add(1));
    }
}

/// One row of the change log with the current state of its event.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// The stream's event id: increasing in commit order, never reused.
    pub seq: i64,
    pub event_id: String,
    pub kind: ChangeKind,
    /// For [`ChangeKind::Merge`]: the id that superseded `event_id`.
    pub merged_into: Option<String>,
    pub committed_at: Ts,
    /// The event's row as it is now (`None` only if it was removed by hand).
    pub row: Option<Earthquake>,
}

type ChangeRow = (i64, String, String, Option<String>, Ts, Option<Earthquake>);

/// The changes with a seq greater than `after`, oldest first, at most `limit`.
pub async fn read_changes(
    conn: &mut DbConn<'_>,
    after: i64,
    limit: i64,
) -> QueryResult<Vec<Change>> {
    use event_changes::dsl as c;
    let rows: Vec<ChangeRow> = dispatch!(conn, db => c::event_changes
        .left_join(earthquakes::table.on(earthquakes::id.eq(c::event_id)))
        .filter(c::seq.gt(after))
        .order(c::seq.asc())
        .limit(limit)
        .select((
            c::seq,
            c::event_id,
            c::kind,
            c::merged_into,
            c::committed_at,
            Option::<Earthquake>::as_select(),
        ))
        .load(db)
        .await)?;
    rows.into_iter()
        .map(|(seq, event_id, kind, merged_into, committed_at, row)| {
            let kind = ChangeKind::parse(&kind).ok_or_else(|| {
                diesel::result::Error::DeserializationError(
                    format!("event_changes.kind {kind:?}").into(),
                )
            })?;
            Ok(Change {
                seq,
                event_id,
                kind,
                merged_into,
                committed_at,
                row,
            })
        })
        .collect()
}

/// Where the change log stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Horizon {
    /// The highest seq committed (or pruned): a new client starts after it.
    pub head: i64,
    /// The highest seq removed by [`Store::prune_changes`](crate::Store::prune_changes): a client resuming from an older id
    /// has missed changes that can no longer be replayed.
    pub pruned_through: i64,
}

#[derive(QueryableByName)]
struct HorizonRow {
    #[diesel(sql_type = Nullable<BigInt>)]
    head: Option<i64>,
    #[diesel(sql_type = BigInt)]
    pruned_through: i64,
}

/// The change log's head and pruning horizon.
pub async fn horizon(conn: &mut DbConn<'_>) -> QueryResult<Horizon> {
    let row: HorizonRow = dispatch!(conn, c => diesel::sql_query(
        "SELECT (SELECT max(seq) FROM event_changes) AS head, through_seq AS pruned_through \
         FROM event_changes_pruned",
    )
    .get_result(c)
    .await)?;
    Ok(Horizon {
        head: row.head.unwrap_or(0).max(row.pruned_through),
        pruned_through: row.pruned_through,
    })
}

/// [`read_changes`] with the [`horizon`] read in the same snapshot (a read-only REPEATABLE
/// READ transaction on PostgreSQL, one transaction on SQLite): a prune committed while a
/// reader pages through the log shows as `pruned_through` above its cursor, never as rows
/// silently missing from the batch.
pub async fn read_changes_at(
    conn: &mut DbConn<'_>,
    after: i64,
    limit: i64,
) -> QueryResult<(Horizon, Vec<Change>)> {
    use diesel_async::AsyncConnection;
    match conn {
        DbConn::Pg(c) => {
            c.build_transaction()
                .repeatable_read()
                .read_only()
                .run(async |tx| {
                    let mut db = DbConn::Pg(tx);
                    let h = horizon(&mut db).await?;
                    Ok((h, read_changes(&mut db, after, limit).await?))
                })
                .await
        }
        DbConn::Sqlite(c) => {
            c.transaction(async |tx| {
                let mut db = DbConn::Sqlite(tx);
                let h = horizon(&mut db).await?;
                Ok((h, read_changes(&mut db, after, limit).await?))
            })
            .await
        }
    }
}

/// Removes the changes committed before `before` (retention), remembering the highest seq
/// removed; returns how many rows went.
pub async fn prune_changes(conn: &mut DbConn<'_>, before: Ts) -> QueryResult<usize> {
    use diesel_async::AsyncConnection;
    use event_changes::dsl as c;
    dispatch!(conn, db => db.transaction(async |tx| {
        let last: Option<i64> = c::event_changes
            .filter(c::committed_at.lt(before))
            .select(diesel::dsl::max(c::seq))
            .get_result(tx)
            .await?;
        let Some(last) = last else { return Ok(0) };
        diesel::sql_query(
            "UPDATE event_changes_pruned SET through_seq = $1 WHERE through_seq < $1",
        )
        .bind::<BigInt, _>(last)
        .execute(tx)
        .await?;
        diesel::delete(c::event_changes.filter(c::seq.le(last)))
            .execute(tx)
            .await
    }).await)
}

impl Store {
    /// A subscription to the highest committed change seq (0 until the first is seen): it
    /// changes after every commit that wrote changes, in this process or, on PostgreSQL,
    /// any other. Read the rows with [`Store::read_changes`](crate::Store::read_changes) after waking. The first call starts
    /// one background task per store (call it inside a tokio runtime); the task ends when
    /// the store is dropped (not when the last subscription is: a later call subscribes to
    /// the same running task).
    pub fn changes(&self) -> watch::Receiver<i64> {
        let tx = self.inner_changes().get_or_init(|| {
            let (tx, gone) = watch::channel(0);
            let weak = self.downgrade();
            let backend = self.backend();
            tokio::spawn(async move {
                let publisher = Publisher { weak, gone };
                match backend {
                    Backend::Postgres => listen_pg(publisher).await,
                    Backend::Sqlite => poll_sqlite(publisher).await,
                }
            });
            tx
        });
        tx.subscribe()
    }
}

/// The task's side of a store's subscription: it holds no sender (only the store does), so
/// `gone` ends exactly when the store is dropped.
struct Publisher {
    weak: Weak<crate::pool::Inner>,
    gone: watch::Receiver<i64>,
}

impl Publisher {
    fn store(&self) -> Option<Store> {
        Store::upgrade(&self.weak)
    }

    fn publish(&self, seq: i64) {
        if let Some(store) = self.store()
            && let Some(tx) = store.inner_changes().get()
        {
            publish(tx, seq);
        }
    }

    /// Completes when the store is dropped.
    async fn store_gone(&mut self) {
        while self.gone.changed().await.is_ok() {}
    }
}

/// Publishes `seq` if it is newer than what subscribers have.
fn publish(tx: &watch::Sender<i64>, seq: i64) {
    tx.send_if_modified(|cur| {
        if seq > *cur {
            *cur = seq;
            true
        } else {
            false
        }
    });
}

async fn read_head(store: &Store) -> crate::Result<i64> {
    let mut conn = store.conn().await?;
    Ok(horizon(&mut conn.db()).await?.head)
}

async fn poll_sqlite(mut p: Publisher) {
    let mut commits = SQLITE_COMMITS.subscribe();
    loop {
        let Some(store) = p.store() else {
            return;
        };
        let head = read_head(&store).await;
        drop(store);
        match head {
            Ok(seq) => p.publish(seq),
            Err(e) => log::warn!("event stream: reading the change log failed: {e}"),
        }
        tokio::select! {
            _ = p.store_gone() => return,
            _ = commits.changed() => {}
            _ = tokio::time::sleep(SQLITE_POLL) => {}
        }
    }
}

async fn listen_pg(mut p: Publisher) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let Some(store) = p.store() else {
            return;
        };
        let conn = store.dedicated_pg().await;
        drop(store);
        let outcome = match conn {
            Ok(mut conn) => {
                let listening = conn
                    .batch_execute(&format!(
                        "SET application_name = '{LISTEN_APPLICATION_NAME}'; LISTEN {CHANGES_CHANNEL}"
                    ))
                    .await;
                match listening {
                    Ok(()) => {
                        backoff = Duration::from_millis(100);
                        serve_listen(&mut p, &mut conn).await
                    }
                    Err(e) => Err(e.to_string()),
                }
            }
            Err(e) => Err(e.to_string()),
        };
        match outcome {
            Ok(()) => return,
            Err(e) => log::warn!(
                "event stream: LISTEN connection lost ({e}); reconnecting in {backoff:?}"
            ),
        }
        tokio::select! {
            _ = p.store_gone() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Serves one `LISTEN` connection until it fails (`Err`) or the store is dropped (`Ok`).
/// The head is re-read when it starts (what was committed while it was down is then read by
/// seq) and every [`PG_CHECK`], which also proves the connection alive: a check that gets no
/// answer within [`CHECK_TIMEOUT`] (a half-open connection) counts as a failure.
async fn serve_listen(
    p: &mut Publisher,
    conn: &mut diesel_async::AsyncPgConnection,
) -> Result<(), String> {
    loop {
        if p.store().is_none() {
            return Ok(());
        }
        let head: HeadRow = tokio::time::timeout(
            CHECK_TIMEOUT,
            diesel::sql_query("SELECT max(seq) AS head FROM event_changes").get_result(&mut *conn),
        )
        .await
        .map_err(|_| format!("no answer to the health check within {CHECK_TIMEOUT:?}"))?
        .map_err(|e| e.to_string())?;
        p.publish(head.head.unwrap_or(0));
        let mut notes = std::pin::pin!(conn.notifications_stream());
        let check = tokio::time::sleep(PG_CHECK);
        tokio::pin!(check);
        loop {
            tokio::select! {
                _ = p.store_gone() => return Ok(()),
                _ = &mut check => break,
                n = notes.next() => match n {
                    Some(Ok(n)) => {
                        if let Ok(seq) = n.payload.parse::<i64>() {
                            p.publish(seq);
                        }
                    }
                    Some(Err(e)) => return Err(e.to_string()),
                    None => return Err("connection closed".into()),
                },
            }
        }
    }
}

#[derive(QueryableByName)]
struct HeadRow {
    #[diesel(sql_type = Nullable<BigInt>)]
    head: Option<i64>,
}
