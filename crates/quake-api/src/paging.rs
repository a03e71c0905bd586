//! Keyset paging over a time-ordered event query: pages that neither skip nor loop while
//! the upstream's result set moves (SPEC section 3, step 3).
//!
//! Offset paging (`offset` = 1, 1 + limit, …) counts rows. When an event before the read
//! position leaves the result set (ComCat associates it into another event, EMSC deletes
//! it), every later event moves up one place and the next page starts one event late: that
//! event is never read, and the next run's `updatedafter` does not bring it back. A
//! [`Keyset`] continues from the last event read instead:
//!
//! - Each request asks `orderby=time-asc`, `limit`, no `offset`, and `starttime` = the
//!   origin time of the last event read, floored to the whole second (inclusive; the unit
//!   every FDSN service honours: sub-second `starttime` is accepted by USGS and EMSC, ObsPy
//!   sends it, but a service that truncates or rounds it would make a finer keyset skip).
//!   The events of that second already read come back at the head of the next page and are
//!   dropped by id. What changes before the read position is not this run's: an event
//!   inserted, deleted or merged there is updated after the run's cursor, so the next run
//!   reads it.
//! - When the events already read at that second fill a page (`limit` 1, or a burst of
//!   events within one second), the next request reads the whole second at once
//!   (`endtime` = one second later, `limit` = [`WHOLE_SECOND_LIMIT`]) and the position
//!   moves past it.
//! - Every answer is checked before any of it is used: more records than `limit`, an event
//!   before `starttime` or after `endtime`, events out of time order, or a full page that
//!   brings nothing new are [`PagingError`]s naming what the upstream ignores, and so is a
//!   request over the ceiling. A cache keyed by path, a mirror that drops parameters or a
//!   node with another paging rule ends the run at once instead of crawling for ever.
//!
//! It cannot loop: each accepted full page moves the position to a later second, adds an
//! id to the set read at the position, or (reading a whole second) moves past it; the set
//! and the range are finite, and the ceiling bounds the requests besides.

use std::collections::HashSet;
use std::hash::{Hash, Hasher};

use chrono::{DateTime, TimeDelta, Utc};

use crate::event::{Page, RejectedRecord};
use crate::query::{FdsnQuery, USGS_MAX_LIMIT};

/// `limit` of the request that reads one whole second (the USGS maximum).
pub const WHOLE_SECOND_LIMIT: u32 = USGS_MAX_LIMIT;

/// The ceiling on page requests for a query the upstream counted at `count` events, read
/// `limit` at a time: three times the pages the count needs, plus ten. Room for pages that
/// re-read the events of the second they start at, whole seconds read apart, and events
/// added while the run reads; an upstream that keeps sending new records past it is not
/// paging the query it was asked.
pub fn pages_for_count(count: u64, limit: u32) -> u64 {
    count
        .div_ceil(u64::from(limit.max(1)))
        .saturating_mul(3)
        .saturating_add(10)
}

/// What an upstream did that keyset paging cannot work with. Each message names the
/// upstream's behaviour; nothing of the offending answer has been used.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PagingError {
    /// More records than `limit`.
    #[error(
        "the upstream ignores `limit`: it answered {records} records to a request for at most {limit} (a cache, proxy or mirror that drops query parameters?); nothing of that answer was written"
    )]
    LongerThanLimit {
        /// Records in the answer.
        records: usize,
        /// The `limit` asked.
        limit: u32,
    },
    /// An event before the `starttime` asked.
    #[error(
        "the upstream ignores `starttime`: it answered event {id} at {time} to a request for events from {start}; nothing of that answer was written"
    )]
    BeforeStart {
        /// The event's id.
        id: String,
        /// Its origin time.
        time: DateTime<Utc>,
        /// The `starttime` asked.
        start: DateTime<Utc>,
    },
    /// An event after the `endtime` asked.
    #[error(
        "the upstream ignores `endtime`: it answered event {id} at {time} to a request for events up to {end}; nothing of that answer was written"
    )]
    AfterEnd {
        /// The event's id.
        id: String,
        /// Its origin time.
        time: DateTime<Utc>,
        /// The `endtime` asked.
        end: DateTime<Utc>,
    },
    /// Events not in ascending origin time.
    #[error(
        "the upstream ignores `orderby=time-asc`: event {id} at {time} comes after one at {previous}; nothing of that answer was written"
    )]
    NotInTimeOrder {
        /// The event out of order.
        id: String,
        /// Its origin time.
        time: DateTime<Utc>,
        /// The origin time of the event before it in the answer.
        previous: DateTime<Utc>,
    },
    /// A full page of records already read (and no event to move the position by).
    #[error(
        "the upstream answered a full page ({records} records for limit={limit}) that brings nothing this run has not already read: it does not page by `starttime`; stopped rather than ask again"
    )]
    NothingNew {
        /// Records in the answer.
        records: usize,
        /// The `limit` asked.
        limit: u32,
    },
    /// One second holds more events than one request can return.
    #[error(
        "the upstream holds more than {limit} events in the second from {second}: they cannot be read in one request, and a second cannot be split"
    )]
    SecondTooFull {
        /// The second.
        second: DateTime<Utc>,
        /// The `limit` of the request that read it.
        limit: u32,
    },
    /// The ceiling on page requests was reached.
    #[error("stopped after {requests} page requests: {why}")]
    Ceiling {
        /// Requests made.
        requests: u64,
        /// The ceiling: where it comes from, its value, what to do.
        why: String,
    },
}

/// One request of a [`Keyset`]: apply it to a query with [`PageAsk::apply`].
#[derive(Debug, Clone, PartialEq)]
pub struct PageAsk {
    /// `starttime` (inclusive); `None` on the first request when the paging has no start.
    pub starttime: Option<DateTime<Utc>>,
    /// `endtime`.
    pub endtime: Option<DateTime<Utc>>,
    /// `limit`.
    pub limit: u32,
    /// True when this request reads the whole second at `starttime`.
    pub whole_second: bool,
}

impl PageAsk {
    /// Sets `q`'s `starttime`, `endtime`, `limit` and `orderby=time-asc`, and clears its
    /// `offset`; the other filters are left as they are.
    pub fn apply(&self, q: &mut FdsnQuery) {
        q.starttime = self.starttime;
        q.endtime = self.endtime;
        q.limit = Some(self.limit);
        q.offset = None;
        q.orderby = Some("time-asc".into());
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    Page,
    WholeSecond,
    Done,
}

/// Keyset paging state for one query: where the next request starts and what was read
/// there. Ask [`Keyset::next_ask`], fetch, hand the answer to [`Keyset::accept`], write
/// what it returns; repeat until `next_ask` answers `None`.
#[derive(Debug, Clone)]
pub struct Keyset {
    /// The next request's `starttime`, a whole second (`None` before a start is known).
    pos: Option<DateTime<Utc>>,
    end: Option<DateTime<Utc>>,
    limit: u32,
    /// Keys of the records read whose origin time falls in the second `pos`.
    at_pos: HashSet<String>,
    /// Keys of records read without a readable origin time.
    timeless: HashSet<String>,
    next: Next,
    requests: u64,
    ceiling: u64,
    ceiling_why: String,
}

fn floor_second(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(t.timestamp(), 0).unwrap_or(t)
}

/// The origin time of a rejected record, when its raw JSON has one that reads
/// (`properties.time` in ms, as USGS sends it, or ISO 8601, as EMSC does).
fn rejected_time(r: &RejectedRecord) -> Option<DateTime<Utc>> {
    let v: serde_json::Value = serde_json::from_str(&r.payload).ok()?;
    match &v["properties"]["time"] {
        serde_json::Value::Number(n) => n.as_i64().and_then(DateTime::from_timestamp_millis),
        serde_json::Value::String(s) => quake_core::parse_utc(s),
        _ => None,
    }
}

/// What identifies a rejected record across pages: its id, else its raw JSON.
fn rejected_key(r: &RejectedRecord) -> String {
    match &r.source_id {
        Some(id) => id.clone(),
        None => {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            r.payload.hash(&mut h);
            format!("#{:016x}", h.finish())
        }
    }
}

impl Keyset {
    /// Paging from `start` (floored to the second; `None`: the service's default start) up
    /// to `end` (sent as `endtime` on every request), `limit` records a page. No ceiling
    /// until [`Keyset::with_ceiling`].
    pub fn new(start: Option<DateTime<Utc>>, end: Option<DateTime<Utc>>, limit: u32) -> Keyset {
        Keyset {
            pos: start.map(floor_second),
            end,
            limit: limit.max(1),
            at_pos: HashSet::new(),
            timeless: HashSet::new(),
            next: Next::Page,
            requests: 0,
            ceiling: u64::MAX,
            ceiling_why: String::new(),
        }
    }

    /// Fails the request after `max` requests; `why` says where `max` comes from, for the
    /// error (e.g. `sync.max_pages = 10000`).
    pub fn with_ceiling(mut self, max: u64, why: impl Into<String>) -> Keyset {
        self.ceiling = max;
        self.ceiling_why = why.into();
        self
    }

    /// Requests asked so far.
    pub fn requests(&self) -> u64 {
        self.requests
    }

    /// The next request's `starttime`.
    pub fn position(&self) -> Option<DateTime<Utc>> {
        self.pos
    }

    /// Whether the last answer ended the paging.
    pub fn is_done(&self) -> bool {
        self.next == Next::Done
    }

    /// The next request to make, or `None` when paging is over. Counts the request
    /// against the ceiling: an error once it is reached.
    pub fn next_ask(&mut self) -> Result<Option<PageAsk>, PagingError> {
        if self.next == Next::Done {
            return Ok(None);
        }
        if self.requests >= self.ceiling {
            return Err(PagingError::Ceiling {
                requests: self.requests,
                why: self.ceiling_why.clone(),
            });
        }
        self.requests += 1;
        Ok(Some(match (self.next, self.pos) {
            (Next::WholeSecond, Some(pos)) => PageAsk {
                starttime: Some(pos),
                endtime: Some(self.end.map_or(pos + TimeDelta::seconds(1), |e| {
                    e.min(pos + TimeDelta::seconds(1))
                })),
                limit: WHOLE_SECOND_LIMIT,
                whole_second: true,
            },
            _ => PageAsk {
                starttime: self.pos,
                endtime: self.end,
                limit: self.limit,
                whole_second: false,
            },
        }))
    }

    /// Checks the answer to `ask` (see the module doc), moves the position, and returns
    /// the page without the records this paging has already returned. Nothing of an
    /// answer that fails a check may be used.
    pub fn accept(&mut self, ask: &PageAsk, mut page: Page) -> Result<Page, PagingError> {
        let records = page.record_count();
        if records > ask.limit as usize {
            return Err(PagingError::LongerThanLimit {
                records,
                limit: ask.limit,
            });
        }
        let mut previous: Option<DateTime<Utc>> = None;
        for e in &page.events {
            if let Some(start) = ask.starttime
                && e.time < start
            {
                return Err(PagingError::BeforeStart {
                    id: e.id.clone(),
                    time: e.time,
                    start,
                });
            }
            if let Some(end) = ask.endtime
                && e.time > end
            {
                return Err(PagingError::AfterEnd {
                    id: e.id.clone(),
                    time: e.time,
                    end,
                });
            }
            if let Some(p) = previous
                && e.time < p
            {
                return Err(PagingError::NotInTimeOrder {
                    id: e.id.clone(),
                    time: e.time,
                    previous: p,
                });
            }
            previous = Some(e.time);
        }
        let full = records == ask.limit as usize;
        if ask.whole_second && full {
            return Err(PagingError::SecondTooFull {
                second: ask.starttime.unwrap_or_default(),
                limit: ask.limit,
            });
        }

        // Every record with its key and, when known, the second it falls in. A rejected
        // record's time counts only inside the asked range (its time may be what is wrong).
        let in_range = |t: DateTime<Utc>| {
            ask.starttime.is_none_or(|s| t >= s) && ask.endtime.is_none_or(|e| t <= e)
        };
        let seconds: Vec<Option<DateTime<Utc>>> = page
            .events
            .iter()
            .map(|e| Some(floor_second(e.time)))
            .chain(
                page.rejected
                    .iter()
                    .map(|r| rejected_time(r).filter(|t| in_range(*t)).map(floor_second)),
            )
            .collect();
        let keys: Vec<String> = page
            .events
            .iter()
            .map(|e| e.id.clone())
            .chain(page.rejected.iter().map(rejected_key))
            .collect();

        // Already read: a key at the position's second, or a timeless key seen before.
        let read_before: Vec<bool> = keys
            .iter()
            .zip(&seconds)
            .map(|(k, s)| match s {
                Some(s) => Some(*s) == self.pos && self.at_pos.contains(k),
                None => self.timeless.contains(k),
            })
            .collect();
        let fresh = read_before.iter().filter(|r| !**r).count();
        let latest = seconds.iter().flatten().max().copied();

        if ask.whole_second {
            let Some(pos) = self.pos else {
                return Err(PagingError::NothingNew {
                    records,
                    limit: ask.limit,
                });
            };
            let after = pos + TimeDelta::seconds(1);
            self.move_to(after, &keys, &seconds);
            self.next = if self.end.is_some_and(|e| after >= e) {
                Next::Done
            } else {
                Next::Page
            };
        } else {
            let moved = latest.is_some_and(|l| self.pos.is_none_or(|p| l > p));
            match latest {
                Some(l) if moved => self.move_to(l, &keys, &seconds),
                _ => self.add_at_pos(&keys, &seconds),
            }
            self.next = if !full {
                Next::Done
            } else if fresh == 0 && !moved {
                // Everything was read before. Honest only when it is all of one second
                // (the position's): then read that second whole.
                if latest.is_some() && seconds.iter().flatten().all(|s| Some(*s) == self.pos) {
                    Next::WholeSecond
                } else {
                    return Err(PagingError::NothingNew {
                        records,
                        limit: ask.limit,
                    });
                }
            } else if self.at_pos.len() >= self.limit as usize {
                // The next page at this second would bring only what was read: read the
                // second whole instead.
                Next::WholeSecond
            } else {
                Next::Page
            };
        }
        for (k, s) in keys.iter().zip(&seconds) {
            if s.is_none() {
                self.timeless.insert(k.clone());
            }
        }

        // Drop what was read before; the page keeps its order, metadata and `generated`.
        let (events_read, rejected_read) = read_before.split_at(page.events.len());
        page.events = std::mem::take(&mut page.events)
            .into_iter()
            .zip(events_read)
            .filter_map(|(e, read)| (!read).then_some(e))
            .collect();
        page.rejected = std::mem::take(&mut page.rejected)
            .into_iter()
            .zip(rejected_read)
            .filter_map(|(r, read)| (!read).then_some(r))
            .collect();
        Ok(page)
    }

    /// The position becomes `second`; the set read there is the answer's records in it.
    fn move_to(
        &mut self,
        second: DateTime<Utc>,
        keys: &[String],
        seconds: &[Option<DateTime<Utc>>],
    ) {
        self.pos = Some(second);
        self.at_pos.clear();
        self.add_at_pos(keys, seconds);
    }

    fn add_at_pos(&mut self, keys: &[String], seconds: &[Option<DateTime<Utc>>]) {
        for (k, s) in keys.iter().zip(seconds) {
            if s.is_some() && *s == self.pos {
                self.at_pos.insert(k.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::event::Event;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn ev(id: &str, time: &str) -> Event {
        let ms = t(time).timestamp_millis();
        let feature = format!(
            r#"{{"type":"Feature","id":"{id}","geometry":{{"type":"Point","coordinates":[0,0,1]}},"properties":{{"time":{ms},"updated":{ms},"status":"reviewed","ids":",{id},"}}}}"#
        );
        let mut page = crate::parse::parse_usgs_feature(feature.as_bytes()).unwrap();
        page.events.pop().unwrap()
    }

    fn page(events: &[(&str, &str)]) -> Page {
        Page {
            events: events.iter().map(|(i, s)| ev(i, s)).collect(),
            ..Page::default()
        }
    }

    fn ids(p: &Page) -> Vec<&str> {
        p.events.iter().map(|e| e.id.as_str()).collect()
    }

    /// Serves `catalogue` (sorted by time, then id) as an FDSN service would.
    fn answer(catalogue: &[(&str, &str)], ask: &PageAsk) -> Page {
        let mut hits: Vec<(&str, &str)> = catalogue
            .iter()
            .copied()
            .filter(|(_, s)| ask.starttime.is_none_or(|st| t(s) >= st))
            .filter(|(_, s)| ask.endtime.is_none_or(|e| t(s) <= e))
            .collect();
        hits.sort_by_key(|(i, s)| (t(s), *i));
        hits.truncate(ask.limit as usize);
        page(&hits)
    }

    /// Pages `catalogue` to the end: every id returned, in order, and the asks made.
    fn drain(catalogue: &[(&str, &str)], limit: u32) -> (Vec<String>, Vec<PageAsk>) {
        let mut k =
            Keyset::new(Some(t("2021-07-20T00:00:00Z")), None, limit).with_ceiling(100, "test");
        let (mut got, mut asks) = (Vec::new(), Vec::new());
        while let Some(ask) = k.next_ask().unwrap() {
            let p = k.accept(&ask, answer(catalogue, &ask)).unwrap();
            got.extend(p.events.into_iter().map(|e| e.id));
            asks.push(ask);
        }
        (got, asks)
    }

    const BURST: [(&str, &str); 6] = [
        ("a", "2021-07-20T10:00:00.100Z"),
        ("b", "2021-07-20T10:00:01.200Z"),
        ("c", "2021-07-20T10:00:01.300Z"),
        ("d", "2021-07-20T10:00:01.400Z"),
        ("e", "2021-07-20T10:00:02.000Z"),
        ("f", "2021-07-20T10:00:05.000Z"),
    ];

    #[test]
    fn every_event_once_whatever_the_page_size() {
        for limit in 1..=7 {
            let (got, asks) = drain(&BURST, limit);
            assert_eq!(got, ["a", "b", "c", "d", "e", "f"], "limit {limit}");
            assert!(asks.len() <= 2 * BURST.len() + 1, "limit {limit}: {asks:?}");
            assert!(
                asks.iter()
                    .all(|a| a.starttime.is_some_and(|s| s.timestamp_subsec_nanos() == 0))
            );
        }
    }

    #[test]
    fn a_second_that_fills_a_page_is_read_whole() {
        // limit 2: page 1 = a, b; page 2 (from second 01) = b again and c: b and c are read
        // at 01, as many as a page holds, so second 01 is read whole (b, c, d).
        let (_, asks) = drain(&BURST, 2);
        let whole: Vec<_> = asks.iter().filter(|a| a.whole_second).collect();
        assert!(!whole.is_empty(), "{asks:?}");
        for a in whole {
            assert_eq!(a.limit, WHOLE_SECOND_LIMIT);
            assert_eq!(
                a.endtime.unwrap() - a.starttime.unwrap(),
                TimeDelta::seconds(1)
            );
        }
    }

    #[test]
    fn an_event_merged_away_before_the_position_costs_nothing() {
        let before = [
            ("a", "2021-07-20T10:00:00Z"),
            ("b", "2021-07-20T10:00:10Z"),
            ("c", "2021-07-20T10:00:20Z"),
            ("d", "2021-07-20T10:00:30Z"),
            ("e", "2021-07-20T10:00:40Z"),
        ];
        let mut k = Keyset::new(Some(t("2021-07-20T00:00:00Z")), None, 2);
        let ask = k.next_ask().unwrap().unwrap();
        assert_eq!(
            ids(&k.accept(&ask, answer(&before, &ask)).unwrap()),
            ["a", "b"]
        );
        // a and b (the event at the position) leave the result set, as associated events do
        let after = &before[2..];
        let mut got = Vec::new();
        while let Some(ask) = k.next_ask().unwrap() {
            got.extend(
                k.accept(&ask, answer(after, &ask))
                    .unwrap()
                    .events
                    .into_iter()
                    .map(|e| e.id),
            );
        }
        assert_eq!(
            got,
            ["c", "d", "e"],
            "offset paging would have started at d"
        );
    }

    proptest::proptest! {
        /// A catalogue that moves between every two pages (events removed anywhere,
        /// events inserted anywhere; ties within a second are common): paging ends, returns
        /// no event twice, and returns every event that was there from start to end.
        #[test]
        fn a_moving_catalogue_loses_nothing_and_repeats_nothing(
            seconds in proptest::collection::vec(0i64..20, 1..40),
            limit in 1u32..6,
            moves in proptest::collection::vec((0usize..64, proptest::bool::ANY, 0i64..20), 0..30),
        ) {
            let base = t("2021-07-20T10:00:00Z");
            let mut cat: Vec<(String, DateTime<Utc>)> = seconds
                .iter()
                .enumerate()
                .map(|(i, s)| (format!("e{i:03}"), base + TimeDelta::milliseconds(s * 1000 + (i as i64 % 3) * 100)))
                .collect();
            let mut ever_removed = HashSet::new();
            let mut k = Keyset::new(Some(base), None, limit).with_ceiling(10_000, "test");
            let mut returned: Vec<String> = Vec::new();
            let mut moves = moves.into_iter();
            let mut inserted = 0;
            while let Some(ask) = k.next_ask().unwrap() {
                let mut hits: Vec<&(String, DateTime<Utc>)> = cat
                    .iter()
                    .filter(|(_, tm)| ask.starttime.is_none_or(|s| *tm >= s))
                    .filter(|(_, tm)| ask.endtime.is_none_or(|e| *tm <= e))
                    .collect();
                hits.sort_by_key(|(i, tm)| (*tm, i.clone()));
                hits.truncate(ask.limit as usize);
                let answer = Page {
                    events: hits.iter().map(|(i, tm)| ev(i, &tm.to_rfc3339())).collect(),
                    ..Page::default()
                };
                let p = k.accept(&ask, answer).unwrap();
                returned.extend(p.events.into_iter().map(|e| e.id));
                if let Some((n, remove, sec)) = moves.next() {
                    if remove && !cat.is_empty() {
                        let (id, _) = cat.remove(n % cat.len());
                        ever_removed.insert(id);
                    } else {
                        inserted += 1;
                        cat.push((format!("n{inserted}"), base + TimeDelta::seconds(sec)));
                    }
                }
            }
            let unique: HashSet<&String> = returned.iter().collect();
            proptest::prop_assert_eq!(unique.len(), returned.len(), "returned twice: {:?}", returned);
            for (id, _) in &cat {
                if id.starts_with('e') && !ever_removed.contains(id) {
                    proptest::prop_assert!(unique.contains(id), "lost {}: {:?}", id, returned);
                }
            }
        }
    }

    #[test]
    fn misbehaving_answers_are_named() {
        let mut k = Keyset::new(Some(t("2021-07-20T10:00:00Z")), None, 2);
        let ask = k.next_ask().unwrap().unwrap();
        let three = page(&[
            ("a", "2021-07-20T10:00:01Z"),
            ("b", "2021-07-20T10:00:02Z"),
            ("c", "2021-07-20T10:00:03Z"),
        ]);
        assert_eq!(
            k.accept(&ask, three).unwrap_err(),
            PagingError::LongerThanLimit {
                records: 3,
                limit: 2
            }
        );
        let desc = page(&[("b", "2021-07-20T10:00:02Z"), ("a", "2021-07-20T10:00:01Z")]);
        assert!(matches!(
            k.accept(&ask, desc).unwrap_err(),
            PagingError::NotInTimeOrder { .. }
        ));
        let early = page(&[("z", "2021-07-20T09:59:59Z")]);
        assert!(matches!(
            k.accept(&ask, early).unwrap_err(),
            PagingError::BeforeStart { .. }
        ));

        // A static answer that honours `limit` but nothing else: the second page repeats
        // the first, whose events lie before the new position.
        let mut k = Keyset::new(Some(t("2021-07-20T10:00:00Z")), None, 2);
        let same = page(&[("a", "2021-07-20T10:00:01Z"), ("b", "2021-07-20T10:00:02Z")]);
        let ask = k.next_ask().unwrap().unwrap();
        k.accept(&ask, same.clone()).unwrap();
        let ask = k.next_ask().unwrap().unwrap();
        assert!(matches!(
            k.accept(&ask, same).unwrap_err(),
            PagingError::BeforeStart { .. }
        ));

        // Ignoring `endtime` on the whole-second request.
        let mut k = Keyset::new(Some(t("2021-07-20T10:00:00Z")), None, 1);
        let ask = k.next_ask().unwrap().unwrap();
        k.accept(&ask, page(&[("a", "2021-07-20T10:00:01Z")]))
            .unwrap();
        let ask = k.next_ask().unwrap().unwrap();
        assert!(ask.whole_second, "{ask:?}");
        let beyond = page(&[("a", "2021-07-20T10:00:01Z"), ("b", "2021-07-20T10:00:03Z")]);
        assert!(matches!(
            k.accept(&ask, beyond).unwrap_err(),
            PagingError::AfterEnd { .. }
        ));
    }

    #[test]
    fn a_full_page_of_records_without_time_already_read_stops() {
        let mut k = Keyset::new(Some(t("2021-07-20T10:00:00Z")), None, 1);
        let bad = Page {
            rejected: vec![RejectedRecord {
                source_id: None,
                reason: "no time".into(),
                payload: r#"{"properties":{}}"#.into(),
            }],
            ..Page::default()
        };
        let ask = k.next_ask().unwrap().unwrap();
        assert_eq!(k.accept(&ask, bad.clone()).unwrap().rejected.len(), 1);
        let ask = k.next_ask().unwrap().unwrap();
        assert_eq!(
            k.accept(&ask, bad).unwrap_err(),
            PagingError::NothingNew {
                records: 1,
                limit: 1
            }
        );
    }

    #[test]
    fn a_rejected_record_with_a_time_moves_the_position_and_is_written_once() {
        let mut k = Keyset::new(Some(t("2021-07-20T10:00:00Z")), None, 1);
        let bad = Page {
            rejected: vec![RejectedRecord {
                source_id: Some("x".into()),
                reason: "latitude 200".into(),
                payload: r#"{"id":"x","properties":{"time":1626775205000}}"#.into(),
            }],
            ..Page::default()
        };
        let ask = k.next_ask().unwrap().unwrap();
        assert_eq!(k.accept(&ask, bad.clone()).unwrap().rejected.len(), 1);
        assert_eq!(k.position(), Some(t("2021-07-20T10:00:05Z")));
        let ask = k.next_ask().unwrap().unwrap();
        assert!(ask.whole_second);
        assert_eq!(
            k.accept(&ask, bad).unwrap().rejected.len(),
            0,
            "read before"
        );
        assert_eq!(k.position(), Some(t("2021-07-20T10:00:06Z")));
    }

    #[test]
    fn the_ceiling_is_an_error_and_counts_from_the_upstream_count() {
        let mut k = Keyset::new(None, None, 10).with_ceiling(1, "one request at most");
        assert!(k.next_ask().unwrap().is_some());
        let e = k.next_ask().unwrap_err();
        assert_eq!(
            e.to_string(),
            "stopped after 1 page requests: one request at most"
        );
        assert_eq!(pages_for_count(0, 100), 10);
        assert_eq!(pages_for_count(1, 100), 13);
        assert_eq!(pages_for_count(3098, 500), 31);
    }
}
